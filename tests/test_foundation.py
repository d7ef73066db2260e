"""Run-directory format, stage runner, image reading and registry errors (no models needed)."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov import images, runner
from rsvg_zeroov.models import registry
from rsvg_zeroov.rundir import DumpError, RunDir, atomic_write_bytes, load_npy, save_json, save_npy


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    p = tmp_path / "a" / "x.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(p.parent) == ["x.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.bin"
    atomic_write_bytes(p, b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


def test_load_npy_validates_shape_dtype_truncation(tmp_path):
    p = tmp_path / "m.npy"
    save_npy(p, np.ones((5, 3, 4), np.float16))
    assert load_npy(p, (5, None, 4)).dtype == np.float32
    with pytest.raises(DumpError, match="m.npy: shape"):
        load_npy(p, (5, 3, 3))
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(DumpError, match="m.npy: truncated"):
        load_npy(p)
    save_npy(p, np.ones(3, np.int64))
    with pytest.raises(DumpError, match="dtype int64"):
        load_npy(p)
    with pytest.raises(DumpError, match="missing"):
        load_npy(tmp_path / "none.npy")


def test_overview_reader_checks_sidecar_against_array(tmp_path):
    run = RunDir(tmp_path)
    save_npy(run.overview_npy("s1"), np.zeros((5, 3, 4), np.float32))
    save_json(run.overview_json("s1"), {"grid": [3, 4], "layers": [1, 2, 3, 4], "weights": [0.25] * 4})
    maps, meta = run.load_overview("s1")
    assert maps.shape == (5, 3, 4) and meta["grid"] == [3, 4]
    save_json(run.overview_json("s1"), {"grid": [4, 3], "layers": [1, 2, 3, 4], "weights": [0.25] * 4})
    with pytest.raises(DumpError, match="s1.npy: shape"):
        run.load_overview("s1")
    assert not run.overview_valid("s1")


def test_shards_are_disjoint_and_complete(monkeypatch):
    items = list(range(11))
    parts = [runner.shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert runner.parse_shard(None) == (2, 4)
    assert runner.parse_shard("1/3") == (1, 3)
    with pytest.raises(runner.UsageError):  # the library raises; the scripts exit 2 (cli.main)
        runner.parse_shard("3/3")


class _S:
    def __init__(self, sid):
        self.sample_id = sid


def test_run_stage_records_failures_retries_singly_and_prunes(tmp_path):
    run = RunDir(tmp_path)
    done = set()
    bad = {"b"}

    def process(batch):
        if any(s.sample_id in bad for s in batch):
            raise ValueError("broken " + ",".join(s.sample_id for s in batch))
        done.update(s.sample_id for s in batch)

    samples = [_S(x) for x in "abcd"]
    rep = runner.run_stage("t", run, samples, lambda s: s.sample_id in done, process, batch_size=2)
    assert rep.failed == 1 and done == {"a", "c", "d"} and runner.exit_code(rep) == 1
    fails = run.read_failures()
    assert [f["sample_id"] for f in fails] == ["b"] and "broken b" in fails[0]["error"]
    bad.clear()
    rep = runner.run_stage("t", run, samples, lambda s: s.sample_id in done, process)
    assert rep.skipped == 3 and rep.done == 1 and run.read_failures() == []


def test_run_stage_setup_runs_once_only_when_needed_and_its_error_propagates(tmp_path):
    """setup (the model load) runs once before the first sample, never on a fully resumed run, and
    what it raises stops the stage instead of failing every sample."""
    run, calls, done = RunDir(tmp_path), [], set()
    samples = [_S(x) for x in "abc"]

    def process(batch):
        assert calls == ["setup"]
        done.update(s.sample_id for s in batch)

    rep = runner.run_stage("t", run, samples, lambda s: s.sample_id in done, process, setup=lambda: calls.append("setup"))
    assert rep.done == 3 and calls == ["setup"]
    rep = runner.run_stage("t", run, samples, lambda s: s.sample_id in done, process, setup=lambda: calls.append("again"))
    assert rep.skipped == 3 and calls == ["setup"]

    def broken():
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError, match="no weights"):
        runner.run_stage("t", run, samples, lambda s: False, process, setup=broken)
    assert run.read_failures() == []


@pytest.mark.parametrize("mode,shape", [("L", (6, 5)), ("RGBA", (6, 5, 4)), ("I;16", (6, 5)), ("P", (6, 5))])
def test_load_rgb_converts_modes(tmp_path, mode, shape):
    p = tmp_path / "im.png"
    if mode == "I;16":
        Image.fromarray((np.arange(30).reshape(6, 5) * 2000).astype(np.uint16)).save(p)
    else:
        Image.fromarray(np.zeros((6, 5, 3), np.uint8)).convert(mode).save(p)
    arr = images.load_rgb(p)
    assert arr.shape == (6, 5, 3) and arr.dtype == np.uint8
    if mode == "I;16":
        assert arr.max() == 255 and arr.min() == 0


def test_load_rgb_errors_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    for name, msg in [("empty.jpg", "empty"), ("junk.jpg", "unreadable"), ("none.jpg", "missing")]:
        with pytest.raises(images.ImageError, match=f"{name}: .*{msg}"):
            images.load_rgb(tmp_path / name)


def test_registry_keys_and_missing_models(tmp_path, monkeypatch):
    assert registry.resolve("qwen", None).source == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert registry.resolve("sd", None).source == "CompVis/stable-diffusion-v1-4"
    assert registry.resolve("qwen", "qwen2.5-vl-72b").source.endswith("72B-Instruct")
    with pytest.raises(registry.ModelNotFound, match="does not exist"):
        registry.load_qwen(str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(registry.ModelNotFound, match="sam_vit_h_4b8939.pth.*--no-sam"):
        registry.resolve_sam(None, "vit_h")


def test_sam_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "evil.pth"
    ckpt.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(registry.ModelNotFound, match="could not be read"):
        registry.load_sam(str(ckpt), "vit_b")
    assert not marker.exists()


def test_missing_model_cli_message_is_one_line(tmp_path):
    code = ("from rsvg_zeroov.models import registry\n"
            "try:\n registry.load_sd(%r)\nexcept registry.ModelNotFound as e:\n print('MSG', e)" % str(tmp_path / "sd"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("MSG model path") and "Traceback" not in out.stderr


def test_damaged_image_fails_its_sample_not_the_run(tmp_path):
    import argparse

    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "data.jsonl").write_text(
        json.dumps({"id": "a", "image": "ok.png", "expression": "x"}) + "\n"
        + json.dumps({"id": "b", "image": "zero.png", "expression": "y"}) + "\n")
    args = argparse.Namespace(dataset="jsonl", root=str(tmp_path / "data.jsonl"), split="test", limit=None,
                              format=None, bbox_format=None)
    samples = runner.load_run_samples(args)
    assert [runner.image_error(s) is None for s in samples] == [True, False]
    run = RunDir(tmp_path / "run")
    seen = []
    rep = runner.run_stage("t", run, samples, lambda s: False, lambda b: seen.extend(s.sample_id for s in b))
    assert seen == ["a"] and rep.failed == 1 and rep.done == 1
    assert run.read_failures()[0]["sample_id"] == "b" and "zero.png" in run.read_failures()[0]["error"]
    # the listing CLI stays strict
    from rsvg_zeroov.datasets import DatasetError, load_samples

    with pytest.raises(DatasetError, match="zero.png"):
        load_samples("jsonl", tmp_path / "data.jsonl", "test")


def test_out_of_memory_on_one_sample_is_recorded_and_the_run_goes_on(tmp_path):
    torch = pytest.importorskip("torch")
    run = RunDir(tmp_path)
    done = []

    def process(batch):
        if batch[0].sample_id == "big":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        done.append(batch[0].sample_id)

    rep = runner.run_stage("focus", run, [_S("a"), _S("big"), _S("c")], lambda s: False, process)
    assert done == ["a", "c"] and rep.failed == 1
    assert "OutOfMemoryError" in run.read_failures()[0]["error"]
