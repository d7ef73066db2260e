"""ground.py: one image, one phrase, all three stages in one process (tiny offline models)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FAST = ["--tiny", "--inversion", "ddim", "--steps", "2", "--max-new-tokens", "4"]


def _run(args, env_dir, cwd):
    import os

    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(env_dir), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(REPO / "ground.py"), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def _scene(h=96, w=128):
    rng = np.random.default_rng(0)
    a = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    a[20:50, 30:70] = [230, 30, 30]
    return a


def test_ground_png_writes_mask_box_overlay(tiny_dir, tmp_path):
    Image.fromarray(_scene()).save(tmp_path / "scene.png")
    out = _run(["--image", "scene.png", "--text", "the red square", "--out", "res", *FAST], tiny_dir, tmp_path)
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / "res" / "box.json").read_text())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == rec["box"]
    mask = np.asarray(Image.open(tmp_path / "res" / "mask.png"))
    assert mask.shape == (96, 128) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "res" / "overlay.png")).shape == (96, 128, 3)
    if rec["box"] is not None:
        ys, xs = np.nonzero(mask)
        assert rec["box"] == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert rec["models_are_tiny_stand_ins"] is True


def test_ground_geotiff_keeps_georeferencing(tiny_dir, tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    img = _scene(64, 80).transpose(2, 0, 1).astype(np.uint16) * 40  # 16-bit multispectral-like
    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=80, height=64, count=3,
                       dtype="uint16", crs="EPSG:32633", transform=transform) as dst:
        dst.write(img)
    out = _run(["--image", "scene.tif", "--text", "the red square", "--out", "res", *FAST], tiny_dir, tmp_path)
    assert out.returncode == 0, out.stderr
    with rasterio.open(tmp_path / "res" / "mask.tif") as m:
        assert m.crs.to_epsg() == 32633 and m.transform == transform and m.count == 1
        mask = m.read(1)
    png = np.asarray(Image.open(tmp_path / "res" / "mask.png"))
    assert np.array_equal(mask, png)
    gj = json.loads((tmp_path / "res" / "mask.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and "32633" in gj["crs"]["properties"]["name"]
    for f in gj["features"]:  # polygon corners lie inside the raster's footprint, in metres
        xs, ys = zip(*f["geometry"]["coordinates"][0])
        assert 500000.0 <= min(xs) and max(xs) <= 500040.0 and 4199968.0 <= min(ys) and max(ys) <= 4200000.0
    def ring_area(ring):  # shoelace formula, square metres
        return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:]))) / 2

    polygons = [f["geometry"]["coordinates"] for f in gj["features"]]
    total = sum(ring_area(p[0]) - sum(ring_area(h) for h in p[1:]) for p in polygons)
    assert total == pytest.approx(0.25 * int((mask > 0).sum()))  # 0.5 m pixels


def test_ground_clear_errors(tmp_path, tiny_dir):
    out = _run(["--image", "missing.png", "--text", "x", *FAST], tiny_dir, tmp_path)
    assert out.returncode == 2 and "missing.png" in out.stderr and "Traceback" not in out.stderr
    Image.fromarray(_scene()).save(tmp_path / "s.png")
    out = _run(["--image", "s.png", "--text", "  ", *FAST], tiny_dir, tmp_path)
    assert out.returncode == 2 and "empty" in out.stderr
    out = _run(["--image", "s.png", "--text", "x", "--vlm", str(tmp_path / "nope")], tiny_dir, tmp_path)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
