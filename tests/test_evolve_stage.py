"""The stage 3 driver on crafted dumps: masks, boxes, records, resume, failures, SAM, shards."""
import json
import os

import numpy as np
import pytest

from evolve_helpers import (CRAFTED, cli, crafted, exit_status, make_crafted_run, read_evolve_config,  # noqa: F401
                            read_jsonl, read_mask, tiny_sam, write_focus)
from rsvg_zeroov.rundir import FOCUS_16TO32, FOCUS_64TO32, save_npy

IDS = [s["id"] for s in CRAFTED]


def _box(mask):
    ys, xs = np.nonzero(mask)
    return None if ys.size == 0 else [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def test_no_sam_masks_boxes_records_and_config(crafted):
    jsonl, run, expected = crafted
    assert cli(jsonl, run, "--no-sam") == 0
    preds = read_jsonl(run.predictions)
    assert [p["sample_id"] for p in preds] == IDS  # the run's order, not the image grouping
    for p in preds:
        sid = p["sample_id"]
        mask = read_mask(run.root / p["mask"])
        np.testing.assert_array_equal(mask, expected[sid])
        assert p["box"] == _box(expected[sid]) and p["sam_score"] is None
        assert set(p) == {"sample_id", "box", "mask", "sam_score"}
    assert preds[IDS.index("z1")]["box"] is None and not read_mask(run.mask_png("z1")).any()
    cfg = read_evolve_config(run)
    assert (cfg["k"], cfg["tau"], cfg["alpha"], cfg["resolutions"], cfg["fidelity"]) == (7, 0.3, 0.4, [32, 64], "released")
    assert cfg["sam"] is False and cfg["use_dm"] and cfg["use_evolve"] and cfg["stage"] == "evolve"
    assert not run.failures.exists() or run.read_failures() == []


def test_resume_skips_done_samples_and_a_new_setting_recomputes(crafted):
    jsonl, run, _ = crafted

    def inodes():  # every write is a new file renamed into place: a new inode
        return {sid: os.stat(run.mask_png(sid)).st_ino for sid in IDS}

    assert cli(jsonl, run, "--no-sam") == 0
    stamp, records = inodes(), run.evolve_records(0).read_text()
    assert len(records.splitlines()) == len(IDS)
    assert cli(jsonl, run, "--no-sam") == 0
    assert inodes() == stamp and run.evolve_records(0).read_text() == records  # nothing redone
    assert cli(jsonl, run, "--no-sam", "--alpha", "0.9") == 0
    assert all(inodes()[sid] != stamp[sid] for sid in IDS)
    assert read_evolve_config(run)["alpha"] == 0.9
    assert len(run.evolve_records(0).read_text().splitlines()) == 2 * len(IDS)
    before = inodes()
    # a torn last line (a killed process) is skipped; a mask cut short or edited by hand is redone
    with open(run.evolve_records(0), "a") as f:
        f.write('{"sample_id": "a1", "box"')
    run.mask_png("a2").write_bytes(run.mask_png("a2").read_bytes()[:-12])
    png = bytearray(run.mask_png("b1").read_bytes())
    png[-20] ^= 0xFF
    run.mask_png("b1").write_bytes(bytes(png))
    assert cli(jsonl, run, "--no-sam", "--alpha", "0.9") == 0
    after = inodes()
    assert {sid for sid in IDS if after[sid] != before[sid]} == {"a2", "b1"}
    preds = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    assert [p["sample_id"] for p in preds] == IDS


def test_bad_dumps_are_recorded_by_file_name_and_the_rest_completes(crafted):
    jsonl, run, expected = crafted
    save_npy(run.focus_file("b1", FOCUS_64TO32["released"]), np.zeros((512, 512), np.float32))
    run.overview_npy("a2").unlink()
    assert cli(jsonl, run, "--no-sam", "--batch-size", "4") == 1
    errors = {f["sample_id"]: f["error"] for f in run.read_failures()}
    assert set(errors) == {"b1", "a2"}
    assert FOCUS_64TO32["released"] in errors["b1"] and "512" in errors["b1"]
    assert "a2.npy" in errors["a2"] and "missing" in errors["a2"]
    assert [p["sample_id"] for p in read_jsonl(run.predictions)] == ["a1", "z1"]
    np.testing.assert_array_equal(read_mask(run.mask_png("a1")), expected["a1"])
    # repaired: the rerun does only the failed samples and clears their failure records
    make_crafted_run(run.root.parent)
    assert cli(jsonl, run, "--no-sam") == 0
    assert run.read_failures() == [] and len(read_jsonl(run.predictions)) == 4


def test_sam_refinement_embeds_each_image_once(crafted, tiny_sam, monkeypatch):
    from segment_anything import SamPredictor

    jsonl, run, _ = crafted
    monkeypatch.setenv("RSVG_ZEROOV_TINY_DIR", str(tiny_sam.parent.parent))
    calls = []
    real = SamPredictor.set_image
    monkeypatch.setattr(SamPredictor, "set_image", lambda self, image, *a, **k: (calls.append(image.shape), real(self, image, *a, **k))[1])
    assert cli(jsonl, run, "--sam-checkpoint", "tiny", "--device", "cpu") == 0
    assert sorted(calls) == [(40, 40, 3), (64, 48, 3)]  # images A and B once each
    preds = {p["sample_id"]: p for p in read_jsonl(run.predictions)}
    for sid, spec in ((s["id"], s) for s in CRAFTED):
        mask = read_mask(run.root / preds[sid]["mask"])
        assert mask.shape == spec["hw"] and preds[sid]["box"] == _box(mask)
    assert preds["z1"]["sam_score"] is None and preds["z1"]["box"] is None  # empty mask: SAM skipped
    assert all(isinstance(preds[s]["sam_score"], float) for s in ("a1", "a2", "b1"))
    cfg = read_evolve_config(run)
    assert cfg["sam"] is True and cfg["sam_resolved"]["type"] == "tiny"


def test_explicit_tiny_checkpoint_path_loads_through_the_registry(tiny_sam, tmp_path, monkeypatch):
    from rsvg_zeroov.models.registry import ModelNotFound, load_sam
    from rsvg_zeroov.tiny.sam import build_tiny_sam

    monkeypatch.setenv("RSVG_ZEROOV_TINY_DIR", str(tmp_path / "nowhere"))  # must not be consulted
    _model, sam_type, path = load_sam(str(tiny_sam), "tiny")
    assert sam_type == "tiny" and path == tiny_sam
    assert build_tiny_sam(tmp_path / "again.pth", seed=0).read_bytes() == tiny_sam.read_bytes()
    with pytest.raises(ModelNotFound, match="not found"):
        load_sam(str(tmp_path / "none.pth"), "tiny")


def test_missing_sam_checkpoint_is_one_clear_error(crafted, tmp_path, capsys):
    jsonl, run, _ = crafted
    assert exit_status(cli, jsonl, run, "--sam-checkpoint", str(tmp_path / "sam_vit_h.pth")) == 2
    err = capsys.readouterr().err
    assert "sam_vit_h.pth not found" in err and "--no-sam" in err
    assert not run.mask_png("a1").exists()


def test_save_maps_and_ablations_are_recorded(crafted):
    jsonl, run, _ = crafted
    assert cli(jsonl, run, "--no-sam", "--save-maps", "--no-dm", "--no-evolve", "--fidelity", "corrected") == 0
    with np.load(run.maps_npz("a1")) as maps:
        assert set(maps.files) == {"c", "a_cs", "seeds", "region", "a_e"}
        assert all(maps[k].shape == (32, 32) for k in maps.files)
        np.testing.assert_array_equal(maps["a_cs"], maps["c"])  # --no-dm
        np.testing.assert_array_equal(maps["a_e"], maps["a_cs"])  # --no-evolve
        assert maps["region"].all()
    cfg = read_evolve_config(run)
    assert (cfg["use_dm"], cfg["use_evolve"], cfg["fidelity"], cfg["save_maps"]) == (False, False, "corrected", True)


def test_resolution_16_needs_its_dump(crafted):
    jsonl, run, expected = crafted
    assert cli(jsonl, run, "--no-sam", "--resolutions", "16,32,64") == 1
    errors = run.read_failures()
    assert len(errors) == 4 and all(FOCUS_16TO32["released"] in e["error"] for e in errors)
    for sid in IDS:  # S = I at every resolution: the same masks as with 32 + 64
        write_focus(run, sid, np.eye(1024, dtype=np.float32), np.eye(1024, dtype=np.float32),
                    s16=np.eye(1024, dtype=np.float32))
    assert cli(jsonl, run, "--no-sam", "--resolutions", "16,32,64") == 0
    np.testing.assert_array_equal(read_mask(run.mask_png("b1")), expected["b1"])


def test_shards_write_their_samples_and_predictions_cover_the_run(crafted):
    jsonl, run, _ = crafted
    assert cli(jsonl, run, "--no-sam", "--shard", "1/2") == 0
    assert [p["sample_id"] for p in read_jsonl(run.predictions)] == ["b1", "z1"]
    assert cli(jsonl, run, "--no-sam", "--shard", "0/2") == 0
    assert [p["sample_id"] for p in read_jsonl(run.predictions)] == IDS


def test_bad_arguments_exit_cleanly(crafted, capsys):
    """Every bad setting: exit status 2 and one line on stderr, before any sample is touched."""
    jsonl, run, _ = crafted
    for bad in (["--fidelity", "paper"], ["--resolutions", "8"], ["--resolutions", "x"], ["--k", "0"],
                ["--shard", "2/2"], ["--shard", "half"], ["--sweep", "k=5", "--shard", "0/2"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            cli(jsonl, run, "--no-sam", *bad)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, bad
        if lines[0].startswith("usage:"):  # argparse's own checks (choices): usage, then the error
            assert ": error:" in lines[-1], (bad, lines)
        else:  # ours: exactly one line
            assert len(lines) == 1 and lines[0].startswith("error: "), (bad, lines)
    assert not (run.root / "masks").exists()


def test_mask_png_round_trips_through_every_reader(tmp_path):
    import cv2
    from PIL import Image

    from rsvg_zeroov.evaluation.predictions import decode_gray8_png
    from rsvg_zeroov.rundir import save_mask_png

    mask = np.random.default_rng(0).random((37, 53)) > 0.7
    save_mask_png(tmp_path / "m.png", mask)
    expect = mask.astype(np.uint8) * 255
    pil = np.asarray(Image.open(tmp_path / "m.png"))
    assert pil.dtype == np.uint8 and np.array_equal(pil, expect)
    assert np.array_equal(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED), expect)
    assert np.array_equal(decode_gray8_png((tmp_path / "m.png").read_bytes()), expect)


def test_georef_writes_a_geotiff_beside_each_georeferenced_mask(crafted):
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    jsonl, run, expected = crafted
    png = next(jsonl.parent.rglob("A.png"))  # A is made a georeferenced GeoTIFF of the same pixels
    pixels = np.asarray(Image.open(png).convert("RGB"))
    tif, transform = png.with_suffix(".tif"), from_origin(500000.0, 4600000.0, 0.5, 0.5)
    with rasterio.open(tif, "w", driver="GTiff", width=48, height=64, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(pixels.transpose(2, 0, 1))
    jsonl.write_text(jsonl.read_text().replace("A.png", "A.tif"))
    assert cli(jsonl, run, "--no-sam") == 0
    before = read_jsonl(run.predictions)
    assert cli(jsonl, run, "--no-sam", "--georef") == 0  # same predictions: only the .tif files are added
    assert read_jsonl(run.predictions) == before
    for sid in ("a1", "a2"):
        with rasterio.open(run.mask_tif(sid)) as src:
            assert src.crs.to_epsg() == 32633 and src.transform == transform and src.shape == (64, 48)
            np.testing.assert_array_equal(src.read(1) == 255, expected[sid])
    assert not run.mask_tif("b1").exists() and not run.mask_tif("z1").exists()  # B.png has no georeferencing
    assert read_evolve_config(run)["georef"] is True
    run.mask_tif("a2").unlink()  # resume: only the sample missing its GeoTIFF is written again
    before = run.mask_png("a1").stat().st_mtime_ns
    assert cli(jsonl, run, "--no-sam", "--georef") == 0
    assert run.mask_tif("a2").is_file() and run.mask_png("a1").stat().st_mtime_ns == before
