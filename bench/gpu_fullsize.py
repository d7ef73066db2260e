#!/usr/bin/env python
"""Full-size speed benchmark of the three stages (random weights): ours against the released style.

    python bench/gpu_fullsize.py --scale full --device cuda --batch-size 4 --time-budget 330
    python bench/gpu_fullsize.py --scale small --device cpu        # the CPU path the tests run

Builds Qwen2.5-VL-7B (bf16 on CUDA), SD v1.4 and SAM ViT-H from their architecture configs with
random weights on the device (bench/fullsize_models.py; nothing is downloaded; the cost of a
forward pass does not depend on the weights) and times every stage per sample on N synthetic
800x800 scenes (rsvg_zeroov.synthetic.scenes), after one warm-up round. In the same run:

  stage 1 ours       Overview: sdpa everywhere, last-row capture at 4 layers; exactly 20 generated
                     tokens (min = max), greedy; --batch-size samples per generate call
  stage 1 released   the same model switched to eager attention, output_attentions on all layers, batch 1
  stage 2 ours       Focus: null-text inversion, 20 DDIM steps x all 10 inner Adam steps (early
                     stopping off: the worst case), running means on the device, --dtype (float32 =
                     faithful default), --batch-size samples per UNet call
  stage 2 released   Focus in float32, batch 1, every attention map copied to the host (the library's
                     host_list store; a host running sum instead where the list cannot fit in host RAM)
  stage 3 ours       evolve + SamRefiner (box prompt); SAM's image embedding reused per image
  stage 3 released   the same, the image embedded again for every expression

Each variant's stage 3 uses its own stage 1 and 2 outputs. Reported (markdown to --out): median
seconds per sample (a batch counts as one measurement of batch time / batch size), peak GPU memory
per stage (``torch.cuda.max_memory_allocated``, reset before every call), the released / ours
ratios, end-to-end totals (sum of the stage medians), agreement of the two variants' outputs, the
device, torch version and the exact command, and the run-to-run difference of ours (the first
round run again, untimed: the GPU determinism tolerance). ``--time-budget`` stops adding rounds when
the next one would not end in time (at least one round is measured; the repeat only if it fits).
``--steps`` / ``--inner-steps`` are for ``--scale small`` only (full scale: the paper's schedule).
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench_common import released_maps  # noqa: E402  (the released stage-1 recipe, shared)
from fullsize_harness import (GIB, SIZE, HostSumStore, Meter, blob, iou, machine,  # noqa: E402
                              make_samples, tf32)
from fullsize_models import SAM_TYPE, build_qwen, build_sam, build_sd, n_params, sam_refiner  # noqa: E402
from rsvg_zeroov.focus import capture as focus_capture  # noqa: E402

TOKENS = 20
STAGES = {1: "1 overview", 2: "2 focus", 3: "3 evolve+SAM"}
VARIANTS = ("ours", "released")
SMALL_DEFAULTS = dict(n=2, steps=4, inner_steps=2)  # CPU seconds; full scale: n=8 and the paper's 20 x 10
GOALS = {1: "<= 0.5 s", 2: "floor ~1 s", 3: "<= 0.2 s", 0: "<= 3 s and >= 10x"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("full", "small"), default="full")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--n", type=int, default=None, help="samples to measure (full: 8, small: 2)")
    p.add_argument("--batch-size", type=int, default=None, help="ours: samples per call in stages 1-2 (default 1)")
    p.add_argument("--exprs-per-image", type=int, default=None, help="expressions per scene (default 1, max 3)")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="ours: SD dtype (default: the library's float32, faithful)")
    p.add_argument("--tf32", action="store_true", help="ours: allow TF32 matmuls/convolutions in stages 2-3")
    p.add_argument("--stages", default="1,2,3")
    p.add_argument("--skip-released", action="store_true")
    p.add_argument("--released-store", default="auto", choices=("auto", "list", "sum"),
                   help="stage 2 released host storage (auto: list if it fits in half the free host RAM)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds since start; stop adding rounds")
    p.add_argument("--steps", type=int, default=None, help="--scale small only: DDIM steps")
    p.add_argument("--inner-steps", type=int, default=None, help="--scale small only: Adam steps per step")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-repeat-check", dest="repeat_check", action="store_false",
                   help="skip the run-to-run determinism check (ours on the first round again, untimed)")
    p.add_argument("--out", default=str(REPO / "bench" / "results_gpu_fullsize.md"))
    args = p.parse_args(argv)
    if args.scale == "full" and (args.steps is not None or args.inner_steps is not None):
        p.error("--steps/--inner-steps are for --scale small only; full scale runs the paper's 20 x 10 schedule")
    args.stages = sorted({int(s) for s in args.stages.split(",")})
    if not set(args.stages) <= set(STAGES):
        p.error(f"--stages {args.stages}: choose from 1,2,3")
    small = args.scale == "small"
    args.n = args.n or (SMALL_DEFAULTS["n"] if small else 8)
    for name in ("steps", "inner_steps"):
        if small and getattr(args, name) is None:
            setattr(args, name, SMALL_DEFAULTS[name])
    args.batch_size, args.exprs_per_image = args.batch_size or 1, min(args.exprs_per_image or 1, 3)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return args


class Bench:
    """The models of the selected stages, built once, and one method per (stage, variant)."""

    def __init__(self, args):
        from rsvg_zeroov.evolve.config import EvolveConfig
        from rsvg_zeroov.focus.config import FocusConfig

        self.args, self.meter = args, Meter(args.device)
        self.evolve_config, self.info, self.phases = EvolveConfig(), {}, defaultdict(list)
        self.released = not args.skip_released
        if 1 in args.stages:
            self._build_overview()
        if 2 in args.stages:
            self.focus_config = FocusConfig(early_stop=0.0, early_stop_slope=0.0).override(  # worst case: all steps
                num_steps=args.steps, inner_steps=args.inner_steps)
            self._build_focus()
        if 3 in args.stages:
            sam = build_sam(args.scale, args.device, args.seed)
            self.info["sam"] = f"SAM {SAM_TYPE[args.scale]} ({_count(sam)}, float32)"
            self.refiners = {v: sam_refiner(sam, SAM_TYPE[args.scale]) for v in VARIANTS}
        self.resident = torch.cuda.memory_allocated(args.device) / GIB if self.meter.cuda else None

    def _build_overview(self):
        from rsvg_zeroov.overview.config import OverviewConfig
        from rsvg_zeroov.overview.model import Overview, resolve_dtype

        a = self.args
        config = OverviewConfig(max_new_tokens=TOKENS, min_new_tokens=TOKENS, greedy=True, batch_size=a.batch_size)
        dtype = resolve_dtype(config.dtype, a.device)
        self.overview = Overview(config, a.device).attach(*build_qwen(a.scale, a.device, dtype, a.seed))
        self.info["qwen"] = (f"Qwen2.5-VL ({_count(self.overview.model)}, "
                             f"{str(dtype).removeprefix('torch.')})")

    def _build_focus(self):
        import copy

        from rsvg_zeroov.focus.model import Focus

        a, cfg = self.args, self.focus_config
        sd = build_sd(a.scale, a.device, seed=a.seed)
        self.info["sd"] = (f"SD v1.4 layout (UNet {_count(sd.unet)}, VAE {_count(sd.vae)}, "
                           f"CLIP text {_count(sd.text_encoder)}; ours {a.dtype or 'float32'})")
        self.focus = {}
        if self.released:  # float32 weights; ours gets its own copy when it runs in another dtype
            self.focus["released"] = Focus(cfg.override(accumulate="host_list"), a.device).attach(sd)
            self._auto_store(sd)
            self.store = a.released_store if a.released_store != "auto" else self.info["auto_store"]
            sd = sd if a.dtype in (None, "float32") else copy.deepcopy(sd)
        self.focus["ours"] = Focus(cfg.override(dtype=a.dtype, batch_size=a.batch_size), a.device).attach(sd)

    def _auto_store(self, sd) -> None:
        """'list' when the released list of maps (x2 for the final stack) fits in half the free host RAM."""
        from rsvg_zeroov.focus.capture import locate

        focus = self.focus["released"]
        sites = locate(sd.unet, focus.latent_size, focus.config.self_resolutions)
        heads = [sd.unet.get_submodule(s.name.removesuffix(".processor")).heads for s in sites]
        per_step = sum(h * (s.r ** 2) ** 2 * 4 for h, s in zip(heads, sites))
        need = 2 * per_step * focus.config.num_steps
        free = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable"))
        self.info["host_list_gib"] = need / 2 / GIB
        self.info["auto_store"] = "list" if need < free / 2 else "sum"

    # ------------------------------------------------------------------------------ stages
    def stage1(self, variant: str, items: list[dict]) -> list[np.ndarray]:
        """A_C float32 (gh, gw) per item."""
        from rsvg_zeroov.overview.fuse import fuse

        ov, key = self.overview, (1, variant)
        pairs = [(s["rgb"], s["expression"]) for s in items]
        if variant == "ours":
            return [r.fused for r in self.meter(key, len(items), lambda: ov(pairs))]
        ov.model.set_attn_implementation("eager")
        gc, out = ov.generation_config(), []
        try:
            for pair in pairs:
                def call(pair=pair):
                    with torch.inference_mode():
                        maps = released_maps(ov.model, ov.prepare([pair]), gc, ov.config.layers)
                    return fuse(np.stack([m.numpy() for m in maps]), ov.config.weights)
                out.append(self.meter(key, 1, call))
        finally:
            ov.model.set_attn_implementation("sdpa")
        return out

    def stage2(self, variant: str, items: list[dict]) -> list[np.ndarray]:
        """S float32 (1024, 1024) per item (S_32 and S_64->32 averaged, as stage 3 reads them)."""
        from rsvg_zeroov.pipeline import self_attention_matrix

        focus, key = self.focus[variant], (2, variant)
        pairs = [(s["rgb"], s["expression"]) for s in items]
        if variant == "ours":
            with tf32(self.args.tf32):
                results = self.meter(key, len(items), lambda: focus(pairs))
        else:
            patch = (mock.patch.object(focus_capture, "HostListStore", HostSumStore) if self.store == "sum"
                     else nullcontext())
            with patch:
                results = [self.meter(key, 1, lambda pair=pair: focus([pair]))[0] for pair in pairs]
        self.phases[variant].extend(r.timings for r in results)
        return [self_attention_matrix(r.files(), self.evolve_config) for r in results]

    def stage3(self, variant: str, items: list[dict], a_cs: list, ss: list) -> list[np.ndarray]:
        """Final bool (H, W) mask per item. An empty evolved mask is replaced by the object's mask so
        that SAM always runs (the worst case)."""
        from rsvg_zeroov.evolve.evolve import evolve

        refiner, out = self.refiners[variant], []
        for s, a_c, sm in zip(items, a_cs, ss):
            def call(s=s, a_c=a_c, sm=sm):
                mask = evolve(a_c, sm, s["rgb"].shape[:2], self.evolve_config).mask
                if variant == "released" or refiner.image_key != Path(s["key"]):
                    refiner.set_image(s["rgb"], key=s["key"])
                return refiner.refine(mask if mask.any() else s["mask"])[0]
            with tf32(self.args.tf32 and variant == "ours"):
                out.append(self.meter((3, variant), 1, call))
        return out

    def run_round(self, items: list[dict], variants: tuple[str, ...] | None = None) -> dict:
        """All selected stages and variants on ``items``; returns {variant: (A_C list, S list, masks)}."""
        outs = {}
        for v in variants or (VARIANTS if self.released else VARIANTS[:1]):
            a_cs = self.stage1(v, items) if 1 in self.args.stages else [blob(s["mask"]) for s in items]
            ss = self.stage2(v, items) if 2 in self.args.stages else [np.eye(1024, dtype=np.float32)] * len(items)
            masks = self.stage3(v, items, a_cs, ss) if 3 in self.args.stages else None
            outs[v] = (a_cs, ss, masks)
        return outs


def _count(module) -> str:
    n = n_params(module)
    return f"{n / 1e9:.2f} B params" if n >= 1e9 else f"{n / 1e6:.3g} M params"


def measure(bench: Bench, samples: list[dict], t_start: float) -> dict:
    """Warm-up round (shortened schedule, not recorded), then measured rounds within the time budget."""
    a = bench.args
    rounds = [samples[i:i + a.batch_size] for i in range(0, len(samples), a.batch_size)]
    bench.meter.record, bench.phases = False, defaultdict(list)
    if 2 in a.stages:  # warm-up on one DDIM step: kernels, allocator and autotuning, not the schedule
        from rsvg_zeroov.focus.model import Focus

        full = bench.focus
        bench.focus = {v: Focus(f.config.override(num_steps=1, inner_steps=1), a.device).attach(f.sd)
                       for v, f in full.items()}
    bench.run_round(rounds[0])
    if 2 in a.stages:
        bench.focus = full
    for refiner in getattr(bench, "refiners", {}).values():
        refiner.image_key = None  # measured rounds start without a cached SAM embedding
    bench.meter.record, bench.phases = True, defaultdict(list)
    agree, last, measured = defaultdict(list), 0.0, 0
    for k, items in enumerate(rounds):
        elapsed = time.perf_counter() - t_start
        if k and a.time_budget and elapsed + last > a.time_budget:
            break
        t0 = time.perf_counter()
        outs = bench.run_round(items)
        last, measured = time.perf_counter() - t0, measured + len(items)
        print(f"round {k + 1}/{len(rounds)}: {last:.1f} s ({elapsed + last:.0f} s since start)", file=sys.stderr)
        if "released" in outs:
            (ac_o, s_o, m_o), (ac_r, s_r, m_r) = outs["ours"], outs["released"]
            agree["a_c"] += [float(np.abs(x - y).max()) for x, y in zip(ac_o, ac_r)]
            agree["s"] += [float(np.abs(x - y).max()) for x, y in zip(s_o, s_r)]
            agree["iou"] += [iou(x, y) for x, y in zip(m_o, m_r)] if m_o is not None else []
        if k == 0:
            first = outs["ours"]
    repeat = None
    if a.repeat_check:
        elapsed = time.perf_counter() - t_start
        if a.time_budget and elapsed + last > a.time_budget:
            print("run-to-run check skipped: no time left in the budget", file=sys.stderr)
        else:
            repeat = run_to_run(bench, rounds[0], first)
    return {"measured": measured, "agree": agree, "repeat": repeat}


def run_to_run(bench: Bench, items: list[dict], first: tuple) -> dict:
    """Ours on the first round's samples once more (not timed, SAM embedding recomputed): how far
    a second run in the same process lands from the first (GPU kernels may reduce in another order)."""
    bench.meter.record = False
    for refiner in getattr(bench, "refiners", {}).values():
        refiner.image_key = None
    (ac1, s1, m1), (ac2, s2, m2) = first, bench.run_round(items, ("ours",))["ours"]
    out = {"n": len(items),
           "a_c": max(float(np.abs(x - y).max()) for x, y in zip(ac1, ac2)),
           "s": max(float(np.abs(x - y).max()) for x, y in zip(s1, s2))}
    if m1 is not None:
        out["masks_identical"] = sum(bool(np.array_equal(x, y)) for x, y in zip(m1, m2))
        out["pixels_differing"] = max(int((x != y).sum()) for x, y in zip(m1, m2))
        out["iou"] = min(iou(x, y) for x, y in zip(m1, m2))
    return out


def _settings(bench: Bench, stage: int, variant: str) -> str:
    a, b = bench.args, bench.args.batch_size
    if stage == 1:
        return (f"sdpa, last-row capture at 4 layers, batch {b}" if variant == "ours"
                else "eager + output_attentions (all layers), batch 1")
    if stage == 2:
        sched = f"{bench.focus_config.num_steps} x {bench.focus_config.inner_steps}"
        if variant == "ours":
            return f"{a.dtype or 'float32'}{' +TF32' if a.tf32 else ''}, {sched}, running means on device, batch {b}"
        return f"float32, {sched}, every map to host ({bench.store}), batch 1"
    return ("embedding reused per image" if variant == "ours" else "embedding per expression") + \
        (" +TF32" if a.tf32 and variant == "ours" else "")


def _fmt_mem(bench: Bench, key) -> str:
    if not bench.meter.cuda:
        return "n/a (cpu) | n/a (cpu)"
    return f"{bench.meter.above[key]:.2f} | {bench.meter.peak[key]:.2f}"


def table(bench: Bench, result: dict, command: str) -> str:
    a, m = bench.args, bench.meter
    med = {k: statistics.median(v) for k, v in m.seconds.items()}
    lines = [
        "# Full-size speed benchmark (random weights)", "",
        f"Command: `{command}`", "",
        f"Device: {machine(a.device)}; {datetime.datetime.now().isoformat(timespec='minutes')}", "",
        f"Scale {a.scale}: " + "; ".join(bench.info[k] for k in ("qwen", "sd", "sam") if k in bench.info)
        + " - random weights built from the architecture configs (bench/fullsize_models.py).", "",
        f"Workload: {result['measured']} sample(s) measured of {a.n} requested (synthetic {SIZE}x{SIZE} scenes, "
        f"{a.exprs_per_image} expression(s) per image) after one warm-up round; stage 1 exactly {TOKENS} generated "
        f"tokens, greedy; stage 2 null-text with early stopping off (all inner steps); time budget: "
        f"{f'{a.time_budget:g} s' if a.time_budget else 'none'}. Resident GPU memory after building the models: "
        f"{'n/a (cpu)' if bench.resident is None else f'{bench.resident:.2f} GiB'}.", "",
        "| stage | variant | settings | median s/sample | measurements | peak GPU GiB above resident | peak GPU GiB |",
        "|---|---|---|---|---|---|---|"]
    for st in a.stages:
        for v in VARIANTS if bench.released else VARIANTS[:1]:
            lines.append(f"| {STAGES[st]} | {v} | {_settings(bench, st, v)} | {med[(st, v)]:.3f} | "
                         f"{len(m.seconds[(st, v)])} | {_fmt_mem(bench, (st, v))} |")
    lines += ["", "| stage | ours s/sample | released s/sample | released / ours | goal |", "|---|---|---|---|---|"]
    total = {v: sum(med.get((st, v), 0.0) for st in a.stages) for v in VARIANTS}
    for st, name in [(st, STAGES[st]) for st in a.stages] + [(0, "end to end (sum of stages)")]:
        ours = total["ours"] if st == 0 else med[(st, "ours")]
        rel = (total["released"] if st == 0 else med[(st, "released")]) if bench.released else None
        ratio = f"{rel / ours:.2f}x" if rel else "skipped"
        lines.append(f"| {name} | {ours:.3f} | {f'{rel:.3f}' if rel else 'skipped'} | {ratio} | {GOALS[st]} |")
    return "\n".join(lines + _notes(bench, result)) + "\n"


def _notes(bench: Bench, result: dict) -> list[str]:
    lines, ag = [""], result["agree"]
    if 2 in bench.args.stages:
        for v in VARIANTS if bench.released else VARIANTS[:1]:
            ph = bench.phases[v]
            split = ", ".join(f"{p} {statistics.median(t[p] for t in ph):.3f}" for p in ph[0]) if ph else "-"
            lines.append(f"- stage 2 {v} phase split (median s/sample): {split}")
    if 2 in bench.args.stages and bench.released:
        lines.append(f"- stage 2 released host storage: {bench.store} (the list of maps would hold "
                     f"{bench.info.get('host_list_gib', float('nan')):.1f} GiB per sample)")
    if 3 in bench.args.stages:
        counts = ", ".join(f"{v} {r.n_images}" for v, r in bench.refiners.items() if v == "ours" or bench.released)
        what = "warm-up and repeat included" if result.get("repeat") else "warm-up included"
        lines.append(f"- SAM image embeddings computed ({what}): {counts}")
    if ag.get("a_c"):
        lines.append(f"- ours vs released, max |A_C difference|: {max(ag['a_c']):.2e} (A_C in [0, 1])")
    if ag.get("s"):
        lines.append(f"- ours vs released, max |S difference|: {max(ag['s']):.2e} (rows of S sum to 1)")
    if ag.get("iou"):
        lines.append(f"- ours vs released final masks: mean IoU {statistics.mean(ag['iou']):.4f}")
    rep = result.get("repeat")
    if rep:
        line = (f"- run-to-run (ours, the first round's {rep['n']} sample(s) run again in the same process): "
                f"max |A_C difference| {rep['a_c']:.2e}, max |S difference| {rep['s']:.2e}")
        if "iou" in rep:
            line += (f"; final masks identical {rep['masks_identical']}/{rep['n']}, at most "
                     f"{rep['pixels_differing']} pixels differ, min IoU {rep['iou']:.4f}")
        lines.append(line)
    if bench.args.scale == "small":
        lines.append("- scale small: shrunken models and schedule on CPU; the GPU numbers are not measured here.")
    lines.append("- Random weights: timings are the real cost; answers, maps and masks mean nothing.")
    return lines


def main(argv=None) -> None:
    t_start = time.perf_counter()
    args = parse_args(argv)
    command = "python bench/gpu_fullsize.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    print(f"models built in {time.perf_counter() - t_start:.1f} s: {bench.info}", file=sys.stderr)
    result = measure(bench, make_samples(args.n, args.exprs_per_image, args.seed), t_start)
    text = table(bench, result, command.strip())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
