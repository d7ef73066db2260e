"""What every dataset-level stage shares: one :class:`Stage` contract, sharding, resume, failures,
progress and the stage's config file.

A stage is an object with ``name``, ``batch_size``, ``settings()``, ``setup()``, ``is_done(sample)``,
``process(batch)`` and ``finalize(samples)`` (:class:`Stage`); :func:`run_stage` drives all three
stages the same way. Per-sample exceptions are recorded in ``RUN/failures.jsonl`` and the run goes
on; the script exits non-zero at the end if any sample failed. ``RUN/<stage>_config.json`` is written
here, in one schema for every stage (:func:`stage_config_body`).

The library never prints or exits: bad settings raise :class:`UsageError`, which the scripts
(:mod:`rsvg_zeroov.cli`) turn into one ``error:`` line and exit status 2; notes go to ``logging``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NoReturn, Protocol, Sequence, runtime_checkable

from .datasets import LOADERS
from .rundir import RunDir
from .rundir.failures import locked, prune_failures, record_failure  # noqa: F401 - re-exported
from .rundir.stage_config import (jsonable, library_versions, read_stage_config,  # noqa: F401 - re-exported
                                  stage_config_body, write_config, write_stage_config)

log = logging.getLogger(__name__)
DATASET_CHOICES = tuple(LOADERS)  # the loader registry is the one list of data sets


class UsageError(ValueError):
    """A bad command line, setting or data set: the message is what the user sees (exit status 2)."""


# ------------------------------------------------------------------------------------ arguments
def add_dataset_args(parser: argparse.ArgumentParser, required: bool = True, source: bool | str = False) -> None:
    """The data set arguments every data-set-level command takes (docs/run-directory.md);
    ``source``: also ``--from RUN`` (commands that only read another run: stage 3, eval); a string
    is its help text."""
    g = parser.add_argument_group("data set")
    g.add_argument("--dataset", choices=DATASET_CHOICES, required=required)
    g.add_argument("--root", help="data set root folder (or the .jsonl file for --dataset jsonl)")
    g.add_argument("--split", default="test")
    g.add_argument("--format", default=None, help="rrsisd only: 'refer' (official, default) or 'zeroov-json'")
    g.add_argument("--bbox-format", default=None, choices=("auto", "xywh", "xyxy"),
                   help="rrsisd refer only: force the instances.json bbox convention (default: detect)")
    g.add_argument("--out", default=None, help="run directory (default outputs/<dataset>_<split>)")
    if source:
        g.add_argument("--from", dest="source_run", default=None, metavar="RUN",
                       help=source if isinstance(source, str) else
                       "read the stage-1/2 dumps from this run directory and write into --out "
                       "(an ablation into a new run folder)")
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
    """The run directory of ``--out`` (default ``outputs/<dataset>_<split>``), reading the upstream
    dumps from ``--from RUN`` when given."""
    out = args.out or os.path.join("outputs", f"{args.dataset}_{args.split}")
    source = getattr(args, "source_run", None)
    if source is not None and not Path(source).is_dir():
        raise UsageError(f"--from {source}: run directory not found")
    if source is not None and Path(source).resolve() == Path(out).resolve():
        raise UsageError(f"--from {source} and --out {out} name the same folder: --from writes into a new "
                         f"run folder, give it with --out NEW")
    return RunDir(out, source=source)


def run_info(args: argparse.Namespace, rank: int = 0, world: int = 1, device: str | None = None,
             **extra) -> dict:
    """The run-level part of ``RUN/<stage>_config.json`` (data set, shard, device, source run)."""
    info = {"dataset": getattr(args, "dataset", None), "root": getattr(args, "root", None),
            "split": getattr(args, "split", None), "limit": getattr(args, "limit", None),
            "shard": f"{rank}/{world}", "world_size": world, "device": device,
            "source_run": str(Path(args.source_run).resolve()) if getattr(args, "source_run", None) else None}
    return {**info, **extra}


def default_workers(cap: int = 8) -> int:
    """One worker per CPU core this process may use, at most ``cap``; under torchrun the cores are
    shared by the ranks on this node (``LOCAL_WORLD_SIZE``), so each rank takes its share."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, min(n // local, cap))


def usage_error(message: str) -> NoReturn:
    """Raise :class:`UsageError` (the scripts print it as one ``error:`` line and exit 2)."""
    raise UsageError(message)


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N); default from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if spec is None:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    else:
        try:
            rank_s, world_s = spec.split("/")
            rank, world = int(rank_s), int(world_s)
        except ValueError:
            raise UsageError(f"--shard expects I/N (e.g. 0/4), got {spec!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"shard {rank}/{world} is out of range (need 0 <= I < N)")
    return rank, world


def load_run_samples(args: argparse.Namespace) -> list:
    """All samples of the run (after --limit), before sharding. UsageError on a malformed data set."""
    import dataclasses

    from .datasets import DatasetError, load_samples, notes_muted
    from .datasets.files import deferred_image_errors

    if not args.root:
        raise UsageError("--root is required with --dataset")
    try:
        with deferred_image_errors() as bad_images, notes_muted(_notes_shown(args)):
            samples = load_samples(args.dataset, args.root, args.split, **dataset_options(args))
    except DatasetError as exc:
        raise UsageError(str(exc)) from None
    if args.limit is not None:
        samples = samples[: max(args.limit, 0)]
    # A damaged image fails its own samples (recorded by run_stage), not the whole run.
    return [dataclasses.replace(s, extra=s.extra + ((IMAGE_ERROR, bad_images[Path(s.image_path)]),))
            if Path(s.image_path) in bad_images else s for s in samples]


def _notes_shown(args: argparse.Namespace) -> bool:
    """Whether an earlier stage of this run already wrote its config (and showed the data set's
    notes, such as RRSIS-D's detected bbox convention): later stages do not repeat them."""
    out = getattr(args, "out", None) or os.path.join("outputs", f"{args.dataset}_{args.split}")
    roots = [Path(out)] + ([Path(args.source_run)] if getattr(args, "source_run", None) else [])
    return any((root / f"{stage}_config.json").is_file() for root in roots for stage in ("overview", "focus", "evolve"))


IMAGE_ERROR = "image_error"


def image_error(sample) -> str | None:
    """The problem with a sample's image found while loading the data set, or None."""
    return dict(getattr(sample, "extra", ())).get(IMAGE_ERROR)


def input_error(sample, min_side: int | None = None) -> str | None:
    """Why a sample cannot be processed (the same rules as the one-image tools): an unreadable
    image, an empty expression, or (``min_side``, the VLM stage's) a side shorter than that; or None."""
    err = image_error(sample)
    if err:
        return err
    expression = getattr(sample, "expression", "x")
    if expression is None or not str(expression).strip():
        return f"{getattr(sample, 'image_path', '?')}: the referring expression is empty"
    w, h = getattr(sample, "width", None), getattr(sample, "height", None)
    if min_side and w is not None and h is not None and min(int(w), int(h)) < min_side:
        return (f"{getattr(sample, 'image_path', '?')}: image is {w}x{h} pixels; the VLM needs at least "
                f"{min_side} pixels on each side")
    return None


def shard(samples: Sequence, rank: int, world: int) -> list:
    """Strided shard: disjoint, and the union over ranks is every sample."""
    return list(samples[rank::world])


# ------------------------------------------------------------------------------------ the loop
@dataclass(frozen=True)
class StageReport:
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float


@runtime_checkable
class Stage(Protocol):
    """What :func:`run_stage` drives; the three stages implement it (overview, focus, evolve).

    name: ``"overview"`` | ``"focus"`` | ``"evolve"`` (the config file is ``RUN/<name>_config.json``).
    batch_size: samples per :meth:`process` call.
    settings(): ``{"config": <the stage's config fields>, "resolved": <what loading decided: model
        source, dtype, ...; may be empty before setup>}``.
    setup(): load models; called once, only if some sample is not done. What it raises propagates
        (a missing model is one error, not one failure per sample).
    is_done(sample): the sample's outputs exist, validate and were made with these settings.
    process(batch): compute and write the outputs of a list of samples, atomically.
    finalize(samples): after every batch, with the samples :func:`run_stage` was given as
        ``all_samples`` (stage 3 passes every shard's; default: this shard's).
    Optional ``min_image_side``: samples whose image has a shorter side are recorded as failed
    before any work (stage 1: the VLM's 28-pixel cell).
    """

    name: str
    batch_size: int

    def settings(self) -> dict: ...

    def setup(self) -> None: ...

    def is_done(self, sample) -> bool: ...

    def process(self, batch: list) -> None: ...

    def finalize(self, samples: Sequence) -> None: ...


@dataclass
class FunctionStage:
    """A :class:`Stage` made of plain callables (tests, small tools)."""

    name: str
    done: Callable
    work: Callable
    batch_size: int = 1
    on_setup: Callable[[], None] | None = None
    config: dict | None = None

    def settings(self) -> dict:
        return {"config": self.config or {}, "resolved": {}}

    def setup(self) -> None:
        if self.on_setup is not None:
            self.on_setup()

    def is_done(self, sample) -> bool:
        return self.done(sample)

    def process(self, batch: list) -> None:
        self.work(batch)

    def finalize(self, samples: Sequence) -> None:
        pass


def run_stage(stage: "Stage | str", run: RunDir, samples: Sequence, is_done: Callable | None = None,
              process: Callable | None = None, batch_size: int = 1, desc: str | None = None,
              setup: Callable[[], None] | None = None, *, all_samples: Sequence | None = None,
              rank: int = 0, run_info: dict | None = None) -> StageReport:
    """Run ``stage`` over the samples of this shard that are not yet done.

    ``stage`` is a :class:`Stage`; the older form ``run_stage(name, run, samples, is_done, process,
    batch_size, setup=...)`` builds a :class:`FunctionStage` of those callables.
    ``RUN/<name>_config.json`` is written (rank 0) before any work when ``run_info`` is given and
    some sample needs work (or the file is absent), and again after ``setup`` with the resolved
    settings. ``all_samples``: every sample of the run (default ``samples``), handed to ``finalize``.

    ``setup()`` runs once, only if some sample is not done, before any sample is processed; what
    it raises propagates to the caller. A fully resumed run never calls it.
    ``process(batch)`` computes and writes the outputs of a list of samples. If it raises, each
    sample of that batch is retried alone, so one bad sample does not fail its neighbours; a
    sample that still raises is recorded in failures.jsonl. KeyboardInterrupt is never swallowed.
    """
    if isinstance(stage, str):
        stage = FunctionStage(stage, is_done, process, batch_size, setup)
    name, t0 = stage.name, time.perf_counter()
    todo = [s for s in samples if not stage.is_done(s)]
    skipped = len(samples) - len(todo)
    min_side = getattr(stage, "min_image_side", None)  # the VLM stage refuses images below its cell
    errors = {s.sample_id: input_error(s, min_side) for s in todo}
    for s in todo:
        if errors[s.sample_id]:
            record_failure(run, s.sample_id, name, ValueError(errors[s.sample_id]))
    bad_inputs = sum(1 for e in errors.values() if e)
    failed = bad_inputs
    todo = [s for s in todo if not errors[s.sample_id]]
    # the config file describes the run that made the outputs: a fully resumed run keeps it
    if run_info is not None and (todo or not run.config(name).is_file()):
        write_stage_config(run, stage, run_info, rank)
    if todo:
        stage.setup()  # e.g. the model load: only when a valid sample needs it
        if run_info is not None:
            write_stage_config(run, stage, run_info, rank)
    size = max(int(stage.batch_size), 1)
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    from .progress import bar as progress_bar

    with progress_bar(len(todo), desc or (name if rank == 0 else f"{name}[{rank}]"), leave=True) as bar:
        for batch in batches:
            failed += _process_batch(stage, run, batch)
            bar.update(len(batch))
    stage.finalize(all_samples if all_samples is not None else samples)
    by_id = {s.sample_id: s for s in samples}
    prune_failures(run, name, lambda sid: sid in by_id and stage.is_done(by_id[sid]))
    report = StageReport(len(samples), skipped, len(todo) - (failed - bad_inputs), failed,
                         time.perf_counter() - t0)
    log.info("[%s] %d done, %d already done (resumed), %d failed, %.1fs -> %s", name, report.done,
             report.skipped, report.failed, report.seconds, run.root)
    if failed:
        log.warning("[%s] %d failed samples recorded in %s", name, failed, run.failures)
    return report


def _process_batch(stage: Stage, run: RunDir, batch: list) -> int:
    """``stage.process(batch)``; on an exception each sample alone. Returns how many failed."""
    try:
        stage.process(batch)
        return 0
    except Exception:  # noqa: BLE001 - retried one by one below, then recorded
        if len(batch) == 1:
            _record(stage, run, batch[0], sys.exc_info()[1])
            return 1
    failed = 0
    for s in batch:
        try:
            stage.process([s])
        except Exception as exc:  # noqa: BLE001 - recorded per sample, run continues
            failed += 1
            _record(stage, run, s, exc)
    return failed


def _record(stage: Stage, run: RunDir, sample, exc: BaseException) -> None:
    record_failure(run, sample.sample_id, stage.name, exc)
    _free_device_memory()
    if os.environ.get("RSVG_ZEROOV_TRACEBACK"):
        log.error("%s failed", sample.sample_id, exc_info=exc)


def _free_device_memory() -> None:
    """After a failed sample (e.g. CUDA out of memory), give cached GPU memory back before the next."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def exit_code(report: StageReport) -> int:
    return 1 if report.failed else 0


def pick_device(name: str | None = None) -> str:
    """``--device`` value, else ``cuda:$LOCAL_RANK`` when CUDA is available (one GPU per torchrun process), else cpu."""
    if name:
        return name
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"
