"""Put several runs side by side: one markdown table from each RUN/metrics.json (ablation tables).

    python eval/compare.py outputs/rrsisd_test outputs/rrsisd_test_nosam outputs/rrsisd_test_res32
    python eval/compare.py RUN1 RUN2 --metric rsrec.Pr@0.5 --metric rsrec.oIoU --metric rsres.mIoU
    python eval/compare.py --from outputs/rrsisd_test   # RUN and every run made from it with --from
    python eval/compare.py RUN/reproduce/rows/no-sam RUN/reproduce/rows/res32-no-sam --paper ablation

Run names are the folder names. With --from RUN, RUN comes first, then the runs given, or (none
given) every folder beside RUN whose stage configs record RUN as their source run (``--from``). Metrics are ``rsrec.<key>`` / ``rsres.<key>`` with key one of
mIoU, oIoU, Pr@0.3, Pr@0.5, Pr@0.6, Pr@0.7, Pr@0.8, Pr@0.9 (default: Pr@0.5 and mIoU of both).
With --paper TABLE the rows are those of ``python -m rsvg_zeroov.reproduce``'s RUN/tables/TABLE.md
(the same function renders both): each metric beside the paper's value from docs/paper-results.md
for the row of that name (a harness row, RUN/reproduce/rows/<row>, by its name; another run by its
folder name).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsvg_zeroov import cli  # noqa: E402
from rsvg_zeroov.evaluation.report import (DEFAULT_COMPARE, compare_table, paper_values, row_label,  # noqa: E402
                                          row_table, run_status)
from rsvg_zeroov.rundir import DumpError, RunDir, load_json  # noqa: E402
from rsvg_zeroov.runner import UsageError, read_stage_config  # noqa: E402

STAGES = ("evolve", "overview", "focus")


def source_of(folder: Path) -> Path | None:
    """The source run a run folder's stage configs (or metrics.json) record, resolved; or None."""
    run = RunDir(folder)
    for stage in STAGES:
        if run.config(stage).is_file():
            try:
                src = read_stage_config(run.config(stage))["run"].get("source_run")
            except DumpError:
                continue
            if src:
                return Path(src).resolve()
    try:
        src = load_json(run.metrics).get("source_run") if run.metrics.is_file() else None
    except DumpError:
        src = None
    return Path(src).resolve() if src else None


def derived_runs(base: Path) -> list[Path]:
    """Folders beside ``base`` made from it with --from, by name."""
    base = base.resolve()
    return [p for p in sorted(base.parent.iterdir()) if p.is_dir() and p.resolve() != base
            and source_of(p) == base]


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="run directories holding metrics.json (eval/evaluate.py)")
    p.add_argument("--from", dest="source_run", default=None, metavar="RUN",
                   help="the base run: first row, followed by the runs made from it with --from")
    p.add_argument("--metric", action="append", default=None,
                   help=f"column, repeatable (default: {' '.join(DEFAULT_COMPARE)})")
    p.add_argument("--paper", choices=("main", "ablation"), default=None, metavar="TABLE",
                   help="the paper's numbers of this table of docs/paper-results.md beside each run (main, "
                   "ablation), rendered as python -m rsvg_zeroov.reproduce renders RUN/tables/TABLE.md")
    args = p.parse_args(argv)
    folders = [Path(f) for f in args.runs]
    if args.source_run is not None:
        base = Path(args.source_run)
        if not base.is_dir():
            raise UsageError(f"--from {base}: run directory not found")
        derived = not folders
        folders = [base, *(folders or derived_runs(base))]
    if not folders:
        raise UsageError("give run directories, or --from RUN")
    runs = []
    for folder in folders:
        run_dir = RunDir(folder)
        try:
            metrics = load_json(run_dir.metrics)
        except DumpError as exc:
            if args.source_run is not None and derived and folder != folders[0]:  # found, not named
                logging.getLogger("compare").warning("%s: no metrics.json yet (run eval/evaluate.py --out %s); "
                                                     "left out", folder, folder)
                continue
            raise UsageError(f"{exc} (run eval/evaluate.py --out {folder} first)") from None
        runs.append((run_dir.root.resolve().name, metrics))
    if args.paper is not None:
        print(row_table([(row_label(m, name), m, paper_values(args.paper, m.get("dataset"), m.get("row") or name),
                          run_status(m)) for name, m in runs], args.metric))
    else:
        print(compare_table(runs, args.metric))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
