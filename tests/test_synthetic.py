"""Synthetic scenes and data sets: determinism, scene invariants, every format loads back, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rsvg_zeroov.datasets import load_samples
from rsvg_zeroov.synthetic import DATASET_OF_FORMAT, FORMATS, build_dataset, image_shape, write_dataset
from rsvg_zeroov.synthetic.scenes import COLOURS, KINDS, make_scene, position_phrase

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_seed_same_bytes_and_loads_back(tmp_path, fmt):
    a = build_dataset(fmt, tmp_path / "a", 3, seed=5, size=48)
    b = build_dataset(fmt, tmp_path / "b", 3, seed=5, size=48)
    c = build_dataset(fmt, tmp_path / "c", 3, seed=6, size=48)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b") and a.truth == b.truth
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
    dataset, opts = DATASET_OF_FORMAT[fmt]
    samples = load_samples(dataset, a.root, "test", **opts)
    assert [s.sample_id for s in samples] == [t["sample_id"] for t in a.truth]
    assert len(samples) == 3 and all((s.height, s.width) == image_shape(48) for s in samples)


def test_scene_invariants():
    for seed in range(4):
        for index in range(5):
            scene = make_scene(seed, index, 96, 72)
            assert scene.image.dtype == np.uint8 and scene.image.shape == (72, 96, 3)
            assert 1 <= len(scene.objects) <= 3
            union = np.zeros((72, 96), int)
            for obj in scene.objects:
                assert obj.mask.dtype == bool and obj.mask.shape == (72, 96) and obj.mask.any()
                ys, xs = np.nonzero(obj.mask)
                assert obj.box == (xs.min(), ys.min(), xs.max(), ys.max())  # inclusive XYXY
                assert obj.colour in COLOURS and obj.kind in KINDS and obj.category == obj.kind
                assert obj.expression == f"the {obj.colour} {obj.kind} {obj.position}"
                assert obj.position == position_phrase(*obj.cell)
                # the object lies inside its grid cell
                r, c = obj.cell
                assert xs.min() >= c * 96 // 3 and xs.max() < (c + 1) * 96 // 3
                assert ys.min() >= r * 72 // 3 and ys.max() < (r + 1) * 72 // 3
                union += obj.mask
            assert union.max() == 1  # no overlap
            assert len({o.expression for o in scene.objects}) == len(scene.objects)
    assert np.array_equal(make_scene(1, 2, 64, 48).image, make_scene(1, 2, 64, 48).image)


def test_position_phrases():
    assert position_phrase(0, 0) == "at the top left"
    assert position_phrase(1, 1) == "in the center"
    assert position_phrase(1, 2) == "on the right"
    assert position_phrase(2, 1) == "at the bottom"


def test_rrsisd_synthetic_has_polygon_and_multi_sentence(tmp_path):
    import json
    import pickle

    ds = build_dataset("rrsisd", tmp_path, 4, seed=0, size=64)
    refs = pickle.loads((tmp_path / "rrsisd" / "refs(unc).p").read_bytes())
    inst = json.loads((tmp_path / "rrsisd" / "instances.json").read_text())
    assert any(len(r["sentences"]) > 1 for r in refs if r["split"] == "test")
    assert {r["split"] for r in refs} == {"test", "train"}
    segs = [a["segmentation"] for a in inst["annotations"]]
    assert any(isinstance(s[0], list) for s in segs) and any(isinstance(s[0]["counts"], str) for s in segs if isinstance(s[0], dict))
    assert "_" in ds.truth[0]["sample_id"] and len(ds.truth) == 4


def test_write_dataset_and_cli_print_root(tmp_path):
    root = write_dataset("jsonl", tmp_path / "w", 2, size=32, split="val")
    assert root == tmp_path / "w" / "val.jsonl" and root.is_file()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "rsvg_zeroov.synthetic", "--format", "dior_rsvg", "--out",
                          str(tmp_path / "cli"), "--n", "2", "--size", "40", "--seed", "1"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "cli") and "--dataset dior_rsvg" in out.stderr
    assert len(load_samples("dior_rsvg", out.stdout.strip(), "test")) == 2
    with pytest.raises(ValueError, match="unknown synthetic format"):
        write_dataset("nope", tmp_path / "x", 1)
