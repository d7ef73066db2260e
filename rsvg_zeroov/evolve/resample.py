"""Bilinear resizing with torch's ``interpolate(mode="bilinear", align_corners=False)`` in float32,
the operation the released stage 3 uses (docs/method.md, "Arithmetic order that matters").

A re-implementation of the same formula differs from torch by one ulp on many outputs, which a
nearly flat map amplifies through ``c - min`` into flipped pixels at alpha, so every resize of
stage 3 calls torch, and every mask pixel is decided as the single 2-D call decides it.

Upsampling a sparse 32 x 32 map to H x W evaluates only the columns its non-zero cells reach, in
two torch calls (the width, then the height). That is the same bilinear formula in another
rounding order (torch's vectorised loop fuses multiply-adds, its tail does not): each value is
within a few ulps of the 2-D call's, far below :data:`MARGIN`. :func:`binarise` decides a pixel
from it only when it is more than ``MARGIN`` away from alpha; if any pixel is closer, the whole
map is resized by the 2-D call and thresholded (measured: 0.7 ms for 800 x 800 on one core, against
~0.2 ms for the window). A map whose non-zero cells span more than half the width goes to the 2-D
call directly: its window would cost about as much, and more often than not end in the fallback.
"""
from __future__ import annotations

import numpy as np


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (h, w) map (cast to float32 first) to ``size`` = (H, W); float32 (H, W) out."""
    import torch
    import torch.nn.functional as F

    if min(size) < 1 or min(np.shape(a)) < 1:
        raise ValueError(f"bilinear resize needs positive sizes, got {np.shape(a)} -> {tuple(size)}")
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)[0, 0].numpy()


# Each path rounds at most 6 times (3 per level: two products and a sum, fused or not) on values
# no larger than the map's maximum m, with the same weights: |two-pass - 2-D| <= 12 * 2**-24 * m
# = 7.2e-7 * m, inside MARGIN * m.
MARGIN = 1e-6


class Window(tuple):
    """``(values float32 (H, x1 - x0), (y0, x0))`` of :func:`upsample_window`; ``exact`` says the
    values are the 2-D call's, else :meth:`exact_window` computes those (once)."""

    def __new__(cls, values: np.ndarray, offset: tuple[int, int], source: np.ndarray, size, exact: bool):
        win = super().__new__(cls, (values, offset))
        win.source, win.size, win.exact = source, tuple(size), exact
        win.scale = float(source.max()) if source.size else 0.0
        return win

    def exact_window(self) -> "Window":
        if not self.exact and getattr(self, "_exact", None) is None:
            self._exact = Window(resize_bilinear(self.source, self.size), (0, 0), self.source, self.size, True)
        return self if self.exact else self._exact


def upsample_window(a: np.ndarray, size: tuple[int, int]) -> Window | None:
    """Bilinear upsampling of a float (h, w) map to ``size`` = (H, W) for :func:`binarise`.

    Returns a :class:`Window`: ``(values float32 (H, x1 - x0), (0, x0))``, outside which every
    output pixel is exactly 0; ``None`` when ``a`` is all zero. Maps with negative or non-finite
    values get the 2-D call's values directly.
    """
    a = np.asarray(a, dtype=np.float32)
    if not a.any():
        return None
    if not np.isfinite(a).all() or a.min() < 0:  # zero columns are only certain for non-negative maps
        return Window(resize_bilinear(a, size), (0, 0), a, size, True)
    (h, w), (out_h, out_w) = a.shape, size
    cols_in = np.flatnonzero(a.any(axis=0))
    if (cols_in[-1] - cols_in[0] + 1) * 2 > w:  # a window over most of the width saves nothing:
        return Window(resize_bilinear(a, size), (0, 0), a, size, True)  # the 2-D call at once
    rows = np.flatnonzero(a.any(axis=1))
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    across = np.zeros((h, out_w), dtype=np.float32)  # rows without a non-zero cell stay exactly 0
    across[y0:y1] = resize_bilinear(a[y0:y1], (y1 - y0, out_w))
    cols = np.flatnonzero(across.any(axis=0))
    if cols.size == 0:  # downsampling can miss every non-zero cell
        return Window(resize_bilinear(a, size), (0, 0), a, size, True)
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return Window(resize_bilinear(across[:, x0:x1], (out_h, x1 - x0)), (0, x0), a, size, False)


def binarise(window: Window | None, size: tuple[int, int], alpha: float) -> np.ndarray:
    """bool (H, W) mask ``upsampled > alpha`` from an :func:`upsample_window` result, pixel for pixel
    the mask of torch's 2-D resize (see the module docstring)."""
    mask = np.full(size, 0.0 > alpha, dtype=bool)  # every pixel outside the window is exactly 0
    if window is None:
        return mask
    values, (y0, x0) = window
    if window.exact:
        above = values > alpha
    else:
        margin = MARGIN * max(window.scale, 1e-30)
        above = values > alpha + margin  # = values > alpha when no value lies within the margin
        if abs(alpha) <= margin or not np.array_equal(above, values > alpha - margin):
            window = window.exact_window()
            mask[:] = 0.0 > alpha
            values, (y0, x0) = window
            above = values > alpha
    mask[y0:y0 + values.shape[0], x0:x0 + values.shape[1]] = above
    return mask
