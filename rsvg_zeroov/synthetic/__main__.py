"""Write a synthetic data set: ``python -m rsvg_zeroov.synthetic --format F --out DIR --n N``.

Prints the path to pass as ``--root`` (with the matching ``--dataset``/``--format`` on stderr).
"""
from __future__ import annotations

import argparse
import sys

from . import DATASET_OF_FORMAT, FORMATS, write_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsvg_zeroov.synthetic",
                                     description="Write a small synthetic data set in one benchmark's on-disk format.")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="folder to write into")
    parser.add_argument("--n", type=int, required=True, help="number of samples in the split")
    parser.add_argument("--size", type=int, default=None, help="image width in pixels (height = 3/4 of it; default 256)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--split", default=None, help="split name to write (default test)")
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in (("size", args.size), ("seed", args.seed), ("split", args.split)) if v is not None}
    try:
        root = write_dataset(args.format, args.out, args.n, **kwargs)
    except ValueError as exc:
        parser.error(str(exc))
    dataset, options = DATASET_OF_FORMAT[args.format]
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in options.items())
    print(f"use: --dataset {dataset} --root {root} --split {kwargs.get('split', 'test')}{flags}", file=sys.stderr)
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
