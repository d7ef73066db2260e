"""Stage 3, Evolve (+ mask refinement): stage 1 and 2 dumps -> RUN/masks, RUN/predictions.jsonl.

    python rs_evolve.py --dataset D --root R --split S --out RUN [--sam-checkpoint FILE | --no-sam]
                        [--refiner KEY (vit_h = sam-vit-h, sam-hq-vit-h, sam2.1-hiera-b+, sam3, box-fill,
                        none, ...; python -m rsvg_zeroov.models)] [--fidelity released|corrected]
                        [--resolutions 32,64] [--k 7 --tau 0.3 --alpha 0.4]
                        [--refine-prompt box|box+points|points|box+mask] [--refine-iters N]
    python rs_evolve.py --from RUN --out NEW --no-sam ...   # an ablation into a new run folder
    python rs_evolve.py ... --sweep "k=5,7,9 tau=0.2,0.3,0.4 alpha=0.3,0.4,0.5"   # -> RUN/sweep.csv, sweep.md

Every flag defaults to the paper setting in rsvg_zeroov.evolve.config.EvolveConfig; the settings go
to RUN/evolve_config.json (--config FILE starts from a recorded one). With --from, the stage-1/2
dumps are read from that run and everything else is written into --out. Exit status: 0 all
samples done, 1 some failed (RUN/failures.jsonl), 2 bad arguments, data set or model.
"""
from __future__ import annotations

import argparse
import sys

from rsvg_zeroov import cli, runner
from rsvg_zeroov.evolve.config import EvolveConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_dataset_args(p, source=True)
    cli.add_common_args(p)
    m = p.add_argument_group("method (defaults: the paper's)")
    cli.add_config_flags(m, EvolveConfig)
    s = p.add_argument_group("refinement (earlier spellings, kept)")
    s.add_argument("--no-sam", action="store_true", help="write the unrefined evolve masks (= --refiner none)")
    s.add_argument("--sam-type", default=None, help="vit_h, vit_l, vit_b or tiny (= --refiner KEY; any refiner key works)")
    o = p.add_argument_group("outputs and speed")
    o.add_argument("--sweep", default=None, metavar="GRID",
                   help='score a K/tau/alpha grid without refinement, e.g. "k=5,7,9 tau=0.2,0.3 alpha=0.3,0.4"')
    o.add_argument("--protocol", default="zeroov", help="evaluation protocol of --sweep (default zeroov)")
    o.add_argument("--workers", type=int, default=None,
                   help="workers for loading/evolving/writing (default: one per usable CPU, at most 8); without "
                        "a refiner they are processes where the platform can fork, else threads")
    o.add_argument("--threads", action="store_true",
                   help="workers are threads even without a refiner (same outputs; processes are faster)")
    o.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> EvolveConfig:
    config = cli.build_config(EvolveConfig, args)
    try:
        if args.sam_type is not None and args.refiner is None:
            config = config.override(refiner=args.sam_type)
        if args.no_sam:
            config = config.override(sam=False)
    except ValueError as exc:
        raise runner.UsageError(str(exc)) from None
    return config


def run(argv=None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    rank, world = runner.parse_shard(args.shard)
    samples = runner.load_run_samples(args)
    out = runner.resolve_out(args)
    if args.sweep is not None:
        from rsvg_zeroov.evaluation.protocols import get_protocol
        from rsvg_zeroov.evolve.sweep import parse_grid, run_sweep

        if world > 1:
            raise runner.UsageError("--sweep scores the whole run in one process; drop --shard/torchrun")
        parse_grid(args.sweep, config)
        get_protocol(args.protocol)
        info = runner.run_info(args, rank, world, n_samples=len(samples))
        _rows, failed, table = run_sweep(out, samples, config, args.sweep, protocol=args.protocol,
                                         workers=args.workers, extra=info)
        print(table, end="")
        return 1 if failed else 0
    from rsvg_zeroov.evolve.stage import run_evolve

    device = runner.pick_device(args.device) if config.refiner is not None else None
    report = run_evolve(out, samples, runner.shard(samples, rank, world), config, rank=rank, device=device,
                        workers=args.workers, batch_size=args.batch_size, processes=False if args.threads else None,
                        run_info=runner.run_info(args, rank, world, device, n_samples=len(samples)))
    return runner.exit_code(report)


def main(argv=None) -> int:
    return cli.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
