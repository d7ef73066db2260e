"""Bilinear resizing with torch's ``interpolate(mode="bilinear", align_corners=False)`` in float32,
the operation the released stage 3 uses (docs/method.md, "Arithmetic order that matters").

A re-implementation of the same formula differs from torch by one ulp on many outputs, which a
nearly flat map amplifies through ``c - min`` into flipped pixels at alpha, so every resize of
stage 3 calls torch itself, on the whole map: torch's CPU kernel uses fused multiply-adds in its
vectorised loop and plain ones in the tail, so a resize split into passes or cropped to a window
is not the same to the bit (measured: ~1 % of sparse maps differ). One 32 x 32 -> 800 x 800 call
costs ~0.7 ms on one core.
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


def upsample_window(a: np.ndarray, size: tuple[int, int]):
    """Bilinear upsampling of a float (h, w) map to ``size`` = (H, W) for :func:`binarise`.

    Returns ``(values float32 (H, W), (0, 0))``, :func:`resize_bilinear` of ``a`` and its offset in
    the image, or ``None`` when ``a`` is all zero (so is every output pixel).
    """
    a = np.asarray(a, dtype=np.float32)
    if not a.any():
        return None
    return resize_bilinear(a, size), (0, 0)


def binarise(window, size: tuple[int, int], alpha: float) -> np.ndarray:
    """bool (H, W) mask ``upsampled > alpha`` from an :func:`upsample_window` result."""
    fill = 0.0 > alpha  # the value of every pixel outside the window is exactly 0
    mask = np.full(size, fill, dtype=bool)
    if window is not None:
        values, (y0, x0) = window
        mask[y0:y0 + values.shape[0], x0:x0 + values.shape[1]] = values > alpha
    return mask
