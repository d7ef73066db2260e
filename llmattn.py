#!/usr/bin/env python
"""Stage 1, Overview: Qwen2.5-VL attention from the answer tokens to the image -> RUN/overview/<id>.npy.

Data set mode (resumable, sharded by --shard or torchrun's RANK/WORLD_SIZE):
    python llmattn.py --dataset rrsisd --root datasets/rrsisd --split test --out RUN [--model PATH_OR_ID]
One image (the released interface; writes DIR/overview/<image stem>.npy + .json):
    python llmattn.py --image_path IMG --question "the plane on the left" --out DIR

Each dump is float32 (1 + n_layers, gh, gw): [0] the fused map A_C, [1:] the raw per-layer maps;
the sidecar .json holds the prompt, the generated answer, grid, image size, layers, weights, model,
dtype and generation settings. Defaults (METHOD.md): layers 16,17,18,19, weights 0.1,0.1,0.3,0.5,
max 1024 new tokens, the checkpoint's generation config. Every flag below only overrides them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rsvg_zeroov.overview.config import DTYPES, OverviewConfig  # noqa: E402
from rsvg_zeroov.runner import add_dataset_args  # noqa: E402


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 16,17,18,19, got {text!r}") from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.1,0.1,0.3,0.5, "
                                         f"got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p, required=False)
    one = p.add_argument_group("one image (instead of --dataset)")
    one.add_argument("--image_path", "--image-path", dest="image_path", default=None, help="an image file")
    one.add_argument("--question", default=None, help="the referring expression for --image_path")
    m = p.add_argument_group("overview settings (default: OverviewConfig, METHOD.md)")
    m.add_argument("--model", default=None, help="registry key (qwen2.5-vl-7b, tiny, ...), hub id or local folder")
    m.add_argument("--layers", type=_int_list, default=None, help="0-based decoder layers, e.g. 16,17,18,19")
    m.add_argument("--weights", type=_float_list, default=None, help="fusion weights, one per layer")
    m.add_argument("--max-pixels", type=int, default=None, help="qwen_vl_utils max_pixels (default its own)")
    m.add_argument("--min-pixels", type=int, default=None, help="qwen_vl_utils min_pixels (default its own)")
    m.add_argument("--max-new-tokens", type=int, default=None)
    m.add_argument("--min-new-tokens", type=int, default=None, help="not in the paper; fixes the answer length")
    m.add_argument("--batch-size", type=int, default=None, help="samples per generate call (left padding)")
    m.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None,
                   help="force greedy (--greedy) or sampling (--no-greedy); default: the checkpoint's config")
    m.add_argument("--dtype", choices=DTYPES, default=None, help="default bfloat16 on CUDA, float32 on CPU")
    m.add_argument("--device", default=None, help="default cuda:$LOCAL_RANK when available, else cpu")
    args = p.parse_args(argv)
    if (args.dataset is None) == (args.image_path is None):
        p.error("give either --dataset D --root R (data set mode) or --image_path IMG --question TEXT")
    if args.image_path is not None and (args.question is None or args.out is None):
        p.error("--image_path needs --question TEXT and --out DIR")
    return args


def build_config(args: argparse.Namespace) -> OverviewConfig:
    try:
        return OverviewConfig().override(
            model=args.model, layers=args.layers, weights=args.weights, max_pixels=args.max_pixels,
            min_pixels=args.min_pixels, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
            batch_size=args.batch_size, greedy=args.greedy, dtype=args.dtype)
    except ValueError as exc:
        from rsvg_zeroov.runner import usage_error

        usage_error(str(exc))


def run_single(args: argparse.Namespace, config: OverviewConfig, device: str) -> int:
    from rsvg_zeroov.images import ImageError
    from rsvg_zeroov.overview.stage import run_single as run_one

    try:
        path, result = run_one(args.out, args.image_path, args.question, config, device)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"answer: {result.answer!r}")
    print(f"wrote {path} {tuple(result.dump().shape)} and {path.with_suffix('.json')}")
    return 0


def run_dataset(args: argparse.Namespace, config: OverviewConfig, device: str) -> int:
    from rsvg_zeroov.overview.stage import run_dataset as run_all
    from rsvg_zeroov.runner import exit_code, load_run_samples, parse_shard, resolve_out, shard

    rank, world = parse_shard(args.shard)
    samples = shard(load_run_samples(args), rank, world)
    report = run_all(resolve_out(args), samples, config, device, rank, world)
    return exit_code(report)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    from rsvg_zeroov.models.registry import ModelNotFound
    from rsvg_zeroov.overview.config import LayerError
    from rsvg_zeroov.runner import pick_device

    device = pick_device(args.device)
    try:
        if args.image_path is not None:
            return run_single(args, config, device)
        return run_dataset(args, config, device)
    except (ModelNotFound, LayerError) as exc:  # before any sample ran: one message, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
