"""The dataset-level driver of stage 3: dumps in, ``RUN/masks``, per-sample records and
``RUN/predictions.jsonl`` out (docs/run-directory.md), with resume, per-sample failures and a timing
split. :class:`EvolveStage` is a :class:`rsvg_zeroov.runner.Stage`.

Samples are visited grouped by image, so a refiner embeds each distinct image once. Without a
refiner every sample is loaded, evolved and written by a pool of worker processes (forked from
this one, where the platform can fork; see :mod:`.workers`), else by threads; with a refiner,
loading/evolving and writing run in threads (the refiner's model stays in this process) and the
refiner calls run in order. Each batch's records are appended to the rank's record file by this
process once its masks are in place (see :mod:`rsvg_zeroov.rundir.evolve`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ..evaluation.iou import tight_box
from ..rundir import RunDir, atomic_write_bytes
from ..rundir.evolve import PREDICTION_KEYS, Records, make_record, write_mask, write_maps
from ..runner import default_workers
from .config import EvolveConfig
from .evolve import EvolveResult, evolve
from .interaction import ThreadReaders, load_inputs, single_threaded_kernels
from .refine import build_refiner, image_reader, refine_result
from .workers import WorkerProcesses, use_processes

log = logging.getLogger(__name__)
STAGE = "evolve"
PHASES = ("loading", "evolving", "refining", "writing")


class PhaseTimer:
    """Per phase: wall seconds and CPU seconds, each summed over worker threads (thread-safe).

    Wall time includes waiting (fsync, the GIL, other processes); CPU time is the work itself.
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.cpu_seconds = dict.fromkeys(PHASES, 0.0)
        self._lock = threading.Lock()

    @contextmanager
    def phase(self, name: str):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            with self._lock:
                self.seconds[name] += wall
                self.cpu_seconds[name] += cpu

    def add(self, seconds: dict, cpu_seconds: dict) -> None:
        """Add another timer's sums (a worker process's)."""
        with self._lock:
            for name in PHASES:
                self.seconds[name] += seconds.get(name, 0.0)
                self.cpu_seconds[name] += cpu_seconds.get(name, 0.0)

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.2f}s wall / {self.cpu_seconds[k]:.2f}s CPU"
                         for k, v in self.seconds.items() if v)


def group_by_image(samples: Sequence) -> list:
    """Samples reordered so that those sharing an image are adjacent (stable within an image)."""
    order = sorted(range(len(samples)), key=lambda i: (str(samples[i].image_path), i))
    return [samples[i] for i in order]


class EvolveStage:
    """Stage 3 as a :class:`rsvg_zeroov.runner.Stage` (``settings`` / ``setup`` / ``is_done`` /
    ``process`` / ``finalize``).

    refiner: a built :class:`~rsvg_zeroov.models.refiners.Refiner`, or None to build the one of
    ``config.refiner`` in :meth:`setup` (only if some sample is not done) on ``device``.
    processes: without a refiner, whether ``workers`` (> 1) worker processes do the work instead of
    threads; None (default) = where the platform can fork. Outputs are the same either way.
    """

    name = STAGE

    def __init__(self, run: RunDir, config: EvolveConfig, refiner=None, workers: int | None = None,
                 rank: int = 0, *, device: str | None = None, batch_size: int = 32, processes: bool | None = None):
        self.run, self.config, self.rank, self.device = run, config, rank, device
        self.refiner = refiner if config.refiner is not None else None
        self.batch_size = batch_size
        self.fingerprint = config.fingerprint()
        if run.reads_elsewhere:  # records made from other dumps (another --from) are not this run's
            key = f"{self.fingerprint} {run.source.resolve()}".encode()
            self.fingerprint = hashlib.sha1(key).hexdigest()[:12]
        # one worker per core (runner.default_workers). Threads: on 2 cores, 2 gave ~1.4x the
        # throughput of 8 (GIL and cache contention); processes (BENCHMARKS.md) scale past that.
        self.workers = max(1, workers if workers is not None else default_workers())
        self.processes = use_processes(processes, self.workers, config.refiner)
        self._processes = None  # the WorkerProcesses, started by the first batch
        self.timer = PhaseTimer()
        self.records = Records(run, rank)
        self._written: set[str] = set()
        self._geo: dict = {}  # image path -> georeferenced (--georef)
        self._readers = ThreadReaders(run, config)
        self._read_image = image_reader(config.fidelity)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="evolve")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._processes is not None:
            self._processes.close()
            self._processes = None

    # ------------------------------------------------------------------------------ Stage protocol
    def settings(self) -> dict:
        resolved = {"fingerprint": self.fingerprint, "workers": self.workers, "batch_size": self.batch_size,
                    "worker_kind": "processes" if self.processes else "threads"}
        if self.refiner is not None:
            resolved["refiner"] = self.refiner.resolved()
        return {"config": self.config, "resolved": resolved}

    def setup(self) -> None:
        """Check that the stage-1/2 dumps are there at all, then build the refiner."""
        from ..rundir.evolve import missing_upstream
        from ..runner import UsageError

        missing = missing_upstream(self.run, self.config.use_dm)
        if missing:
            raise UsageError(missing)
        if self.config.refiner is not None and self.refiner is None:
            self.refiner = build_refiner(self.config, self.device)

    def read_record(self, sample) -> dict | None:
        """The sample's record under this config whose mask file is the one it describes, or None."""
        return self.records.valid(sample.sample_id, self.fingerprint)

    def is_done(self, sample) -> bool:
        """A record of this config, its mask PNG intact and of the image's size, maps if asked."""
        if self.records.valid(sample.sample_id, self.fingerprint, (sample.height, sample.width)) is None:
            return False
        if self.config.save_maps and not self.run.maps_npz(sample.sample_id).is_file():
            return False
        return not self.config.georef or self._georef_done(sample)

    def _georef_done(self, sample) -> bool:
        return self.run.mask_tif(sample.sample_id).is_file() or not self._georeferenced(sample.image_path)

    def _georeferenced(self, path) -> bool:
        """Whether ``path`` is georeferenced, opened once per image (its samples share the answer)."""
        if path not in self._geo:
            from ..geo import is_geotiff

            self._geo[path] = is_geotiff(path)
        return self._geo[path]

    # ------------------------------------------------------------------------------ work
    def _load_evolve(self, sample) -> EvolveResult:
        with self.timer.phase("loading"):
            a_c, s = load_inputs(self.run, sample.sample_id, self.config, self._readers.get())
        with self.timer.phase("evolving"):
            return evolve(a_c, s, (sample.height, sample.width), self.config)

    def _refine(self, sample, result: EvolveResult) -> tuple[np.ndarray, float | None]:
        if self.refiner is None or not result.mask.any():  # an empty mask skips refinement: empty prediction
            return result.mask, None
        size = (sample.height, sample.width)
        with self.timer.phase("refining"):
            self.refiner.use_image(sample.image_path, size, self._read_image)
            return refine_result(self.refiner, result, self.config, size)

    def _write(self, sample, result: EvolveResult, mask: np.ndarray, score: float | None) -> dict:
        """Mask PNG and optional maps; returns the record (appended by :meth:`process`, after)."""
        sid = sample.sample_id
        with self.timer.phase("writing"):
            # made durable once per batch, before the records are appended (Records.append)
            png = write_mask(self.run, sid, mask)
            if self.config.save_maps:
                write_maps(self.run, sid, result.maps())
            if self.config.georef and self._georeferenced(sample.image_path):
                from ..geo import write_mask_like

                write_mask_like(self.run.mask_tif(sid), mask, sample.image_path)
            return make_record(sid, _box(mask), self.run.mask_rel(sid), score, self.fingerprint, png)

    def _whole(self, sample) -> dict:
        result = self._load_evolve(sample)
        return self._write(sample, result, result.mask, None)

    def process(self, batch: Sequence) -> None:
        """Compute and write a batch, append the records of the samples that succeeded, then raise
        the first per-sample error (the runner retries the failed samples alone; finished ones are
        not redone). The workers (processes or threads) run torch kernels single-threaded (they
        are the parallelism); a refiner on the CPU gets torch's thread pool for its own calls."""
        batch = [s for s in batch if s.sample_id not in self._written]
        if self.refiner is None and self.processes:
            if self._processes is None:
                self._processes = WorkerProcesses(self, self.workers)
            outcomes = self._processes.whole(batch)
        elif self.refiner is None:
            with single_threaded_kernels():
                outcomes = self._parallel(self._whole, batch)
        else:
            with single_threaded_kernels():
                loaded = self._parallel(self._load_evolve, batch)
            jobs, outcomes = [], []
            with single_threaded_kernels(enabled=not self.refiner.cpu_threads):
                for sample, (result, err) in zip(batch, loaded):
                    if err is not None:
                        outcomes.append((None, err))
                        continue
                    try:
                        jobs.append((sample, result, *self._refine(sample, result)))
                    except Exception as exc:  # noqa: BLE001 - reported after the rest of the batch is written
                        outcomes.append((None, exc))
            outcomes += self._parallel(lambda job: self._write(*job), jobs)
        done = [rec for rec, err in outcomes if err is None]
        with self.timer.phase("writing"):
            self.records.append(done)
        self._written.update(rec["sample_id"] for rec in done)
        _raise_first(outcomes)

    def _parallel(self, fn, items: Sequence) -> list[tuple[object, BaseException | None]]:
        futures = [self._pool.submit(fn, item) for item in items]
        wait(futures)
        return [(f.result(), None) if f.exception() is None else (None, f.exception()) for f in futures]

    # ------------------------------------------------------------------------------ the run's file
    def finalize(self, all_samples: Sequence) -> int:
        """Write ``RUN/predictions.jsonl`` (atomically) from every sample of the run (all shards)
        that has a valid record, in the run's sample order. Returns the number of lines.

        Ranks finalize one at a time (a lock on the run), each after its own records are appended,
        so the last one to finish writes the complete file whatever the order.
        """
        from ..runner import locked

        with locked(self.run, "predictions"):
            self.records.reload()  # the other ranks' records too
            lines = []
            for sample in all_samples:
                rec = self.read_record(sample)
                if rec is not None:
                    lines.append(json.dumps({k: rec[k] for k in PREDICTION_KEYS}) + "\n")
            atomic_write_bytes(self.run.predictions, "".join(lines).encode())
        missing = len(all_samples) - len(lines)
        if missing:
            log.info("[%s] predictions.jsonl: %d samples, %d without a prediction yet (other shards "
                     "still running, or failed)", STAGE, len(lines), missing)
        return len(lines)

    def run_samples(self, samples: Sequence, *, all_samples: Sequence | None = None,
                    run_info: dict | None = None):
        """:func:`rsvg_zeroov.runner.run_stage` over ``samples`` grouped by image (``all_samples``:
        the whole run, for ``predictions.jsonl``); returns its report."""
        from ..runner import run_stage

        return run_stage(self, self.run, group_by_image(samples), rank=self.rank, run_info=run_info,
                         all_samples=all_samples if all_samples is not None else samples)


def _box(mask: np.ndarray) -> list[int] | None:
    """Inclusive tight XYXY pixel box of the final mask as a JSON list; None when it is empty."""
    box = tight_box(mask)
    return None if box is None else list(box)


def _raise_first(outcomes) -> None:
    for _value, err in outcomes:
        if err is not None:
            raise err


def _default_run_info(run: RunDir) -> dict:
    return {"source_run": str(run.source) if run.reads_elsewhere else None}


def run_evolve(run: RunDir, all_samples: Sequence, samples: Sequence, config: EvolveConfig, *,
               rank: int = 0, device: str | None = None, workers: int | None = None,
               batch_size: int = 32, refiner=None, run_info: dict | None = None, processes: bool | None = None):
    """Stage 3 over this shard's ``samples``; ``predictions.jsonl`` is assembled over ``all_samples``.

    The refiner of ``config.refiner`` is built once some sample needs it (ModelNotFound before any
    sample is touched if its weights are unavailable). ``run_info``: the run part of
    ``RUN/evolve_config.json`` (:func:`rsvg_zeroov.runner.run_info`); ``processes``: see
    :class:`EvolveStage`. Returns the ``StageReport``.
    """
    stage = EvolveStage(run, config, refiner, workers, rank, device=device, batch_size=batch_size,
                        processes=processes)
    try:
        report = stage.run_samples(samples, all_samples=all_samples,
                                   run_info=run_info if run_info is not None else _default_run_info(run))
    finally:
        stage.close()
    if report.done:
        log.info("[%s] %.1f samples/s; summed over workers: %s", STAGE,
                 report.done / max(report.seconds, 1e-9), stage.timer.summary())
    if stage.refiner is not None:
        log.info("[%s] the refiner (%s) embedded %d image(s)", STAGE, stage.refiner.key, stage.refiner.n_images)
    return report
