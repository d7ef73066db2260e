#!/usr/bin/env python
"""Stage 1, Overview: VLM attention from the answer tokens to the image -> RUN/overview/<id>.npy.

The VLM is Qwen2.5-VL-7B by default; --model takes any registry key (Qwen2.5-VL, Qwen3-VL, LLaVA;
python -m rsvg_zeroov.models lists them), hub id or model folder.

Data set mode (resumable, sharded by --shard or torchrun's RANK/WORLD_SIZE):
    python llmattn.py --dataset rrsisd --root datasets/rrsisd --split test --out RUN [--model PATH_OR_ID]
One image (the released interface; --image/--text and --vlm are the same flags):
    python llmattn.py --image_path IMG --question "the plane on the left" [--model_id PATH] [--out DIR]
    writes DIR/overview/<image stem>.npy + .json and the released DIR/heatmap_16171819.npy
    (float64 (5, gh, gw)); DIR defaults to outputs/<image stem>.

Each dump is float32 (1 + n_layers, gh, gw): [0] the fused map A_C, [1:] the raw per-layer maps;
the sidecar .json holds the prompt, the generated answer, grid, image size, layers, weights, model,
dtype and generation settings (docs/run-directory.md). Defaults (docs/method.md, stage 1): layers
16,17,18,19 (other families than Qwen2.5-VL: the same relative depth, README "Backends"), weights
0.1,0.1,0.3,0.5, max 1024 new tokens, the checkpoint's generation config.
Every flag below only overrides them; --config RUN/overview_config.json starts from a recorded run.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rsvg_zeroov import cli  # noqa: E402
from rsvg_zeroov.overview.config import OverviewConfig  # noqa: E402

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_args(p, required=False)
    one = p.add_argument_group("one image (instead of --dataset)")
    one.add_argument("--image_path", "--image-path", "--image", dest="image_path", default=None, help="an image file")
    one.add_argument("--question", "--text", dest="question", default=None,
                     help="the referring expression for --image_path")
    cli.add_config_flags(p.add_argument_group("overview settings (defaults: docs/method.md, stage 1)"), OverviewConfig)
    cli.add_common_args(p)
    args = p.parse_args(argv)
    if (args.dataset is None) == (args.image_path is None):
        p.error("give either --dataset D --root R (data set mode) or --image_path IMG --question TEXT")
    if args.image_path is not None and args.question is None:
        p.error("--image_path needs --question TEXT")
    return args


def run_single(args: argparse.Namespace, config: OverviewConfig) -> int:
    from rsvg_zeroov.images import check_expression, check_image
    from rsvg_zeroov.models.base import check_models
    from rsvg_zeroov.overview.stage import run_single as run_one
    from rsvg_zeroov.rundir.overview import heatmap_path
    from rsvg_zeroov.runner import pick_device

    check_image(args.image_path)  # bad inputs: one error line, exit 2, before any model loads
    check_expression(args.question)
    check_models([("vlm", config.model, "--model")])
    out = args.out or os.path.join("outputs", os.path.splitext(os.path.basename(args.image_path))[0])
    path, result = run_one(out, args.image_path, args.question, config, pick_device(args.device))
    print(f"answer: {result.answer!r}")
    print(f"wrote {path} {tuple(result.dump().shape)}, {path.with_suffix('.json')} and "
          f"{heatmap_path(out, result.layers)}")
    return 0


def run_dataset(args: argparse.Namespace, config: OverviewConfig) -> int:
    from rsvg_zeroov.models.base import check_models
    from rsvg_zeroov.overview.stage import run_dataset as run_all
    from rsvg_zeroov.runner import exit_code, load_run_samples, parse_shard, pick_device, resolve_out, run_info, shard

    rank, world = parse_shard(args.shard)
    samples = shard(load_run_samples(args), rank, world)
    check_models([("vlm", config.model, "--model")])
    device = pick_device(args.device)
    report = run_all(resolve_out(args), samples, config, device, rank, world, run_info(args, rank, world, device))
    return exit_code(report)


def run(argv=None) -> int:
    args = parse_args(argv)
    config = cli.build_config(OverviewConfig, args)
    return run_single(args, config) if args.image_path is not None else run_dataset(args, config)


def main(argv=None) -> int:
    """The exit status: 0, or 1 when some samples failed; a bad input, setting or missing model is
    one ``error:`` line and ``SystemExit(2)`` before any model loads."""
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
