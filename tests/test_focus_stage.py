"""Stage 2 over a data set: generate_diffusion.py / .sh on a JSONL data set, files, resume, failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from focus_helpers import make_image, row_sums

from rsvg_zeroov.focus.config import FocusConfig
from rsvg_zeroov.focus.model import FocusResult
from rsvg_zeroov.focus.stage import expected_files, is_done, write_result
from rsvg_zeroov.rundir import FOCUS_META, RunDir, save_png
from rsvg_zeroov.runner import read_stage_config

REPO = Path(__file__).resolve().parents[1]
LONG = ("the large white building with a flat roof next to the parking lot. " * 3 +
        "it is on the left side of the image near two green trees and a narrow road " * 2)


def _dataset(folder: Path, broken: bool = True) -> Path:
    """A JSONL data set: two good images (one with a > 75-token expression) and a truncated PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    save_png(folder / "a.png", make_image(0, 72, 96))
    save_png(folder / "b.png", make_image(1, 64, 64)[..., 0])  # grayscale
    save_png(folder / "c.png", make_image(2, 80, 80))
    if broken:
        data = (folder / "c.png").read_bytes()
        (folder / "c.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    lines = [{"id": "a", "image": "a.png", "expression": "the yellow roof"},
             {"id": "b", "image": "b.png", "expression": LONG},
             {"id": "c", "image": "c.png", "expression": "the road"}]
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _main(argv):
    sys.path.insert(0, str(REPO))
    import generate_diffusion

    return generate_diffusion.main(argv)


def _status(argv) -> int:
    """generate_diffusion's exit status, also when it exits with SystemExit (user errors: one line, 2)."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


def test_cli_writes_contract_files_resumes_and_records_failures(tmp_path, tiny_dir):
    data, out = _dataset(tmp_path / "data"), tmp_path / "run"
    args = ["--dataset", "jsonl", "--root", str(data), "--out", str(out), "--model", "tiny",
            "--inversion", "ddim", "--steps", "2", "--steps-offset", "0", "--dump-dtype", "float16"]
    legacy = dict(steps_offset=0, storage_dtype="float16")  # the defaults before the released ones
    assert _main(args) == 1  # one sample failed -> non-zero exit
    run = RunDir(out)
    failures = run.read_failures()
    assert [f["sample_id"] for f in failures] == ["c"] and failures[0]["stage"] == "focus"
    config = read_stage_config(run.config("focus"))  # the one schema of every stage's config file
    assert config["config"]["num_steps"] == 2 and config["config"]["inversion"] == "ddim"
    assert config["config"]["guidance"] == 7.5 and config["resolved"]["model_key"] == "tiny"
    for sid in ("a", "b"):
        folder = run.focus_dir(sid)
        assert sorted(p.name for p in folder.iterdir()) == sorted([*expected_files(FocusConfig()), FOCUS_META])
        assert sum(p.stat().st_size for p in folder.iterdir()) <= 8 * 2 ** 20  # <= 8 MB per sample
        self_32 = np.load(folder / "self_32.npy")
        assert self_32.shape == (32, 32, 1024) and self_32.dtype == np.float16
        np.testing.assert_allclose(row_sums(self_32), 1.0, atol=2e-3)
        np.testing.assert_allclose(row_sums(np.load(folder / "self_64to32_corrected.npy")), 1.0, atol=2e-3)
        assert np.load(folder / "self_64to32_released.npy").shape == (1024, 1024)
        meta = json.loads((folder / FOCUS_META).read_text())
        assert meta["inversion"] == "ddim" and meta["steps"] == 2 and meta["storage_dtype"] == "float16"
        assert meta["dtype"] == "float32" and meta["timesteps"] == [500, 0]
    meta_b = json.loads((run.focus_dir("b") / FOCUS_META).read_text())
    assert meta_b["n_chunks"] >= 2 and meta_b["first_chunk_tokens"] <= 75 and meta_b["chunks"][0].endswith(".")

    stamp = {p: p.stat().st_mtime_ns for p in run.focus_dir("a").iterdir()}
    _dataset(tmp_path / "data", broken=False)  # repair c, run again: a and b are skipped
    assert _main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in run.focus_dir("a").iterdir()} == stamp
    assert is_done(run, "c", FocusConfig(model="tiny", num_steps=2, inversion="ddim", **legacy)) and run.read_failures() == []
    assert not is_done(run, "c", FocusConfig())  # other settings (20 steps, null-text) would recompute it


def test_cli_extras_noise_mode_batched(tmp_path, tiny_dir):
    data, out = _dataset(tmp_path / "data", broken=False), tmp_path / "run"
    args = ["--dataset", "jsonl", "--root", str(data), "--out", str(out), "--model", "tiny", "--limit", "2",
            "--inversion", "noise", "--timestep", "300", "--batch-size", "2", "--storage-dtype", "float32",
            "--save-full-64", "--save-self-16", "--save-cross"]
    assert _main(args) == 0
    run = RunDir(out)
    config = FocusConfig(inversion="noise", save_full_64=True, save_self_16=True, save_cross=True,
                         storage_dtype="float32")
    assert is_done(run, "a", config) and not run.focus_dir("c").exists()
    folder = run.focus_dir("a")
    meta = json.loads((folder / FOCUS_META).read_text())
    assert meta["inversion"] == "noise" and meta["noise_timestep"] == 300 and meta["batch_size"] == 2
    assert meta["captured"]["self_64"]["calls"] == 5  # one forward, 5 attn1 layers at r = 64
    for name, shape in expected_files(config).items():
        arr = np.load(folder / name)
        assert arr.dtype == np.float32 and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if "released" not in name:  # the released resizes do not keep rows stochastic
            np.testing.assert_allclose(row_sums(arr), 1.0, atol=1e-4, err_msg=name)
    assert np.load(folder / "cross_64.npy").shape == (64, 64, 77)


def test_is_done_validates_files_and_meta(tmp_path):
    run, config = RunDir(tmp_path), FocusConfig()
    rng = np.random.default_rng(0)
    result = FocusResult(rng.random((32, 32, 1024), dtype=np.float32), rng.random((1024, 1024), dtype=np.float32),
                         rng.random((1024, 1024), dtype=np.float32),
                         meta={"model": "m", "steps": 20, "guidance": 7.5, "inversion": "nulltext",
                               "chunks": ["q"], "dtype": "float32", "storage_dtype": "float16"})
    write_result(run, "s", result, config)
    assert is_done(run, "s", config)
    assert not is_done(run, "s", FocusConfig(save_self_16=True))  # an extra asked for now is missing
    assert not is_done(run, "s", FocusConfig(num_steps=10))  # written with other settings: recompute
    path = run.focus_file("s", "self_64to32_corrected.npy")
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert not is_done(run, "s", config)
    write_result(run, "s", result, config)
    np.save(run.focus_file("s", "self_32.npy"), np.zeros((16, 16, 256), np.float16))  # wrong shape
    assert not is_done(run, "s", config)
    write_result(run, "s", result, config)
    run.focus_file("s", FOCUS_META).write_text("{}")
    assert not is_done(run, "s", config)


def test_missing_model_is_one_message_and_exit_2(tmp_path, capsys):
    data = _dataset(tmp_path / "data", broken=False)
    code = _status(["--dataset", "jsonl", "--root", str(data), "--out", str(tmp_path / "run"),
                  "--model", str(tmp_path / "no_such_model")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_shell_wrapper_runs_the_stage(tmp_path, tiny_dir):
    data, out = _dataset(tmp_path / "data", broken=False), tmp_path / "run"
    env = dict(os.environ, DATASET="jsonl", ROOT=str(data), OUT=str(out), MODEL="tiny", LIMIT="1",
               PYTHON=sys.executable, EXTRA_ARGS="--inversion noise", RSVG_ZEROOV_TINY_DIR=str(tiny_dir),
               HF_HUB_OFFLINE="1")
    proc = subprocess.run(["bash", str(REPO / "generate_diffusion.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert is_done(RunDir(out), "a", FocusConfig(model="tiny", inversion="noise")) and (out / "focus_config.json").is_file()


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--batch-size", "0")])
def test_bad_flag_values_exit_with_message(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _main(["--dataset", "jsonl", "--root", str(tmp_path), flag, value])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "FocusConfig" in err, err
