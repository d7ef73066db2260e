"""Stage 3, Evolve (+ SAM refinement): stage 1 and 2 dumps -> RUN/masks, RUN/predictions.jsonl.

    python rs_evolve.py --dataset D --root R --split S --out RUN [--sam-checkpoint FILE | --no-sam]
                        [--fidelity released|corrected] [--resolutions 32,64] [--k 7 --tau 0.3 --alpha 0.4]
    python rs_evolve.py ... --sweep "k=5,7,9 tau=0.2,0.3,0.4 alpha=0.3,0.4,0.5"   # -> RUN/sweep.csv, sweep.md

Every flag defaults to the paper setting in rsvg_zeroov.evolve.config.EvolveConfig; the resolved
settings go to RUN/evolve_config.json. Exit status: 0 all samples done, 1 some failed
(RUN/failures.jsonl), 2 bad arguments, data set or model.
"""
from __future__ import annotations

import argparse
import sys

from rsvg_zeroov import runner
from rsvg_zeroov.evolve.config import FIDELITIES, EvolveConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_dataset_args(p)
    m = p.add_argument_group("method (defaults: the paper's)")
    m.add_argument("--fidelity", choices=FIDELITIES, default=None,
                   help="released (default; the published behaviour) or corrected")
    m.add_argument("--resolutions", default=None, help="self-attention resolutions averaged into S, "
                   "comma-separated from 16,32,64 (default 32,64; 16 needs stage 2's 16->32 dump)")
    m.add_argument("--k", type=int, default=None, help="seeds: the K largest distinct VLM values (default 7)")
    m.add_argument("--tau", type=float, default=None, help="region growing threshold on A_CS (default 0.3)")
    m.add_argument("--alpha", type=float, default=None, help="binarisation threshold (default 0.4)")
    m.add_argument("--no-dm", dest="use_dm", action="store_const", const=False, default=None,
                   help="ablation: skip the interaction with S (A_CS = normalised c)")
    m.add_argument("--no-evolve", dest="use_evolve", action="store_const", const=False, default=None,
                   help="ablation: skip region growing (A_E = A_CS)")
    s = p.add_argument_group("SAM refinement")
    s.add_argument("--no-sam", dest="sam", action="store_const", const=False, default=None,
                   help="write the unrefined evolve masks")
    s.add_argument("--sam-checkpoint", default=None,
                   help="SAM checkpoint file, or 'tiny' (default sam_checkpoint/sam_vit_h_4b8939.pth)")
    s.add_argument("--sam-type", default=None, help="vit_h (default), vit_l, vit_b or tiny")
    s.add_argument("--device", default=None, help="SAM device (default cuda:$LOCAL_RANK if available, else cpu)")
    o = p.add_argument_group("outputs and speed")
    o.add_argument("--save-maps", action="store_const", const=True, default=None,
                   help="also write RUN/maps/<id>.npz (c, a_cs, seeds, region, a_e on the 32 grid)")
    o.add_argument("--sweep", default=None, metavar="GRID",
                   help='score a K/tau/alpha grid without SAM, e.g. "k=5,7,9 tau=0.2,0.3 alpha=0.3,0.4"')
    o.add_argument("--protocol", default="zeroov", help="evaluation protocol of --sweep (default zeroov)")
    o.add_argument("--workers", type=int, default=None, help="threads for loading/evolving/writing (default: one per usable CPU, at most 8)")
    o.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> EvolveConfig:
    resolutions = None
    if args.resolutions is not None:
        try:
            resolutions = tuple(int(r) for r in args.resolutions.split(","))
        except ValueError:
            runner.usage_error(f"--resolutions expects e.g. 32,64, got {args.resolutions!r}")
    try:
        return EvolveConfig().override(
            k=args.k, tau=args.tau, alpha=args.alpha, resolutions=resolutions, fidelity=args.fidelity,
            use_dm=args.use_dm, use_evolve=args.use_evolve, sam=args.sam, sam_type=args.sam_type,
            sam_checkpoint=args.sam_checkpoint, save_maps=args.save_maps)
    except ValueError as exc:
        runner.usage_error(str(exc))


def main(argv=None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    rank, world = runner.parse_shard(args.shard)
    samples = runner.load_run_samples(args)
    run = runner.resolve_out(args)
    extra = {"dataset": args.dataset, "root": args.root, "split": args.split, "n_samples": len(samples),
             "shard": f"{rank}/{world}"}
    if args.sweep is not None:
        from rsvg_zeroov.evaluation.protocols import get_protocol
        from rsvg_zeroov.evolve.sweep import parse_grid, run_sweep

        if world > 1:
            runner.usage_error("--sweep scores the whole run in one process; drop --shard/torchrun")
        try:
            parse_grid(args.sweep, config)
            get_protocol(args.protocol)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _rows, failed = run_sweep(run, samples, config, args.sweep, protocol=args.protocol,
                                  workers=args.workers, extra=extra)
        return 1 if failed else 0
    from rsvg_zeroov.evolve.stage import run_evolve
    from rsvg_zeroov.models.registry import ModelNotFound

    try:
        report = run_evolve(run, samples, runner.shard(samples, rank, world), config, rank=rank,
                            device=runner.pick_device(args.device) if config.sam else None,
                            workers=args.workers, batch_size=args.batch_size, extra=extra)
    except ModelNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return runner.exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
