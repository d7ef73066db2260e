"""The refiner role: the registry, box-fill selected by key, SAM fed the image as OpenCV decodes
it, one-line checkpoint errors, and ablations read from another run directory (--from)."""
import numpy as np
import pytest
from PIL import Image

from evolve_helpers import (CRAFTED, cli, crafted, exit_status, read_evolve_config, read_jsonl,  # noqa: F401
                            read_mask, tiny_sam)
from rsvg_zeroov.evolve.config import EvolveConfig

IDS = [s["id"] for s in CRAFTED]


def _filled_box(mask):
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if ys.size:
        out[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return out


# ------------------------------------------------------------------------------ the registry
def test_registry_lists_every_refiner_and_the_protocol_holds():
    from rsvg_zeroov.models.base import registry
    from rsvg_zeroov.models.boxfill import BoxFillRefiner
    from rsvg_zeroov.models.refiners import Refiner, load_refiner

    reg = registry("refiner")
    assert reg.keys()[:5] == ["vit_h", "vit_l", "vit_b", "tiny", "box-fill"] and reg.default.key == "vit_h"
    assert reg.resolve("vit_b").source.endswith("sam_checkpoint/sam_vit_b_01ec64.pth")
    box = load_refiner("box-fill")
    assert isinstance(box, BoxFillRefiner) and isinstance(box, Refiner)
    with pytest.raises(ValueError, match="unknown refiner 'sam4'.*box-fill"):
        load_refiner("sam4")


def test_official_sizes_come_from_segment_anything():
    from segment_anything import sam_model_registry

    from rsvg_zeroov.models import sam_arch

    assert set(sam_arch.OFFICIAL) <= set(sam_model_registry) and not hasattr(sam_arch, "SAM_ARCHS")


def test_config_refiner_replaces_sam_and_sam_type():
    assert EvolveConfig().refiner == "vit_h" and EvolveConfig().sam
    assert EvolveConfig().override(sam=False).refiner is None and not EvolveConfig(refiner=None).sam
    assert EvolveConfig().override(sam_type="vit_b").refiner == "vit_b"
    assert EvolveConfig(refiner_checkpoint="tiny") == EvolveConfig(refiner="tiny")
    assert EvolveConfig(refiner="none").refiner is None
    old = {"k": 7, "sam": False, "sam_type": None, "sam_checkpoint": None, "fingerprint": "x", "workers": 2}
    assert EvolveConfig.from_recorded(old) == EvolveConfig(refiner=None)
    assert EvolveConfig.from_recorded({"sam": True, "sam_type": "tiny", "resolutions": [32]}) == \
        EvolveConfig(refiner="tiny", resolutions=(32,))


def test_flags_come_from_the_config_and_the_old_spellings_work(crafted):
    import rs_evolve

    base = ["--dataset", "jsonl", "--root", "r", "--out", "o"]
    cfg = rs_evolve.build_config(rs_evolve.parse_args(base + ["--k", "5", "--resolutions", "32", "--no-dm"]))
    assert (cfg.k, cfg.resolutions, cfg.use_dm, cfg.refiner) == (5, (32,), False, "vit_h")
    for flags, refiner, ckpt in ((["--no-sam"], None, None), (["--refiner", "none"], None, None),
                                 (["--sam-type", "vit_l"], "vit_l", None), (["--sam-checkpoint", "tiny"], "tiny", None),
                                 (["--sam-checkpoint", "x.pth", "--sam-type", "vit_b"], "vit_b", "x.pth"),
                                 (["--refiner", "box-fill"], "box-fill", None)):
        cfg = rs_evolve.build_config(rs_evolve.parse_args(base + flags))
        assert (cfg.refiner, cfg.refiner_checkpoint) == (refiner, ckpt), flags


# ------------------------------------------------------------------------------ box-fill by key
def test_box_fill_refiner_selected_by_key_gives_filled_boxes(crafted):
    jsonl, run, expected = crafted
    assert cli(jsonl, run, "--refiner", "box-fill") == 0
    preds = {p["sample_id"]: p for p in read_jsonl(run.predictions)}
    for sid in IDS:
        mask = read_mask(run.mask_png(sid))
        np.testing.assert_array_equal(mask, _filled_box(expected[sid]))
        assert preds[sid]["sam_score"] is None
    assert read_evolve_config(run)["resolved"]["refiner"]["key"] == "box-fill"


# ------------------------------------------------------------------------------ SAM's image
@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_sam_is_fed_the_opencv_decoding_under_released_fidelity(crafted, tiny_sam, monkeypatch, mode):
    import cv2
    from segment_anything import SamPredictor

    jsonl, run, _ = crafted
    rng = np.random.default_rng(7)
    paths = {}
    for spec in CRAFTED:
        path = jsonl.parent / spec["image"]
        if path not in paths.values():
            h, w = spec["hw"]
            channels = {"RGBA": 4, "L": 1}[mode]
            arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
            paths[spec["image"]] = path
    fed = []
    real = SamPredictor.set_image
    monkeypatch.setattr(SamPredictor, "set_image", lambda self, image, *a, **k: (fed.append(image.copy()),
                                                                                    real(self, image, *a, **k))[1])
    from rsvg_zeroov import images

    read = []
    real_read = images.read_for_sam
    monkeypatch.setattr(images, "read_for_sam", lambda path: (read.append(path), real_read(path))[1])
    monkeypatch.setenv("RSVG_ZEROOV_TINY_DIR", str(tiny_sam.parent.parent))
    assert cli(jsonl, run, "--refiner", "tiny", "--device", "cpu") == 0
    assert sorted(read) == sorted(paths.values())  # through the released reader, once per image
    expect = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in sorted(paths.values())]
    assert len(fed) == 2
    for got in fed:
        assert any(got.shape == e.shape and np.array_equal(got, e) for e in expect)
    pil = np.asarray(Image.open(paths["A.png"]).convert("RGB"))
    if mode == "RGBA":  # alpha dropped, not composited: the same as PIL's convert here
        assert any(np.array_equal(got, pil) for got in fed)


# ------------------------------------------------------------------------------ checkpoint errors
def test_a_bad_checkpoint_file_is_one_short_line(crafted, tmp_path, capsys):
    jsonl, run, _ = crafted
    bad = tmp_path / "sam_vit_h_4b8939.pth"
    bad.write_bytes(b"this is not a checkpoint")
    assert exit_status(cli, jsonl, run, "--sam-checkpoint", str(bad)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SAM checkpoint") and len(lines[0]) < 400, lines
    assert "--no-sam" in lines[0] and "weights_only" not in lines[0]
    assert not run.mask_png("a1").exists()


def test_a_checkpoint_with_code_is_refused_in_one_line(tmp_path):
    import os

    import torch

    from rsvg_zeroov.models.base import ModelNotFound
    from rsvg_zeroov.models.refiners import load_refiner

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelNotFound) as exc:
        load_refiner("vit_b", str(tmp_path / "evil.pth"))
    assert "\n" not in str(exc.value) and "posix" in str(exc.value) and not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------ --from
def test_ablation_from_another_run_equals_the_in_place_run(crafted, tmp_path):
    jsonl, run, _ = crafted
    new = tmp_path / "nosam"
    assert cli(jsonl, run, "--no-sam") == 0
    import rs_evolve

    argv = ["--dataset", "jsonl", "--root", str(jsonl), "--split", "test", "--from", str(run.root),
            "--out", str(new), "--no-sam"]
    assert rs_evolve.main(argv) == 0
    for sid in IDS:
        assert (new / "masks" / f"{sid}.png").read_bytes() == run.mask_png(sid).read_bytes()
    assert (new / "predictions.jsonl").read_bytes() == run.predictions.read_bytes()
    assert not (new / "overview").exists() and not (new / "focus").exists()
    from rsvg_zeroov.rundir import RunDir

    assert read_evolve_config(RunDir(new))["run"]["source_run"] == str(run.root)


def test_a_run_folder_without_dumps_names_them_and_suggests_from(crafted, tmp_path, capsys):
    jsonl, _run, _ = crafted
    from rsvg_zeroov.rundir import RunDir

    empty = RunDir(tmp_path / "empty")
    assert exit_status(cli, jsonl, empty, "--no-sam") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage 1" in err[0] and "stage 2" in err[0] and "--from" in err[0], err
    assert not (empty.root / "masks").exists()


def test_a_recorded_config_reruns_the_same_settings(crafted, tmp_path):
    jsonl, run, _ = crafted
    assert cli(jsonl, run, "--no-sam", "--alpha", "0.6", "--k", "3") == 0
    import rs_evolve

    again = tmp_path / "again"
    argv = ["--dataset", "jsonl", "--root", str(jsonl), "--split", "test", "--from", str(run.root),
            "--out", str(again), "--config", str(run.config("evolve"))]
    assert rs_evolve.main(argv) == 0
    from rsvg_zeroov.rundir import RunDir

    cfg = read_evolve_config(RunDir(again))
    assert (cfg["alpha"], cfg["k"], cfg["refiner"]) == (0.6, 3, None)
    for sid in IDS:
        assert (again / "masks" / f"{sid}.png").read_bytes() == run.mask_png(sid).read_bytes()
