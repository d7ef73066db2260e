"""Bilinear resizing as two-tap gathers (torch ``interpolate(mode="bilinear", align_corners=False)``
without antialiasing, in NumPy; no BLAS, so no nested kernel threads under the stage's workers).

Output index ``i`` of an axis of length ``n_out`` reads the input (length ``n_in``) at
``src = max((i + 0.5) * n_in / n_out - 0.5, 0)``: ``(1 - f) * a[i0] + f * a[i1]`` with
``i0 = floor(src)``, ``i1 = min(i0 + 1, n_in - 1)``, ``f = src - i0``. Rows first, then columns.
Upsampling a sparse 32 x 32 map only evaluates the output window its non-zero cells reach (every
other output pixel is exactly 0), which keeps binarising at 800 x 800 cheap.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np


class Taps(NamedTuple):
    """Per output index: the two input indices (int64) and their float32 weights, all (n_out,)."""

    i0: np.ndarray
    i1: np.ndarray
    w0: np.ndarray
    w1: np.ndarray


@lru_cache(maxsize=256)
def bilinear_taps(n_out: int, n_in: int) -> Taps:
    """Read-only taps of one axis resized from ``n_in`` to ``n_out`` samples (half-pixel centres)."""
    if n_out < 1 or n_in < 1:
        raise ValueError(f"bilinear resize needs positive sizes, got {n_in} -> {n_out}")
    # float32 arithmetic as torch does for float32 maps, so the weights agree to the last bit or so
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                     np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0.astype(np.float32)
    taps = Taps(i0, i1, (1 - frac).astype(np.float32), frac)
    for arr in taps:
        arr.flags.writeable = False
    return taps


def _rows(a: np.ndarray, t: Taps) -> np.ndarray:
    return a[t.i0] * t.w0[:, None] + a[t.i1] * t.w1[:, None]


def _cols(a: np.ndarray, t: Taps) -> np.ndarray:
    return a[:, t.i0] * t.w0 + a[:, t.i1] * t.w1


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (h, w) map to ``size`` = (H, W); float32 (H, W) out."""
    a = np.asarray(a, dtype=np.float32)
    return _cols(_rows(a, bilinear_taps(size[0], a.shape[0])), bilinear_taps(size[1], a.shape[1]))


def _reach(t: Taps, lo: int, hi: int) -> np.ndarray:
    """Sorted output indices whose taps read an input index in lo..hi with a non-zero weight."""
    hit = ((t.i0 >= lo) & (t.i0 <= hi) & (t.w0 > 0)) | ((t.i1 >= lo) & (t.i1 <= hi) & (t.w1 > 0))
    return np.flatnonzero(hit)


def upsample_window(a: np.ndarray, size: tuple[int, int]):
    """Bilinear upsampling of a float (h, w) map to ``size`` = (H, W), evaluated only where it can
    be non-zero.

    Returns ``(values float32 (y1 - y0, x1 - x0), (y0, x0))``: outside that window the full
    resize is exactly 0. ``None`` when ``a`` is all zero.
    """
    a = np.asarray(a, dtype=np.float32)
    rows = np.flatnonzero(a.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(a.any(axis=0))
    th, tw = bilinear_taps(size[0], a.shape[0]), bilinear_taps(size[1], a.shape[1])
    ys = _reach(th, rows[0], rows[-1])
    xs = _reach(tw, cols[0], cols[-1])
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    sub_h = Taps(*(arr[y0:y1] for arr in th))
    sub_w = Taps(*(arr[x0:x1] for arr in tw))
    return _cols(_rows(a, sub_h), sub_w), (int(y0), int(x0))


def binarise(window, size: tuple[int, int], alpha: float) -> np.ndarray:
    """bool (H, W) mask ``upsampled > alpha`` from an :func:`upsample_window` result."""
    fill = 0.0 > alpha  # the value of every pixel outside the window is exactly 0
    mask = np.full(size, fill, dtype=bool)
    if window is not None:
        values, (y0, x0) = window
        mask[y0:y0 + values.shape[0], x0:x0 + values.shape[1]] = values > alpha
    return mask
