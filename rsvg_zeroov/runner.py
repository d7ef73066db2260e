"""What every dataset-level stage shares: the dataset arguments, sharding, resume, failures, progress.

A stage script builds its config, then calls :func:`run_stage` with three callables:
``is_done(sample)`` (outputs exist and validate), ``process(samples)`` (compute and write the
outputs of a batch of samples, atomically) and optional ``finalize(all_samples)``.
Per-sample exceptions are recorded in ``RUN/failures.jsonl`` and the run goes on; the process exits
non-zero at the end if any sample failed.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Sequence

from .rundir import RunDir, save_json

DATASET_CHOICES = ("rrsisd", "risbench", "dior_rsvg", "opt_rsvg", "refsegrs", "vrsbench", "jsonl")


# ------------------------------------------------------------------------------------ arguments
def add_dataset_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The dataset arguments every dataset-level command takes (CONTRACTS.md)."""
    g = parser.add_argument_group("data set")
    g.add_argument("--dataset", choices=DATASET_CHOICES, required=required)
    g.add_argument("--root", help="data set root folder (or the .jsonl file for --dataset jsonl)")
    g.add_argument("--split", default="test")
    g.add_argument("--format", default=None, help="rrsisd only: 'refer' (official, default) or 'zeroov-json'")
    g.add_argument("--bbox-format", default=None, choices=("auto", "xywh", "xyxy"),
                   help="rrsisd refer only: force the instances.json bbox convention (default: detect)")
    g.add_argument("--out", default=None, help="run directory (default outputs/<dataset>_<split>)")
    g.add_argument("--limit", type=int, default=None, help="only the first N samples")
    g.add_argument("--shard", default=None, help="I/N: process every N-th sample starting at I "
                   "(default from RANK/WORLD_SIZE under torchrun, else 0/1)")


def dataset_options(args: argparse.Namespace) -> dict:
    opts = {}
    if getattr(args, "format", None):
        opts["format"] = args.format
    if getattr(args, "bbox_format", None):
        opts["bbox_format"] = args.bbox_format
    return opts


def resolve_out(args: argparse.Namespace) -> RunDir:
    out = args.out or os.path.join("outputs", f"{args.dataset}_{args.split}")
    return RunDir(out)


def default_workers(cap: int = 8) -> int:
    """One worker per CPU core this process may use, at most ``cap``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, cap))


def usage_error(message: str) -> NoReturn:
    """A bad command line or setting: one line on stderr, exit status 2 (as argparse does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N); default from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if spec is None:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    else:
        try:
            rank_s, world_s = spec.split("/")
            rank, world = int(rank_s), int(world_s)
        except ValueError:
            usage_error(f"--shard expects I/N (e.g. 0/4), got {spec!r}")
    if world < 1 or not 0 <= rank < world:
        usage_error(f"shard {rank}/{world} is out of range (need 0 <= I < N)")
    return rank, world


def load_run_samples(args: argparse.Namespace) -> list:
    """All samples of the run (after --limit), before sharding. Exits 2 on a malformed data set."""
    import dataclasses

    from .datasets import DatasetError, load_samples
    from .datasets.files import deferred_image_errors

    if not args.root:
        usage_error("--root is required with --dataset")
    try:
        with deferred_image_errors() as bad_images:
            samples = load_samples(args.dataset, args.root, args.split, **dataset_options(args))
    except DatasetError as exc:
        usage_error(str(exc))
    if args.limit is not None:
        samples = samples[: max(args.limit, 0)]
    # A damaged image fails its own samples (recorded by run_stage), not the whole run.
    return [dataclasses.replace(s, extra=s.extra + ((IMAGE_ERROR, bad_images[Path(s.image_path)]),))
            if Path(s.image_path) in bad_images else s for s in samples]


IMAGE_ERROR = "image_error"


def image_error(sample) -> str | None:
    """The problem with a sample's image found while loading the data set, or None."""
    return dict(getattr(sample, "extra", ())).get(IMAGE_ERROR)


def shard(samples: Sequence, rank: int, world: int) -> list:
    """Strided shard: disjoint, and the union over ranks is every sample."""
    return list(samples[rank::world])


# ------------------------------------------------------------------------------------ failures
@contextmanager
def locked(run: RunDir, name: str = "failures") -> Iterator[None]:
    """An exclusive lock on ``RUN/.<name>.lock`` shared by every process of the run (all ranks)."""
    run.root.mkdir(parents=True, exist_ok=True)
    with open(run.root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_failure(run: RunDir, sid: str, stage: str, exc: BaseException) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    with locked(run):
        run.append_failure(sid, stage, msg)


def prune_failures(run: RunDir, stage: str, done: Callable[[str], bool]) -> None:
    """Drop this stage's failure records whose sample now has valid outputs (a successful retry)."""
    with locked(run):
        records = run.read_failures()
        keep = [r for r in records if not (r.get("stage") == stage and done(r.get("sample_id", "")))]
        if len(keep) != len(records):
            from .rundir import atomic_write_bytes

            atomic_write_bytes(run.failures, "".join(json.dumps(r) + "\n" for r in keep).encode())


# ------------------------------------------------------------------------------------ the loop
@dataclass(frozen=True)
class StageReport:
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float


def progress(iterable, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, disable=None)


def run_stage(stage: str, run: RunDir, samples: Sequence, is_done: Callable, process: Callable,
              batch_size: int = 1, desc: str | None = None, setup: Callable[[], None] | None = None) -> StageReport:
    """Run ``process`` over the samples of this shard that are not yet done.

    ``setup()`` (e.g. loading the model) runs once, only if some sample is not done, before any
    sample is processed; what it raises is not a per-sample failure but propagates to the caller
    (a missing model is one error, not N). A fully resumed run never calls it.

    ``process(batch)`` computes and writes the outputs of a list of samples. If it raises, each
    sample of that batch is retried alone, so one bad sample does not fail its neighbours; a
    sample that still raises is recorded in failures.jsonl. KeyboardInterrupt is never swallowed.
    """
    t0 = time.perf_counter()
    todo = [s for s in samples if not is_done(s)]
    skipped = len(samples) - len(todo)
    if todo and setup is not None:
        setup()
    errors = {s.sample_id: image_error(s) for s in todo}
    for s in todo:
        if errors[s.sample_id]:
            record_failure(run, s.sample_id, stage, ValueError(errors[s.sample_id]))
    bad_images = sum(1 for e in errors.values() if e)
    failed = bad_images
    todo = [s for s in todo if not errors[s.sample_id]]
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), max(batch_size, 1))]
    bar = progress(range(len(todo)), len(todo), desc or stage)
    for batch in batches:
        try:
            process(batch)
        except Exception:  # noqa: BLE001 - retried one by one below, then recorded
            for s in batch:
                try:
                    if len(batch) > 1:
                        process([s])
                    else:
                        raise
                except Exception as exc:  # noqa: BLE001 - recorded per sample, run continues
                    failed += 1
                    record_failure(run, s.sample_id, stage, exc)
                    _free_device_memory()
                    if os.environ.get("RSVG_ZEROOV_TRACEBACK"):
                        traceback.print_exc()
        bar.update(len(batch))
    bar.close()
    by_id = {s.sample_id: s for s in samples}
    prune_failures(run, stage, lambda sid: sid in by_id and is_done(by_id[sid]))
    report = StageReport(len(samples), skipped, len(todo) - (failed - bad_images), failed,
                         time.perf_counter() - t0)
    print(f"[{stage}] {report.done} done, {report.skipped} already done (resumed), "
          f"{report.failed} failed, {report.seconds:.1f}s -> {run.root}", file=sys.stderr)
    if failed:
        print(f"[{stage}] failures recorded in {run.failures}", file=sys.stderr)
    return report


def _free_device_memory() -> None:
    """After a failed sample (e.g. CUDA out of memory), give cached GPU memory back before the next."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def write_config(run: RunDir, stage: str, config: dict, rank: int = 0) -> None:
    """Write ``RUN/<stage>_config.json`` (rank 0 only, so shards do not race) with library versions."""
    if rank != 0:
        return
    save_json(run.config(stage), {"stage": stage, **config, "versions": library_versions()})


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("rsvg-zeroov", "torch", "transformers", "diffusers", "segment-anything", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def exit_code(report: StageReport) -> int:
    return 1 if report.failed else 0


def jsonable(obj):
    """Dataclass/Path/tuple -> plain JSON types (for configs)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def pick_device(name: str | None = None) -> str:
    """``--device`` value, else ``cuda:$LOCAL_RANK`` when CUDA is available (one GPU per torchrun process), else cpu."""
    if name:
        return name
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"
