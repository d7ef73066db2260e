"""Benchmark stage 2 (Focus): phase times and peak memory, ours against the released-style capture.

    python bench/bench_focus.py                                  # writes bench/results_focus.md
    python bench/bench_focus.py --steps 5 --inner-steps 1 --rounds 1   # a few minutes

Variants, each round in a fresh subprocess (so peak memory is per variant), on the same samples:
  ours-b1       running means on the device (FocusConfig default), batch 1
  released-b1   every map of every head, layer and step copied to the host, averaged at the end
  ours-bB       running means, batch B (--batch, default 4): throughput against ours-b1
Each worker loads the model, warms up on one sample with one step, then runs B samples once
(timed: wall, CPU time, per-phase split from FocusResult.timings) while a thread samples RSS.
The model is the tiny random SD v1 layout (rsvg_zeroov.tiny.sd) unless --model is given.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RssPeak, machine_info as _machine_info, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PHASES = ("encode", "inversion", "optimisation", "reconstruction", "reduce")
EXPRESSIONS = ("the white storage tank at the bottom right", "the airplane on the left",
               "a small boat near the harbour.", "the large building in the middle")


def _images(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8), EXPRESSIONS[i % len(EXPRESSIONS)]) for i in range(n)]


def worker(args) -> dict:
    import numpy as np
    import torch

    from rsvg_zeroov.focus.config import FocusConfig
    from rsvg_zeroov.focus.model import Focus

    torch.set_num_threads(args.threads)
    variant, batch = args.worker.split("-b")
    cfg = FocusConfig(model=args.model, num_steps=args.steps, inner_steps=args.inner_steps, inversion=args.inversion,
                      batch_size=int(batch), dtype=args.dtype,
                      accumulate="host_list" if variant == "released" else "running")
    focus = Focus(cfg, args.device).load()
    items = _images(args.batch)
    Focus(cfg.override(num_steps=1, batch_size=1), args.device).attach(focus.sd)(items[:1])  # warm-up
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    with RssPeak(interval_s=0.001) as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        results = focus(items)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    np.save(args.dump, results[0].self_64to32_corrected)
    out = {"variant": args.worker, "n": len(items), "seconds": seconds, "cpu_seconds": cpu_seconds,
           "phases": {p: sum(r.timings[p] for r in results) / len(results) for p in PHASES},
           "call_rss_mb": mem.increase, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "heads": results[0].meta["captured"]["self_64"]["heads"]}
    if cuda:
        out["call_cuda_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2 ** 20
    return out


def run_variant(variant: str, args, dump: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--model", args.model, "--steps", str(args.steps),
           "--inner-steps", str(args.inner_steps), "--inversion", args.inversion, "--batch", str(args.batch),
           "--device", args.device, "--threads", str(args.threads), "--dump", dump]
    cmd += ["--dtype", args.dtype] if args.dtype else []
    return run_worker(cmd[1:], variant)


def machine_info(device: str) -> str:
    return _machine_info(device, "diffusers")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(rows: dict, args, command: str, load: str, diff: float) -> str:
    variants = list(rows)
    mem_key = "call_cuda_mb" if args.device.startswith("cuda") else "call_rss_mb"
    per = {v: _median(rows[v], "seconds") / rows[v][0]["n"] for v in variants}
    cpu = {v: _median(rows[v], "cpu_seconds") / rows[v][0]["n"] for v in variants}
    mem = {v: max(r[mem_key] for r in rows[v]) for v in variants}
    ours, rel, big = variants
    lines = [
        "# Stage 2 (Focus) benchmark", "", f"Command: `{command}`", "",
        f"Machine: {machine_info(args.device)}; load average during the run: {load}", "",
        f"Model: {args.model_label}; 512x512 input (64x64 latent), {rows[ours][0]['heads']} head(s); "
        f"inversion {args.inversion}, {args.steps} DDIM steps, <= {args.inner_steps} Adam steps per step; "
        f"device {args.device}, dtype {args.dtype or 'float32'}, {args.threads} torch thread(s); "
        f"{args.batch} samples per worker; median of {args.rounds} round(s), each variant a fresh process.", "",
        "| variant | per-sample wall (s) | per-sample CPU (s) | " + " | ".join(PHASES) +
        " | peak memory during the call (MB) | process peak RSS (MB) |",
        "|---" * (5 + len(PHASES)) + "|"]
    for v in variants:
        phases = " | ".join(f"{statistics.median(r['phases'][p] for r in rows[v]):.2f}" for p in PHASES)
        lines.append(f"| {v} | {per[v]:.2f} | {cpu[v]:.2f} | {phases} | {mem[v]:.0f} "
                     f"| {max(r['peak_rss_mb'] for r in rows[v]):.0f} |")
    lines += [
        "", f"- released / ours peak memory during the call: {mem[rel] / max(mem[ours], 1e-9):.1f}x (target >= 5x)",
        f"- batch {args.batch} vs batch 1 throughput: {per[ours] / per[big]:.2f}x samples/s wall, "
        f"{cpu[ours] / cpu[big]:.2f}x per CPU second",
        f"- ours vs released maps (self_64to32_corrected of sample 0): max |difference| = {diff:.2e}", "",
        "Phase columns are per-sample seconds (a batch's phase time divided by its size); reconstruction "
        "includes the capture. Memory during the call = peak minus the RSS before it (model loaded, warm-up "
        "done), sampled every millisecond" + (" (CUDA: torch.cuda.max_memory_allocated)." if "cuda" in mem_key
                                             else "; the process peak also holds the runtime and the model."),
        "CPU time is reported beside wall time because the machine is shared.",
        "", "Raw rounds, per-sample wall seconds: " + "; ".join(
            f"{v}: " + ", ".join(f"{r['seconds'] / r['n']:.2f}" for r in rows[v]) for v in variants)]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (paper: 20; fewer for a quick run)")
    p.add_argument("--inner-steps", type=int, default=2, help="max Adam steps per timestep (paper: 10)")
    p.add_argument("--inversion", default="nulltext", choices=("nulltext", "ddim", "noise"))
    p.add_argument("--batch", type=int, default=4, help="samples per worker and batch size of the batched variant")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    p.add_argument("--model", default=None, help="SD folder/key (default: a tiny random SD built in a temp dir)")
    p.add_argument("--out", default=str(REPO / "bench" / "results_focus.md"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch < 2 and not args.worker:
        p.error("--batch must be >= 2: it is the size of the batched variant compared with batch 1")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import numpy as np

    command = " ".join(["python bench/bench_focus.py", shlex.join(sys.argv[1:])]).strip()
    with tempfile.TemporaryDirectory(prefix="bench_focus_") as tmp:
        args.model_label = args.model or "tiny random SD v1 layout (rsvg_zeroov.tiny.sd)"
        if args.model is None:
            from rsvg_zeroov.tiny.sd import build_tiny_sd

            args.model = str(build_tiny_sd(Path(tmp) / "sd"))
        variants = ["ours-b1", "released-b1", f"ours-b{args.batch}"]
        rows = {v: [] for v in variants}
        loads = []
        for _ in range(args.rounds):
            for v in variants:
                rows[v].append(run_variant(v, args, str(Path(tmp) / f"{v}.npy")))
                loads.append(os.getloadavg()[0])
                print(f"{v}: {rows[v][-1]['seconds']:.1f}s", file=sys.stderr)
        diff = float(np.abs(np.load(Path(tmp) / "ours-b1.npy") - np.load(Path(tmp) / "released-b1.npy")).max())
    load = " / ".join(f"{x:.1f}" for x in (min(loads), statistics.median(loads), max(loads)))
    text = table(rows, args, command, f"1-min min/median/max {load}", diff)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
