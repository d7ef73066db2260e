"""Per-sample scores and their aggregates (mIoU, oIoU, Pr@t) under one protocol.

RSREC scores the tight box of the predicted mask against the ground-truth box; RSRES scores the
masks themselves. A sample without a prediction counts as IoU 0 (:func:`missing_score`): its
intersection is 0 and its union is the ground truth's area, so it also lowers oIoU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .iou import Box, box_area, box_inter_union, mask_inter_union, ratio, resize_nearest, tight_box, to_grid
from .protocols import SWEEP, Protocol, get_protocol, pr_key


@dataclass(frozen=True)
class SampleScore:
    """One sample's counts. Box counts are in pixels (or grid cells under ``vrsbench``); mask
    counts in pixels at the protocol's mask resolution. ``mask_*`` are None for box-only data.

    missing: no prediction at all (IoU 0). empty: a prediction whose mask (or box) is empty.
    """

    box_inter: float
    box_union: float
    box_iou: float
    mask_inter: int | None = None
    mask_union: int | None = None
    mask_iou: float | None = None
    missing: bool = False
    empty: bool = False


def _box_counts(pbox: Box | None, gt_box: Box | None, protocol: Protocol,
                size: tuple[int, int] | None) -> tuple[float, float, float]:
    """(inter, union, iou) of a predicted and a ground-truth box; ``pbox`` None scores IoU 0."""
    plus_one = protocol.box_convention != "continuous"
    if protocol.box_grid is not None:
        if size is None:
            raise ValueError(f"protocol {protocol.name} maps boxes to a grid: the image size is needed")
        h, w = size
        pbox = None if pbox is None else to_grid(pbox, w, h, protocol.box_grid)
        gt_box = None if gt_box is None else to_grid(gt_box, w, h, protocol.box_grid)
    if gt_box is None:  # no ground-truth box and an empty ground-truth mask: nothing can overlap
        return 0.0, (0.0 if pbox is None else box_area(pbox, plus_one)), 0.0
    if pbox is None:
        return 0.0, box_area(gt_box, plus_one), 0.0
    inter, union = box_inter_union(pbox, gt_box, plus_one)
    return inter, union, ratio(inter, union, protocol.union_eps)


def _mask_counts(pred: np.ndarray | None, gt: np.ndarray | None,
                 protocol: Protocol) -> tuple[int | None, int | None, float | None]:
    if gt is None:
        return None, None, None
    if protocol.mask_size is not None:
        gt = resize_nearest(gt, protocol.mask_size)
        pred = None if pred is None else resize_nearest(pred, protocol.mask_size)
    inter, union = mask_inter_union(pred, gt)
    return inter, union, ratio(inter, union, protocol.union_eps)


def _size(image_size, *masks) -> tuple[int, int] | None:
    if image_size is not None:
        return tuple(image_size)  # type: ignore[return-value]
    for m in masks:
        if m is not None:
            return m.shape
    return None


def score_sample(pred_mask: np.ndarray | None, gt_mask: np.ndarray | None, gt_box: Box | None,
                 protocol: Protocol | str, *, pred_box: Box | None = None,
                 image_size: tuple[int, int] | None = None) -> SampleScore:
    """Score one prediction.

    pred_mask: bool (H, W) at the original image size, or None for a box-only prediction
        (then ``pred_box``, XYXY pixels, is the predicted box; both None = an empty prediction).
    gt_mask: bool (H, W) or None (box-only data set). gt_box: XYXY pixels, or None (then the
        inclusive tight box of ``gt_mask``). image_size: (H, W); needed for the ``vrsbench`` grid
        when no mask is given.
    An empty prediction gets ``protocol.empty_pred_box`` for RSREC (zeroov: the origin pixel), or IoU 0.
    """
    protocol = get_protocol(protocol)
    size = _size(image_size, pred_mask, gt_mask)
    if (pred_mask is not None and protocol.mask_size is None and tuple(size) == pred_mask.shape
            and (gt_mask is None or gt_mask.shape == pred_mask.shape)):
        # the mask inside its tight box, scored as every mask at full resolution is (score_window)
        tight = tight_box(pred_mask)
        if tight is None:
            return score_window(pred_mask[:0, :0], (0, 0), size, gt_mask, gt_box, protocol)
        x1, y1, x2, y2 = tight
        return score_window(pred_mask[y1:y2 + 1, x1:x2 + 1], (y1, x1), size, gt_mask, gt_box, protocol)
    if gt_box is None and gt_mask is not None:
        gt_box = tight_box(gt_mask)
    pbox = tight_box(pred_mask) if pred_mask is not None else pred_box
    empty = pbox is None
    if empty:
        pbox = protocol.empty_pred_box
    b_inter, b_union, b_iou = _box_counts(pbox, gt_box, protocol, size)
    m_inter, m_union, m_iou = _mask_counts(pred_mask, gt_mask, protocol)
    return SampleScore(b_inter, b_union, b_iou, m_inter, m_union, m_iou, missing=False, empty=empty)


def score_window(part: np.ndarray, offset: tuple[int, int], size: tuple[int, int], gt_mask: np.ndarray | None,
                 gt_box: Box | None, protocol: Protocol | str, *, gt_area: int | None = None) -> SampleScore:
    """:func:`score_sample` of the bool ``size`` = (H, W) mask that is ``part`` at ``offset`` =
    (y0, x0) and False everywhere else (:func:`rsvg_zeroov.evolve.resample.binarise_local`), the
    same score without building the whole mask. ``gt_area``: ``count_nonzero(gt_mask)``, if known
    (several predictions scored against one ground truth). :func:`score_sample` itself scores a
    full-resolution mask through this function (its part inside its tight box), so the evaluator,
    the sweep and the table harness count masks in one place."""
    protocol = get_protocol(protocol)
    (y0, x0), (h, w), size = offset, part.shape, tuple(size)
    if y0 < 0 or x0 < 0 or y0 + h > size[0] or x0 + w > size[1]:
        raise ValueError(f"a {h}x{w} part at {offset} does not fit a {size} mask")
    if protocol.mask_size is not None or (gt_mask is not None and gt_mask.shape != size):
        full = np.zeros(size, dtype=bool)  # resized for scoring, or refused: score_sample does both
        full[y0:y0 + h, x0:x0 + w] = part
        return score_sample(full, gt_mask, gt_box, protocol, image_size=size)
    if gt_box is None and gt_mask is not None:
        gt_box = tight_box(gt_mask)
    box = tight_box(part)
    empty = box is None
    pbox = protocol.empty_pred_box if empty else (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)
    b_inter, b_union, b_iou = _box_counts(pbox, gt_box, protocol, size)
    if gt_mask is None:
        return SampleScore(b_inter, b_union, b_iou, empty=empty)
    area = int(np.count_nonzero(gt_mask)) if gt_area is None else int(gt_area)
    inter = int(np.count_nonzero(part & gt_mask[y0:y0 + h, x0:x0 + w]))
    union = int(np.count_nonzero(part)) + area - inter
    return SampleScore(b_inter, b_union, b_iou, inter, union, ratio(inter, union, protocol.union_eps), empty=empty)


def missing_score(gt_mask: np.ndarray | None, gt_box: Box | None, protocol: Protocol | str, *,
                  image_size: tuple[int, int] | None = None) -> SampleScore:
    """The score of a sample with no prediction: IoU 0, union = the ground truth's area."""
    protocol = get_protocol(protocol)
    size = _size(image_size, gt_mask)
    if gt_box is None and gt_mask is not None:
        gt_box = tight_box(gt_mask)
    b_inter, b_union, _ = _box_counts(None, gt_box, protocol, size)
    m_inter, m_union, m_iou = _mask_counts(None, gt_mask, protocol)
    return SampleScore(b_inter, b_union, 0.0, m_inter, m_union, None if m_iou is None else 0.0, missing=True)


# ------------------------------------------------------------------------------------ aggregates
def aggregate(ious: Sequence[float], inters: Sequence[float], unions: Sequence[float],
              protocol: Protocol | str) -> dict[str, float]:
    """{"mIoU", "oIoU", "Pr@0.3", ..., "Pr@0.9"} in percent (0 for an empty list)."""
    protocol = get_protocol(protocol)
    arr = np.asarray(ious, dtype=np.float64)
    out = {"mIoU": 100.0 * float(arr.mean()) if arr.size else 0.0,
           "oIoU": 100.0 * ratio(float(np.sum(inters, dtype=np.float64)), float(np.sum(unions, dtype=np.float64)))}
    for t in SWEEP:
        hits = protocol.hit(arr, t)
        out[pr_key(t)] = 100.0 * float(hits.mean()) if arr.size else 0.0
    return out


def summarize(scores: Sequence[SampleScore], protocol: Protocol | str) -> dict[str, dict[str, float]]:
    """{"rsrec": {...}, "rsres": {...}} in percent; "rsres" only when some sample has a mask score.

    RSRES aggregates over the samples that have a ground-truth mask.
    """
    out = {"rsrec": aggregate([s.box_iou for s in scores], [s.box_inter for s in scores],
                              [s.box_union for s in scores], protocol)}
    masked = [s for s in scores if s.mask_iou is not None]
    if masked:
        out["rsres"] = aggregate([s.mask_iou for s in masked], [s.mask_inter for s in masked],
                                 [s.mask_union for s in masked], protocol)
    return out


def per_category(scores: Sequence[SampleScore], categories: Iterable[str | None],
                 protocol: Protocol | str) -> dict[str, dict]:
    """{category: {"n": int, "rsrec": {...}, "rsres"?: {...}}}, sorted by name; {} without categories.

    ``categories`` runs parallel to ``scores``; samples whose category is None are left out.
    """
    groups: dict[str, list[SampleScore]] = {}
    for s, c in zip(scores, categories, strict=True):
        if c is not None:
            groups.setdefault(str(c), []).append(s)
    return {c: {"n": len(g), **summarize(g, protocol)} for c, g in sorted(groups.items())}
