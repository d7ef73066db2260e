"""Layer fusion of the Overview maps (METHOD.md section 1): ``A_C = sum_l w_l * minmax(a_l)``."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def minmax(x: np.ndarray) -> np.ndarray:
    """``(x - min x) / (max x - min x)`` as float32; a constant map (no information) becomes all zeros."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0.0:
        return np.zeros(x.shape, np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def fuse(per_layer: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """per_layer float (n_layers, gh, gw) raw a_l -> float32 (gh, gw) A_C, values in [0, sum(weights)]."""
    per_layer = np.asarray(per_layer)
    if per_layer.ndim != 3 or per_layer.shape[0] != len(weights):
        raise ValueError(f"fuse: per-layer maps of shape {per_layer.shape} do not match {len(weights)} weights")
    out = np.zeros(per_layer.shape[1:], np.float64)
    for a, w in zip(per_layer, weights):
        out += float(w) * minmax(a)
    return out.astype(np.float32)


def stack_dump(fused: np.ndarray, per_layer: np.ndarray) -> np.ndarray:
    """The on-disk layout: float32 (1 + n_layers, gh, gw) with [0] = A_C and [1:] = the raw a_l."""
    return np.concatenate([fused[None], per_layer], axis=0).astype(np.float32, copy=False)
