"""Evaluate a run: RSREC (box) and RSRES (mask) mIoU / oIoU / Pr@t under one benchmark protocol.

    python eval/evaluate.py --dataset rrsisd --root data --split test --out outputs/rrsisd_test
    python eval/evaluate.py --dataset dior_rsvg --root data/DIOR_RSVG --split test --out RUN --protocol mgvlf
    python eval/evaluate.py ... --from RUN --out NEW --protocol rmsin   # RUN's predictions, NEW/metrics.json

Reads RUN/predictions.jsonl and RUN/masks/, writes RUN/metrics.json (docs/run-directory.md) and prints a
markdown table; for rrsisd and risbench the paper's numbers are printed beside ours. With --from RUN
the predictions are read from RUN and the metrics (recording "source_run") written into --out. With
--limit N only the first N samples are evaluated. Exit status 2 on a malformed data set or run directory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsvg_zeroov import cli  # noqa: E402
from rsvg_zeroov.evaluation import PROTOCOLS, evaluate, render, write_metrics  # noqa: E402
from rsvg_zeroov.evaluation.evaluator import warn_missing  # noqa: E402
from rsvg_zeroov.rundir import RunDir  # noqa: E402
from rsvg_zeroov.runner import UsageError, add_dataset_args, load_run_samples, resolve_out  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p, source="score the predictions and masks of this run directory and write "
                                "metrics.json into --out")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="scoring rules (default: zeroov, the released RSVG-ZeroOV evaluation)")
    p.add_argument("--workers", type=int, default=None,
                   help="mask-decoding processes (default: one per CPU core; 1 = no subprocesses)")
    return p


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.shard is not None:
        raise UsageError("evaluate.py scores the whole split; drop --shard (use --limit for a prefix)")
    out = resolve_out(args)
    # All ids of the split (an unknown id in predictions.jsonl is an error) and the evaluated prefix.
    full = load_run_samples(argparse.Namespace(**{**vars(args), "limit": None}))
    samples = full if args.limit is None else full[: max(args.limit, 0)]
    result = evaluate(samples, RunDir(out.source), args.protocol, args.workers,
                      known_ids=[s.sample_id for s in full])
    metrics = result.metrics(args.dataset, args.split)
    if out.reads_elsewhere:
        metrics["source_run"] = str(out.source.resolve())
    path = write_metrics(out, metrics)
    warn_missing(result)
    print(render(metrics), end="")
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
