"""Stage 1 driver and CLI: outputs, sidecar, resume, corrupt dumps, failures, single-image mode, llmattn.sh."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import llmattn
from overview_helpers import NONSQUARE, SQUARE, rgb, write_jsonl_dataset
from rsvg_zeroov.overview import model as overview_model
from rsvg_zeroov.rundir import RunDir, save_npy
from rsvg_zeroov.runner import read_stage_config

REPO = Path(__file__).resolve().parents[1]
GEN = ["--max-new-tokens", "3", "--min-new-tokens", "3", "--greedy"]


def dataset(tmp_path):
    items = [("s0", *SQUARE), ("s1", *NONSQUARE), ("s2", rgb(84, 56, 3), "the tank")]
    return write_jsonl_dataset(tmp_path / "data", items)


def cli_args(jsonl, out, model, *extra) -> list[str]:
    return ["--dataset", "jsonl", "--root", jsonl, "--out", str(out), "--model", str(model), *GEN, *extra]


def cli(jsonl, out, model, *extra):
    return llmattn.main(cli_args(jsonl, out, model, *extra))


def exit_status(argv) -> int:
    """llmattn's exit status, also when it exits with SystemExit (user errors: one line, 2)."""
    try:
        return llmattn.main(argv)
    except SystemExit as exc:
        return exc.code


def test_dataset_mode_writes_dumps_sidecars_and_config(tmp_path, tiny_qwen):
    out = tmp_path / "run"
    assert cli(dataset(tmp_path), out, tiny_qwen, "--batch-size", "2") == 0
    run = RunDir(out)
    grids = {"s0": (3, 3), "s1": (2, 3), "s2": (3, 2)}
    for sid, grid in grids.items():
        maps, meta = run.load_overview(sid)
        assert maps.shape == (5, *grid) and np.load(run.overview_npy(sid)).dtype == np.float32
        assert meta["grid"] == list(grid) and meta["layers"] == [16, 17, 18, 19]
        assert meta["weights"] == [0.1, 0.1, 0.3, 0.5] and meta["dtype"] == "float32"
        assert meta["prompt"].startswith("Locate it according to the following description.  ")
        assert isinstance(meta["answer"], str) and meta["num_generated_tokens"] == 3
        assert meta["model"] == str(tiny_qwen) and meta["generation"]["max_new_tokens"] == 3
        assert meta["image_size"] == [grid[1] * 28, grid[0] * 28]
        assert 0 <= maps[0].min() and maps[0].max() <= 1.0 + 1e-6
    config = read_stage_config(run.config("overview"))  # the one schema of every stage's config file
    assert config["config"]["batch_size"] == 2 and config["resolved"]["dtype"] == "float32" and "versions" in config
    assert not run.failures.exists()


def test_resume_skips_valid_and_recomputes_corrupt_or_wrong_shaped(tmp_path, tiny_qwen, monkeypatch):
    jsonl, out = dataset(tmp_path), tmp_path / "run"
    assert cli(jsonl, out, tiny_qwen) == 0
    run = RunDir(out)
    first = {sid: run.load_overview(sid)[0] for sid in ("s0", "s1", "s2")}
    # everything valid: no model is even loaded
    monkeypatch.setattr(overview_model.Overview, "load", lambda self: pytest.fail("model loaded on a full resume"))
    assert cli(jsonl, out, tiny_qwen) == 0
    monkeypatch.undo()
    stamp = run.overview_npy("s2").stat().st_mtime_ns
    run.overview_npy("s0").write_bytes(run.overview_npy("s0").read_bytes()[:-10])  # truncated
    save_npy(run.overview_npy("s1"), np.zeros((5, 7, 7), np.float32))  # wrong shape for its sidecar
    calls = []
    real_call = overview_model.Overview.__call__
    monkeypatch.setattr(overview_model.Overview, "__call__", lambda self, items: calls.append(len(items))
                        or real_call(self, items))
    assert cli(jsonl, out, tiny_qwen) == 0
    assert calls == [1, 1]  # s0 and s1 recomputed, s2 skipped
    assert run.overview_npy("s2").stat().st_mtime_ns == stamp
    for sid, maps in first.items():
        np.testing.assert_allclose(run.load_overview(sid)[0], maps, atol=1e-6)


def test_other_layers_in_the_run_dir_are_recomputed(tmp_path, tiny_qwen):
    jsonl, out = dataset(tmp_path), tmp_path / "run"
    assert cli(jsonl, out, tiny_qwen, "--limit", "1") == 0
    assert cli(jsonl, out, tiny_qwen, "--limit", "1", "--layers", "2,5", "--weights", "0.5,0.5") == 0
    maps, meta = RunDir(out).load_overview("s0")
    assert maps.shape == (3, 3, 3) and meta["layers"] == [2, 5]


def test_failed_sample_is_recorded_and_exit_code_nonzero(tmp_path, tiny_qwen):
    jsonl = dataset(tmp_path)
    png = Path(jsonl).parent / "images" / "s1.png"
    png.write_bytes(png.read_bytes()[:120])  # header (size) readable, pixel data truncated
    out = tmp_path / "run"
    assert cli(jsonl, out, tiny_qwen, "--batch-size", "3") == 1
    run = RunDir(out)
    failures = run.read_failures()
    assert [f["sample_id"] for f in failures] == ["s1"] and failures[0]["stage"] == "overview"
    assert run.overview_valid("s0") and run.overview_valid("s2") and not run.overview_valid("s1")


def test_single_image_mode(tmp_path, tiny_qwen, capsys):
    from PIL import Image

    img = tmp_path / "scene_01.png"
    Image.fromarray(NONSQUARE[0]).save(img)
    out = tmp_path / "one"
    assert llmattn.main(["--image_path", str(img), "--question", "a ship", "--out", str(out),
                         "--model", str(tiny_qwen), *GEN]) == 0
    maps, meta = RunDir(out).load_overview("scene_01")
    assert maps.shape == (5, 2, 3) and meta["image"] == str(img) and "a ship" in meta["prompt"]
    assert "answer:" in capsys.readouterr().out


def test_model_not_found_is_one_message_exit_2(tmp_path, capsys):
    code = exit_status(["--dataset", "jsonl", "--root", dataset(tmp_path), "--out", str(tmp_path / "r"),
                        "--model", str(tmp_path / "no_such_model")])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_model" in err and err.count("error:") == 1
    assert not RunDir(tmp_path / "r").failures.exists()


def test_bad_layer_is_one_message_exit_2(tmp_path, tiny_qwen, capsys):
    code = exit_status(cli_args(dataset(tmp_path), tmp_path / "r", tiny_qwen, "--layers", "1,99", "--weights", "1,1"))
    assert code == 2 and "[99] do not exist" in capsys.readouterr().err


def test_llmattn_sh_wraps_dataset_mode(tmp_path, tiny_qwen):
    env = dict(os.environ, DATASET="jsonl", ROOT=dataset(tmp_path), SPLIT="test", OUT=str(tmp_path / "run"),
               MODEL=str(tiny_qwen), LIMIT="1", PYTHON=sys.executable, EXTRA_ARGS=" ".join(GEN))
    proc = subprocess.run(["bash", str(REPO / "llmattn.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert RunDir(tmp_path / "run").overview_valid("s0")
    assert not RunDir(tmp_path / "run").overview_npy("s1").exists()


@pytest.mark.slow
def test_llmattn_sh_torchrun_two_processes_shard(tmp_path, tiny_qwen):
    env = dict(os.environ, DATASET="jsonl", ROOT=dataset(tmp_path), OUT=str(tmp_path / "run"),
               MODEL=str(tiny_qwen), NUM_GPUS="2", PYTHON=sys.executable, EXTRA_ARGS=" ".join(GEN),
               OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(REPO / "llmattn.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(RunDir(tmp_path / "run").overview_valid(s) for s in ("s0", "s1", "s2"))


def test_resume_compares_every_setting_that_decides_the_maps():
    """A dump made with another model, fidelity, answer budget, stop rule, prompt or pixel bound is
    not 'done'; a sidecar of an earlier version (without the newer keys) counts as their defaults."""
    from rsvg_zeroov.rundir.overview import settings_match

    from rsvg_zeroov.overview.config import OverviewConfig

    config = OverviewConfig(model="tiny", max_new_tokens=8)
    meta = {"model": "/x/tiny/qwen", "model_key": "tiny", "dtype": "float32", "max_pixels": None,
            "min_pixels": None, "generation": {"max_new_tokens": 8}}
    assert settings_match(meta, config)  # an earlier sidecar: fidelity etc. absent = defaults
    for changed in (dict(fidelity="corrected"), dict(stop_at_bracket=True), dict(max_new_tokens=9),
                    dict(max_pixels=28 * 28 * 64), dict(model="qwen2.5-vl-3b"), dict(dtype="bfloat16"),
                    dict(prompt_template="Find {q}.")):
        assert not settings_match(meta, config.override(**changed)), changed
    assert settings_match({**meta, "fidelity": "corrected"}, config.override(fidelity="corrected"))
