"""``python -m rsvg_zeroov.datasets`` on synthetic data of every format, and on broken data sets."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rsvg_zeroov.synthetic import DATASET_OF_FORMAT, FORMATS, build_dataset

REPO = Path(__file__).resolve().parents[1]
N, SIZE = 4, 64


def listing(dataset, root, split="test", *extra):
    """Run the listing CLI in a fresh interpreter; return (rc, stdout lines, stderr)."""
    cmd = [sys.executable, "-m", "rsvg_zeroov.datasets", "--dataset", dataset, "--root", str(root),
           "--split", split, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def options(fmt):
    dataset, opts = DATASET_OF_FORMAT[fmt]
    return dataset, [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    return {fmt: build_dataset(fmt, base / fmt, N, seed=3, size=SIZE) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_listing_matches_synthetic_truth(synthetic, fmt):
    ds = synthetic[fmt]
    dataset, extra = options(fmt)
    rc, lines, err = listing(dataset, ds.root, "test", *extra)
    assert rc == 0, err
    rows = [json.loads(line) for line in lines]
    assert len(rows) == len(ds.truth) == N
    for row, want in zip(rows, ds.truth):
        assert set(row) == {"sample_id", "image", "expression", "width", "height", "box", "mask_area"}
        if want["box"] is None:
            assert row["box"] is None
        else:
            assert row["box"] == pytest.approx(want["box"])
        assert row["sample_id"] == want["sample_id"] and row["expression"] == want["expression"]
        assert row["mask_area"] == want["mask_area"] and (row["width"], row["height"]) == (SIZE, SIZE * 3 // 4)
        assert Path(row["image"]).is_file()
    assert "Traceback" not in err


def test_listing_limit(synthetic):
    rc, lines, _ = listing("dior_rsvg", synthetic["dior_rsvg"].root, "test", "--limit", "2")
    assert rc == 0 and [json.loads(x)["sample_id"] for x in lines] == [t["sample_id"] for t in synthetic["dior_rsvg"].truth[:2]]


def _copy(synthetic, fmt, tmp_path):
    src = synthetic[fmt].root
    if src.is_file():
        shutil.copytree(src.parent, tmp_path / "ds")
        return tmp_path / "ds" / src.name
    shutil.copytree(src, tmp_path / "ds")
    return tmp_path / "ds"


def _assert_clean_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BROKEN = {
    # name: (format, split, damage(root) -> the file name expected in the message)
    "truncated_xml": ("dior_rsvg", "test", lambda r: _truncate(r / "Annotations" / "00000.xml") or "00000.xml"),
    "malformed_instances_json": ("rrsisd", "test", lambda r: _truncate(r / "rrsisd" / "instances.json", 0.7)
                                 or "instances.json"),
    "malformed_vrsbench_json": ("vrsbench", "test", lambda r: (r / "VRSBench_EVAL_referring.json").write_text(
        '[{"image_id": "P0000_0000.png",}]') and "VRSBench_EVAL_referring.json"),
    "missing_image": ("risbench", "test", lambda r: (r / "img_rgb" / "00001_syn.v1.png").unlink()
                      or "00001_syn.v1.png"),
    "missing_mask": ("refsegrs", "test", lambda r: (r / "masks" / "3002.tif").unlink() or "3002.tif"),
    "index_out_of_range": ("opt_rsvg", "test", lambda r: (r / "test.txt").write_text("0\n999\n") and "test.txt"),
    "unknown_split_txt": ("risbench", "val", lambda r: "output_phrase_val.txt"),
    "unknown_split_refer": ("rrsisd", "val", lambda r: "refs(unc).p"),
    "evil_pickle": ("rrsisd", "test", lambda r: (r / "rrsisd" / "refs(unc).p").write_bytes(
        pickle.dumps(os.system, protocol=2)) and "refs(unc).p"),
    "bad_jsonl_line": ("jsonl", "test", lambda r: (r / "test.jsonl").write_text('{"id": "a"\n') and "test.jsonl"),
    "missing_zeroov_mask": ("rrsisd-zeroov-json", "test", lambda r: (r / "targetmask" / "00000.png").unlink()
                            or "00000.png"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_data_set_one_error_line_exit_2(synthetic, tmp_path, case):
    fmt, split, damage = BROKEN[case]
    root = _copy(synthetic, fmt, tmp_path)
    name = damage(root.parent if root.is_file() else root)
    dataset, extra = options(fmt)
    rc, lines, err = listing(dataset, root, split, *extra)
    _assert_clean_error(rc, err, name)
    assert lines == []


def test_mask_of_wrong_size_fails_during_listing(synthetic, tmp_path):
    from PIL import Image

    root = _copy(synthetic, "risbench", tmp_path)
    Image.new("L", (5, 5)).save(root / "mask" / "00002_syn.v1.png")
    rc, lines, err = listing("risbench", root, "test")
    _assert_clean_error(rc, err, "00002_syn.v1.png", "mask is 5x5")
    assert len(lines) == 2  # the samples before the broken one were listed
