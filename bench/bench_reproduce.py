"""Benchmark of the table harness without SAM against one stage-3 run (issue 18: every row of the
ablation table for the RRSIS-D test split, 3,481 800 x 800 samples, in <= 3x one stage-3 run).

    python bench/bench_reproduce.py [--n 600] [--size 800] [--dtype float16] [--repeats 3] [--workers W] [--threads]

Writes synthetic stage 1/2 dumps for N samples (29 x 29 VLM maps, row-stochastic 1024 x 1024
self-attention matrices: ``self_32`` and both 64 -> 32 reductions, as stage 2 writes them) and
800 x 800 ground-truth PNG masks, then times, alternately in the same process and on the same
files (page cache warm):

- ``stage 3``: one stage-3 run without refinement (``EvolveStage`` under ``run_stage``: resume
  check, loading, evolving, mask PNGs, records, ``predictions.jsonl``; in worker processes, its
  default, or with ``--threads`` in threads), the comparison point;
- ``evaluate``: ``rsvg_zeroov.evaluation.evaluate`` of that run (what a stage-3 run needs on top
  to give numbers);
- ``harness``: ``rsvg_zeroov.reproduce`` with ``--table ablation --no-sam --force`` (every row of
  the ablation table that runs without SAM, scored, with its metrics.json and the tables).

Reports the median of each and the ratios; rewrites ``bench/results_reproduce.md``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import load_average, stage3_parser  # noqa: E402 - bench/ is the script's folder
from bench_evolve import machine, synthetic_a_c, synthetic_s  # noqa: E402
from rsvg_zeroov.datasets.base import MaskSource, Sample  # noqa: E402
from rsvg_zeroov.evolve.config import EvolveConfig  # noqa: E402
from rsvg_zeroov.evolve.stage import EvolveStage  # noqa: E402
from rsvg_zeroov.rundir import FOCUS_64TO32, FOCUS_SELF_32, RunDir, save_json, save_mask_png, save_npy  # noqa: E402

N_MASKS = 16  # distinct ground-truth PNGs, reused round-robin


def write_inputs(run: RunDir, n: int, size: int, dtype: str, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    bases = [synthetic_s(rng).astype(dtype) for _ in range(6)]
    gts = []
    for j in range(N_MASKS):
        y0, x0 = rng.integers(0, size // 2, 2)
        mask = np.zeros((size, size), bool)
        mask[y0:y0 + rng.integers(40, size // 2), x0:x0 + rng.integers(40, size // 2)] = True
        path = run.root / "gt" / f"{j:02d}.png"
        save_mask_png(path, mask)
        gts.append(path)
    samples = []
    for i in range(n):
        sid = f"s{i:05d}"
        save_npy(run.overview_npy(sid), np.repeat(synthetic_a_c(rng)[None], 5, axis=0))
        save_json(run.overview_json(sid), {"grid": [29, 29], "layers": [16, 17, 18, 19], "weights": [0.1, 0.1, 0.3, 0.5],
                                           "answer": "[100, 120, 400, 380]", "image_size": [size, size],
                                           "resized_size": [812, 812], "model_key": "qwen2.5-vl-7b"})
        save_npy(run.focus_file(sid, FOCUS_SELF_32), bases[i % 6].reshape(32, 32, 1024))
        save_npy(run.focus_file(sid, FOCUS_64TO32["released"]), bases[(i + 1) % 6])
        save_npy(run.focus_file(sid, FOCUS_64TO32["corrected"]), bases[(i + 2) % 6])
        samples.append(Sample(sid, Path(f"images/{i // 5:05d}.jpg"), "synthetic", size, size,
                              mask=MaskSource("image", gts[i % N_MASKS])))
    return samples


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished children."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn):
    """(wall seconds, CPU seconds, fn's result)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def time_stage3(run: RunDir, samples, workers, threads: bool = False):
    for sub in ("masks", "evolve"):
        shutil.rmtree(run.root / sub, ignore_errors=True)
    (run.root / "predictions.jsonl").unlink(missing_ok=True)
    stage = EvolveStage(run, EvolveConfig(refiner=None), workers=workers, batch_size=32,
                        processes=False if threads else None)
    # closed inside the timing: it joins the worker processes, so that their CPU time counts
    wall, cpu, report = timed(lambda: (stage.run_samples(samples), stage.close())[0])
    assert report.done == len(samples), report
    return wall, cpu


def time_evaluate(run: RunDir, samples, workers):
    from rsvg_zeroov.evaluation import evaluate

    wall, cpu, result = timed(lambda: evaluate(samples, run, "zeroov", workers))
    assert len(result.scores) == len(samples)
    return wall, cpu


def time_harness(run: RunDir, samples, workers):
    from rsvg_zeroov.reproduce import Options, reproduce

    options = Options(tables=("ablation",), no_sam=True, figures=False, force=True, workers=workers)
    wall, cpu, report = timed(lambda: reproduce(run, samples, dataset="rrsisd", split="test", options=options))
    assert report.failed == 0
    time_harness.rows = report.recomputed
    return wall, cpu


def render(args, results: dict[str, list[tuple[float, float]]], rows: list[str], command: str,
           load_before: str) -> str:
    med = {k: statistics.median(w for w, _c in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _w, c in v) for k, v in results.items()}
    ratio = med["harness"] / med["stage 3"]
    ratio_eval = med["harness"] / (med["stage 3"] + med["evaluate"])
    per = {k: 1e3 * v / args.n for k, v in med.items()}
    lines = [
        "# Table harness (no SAM) vs one stage-3 run", "",
        f"- machine: {machine()}; load average before / after: {load_before} / {load_average()} "
        "(a shared machine: other jobs ran on the same cores during the runs)",
        f"- command: `{command}`",
        f"- {args.n} samples, {args.size}x{args.size}, dumps {args.dtype} (page cache warm), {args.repeats} "
        f"interleaved repeats, workers {args.workers or 'default (one per core)'}, stage 3 in worker "
        f"{'threads (--threads)' if args.threads else 'processes (its default)'}",
        f"- harness rows ({len(rows)}): {', '.join(rows)}", "",
        "| run | " + " | ".join(f"repeat {i + 1} wall / CPU (s)" for i in range(args.repeats))
        + " | median wall s | ms/sample | median CPU s |",
        "|---|" + "---|" * (args.repeats + 3),
    ]
    for name, values in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{w:.2f} / {c:.2f}" for w, c in values)
                     + f" | {med[name]:.2f} | {per[name]:.2f} | {cpu[name]:.2f} |")
    lines += ["", f"**harness / stage 3: {ratio:.2f}x wall** (target <= 3x), {cpu['harness'] / cpu['stage 3']:.2f}x CPU; "
              f"harness / (stage 3 + evaluate): {ratio_eval:.2f}x wall. At this rate the RRSIS-D test split "
              f"(3,481 samples) takes {per['harness'] * 3.481:.1f} s for the harness against "
              f"{per['stage 3'] * 3.481:.1f} s for stage 3.", ""]
    return "\n".join(lines)


def main() -> None:
    p = stage3_parser(__doc__)
    p.add_argument("--out", default=str(REPO / "bench" / "results_reproduce.md"))
    args = p.parse_args()
    load_before = load_average()
    os.environ.setdefault("RSVG_ZEROOV_PROGRESS", "0")
    (REPO / "outputs").mkdir(exist_ok=True)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix=".bench_reproduce_", dir=REPO / "outputs"))
    results: dict[str, list[tuple[float, float]]] = {"stage 3": [], "evaluate": [], "harness": []}
    try:
        run = RunDir(scratch / "run")
        t0 = time.perf_counter()
        samples = write_inputs(run, args.n, args.size, args.dtype)
        print(f"wrote inputs for {args.n} samples in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        import torch  # noqa: F401 - start-up, not timed

        time_harness(run, samples[:8], args.workers)  # warm-up: imports and first calls
        for _ in range(args.repeats):
            results["stage 3"].append(time_stage3(run, samples, args.workers, args.threads))
            results["evaluate"].append(time_evaluate(run, samples, args.workers))
            results["harness"].append(time_harness(run, samples, args.workers))
            print({k: [round(x, 2) for x in v[-1]] for k, v in results.items()}, file=sys.stderr)
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    md = render(args, results, time_harness.rows, command, load_before)
    print(md)
    Path(args.out).write_text(md)


if __name__ == "__main__":
    main()
