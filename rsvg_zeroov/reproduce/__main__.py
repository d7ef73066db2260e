"""The paper's tables from one run's stage-1/2 dumps (docs/reproduce.md).

    python -m rsvg_zeroov.reproduce --dataset D --root R --split S --out RUN [--table main|ablation|sensitivity|all]
                                    [--no-sam | --refiner KEY [--refiner-checkpoint PATH]] [--grid GRID]

Reads RUN/overview/ and RUN/focus/ (the stage-1/2 dumps), computes every row of the tables asked
for in one pass over the samples, scores each row with the evaluator (--protocol, default zeroov)
and writes RUN/reproduce/rows/<row>/{scores.jsonl,metrics.json}, RUN/tables/<table>.md and .csv
(the paper's numbers of docs/paper-results.md beside ours) and the figures in RUN/tables/.
Rows that cannot run here are listed as "not run: ..." (--no-sam, a missing stage-2 file). Rerun
the command to resume: rows already scored are not recomputed (--force recomputes them).
Exit status: 0 every row ran on every sample, 1 some row failed on some sample
(RUN/reproduce/failures.jsonl), 2 bad arguments, data set, run directory or a missing refiner.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .. import cli, runner
from .rows import DEFAULT_GRID, TABLES

log = logging.getLogger("rsvg_zeroov.reproduce")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rsvg_zeroov.reproduce", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_dataset_args(p, source="read the stage-1/2 dumps from this run directory and write the "
                                      "rows and tables into --out")
    p.add_argument("--table", choices=(*TABLES, "all"), default="all", help="which table (default: all)")
    r = p.add_argument_group("refinement (the rows with SAM)")
    r.add_argument("--no-sam", action="store_true", help='skip the refined rows (listed as "not run: --no-sam")')
    r.add_argument("--refiner", default="vit_h", metavar="KEY",
                   help="the refiner's registry key (default vit_h; tiny with the offline stand-ins; "
                   "python -m rsvg_zeroov.models lists them)")
    r.add_argument("--refiner-checkpoint", "--sam-checkpoint", dest="refiner_checkpoint", default=None, metavar="PATH",
                   help="its weights: a SAM .pth file (default sam_checkpoint/<its official file name>) or, "
                        "for the transformers refiners, a model folder (default: the hub id's cache)")
    r.add_argument("--device", default=None, help="the refiner's device (default cuda when available, else cpu)")
    o = p.add_argument_group("scoring and output")
    o.add_argument("--protocol", default="zeroov", help="evaluation protocol (default zeroov, the paper's)")
    o.add_argument("--grid", default=DEFAULT_GRID, help=f'the sensitivity grid (default "{DEFAULT_GRID}")')
    o.add_argument("--panels", type=int, default=10, help="samples with the largest IoU spread drawn (default 10)")
    o.add_argument("--no-figures", action="store_true", help="write the tables only")
    o.add_argument("--workers", type=int, default=None, help="threads (default: one per usable CPU, at most 8)")
    o.add_argument("--force", action="store_true", help="recompute every row, ignoring the scores on disk")
    return p


def run(argv: list[str] | None = None) -> int:
    from ..evaluation.protocols import get_protocol
    from ..evolve.config import NO_REFINER, EvolveConfig
    from ..evolve.sweep import parse_grid
    from . import Options, reproduce

    args = build_parser().parse_args(argv)
    if args.shard is not None:
        raise runner.UsageError("--shard: the tables need every sample; run the command once (it uses every core)")
    get_protocol(args.protocol)
    parse_grid(args.grid, EvolveConfig())
    refiner = None if args.no_sam or args.refiner.strip().lower() == NO_REFINER else args.refiner.strip()
    tables = TABLES if args.table == "all" else (args.table,)
    options = Options(tables=tables, no_sam=refiner is None, refiner=refiner, refiner_checkpoint=args.refiner_checkpoint,
                      device=runner.pick_device(args.device) if refiner is not None else None,
                      protocol=args.protocol, grid=args.grid, workers=args.workers, force=args.force,
                      figures=not args.no_figures, panels=max(0, args.panels))
    samples = runner.load_run_samples(args)
    if not samples:
        raise runner.UsageError(f"{args.dataset} / {args.split}: no samples (check --root, --split, --limit)")
    out = runner.resolve_out(args)
    report = reproduce(out, samples, dataset=args.dataset, split=args.split, root=args.root, options=options,
                       run_info=runner.run_info(args, n_samples=len(samples)))
    ran = sum(1 for s in report.states.values() if s.reason is None)
    log.info("[reproduce] %d rows (%d recomputed, %d not run), %d failed (sample, row) pairs; wrote %s",
             ran, len(report.recomputed), len(report.states) - ran, report.failed,
             ", ".join(str(p) for p in report.tables if p.suffix == ".md"))
    for path in report.tables:
        if path.suffix == ".md":
            print(path.read_text())
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
