"""Inspect a run's attention dumps: one panel PNG per sample and an index page, worst IoU first.

    python tools/visualize.py --out RUN --dataset D --root R --split S [--sample ID ...] [--limit N]
                              [--from SOURCE_RUN]

Writes RUN/panels/<id>.png (the image and expression, each captured VLM layer, the fused A_C, the
propagated A_CS, the grown region with its seeds, A_E, the thresholded mask before SAM, the final
mask of RUN/masks/ and the ground truth, with the IoU in the title) and RUN/index.html (thumbnails
sorted by ascending IoU, each linking to its panel). The 32-grid maps come from RUN/maps/<id>.npz
when rs_evolve.py --save-maps wrote it, else they are recomputed from the stage 1 and 2 dumps with
the settings of RUN/evolve_config.json (else the paper defaults). The IoU is the mask IoU where the
data set has masks, else the box IoU of the final mask's tight box (--protocol rules, default zeroov).
With --from SOURCE_RUN (an ablation written by rs_evolve.py --from), the stage 1 and 2 dumps are
read from SOURCE_RUN and the masks, settings and pictures are those of RUN.

Exit status: 0 all drawn; 1 some samples skipped (missing or bad dumps, each reported on stderr by
file name; the rest are drawn); 2 bad arguments, data set or RUN/evolve_config.json.
Check that the page renders: bash scripts/screenshot_index.sh RUN (headless Chromium).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:  # run from a plain checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsvg_zeroov.evaluation import PROTOCOLS, default_workers
from rsvg_zeroov.rundir import DumpError
from rsvg_zeroov.runner import add_dataset_args, load_run_samples, resolve_out, usage_error

AUTO_POOL = 32  # fewer samples are drawn in this process (starting workers costs seconds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p, source=True)
    p.add_argument("--sample", nargs="+", action="extend", default=None, metavar="ID",
                   help="draw only these sample ids (repeatable; default: every sample, after --limit)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="scoring rules of the IoU shown (default: zeroov)")
    p.add_argument("--title", default=None, help="index page title (default: the run directory)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"drawing processes (default: one per CPU core, at most 8, from {AUTO_POOL} samples on; "
                   "1 = no subprocesses)")
    return p


def select(samples: list, ids: list[str] | None) -> list:
    """The samples named by --sample (in the order given), or all; exits 2 on an unknown id."""
    if not ids:
        return samples
    by_id = {s.sample_id: s for s in samples}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        usage_error(f"--sample: no sample {', '.join(map(repr, unknown))} in this data set split (after --limit); "
             "list the ids with python -m rsvg_zeroov.datasets")
    return [by_id[i] for i in dict.fromkeys(ids)]


def main(argv: list[str] | None = None) -> int:
    """The tool's exit status; a bad argument, data set or run directory: one ``error:`` line and
    ``SystemExit(2)``."""
    from rsvg_zeroov import cli

    return cli.main(draw, argv)


def draw(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shard is not None:
        usage_error("--shard: the index page needs every panel; run tools/visualize.py once, with --workers")
    from rsvg_zeroov.visualize import load_evolve_config, visualize_run

    samples = select(load_run_samples(args), args.sample)
    run = resolve_out(args)
    if not run.root.is_dir():
        usage_error(f"{run.root}: run directory not found (pass the --out of the stage scripts)")
    try:
        config = load_evolve_config(run)
    except DumpError as exc:
        usage_error(str(exc))
    workers = args.workers if args.workers is not None else default_workers() if len(samples) >= AUTO_POOL else 1
    report = visualize_run(run, samples, config=config, protocol=args.protocol, title=args.title,
                           workers=max(1, workers))
    print(f"[visualize] {len(report.drawn)} panels drawn, {len(report.skipped)} skipped; open {report.index}",
          file=sys.stderr)
    return 1 if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
