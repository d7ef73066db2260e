"""The paper's tables from one run's stage-1/2 dumps: which rows can run, one pass over the samples
for every pending row, the rows' metrics, then the tables and figures (docs/reproduce.md).

    report = reproduce(RunDir("outputs/rrsisd_test"), samples, dataset="rrsisd", split="test",
                       options=Options(no_sam=True))

Resumable at the row and sample level: a row whose scores are all on disk under its fingerprint
is not recomputed (:mod:`rsvg_zeroov.reproduce.store`); a row that failed on a sample records the
failure (that sample scores as missing, IoU 0) and is retried on the sample by the next run.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..evolve.config import EvolveConfig
from ..rundir import FOCUS_16TO32, RunDir
from .rows import (DEFAULT_GRID, LAYOUT, TABLES, Row, build_rows, row_config,
                   sensitivity_rows)
from .store import Entry, RowStore, fingerprint, reproduce_dir, write_failures

log = logging.getLogger(__name__)
CHUNK = 64  # samples computed between two appends to the score files
CHUNK_REFINED = 8  # ... when refined rows are pending (their unrefined masks wait in memory)
PROCESS_MIN = 64  # from this many samples on, a pass without refined rows uses worker processes
PROCESS_JOBS = 8  # samples a worker process takes at a time


@dataclass(frozen=True)
class Options:
    """tables: which of main / ablation / sensitivity. no_sam: skip every refined row. refiner,
    refiner_checkpoint, device: the refiner of the refined rows (registry key, weights file).
    protocol: evaluation protocol. grid: the sensitivity grid (the sweep's syntax). workers:
    threads of the pass (None: one per core). force: recompute every row. figures: draw them.
    panels: how many of the most disagreeing samples get panels."""

    tables: tuple[str, ...] = TABLES
    no_sam: bool = False
    refiner: str | None = "vit_h"
    refiner_checkpoint: str | None = None
    device: str | None = None
    protocol: str = "zeroov"
    grid: str = DEFAULT_GRID
    workers: int | None = None
    force: bool = False
    figures: bool = True
    panels: int = 10

    def __post_init__(self) -> None:
        if self.refiner is None:  # no refiner at all: as --no-sam
            object.__setattr__(self, "no_sam", True)
        unknown = [t for t in self.tables if t not in TABLES]
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; choose from {', '.join(TABLES)}")


@dataclass
class RowState:
    """A row's standing. reason: why it was not run (None: it ran); entries: sample id -> Entry;
    metrics: its metrics.json object once every sample has an entry; computed: samples scored now;
    failed_ids: the samples of this run it failed on, in data set order (set with the metrics)."""

    row: Row
    fp: str
    reason: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    metrics: dict | None = None
    computed: int = 0
    fresh: bool = False  # --force: the scores file is replaced at the row's first write
    failed_ids: list[str] = field(default_factory=list)


@dataclass
class Report:
    """states: row name -> RowState (every row of the tables asked for); tables / figures: files written."""

    states: dict[str, RowState]
    samples: int
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """(row, sample) pairs that failed."""
        return sum(len(s.failed_ids) for s in self.states.values() if s.reason is None)

    @property
    def recomputed(self) -> list[str]:
        return [n for n, s in self.states.items() if s.computed]


def select_rows(options: Options) -> dict[str, Row]:
    """The rows of the tables asked for, in table order (each name once)."""
    every = build_rows(EvolveConfig(refiner=options.refiner, refiner_checkpoint=options.refiner_checkpoint))
    rows: dict[str, Row] = {}
    for table in options.tables:
        if table == "sensitivity":
            rows.update(sensitivity_rows(EvolveConfig(refiner=None), options.grid))
        else:
            rows.update((name, every[name]) for name, _label in LAYOUT[table])
    return rows


def _missing_file_reason(run: RunDir, samples: Sequence, name: str) -> str | None:
    """Why no row that needs the stage-2 file ``name`` can run (no sample has it), or None."""
    if any(run.focus_file(s.sample_id, name).is_file() for s in samples):
        return None
    if name in FOCUS_16TO32.values():
        return f"not run: needs stage 2's {name} (generate_diffusion.py --save-self-16)"
    return f"not run: needs stage 2's {name} (generate_diffusion.py)"


def not_run_reason(row: Row, options: Options, missing: dict[str, str | None]) -> str | None:
    """Why ``row`` cannot run here, as the table says it ("not run: ..."), or None."""
    if row.sam and options.no_sam:
        return "not run: --no-sam"
    if row.sam and row.prompt is not None:
        from ..evolve.refine import check_prompt_support

        try:
            check_prompt_support(row_config(row))
        except ValueError as exc:
            return f"not run: {exc}"
    for name in row.focus_files():
        if missing.get(name):
            return missing[name]
    return None


def plan(run: RunDir, samples: Sequence, options: Options, context: dict) -> dict[str, RowState]:
    """Every row of the tables asked for, with its reason not to run or its entries on disk."""
    rows = select_rows(options)
    files = sorted({n for r in rows.values() for n in r.focus_files()})
    missing = {n: _missing_file_reason(run, samples, n) for n in files}
    states = {}
    for name, row in rows.items():
        state = RowState(row, fingerprint(row, context), not_run_reason(row, options, missing))
        if state.reason is None:
            state.fresh = options.force
            state.entries = {} if options.force else RowStore(run, row, state.fp).load()
        states[name] = state
    return states


def _pending(states: dict[str, RowState], sid: str) -> list[Row]:
    return [s.row for s in states.values() if s.reason is None
            and (sid not in s.entries or s.entries[sid].error is not None)]


def build_refiner(options: Options):
    """The refiner of the refined rows (ModelNotFound, naming the flag, when its weights are missing)."""
    from ..evolve.refine import build_refiner as build

    return build(EvolveConfig(refiner=options.refiner, refiner_checkpoint=options.refiner_checkpoint),
                 options.device, flag="--refiner-checkpoint")


def run_pass(run: RunDir, samples: Sequence, states: dict[str, RowState], options: Options,
             refiner=None) -> int:
    """Compute every pending (sample, row), appending each chunk's scores to the row files; returns
    the number of samples visited. ``refiner``: needed when a pending row is refined.

    Without refined rows, from :data:`PROCESS_MIN` samples on, the samples are shared by forked
    worker processes (the per-sample work is many small NumPy calls that hold the GIL; threads
    would queue on it); otherwise by threads, and the refiner runs in this thread in image order."""
    from ..evolve.stage import group_by_image
    from ..progress import bar as progress_bar
    from ..runner import default_workers
    from .compute import ImageFeeder, refine_outcome

    todo = [(s, _pending(states, s.sample_id)) for s in group_by_image(samples)]
    todo = [(s, rows) for s, rows in todo if rows]
    if not todo:
        return 0
    refined = any(r.sam for _s, rows in todo for r in rows)
    if refined and refiner is None:
        raise ValueError("refined rows are pending: pass the refiner")
    stores = {n: RowStore(run, s.row, s.fp) for n, s in states.items() if s.reason is None}
    feeder = ImageFeeder(refiner) if refined else None
    workers = max(1, options.workers if options.workers is not None else default_workers())
    processes = (not refined and workers > 1 and len(todo) >= PROCESS_MIN
                 and "fork" in mp.get_all_start_methods())
    # worker processes get every job at once (their results are small and come back in order);
    # threads a chunk at a time (a chunk's masks wait in memory for the refiner)
    chunk = len(todo) if processes else CHUNK_REFINED if refined else CHUNK
    lines: dict[str, list] = {}

    def flush() -> None:
        for name, items in lines.items():
            stores[name].append(items, replace=states[name].fresh)
            states[name].fresh = False
        lines.clear()

    with _pool(workers, processes) as compute, progress_bar(len(todo), "reproduce", leave=True) as bar:
        for i in range(0, len(todo), chunk):
            outcomes = compute([(run, s, rows, options.protocol) for s, rows in todo[i:i + chunk]])
            for n, outcome in enumerate(outcomes, start=1):
                if outcome.to_refine:
                    refine_outcome(outcome, refiner, feeder, options.protocol)
                sid = outcome.sample.sample_id
                for name, score in outcome.scores.items():
                    entry = Entry(score, outcome.errors.get(name))
                    states[name].entries[sid] = entry
                    states[name].computed += 1
                    lines.setdefault(name, []).append((sid, entry))
                if n % CHUNK == 0:
                    flush()
                    bar.update(CHUNK)
            flush()
            bar.update(n % CHUNK)
    return len(todo)


@contextmanager
def _pool(workers: int, processes: bool):
    """A function mapping ``[(run, sample, rows, protocol), ...]`` to an iterator of their outcomes,
    in order: in forked processes (scores only come back, as they are ready) or in threads (torch
    kernels single-threaded; the whole list at once)."""
    from ..evolve.interaction import single_threaded_kernels
    from .compute import compute_sample, scores_only

    if processes:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_one_thread) as pool:
            yield lambda jobs: pool.map(scores_only, jobs, chunksize=PROCESS_JOBS)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="reproduce") as pool:
        def compute(jobs):
            with single_threaded_kernels():
                return list(pool.map(lambda job: compute_sample(*job), jobs))
        yield compute


def _one_thread() -> None:
    """Worker processes: one torch thread each (they are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def row_metrics(state: RowState, samples: Sequence, dataset: str, split: str, protocol: str,
                extra: dict) -> dict:
    """The evaluator's metrics.json object for the row (:meth:`EvalResult.metrics`, failed samples
    counted as missing), with the row's name, settings, fingerprint and failures."""
    from ..evaluation.evaluator import EvalResult
    from ..evaluation.protocols import get_protocol

    failed = [s.sample_id for s in samples if state.entries[s.sample_id].error]
    result = EvalResult(get_protocol(protocol), tuple(s.sample_id for s in samples),
                        tuple(s.category for s in samples),
                        tuple(state.entries[s.sample_id].score for s in samples), tuple(failed), 0)
    metrics = result.metrics(dataset, split)
    metrics.update(row=state.row.name, label=state.row.label, settings=state.row.settings(),
                   fingerprint=state.fp, failed=len(failed), failures={sid: state.entries[sid].error
                                                                        for sid in failed}, **extra)
    return metrics


def finish_rows(run: RunDir, samples: Sequence, states: dict[str, RowState], dataset: str, split: str,
                options: Options, extra: dict) -> None:
    """metrics.json of every row that ran (rewritten only when something changed) and failures.jsonl."""
    failures = []
    ids = [s.sample_id for s in samples]
    for name, state in states.items():
        if state.reason is not None:
            continue
        missing = [sid for sid in ids if sid not in state.entries]
        if missing:  # cannot happen after a pass; kept for a clear message if it does
            raise RuntimeError(f"row {name}: {len(missing)} samples unscored after the pass")
        store = RowStore(run, state.row, state.fp)
        metrics = None if state.computed else store.read_metrics()
        if metrics is None or metrics.get("n") != len(ids):
            metrics = row_metrics(state, samples, dataset, split, options.protocol, extra)
            store.write_metrics(metrics)
        state.metrics = metrics
        state.failed_ids = [sid for sid in ids if state.entries[sid].error]
        failures += [{"sample_id": sid, "row": name, "error": state.entries[sid].error} for sid in state.failed_ids]
    write_failures(run, failures)


def write_config(run: RunDir, states: dict[str, RowState], options: Options, run_info: dict, refiner) -> None:
    """``RUN/reproduce/config.json``: the harness's options, each row's settings, fingerprint and
    status, the refiner as loaded, the run, versions."""
    from ..rundir import save_json
    from ..runner import jsonable, library_versions

    rows = {n: {"label": s.row.label, "settings": s.row.settings(), "fingerprint": s.fp,
                "status": s.reason or "run"} for n, s in states.items()}
    save_json(reproduce_dir(run) / "config.json", {
        "stage": "reproduce", "config": jsonable(options), "rows": rows,
        "resolved": {"refiner": refiner.resolved() if refiner is not None else None},
        "run": jsonable(run_info), "versions": library_versions()})


def reproduce(run: RunDir, samples: Sequence, *, dataset: str, split: str, root: str | None = None,
              options: Options = Options(), run_info: dict | None = None) -> Report:
    """Compute, score and tabulate every row of ``options.tables`` on ``samples`` (the whole split,
    or its ``--limit`` prefix). Raises UsageError when the run has no stage-1 dumps."""
    from ..runner import UsageError
    from . import figures, tables

    if not (run.source / "overview").is_dir():
        raise UsageError(f"{run.source} has no stage-1 dumps ({run.source / 'overview'}/): run llmattn.py "
                         "(and generate_diffusion.py) into it first")
    context = {"protocol": options.protocol, "dataset": dataset, "split": split,
               "root": str(Path(root).resolve()) if root else None}
    states = plan(run, samples, options, context)
    needs_refiner = any(r.sam for s in samples for r in _pending(states, s.sample_id))
    refiner = build_refiner(options) if needs_refiner else None
    run_pass(run, samples, states, options, refiner)
    extra = {"source_run": str(run.source.resolve())}
    finish_rows(run, samples, states, dataset, split, options, extra)
    write_config(run, states, options, run_info or {}, refiner)
    report = Report(states, len(samples))
    report.tables = tables.write_tables(run, states, options, dataset, split, samples)
    if options.figures:
        report.figures = figures.write_figures(run, samples, states, options, refiner,
                                               redraw=bool(report.recomputed), dataset=dataset)
    for name, state in states.items():
        if state.reason is None and state.failed_ids:
            log.warning("[reproduce] row %s failed on %d sample(s); see %s", name, len(state.failed_ids),
                        reproduce_dir(run) / "failures.jsonl")
    return report
