"""llmattn.py as the released script's users type it (--image_path/--question/--model_id, the float64
heatmap_16171819.npy), the shared flag spellings, and inputs refused before any model loads."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import llmattn
from overview_helpers import NONSQUARE
from rsvg_zeroov.overview import model as overview_model
from rsvg_zeroov.overview.fuse import fuse64
from rsvg_zeroov.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
GEN = ["--max-new-tokens", "3", "--min-new-tokens", "3", "--greedy"]


def image(tmp_path, name="scene_01.png", size=None):
    path = tmp_path / name
    img = Image.fromarray(NONSQUARE[0])
    (img.resize(size) if size else img).save(path)
    return path


def status(argv) -> int:
    try:
        return llmattn.main(argv)
    except SystemExit as exc:
        return exc.code


def test_released_interface_writes_the_float64_heatmap(tmp_path, tiny_qwen, capsys):
    img, out = image(tmp_path), tmp_path / "one"
    assert llmattn.main(["--image_path", str(img), "--question", "a ship", "--model_id", str(tiny_qwen),
                         "--out", str(out), *GEN]) == 0
    maps, meta = RunDir(out).load_overview("scene_01")
    heat = np.load(out / "heatmap_16171819.npy")
    assert heat.dtype == np.float64 and heat.shape == (5, 2, 3) == maps.shape
    assert np.array_equal(heat[1:], maps[1:].astype(np.float64))  # the a_l, exactly
    assert np.array_equal(heat[0], fuse64(maps[1:], (0.1, 0.1, 0.3, 0.5)))  # A_C in float64
    assert np.abs(heat[0] - maps[0]).max() <= 2.0 ** -24  # the float32 dump rounds it (or equals it)
    assert meta["answer"] == meta["answer"].strip()
    assert "heatmap_16171819.npy" in capsys.readouterr().out


def test_other_layers_name_the_heatmap_after_them(tmp_path, tiny_qwen):
    img, out = image(tmp_path), tmp_path / "one"
    assert llmattn.main(["--image", str(img), "--text", "a ship", "--vlm", str(tiny_qwen), "--out", str(out),
                         "--layers", "2,5", "--weights", "0.5,0.5", *GEN]) == 0
    assert np.load(out / "heatmap_25.npy").shape == (3, 2, 3)


def test_flag_spellings_are_the_same_settings(tmp_path):
    forms = [["--image_path", "a.png", "--question", "q", "--model_id", "m"],
             ["--image", "a.png", "--text", "q", "--vlm", "m"],
             ["--image-path", "a.png", "--question", "q", "--model", "m"],
             ["--image", "a.png", "--text", "q", "--model-id", "m"]]
    parsed = [llmattn.parse_args(f) for f in forms]
    assert {(a.image_path, a.question, a.model) for a in parsed} == {("a.png", "q", "m")}


def test_out_defaults_to_outputs_image_stem(tmp_path, tiny_qwen, monkeypatch):
    img = image(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert llmattn.main(["--image_path", str(img), "--question", "a ship", "--model_id", str(tiny_qwen), *GEN]) == 0
    assert RunDir(tmp_path / "outputs" / "scene_01").overview_valid("scene_01")
    assert (tmp_path / "outputs" / "scene_01" / "heatmap_16171819.npy").is_file()


def test_answer_is_stripped_as_released(tiny_qwen, monkeypatch):
    from rsvg_zeroov.overview.config import OverviewConfig

    ov = overview_model.Overview(OverviewConfig(model=str(tiny_qwen), max_new_tokens=2, greedy=True,
                                                dtype="float32"), "cpu").load()
    monkeypatch.setattr(ov.processor, "decode", lambda ids, **kw: " \n [1, 2, 3, 4]  \n")
    assert ov([NONSQUARE])[0].answer == "[1, 2, 3, 4]"


@pytest.mark.parametrize("case", ["empty", "blank", "missing", "tiny", "unreadable"])
def test_bad_inputs_are_one_error_before_any_model_loads(tmp_path, tiny_qwen, monkeypatch, capsys, case):
    img, question = image(tmp_path), "a ship"
    if case in ("empty", "blank"):
        question = "" if case == "empty" else "  \t "
    elif case == "missing":
        img = tmp_path / "nope.png"
    elif case == "tiny":
        img = image(tmp_path, "one_px.png", size=(1, 1))
    else:
        img.write_bytes(b"not an image")
    monkeypatch.setattr(overview_model.Overview, "load", lambda self: pytest.fail("model loaded"))
    code = status(["--image_path", str(img), "--question", question, "--model_id", str(tiny_qwen),
                   "--out", str(tmp_path / "o"), *GEN])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1, err
    assert {"empty": "expression is empty", "blank": "expression is empty", "missing": "missing",
            "tiny": "at least 28", "unreadable": "unreadable"}[case] in err
    assert not (tmp_path / "o").exists()


def test_bad_input_exit_status_as_a_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "llmattn.py"), "--image_path", str(tmp_path / "nope.png"),
                           "--question", "a ship", "--model", str(tmp_path / "no_model")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dataset_mode_records_bad_inputs_as_failed(tmp_path, tiny_qwen):
    """A too small image and an empty expression (a loader that lets one through) fail their own
    samples in data set mode; the other samples are written."""
    import dataclasses

    from overview_helpers import SQUARE, rgb, write_jsonl_dataset
    from rsvg_zeroov.datasets import load_samples
    from rsvg_zeroov.overview.config import OverviewConfig
    from rsvg_zeroov.overview.stage import run_dataset

    jsonl = write_jsonl_dataset(tmp_path / "data", [("ok", *SQUARE), ("blank", rgb(56, 56, 4), "the tank"),
                                                     ("small", rgb(20, 56, 5), "the tank")])
    samples = [dataclasses.replace(s, expression="  ") if s.sample_id == "blank" else s
               for s in load_samples("jsonl", jsonl, "test")]
    run = RunDir(tmp_path / "run")
    config = OverviewConfig(model=str(tiny_qwen), max_new_tokens=2, greedy=True, dtype="float32")
    report = run_dataset(run, samples, config, "cpu")
    errors = {f["sample_id"]: f["error"] for f in run.read_failures()}
    assert report.failed == 2 and set(errors) == {"blank", "small"}
    assert "expression is empty" in errors["blank"] and "at least 28" in errors["small"]
    assert run.overview_valid("ok") and not run.overview_npy("small").exists()
