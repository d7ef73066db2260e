"""Put several runs side by side: one markdown table from each RUN/metrics.json (ablation tables).

    python eval/compare.py outputs/rrsisd_test outputs/rrsisd_test_nosam outputs/rrsisd_test_res32
    python eval/compare.py RUN1 RUN2 --metric rsrec.Pr@0.5 --metric rsrec.oIoU --metric rsres.mIoU

Run names are the folder names. Metrics are ``rsrec.<key>`` / ``rsres.<key>`` with key one of
mIoU, oIoU, Pr@0.3, Pr@0.5, Pr@0.6, Pr@0.7, Pr@0.8, Pr@0.9 (default: Pr@0.5 and mIoU of both).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsvg_zeroov.evaluation.report import DEFAULT_COMPARE, compare_table
from rsvg_zeroov.rundir import DumpError, RunDir, load_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories holding metrics.json (eval/evaluate.py)")
    p.add_argument("--metric", action="append", default=None,
                   help=f"column, repeatable (default: {' '.join(DEFAULT_COMPARE)})")
    args = p.parse_args(argv)
    runs = []
    for folder in args.runs:
        run = RunDir(folder)
        try:
            metrics = load_json(run.metrics)
        except DumpError as exc:
            print(f"error: {exc} (run eval/evaluate.py --out {folder} first)", file=sys.stderr)
            return 2
        runs.append((run.root.resolve().name, metrics))
    print(compare_table(runs, args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
