"""The dataset-level driver of stage 3: dumps in, ``RUN/masks``, per-sample records and
``RUN/predictions.jsonl`` out (CONTRACTS.md), with resume, per-sample failures and a timing split.

Samples are visited grouped by image, so SAM embeds each distinct image once. Without SAM every
sample is loaded, evolved and written by a small thread pool (NumPy, torch casts, zlib and file I/O
release the GIL; each thread reuses its own read buffers); with SAM, loading/evolving and writing
stay parallel and the SAM calls run in order. Each batch's records are appended to the rank's
record file once its masks are in place (see :mod:`rsvg_zeroov.evolve.records`).
"""
from __future__ import annotations

import io
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ..evaluation.iou import tight_box
from ..rundir import RunDir, atomic_write_bytes, save_mask_png
from .config import EvolveConfig
from .evolve import EvolveResult, evolve
from .interaction import ThreadReaders, load_inputs, single_threaded_kernels
from ..runner import default_workers
from .records import PREDICTION_KEYS, Records, make_record

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

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.2f}s wall / {self.cpu_seconds[k]:.2f}s CPU"
                         for k, v in self.seconds.items() if v)


def group_by_image(samples: Sequence) -> list:
    """Samples reordered so that those sharing an image are adjacent (stable within an image)."""
    order = sorted(range(len(samples)), key=lambda i: (str(samples[i].image_path), i))
    return [samples[i] for i in order]


class EvolveStage:
    """``is_done`` / ``process`` / ``finalize`` for :func:`rsvg_zeroov.runner.run_stage`.

    refiner: a :class:`~rsvg_zeroov.evolve.refine.SamRefiner` when ``config.sam`` is on, else None.
    """

    def __init__(self, run: RunDir, config: EvolveConfig, refiner=None, workers: int | None = None,
                 rank: int = 0):
        if config.sam and refiner is None:
            raise ValueError("config.sam is on but no SamRefiner was given (build one, or use sam=False)")
        self.run, self.config, self.refiner = run, config, refiner if config.sam else None
        self.fingerprint = config.fingerprint()
        # one thread per core (runner.default_workers): on 2 cores, 2 threads gave ~1.4x the
        # throughput of 8, whose contention for the GIL and caches cost more than it overlapped
        self.workers = max(1, workers if workers is not None else default_workers())
        self.timer = PhaseTimer()
        self.records = Records(run, rank)
        self._written: set[str] = set()
        self._readers = ThreadReaders(run, config)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="evolve")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_samples(self, samples: Sequence, batch_size: int = 32):
        """:func:`rsvg_zeroov.runner.run_stage` over ``samples`` grouped by image; returns its report.

        Torch kernels run single-threaded (the workers are the parallelism) unless SAM runs on the CPU.
        """
        from ..runner import run_stage

        sam_on_cpu = self.refiner is not None and self.refiner.device == "cpu"
        with single_threaded_kernels(enabled=not sam_on_cpu):
            return run_stage(STAGE, self.run, group_by_image(samples), self.is_done, self.process, batch_size)

    # ------------------------------------------------------------------------------ resume
    def read_record(self, sample) -> dict | None:
        """The sample's record under this config whose mask file is the one it describes, or None."""
        return self.records.valid(sample.sample_id, self.fingerprint)

    def is_done(self, sample) -> bool:
        """A record of this config, its mask PNG intact and of the image's size, maps if asked."""
        if self.records.valid(sample.sample_id, self.fingerprint, (sample.width, sample.height)) is None:
            return False
        return not self.config.save_maps or self.run.maps_npz(sample.sample_id).is_file()

    # ------------------------------------------------------------------------------ work
    def _load_evolve(self, sample) -> EvolveResult:
        with self.timer.phase("loading"):
            a_c, s = load_inputs(self.run, sample.sample_id, self.config, self._readers.get())
        with self.timer.phase("evolving"):
            return evolve(a_c, s, (sample.height, sample.width), self.config)

    def _refine(self, sample, result: EvolveResult) -> tuple[np.ndarray, float | None]:
        if self.refiner is None or not result.mask.any():  # an empty mask skips SAM: empty prediction
            return result.mask, None
        with self.timer.phase("refining"):
            self.refiner.use_image(sample.image_path, (sample.height, sample.width))
            return self.refiner.refine(result.mask)

    def _write(self, sample, result: EvolveResult, mask: np.ndarray, score: float | None) -> dict:
        """Mask PNG and optional maps; returns the record (appended by :meth:`process`, after)."""
        sid = sample.sample_id
        with self.timer.phase("writing"):
            # made durable once per batch, before the records are appended (Records.append)
            png = save_mask_png(self.run.mask_png(sid), mask, durable=False)
            if self.config.save_maps:
                buf = io.BytesIO()
                np.savez(buf, **result.maps())
                atomic_write_bytes(self.run.maps_npz(sid), buf.getvalue(), durable=False)
            return make_record(sid, _box(mask), self.run.mask_rel(sid), score, self.fingerprint, png)

    def _whole(self, sample) -> dict:
        result = self._load_evolve(sample)
        return self._write(sample, result, result.mask, None)

    def process(self, batch: Sequence) -> None:
        """Compute and write a batch, append the records of the samples that succeeded, then raise
        the first per-sample error (the runner retries the failed samples alone; finished ones are
        not redone)."""
        batch = [s for s in batch if s.sample_id not in self._written]
        if self.refiner is None:
            outcomes = self._parallel(self._whole, batch)
        else:
            loaded = self._parallel(self._load_evolve, batch)
            jobs, outcomes = [], []
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
            print(f"[{STAGE}] predictions.jsonl: {len(lines)} samples, {missing} without a prediction "
                  f"yet (other shards still running, or failed)", file=sys.stderr)
        return len(lines)


def _box(mask: np.ndarray) -> list[int] | None:
    """Inclusive tight XYXY pixel box of the final mask as a JSON list; None when it is empty."""
    box = tight_box(mask)
    return None if box is None else list(box)


def _raise_first(outcomes) -> None:
    for _value, err in outcomes:
        if err is not None:
            raise err


def run_evolve(run: RunDir, all_samples: Sequence, samples: Sequence, config: EvolveConfig, *,
               rank: int = 0, device: str | None = None, workers: int | None = None,
               batch_size: int = 32, refiner=None, extra: dict | None = None):
    """Stage 3 over this shard's ``samples``; ``predictions.jsonl`` is assembled over ``all_samples``.

    Builds the :class:`SamRefiner` when ``config.sam`` is on (raises ``ModelNotFound`` before any
    sample is touched if the checkpoint is unavailable). Returns the runner's ``StageReport``.
    """
    from ..runner import jsonable, write_config

    if config.sam and refiner is None:
        from .refine import SamRefiner

        refiner = SamRefiner(config.sam_checkpoint, config.sam_type, device)
    stage = EvolveStage(run, config, refiner, workers, rank)
    settings = {**jsonable(config), "fingerprint": stage.fingerprint, "workers": stage.workers,
                "batch_size": batch_size, **(extra or {})}
    if stage.refiner is not None:
        settings["sam_resolved"] = {"type": refiner.sam_type, "checkpoint": str(refiner.checkpoint),
                                    "device": device}
    write_config(run, STAGE, settings, rank)
    try:
        report = stage.run_samples(samples, batch_size)
    finally:
        stage.close()
    stage.finalize(all_samples)
    if report.done:
        print(f"[{STAGE}] {report.done / max(report.seconds, 1e-9):.1f} samples/s; summed over threads: "
              f"{stage.timer.summary()}", file=sys.stderr)
    if stage.refiner is not None:
        print(f"[{STAGE}] SAM embedded {stage.refiner.n_images} image(s)", file=sys.stderr)
    return report
