"""The shared core: flags from config dataclasses, the role registries, the Stage contract and its
config file, the run lock, progress reporting and the input checks."""
import argparse
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvg_zeroov import cli, runner
from rsvg_zeroov.models.base import ModelNotFound, ModelRef, Registry, check_models, looks_like_path
from rsvg_zeroov.rundir import RunDir


@dataclass(frozen=True)
class Demo:
    k: int = field(default=7, metadata=cli.flag("--k", "seed count"))
    layers: tuple[int, ...] = field(default=(16, 17), metadata=cli.flag("--layers", "layers"))
    name: str | None = field(default=None, metadata=cli.flag("--model", "model", aliases=("--vlm",)))
    sam: bool = field(default=True, metadata=cli.flag("--no-sam", "skip SAM", store_false=True))
    greedy: bool | None = field(default=None, metadata=cli.flag("--greedy", "greedy decoding"))
    mode: str = field(default="a", metadata=cli.flag("--mode", "mode", choices=("a", "b")))
    hidden: int = 3

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k={self.k}: must be >= 1")


def _parser():
    p = argparse.ArgumentParser()
    cli.add_config_flags(p, Demo)
    cli.add_common_args(p)
    return p


def test_flags_come_from_the_dataclass_with_its_defaults_in_the_help():
    p = _parser()
    text = p.format_help()
    assert "seed count (default: 7)" in text and "layers (default: 16,17)" in text and "--vlm" in text
    assert "--hidden" not in text
    args = p.parse_args([])
    assert cli.config_from_args(Demo, args) == Demo()  # nothing given: the dataclass defaults
    args = p.parse_args(["--k", "5", "--layers", "1,2,3", "--vlm", "x", "--no-sam", "--no-greedy", "--mode", "b"])
    assert cli.config_from_args(Demo, args) == Demo(k=5, layers=(1, 2, 3), name="x", sam=False, greedy=False,
                                                    mode="b")
    with pytest.raises(SystemExit):
        p.parse_args(["--layers", "1,x"])
    with pytest.raises(runner.UsageError, match="k=0"):
        cli.config_from_args(Demo, p.parse_args(["--k", "0"]))


def test_config_file_rerun_reads_every_layout_and_flags_override(tmp_path):
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"stage": "x", "config": {"k": 4, "layers": [3]}, "resolved": {}, "run": {},
                               "versions": {}}))
    flat = tmp_path / "flat.json"  # how stage 3 recorded its settings before
    flat.write_text(json.dumps({"stage": "evolve", "k": 9, "versions": {}}))
    nested = tmp_path / "nested.json"  # how stages 1-2 did
    nested.write_text(json.dumps({"stage": "focus", "config": {"k": 2}, "model": "m", "versions": {}}))
    assert cli.config_from_file(Demo, new) == Demo(k=4, layers=(3,))
    assert cli.config_from_file(Demo, flat) == Demo(k=9)
    assert cli.config_from_file(Demo, nested) == Demo(k=2)
    assert runner.read_stage_config(nested)["resolved"]["model"] == "m"
    args = _parser().parse_args(["--config", str(new), "--k", "6"])
    assert cli.build_config(Demo, args) == Demo(k=6, layers=(3,))
    from rsvg_zeroov.evolve.config import EvolveConfig

    with pytest.raises(runner.UsageError, match="config of stage 'focus'"):  # another stage's file
        cli.config_from_file(EvolveConfig, nested)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"stage": "evolve", "tau": 0.3}))
    with pytest.raises(runner.UsageError, match="tau"):
        cli.config_from_file(Demo, other)


def test_cli_main_turns_user_errors_into_one_line_and_exit_2(capsys):
    def fn(argv):
        raise runner.UsageError("bad thing")

    with pytest.raises(SystemExit) as exc:
        cli.main(fn, [])
    assert exc.value.code == 2 and capsys.readouterr().err.strip() == "error: bad thing"
    assert cli.main(lambda argv: 1, []) == 1


def test_registry_resolves_keys_aliases_hub_ids_and_paths(tmp_path):
    reg = Registry("test-role-a")
    reg.add("m-1", adapter="json:JSONDecoder", hub_id="org/m-1", size="1B", default=True, aliases=("m1",))
    reg.add("ck", adapter="json:JSONDecoder", checkpoint="ck.pth", url="https://example.invalid/ck.pth")
    assert reg.resolve(None) == ModelRef("test-role-a", "org/m-1", "m-1")
    assert reg.resolve("m1").key == reg.resolve("org/m-1").key == "m-1"
    assert reg.resolve(str(tmp_path)) == ModelRef("test-role-a", str(tmp_path), None)
    assert reg.adapter_class("m-1") is json.JSONDecoder
    with pytest.raises(KeyError, match="m-1"):
        reg.adapter_class("nope")
    with pytest.raises(ValueError, match="twice"):
        reg.add("m-1", adapter="json:JSONDecoder")
    assert looks_like_path("./x") and looks_like_path("/a/b") and looks_like_path("x.pth")
    assert not looks_like_path("Qwen/Qwen2.5-VL-7B-Instruct")
    (tmp_path / "config.json").write_text("{}")
    assert reg.present(reg.resolve(str(tmp_path))) and not reg.present(reg.resolve(str(tmp_path / "no")))


def test_check_models_names_every_missing_model_in_one_message(tmp_path, monkeypatch):
    from rsvg_zeroov.models import base

    reg = Registry("test-role-b", checkpoint_dir=str(tmp_path / "ckpts"))
    reg.add("hub", adapter="json:JSONDecoder", hub_id="org/not-cached", default=True)
    reg.add("ck", adapter="json:JSONDecoder", checkpoint="ck.pth", url="https://example.invalid/ck.pth")
    monkeypatch.setitem(base.ROLE_MODULES, "test-role-b", "json")
    with pytest.raises(ModelNotFound) as exc:
        check_models([("test-role-b", None, "--vlm"), ("test-role-b", "ck", "--sam-checkpoint"),
                      ("test-role-b", str(tmp_path / "missing-folder"), "--sd")])
    msg = str(exc.value)
    assert msg.startswith("3 models this command needs are missing")
    assert "`hf download org/not-cached`" in msg and "--vlm" in msg
    assert "ck.pth" in msg and "https://example.invalid/ck.pth" in msg and "--sam-checkpoint FILE" in msg
    assert "missing-folder" in msg and "--sd" in msg
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "ck.pth").write_bytes(b"x")
    refs = check_models([("test-role-b", "ck", "--sam-checkpoint")])
    assert refs[0].source.endswith("ck.pth")


def test_the_models_listing_shows_every_role():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rsvg_zeroov.models", "--json"], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["role"] for r in rows} == {"vlm", "diffusion", "refiner"}
    keys = {(r["role"], r["key"]) for r in rows}
    assert {("vlm", "qwen2.5-vl-7b"), ("diffusion", "sd-v1-4"), ("refiner", "vit_h"), ("refiner", "tiny")} <= keys
    assert all(isinstance(r["present"], bool) for r in rows)


class _Stage:
    name, batch_size = "demo", 2

    def __init__(self):
        self.calls, self.loaded = [], False

    def settings(self):
        return {"config": {"k": 7}, "resolved": {"model": "m"} if self.loaded else {}}

    def setup(self):
        self.loaded = True

    def is_done(self, sample):
        return sample.sample_id == "done"

    def process(self, batch):
        if any(s.sample_id == "bad" for s in batch):
            raise RuntimeError("boom")
        self.calls.append([s.sample_id for s in batch])

    def finalize(self, samples):
        self.calls.append(("finalize", len(samples)))


@dataclass
class _S:
    sample_id: str
    expression: str = "x"
    width: int = 40
    height: int = 40
    image_path: str = "img.png"
    extra: tuple = ()


def test_run_stage_drives_a_stage_object_and_writes_one_config_schema(tmp_path):
    stage, run = _Stage(), RunDir(tmp_path / "run")
    samples = [_S("done"), _S("a"), _S("bad"), _S("b"), _S("empty", expression="  ")]
    assert isinstance(stage, runner.Stage)
    info = runner.run_info(argparse.Namespace(dataset="jsonl", root="r", split="s", limit=None), 0, 1, "cpu")
    rep = runner.run_stage(stage, run, samples, run_info=info)
    assert (rep.total, rep.skipped, rep.done, rep.failed) == (5, 1, 2, 2)
    assert stage.calls == [["a"], ["b"], ("finalize", 5)]  # the bad batch retried one by one
    cfg = json.loads(run.config("demo").read_text())
    assert set(cfg) == {"stage", "config", "resolved", "run", "versions"}
    assert cfg["resolved"] == {"model": "m"} and cfg["run"]["shard"] == "0/1" and cfg["run"]["dataset"] == "jsonl"
    errors = {f["sample_id"]: f["error"] for f in run.read_failures()}
    assert set(errors) == {"bad", "empty"} and "expression is empty" in errors["empty"]
    assert not [p for p in run.root.iterdir() if p.name.endswith(".lock")]  # no lock files left


def test_vlm_stage_refuses_images_below_its_cell():
    assert runner.input_error(_S("x", width=1, height=1)) is None
    assert "at least 28" in runner.input_error(_S("x", width=1, height=1), min_side=28)


def test_run_lock_is_reentrant_and_leaves_no_file(tmp_path):
    run = RunDir(tmp_path / "r")
    with runner.locked(run):
        with runner.locked(run, "predictions"):
            pass
    assert list(run.root.iterdir()) == []


def test_from_reads_upstream_dumps_elsewhere_and_writes_here(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    args = argparse.Namespace(out=str(tmp_path / "new"), dataset="d", split="s", source_run=str(src))
    run = runner.resolve_out(args)
    assert run.overview_npy("a").parent == src / "overview" and run.focus_dir("a").parent == src / "focus"
    assert run.mask_png("a").parent == tmp_path / "new" / "masks" and run.reads_elsewhere
    with pytest.raises(runner.UsageError, match="not found"):
        runner.resolve_out(argparse.Namespace(out="x", dataset="d", split="s", source_run=str(tmp_path / "no")))
    with pytest.raises(runner.UsageError, match="same folder"):  # --from never writes into its source
        runner.resolve_out(argparse.Namespace(out=str(src), dataset="d", split="s", source_run=str(src)))
    assert runner.run_info(args)["source_run"] == str(src.resolve())


def test_stage3_records_of_one_source_are_not_taken_for_another(tmp_path):
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.evolve.stage import EvolveStage

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    prints = set()
    for run in (RunDir(tmp_path / "new"), RunDir(tmp_path / "new", source=tmp_path / "a"),
                RunDir(tmp_path / "new", source=tmp_path / "b")):
        stage = EvolveStage(run, EvolveConfig(refiner=None))
        prints.add(stage.fingerprint)
        stage.close()
    assert len(prints) == 3


def test_progress_logs_when_not_on_a_terminal(caplog, monkeypatch):
    from rsvg_zeroov import progress

    monkeypatch.delenv("RSVG_ZEROOV_PROGRESS", raising=False)
    with caplog.at_level(logging.INFO, logger="rsvg_zeroov.progress"):
        with progress.bar(8, "steps") as bar:
            for _ in range(8):
                bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "steps: started (8 steps)" and lines[-1] == "steps: done (8/8)" and len(lines) == 5
    monkeypatch.setenv("RSVG_ZEROOV_PROGRESS", "0")
    caplog.clear()
    with progress.bar(3, "quiet") as bar:
        bar.update(3)
    assert not caplog.records


def test_per_stage_image_readers_follow_each_released_reading(tmp_path):
    import cv2
    from qwen_vl_utils.vision_process import fetch_image

    from rsvg_zeroov import images

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    files = {"rgba": Image.fromarray(rgba, "RGBA"), "grey": Image.fromarray(rgba[..., 0], "L"),
             "la": Image.fromarray(rgba[..., :2], "LA"), "palette": Image.fromarray(rgba[..., :3]).convert("P"),
             "i16": Image.fromarray((rgba[..., 0].astype(np.uint16) * 257))}
    for name, im in files.items():
        path = tmp_path / f"{name}.png"
        im.save(path)
        sam = images.read_for_sam(path)
        np.testing.assert_array_equal(sam, cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        assert images.read_for_diffusion(path).shape == (30, 40, 3) and images.image_hw(path) == (30, 40)
        vlm = images.read_for_vlm(path)
        ref = fetch_image({"image": str(path), "resized_height": 56, "resized_width": 84})
        np.testing.assert_array_equal(np.asarray(vlm.resize((84, 56))), np.asarray(ref))  # as qwen_vl_utils reads
    white = np.asarray(images.read_for_vlm(tmp_path / "rgba.png")).astype(int)  # RGBA only (LA: alpha dropped)
    a = rgba[..., 3:4] / 255.0
    assert np.abs(white - (rgba[..., :3] * a + 255 * (1 - a))).max() <= 1  # composited onto white
    np.testing.assert_array_equal(images.read_for_diffusion(tmp_path / "rgba.png"), rgba[..., :3])
    np.testing.assert_array_equal(images.read_for_diffusion(tmp_path / "i16.png"),
                                  images.read_for_sam(tmp_path / "i16.png"))  # 16-bit scaled as OpenCV does
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(images.ImageError, match="1x1"):
        images.check_image(tmp_path / "one.png")
    with pytest.raises(images.ImageError, match="missing"):
        images.check_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="empty"):
        images.check_expression("   ")
    assert dataclasses.is_dataclass(Demo)


def test_default_workers_share_the_cores_between_torchrun_ranks(monkeypatch):
    from rsvg_zeroov.runner import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8 and default_workers(cap=32) == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 4  # 16 cores, 4 ranks on this node
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert default_workers() == 8
