"""Stage 2 behind the role interfaces: the diffusion registry and its Stable Diffusion adapter, the
Focus stage as a runner Stage (config written by run_stage, re-run with --config), generated flags."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from focus_helpers import tiny_sd

from rsvg_zeroov.focus.config import FocusConfig
from rsvg_zeroov.models.base import ModelNotFound

REPO = Path(__file__).resolve().parents[1]


def test_registry_keys_and_adapter(tiny_dir):
    from rsvg_zeroov.focus.capture import locate
    from rsvg_zeroov.focus.scheduler import DDIM
    from rsvg_zeroov.models.base import registry
    from rsvg_zeroov.models.diffusion import DIFFUSIONS, DiffusionAdapter, as_adapter
    from rsvg_zeroov.models.sd import StableDiffusion

    assert registry("diffusion") is DIFFUSIONS
    assert DIFFUSIONS.keys() == ["sd-v1-4", "sd-v1-5", "sd-v2-1-base", "tiny"] and DIFFUSIONS.default.key == "sd-v1-4"
    assert DIFFUSIONS.resolve(None).source == "CompVis/stable-diffusion-v1-4"
    assert DIFFUSIONS.resolve("sd-v1-5").source == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert DIFFUSIONS.resolve("sd-v2-1-base").source == "stabilityai/stable-diffusion-2-1-base"
    sd = tiny_sd(tiny_dir)
    assert isinstance(sd, StableDiffusion) and isinstance(sd, DiffusionAdapter) and sd.ref.key == "tiny"
    assert sd.latent_factor == 8 and sd.latent_scale == pytest.approx(0.18215)
    assert sd.sites(64, (32, 64), (32,)) == locate(sd.unet, 64, (32, 64), (32,))
    config = FocusConfig(num_steps=4, steps_offset=0)
    assert sd.schedule(config) == DDIM.from_config(4, steps_offset=0)
    older = SimpleNamespace(vae=sd.vae, unet=sd.unet, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, ref=sd.ref)
    wrapped = as_adapter(older)  # components of the earlier loader (SDComponents) are wrapped
    assert isinstance(wrapped, StableDiffusion) and wrapped.unet is sd.unet and as_adapter(sd) is sd


def test_missing_models_and_unsupported_prediction(tmp_path, tiny_dir):
    from rsvg_zeroov.models.diffusion import load_diffusion

    with pytest.raises(ModelNotFound, match="does not exist"):
        load_diffusion(str(tmp_path / "no_such_model"))
    with pytest.raises(ModelNotFound, match="hf download nobody/no-such-sd"):
        load_diffusion("nobody/no-such-sd")
    folder = tmp_path / "vpred"
    shutil.copytree(tiny_dir / "sd", folder)
    cfg = folder / "scheduler" / "scheduler_config.json"
    cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), prediction_type="v_prediction")))
    with pytest.raises(ValueError, match="epsilon-prediction"):
        load_diffusion(str(folder))


def _dataset(folder: Path) -> Path:
    from rsvg_zeroov.synthetic import write_dataset

    return write_dataset("rrsisd", folder, n=1, size=64)


def _main(argv) -> int:
    sys.path.insert(0, str(REPO))
    import generate_diffusion

    return generate_diffusion.main(argv)


def test_stage_protocol_config_schema_and_rerun_from_config(tmp_path, tiny_dir):
    from rsvg_zeroov.focus.stage import FocusStage
    from rsvg_zeroov.rundir import RunDir
    from rsvg_zeroov.runner import Stage, read_stage_config

    assert isinstance(FocusStage(RunDir(tmp_path / "x"), FocusConfig()), Stage)
    root = _dataset(tmp_path / "data")
    base = ["--dataset", "rrsisd", "--root", str(root), "--split", "test", "--model", "tiny"]
    assert _main([*base, "--out", str(tmp_path / "a"), "--inversion", "noise", "--timestep", "300",
                  "--storage-dtype", "float16", "--num-steps", "3"]) == 0
    path = tmp_path / "a" / "focus_config.json"
    raw = json.loads(path.read_text())
    assert set(raw) == {"stage", "config", "resolved", "run", "versions"} and raw["stage"] == "focus"
    assert raw["config"]["noise_timestep"] == 300 and raw["config"]["storage_dtype"] == "float16"
    assert raw["resolved"]["model_key"] == "tiny" and raw["resolved"]["timesteps"] == [667, 334, 1]
    assert raw["run"]["dataset"] == "rrsisd" and raw["run"]["world_size"] == 1
    assert _main([*base, "--out", str(tmp_path / "b"), "--config", str(path), "--guidance", "5"]) == 0
    again = read_stage_config(tmp_path / "b" / "focus_config.json")["config"]
    assert again == dict(raw["config"], guidance=5.0)


def test_flags_come_from_the_config(capsys):
    sys.path.insert(0, str(REPO))
    import generate_diffusion

    with pytest.raises(SystemExit):
        generate_diffusion.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--steps", "20"), ("--steps-offset", "1"), ("--dump-dtype", "float32"),
                          ("--guidance", "7.5"), ("--inversion", "nulltext"), ("--timestep", "100"),
                          ("--inner-steps", "10"), ("--batch-size", "1"), ("--dtype", "none")):
        assert flag in text and f"(default: {default})" in text, flag
    for flag in ("--model", "--storage-dtype", "--save-full-64", "--save-self-16", "--save-cross", "--device",
                 "--config"):
        assert flag in text, flag
    args = generate_diffusion.parse_args(["--dataset", "jsonl", "--root", "x", "--storage-dtype", "float16",
                                          "--steps-offset", "0", "--save-cross"])
    assert (args.storage_dtype, args.steps_offset, args.save_cross, args.num_steps) == ("float16", 0, True, None)
