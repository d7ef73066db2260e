"""Stage 2 against the released behaviour: the pipeline's timesteps (951, ..., 1), the first inversion
step from the final alpha, float32 dumps by default, and the previous defaults kept byte-identical
behind ``--steps-offset 0 --dump-dtype float16``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from focus_helpers import make_image, tiny_sd

from rsvg_zeroov.focus.config import FocusConfig
from rsvg_zeroov.focus.inversion import ddim_invert
from rsvg_zeroov.focus.scheduler import DDIM
from rsvg_zeroov.focus.stage import expected_files, is_done
from rsvg_zeroov.rundir import FOCUS_META, RunDir

REPO = Path(__file__).resolve().parents[1]
LEGACY = Path(__file__).parent / "golden" / "focus_legacy.json"


@pytest.fixture(scope="module")
def released_pipeline(tiny_dir):
    """The released script's construction: a fresh DDIMScheduler (steps_offset 0) handed to
    ``StableDiffusionPipeline.from_pretrained``, whose constructor rewrites the offset to 1."""
    import warnings

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    assert scheduler.config.steps_offset == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation note of the rewrite itself
        pipe = StableDiffusionPipeline.from_pretrained(tiny_dir / "sd", scheduler=scheduler, safety_checker=None)
    return pipe


def test_timesteps_and_steps_match_the_released_pipeline(released_pipeline):
    sched = released_pipeline.scheduler
    assert sched.config.steps_offset == 1
    sched.set_timesteps(20)
    assert sched.timesteps.tolist() == list(range(951, 0, -50))
    config = FocusConfig()
    ddim = DDIM.from_config(config.num_steps, steps_offset=config.steps_offset)
    assert list(config.timesteps) == list(ddim.timesteps) == sched.timesteps.tolist()
    np.testing.assert_array_equal(ddim.alphas_cumprod, sched.alphas_cumprod.numpy())
    assert ddim.alpha(1 - ddim.step_ratio) == float(sched.final_alpha_cumprod) == ddim.alphas_cumprod[0]
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    for t in sched.timesteps.tolist():  # every denoising step, the last one (t = 1) to the final alpha
        torch.testing.assert_close(ddim.step(eps, t, x), sched.step(eps, t, x, eta=0.0).prev_sample)
    assert FocusConfig(steps_offset=0).timesteps == tuple(range(950, -1, -50))  # the previous behaviour


def _released_invert_step(sched, eps, t, x):
    """The released inversion step, written from its description: from the alpha of ``t - ratio``
    (the final alpha when negative) to the alpha of ``t``."""
    ratio = sched.config.num_train_timesteps // sched.num_inference_steps
    prev = t - ratio
    a_from = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
    a_to = sched.alphas_cumprod[t]
    x0 = (x - (1 - a_from) ** 0.5 * eps) / a_from ** 0.5
    return a_to ** 0.5 * x0 + (1 - a_to) ** 0.5 * eps


def test_first_inversion_step_matches_the_released_pipeline(released_pipeline, tiny_dir):
    from rsvg_zeroov.focus.model import Focus

    pipe, sched = released_pipeline, released_pipeline.scheduler
    sched.set_timesteps(20)
    focus = Focus(FocusConfig(image_size=256)).attach(tiny_sd(tiny_dir))
    latent0, _, cond, _ = focus.encode([(make_image(3, 64, 64), "the bright yellow building.")])
    first = int(sched.timesteps[-1])
    assert first == 1 and focus.ddim.timesteps[-1] == first
    with torch.no_grad():
        eps = pipe.unet(latent0, first, encoder_hidden_states=cond).sample
        want = _released_invert_step(sched, eps, first, latent0)
        ours = ddim_invert(focus.sd.unet, focus.ddim, latent0, cond, torch.float32)
    torch.testing.assert_close(ours[1], want, atol=1e-6, rtol=1e-5)


def _synthetic_demo_data(folder: Path) -> Path:
    from rsvg_zeroov.synthetic import write_dataset

    return write_dataset("rrsisd", folder, n=2)  # the demo's data set (scripts/demo.sh, DEMO_N=2)


def _stage2(root: Path, out: Path, tiny_dir, *extra: str) -> None:
    """generate_diffusion.py as the quick demo runs it (one thread: float reductions depend on it)."""
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "generate_diffusion.py"), "--dataset", "rrsisd", "--root", str(root),
           "--split", "test", "--out", str(out), "--model", "tiny", "--inversion", "ddim", "--steps", "2", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_legacy_options_reproduce_previous_dumps_and_are_still_read(tmp_path, tiny_dir):
    """``--steps-offset 0 --dump-dtype float16`` writes exactly what the previous default wrote (hashes
    recorded before the change); stage 3 and resume still read such a float16 run."""
    from golden_hashes import run_hashes

    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.evolve.interaction import load_s

    root, out = _synthetic_demo_data(tmp_path / "data"), tmp_path / "run"
    _stage2(root, out, tiny_dir, "--steps-offset", "0", "--dump-dtype", "float16")
    hashes = {k: v for k, v in run_hashes(out).items() if k.startswith("focus/")}
    assert hashes == json.loads(LEGACY.read_text())
    run, sids = RunDir(out), sorted(p.name for p in (out / "focus").iterdir())
    legacy = FocusConfig(model="tiny", num_steps=2, inversion="ddim", steps_offset=0, storage_dtype="float16")
    for sid in sids:
        assert np.load(run.focus_file(sid, "self_32.npy")).dtype == np.float16
        assert is_done(run, sid, legacy)
        assert not is_done(run, sid, FocusConfig(model="tiny", num_steps=2, inversion="ddim"))  # new default: recompute
        s = load_s(run, sid, EvolveConfig())
        assert s.dtype == np.float32 and s.shape == (1024, 1024) and np.isfinite(s).all()


def test_default_dumps_are_float32_and_meta_records_timesteps(tmp_path, tiny_dir):
    root, out = _synthetic_demo_data(tmp_path / "data"), tmp_path / "run"
    _stage2(root, out, tiny_dir)
    run = RunDir(out)
    config = FocusConfig(num_steps=2, inversion="ddim")
    for sid in sorted(p.name for p in (out / "focus").iterdir()):
        meta = json.loads(run.focus_file(sid, FOCUS_META).read_text())
        assert meta["timesteps"] == [501, 1] and meta["scheduler"]["steps_offset"] == 1
        assert meta["storage_dtype"] == "float32"
        sizes = 0
        for name, shape in expected_files(config).items():
            arr = np.load(run.focus_file(sid, name))
            assert arr.dtype == np.float32 and arr.shape == shape
            sizes += run.focus_file(sid, name).stat().st_size
        assert meta["bytes"] == 3 * 1024 * 1024 * 4 and sizes == meta["bytes"] + 3 * 128  # .npy headers
        assert is_done(run, sid, config)
    recorded = json.loads(run.config("focus").read_text())
    assert recorded["config"]["steps_offset"] == 1 and recorded["config"]["storage_dtype"] == "float32"
