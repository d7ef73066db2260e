"""Benchmark the evaluator on an RRSIS-D-sized split: 3,481 samples of 800x800 synthetic masks.

    python bench/bench_eval.py                     # writes bench/results_eval.md
    python bench/bench_eval.py --n 500 --repeats 1 --workdir /tmp/evalbench

Times (median of --repeats) the evaluator (parallel workers, fast PNG decoding) against a
straightforward serial loop (PIL decode + numpy per sample) on the same files, in the same run,
and checks that both give the same metrics. Ground truth and predictions are 0/255 PNGs written
the way the stages write them (rsvg_zeroov.rundir.save_png).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import rsvg_zeroov  # noqa: F401  (installed with pip -e)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import cpu_model, load_average  # noqa: E402 - bench/ is the script's folder
from rsvg_zeroov.datasets import MaskSource, Sample
from rsvg_zeroov.evaluation import default_workers, evaluate, summarize
from rsvg_zeroov.evaluation.scoring import SampleScore
from rsvg_zeroov.rundir import RunDir, save_png

SIZE = 800


# ------------------------------------------------------------------------------------ data
def _blob(rng: np.random.Generator) -> np.ndarray:
    """uint8 (800, 800) 0/255: a rotated ellipse or polygon, 10-300 px across (object-like)."""
    import cv2

    m = np.zeros((SIZE, SIZE), np.uint8)
    cx, cy = (int(v) for v in rng.integers(40, SIZE - 40, 2))
    r = int(rng.integers(5, 150))
    if rng.random() < 0.5:
        axes = (r, max(3, int(r * rng.uniform(0.3, 1.0))))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 9))))
        rad = r * rng.uniform(0.5, 1.0, ang.size)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
    return m


def _prediction(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A plausible prediction: the ground truth shifted and grown/shrunk, sometimes elsewhere or empty."""
    import cv2

    u = rng.random()
    if u < 0.05:
        return np.zeros_like(gt)
    if u < 0.35:
        return _blob(rng)
    shift = rng.integers(-25, 26, 2)
    pred = np.roll(gt, (int(shift[1]), int(shift[0])), axis=(0, 1))
    k = int(rng.integers(1, 12))
    kernel = np.ones((k, k), np.uint8)
    return cv2.dilate(pred, kernel) if rng.random() < 0.5 else cv2.erode(pred, kernel)


def build(workdir: Path, n: int, seed: int = 0) -> tuple[list[Sample], RunDir]:
    """Write (or reuse) gt/<id>.png, RUN/masks/<id>.png and RUN/predictions.jsonl for n samples."""
    run = RunDir(workdir / "run")
    gt_dir = workdir / "gt"
    stamp = workdir / f"done_{n}_{seed}"
    rng = np.random.default_rng(seed)
    samples, lines = [], []
    for i in range(n):
        sid = f"{i:05d}"
        gt_path = gt_dir / f"{sid}.png"
        if not stamp.exists():
            gt = _blob(rng)
            save_png(gt_path, gt)
            pred = _prediction(rng, gt)
            save_png(run.mask_png(sid), pred)
            lines.append(json.dumps({"sample_id": sid, "box": None, "mask": run.mask_rel(sid), "sam_score": None}))
        samples.append(Sample(sid, gt_path, "synthetic", SIZE, SIZE, box=None, mask=MaskSource("image", gt_path)))
    if not stamp.exists():
        run.predictions.write_text("\n".join(lines) + "\n")
        stamp.touch()
    return samples, run


# ------------------------------------------------------------------------------------ serial baseline
def serial_baseline(samples: list[Sample], run: RunDir) -> dict:
    """The straightforward loop: PIL decode of both masks + numpy, one sample after the other."""
    from PIL import Image

    preds = {}
    for line in run.predictions.read_text().splitlines():
        rec = json.loads(line)
        preds[rec["sample_id"]] = rec
    scores = []
    for s in samples:
        gt = s.load_mask()
        pred = np.array(Image.open(run.root / preds[s.sample_id]["mask"])) > 0
        inter, union = np.logical_and(pred, gt).sum(), np.logical_or(pred, gt).sum()
        gy, gx = np.nonzero(gt)
        gbox = (gx.min(), gy.min(), gx.max(), gy.max())
        py, px = np.nonzero(pred)
        pbox = (px.min(), py.min(), px.max(), py.max()) if px.size else (0, 0, 0, 0)
        iw = max(0, min(pbox[2], gbox[2]) - max(pbox[0], gbox[0]) + 1)
        ih = max(0, min(pbox[3], gbox[3]) - max(pbox[1], gbox[1]) + 1)
        area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
        b_union = area(pbox) + area(gbox) - iw * ih
        scores.append(SampleScore(iw * ih, b_union, iw * ih / (b_union + 1e-6),
                                  int(inter), int(union), inter / (union + 1e-6)))
    return summarize(scores, "zeroov")


# ------------------------------------------------------------------------------------ timing
def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_round_robin(methods, repeats: int) -> list[dict]:
    """Run the methods in turn, ``repeats`` rounds (so a change of machine load hits all alike).

    Returns per method: wall and CPU seconds of every run, and the last output.
    """
    stats = [{"label": label, "wall": [], "cpu": [], "out": None} for label, _ in methods]
    for _ in range(repeats):
        for st, (_, fn) in zip(stats, methods):
            c0, t0 = _cpu_seconds(), time.perf_counter()
            st["out"] = fn()
            st["wall"].append(time.perf_counter() - t0)
            st["cpu"].append(_cpu_seconds() - c0)
            print(f"{st['label']}: {st['wall'][-1]:.2f}s wall, {st['cpu'][-1]:.2f}s CPU", file=sys.stderr)
    return stats


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, numpy {np.__version__}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3481, help="samples (RRSIS-D test: 3481)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="evaluator processes (default: one per core)")
    p.add_argument("--workdir", default=None, help="where the synthetic masks go (default: a temp dir; reused)")
    p.add_argument("--out", default=str(Path(__file__).with_name("results_eval.md")))
    args = p.parse_args(argv)
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "rsvg_zeroov_bench_eval")
    t0 = time.perf_counter()
    samples, run = build(workdir, args.n)
    print(f"data: {args.n} samples in {workdir} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    load_before = load_average()
    workers = args.workers or default_workers()
    methods = [
        (f"evaluator, {workers} worker processes", lambda: evaluate(samples, run, "zeroov", workers=workers)),
        ("evaluator, 1 process (fast decode only)", lambda: evaluate(samples, run, "zeroov", workers=1)),
        ("serial loop: PIL decode + numpy", lambda: serial_baseline(samples, run)),
    ]
    stats = timed_round_robin(methods, args.repeats)
    for st in stats:
        out = st["out"]
        st["metrics"] = out if isinstance(out, dict) else summarize(out.scores, "zeroov")
    ref = stats[-1]["metrics"]
    for st in stats:
        for task in ("rsrec", "rsres"):
            for k, v in st["metrics"][task].items():
                assert abs(v - ref[task][k]) < 1e-6, f"{st['label']}: {task} {k} {v} != serial {ref[task][k]}"
    report = render_report(args, stats, load_before)
    print(report)
    Path(args.out).write_text(report)
    return 0


def render_report(args, stats: list[dict], load_before: str) -> str:
    serial = statistics.median(stats[-1]["wall"])
    cmd = "python bench/bench_eval.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Evaluator benchmark (bench/bench_eval.py)", "",
        f"- machine: {machine()}",
        f"- load average (1/5/15 min) before / after the timed runs: {load_before} / {load_average()} "
        "(the machine is shared: wall times grow with load, CPU times much less)",
        f"- command: `{cmd.strip()}`",
        f"- data: {args.n} samples, {SIZE}x{SIZE} synthetic 0/255 PNG masks (ground truth + prediction), "
        f"protocol zeroov, RSREC + RSRES; {args.repeats} round-robin rounds, medians",
        "- all three give the same metrics (checked)", "",
        "| method | wall s (median) | wall s (runs) | CPU s (median) | wall ms / sample | speed-up vs serial |",
        "|---|---|---|---|---|---|",
    ]
    for st in stats:
        med = statistics.median(st["wall"])
        lines.append(f"| {st['label']} | {med:.2f} | {', '.join(f'{t:.2f}' for t in st['wall'])} | "
                     f"{statistics.median(st['cpu']):.2f} | {1000 * med / args.n:.2f} | {serial / med:.2f}x |")
    rsrec, rsres = stats[0]["metrics"]["rsrec"], stats[0]["metrics"]["rsres"]
    lines += ["", f"Synthetic metrics (sanity): RSREC mIoU {rsrec['mIoU']:.2f}, Pr@0.5 {rsrec['Pr@0.5']:.2f}; "
              f"RSRES mIoU {rsres['mIoU']:.2f}, Pr@0.5 {rsres['Pr@0.5']:.2f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
