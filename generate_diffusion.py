#!/usr/bin/env python
"""Stage 2, Focus: Stable Diffusion null-text inversion + UNet self-attention -> RUN/focus/<id>/.

    python generate_diffusion.py --dataset rrsisd --root datasets/rrsisd --split test --out RUN [--model PATH_OR_ID]

Writes per sample (docs/run-directory.md): self_32.npy (32, 32, 1024), self_64to32_released.npy and
self_64to32_corrected.npy (1024, 1024) in the dump dtype (float32 as released, 12 MiB a sample;
--dump-dtype float16 halves it) and meta.json (model, steps, timesteps, guidance, inversion mode,
prompt chunks, dtypes; no timings); opt-in --save-full-64, --save-self-16, --save-cross.
Resumable, sharded by --shard or torchrun's RANK/WORLD_SIZE; failures go to RUN/failures.jsonl and
make the exit status 1. Defaults (docs/method.md, stage 2): SD v1.4, 512x512, DDIM 20 steps at
t = 951, 901, ..., 1 (as the released pipeline; --steps-offset 0 gives 950, ..., 0), guidance 7.5,
null-text inversion with at most 10 Adam steps per timestep. Every flag below only overrides them;
--config RUN/focus_config.json starts from a recorded run.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rsvg_zeroov import cli  # noqa: E402
from rsvg_zeroov.focus.config import FocusConfig  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_args(p)
    cli.add_config_flags(p.add_argument_group("focus settings (defaults: docs/method.md, stage 2)"), FocusConfig)
    cli.add_common_args(p)
    return p.parse_args(argv)


def run(argv=None) -> int:
    args = parse_args(argv)
    config = cli.build_config(FocusConfig, args)
    from rsvg_zeroov.focus.stage import run_dataset
    from rsvg_zeroov.models.diffusion import resolve_diffusion
    from rsvg_zeroov.runner import exit_code, load_run_samples, parse_shard, pick_device, resolve_out, run_info, shard

    rank, world = parse_shard(args.shard)
    samples = shard(load_run_samples(args), rank, world)
    resolve_diffusion(config.model, "--model")  # a missing model: one message, exit 2, before any compute
    device = pick_device(args.device)
    report = run_dataset(resolve_out(args), samples, config, device, rank, world, run_info(args, rank, world, device))
    return exit_code(report)


def main(argv=None) -> int:
    """The exit status: 0, or 1 when some samples failed; a bad setting or a missing model is one
    ``error:`` line and ``SystemExit(2)`` before any model loads."""
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
