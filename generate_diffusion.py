#!/usr/bin/env python
"""Stage 2, Focus: Stable Diffusion null-text inversion + UNet self-attention -> RUN/focus/<id>/.

    python generate_diffusion.py --dataset rrsisd --root datasets/rrsisd --split test --out RUN [--model PATH_OR_ID]

Writes per sample (CONTRACTS.md): self_32.npy (32, 32, 1024), self_64to32_released.npy and
self_64to32_corrected.npy (1024, 1024) in the storage dtype (float16 by default, 6 MB per sample)
and meta.json (model, steps, guidance, inversion mode, prompt chunks, dtype; no timings); opt-in
--save-full-64, --save-self-16, --save-cross. Resumable, sharded by --shard or torchrun's
RANK/WORLD_SIZE; failures go to RUN/failures.jsonl and make the exit status 1.
Defaults (METHOD.md): SD v1.4, 512x512, DDIM 20 steps, guidance 7.5, null-text inversion with at
most 10 Adam steps per timestep. Every flag below only overrides them (FocusConfig).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rsvg_zeroov.focus.config import DTYPES, INVERSIONS, STORAGE_DTYPES, FocusConfig  # noqa: E402
from rsvg_zeroov.runner import add_dataset_args  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    m = p.add_argument_group("focus settings (default: FocusConfig, METHOD.md)")
    m.add_argument("--model", default=None, help="registry key (sd-v1-4, tiny, ...), hub id or local folder")
    m.add_argument("--steps", type=int, default=None, help="DDIM steps (METHOD: 20)")
    m.add_argument("--steps-offset", type=int, default=None,
                   help="added to every timestep (default 1 as released: 951, ..., 1; 0: 950, ..., 0)")
    m.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (METHOD: 7.5)")
    m.add_argument("--inversion", choices=INVERSIONS, default=None,
                   help="nulltext (METHOD), ddim (no optimisation) or noise (one noised forward at --timestep)")
    m.add_argument("--timestep", type=int, default=None, help="timestep of --inversion noise (default 100)")
    m.add_argument("--inner-steps", type=int, default=None, help="max Adam steps per timestep (METHOD: 10)")
    m.add_argument("--batch-size", type=int, default=None, help="samples per UNet call (default 1)")
    m.add_argument("--dtype", choices=DTYPES, default=None, help="model dtype (default float32)")
    m.add_argument("--dump-dtype", "--storage-dtype", dest="storage_dtype", choices=STORAGE_DTYPES, default=None,
                   help="dtype of the saved maps (default float32 as released; float16 halves them)")
    m.add_argument("--save-full-64", action="store_true", default=None, help="also save self_64.npy (32 MB)")
    m.add_argument("--save-self-16", action="store_true", default=None,
                   help="also save self_16.npy and self_16to32_{released,corrected}.npy")
    m.add_argument("--save-cross", action="store_true", default=None, help="also save cross_<r>.npy (r, r, 77)")
    m.add_argument("--device", default=None, help="default cuda:$LOCAL_RANK when available, else cpu")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> FocusConfig:
    try:
        return FocusConfig().override(
            model=args.model, num_steps=args.steps, steps_offset=args.steps_offset, guidance=args.guidance, inversion=args.inversion,
            noise_timestep=args.timestep, inner_steps=args.inner_steps, batch_size=args.batch_size,
            dtype=args.dtype, storage_dtype=args.storage_dtype, save_full_64=args.save_full_64,
            save_self_16=args.save_self_16, save_cross=args.save_cross)
    except ValueError as exc:
        from rsvg_zeroov.runner import usage_error

        usage_error(str(exc))


def main(argv=None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    from rsvg_zeroov.focus.model import Focus
    from rsvg_zeroov.focus.stage import STAGE, run_focus, stage_config
    from rsvg_zeroov.models.registry import ModelNotFound
    from rsvg_zeroov.runner import (exit_code, load_run_samples, parse_shard, pick_device, resolve_out, shard,
                                    write_config)

    rank, world = parse_shard(args.shard)
    samples = shard(load_run_samples(args), rank, world)
    run, device = resolve_out(args), pick_device(args.device)
    write_config(run, STAGE, stage_config(config, {
        "dataset": args.dataset, "root": args.root, "split": args.split, "limit": args.limit,
        "world_size": world, "device": device}), rank)
    try:
        report = run_focus(run, samples, Focus(config, device), rank)
    except ModelNotFound as exc:  # raised by the load, before any sample ran: one message, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
