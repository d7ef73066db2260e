"""Evaluate a run directory against a data set split: parallel decoding, scoring, metrics.json.

Reads only ``RUN/predictions.jsonl`` and the masks it names (``RUN/masks/<id>.png``). Masks are
decoded and scored in worker processes (chunks of samples; a :class:`Sample` is small and
picklable); only the per-sample counts (:class:`SampleScore`) come back to the parent.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from ..datasets.base import DatasetError, Sample
from ..rundir import RunDir, save_json
from ..runner import default_workers
from .predictions import EvalInputError, Prediction, decode_gray8_png, load_pred_mask, read_predictions
from .protocols import Protocol, get_protocol
from .scoring import SampleScore, missing_score, per_category, score_sample, summarize

log = logging.getLogger(__name__)



def load_gt_mask(sample: Sample) -> np.ndarray | None:
    """Ground-truth mask bool (H, W) or None; equals ``sample.load_mask()``.

    Plain 8-bit grayscale PNG masks are decoded with OpenCV (the fast path); every other source
    (TIFF, palette or colour PNG, COCO RLE/polygons) goes through ``Sample.load_mask()``.
    """
    src = sample.mask
    if src is not None and src.kind == "image" and src.path is not None and str(src.path).lower().endswith(".png"):
        try:
            arr = decode_gray8_png(Path(src.path).read_bytes())
        except OSError:
            arr = None  # load_mask() below raises the data set's own error naming the file
        if arr is not None:
            if arr.shape != (sample.height, sample.width):
                raise DatasetError(f"{src.path}: mask is {arr.shape[1]}x{arr.shape[0]}, "
                                   f"image is {sample.width}x{sample.height}")
            return arr > 0
    return sample.load_mask()


def score_one(job: tuple[Sample, Prediction | None], protocol: Protocol) -> SampleScore:
    """Decode one sample's masks and score it (runs in a worker process)."""
    sample, pred = job
    size = (sample.height, sample.width)
    try:
        gt = load_gt_mask(sample)
        if pred is None:
            return missing_score(gt, sample.box, protocol, image_size=size)
        pm = load_pred_mask(pred.mask_path, size) if pred.mask_path is not None else None
        return score_sample(pm, gt, sample.box, protocol, pred_box=pred.box, image_size=size)
    except EvalInputError:
        raise
    except ValueError as exc:  # DatasetError included: name the sample as well as the file
        raise EvalInputError(f"sample {sample.sample_id}: {exc}") from None


def score_all(jobs: Sequence[tuple[Sample, Prediction | None]], protocol: Protocol,
              workers: int | None = None) -> list[SampleScore]:
    """Score every job, in order; ``workers`` processes (None = one per core, 1 = in this process)."""
    workers = default_workers() if workers is None else max(1, int(workers))
    fn = partial(score_one, protocol=protocol)
    if workers == 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    chunksize = max(1, min(64, len(jobs) // (workers * 8)))
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    if ctx is not None:  # forked workers inherit the decoder instead of each importing it
        import cv2  # noqa: F401
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        return list(pool.map(fn, jobs, chunksize=chunksize))


@dataclass(frozen=True)
class EvalResult:
    """Scores of the evaluated samples (in data-set order) and what was not scored normally.

    missing_ids: evaluated samples without a prediction. ignored: predictions of known samples
    outside the evaluated ones (after --limit).
    """

    protocol: Protocol
    sample_ids: tuple[str, ...]
    categories: tuple[str | None, ...]
    scores: tuple[SampleScore, ...]
    missing_ids: tuple[str, ...]
    ignored: int

    def metrics(self, dataset: str, split: str) -> dict:
        """The metrics.json object (docs/run-directory.md) plus extra keys."""
        out = {"protocol": self.protocol.name, "dataset": dataset, "split": split,
               "n": len(self.scores), "missing": len(self.missing_ids),
               **summarize(self.scores, self.protocol)}
        n_masked = sum(s.mask_iou is not None for s in self.scores)
        if "rsres" in out and n_masked != len(self.scores):
            out["rsres_n"] = n_masked
        out["empty_predictions"] = sum(s.empty for s in self.scores)
        out["missing_ids"] = list(self.missing_ids)
        if self.ignored:
            out["ignored_predictions"] = self.ignored
        cats = per_category(self.scores, self.categories, self.protocol)
        if cats:
            out["per_category"] = cats
        return out


def evaluate(samples: Sequence[Sample], run: RunDir | str | Path, protocol: Protocol | str | None = None,
             workers: int | None = None, known_ids: Collection[str] | None = None) -> EvalResult:
    """Score the predictions of ``run`` on ``samples``.

    known_ids: every sample id of the split (default: those of ``samples``); a prediction for an id
    outside it is an :class:`EvalInputError`, one for a known but not evaluated id is ignored.
    """
    protocol = get_protocol(protocol)
    run = run if isinstance(run, RunDir) else RunDir(run)
    ids = [s.sample_id for s in samples]
    known = set(ids) if known_ids is None else set(known_ids) | set(ids)
    preds = read_predictions(run, known)
    jobs = [(s, preds.get(s.sample_id)) for s in samples]
    scores = score_all(jobs, protocol, workers)
    missing = tuple(s.sample_id for s, p in jobs if p is None)
    ignored = len(set(preds) - set(ids))
    return EvalResult(protocol, tuple(ids), tuple(s.category for s in samples), tuple(scores), missing, ignored)


def write_metrics(run: RunDir | str | Path, metrics: dict) -> Path:
    """Write ``RUN/metrics.json`` atomically; return its path."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    save_json(run.metrics, metrics)
    return run.metrics


def warn_missing(result: EvalResult, limit: int = 5) -> None:
    """One stderr line when some samples had no prediction (they count as IoU 0)."""
    if result.missing_ids:
        head = ", ".join(result.missing_ids[:limit]) + (" ..." if len(result.missing_ids) > limit else "")
        log.warning("warning: %d of %d samples have no prediction and count as IoU 0: %s",
                    len(result.missing_ids), len(result.scores), head)
