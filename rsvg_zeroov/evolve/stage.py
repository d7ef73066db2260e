"""The dataset-level driver of stage 3: dumps in, ``RUN/masks``, per-sample records and
``RUN/predictions.jsonl`` out (CONTRACTS.md), with resume, per-sample failures and a timing split.

Samples are visited grouped by image, so SAM embeds each distinct image once. Without SAM every
sample is loaded, evolved and written by a small thread pool (NumPy, zlib and file I/O release the
GIL); with SAM, loading/evolving and writing stay parallel and the SAM calls run in order.
"""
from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ..rundir import DumpError, RunDir, atomic_write_bytes, load_json, save_json, save_mask_png
from ..evaluation.iou import tight_box
from .config import EvolveConfig
from .evolve import EvolveResult, evolve
from .interaction import load_inputs, single_threaded_kernels

STAGE = "evolve"
PREDICTION_KEYS = ("sample_id", "box", "mask", "sam_score")
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


def default_workers() -> int:
    """Worker threads: more than the cores, because each sample's two atomic writes wait on fsync
    (the file system commits concurrent fsyncs together); capped at 8."""
    return min(8, 4 * (os.cpu_count() or 1))


def group_by_image(samples: Sequence) -> list:
    """Samples reordered so that those sharing an image are adjacent (stable within an image)."""
    order = sorted(range(len(samples)), key=lambda i: (str(samples[i].image_path), i))
    return [samples[i] for i in order]


class EvolveStage:
    """``is_done`` / ``process`` / ``finalize`` for :func:`rsvg_zeroov.runner.run_stage`.

    refiner: a :class:`~rsvg_zeroov.evolve.refine.SamRefiner` when ``config.sam`` is on, else None.
    """

    def __init__(self, run: RunDir, config: EvolveConfig, refiner=None, workers: int | None = None):
        if config.sam and refiner is None:
            raise ValueError("config.sam is on but no SamRefiner was given (build one, or use sam=False)")
        self.run, self.config, self.refiner = run, config, refiner if config.sam else None
        self.fingerprint = config.fingerprint()
        self.workers = max(1, workers if workers is not None else default_workers())
        self.timer = PhaseTimer()
        self._written: set[str] = set()
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
        """The sample's valid record under this config, or None (missing, torn, stale, no mask)."""
        sid = sample.sample_id
        try:
            rec = load_json(self.run.evolve_record(sid))
        except DumpError:
            return None
        if rec.get("sample_id") != sid or rec.get("config") != self.fingerprint:
            return None
        if any(k not in rec for k in PREDICTION_KEYS) or rec["mask"] != self.run.mask_rel(sid):
            return None
        return rec

    def is_done(self, sample) -> bool:
        """Mask PNG of the right size, maps (if asked) and a record of this config all exist."""
        if self.read_record(sample) is None:
            return False
        if self.config.save_maps and not self.run.maps_npz(sample.sample_id).is_file():
            return False
        return _png_size(self.run.mask_png(sample.sample_id)) == (sample.width, sample.height)

    # ------------------------------------------------------------------------------ work
    def _load_evolve(self, sample) -> EvolveResult:
        with self.timer.phase("loading"):
            a_c, s = load_inputs(self.run, sample.sample_id, self.config)
        with self.timer.phase("evolving"):
            return evolve(a_c, s, (sample.height, sample.width), self.config)

    def _refine(self, sample, result: EvolveResult) -> tuple[np.ndarray, float | None]:
        if self.refiner is None or not result.mask.any():  # an empty mask skips SAM: empty prediction
            return result.mask, None
        with self.timer.phase("refining"):
            self.refiner.use_image(sample.image_path, (sample.height, sample.width))
            return self.refiner.refine(result.mask)

    def _write(self, sample, result: EvolveResult, mask: np.ndarray, score: float | None) -> None:
        """Mask PNG, optional maps, then the record last (the record marks the sample done)."""
        sid = sample.sample_id
        with self.timer.phase("writing"):
            save_mask_png(self.run.mask_png(sid), mask)
            if self.config.save_maps:
                buf = io.BytesIO()
                np.savez(buf, **result.maps())
                atomic_write_bytes(self.run.maps_npz(sid), buf.getvalue())
            record = {"sample_id": sid, "box": _box(mask), "mask": self.run.mask_rel(sid),
                      "sam_score": score, "config": self.fingerprint}
            save_json(self.run.evolve_record(sid), record)
        self._written.add(sid)

    def _whole(self, sample) -> None:
        result = self._load_evolve(sample)
        self._write(sample, result, result.mask, None)

    def process(self, batch: Sequence) -> None:
        """Compute and write a batch; raises the first per-sample error after the others finish
        (the runner then retries the failed samples alone; finished ones are not redone)."""
        batch = [s for s in batch if s.sample_id not in self._written]
        if self.refiner is None:
            _raise_first(self._parallel(self._whole, batch))
            return
        loaded = self._parallel(self._load_evolve, batch)
        jobs, errors = [], []
        for sample, (result, err) in zip(batch, loaded):
            if err is not None:
                errors.append(err)
                continue
            try:
                jobs.append((sample, result, *self._refine(sample, result)))
            except Exception as exc:  # noqa: BLE001 - reported after the rest of the batch is written
                errors.append(exc)
        written = self._parallel(lambda job: self._write(*job), jobs)
        _raise_first([(None, e) for e in errors] + written)

    def _parallel(self, fn, items: Sequence) -> list[tuple[object, BaseException | None]]:
        futures = [self._pool.submit(fn, item) for item in items]
        wait(futures)
        return [(f.result(), None) if f.exception() is None else (None, f.exception()) for f in futures]

    # ------------------------------------------------------------------------------ the run's file
    def finalize(self, all_samples: Sequence) -> int:
        """Write ``RUN/predictions.jsonl`` (atomically) from every sample of the run (all shards)
        that has a valid record, in the run's sample order. Returns the number of lines."""
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


def _png_size(path) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None if the file is missing or not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


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
    stage = EvolveStage(run, config, refiner, workers)
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
