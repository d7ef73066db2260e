"""The paper's tables as one command (rsvg_zeroov.reproduce): each baseline on hand-made dumps whose
right answer is known, the rows against stage 3 + the evaluator + eval/compare.py, resume, failure
and not-run rows, the paper's numbers from their one file, and the README's commands."""
from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evolve_helpers import CRAFTED, cli, make_crafted_run, torch_resize, write_overview
from rsvg_zeroov.datasets import load_samples
from rsvg_zeroov.evaluation import evaluate
from rsvg_zeroov.reproduce import Options, reproduce
from rsvg_zeroov.reproduce.baselines import box_mask, diffpng_mask
from rsvg_zeroov.rundir import RunDir, load_json, save_json

REPO = Path(__file__).resolve().parents[1]
GRID = "k=1,7 tau=0.3 alpha=0.4,0.9"
EPS = 1e-6  # the zeroov protocol's union epsilon


def _run(jsonl, run: RunDir, **options):
    samples = load_samples("jsonl", jsonl, "test")
    options = {"figures": False, "grid": GRID, "workers": 2, **options}
    return reproduce(run, samples, dataset="jsonl", split="test", root=str(jsonl), options=Options(**options))


def _metrics(run: RunDir, row: str) -> dict:
    return load_json(run.root / "reproduce" / "rows" / row / "metrics.json")


def _table_lines(run: RunDir, table: str) -> list[str]:
    return [ln for ln in (run.root / "tables" / f"{table}.md").read_text().splitlines() if ln.startswith("| ")]


def _answer(run: RunDir, sid: str, answer: str, wh, resized) -> None:
    meta = load_json(run.overview_json(sid))
    save_json(run.overview_json(sid), {**meta, "answer": answer, "image_size": list(wh), "resized_size": list(resized),
                                       "model_key": "qwen2.5-vl-7b"})


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    """The tiny random-weight SAM's weights file, where the registry looks for it."""
    from rsvg_zeroov.tiny.sam import build_tiny_sam

    return build_tiny_sam(tmp_path_factory.mktemp("tiny_sam") / "sam" / "sam_tiny.pth", seed=0)


@pytest.fixture
def crafted(tmp_path):
    """The stage-3 crafted run (S = I, blobs of known masks) with answers in its sidecars."""
    jsonl, run, expected = make_crafted_run(tmp_path)
    for spec in CRAFTED:
        h, w = spec["hw"]
        _answer(run, spec["id"], "[2, 3, 20, 30]", (w, h), (w, h))
    return jsonl, run, expected


# ------------------------------------------------------------------------------ the baselines
def test_box_mask_covers_the_pixel_centres_inside_the_box():
    m = box_mask([10, 20, 50, 60], (80, 100))
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 49, 20, 59) and m.sum() == 40 * 40
    m = box_mask([8.9, 19.05, 44.64, 57.14], (80, 100))  # centres 9.5 .. 44.5 and 19.5 .. 56.5
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (9, 44, 19, 56)
    assert not box_mask(None, (5, 5)).any() and not box_mask([2.1, 0, 2.4, 5], (5, 5)).any()
    assert box_mask([-3, -3, 99, 99], (5, 6)).all()


def test_vlm_box_row_maps_the_answer_to_original_pixels(tmp_path):
    """'[10, 20, 50, 60]' on a 100 x 80 image the VLM saw as 112 x 84 is [8.93, 19.05, 44.64, 57.14]
    in original pixels: pixel columns 9..44, rows 19..56. Against a ground truth covering columns
    20..60 and rows 30..70 (inclusive), box and mask IoU are 675 / 2374."""
    from evolve_helpers import identity_s, write_dataset, write_focus

    gt = np.zeros((80, 100), bool)
    gt[30:71, 20:61] = True
    jsonl = write_dataset(tmp_path / "data", [
        {"id": "ok", "image": "I.png", "hw": (80, 100), "box": [20, 30, 60, 70], "mask": gt},
        {"id": "prose", "image": "I.png", "hw": (80, 100), "box": [20, 30, 60, 70], "mask": gt}])
    run = RunDir(tmp_path / "run")
    for sid, answer in (("ok", "[10, 20, 50, 60]"), ("prose", "I cannot see it")):
        write_overview(run, sid, np.random.default_rng(0).random((3, 4), dtype=np.float32))
        write_focus(run, sid, identity_s(), identity_s())
        _answer(run, sid, answer, (100, 80), (112, 84))
    _run(jsonl, run, tables=("main",), no_sam=True)
    entries = {json.loads(ln)["sample_id"]: json.loads(ln)["s"]
               for ln in (run.root / "reproduce/rows/vlm-box/scores.jsonl").read_text().splitlines()}
    pred, inter = 36 * 38, 25 * 27  # the rasterised box; its overlap with the ground truth
    iou = inter / (pred + 41 * 41 - inter + EPS)
    box_inter, box_union, box_iou, mask_inter, mask_union, mask_iou, missing, empty = entries["ok"]
    assert (box_inter, box_union, mask_inter, mask_union) == (inter, pred + 41 * 41 - inter, inter, pred + 41 * 41 - inter)
    assert box_iou == pytest.approx(iou, abs=1e-12) and mask_iou == pytest.approx(iou, abs=1e-12)
    assert not missing and not empty
    assert entries["prose"][2] == 0.0 and entries["prose"][7] is True  # unparseable: an empty prediction
    metrics = _metrics(run, "vlm-box")
    assert metrics["empty_predictions"] == 1 and metrics["failed"] == 0
    assert metrics["rsrec"]["mIoU"] == pytest.approx(100 * iou / 2)


def test_diffpng_sums_the_rows_above_beta_then_thresholds():
    """S sends every query i to key (i + 3) mod 1024; the VLM map is high on a block. DiffPNG's map is
    then 1 on the shifted block and 0 elsewhere, and its mask that map upsampled and > 0.3."""
    a_c = np.zeros((32, 32), np.float32)
    a_c[4:8, 10:14] = 1.0
    a_c[20, 20] = 0.3  # below beta once min-max normalised: not propagated
    s = np.zeros((1024, 1024), np.float32)
    s[np.arange(1024), (np.arange(1024) + 3) % 1024] = 1.0
    expect = np.zeros(1024, np.float32)
    expect[(np.flatnonzero(a_c.reshape(-1) > 0.4) + 3) % 1024] = 1.0
    mask = diffpng_mask(a_c, s, (64, 96))
    np.testing.assert_array_equal(mask, torch_resize(expect.reshape(32, 32), (64, 96)) > 0.3)
    assert mask.any()
    assert not diffpng_mask(np.full((32, 32), 0.5, np.float32), s, (64, 96)).any()  # constant: nothing above beta


# ------------------------------------------------------------------------------ the harness
def test_rows_agree_with_stage_3_the_evaluator_and_compare(crafted, tmp_path):
    jsonl, run, _ = crafted
    report = _run(jsonl, run, no_sam=True, tables=("main", "ablation"))
    assert report.failed == 0
    lines = _table_lines(run, "ablation")
    assert any("`rsvg-zeroov`" in ln and "not run: --no-sam" in ln for ln in lines)
    assert any("`res16-32-64-no-sam`" in ln and "not run: needs stage 2's self_16to32_released.npy" in ln
               for ln in lines)
    assert not any("`querymatch`" in ln for ln in _table_lines(run, "main"))  # the paper has no jsonl rows
    samples = load_samples("jsonl", jsonl, "test")
    for row, flags in (("no-sam", []), ("no-dm-no-sam", ["--no-dm"]), ("corrected-no-sam", ["--fidelity", "corrected"])):
        new = RunDir(tmp_path / f"stage3_{row}")
        assert cli(jsonl, new, "--from", str(run.root), "--no-sam", *flags) == 0
        ours, stage = _metrics(run, row), evaluate(samples, new, "zeroov").metrics("jsonl", "test")
        assert ours["rsrec"] == stage["rsrec"] and ours["rsres"] == stage["rsres"], row
        assert ours["empty_predictions"] == stage["empty_predictions"]
    rows = [str(run.root / "reproduce/rows" / r) for r in ("no-dm-no-sam", "res32-no-sam")]
    proc = subprocess.run([sys.executable, str(REPO / "eval/compare.py"), *rows, "--paper", "ablation"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "`" in ln]
    assert len(shown) == 2 and all(ln in lines for ln in shown)  # one code path: the same rows
    with open(run.root / "tables" / "ablation.csv") as f:
        by_row = {r["row"]: r for r in csv.DictReader(f)}
    assert float(by_row["no-sam"]["ours rsrec.mIoU"]) == pytest.approx(_metrics(run, "no-sam")["rsrec"]["mIoU"])
    assert by_row["no-sam"]["paper rsrec.mIoU"] == "" and json.loads(by_row["no-sam"]["settings"])["k"] == 7


def test_worker_processes_give_the_threads_scores(crafted, monkeypatch):
    from rsvg_zeroov.reproduce import harness

    jsonl, run, _ = crafted
    _run(jsonl, run, no_sam=True, tables=("main", "ablation"), workers=1)
    threads = {p.parent.name: p.read_text() for p in (run.root / "reproduce/rows").glob("*/scores.jsonl")}
    monkeypatch.setattr(harness, "PROCESS_MIN", 1)
    _run(jsonl, run, no_sam=True, tables=("main", "ablation"), workers=2, force=True)
    procs = {p.parent.name: p.read_text() for p in (run.root / "reproduce/rows").glob("*/scores.jsonl")}
    assert procs == threads and len(procs) == 8  # every row without SAM


def test_sensitivity_cells_equal_the_sweep(crafted):
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.evolve.sweep import parse_grid, sweep

    jsonl, run, _ = crafted
    _run(jsonl, run, no_sam=True, tables=("sensitivity",))
    samples = load_samples("jsonl", jsonl, "test")
    cfg = EvolveConfig(refiner=None)
    expect, _ = sweep(run, samples, cfg, parse_grid(GRID, cfg), workers=1)
    with open(run.root / "tables" / "sensitivity.csv") as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(expect) == 4
    for g, e in zip(got, expect):
        assert (int(g["k"]), float(g["tau"]), float(g["alpha"])) == (e["k"], e["tau"], e["alpha"])
        for key in ("rsrec_mIoU", "rsres_mIoU", "rsres_Pr@0.5"):
            assert float(g[key]) == pytest.approx(e[key])
    assert "**7** (paper)" in (run.root / "tables" / "sensitivity.md").read_text()


def test_resume_recomputes_only_what_changed(crafted):
    jsonl, run, _ = crafted
    first = _run(jsonl, run, no_sam=True)
    assert "no-sam" in first.recomputed
    scores = {p: p.read_bytes() for p in (run.root / "reproduce/rows").glob("*/scores.jsonl")}
    again = _run(jsonl, run, no_sam=True)
    assert again.recomputed == []  # every row already scored
    assert {p: p.read_bytes() for p in scores} == scores
    (run.root / "reproduce/rows/res64-no-sam/scores.jsonl").unlink()
    assert _run(jsonl, run, no_sam=True).recomputed == ["res64-no-sam"]
    new = _run(jsonl, run, no_sam=True, tables=("sensitivity",), grid="k=1,7,9 tau=0.3 alpha=0.4,0.9")
    assert sorted(new.recomputed) == ["sens-k9-tau0.3-alpha0.4", "sens-k9-tau0.3-alpha0.9"]
    assert _run(jsonl, run, no_sam=True, force=True).recomputed  # --force recomputes


def test_a_row_failing_on_one_sample_records_it_and_goes_on(crafted):
    from rsvg_zeroov.rundir import FOCUS_64TO32

    jsonl, run, _ = crafted
    bad = run.focus_file("b1", FOCUS_64TO32["released"])
    good = bad.read_bytes()
    bad.write_bytes(good[:200])  # truncated
    meta = load_json(run.overview_json("a2"))
    save_json(run.overview_json("a2"), {k: v for k, v in meta.items() if k != "image_size"})
    nan = run.focus_file("a1", FOCUS_64TO32["corrected"])  # read only into the corrected mean
    clean = np.load(nan)
    np.save(nan, np.where(np.eye(1024, dtype=bool), np.nan, clean).astype(clean.dtype))
    report = _run(jsonl, run, no_sam=True, tables=("main", "ablation"))
    assert report.failed > 0
    no_sam = _metrics(run, "no-sam")
    assert no_sam["failed"] == 1 and no_sam["missing_ids"] == ["b1"] and "truncated" in no_sam["failures"]["b1"]
    assert _metrics(run, "res64-no-sam")["failed"] == 1
    assert _metrics(run, "res32-no-sam")["failed"] == 0 and _metrics(run, "no-dm-no-sam")["failed"] == 0
    assert _metrics(run, "vlm-box")["failures"].keys() == {"a2"}
    corrected = _metrics(run, "corrected-no-sam")["failures"]
    assert corrected.keys() == {"a1"} and "self_64to32_corrected.npy: contains NaN or Inf" in corrected["a1"]
    lines = _table_lines(run, "ablation")
    assert any("`no-sam`" in ln and "ok, 1 failed" in ln for ln in lines)
    failures = [json.loads(ln) for ln in (run.root / "reproduce/failures.jsonl").read_text().splitlines()]
    assert {(f["sample_id"], f["row"]) for f in failures} >= {("b1", "no-sam"), ("a2", "vlm-box")}
    bad.write_bytes(good)
    save_json(run.overview_json("a2"), meta)
    np.save(nan, clean)
    again = _run(jsonl, run, no_sam=True, tables=("main", "ablation"))
    assert again.failed == 0 and "res32-no-sam" not in again.recomputed
    assert not (run.root / "reproduce/failures.jsonl").read_text()
    assert json.loads((run.root / "reproduce/rows/no-sam/scores.jsonl").read_text().splitlines()[-1])["sample_id"] == "b1"


def test_refined_rows_with_box_fill_and_the_tiny_sam(crafted, tiny_sam, tmp_path, monkeypatch):
    from rsvg_zeroov.evolve import refine, stage  # noqa: F401 - stage binds image_reader before the patch

    jsonl, run, _ = crafted
    with monkeypatch.context() as m:  # box-fill needs the image's size only: no image is decoded
        m.setattr(refine, "image_reader", lambda fidelity: pytest.fail("box-fill rows decoded an image"))
        _run(jsonl, run, tables=("main", "ablation"), refiner="box-fill")
    assert _metrics(run, "vlm-box+sam")["rsres"] == _metrics(run, "vlm-box")["rsres"]  # a box filled is itself
    new = RunDir(tmp_path / "stage3_boxfill")
    assert cli(jsonl, new, "--from", str(run.root), "--refiner", "box-fill") == 0
    stage = evaluate(load_samples("jsonl", jsonl, "test"), new, "zeroov").metrics("jsonl", "test")
    assert _metrics(run, "rsvg-zeroov")["rsres"] == stage["rsres"]
    lines = _table_lines(run, "ablation")
    assert any("`prompt-points`" in ln and "not run:" in ln and "box" in ln for ln in lines)  # box-fill takes boxes only
    # the tiny SAM: every refined row of an image from one embedding
    from rsvg_zeroov.models import refiners

    built = []
    real = refiners.load_refiner
    monkeypatch.setattr(refiners, "load_refiner", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    tiny = RunDir(tmp_path / "tiny")
    tiny.root.mkdir()
    for sub in ("overview", "focus"):
        (tiny.root / sub).symlink_to(run.root / sub)
    report = _run(jsonl, tiny, tables=("main", "ablation"), refiner="tiny", refiner_checkpoint=str(tiny_sam),
                  device="cpu")
    refined = [n for n, st in report.states.items() if st.row.sam and st.reason is None]
    assert len(refined) == 9 and report.failed == 0  # the prompt modes included
    # two images: one embedding each for the 9 refined rows of its samples, corrected fidelity included
    assert len(built) == 1 and built[0].n_images == len({s["image"] for s in CRAFTED})


def test_figures_are_drawn_for_the_tables(crafted):
    from PIL import Image

    jsonl, run, _ = crafted
    report = _run(jsonl, run, no_sam=True, figures=True, panels=2)
    names = {p.name for p in report.figures}
    assert {"main.png", "sensitivity_heatmap.png", "sensitivity_lines.png", "disagreement.png", "index.html"} <= names
    for p in report.figures:
        if p.suffix == ".png":
            assert Image.open(p).size[0] > 300
    assert len(list((run.root / "tables/disagreement/panels").glob("*.png"))) == 2


# ------------------------------------------------------------------------------ the paper's numbers
def test_the_paper_numbers_have_one_source():
    import re

    from rsvg_zeroov.evaluation.report import PAPER_RESULTS, paper_values, parse_paper_results

    assert PAPER_RESULTS["rrsisd"] == {"rsrec": {"Pr@0.5": 31.39, "mIoU": 34.49}, "rsres": {"Pr@0.5": 27.39, "mIoU": 28.35}}
    assert paper_values("ablation", "rrsisd", "res32-no-sam") == {"rsrec.mIoU": 31.97, "rsres.mIoU": 21.11}
    # the copies in the README and docs/method.md say the same
    for doc in ("README.md", "docs/method.md"):
        text = (REPO / doc).read_text()
        for name, ds in (("RRSIS-D", "rrsisd"), ("RISBench", "risbench")):
            row = re.search(rf"^\| {name} \| (.*) \|$", text, re.M).group(1)
            values = [float(v) for v in row.split(" | ")]
            p = PAPER_RESULTS[ds]
            assert values == [p["rsrec"]["Pr@0.5"], p["rsrec"]["mIoU"], p["rsres"]["Pr@0.5"], p["rsres"]["mIoU"]], doc
    with pytest.raises(ValueError, match=r"x\.md:4: RSREC mIoU = 'n/a'"):
        parse_paper_results("## Main table\n\n| data set | row | RSREC mIoU |\n| rrsisd | a | n/a |\n", "x.md")


# ------------------------------------------------------------------------------ the README's commands
README_COMMANDS = [
    "python -m rsvg_zeroov.reproduce --dataset rrsisd --root datasets/rrsisd --split test --out outputs/rrsisd_test",
    "DATASET=rrsisd ROOT=datasets/rrsisd SPLIT=test OUT=outputs/rrsisd_test bash reproduce.sh --table ablation --no-sam",
]


def _rrsisd_run(tmp_path) -> tuple[Path, Path]:
    """A 2-sample synthetic RRSIS-D set and hand-made dumps for it in outputs/rrsisd_test."""
    from evolve_helpers import identity_s, write_focus
    from rsvg_zeroov.synthetic import write_dataset

    root = write_dataset("rrsisd", tmp_path / "datasets" / "rrsisd", n=2, size=64)
    run = RunDir(tmp_path / "outputs" / "rrsisd_test")
    for i, s in enumerate(load_samples("rrsisd", root, "test")):
        write_overview(run, s.sample_id, np.random.default_rng(i).random((4, 4), dtype=np.float32))
        write_focus(run, s.sample_id, identity_s(), identity_s())
        _answer(run, s.sample_id, "[1, 2, 30, 40]", (s.width, s.height), (s.width, s.height))
    return root, run.root


def test_readme_shows_and_runs_the_reproduce_commands(tmp_path, tiny_sam):
    readme = (REPO / "README.md").read_text()
    for cmd in README_COMMANDS:
        assert cmd in readme, cmd
    root, out = _rrsisd_run(tmp_path)
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_sam.parent.parent), RSVG_ZEROOV_PROGRESS="0",
               PYTHON=sys.executable)
    python = README_COMMANDS[0].replace("datasets/rrsisd", str(root)).replace("outputs/rrsisd_test", str(out))
    argv = [sys.executable, *shlex.split(python)[1:], "--refiner", "tiny", "--device", "cpu", "--no-figures"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "# Main table" in proc.stdout and "31.39" in proc.stdout
    assert any("`querymatch`" in ln and "not implemented here" in ln and "16.22" in ln
               for ln in proc.stdout.splitlines())  # the paper's rows this project does not compute
    for table in ("main", "ablation", "sensitivity"):
        assert (out / "tables" / f"{table}.md").is_file() and (out / "tables" / f"{table}.csv").is_file()
    shell = README_COMMANDS[1].split(" bash ")
    env.update(dict(kv.split("=") for kv in shell[0].split()), ROOT=str(root), OUT=str(out))
    proc = subprocess.run(["bash", *shlex.split(shell[1])], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not run: --no-sam" in proc.stdout and "# Main table" not in proc.stdout
    bad = subprocess.run([*argv[:-5], "--table", "nope"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=120)
    assert bad.returncode == 2
