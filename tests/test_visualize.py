"""tools/visualize.py and rsvg_zeroov.visualize on a crafted run directory (docs/run-directory.md format).

The crafted data set (JSONL) has five samples:
  good     GT mask + box; final mask overlaps the GT mask (mask IoU 0.5)
  boxy     box only, expression with <b>&$ (HTML escaping, mathtext); box IoU of the final mask's box
  npzonly  GT mask; its 32-grid maps come from RUN/maps/<id>.npz and it has NO focus dumps
  nofinal  box only; no RUN/masks/<id>.png (IoU n/a: sorted first)
  corrupt  overview .npy is garbage: reported by file name and skipped (exit 1)
"""
from __future__ import annotations

import html
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evolve_helpers import identity_s, write_focus
from rsvg_zeroov.rundir import DumpError, RunDir, atomic_write_bytes, save_json, save_mask_png, save_npy

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 48
GRID = 8  # VLM merged-token grid gh = gw
LAYERS, WEIGHTS = [16, 17, 18, 19], [0.1, 0.1, 0.3, 0.5]
EXPR_HTML = "the <b>tank</b> & the road, cost $5"


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
    img[10:30, 8:28] = (200, 180, 60)  # the "object"
    Image.fromarray(img).save(path)


def _rect(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


GT_MASK = _rect(10, 30, 8, 28)  # 400 px
GOOD_FINAL = _rect(10, 30, 8, 18)  # half of the GT: mask IoU 200 / 400 = 0.5
BOXY_BOX = [8.0, 10.0, 27.0, 29.0]
BOXY_FINAL = _rect(20, 40, 18, 38)  # tight box (18, 20, 37, 39)


def _inclusive_box_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return iw * ih / (area(a) + area(b) - iw * ih + 1e-6)


EXPECTED_IOU = {"good": 0.5, "boxy": _inclusive_box_iou((18, 20, 37, 39), BOXY_BOX), "npzonly": 1.0}


def _a_c(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 0.1, (GRID, GRID)).astype(np.float32)
    a[1:4, 1:4] = np.linspace(0.8, 1.0, 9, dtype=np.float32).reshape(3, 3)
    return a


def write_overview(run: RunDir, sid: str, seed: int) -> None:
    a_c = _a_c(seed)
    layers = np.stack([a_c * (i + 1) / 4 for i in range(len(LAYERS))])
    save_npy(run.overview_npy(sid), np.concatenate([a_c[None], layers]).astype(np.float32))
    save_json(run.overview_json(sid), {"sample_id": sid, "grid": [GRID, GRID], "layers": LAYERS,
                                       "weights": WEIGHTS, "image_size": [H, W], "answer": "[8, 10, 27, 29]",
                                       "model": "crafted", "dtype": "float32"})


def write_maps(run: RunDir, sid: str) -> None:
    c = np.zeros((32, 32), np.float32)
    c[4:12, 4:12] = 0.9
    seeds = np.zeros((32, 32), bool)
    seeds[6, 6] = True
    buf = io.BytesIO()
    np.savez(buf, c=c, a_cs=c, seeds=seeds, region=c > 0, a_e=c)
    atomic_write_bytes(run.maps_npz(sid), buf.getvalue())


def build(tmp: Path) -> tuple[Path, RunDir]:
    """The crafted data set (``tmp/data/test.jsonl``) and run directory (``tmp/run``)."""
    data, run = tmp / "data", RunDir(tmp / "run")
    data.mkdir()
    _image(data / "A.png", 0)
    Image.fromarray(GT_MASK.astype(np.uint8) * 255).save(data / "gt.png")
    rows = [{"id": "good", "image": "A.png", "expression": "the yellow tank", "box": [8, 10, 27, 29], "mask": "gt.png"},
            {"id": "boxy", "image": "A.png", "expression": EXPR_HTML, "box": BOXY_BOX},
            {"id": "npzonly", "image": "A.png", "expression": "a tank from the maps", "mask": "gt.png"},
            {"id": "nofinal", "image": "A.png", "expression": "not evolved yet", "box": BOXY_BOX},
            {"id": "corrupt", "image": "A.png", "expression": "broken dump", "box": BOXY_BOX}]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i, sid in enumerate(["good", "boxy", "npzonly", "nofinal", "corrupt"]):
        write_overview(run, sid, i)
        if sid != "npzonly":
            write_focus(run, sid, identity_s(), identity_s(), dtype=np.float16)  # S = I: A_CS is c rescaled
    write_maps(run, "npzonly")
    atomic_write_bytes(run.overview_npy("corrupt"), b"\x93NUMPY garbage, not a dump")
    for sid, mask in (("good", GOOD_FINAL), ("boxy", BOXY_FINAL), ("npzonly", GT_MASK), ("corrupt", GT_MASK)):
        save_mask_png(run.mask_png(sid), mask)
    run.predictions.write_text("".join(json.dumps({"sample_id": s, "box": None, "mask": run.mask_rel(s),
                                                   "sam_score": None}) + "\n" for s in ("good", "boxy", "npzonly")))
    save_json(run.config("evolve"), {"stage": "evolve", "k": 7, "tau": 0.3, "alpha": 0.4, "resolutions": [32, 64],
                                     "fidelity": "released", "use_dm": True, "use_evolve": True, "sam": True,
                                     "fingerprint": "x", "versions": {"numpy": "2"}})
    return data / "test.jsonl", run


def cli_args(jsonl: Path, run: RunDir, *extra: str) -> list[str]:
    return ["--out", str(run.root), "--dataset", "jsonl", "--root", str(jsonl), "--split", "test", *extra]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The crafted run after one ``python tools/visualize.py --workers 2`` (a subprocess, from the
    repo root; two spawned drawing processes)."""
    jsonl, run = build(tmp_path_factory.mktemp("vis"))
    proc = subprocess.run([sys.executable, "tools/visualize.py", *cli_args(jsonl, run, "--workers", "2")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    return jsonl, run, proc


def cards(page: str) -> list[dict]:
    found = re.findall(r'<div class="card"><a href="([^"]*)"><img src="([^"]*)".*?<div class="id">(.*?)</div>'
                       r'<div class="iou[^"]*">(.*?)</div><div class="expr">(.*?)</div></div>', page)
    return [dict(zip(("href", "src", "id", "iou", "expr"), f)) for f in found]


def load_tool():
    spec = importlib.util.spec_from_file_location("visualize_tool", REPO / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ the CLI
def test_corrupt_dump_is_reported_by_file_and_skipped(drawn):
    _, run, proc = drawn
    assert proc.returncode == 1, proc.stderr
    assert str(run.overview_npy("corrupt")) in proc.stderr
    assert not (run.root / "panels" / "corrupt.png").exists()
    for sid in ("good", "boxy", "npzonly", "nofinal"):
        assert (run.root / "panels" / f"{sid}.png").is_file(), proc.stderr


def test_panels_are_valid_pngs_of_plausible_size(drawn):
    _, run, _ = drawn
    for sid in ("good", "boxy", "npzonly", "nofinal"):
        with Image.open(run.root / "panels" / f"{sid}.png") as im:
            im.load()
            assert im.format == "PNG"
            assert 900 <= im.width <= 3000 and 500 <= im.height <= 3000, im.size
            assert np.asarray(im.convert("L")).std() > 10  # not a blank canvas


def test_thumbnails_are_small_jpegs_shown_by_the_cards(drawn):
    _, run, _ = drawn
    page = (run.root / "index.html").read_text(encoding="utf-8")
    for sid in ("good", "boxy", "npzonly", "nofinal"):
        thumb, panel = run.root / "thumbs" / f"{sid}.jpg", run.root / "panels" / f"{sid}.png"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.width == 400
            with Image.open(panel) as full:
                assert abs(im.height / im.width - full.height / full.width) < 0.01  # aspect kept
        assert thumb.stat().st_size < panel.stat().st_size / 4
        assert f'src="panels/{sid}.png" srcset="thumbs/{sid}.jpg 400w"' in page


def test_index_writes_every_iou_in_one_format(drawn):
    _, run, _ = drawn
    page = (run.root / "index.html").read_text(encoding="utf-8")
    meta = re.search(r'<p class="meta">(.*?)</p>', page).group(1)
    assert "%" not in page.split("<style>")[0] + meta
    mean = re.search(r"mean [a-z/]+ IoU ([0-9.]+);", meta).group(1)
    values = [c["iou"].split()[-1] for c in cards(page) if c["iou"] != "no final mask"]
    assert all(re.fullmatch(r"[01]\.[0-9]{3}", v) for v in [mean, *values]), (mean, values)
    assert float(mean) == pytest.approx(np.mean(list(EXPECTED_IOU.values())), abs=1e-3)


def test_colour_bar_labels_stay_in_their_cell(drawn):
    """Raw attention (~1e-3) and large values: the tick labels fit the gap before the next cell."""
    from dataclasses import replace

    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.visualize import gather, load_evolve_config
    from rsvg_zeroov.visualize.panel import build_figure

    jsonl, run, _ = drawn
    sample = {s.sample_id: s for s in load_samples("jsonl", jsonl, "test")}["good"]
    d = gather(run, sample, load_evolve_config(run))
    scales = (0.0071234, 1e-3, 12345.678, 0.37)
    d = replace(d, layers=tuple((layer, w, (arr + 0.5) * k) for (layer, w, arr), k in zip(d.layers, scales)))
    fig = build_figure(d)
    renderer = fig.canvas.get_renderer()
    cells = [ax for ax in fig.axes if ax.axison]
    bars = [child for ax in cells for child in ax.child_axes]  # the colour bars (inset axes)
    assert len(bars) == len(d.layers) + 3  # every layer, A_C, A_CS, A_E
    taken = [ax.get_window_extent(renderer) for ax in cells] + [ax.title.get_window_extent(renderer) for ax in cells]
    for bar in bars:
        labels = [t for t in bar.yaxis.get_ticklabels() if t.get_visible() and t.get_text()]
        assert labels
        for text in [*labels, bar.yaxis.get_offset_text()]:
            box = text.get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, f"{text.get_text()!r} cut off at the edge"
            assert not any(box.overlaps(other) for other in taken), f"{text.get_text()!r} runs into a cell"


def test_index_sorted_worst_first_with_resolving_links(drawn):
    _, run, _ = drawn
    page = (run.root / "index.html").read_text(encoding="utf-8")
    found = cards(page)
    assert [c["id"] for c in found] == ["nofinal", "boxy", "good", "npzonly"]
    assert found[0]["iou"] == "no final mask"
    for c in found[1:]:
        kind, value = re.fullmatch(r"(mask|box) IoU ([0-9.]+)", c["iou"]).groups()
        assert kind == ("box" if c["id"] == "boxy" else "mask")
        assert float(value) == pytest.approx(EXPECTED_IOU[c["id"]], abs=1e-3)
    for c in found:
        assert c["href"] == c["src"] == f"panels/{c['id']}.png"
        assert (run.root / html.unescape(c["href"])).is_file()
    assert "corrupt.npy" in page.split("<h2>Skipped")[1]  # listed as skipped, with the reason


def test_expression_is_html_escaped(drawn):
    _, run, _ = drawn
    page = (run.root / "index.html").read_text(encoding="utf-8")
    assert "<b>tank</b>" not in page
    assert html.escape(EXPR_HTML) in page
    assert {c["id"]: html.unescape(c["expr"]) for c in cards(page)}["boxy"] == EXPR_HTML


def test_sample_filter_and_unknown_id(drawn, tmp_path, capsys):
    jsonl, run, _ = drawn
    tool = load_tool()
    out = tmp_path / "run"
    shutil.copytree(run.root, out, ignore=shutil.ignore_patterns("panels", "index.html"))
    assert tool.main(cli_args(jsonl, RunDir(out), "--sample", "good")) == 0
    assert [c["id"] for c in cards((out / "index.html").read_text())] == ["good"]
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["good.png"]
    with pytest.raises(SystemExit) as exc:
        tool.main(cli_args(jsonl, RunDir(out), "--sample", "nosuch"))
    assert exc.value.code == 2 and "'nosuch'" in capsys.readouterr().err


def test_ablation_run_drawn_with_the_dumps_of_its_source(drawn, tmp_path):
    """--from SOURCE: stage 1-2 dumps from SOURCE, masks and pictures in --out (rs_evolve.py --from)."""
    jsonl, run, _ = drawn
    new = tmp_path / "ablation"
    shutil.copytree(run.root, new, ignore=shutil.ignore_patterns("panels", "thumbs", "index.html", "overview", "focus"))
    source_panels = {p.name: p.stat().st_mtime_ns for p in (run.root / "panels").iterdir()}
    proc = subprocess.run([sys.executable, "tools/visualize.py", *cli_args(jsonl, RunDir(new), "--from", str(run.root),
                           "--sample", "good", "boxy")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (new / "panels").iterdir()) == ["boxy.png", "good.png"]
    assert {p.name: p.stat().st_mtime_ns for p in (run.root / "panels").iterdir()} == source_panels  # untouched
    assert {c["id"]: c["iou"] for c in cards((new / "index.html").read_text())} == \
        {c["id"]: c["iou"] for c in cards((run.root / "index.html").read_text()) if c["id"] in ("good", "boxy")}


# ------------------------------------------------------------------------------ the package
def test_in_process_equals_worker_processes(drawn, tmp_path):
    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.visualize import visualize_run

    jsonl, run, _ = drawn
    out = tmp_path / "run"
    shutil.copytree(run.root, out, ignore=shutil.ignore_patterns("panels", "index.html"))
    report = visualize_run(out, load_samples("jsonl", jsonl, "test"), workers=1, show_progress=False)
    assert [e.sample_id for e in report.drawn] == ["good", "boxy", "npzonly", "nofinal"]
    assert [sid for sid, _ in report.skipped] == ["corrupt"]
    assert cards(report.index.read_text()) == cards((run.root / "index.html").read_text())


def test_maps_npz_used_else_recomputed_with_run_settings(drawn):
    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.evolve import evolve
    from rsvg_zeroov.visualize import gather, load_evolve_config

    jsonl, run, _ = drawn
    samples = {s.sample_id: s for s in load_samples("jsonl", jsonl, "test")}
    config = load_evolve_config(run)
    npz = gather(run, samples["npzonly"], config)
    assert npz.maps_source == "maps npz" and npz.region.dtype == bool and npz.region.sum() == 64
    assert npz.evolve_mask.shape == (H, W) and npz.evolve_mask.any()
    good = gather(run, samples["good"], config)
    assert good.maps_source == "recomputed"
    assert [layer for layer, _, _ in good.layers] == LAYERS
    ref = evolve(_a_c(0), np.eye(1024, dtype=np.float32), (H, W), config)
    np.testing.assert_allclose(good.a_cs, ref.a_cs, atol=1e-3)
    np.testing.assert_array_equal(good.evolve_mask, ref.mask)


def test_evolve_config_read_from_run(tmp_path):
    from rsvg_zeroov.visualize import load_evolve_config

    run = RunDir(tmp_path)
    assert load_evolve_config(run).tau == 0.3  # no file: paper defaults
    save_json(run.config("evolve"), {"tau": 0.25, "resolutions": [32], "versions": {}, "workers": 8})
    cfg = load_evolve_config(run)
    assert cfg.tau == 0.25 and cfg.resolutions == (32,)
    save_json(run.config("evolve"), {"fidelity": "nonsense"})
    with pytest.raises(DumpError, match="evolve_config.json"):
        load_evolve_config(run)


def test_evolve_config_read_from_the_stage_config_layout(tmp_path):
    """The layout every stage writes now: the settings under "config", next to "resolved" and "run"."""
    from rsvg_zeroov.visualize import load_evolve_config

    run = RunDir(tmp_path)
    save_json(run.config("evolve"), {"stage": "evolve", "config": {"tau": 0.2, "alpha": 0.5, "refiner": "box-fill",
                                                                   "resolutions": [32], "fidelity": "corrected"},
                                     "resolved": {"fingerprint": "x"}, "run": {"dataset": "jsonl"}, "versions": {}})
    cfg = load_evolve_config(run)
    assert (cfg.tau, cfg.alpha, cfg.refiner, cfg.resolutions, cfg.fidelity) == (0.2, 0.5, "box-fill", (32,), "corrected")


def test_bad_maps_npz_names_the_file(tmp_path):
    from rsvg_zeroov.visualize import load_maps_npz

    path = tmp_path / "m.npz"
    np.savez(path, c=np.zeros((32, 32)))
    with pytest.raises(DumpError, match=r"m\.npz.*lacks a_cs"):
        load_maps_npz(path)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DumpError, match=r"m\.npz"):
        load_maps_npz(path)


# ------------------------------------------------------------------------------ the page renders
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_screenshot_script_renders_the_index(drawn, tmp_path):
    _, run, _ = drawn
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["bash", "scripts/screenshot_index.sh", str(run.root), str(shot)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 900)
        assert np.asarray(im.convert("L")).std() > 5
