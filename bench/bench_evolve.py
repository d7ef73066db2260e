"""Benchmark of stage 3 without SAM on 800 x 800 images (issue 8: >= 200 samples/s after start-up).

    python bench/bench_evolve.py [--n 600] [--size 800] [--dtype float16] [--repeats 3] [--workers W] [--threads]
    python bench/bench_evolve.py --codecs [--n 600]   # the hand-written codecs against the libraries
    python bench/bench_evolve.py --compare OLD_TREE [--rounds 3] [--n 1000]   # another checkout, interleaved

Writes synthetic stage 1/2 dumps for N samples first (29 x 29 VLM maps, row-stochastic
1024 x 1024 self-attention matrices), then times the real stage (``EvolveStage`` under
``runner.run_stage``: resume check, loading, evolving, PNG + record writing, then
``predictions.jsonl``) into a fresh output folder per repeat. Reports the median samples/s and
the wall / CPU split between loading, evolving and writing; rewrites ``bench/results_evolve.md``.
``--compare`` runs this checkout and another one (e.g. ``git worktree add /tmp/old6ab 6ab407d``)
in alternating fresh processes (each tree's own ``bench/bench_evolve.py`` functions time it), on
one set of dumps written once and read by both, and reports per-round and median samples/s,
their ratio and the CPU split.
The dumps are in the page cache (just written): a cold disk adds its read time (4 MB per sample
in float16, 8 MB in float32, for the default resolutions 32 + 64).
"""
from __future__ import annotations

import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_common import cpu_model, load_average, run_worker, stage3_parser  # noqa: E402 - bench/ is the script's folder
from rsvg_zeroov.datasets.base import Sample  # noqa: E402
from rsvg_zeroov.evolve.config import EvolveConfig  # noqa: E402
from rsvg_zeroov.evolve.stage import EvolveStage  # noqa: E402
from rsvg_zeroov.rundir import FOCUS_64TO32, FOCUS_SELF_32, RunDir, save_json, save_npy  # noqa: E402


def synthetic_s(rng: np.random.Generator) -> np.ndarray:
    """A row-stochastic (1024, 1024) matrix with local structure (attention to nearby positions)."""
    yx = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1).reshape(-1, 2)
    d2 = ((yx[:, None, :] - yx[None, :, :]) ** 2).sum(-1)
    s = np.exp(-d2 / rng.uniform(4, 30)) + rng.uniform(0, 1e-3, d2.shape)
    return (s / s.sum(1, keepdims=True)).astype(np.float32)


def synthetic_a_c(rng: np.random.Generator, grid: int = 29) -> np.ndarray:
    cy, cx = rng.uniform(4, grid - 4, 2)
    yy, xx = np.mgrid[:grid, :grid]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 20))
    return (blob + rng.uniform(0, 0.1, blob.shape)).astype(np.float32)


def write_dumps(run: RunDir, n: int, size: int, dtype: str, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    bases = [synthetic_s(rng).astype(dtype) for _ in range(4)]
    samples = []
    for i in range(n):
        sid = f"s{i:05d}"
        a_c = synthetic_a_c(rng)
        save_npy(run.overview_npy(sid), np.repeat(a_c[None], 5, axis=0))
        save_json(run.overview_json(sid), {"grid": [29, 29], "layers": [16, 17, 18, 19], "weights": [0.1, 0.1, 0.3, 0.5]})
        save_npy(run.focus_file(sid, FOCUS_SELF_32), bases[i % 4].reshape(32, 32, 1024))
        save_npy(run.focus_file(sid, FOCUS_64TO32["released"]), bases[(i + 1) % 4])
        # five expressions per image, as in RRSIS-D-like data
        samples.append(Sample(sid, Path(f"images/{i // 5:05d}.jpg"), "synthetic", size, size))
    return samples


# --codecs: stage 3 with a library codec in place of a hand-written one (same files, same masks)
def _png_pil(path, mask, *, durable=True):
    from PIL import Image

    from rsvg_zeroov.rundir import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue(), durable=durable)
    return buf.getvalue()


def _png_cv2(path, mask, *, durable=True):
    import cv2

    from rsvg_zeroov.rundir import atomic_write_bytes

    ok, data = cv2.imencode(".png", np.asarray(mask, dtype=np.uint8) * 255,
                            [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    atomic_write_bytes(path, data.tobytes(), durable=durable)
    return data.tobytes()


def _npy_load(path, shape=None, *, buffer=None):
    return np.load(path, allow_pickle=False)


CODECS_HEADING = "## Codecs: the shipped .npy reader and PNG encoder against the libraries"
VARIANTS = {  # name -> (module attribute patched, replacement); "shipped" = the code as it is
    "shipped": None,
    "png-pil": ("rsvg_zeroov.rundir.evolve", "save_mask_png", _png_pil),
    "png-cv2": ("rsvg_zeroov.rundir.evolve", "save_mask_png", _png_cv2),
    "npy-np.load": ("rsvg_zeroov.evolve.interaction", "read_npy", _npy_load),
}


@contextmanager
def variant(name: str):
    spec = VARIANTS[name]
    if spec is None:
        yield
        return
    import importlib

    module = importlib.import_module(spec[0])
    real = getattr(module, spec[1])
    setattr(module, spec[1], spec[2])
    try:
        yield
    finally:
        setattr(module, spec[1], real)


def one_repeat(run: RunDir, samples: list[Sample], workers: int | None, threads: bool = False) -> dict:
    for sub in ("masks", "evolve"):
        shutil.rmtree(run.root / sub, ignore_errors=True)
    (run.root / "predictions.jsonl").unlink(missing_ok=True)
    stage = EvolveStage(run, EvolveConfig(refiner=None), workers=workers, batch_size=32,
                        processes=False if threads else None)
    os.environ["TQDM_DISABLE"] = "1"
    t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
    report = stage.run_samples(samples)  # run_stage finalizes: predictions.jsonl included
    t1, c1 = time.perf_counter(), time.process_time()
    stage.close()  # joins the worker processes, whose CPU time then counts in k1
    k1 = children_cpu()
    lines = stage.finalize(samples)  # timed again alone for its own column
    t2 = time.perf_counter()
    assert report.done == len(samples) and lines == len(samples), (report, lines)
    return {"seconds": t1 - t0, "finalize": t2 - t1, "rate": len(samples) / (t1 - t0),
            "cpu_ms": 1e3 * ((c1 - c0) + (k1 - k0)) / len(samples),
            "phases": dict(stage.timer.seconds), "cpu": dict(stage.timer.cpu_seconds), "workers": stage.workers,
            "kind": "worker process" if getattr(stage, "processes", False) else "worker thread"}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's ended and joined child processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, NumPy {np.__version__}"


def render(args, results: list[dict], command: str) -> str:
    rates = [r["rate"] for r in results]
    med = statistics.median_low(rates)
    best = results[rates.index(med)]
    n = args.n
    split = ["| phase | wall ms/sample (summed over workers) | CPU ms/sample | CPU share |", "|---|---|---|---|"]
    cpu_total = sum(best["cpu"].values()) or 1.0
    for k, v in best["phases"].items():
        if v:
            c = best["cpu"][k]
            split.append(f"| {k} | {1e3 * v / n:.2f} | {1e3 * c / n:.2f} | {100 * c / cpu_total:.0f}% |")
    lines = [
        "# Stage 3 (evolve, no SAM) benchmark", "",
        f"- machine: {machine()}; load average before / after: {args.load_before} / "
        f"{load_average()} (other jobs share the cores)",
        f"- command: `{command}`",
        f"- {args.n} samples, {args.size}x{args.size} images, dumps {args.dtype} (page cache warm), "
        f"resolutions 32+64, {best['workers']} {best.get('kind', 'thread')}s, {args.repeats} repeats", "",
        "| repeat | wall s (load+evolve+write+predictions) | samples/s | CPU ms/sample (all threads and processes) | predictions.jsonl s |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results):
        lines.append(f"| {i + 1} | {r['seconds']:.2f} | {r['rate']:.0f} | {r['cpu_ms']:.1f} | {r['finalize']:.2f} |")
    lines += ["", f"**median: {med:.0f} samples/s** (3,481 RRSIS-D test samples: {3481 / med:.1f} s)", "",
              "Time split of the median repeat (wall includes fsync and CPU waits):", "", *split, ""]
    return "\n".join(lines)


def render_codecs(args, by_variant: dict[str, list[dict]], command: str) -> str:
    base = by_variant["shipped"]
    base_rate = statistics.median(r["rate"] for r in base)
    base_cpu = statistics.median(r["cpu_ms"] for r in base)
    lines = [CODECS_HEADING, "",
             f"- machine: {machine()}; load average before / after: {args.load_before} / {load_average()}",
             f"- command: `{command}`",
             f"- {args.n} samples, {args.size}x{args.size} images, dumps {args.dtype}, {args.repeats} interleaved "
             f"repeats per variant; medians. CPU ms/sample is the steadier measure on shared cores.", "",
             "| variant | samples/s | vs shipped | CPU ms/sample | vs shipped |", "|---|---|---|---|---|"]
    for name, results in by_variant.items():
        rate = statistics.median(r["rate"] for r in results)
        cpu = statistics.median(r["cpu_ms"] for r in results)
        lines.append(f"| {name} | {rate:.0f} | {100 * (rate / base_rate - 1):+.0f}% | {cpu:.2f} | "
                     f"{100 * (cpu / base_cpu - 1):+.0f}% |")
    return "\n".join(lines) + "\n"


# --compare: one fresh process per tree and round; the tree's own bench_evolve.py writes and times
COMPARE_HEADING = "## Another tree against this one (interleaved rounds)"
WORKER = """
import importlib.util, json, pathlib, sys
tree, dumps, root, n, size, dtype, repeats, workers = sys.argv[1:9]
sys.path[:0] = [tree + "/bench", tree]
spec = importlib.util.spec_from_file_location("tree_bench_evolve", tree + "/bench/bench_evolve.py")
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
marker, key = pathlib.Path(dumps) / "dumps-written", f"{n} {size} {dtype}"
if marker.is_file() and marker.read_text() == key:  # same seed: the samples without rewriting files
    mod.save_npy = mod.save_json = lambda *a, **k: None
samples = mod.write_dumps(mod.RunDir(pathlib.Path(dumps) / "run"), int(n), int(size), dtype)
marker.write_text(key)
import torch  # noqa: F401 - start-up, not timed
run = mod.RunDir(pathlib.Path(root))
out = [mod.one_repeat(run, samples, None if workers == "auto" else int(workers)) for _ in range(int(repeats))]
print(json.dumps(out))
"""


def tree_label(tree: Path) -> str:
    import subprocess

    def git(*cmd):
        proc = subprocess.run(["git", "-C", str(tree), *cmd], capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "?"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line.endswith("bench/results_evolve.md")]  # this benchmark's own output is not code
    return head + (" + uncommitted changes" if changed else "")


def compare(args, scratch: Path) -> dict[str, list[list[dict]]]:
    trees = {"old": Path(args.compare).resolve(), "new": REPO}
    if not (trees["old"] / "bench" / "bench_evolve.py").is_file():
        raise SystemExit(f"error: --compare {args.compare}: no bench/bench_evolve.py there")
    dumps = scratch / "dumps"  # one set of dump files (written by the first worker) read by both trees
    dumps.mkdir(parents=True, exist_ok=True)
    for name in trees:  # each tree's run folder: its own outputs, the shared dumps linked in
        (scratch / name / "run").mkdir(parents=True, exist_ok=True)
        for sub in ("overview", "focus"):
            link = scratch / name / "run" / sub
            if not link.is_symlink():
                link.symlink_to(dumps / "run" / sub, target_is_directory=True)
    rounds: dict[str, list[list[dict]]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):  # ABBA: drift hits both alike
            cmd = ["-c", WORKER, str(trees[name]), str(dumps), str(scratch / name / "run"), str(args.n),
                   str(args.size), args.dtype, str(args.repeats), "auto" if args.workers is None else str(args.workers)]
            rounds[name].append(run_worker(cmd, name))
            print(f"round {r + 1} {name}: {statistics.median(x['rate'] for x in rounds[name][-1]):.0f} samples/s",
                  file=sys.stderr)
    args.labels = {name: tree_label(t) for name, t in trees.items()}
    return rounds


def render_compare(args, rounds: dict[str, list[list[dict]]], command: str) -> str:
    med = {name: [statistics.median(x["rate"] for x in reps) for reps in rs] for name, rs in rounds.items()}
    cpu = {name: [statistics.median(x["cpu_ms"] for x in reps) for reps in rs] for name, rs in rounds.items()}
    lines = [COMPARE_HEADING, "",
             f"- machine: {machine()}; load average before / after: {args.load_before} / {load_average()}",
             f"- command: `{command}`",
             f"- old: `{args.compare}` at {args.labels['old']}; new: this checkout at {args.labels['new']}",
             (f"- {args.n} samples, {args.size}x{args.size} images, dumps {args.dtype} (one set read by both "
              f"trees, page cache warm), {args.rounds} rounds of {args.repeats} repeats, a fresh process per tree "
              f"and round, order "
              f"old-new / new-old alternating; per round the median repeat"), "",
             "| round | old samples/s | new samples/s | new / old | CPU ms/sample old -> new |",
             "|---|---|---|---|---|"]
    for r in range(args.rounds):
        lines.append(f"| {r + 1} | {med['old'][r]:.0f} | {med['new'][r]:.0f} | "
                     f"{med['new'][r] / med['old'][r]:.2f} | {cpu['old'][r]:.2f} -> {cpu['new'][r]:.2f} |")
    m_old, m_new = statistics.median(med["old"]), statistics.median(med["new"])
    ratios = [n / o for n, o in zip(med["new"], med["old"])]
    lines += ["", (f"**median over rounds: old {m_old:.0f}, new {m_new:.0f} samples/s, new / old "
                   f"{m_new / m_old:.2f}** (median of the per-round ratios {statistics.median(ratios):.2f}, "
                   f"range {min(ratios):.2f}-{max(ratios):.2f}); CPU ms/sample (the steadier measure on shared "
                   f"cores) old {statistics.median(cpu['old']):.2f}, new {statistics.median(cpu['new']):.2f}, "
                   f"new / old {statistics.median(cpu['new']) / statistics.median(cpu['old']):.2f}"), "",
              "CPU ms/sample by phase (summed over workers; median over all repeats):", "",
              "| phase | old | new | new / old |", "|---|---|---|---|"]
    for phase in ("loading", "evolving", "writing"):
        per = {name: statistics.median(x["cpu"].get(phase, 0.0) * 1e3 / args.n for reps in rs for x in reps)
               for name, rs in rounds.items()}
        ratio = per["new"] / max(per["old"], 1e-9)
        lines.append(f"| {phase} | {per['old']:.2f} | {per['new']:.2f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def split_sections(text: str) -> dict[str, str]:
    """A results file by section: "" = the throughput results at the top, then the --codecs and
    --compare sections (by heading), in file order."""
    found = sorted((text.index(h), h) for h in (CODECS_HEADING, COMPARE_HEADING) if h in text)
    parts = {"": text[:found[0][0]] if found else text}
    for i, (pos, heading) in enumerate(found):
        parts[heading] = text[pos:found[i + 1][0] if i + 1 < len(found) else len(text)]
    return parts


def main() -> None:
    p = stage3_parser(__doc__)
    p.add_argument("--codecs", action="store_true", help="time each codec variant (interleaved repeats) "
                   "instead; writes a table of the medians")
    p.add_argument("--compare", metavar="TREE", default=None, help="another checkout of this repository "
                   "(e.g. a git worktree of an older commit): time it and this one in alternating rounds")
    p.add_argument("--rounds", type=int, default=3, help="--compare: rounds (one process per tree each)")
    p.add_argument("--out", default=str(REPO / "bench" / "results_evolve.md"),
                   help="markdown file; --codecs / --compare replace only their own section")
    args = p.parse_args()
    args.load_before = load_average()
    (REPO / "outputs").mkdir(exist_ok=True)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix=".bench_evolve_", dir=REPO / "outputs"))
    try:
        if args.compare:
            rounds = compare(args, scratch)
        else:
            run = RunDir(scratch / "run")
            t0 = time.perf_counter()
            samples = write_dumps(run, args.n, args.size, args.dtype)
            print(f"wrote dumps for {args.n} samples in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            import torch  # noqa: F401 - start-up: the stage imports torch (float16 casts), not timed

            if args.codecs:
                by_variant = {name: [] for name in VARIANTS}
                for _ in range(args.repeats):  # interleaved, so drifting load hits every variant alike
                    for name in VARIANTS:
                        with variant(name):
                            by_variant[name].append(one_repeat(run, samples, args.workers, args.threads))
            else:
                results = [one_repeat(run, samples, args.workers, args.threads) for _ in range(args.repeats)]
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    if args.compare:
        key, md = COMPARE_HEADING, render_compare(args, rounds, command)
    elif args.codecs:
        key, md = CODECS_HEADING, render_codecs(args, by_variant, command)
    else:
        key, md = "", render(args, results, command)
    print(md)
    out = Path(args.out)
    parts = split_sections(out.read_text() if out.is_file() else "")
    parts[key] = md
    out.write_text("\n\n".join(part.strip("\n") for part in parts.values() if part.strip()) + "\n")

if __name__ == "__main__":
    main()
