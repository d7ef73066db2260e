"""Intersections and unions of boxes and masks; the tight box of a mask; nearest-neighbour resizing.

Conventions: boxes are XYXY tuples in pixels of the original image (x right, y down). A mask is a
bool array (H, W), True = foreground. The tight box of a mask is *inclusive*: (x1, y1, x2, y2) are
the first and last foreground column and row, so a single pixel at (x, y) has box (x, y, x, y).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

Box = tuple[float, float, float, float]


def ratio(inter: float, union: float, eps: float = 0.0) -> float:
    """IoU = inter / (union + eps), and 0 when the denominator is 0 (the empty-union rule)."""
    den = union + eps
    return float(inter) / den if den > 0 else 0.0


def box_area(box: Box, plus_one: bool = False) -> float:
    """Area of an XYXY box: ``(x2-x1)*(y2-y1)``, or inclusive pixels ``(x2-x1+1)*(y2-y1+1)``."""
    one = 1.0 if plus_one else 0.0
    return max(0.0, box[2] - box[0] + one) * max(0.0, box[3] - box[1] + one)


def box_inter_union(a: Box, b: Box, plus_one: bool = False) -> tuple[float, float]:
    """(intersection, union) of two XYXY boxes under the continuous or the inclusive +1 convention."""
    one = 1.0 if plus_one else 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + one)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + one)
    inter = iw * ih
    return inter, box_area(a, plus_one) + box_area(b, plus_one) - inter


def box_iou(a: Box, b: Box, plus_one: bool = False, eps: float = 0.0) -> float:
    """IoU of two XYXY boxes (see :func:`box_inter_union`, :func:`ratio`)."""
    return ratio(*box_inter_union(a, b, plus_one), eps)


def to_grid(box: Box, width: int, height: int, grid: int) -> Box:
    """Map an XYXY pixel box to integers on a ``0..grid`` grid (VRSBench: ``v * 100 / size``).

    Values are rounded half-up, as a model writes its ``{<x1><y1><x2><y2>}`` answer; a ground-truth
    box that came from the grid (``grid_value * size / 100``) maps back to its grid values exactly.
    """
    sx, sy = grid / float(width), grid / float(height)
    vals = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    # round(..., 9) removes the float error of (g * size / grid) * grid / size before rounding half-up.
    return tuple(float(math.floor(round(v, 9) + 0.5)) for v in vals)  # type: ignore[return-value]


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive XYXY pixel box of the foreground of a bool (H, W) mask; None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def mask_inter_union(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two bool (H, W) masks; ``pred`` None = empty prediction."""
    gt_area = int(np.count_nonzero(gt))
    if pred is None:
        return 0, gt_area
    if pred.shape != gt.shape:
        raise ValueError(f"predicted mask is {pred.shape[1]}x{pred.shape[0]}, ground truth is "
                         f"{gt.shape[1]}x{gt.shape[0]}; predictions must be at the original image size")
    inter = int(np.count_nonzero(pred & gt))
    return inter, int(np.count_nonzero(pred)) + gt_area - inter


@lru_cache(maxsize=8)
def _pil_nearest_index(shape: tuple[int, int], size: tuple[int, int]):
    """Where PIL's NEAREST resize of a ``shape`` image to ``size`` reads each output pixel.

    Returns (rows int64 (H',), cols int64 (W',)) when the map is separable (it is for a resize),
    else the flat source index int64 (H', W'). Found by resizing an image of pixel indices with PIL
    itself, so the result equals PIL's to the pixel (its fixed-point coordinates included).
    """
    from PIL import Image

    h, w = shape
    probe = np.arange(h * w, dtype=np.int32).reshape(h, w)
    idx = np.asarray(Image.fromarray(probe).resize((size[1], size[0]), Image.NEAREST)).astype(np.int64)
    rows, cols = idx[:, 0] // w, idx[0, :] % w
    if np.array_equal(idx, rows[:, None] * w + cols[None, :]):
        return rows, cols
    return idx


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (H, W) mask to ``size`` = (H', W') with nearest neighbour, exactly as PIL's
    ``Image.resize(..., NEAREST)`` (what RMSIN's evaluation applies to its targets)."""
    h, w = mask.shape
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return mask
    index = _pil_nearest_index((h, w), size)
    if isinstance(index, tuple):
        return mask[index[0]][:, index[1]]
    return mask.reshape(-1)[index]
