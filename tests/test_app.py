"""The interactive page (app.py): served on localhost with the tiny models and driven in headless
Chromium as a user would (upload, type, Ground), its results checked against the library's Grounder
with the same settings; plus the pipeline's progress reports, timings and reconfigured Grounder.

One app process serves the whole module (the README's ``python app.py --tiny`` with quick settings
and small upload limits appended); the README's screenshot command runs against it (its URL
appended), and its real-model command on this machine, where those weights are absent. Without a
Chromium the browser tests skip, saying why (``.ci/run`` installs one where apt-get can).
"""
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The README's three commands ("Interactive page"): the tiny launch, the real models', the screenshot.
LAUNCH, REAL, SHOT = re.search(r"## Interactive page\n\n```bash\n(.*?)```", (REPO / "README.md").read_text(),
                               flags=re.S).group(1).strip().splitlines()
QUICK = ["--steps", "2", "--max-new-tokens", "4", "--device", "cpu"]
LIMITS = ["--max-upload-mb", "1", "--max-upload-pixels", "60000"]
TEXT = "the red square"


def _quick_config(**changes):
    """The config the app builds from LAUNCH + QUICK, written independently."""
    from rsvg_zeroov import PipelineConfig

    config = PipelineConfig.quick_tiny(device="cpu").replace(focus={"num_steps": 2}, overview={"max_new_tokens": 4})
    return config.replace(**changes) if changes else config


def _scene(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    a[20:50, 30:70] = [230, 30, 30]
    return a


def _browser():
    from rsvg_zeroov.app.browser import find_chromium

    found = find_chromium()
    if found is None:
        reason = "no Chromium on this machine (apt-get install chromium; .ci/run does it where it can)"
        warnings.warn(f"tests/test_app.py: browser tests skipped: {reason}")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_process(tiny_dir, tmp_path_factory):
    """(process, url, log path): app.py starting on a free local port, for the whole module. Its
    --workdir (the downloads) is neither in its current folder nor in its temporary one (TMPDIR),
    the two folders Gradio serves files from without ``allowed_paths``."""
    tmp = tmp_path_factory.mktemp("app")
    port = _free_port()
    log = tmp / "app.log"
    cwd, systemp = tmp / "cwd", tmp / "systemp"
    cwd.mkdir()
    systemp.mkdir()
    argv = [sys.executable, str(REPO / "app.py"), *LAUNCH.split()[2:], *QUICK, *LIMITS, "--port", str(port),
            "--workdir", str(tmp / "work")]
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", RSVG_ZEROOV_PROGRESS="0",
               TMPDIR=str(systemp))
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def served(app_process, expected):
    """(url, log path) once the app serves; the reference results are computed while it starts."""
    proc, url, log = app_process
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"app.py exited with {proc.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"app.py is not serving after 300 s: {log.read_text()[-3000:]}"
        try:
            urllib.request.urlopen(url, timeout=2)
            return url, log
        except OSError:
            time.sleep(0.3)


@pytest.fixture(scope="module")
def browser(served):
    from rsvg_zeroov.app.browser import chromium

    with chromium(_browser()) as b:
        context = b.new_context()  # one context: the tabs share the page's cached scripts
        yield context
        context.close()


@pytest.fixture
def page(browser, served):
    from rsvg_zeroov.app.browser import open_page

    tab = open_page(browser, served[0])
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def grounder(tiny_dir):
    """The library's Grounder with the app's launch settings (the reference)."""
    from rsvg_zeroov import Grounder

    return Grounder(_quick_config()).load()


@pytest.fixture(scope="module")
def expected(grounder, files):
    """The Grounder's result for the scene and TEXT (what every request for them must show)."""
    return grounder.ground(files / "scene.png", TEXT)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uploads")
    Image.fromarray(_scene()).save(tmp / "scene.png")
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    Image.fromarray(_scene(300, 300, seed=1)).save(tmp / "wide.png")  # 90,000 pixels > --max-upload-pixels 60000
    return tmp


def _fetch(page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, (url, response.status)
    return response.body()


def test_served_locally_without_share_link_or_analytics(served):
    url, log = served
    text = log.read_text()
    assert "Running on local URL:  http://127.0.0.1:" in text and "gradio.live" not in text
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    assert config["analytics_enabled"] is False and config["max_file_size"] == 1 << 20


def test_launch_allows_serving_the_workdir(tmp_path, monkeypatch):
    """app.py --workdir anywhere: Gradio is told it may serve that folder (without allowed_paths it
    refuses every download outside the current and temporary folders, after the grounding ran).
    No model is loaded and nothing is served here; the browser tests serve such a workdir."""
    import gradio as gr

    import app
    from rsvg_zeroov.pipeline import Grounder

    launched = {}
    monkeypatch.setattr(Grounder, "load", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    monkeypatch.chdir(tmp_path)
    assert app.run([*LAUNCH.split()[2:], "--workdir", "work"]) == 0
    assert launched["allowed_paths"] == [str(tmp_path.resolve() / "work")]
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False


def test_upload_limit_flags(caplog):
    """--max-upload-pixels is the upload limit (ground.py's --max-pixels is the VLM's budget); the
    app's former --max-pixels still works, with a warning; launch settings beyond the page's ranges
    stop the start before any model loads."""
    import logging

    import app
    from rsvg_zeroov.runner import UsageError

    parse = app.build_parser().parse_args
    assert app.upload_limits(parse(["--max-upload-pixels", "500"])).max_pixels == 500
    assert app.upload_limits(parse([])).max_pixels == 100_000_000
    with caplog.at_level(logging.WARNING, logger="app"):
        assert app.upload_limits(parse(["--max-pixels", "700"])).max_pixels == 700
    assert "--max-pixels is deprecated" in caplog.text and "--max-upload-pixels" in caplog.text
    with pytest.raises(UsageError, match="--max-upload-pixels only"):
        app.upload_limits(parse(["--max-pixels", "1", "--max-upload-pixels", "2"]))
    with pytest.raises(UsageError, match="must be positive"):
        app.upload_limits(parse(["--max-upload-pixels", "0"]))
    with pytest.raises(ValueError, match="from 1 to 100"):
        app.run([*LAUNCH.split()[2:], "--steps", "101"])


def test_upload_ground_gives_the_grounders_box(page, files, grounder, expected):
    from rsvg_zeroov.app.browser import ground
    from rsvg_zeroov.runner import jsonable

    assert page.get_by_text("the maps, masks and answers are noise").is_visible()  # the --tiny banner
    shown = ground(page, files / "scene.png", TEXT)
    assert json.loads(shown.box) == expected.box and shown.answer == expected.answer
    assert shown.maps == len(expected.layers) + 6  # each layer, A_C, A_CS, region, A_E, 2 masks
    assert set(shown.downloads) == {"mask.png", "box.json"}
    record = json.loads(_fetch(page, shown.downloads["box.json"]))
    assert record["box"] == expected.box and record["models_are_tiny_stand_ins"] is True
    assert record["config"] == jsonable(grounder.config)
    mask = np.asarray(Image.open(io.BytesIO(_fetch(page, shown.downloads["mask.png"])))) > 0
    np.testing.assert_array_equal(mask, expected.mask)
    timings = page.locator("#timings").inner_text()
    assert "stage 2/3 focus" in timings and "total" in timings


def test_advanced_settings_and_stage_progress(page, files, grounder):
    from rsvg_zeroov.app.browser import advanced, submit, wait_result

    config = _quick_config(focus={"num_steps": 4}, evolve={"k": 3, "refiner": "box-fill"})
    expected = grounder.reconfigured(config).ground(files / "scene.png", TEXT)
    advanced(page, {"Inversion steps": 4, "K (seed values)": 3})
    page.get_by_label("Refiner", exact=True).fill("box-fill")
    page.get_by_role("option", name="box-fill", exact=True).click()
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Refiner\"]')?.value === 'box-fill'")
    before = submit(page, files / "scene.png", TEXT)
    page.get_by_text("stage 2/3 focus (diffusion self-attention): DDIM inversion").first.wait_for()
    shown = wait_result(page, before)
    record = json.loads(_fetch(page, shown.downloads["box.json"]))
    assert record["config"]["focus"]["num_steps"] == 4 and record["config"]["evolve"]["k"] == 3
    assert record["config"]["evolve"]["refiner"] == "box-fill" and record["sam_score"] is None
    assert json.loads(shown.box) == expected.box


def test_geotiff_offers_georeferenced_downloads(page, tmp_path, grounder):
    import rasterio
    from rasterio.transform import from_origin

    from rsvg_zeroov.app.browser import ground
    from rsvg_zeroov.scene import ground_scene

    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=80, height=64, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=transform) as dst:
        dst.write(_scene(64, 80).transpose(2, 0, 1).astype(np.uint16) * 40)
    expected = ground_scene(grounder, tmp_path / "scene.tif", [TEXT])[0]  # as ground.py grounds a file
    shown = ground(page, tmp_path / "scene.tif", TEXT)
    assert set(shown.downloads) == {"mask.png", "box.json", "mask.tif", "mask.geojson"}
    assert json.loads(shown.box) == expected.box
    (tmp_path / "mask.tif").write_bytes(_fetch(page, shown.downloads["mask.tif"]))
    with rasterio.open(tmp_path / "mask.tif") as mask, rasterio.open(tmp_path / "scene.tif") as src:
        assert mask.crs == src.crs and mask.transform == src.transform and mask.count == 1
        np.testing.assert_array_equal(mask.read(1) == 255, expected.full_mask())
        wkt = src.crs.to_wkt()
    collection = json.loads(_fetch(page, shown.downloads["mask.geojson"]))
    assert collection["crs_wkt"] == wkt and "32633" in collection["crs"]["properties"]["name"]


def test_errors_are_shown_and_the_page_keeps_serving(page, files, expected):
    from rsvg_zeroov.app.browser import error_message, ground, submit

    submit(page, files / "broken.png", TEXT)
    assert "broken.png: unreadable image" in error_message(page)
    submit(page, files / "scene.png", "   ")
    assert "Expression is empty" in error_message(page)
    submit(page, files / "wide.png", TEXT)
    message = error_message(page)
    assert "300x300 = 90,000 pixels" in message and "--max-upload-pixels" in message
    shown = ground(page, files / "scene.png", TEXT)
    assert json.loads(shown.box) == expected.box


def test_an_upload_over_the_byte_limit_is_refused(page, tmp_path):
    from rsvg_zeroov.app.browser import error_message

    noise = np.random.default_rng(0).integers(0, 256, (700, 1000, 3), dtype=np.uint8)  # ~2 MB as PNG
    Image.fromarray(noise).save(tmp_path / "big.png")
    page.locator("#image input[type=file]").set_input_files(str(tmp_path / "big.png"))
    assert "exceed the maximum allowed size of 1.0 Mb" in error_message(page)


def test_two_concurrent_requests_both_complete(browser, served, files, expected):
    from rsvg_zeroov.app.browser import open_page, submit, wait_result

    pages = [open_page(browser, served[0]) for _ in range(2)]
    try:
        befores = [submit(p, files / "scene.png", TEXT) for p in pages]
        shown = [wait_result(p, before) for p, before in zip(pages, befores)]
    finally:
        for p in pages:
            p.close()
    assert [json.loads(s.box) for s in shown] == [expected.box, expected.box]
    assert shown[0].status.split(":")[0] != shown[1].status.split(":")[0]  # two requests, one after the other


def test_screenshot_script(served, tmp_path):
    _browser()
    out = tmp_path / "shot.png"
    argv = shlex.split(SHOT)
    assert argv[:2] == ["bash", "scripts/screenshot_app.sh"]
    proc = subprocess.run([*argv[:2], str(out), served[0]], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Request" in proc.stderr  # the run's status line
    with Image.open(out) as im:
        assert im.width == 1400 and im.height > 1000


def test_the_real_models_missing_stop_the_start_with_one_message(tmp_path):
    argv = shlex.split(REAL)
    assert argv[:2] == ["python", "app.py"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))  # an empty model cache
    proc = subprocess.run([sys.executable, str(REPO / "app.py"), *argv[2:]], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env=env)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    for what in ("hf download Qwen/Qwen2.5-VL-7B-Instruct", "CompVis/stable-diffusion-v1-4", "sam_vit_h_4b8939.pth",
                 "--vlm", "--sd"):
        assert what in proc.stderr, (what, proc.stderr)


def test_reconfigured_equals_a_freshly_loaded_grounder(grounder, files):
    from rsvg_zeroov import Grounder

    config = _quick_config(overview={"fidelity": "corrected"}, focus={"inversion": "noise"},
                           evolve={"fidelity": "corrected", "k": 3, "tau": 0.2, "alpha": 0.3})
    shared = grounder.reconfigured(config).ground(files / "scene.png", TEXT)
    fresh = Grounder(config).load().ground(files / "scene.png", TEXT)
    for name in ("mask", "mask_before_sam", "a_c", "a_cs", "a_e", "per_layer"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(fresh, name))
    assert shared.box == fresh.box and shared.sam_score == pytest.approx(fresh.sam_score)
    with pytest.raises(ValueError, match="overview.model"):
        grounder.reconfigured(config.replace(overview={"model": "qwen2.5-vl-7b"}))


def test_progress_reports_every_stage_and_changes_no_result(grounder, files, expected):
    """Also after the test above: the base Grounder's results are those of before (its refiner
    kept no embedding made under the other fidelity's reader)."""
    from rsvg_zeroov.pipeline import STAGES

    class Stop(Exception):
        pass

    def stop(event):
        if event.stage == "focus" and event.step == 1:
            raise Stop

    with pytest.raises(Stop):  # a callback's exception stops the run (how the page would cancel)
        grounder.ground_many(files / "scene.png", [TEXT], progress=stop)
    events = []
    result = grounder.ground_many(files / "scene.png", [TEXT], progress=events.append)[0]
    assert [e.stage for e in events if e.step == 0] == list(STAGES)  # each stage announced, in order
    assert [e.index for e in events] == sorted(e.index for e in events)
    focus = [e for e in events if e.stage == "focus" and e.step > 0]
    steps = grounder.focus.progress_steps  # ddim, 2 steps: 2 inversion + 2 re-denoising
    assert [e.step for e in focus] == list(range(1, steps + 1)) and {e.total for e in focus} == {steps}
    assert [e.detail for e in focus] == ["DDIM inversion"] * 2 + ["re-denoising"] * 2
    assert 1 <= max(e.step for e in events if e.stage == "overview") <= grounder.config.overview.max_new_tokens
    assert result.box == expected.box and result.answer == expected.answer
    np.testing.assert_array_equal(result.mask, expected.mask)
    np.testing.assert_array_equal(result.a_c, expected.a_c)
    t = result.timings
    assert {"overview", "focus", "focus.inversion", "evolve", "refine", "total"} <= set(t)
    assert t["total"] == pytest.approx(t["overview"] + t["focus"] + t["evolve"] + t["refine"])


def test_page_settings_round_trip(grounder):
    import dataclasses

    from rsvg_zeroov.app.service import Settings

    config = grounder.config
    shown = Settings.of(config)
    assert shown.apply(config) == config  # untouched settings change nothing
    changed = dataclasses.replace(shown, refine=False, tau=0.5).apply(config)
    assert changed.evolve.refiner is None and changed.evolve.tau == 0.5
    with pytest.raises(ValueError, match="steps"):
        dataclasses.replace(shown, steps=0).apply(config)
    assert dataclasses.replace(shown, steps=100, k=64).apply(config).evolve.k == 64  # the sliders' ends
    with pytest.raises(ValueError, match=r"steps=101: .* from 1 to 100"):
        dataclasses.replace(shown, steps=101).apply(config)
    with pytest.raises(ValueError, match=r"k=65: K.* from 1 to 64"):
        dataclasses.replace(shown, k=65).apply(config)


def test_the_scene_overview_has_its_place_in_the_progress_bar():
    """A scene beyond the budget reports its overview (rsvg_zeroov.scene.SCENE_OVERVIEW) before the
    windows' stages; the page names it like the others."""
    from rsvg_zeroov.app.page import progress_text
    from rsvg_zeroov.pipeline import StageProgress
    from rsvg_zeroov.scene import SCENE_OVERVIEW

    fraction, text = progress_text(StageProgress(SCENE_OVERVIEW, 0, 3, 12, "reading overview"))
    assert fraction == pytest.approx(0.25 * 3 / 12)
    assert text == "stage 1/3 overview of the whole scene (reduced read + VLM attention): reading overview (3/12)"
