"""List a data set: ``python -m rsvg_zeroov.datasets --dataset D --root R --split S [--limit N]``.

Prints one JSON object per sample (``Sample.listing()``, docs/datasets.md):
``{"sample_id", "image", "expression", "width", "height", "box": [x1, y1, x2, y2] | null,
"mask_area": int | null}``. A malformed data set prints one line ``error: <file>: <problem>`` on
stderr and exits with status 2. ``--out`` and ``--shard`` (shared dataset arguments) are ignored.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..runner import add_dataset_args, dataset_options
from . import DatasetError, load_samples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rsvg_zeroov.datasets",
        description="Print one JSON object per sample of a data set (see datasets/README.md for layouts).")
    add_dataset_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the listing; returns the exit status (0 ok, 2 malformed data set)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("--root is required")
    try:
        samples = load_samples(args.dataset, args.root, args.split, **dataset_options(args))
        if args.limit is not None:
            samples = samples[: max(args.limit, 0)]
        for sample in samples:
            sys.stdout.write(json.dumps(sample.listing()) + "\n")
        sys.stdout.flush()
    except DatasetError as exc:
        message = " ".join(str(exc).splitlines())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    from ..cli import setup_logging

    setup_logging()  # the loaders' notes (e.g. the detected bbox convention) on stderr
    raise SystemExit(main())
