#!/usr/bin/env python
"""How much do half-precision models change the maps? float32 against float16 / bfloat16, same weights.

    python bench/check_precision.py                                   # tiny SD + tiny Qwen on the CPU
    python bench/check_precision.py --scale full --device cuda --steps 20 --inner-steps 10

Stage 2: the random SD of ``--scale`` (bench/fullsize_models.py) runs Focus (null-text inversion,
library defaults except ``--steps`` / ``--inner-steps``) once in float32 and once per ``--dtypes``
from the same weights, on synthetic 800x800 scenes. Reported per dtype: max and mean |difference|
of S_32, S_64->32 (released and corrected reductions) and of the combined S that stage 3 reads
(rows of S are distributions over 1024 keys: a uniform row holds 1/1024 ~ 1e-3), and the IoU of the
stage-3 masks (evolve without SAM, A_C = the object's mask) computed from each S.
Stage 1: the random Qwen2.5-VL runs Overview in float32 and bfloat16: max |A_C difference| and
whether the 20 generated tokens agree. Random weights: differences measure the arithmetic, not
the trained models' sensitivity. The library defaults are unchanged (float32 SD is faithful).
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fullsize_models import build_qwen, build_sd  # noqa: E402
from fullsize_harness import blob, iou, machine, make_samples  # noqa: E402

MAPS = ("self_32", "self_64to32_released", "self_64to32_corrected")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("full", "small"), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=1, help="samples")
    p.add_argument("--steps", type=int, default=4, help="DDIM steps (paper: 20)")
    p.add_argument("--inner-steps", type=int, default=2, help="null-text Adam steps per step (paper: 10)")
    p.add_argument("--dtypes", default="float16,bfloat16")
    p.add_argument("--skip-overview", action="store_true")
    p.add_argument("--out", default=str(REPO / "bench" / "results_precision.md"))
    return p.parse_args(argv)


def focus_maps(sd, dtype: str, args, samples) -> list[dict]:
    """Per sample: the three maps (float32 numpy) and S (1024, 1024) of Focus run in ``dtype``."""
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.focus.config import FocusConfig
    from rsvg_zeroov.focus.model import Focus
    from rsvg_zeroov.pipeline import self_attention_matrix

    config = FocusConfig(num_steps=args.steps, inner_steps=args.inner_steps, dtype=dtype)
    focus = Focus(config, args.device).attach(sd if dtype == "float32" else copy.deepcopy(sd))
    out = []
    for s in samples:
        r = focus([(s["rgb"], s["expression"])])[0]
        maps = {name: np.asarray(getattr(r, name), np.float32).reshape(1024, 1024) for name in MAPS}
        maps["S"] = self_attention_matrix(r.files(), EvolveConfig())
        out.append(maps)
    return out


def stage3_iou(s_ref: np.ndarray, s_low: np.ndarray, sample: dict) -> float:
    from rsvg_zeroov.evolve.config import EvolveConfig
    from rsvg_zeroov.evolve.evolve import evolve

    cfg, a_c, size = EvolveConfig(refiner=None), blob(sample["mask"]), sample["mask"].shape
    return iou(evolve(a_c, s_ref, size, cfg).mask, evolve(a_c, s_low, size, cfg).mask)


def check_focus(args, samples) -> list[str]:
    sd = build_sd(args.scale, args.device)
    ref = focus_maps(sd, "float32", args, samples)
    lines = ["| dtype | map | max abs diff | mean abs diff | max abs value (float32) |", "|---|---|---|---|---|"]
    ious = {}
    for dtype in args.dtypes.split(","):
        low = focus_maps(sd, dtype, args, samples)
        for name in MAPS + ("S",):
            diff = [np.abs(a[name] - b[name]) for a, b in zip(ref, low)]
            top = max(float(a[name].max()) for a in ref)
            lines.append(f"| {dtype} | {name} | {max(float(d.max()) for d in diff):.2e} | "
                         f"{np.mean([d.mean() for d in diff]):.2e} | {top:.2e} |")
        ious[dtype] = [stage3_iou(a["S"], b["S"], s) for a, b, s in zip(ref, low, samples)]
    lines += [""] + [f"- stage-3 mask IoU, float32 S vs {d} S (evolve without SAM): "
                     + ", ".join(f"{v:.4f}" for v in ious[d]) for d in ious]
    return lines


def check_overview(args, samples) -> list[str]:
    from rsvg_zeroov.overview.config import OverviewConfig
    from rsvg_zeroov.overview.model import Overview

    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        ov = Overview(OverviewConfig(max_new_tokens=20, min_new_tokens=20, greedy=True), args.device)
        ov.attach(*build_qwen(args.scale, args.device, dtype))
        results[dtype] = ov([(s["rgb"], s["expression"]) for s in samples])
    pairs = list(zip(results[torch.float32], results[torch.bfloat16]))
    diff = max(float(np.abs(a.fused - b.fused).max()) for a, b in pairs)
    same = sum(a.token_ids == b.token_ids for a, b in pairs)
    return [f"- stage 1, Overview float32 vs bfloat16: max |A_C difference| {diff:.2e} (A_C in [0, 1]); "
            f"generated tokens identical in {same}/{len(pairs)} sample(s)"]


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python bench/check_precision.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    samples = make_samples(args.n, 1, 0)
    lines = ["# Precision check: float32 against half-precision models (random weights)", "",
             f"Command: `{command.strip()}`", "", f"Device: {machine(args.device)}", "",
             f"Stage 2: SD ({args.scale}), null-text inversion, {args.steps} DDIM steps x <= {args.inner_steps} "
             f"inner steps (library early stopping), {args.n} synthetic 800x800 sample(s).", ""]
    lines += check_focus(args, samples)
    if not args.skip_overview:
        lines += check_overview(args, samples)
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
