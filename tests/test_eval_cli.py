"""eval/evaluate.py and eval/compare.py end to end on a small JSONL data set written by the test;
the in-process evaluator (serial == parallel == reference); input errors; the fast mask decoder."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov.datasets import MaskSource, Sample, load_samples
from rsvg_zeroov.evaluation import EvalInputError, PROTOCOLS, evaluate, load_gt_mask, read_predictions, render
from eval_helpers import random_case, ref_aggregate, ref_score, write_jsonl_dataset, write_run

REPO = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"protocol", "dataset", "split", "n", "missing", "rsrec", "rsres"}
METRIC_KEYS = ["mIoU", "oIoU", "Pr@0.3", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9"]
N = 14
MISSING = ("s03", "s09")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 14-sample JSONL data set (masks + boxes + categories) and a run predicting 12 of them."""
    root = tmp_path_factory.mktemp("evaldata")
    rng = np.random.default_rng(7)
    cases, preds = [], {}
    for i in range(N):
        h, w, pred, gt, box = random_case(rng)
        sid = f"s{i:02d}"
        cases.append({"id": sid, "h": h, "w": w, "gt": gt, "box": box, "pred": pred})
        if sid not in MISSING:
            preds[sid] = pred
    preds["s05"] = np.zeros_like(cases[5]["gt"])  # one empty prediction
    cases[5]["pred"] = preds["s05"]
    jsonl = write_jsonl_dataset(root / "ds", cases)
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    for rec in lines[:6]:
        rec["category"] = "ship" if int(rec["id"][1:]) % 2 else "vehicle"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in lines))
    run = write_run(root / "run", preds)
    return {"root": root, "jsonl": jsonl, "run": run, "cases": cases}


def cli(script, *args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "eval" / script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def reference(cases, protocol):
    refs = [ref_score(protocol, c["pred"], c["gt"], c["box"], c["h"], c["w"], missing=c["id"] in MISSING)
            for c in cases]
    cols = list(zip(*refs))
    return {"rsrec": ref_aggregate(protocol, *cols[0:3]), "rsres": ref_aggregate(protocol, *cols[3:6])}


@pytest.mark.parametrize("protocol", ["zeroov", "rmsin"])
def test_cli_end_to_end_matches_the_reference(data, tmp_path, protocol):
    run = tmp_path / "run"
    write_run(run, {c["id"]: c["pred"] for c in data["cases"] if c["id"] not in MISSING})
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--split", "test", "--out", run,
            "--protocol", protocol, "--workers", "2")
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(m) and set(m["rsrec"]) == set(m["rsres"]) == set(METRIC_KEYS)
    assert (m["protocol"], m["dataset"], m["split"], m["n"], m["missing"]) == (protocol, "jsonl", "test", N, 2)
    n_empty = sum(not c["pred"].any() for c in data["cases"] if c["id"] not in MISSING)
    assert m["missing_ids"] == list(MISSING) and m["empty_predictions"] == n_empty >= 1
    want = reference(data["cases"], protocol)
    assert m["rsrec"] == pytest.approx(want["rsrec"]) and m["rsres"] == pytest.approx(want["rsres"])
    assert set(m["per_category"]) == {"ship", "vehicle"} and m["per_category"]["ship"]["n"] == 3
    assert "| RSREC (box) | 14 |" in r.stdout and "| RSRES (mask) | 14 |" in r.stdout
    assert "| ship | 3 |" in r.stdout and "2 of 14 samples have no prediction" in r.stderr


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_parallel_equals_serial_equals_reference(data, protocol):
    samples = load_samples("jsonl", data["jsonl"], "test")
    serial = evaluate(samples, data["run"], protocol, workers=1)
    parallel = evaluate(samples, data["run"], protocol, workers=2)
    assert serial.scores == parallel.scores
    m = serial.metrics("jsonl", "test")
    want = reference(data["cases"], protocol)
    assert m["rsrec"] == pytest.approx(want["rsrec"]) and m["rsres"] == pytest.approx(want["rsres"])


def test_limit_evaluates_the_first_samples_and_ignores_later_predictions(data, tmp_path):
    run = write_run(tmp_path / "run", {c["id"]: c["pred"] for c in data["cases"]})
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", run, "--limit", 4,
            "--protocol", "lpva")
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == 4 and m["missing"] == 0 and m["ignored_predictions"] == N - 4
    want = reference([{**c, "id": "x"} for c in data["cases"][:4]], "lpva")
    assert m["rsrec"] == pytest.approx(want["rsrec"])


def test_unknown_sample_id_is_an_error(data, tmp_path):
    run = write_run(tmp_path / "run", {"s00": data["cases"][0]["pred"], "ghost_7": data["cases"][1]["pred"]})
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", run)
    assert r.returncode == 2
    assert "predictions.jsonl:2" in r.stderr and "ghost_7" in r.stderr and "unknown sample id" in r.stderr
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize("line, problem", [
    ("not json", "not valid JSON"),
    ('{"sample_id": "s01", "box": [1, 2, 3], "mask": null}', "'box' must be null"),
    ('{"sample_id": "s01", "box": null, "mask": "masks/nope.png"}', "does not exist"),
    ('{"sample_id": "s00", "box": null, "mask": null}', "predicted twice"),
])
def test_malformed_prediction_lines_name_file_and_line(data, tmp_path, line, problem):
    run = write_run(tmp_path / "run", {"s00": data["cases"][0]["pred"]}, extra_lines=[line])
    with pytest.raises(EvalInputError, match=problem) as err:
        read_predictions(run, {c["id"] for c in data["cases"]})
    assert "predictions.jsonl:2" in str(err.value)


def test_wrong_mask_size_and_missing_predictions_file_exit_2(data, tmp_path):
    run = write_run(tmp_path / "run", {"s00": np.ones((3, 3), bool)})
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", run, "--workers", "1")
    assert r.returncode == 2 and "s00.png" in r.stderr and "original image size" in r.stderr
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", tmp_path / "empty")
    assert r.returncode == 2 and "no predictions file" in r.stderr


def test_box_only_data_and_box_only_predictions(tmp_path):
    cases = [{"id": "a", "h": 100, "w": 100, "gt": None, "box": (0, 0, 10, 20)},
             {"id": "b", "h": 100, "w": 100, "gt": None, "box": (5, 0, 15, 10)}]
    jsonl = write_jsonl_dataset(tmp_path / "ds", cases)
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(
        json.dumps({"sample_id": s, "box": [0, 0, 10, 10], "mask": None, "sam_score": None}) + "\n" for s in "ab"))
    m = evaluate(load_samples("jsonl", jsonl, "test"), run, "lpva", workers=1).metrics("jsonl", "test")
    assert "rsres" not in m and m["rsrec"]["Pr@0.5"] == 50.0  # 0.5 (>= hit) and 1/3
    assert m["rsrec"]["mIoU"] == pytest.approx(100 * (0.5 + 1 / 3) / 2)
    assert m["rsrec"]["oIoU"] == pytest.approx(100 * 150 / 350)


def test_compare_puts_runs_side_by_side(data, tmp_path):
    names = []
    for protocol in ("zeroov", "rmsin"):
        run = write_run(tmp_path / f"run_{protocol}", {c["id"]: c["pred"] for c in data["cases"]})
        assert cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", run,
                   "--protocol", protocol).returncode == 0
        names.append(run)
    r = cli("compare.py", *names, "--metric", "rsrec.Pr@0.5", "--metric", "rsres.oIoU")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| run_")]
    assert [row.split(" | ")[0] for row in rows] == ["| run_zeroov", "| run_rmsin"]
    assert "rsrec.Pr@0.5 | rsres.oIoU |" in r.stdout and "not directly comparable" in r.stdout
    bad = cli("compare.py", names[0], tmp_path / "nothing")
    assert bad.returncode == 2 and "metrics.json" in bad.stderr


def test_paper_numbers_beside_ours_for_rrsisd_and_risbench():
    block = {k: 30.0 for k in METRIC_KEYS}
    base = {"protocol": "zeroov", "split": "test", "n": 3481, "missing": 0, "rsrec": block, "rsres": block}
    text = render({**base, "dataset": "rrsisd"})
    assert "| RSREC (box) Pr@0.5 | 30.00 | 31.39 | -1.39 |" in text and "28.35" in text
    assert "38.87" in render({**base, "dataset": "risbench"})
    assert "paper" not in render({**base, "dataset": "jsonl"}).lower()


def _png(path, arr, mode=None):
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(path)
    return path


def test_fast_ground_truth_decoder_equals_load_mask(tmp_path):
    rng = np.random.default_rng(3)
    gray = (rng.random((21, 17)) > 0.6).astype(np.uint8) * 255
    variants = {
        "gray.png": _png(tmp_path / "gray.png", gray),
        "ones.png": _png(tmp_path / "ones.png", gray // 255),
        "rgb.png": _png(tmp_path / "rgb.png", np.stack([gray * 0, gray, gray * 0], -1)),
        "palette.png": _png(tmp_path / "palette.png", np.stack([gray] * 3, -1), "P"),
        "i16.png": _png(tmp_path / "i16.png", gray.astype(np.uint16) * 200),
        "la.png": _png(tmp_path / "la.png", gray, "LA"),
    }
    trns = Image.fromarray(gray)
    trns.info["transparency"] = 0
    trns.save(tmp_path / "trns.png", transparency=0)
    variants["trns.png"] = tmp_path / "trns.png"
    for name, path in variants.items():
        s = Sample(name, path, "x", 17, 21, mask=MaskSource("image", path))
        fast, slow = load_gt_mask(s), s.load_mask()
        assert fast.dtype == bool and np.array_equal(fast, slow), name
    wrong = Sample("w", variants["gray.png"], "x", 20, 21, mask=MaskSource("image", variants["gray.png"]))
    with pytest.raises(ValueError, match="20x21"):
        load_gt_mask(wrong)


def test_evaluate_from_another_run_writes_metrics_into_out(data, tmp_path):
    run = write_run(tmp_path / "base", {c["id"]: c["pred"] for c in data["cases"]})
    assert cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--out", run).returncode == 0
    new = tmp_path / "base_rmsin"
    r = cli("evaluate.py", "--dataset", "jsonl", "--root", data["jsonl"], "--from", run, "--out", new,
            "--protocol", "rmsin")
    assert r.returncode == 0, r.stderr
    m = json.loads((new / "metrics.json").read_text())
    assert m["protocol"] == "rmsin" and m["source_run"] == str(run) and not (new / "predictions.jsonl").exists()
    assert json.loads((run / "metrics.json").read_text())["protocol"] == "zeroov"  # the source is untouched
    r = cli("compare.py", "--from", run)  # the base run, then every run made from it
    assert r.returncode == 0, r.stderr
    rows = [line.split(" | ")[0] for line in r.stdout.splitlines() if line.startswith("| base")]
    assert rows == ["| base", "| base_rmsin"]
    assert cli("compare.py", "--from", tmp_path / "nowhere").returncode == 2
