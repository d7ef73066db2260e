"""The zero-shot baselines of the main table, computed from the same stage-1/2 dumps as the method.

``vlm-box``: the box the VLM writes in its stage-1 answer, mapped to original-image pixels with
the coordinate convention of the model the sidecar names
(:func:`rsvg_zeroov.overview.answer.box_from_sidecar`), then rasterised: the mask is every pixel
whose centre lies in the box (:func:`box_mask`), so its inclusive tight box covers the box's area.
RSREC scores that tight box, RSRES the filled box. An answer without a parseable box (or one that
is degenerate once clipped to the image) is an empty prediction.

``diffpng+vlm``: our reading of "DiffPNG w/ VLM", DiffPNG's self-attention propagation
(its zero-shot code's ``self_enhanced_fun``) with the VLM map in place of its cross-attention
locate map (:func:`diffpng_map`):

    c  = minmax(bilinear(A_C -> 32 x 32))                 (DiffPNG min-max normalises its locate map)
    P  = sum of the rows S[i] over the positions i with c_i > beta (beta = 0.4), unweighted
    P  = minmax(P)
    M  = bilinear(P -> H x W) > DIFFPNG_ALPHA (0.3, DiffPNG's default threshold)

``S`` is the run's 32-grid self-attention (the mean of the configured resolutions, the same
matrix the method uses), where DiffPNG works on its 64 grid; DiffPNG's own SAM step (matching
SAM's "everything" proposals by overlap) is not used: the ``+sam`` rows prompt the refiner with the
mask's tight box, as the method does. No position above beta, or a constant sum, gives an empty
mask (DiffPNG would divide by zero).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..evolve.config import GRID
from ..evolve.resample import binarise, resize_bilinear, upsample_window

DIFFPNG_BETA = 0.4  # positions whose VLM value exceeds beta are propagated (DiffPNG --beta)
DIFFPNG_ALPHA = 0.3  # the propagated map is binarised above this (DiffPNG --alpha)


def box_mask(box: Sequence[float] | None, size: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the pixels ``(x, y)`` whose centre ``(x + 0.5, y + 0.5)`` lies in the continuous
    XYXY ``box`` (half-open: ``x1 <= x + 0.5 < x2``), so ``[10, 20, 50, 60]`` covers columns
    10..49 and rows 20..59; all False for None or a box that covers no pixel centre."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    if box is None:
        return mask
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, c1 = max(math.ceil(x1 - 0.5), 0), min(math.ceil(x2 - 0.5), w)  # columns c0 .. c1 - 1
    r0, r1 = max(math.ceil(y1 - 0.5), 0), min(math.ceil(y2 - 0.5), h)
    if c0 < c1 and r0 < r1:
        mask[r0:r1, c0:c1] = True
    return mask


def vlm_box(meta: dict) -> list[float] | None:
    """The stage-1 answer's box in original pixels (continuous XYXY), or None when it has none.

    Raises ValueError naming the missing key when the sidecar cannot be mapped (no image size)."""
    from ..overview.answer import box_from_sidecar

    if "image_size" not in meta:
        raise ValueError("the stage-1 sidecar has no 'image_size'; the answer's box cannot be mapped")
    return box_from_sidecar(meta)


def minmax(x: np.ndarray) -> np.ndarray | None:
    """``(x - min) / (max - min)`` in float32; None for a constant (or empty) array."""
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return None
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return None
    return (x - lo) / (hi - lo)


def diffpng_map(a_c: np.ndarray, s: np.ndarray, beta: float = DIFFPNG_BETA) -> np.ndarray | None:
    """DiffPNG's propagated map float32 (32, 32) in [0, 1], or None (nothing to propagate).

    a_c: float (gh, gw) fused VLM map; s: float32 (1024, 1024), rows = queries."""
    c = minmax(resize_bilinear(a_c, (GRID, GRID)))
    if c is None:
        return None
    chosen = np.flatnonzero(c.reshape(-1) > beta)
    if chosen.size == 0:
        return None
    summed = minmax(s[chosen].sum(axis=0, dtype=np.float32))
    return None if summed is None else summed.reshape(GRID, GRID)


def diffpng_mask(a_c: np.ndarray, s: np.ndarray, size: tuple[int, int], beta: float = DIFFPNG_BETA,
                 alpha: float = DIFFPNG_ALPHA) -> np.ndarray:
    """bool (H, W): :func:`diffpng_map` upsampled bilinearly (torch, as stage 3) and ``> alpha``."""
    prop = diffpng_map(a_c, s, beta)
    if prop is None:
        return np.zeros(size, dtype=bool)
    return binarise(upsample_window(prop, size), size, alpha)
