"""Scenes with the tiny models (rsvg_zeroov.scene, ground.py): the plain path equals Grounder.ground,
the coarse-to-fine path keeps nodata out of the mask and shares reads and embeddings, a 12,000 x
12,000 uint16 GeoTIFF grounds in bounded memory, and data set runs read deep rasters."""
import json
import logging
import math
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:
    sys.path.insert(0, str(REPO / "bench"))
from bench_scene import run_measured, write_scene  # noqa: E402

README = (REPO / "README.md").read_text()
BUDGET = 224 * 224  # the tiny VLM's pixel budget here: 8 x 8 cells
FAST = ["--tiny", "--max-new-tokens", "2", "--inversion", "noise", "--max-pixels", str(BUDGET)]
FULL_ARRAY_MB = 12000 * 12000 * 3 * 2 / 2**20  # the 12,000 x 12,000 x 3 uint16 scene as one array (MiB)
# The README's "Your own imagery" commands (tests/test_readme.py lists them as run here).
FIRST = 'python ground.py --image scene.tif --text "the storage tank" --vector gpkg --out grounded/'
SECOND = ("python ground.py --image scene.tif --bands 3,2,1 --texts phrases.txt --vector gpkg,geojson "
          "--simplify 0.5 --out grounded/")


@pytest.fixture(scope="module")
def grounder(tiny_dir):
    from rsvg_zeroov import Grounder, PipelineConfig

    config = PipelineConfig.quick_tiny().replace(overview={"max_new_tokens": 2, "max_pixels": BUDGET},
                                                 focus={"inversion": "noise"})
    return Grounder(config).load()


def _tif(path, data, **profile):
    c, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name,
                       crs="EPSG:32633", transform=from_origin(500000.0, 4200000.0, 0.5, 0.5), **profile) as dst:
        dst.write(data)
    return path


def _picture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    a[h // 4:h // 2, w // 3:w // 2] = [230, 30, 30]
    return a


def _readme_python_block() -> str:
    block = re.search(r"## Your own imagery\n.*?```python\n(.*?)```", README, flags=re.S).group(1)
    assert "ground_scene(grounder" in block and "write_scene_outputs" in block
    return block


def test_a_scene_that_fits_the_budget_gives_todays_result(grounder, tmp_path, monkeypatch, caplog):
    """8-bit GeoTIFF: what ground.py gave before (Grounder.ground on the bands read as they are).
    uint16 RGBA TIFF without CRS, through the README's Python block: Grounder.ground on the file
    (every stage reads it through the raster reader) without the transparent pixels; pixel outputs
    only."""
    from rsvg_zeroov.scene import ground_scene

    rgb = _picture(64, 80)
    eight = _tif(tmp_path / "eight.tif", rgb.transpose(2, 0, 1).copy())
    with rasterio.open(eight) as src:
        before = grounder.ground(np.ascontiguousarray(src.read().transpose(1, 2, 0)), "the red square")
    (now,) = ground_scene(grounder, eight, ["the red square"])
    assert now.plain and now.crs and now.box == before.box and now.score == before.sam_score
    assert np.array_equal(now.full_mask(), before.mask) and now.answer == before.answer
    rgba = np.concatenate([rgb.transpose(2, 0, 1).astype(np.uint16) * 40, np.full((1, 64, 80), 65535, np.uint16)])
    rgba[3, :, :24] = 0  # transparent: no data
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=80, height=64, count=4, dtype="uint16",
                       photometric="RGB", alpha="YES") as dst:
        dst.write(rgba)
    monkeypatch.chdir(tmp_path)
    namespace = {"grounder": grounder}
    with caplog.at_level(logging.WARNING):
        exec(_readme_python_block(), namespace)  # noqa: S102 - our README
    (now,) = namespace["results"]
    on_file = grounder.ground(tmp_path / "scene.tif", "the storage tank")
    assert on_file.mask[:, :24].any(), "the tiny models' mask misses the alpha region: the test proves nothing"
    expected = on_file.mask.copy()
    expected[:, :24] = False  # the alpha region is never in the mask; the rest is Grounder.ground's
    assert now.plain and not now.crs and np.array_equal(now.full_mask(), expected)
    assert "no CRS: pixel outputs only" in caplog.text
    assert sorted(p.name for p in (tmp_path / "grounded").iterdir()) == ["box.json", "mask.png", "overlay.png"]


def test_coarse_to_fine_bands_nodata_and_shared_work(grounder, tmp_path, monkeypatch):
    """A 4-band uint16 raster beyond the budget, with nodata stripes everywhere: --bands, windows at
    native resolution, no nodata pixel in any mask (the raw window masks do cover some), one
    overview read for the three phrases, one refiner embedding per window (the first and third
    phrase, the same text, share theirs); the overview phase is reported to the Grounder's progress
    before the windows' stages, and timed."""
    from rsvg_zeroov import geo
    from rsvg_zeroov.app.service import scene_timings, timing_rows
    from rsvg_zeroov.raster import Raster, RasterOptions
    from rsvg_zeroov.scene import SCENE_OVERVIEW, SceneOptions, ground_scene, write_scene_outputs
    from rsvg_zeroov.vectors import VectorOptions

    data = (np.random.default_rng(1).random((4, 700, 900)) * 3000 + 500).astype(np.uint16)
    data[:, 200:300, 500:650] = np.array([200, 200, 9000, 100], np.uint16)[:, None, None]
    stripes = (np.arange(900) % 50) < 8
    data[:, :, stripes] = 0
    path = _tif(tmp_path / "four.tif", data, nodata=0, tiled=True, blockxsize=256, blockysize=256)
    reads, embeds = [], []
    original = Raster.overview
    monkeypatch.setattr(Raster, "overview", lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
    set_image = grounder.refiner.set_image
    monkeypatch.setattr(grounder.refiner, "set_image", lambda rgb: embeds.append(rgb.shape) or set_image(rgb))
    events = []
    monkeypatch.setattr(grounder, "progress", events.append)
    texts = ["the red roof", "the blue pool", "the red roof"]
    results = ground_scene(grounder, path, texts, SceneOptions(min_window=160), RasterOptions(bands=(3, 2, 1)))
    assert len(reads) == 1 and results[0].image is results[1].image  # the overview: read once, shared
    windows = [p.window for r in results for p in r.pieces]
    assert results[0].windows == results[2].windows and len(set(windows)) < len(windows)  # a shared window
    assert len(embeds) == len(set(windows))  # one embedding per window, whatever the phrases in it
    scene = [e for e in events if e.stage == SCENE_OVERVIEW]
    assert events[:len(scene)] == scene and scene[0].step == 0 and scene[0].index == 0  # first, then windows
    assert {e.detail for e in scene} >= {"reading overview", "stage 1 answer tokens"}
    assert [e.stage for e in events[len(scene):] if e.step == 0] == ["overview", "focus", "evolve"] * len(set(windows))
    timings = scene_timings(results[1])
    assert timings[SCENE_OVERVIEW] == results[1].overview_seconds is not None
    assert timings["total"] == pytest.approx(timings[SCENE_OVERVIEW] + sum(p.result.timings["total"]
                                                                            for p in results[1].pieces))
    assert timing_rows(timings)[0] == ("stage 1/3 overview of the whole scene (reduced read + VLM attention)",
                                       round(timings[SCENE_OVERVIEW], 3))
    raw_on_nodata = 0
    for r in results:
        assert not r.plain and r.raster["bands"] == [3, 2, 1] and r.overview_map is not None
        for p in r.pieces:
            c, row, w, h = p.window
            assert p.factor == 1 and max(w, h) <= math.isqrt(BUDGET) and min(w, h) >= 160
            assert not p.mask[:, stripes[c:c + w]].any()
            raw_on_nodata += int(p.result.mask[:, stripes[c:c + w]].sum())
    assert raw_on_nodata > 0, "the tiny models' masks never touched the nodata: the test proves nothing"
    record = write_scene_outputs(results[0], tmp_path / "out", VectorOptions(formats=("gpkg",)))
    with rasterio.open(tmp_path / "out" / "mask.tif") as m:
        assert (m.width, m.height, m.crs.to_epsg(), m.nodata) == (900, 700, 32633, geo.MASK_NODATA)
        out = m.read(1)
    assert (out[:, stripes] == geo.MASK_NODATA).all() and np.array_equal(out == 255, results[0].full_mask())
    assert record["box"] == results[0].box and record["scene"]["plain"] is False
    assert set(record["outputs"]) >= {"box.json", "overlay.png", "mask.tif", "mask.gpkg"}
    assert "mask.png" not in record["outputs"]  # beyond the budget: the mask is mask.tif


def _run(script_args, cwd, tiny_dir):
    """Run ``python SCRIPT ARGS`` in a fresh process: (return code, stderr, its peak RSS in MB)."""
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", RSVG_ZEROOV_PROGRESS="")
    result = run_measured(script_args, cwd, env)
    return result["returncode"], result["stderr"], result["peak_mb"]


def test_a_12000_pixel_scene_grounds_in_bounded_memory(tiny_dir, tmp_path):
    """The README's two "Your own imagery" commands: the first on a 448 x 448 GeoTIFF (models and
    pipeline alone), the second on a 12,000 x 12,000 x 3 uint16 tiled GeoTIFF with a nodata border.

    Bound: the large scene's peak RSS exceeds the small one's by less than half the scene's
    full-resolution array (864 MB), i.e. neither that array nor its 8-bit copy (432 MB) was ever in
    memory. Measured on a 2-core machine: see BENCHMARKS.md, "Scenes"."""
    from rsvg_zeroov import geo

    assert FIRST in README and SECOND in README
    write_scene(tmp_path / "scene.tif", 448, border=40)
    ground = [str(REPO / "ground.py")]
    first = shlex.split(FIRST)[2:]
    rc, err, small_mb = _run([*ground, *first, *FAST], tmp_path, tiny_dir)
    assert rc == 0, err
    big = tmp_path / "big"
    big.mkdir()
    write_scene(big / "scene.tif", 12000)
    (big / "phrases.txt").write_text("the storage tank\nthe bright roof\n")
    second = shlex.split(SECOND)[2:]
    rc, err, big_mb = _run([*ground, *second, *FAST], big, tiny_dir)
    assert rc == 0, err
    print(f"peak RSS: 448 x 448 scene {small_mb:.0f} MB, 12000 x 12000 scene {big_mb:.0f} MB")
    assert big_mb - small_mb < FULL_ARRAY_MB / 2, (small_mb, big_mb)
    assert "reading overview" in err and "focus windows" in err and "writing mask.tif" in err  # progress
    with rasterio.open(big / "scene.tif") as src:
        transform, crs = src.transform, src.crs
    for i in (1, 2):
        out = big / "grounded" / f"phrase-{i:02d}"
        with rasterio.open(out / "mask.tif") as m:
            assert (m.width, m.height, m.transform, m.crs, m.nodata) == (12000, 12000, transform, crs, geo.MASK_NODATA)
            border = m.read(1, window=((0, 400), (0, 12000)))
        assert (border == geo.MASK_NODATA).all()  # the nodata border is never in the mask
        record = json.loads((out / "box.json").read_text())
        assert record["width"] == 12000 and record["scene"]["plain"] is False and record["crs"] == "EPSG:32633"
        assert record["raster_options"]["bands"] == [3, 2, 1] and record["vector_options"]["simplify"] == 0.5
        if record["box"] is not None:
            x1, y1, x2, y2 = record["box"]
            assert 400 <= x1 <= x2 < 11600 and 400 <= y1 <= y2 < 11600
            assert record["box_crs"] == [500000.0 + x1 / 2, 4200000.0 - (y2 + 1) / 2,
                                         500000.0 + (x2 + 1) / 2, 4200000.0 - y1 / 2]
    import fiona

    with fiona.open(tmp_path / "grounded" / "mask.gpkg") as src:
        assert src.crs.to_epsg() == 32633 and src.schema["properties"].keys() >= {"expression", "score", "area"}
    gj = json.loads((big / "grounded" / "phrase-01" / "mask.geojson").read_text())
    assert "crs" not in gj  # RFC 7946: WGS84 longitude / latitude
    for f in gj["features"]:
        lon, lat = f["geometry"]["coordinates"][0][0]
        assert 14.9 < lon < 15.1 and 37.9 < lat < 38.0
    index = json.loads((big / "grounded" / "phrases.json").read_text())
    assert [p["text"] for p in index] == ["the storage tank", "the bright roof"]


def test_data_set_runs_read_deep_rasters_and_record_a_broken_tile(tiny_dir, tmp_path):
    """Stage 1 of a JSONL data set: a 3-band uint16 tile and a float tile are read (the listing no
    longer stops at them); a broken .tif is one recorded failure and the run goes on."""
    data = (np.random.default_rng(2).random((3, 64, 72)) * 4000).astype(np.uint16)
    with rasterio.open(tmp_path / "deep.tif", "w", driver="GTiff", width=72, height=64, count=3,
                       dtype="uint16") as dst:
        dst.write(data)
    _tif(tmp_path / "float.tif", np.random.default_rng(3).random((1, 60, 60)).astype(np.float32), nodata=-9999.0)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    rows = [("deep", "deep.tif"), ("float", "float.tif"), ("broken", "broken.tif")]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"id": i, "image": f, "expression": "the field"}) + "\n"
                                                 for i, f in rows))
    cmd = [str(REPO / "llmattn.py"), "--dataset", "jsonl", "--root", str(tmp_path), "--split",
           "test", "--out", str(tmp_path / "run"), "--model", "tiny", "--max-new-tokens", "2"]
    rc, err, _mb = _run(cmd, tmp_path, tiny_dir)
    assert rc != 0  # a failed sample makes the exit status non-zero ...
    assert (tmp_path / "run" / "overview" / "deep.npy").is_file() and (tmp_path / "run" / "overview" / "float.npy").is_file()
    failures = [json.loads(line) for line in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    assert [f["sample_id"] for f in failures] == ["broken"] and "broken.tif" in failures[0]["error"], err
