#!/usr/bin/env python
"""Benchmark stage 1 capture: plain sdpa generate vs ours (capture) vs the released approach.

A mid-size random Qwen2.5-VL (8 decoder layers, hidden 512, 8 heads, 2 KV heads; vision tower
4 blocks, hidden 256), one 800x800 image (-> 29 x 29 = 841 image tokens), a fixed number of
generated tokens (min = max new tokens), greedy. Variants:

- plain:    sdpa everywhere, ``generate`` without any capture (the floor);
- ours:     :class:`rsvg_zeroov.overview.Overview` (capture at 4 layers + map read-out);
- released: eager attention everywhere + ``output_attentions=True`` for all layers, then the maps.

Each measurement runs in a fresh subprocess (so peak memory is per variant): load, prepare the
inputs, one warm-up call, one timed call. Rounds interleave the variants (robust to a busy
machine); the table reports the median time over rounds and the peak memory: on CPU the process
peak RSS (``ru_maxrss``) and its increase over the RSS after loading ("during generation"); on CUDA
``torch.cuda.max_memory_allocated`` above the loaded model.

    python bench/bench_overview.py [--rounds 5] [--tokens 20] [--size 800] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RssPeak, load_average, machine_info as _machine_info, released_maps, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = ("plain", "ours", "released")
MID_TEXT = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]})
MID_VISION = dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, fullatt_block_indexes=[1, 3],
                  out_hidden_size=512)
LAYERS = (4, 5, 6, 7)


def worker(args) -> dict:
    import numpy as np
    import torch

    from rsvg_zeroov.overview.config import OverviewConfig
    from rsvg_zeroov.overview.model import Overview

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = OverviewConfig(model=args.model_dir, layers=LAYERS, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                         greedy=True, dtype=args.dtype)
    ov = Overview(cfg, args.device).load()
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    batch = ov.prepare([(image, "the white storage tank at the bottom right")])
    if args.worker == "released":
        ov.model.set_attn_implementation("eager")
    gc = ov.generation_config()
    call = {"plain": lambda: ov.generate_ids(batch, capture=False),
            "ours": lambda: ov.run(batch),
            "released": lambda: released_maps(ov.model, batch, gc, LAYERS)}[args.worker]
    cuda = args.device.startswith("cuda")
    with torch.inference_mode():
        call()  # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_cuda = torch.cuda.memory_allocated()
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        if cuda:
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        with RssPeak(interval_s=0.0005) as mem:  # untimed third call
            call()
    out = {"variant": args.worker, "seconds": seconds, "cpu_seconds": cpu_seconds, "gen_rss_mb": mem.increase,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "prompt_len": batch.prompt_len, "grid": batch.grids[0]}
    if cuda:
        out["gen_cuda_mb"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return out


def run_variant(variant: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--model-dir", args.model_dir, "--tokens", str(args.tokens),
           "--size", str(args.size), "--device", args.device, "--threads", str(args.threads)] + (["--dtype", args.dtype] if args.dtype else [])
    return run_worker(cmd[1:], variant)


def machine_info(device: str) -> str:
    return _machine_info(device, "transformers")


def _medians(rows: dict, key: str) -> dict:
    return {v: statistics.median(r[key] for r in rows[v]) for v in VARIANTS}


def table(rows: dict, args, command: str, load: str) -> str:
    wall, cpu = _medians(rows, "seconds"), _medians(rows, "cpu_seconds")
    mem_key = "gen_cuda_mb" if args.device.startswith("cuda") else "gen_rss_mb"
    mem = {v: max(r[mem_key] for r in rows[v]) for v in VARIANTS}
    peak = {v: max(r["peak_rss_mb"] for r in rows[v]) for v in VARIANTS}
    first = rows["plain"][0]
    lines = [
        "# Stage 1 (Overview) capture benchmark", "", f"Command: `{command}`", "",
        f"Machine: {machine_info(args.device)}; load average during the run: {load}", "",
        f"Model: random Qwen2.5-VL, text {MID_TEXT['num_hidden_layers']} layers / hidden {MID_TEXT['hidden_size']} / "
        f"{MID_TEXT['num_attention_heads']} heads / {MID_TEXT['num_key_value_heads']} KV heads, vision "
        f"{MID_VISION['depth']} blocks / hidden {MID_VISION['hidden_size']}; image {args.size}x{args.size} -> grid "
        f"{tuple(first['grid'])}, prompt {first['prompt_len']} tokens; {args.tokens} generated tokens; capture "
        f"layers {LAYERS}; device {args.device}, dtype {args.dtype or 'default'}, {args.threads} torch thread(s); "
        f"median of {args.rounds} rounds (each a fresh process: warm-up + 1 timed call + 1 memory call).", "",
        "| variant | median wall (s) | median CPU time (s) | CPU time vs plain | peak memory during generation (MB) "
        "| process peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for v in VARIANTS:
        lines.append(f"| {v} | {wall[v]:.3f} | {cpu[v]:.3f} | {cpu[v] / cpu['plain']:.3f}x | {mem[v]:.1f} "
                     f"| {peak[v]:.0f} |")
    lines += [
        "", f"- ours / plain: {cpu['ours'] / cpu['plain']:.3f}x CPU time, {wall['ours'] / wall['plain']:.3f}x wall "
        f"(target <= 1.15x)",
        f"- released / ours: {cpu['released'] / cpu['ours']:.2f}x CPU time, {wall['released'] / wall['ours']:.2f}x "
        f"wall (target >= 2x)",
        f"- released / ours peak memory during generation: {mem['released'] / max(mem['ours'], 1e-9):.1f}x "
        f"(target >= 3x); process peak RSS ratio {peak['released'] / peak['ours']:.2f}x", "",
        "CPU time (time.process_time of the worker process, all its threads) is reported beside wall time because the "
        "machine is shared: it is what the variant computes, insensitive to other processes' load.",
        "Memory during generation = peak minus the memory before the call, model and inputs loaded "
        + ("(torch.cuda.max_memory_allocated)." if mem_key == "gen_cuda_mb" else "(RSS sampled every 0.5 ms "
           "during a separate untimed call); the process peak RSS also holds the Python/torch runtime, the "
           "model and one-off warm-up allocations, common to all variants."),
        "", "Raw rounds, CPU seconds: " + "; ".join(
            f"{v}: " + ", ".join(f"{r['cpu_seconds']:.2f}" for r in rows[v]) for v in VARIANTS)]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker (1: CPU time is robust "
                   "to other load on the machine)")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    p.add_argument("--out", default=str(REPO / "bench" / "results_overview.md"))
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    from rsvg_zeroov.tiny.qwen import build_tiny_qwen

    command = "python bench/bench_overview.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        args.model_dir = str(build_tiny_qwen(Path(tmp) / "qwen_mid", seed=0, text=MID_TEXT, vision=MID_VISION))
        rows = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            for v in VARIANTS:
                rows[v].append(run_variant(v, args))
                print(f"round {r + 1}/{args.rounds} {v}: {rows[v][-1]['seconds']:.3f}s", file=sys.stderr)
    text = table(rows, args, command.strip(), load=load_average().replace(" ", " / "))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
