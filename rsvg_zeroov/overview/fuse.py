"""Layer fusion of the Overview maps (docs/method.md, stage 1): ``A_C = sum_l w_l * minmax(a_l)``.

Two arithmetics, equal to 1 float32 ulp: :func:`fuse64` is the released script's (float64
``(x - min) / max(x - min)`` per layer, weighted sum in float64), used under released fidelity (the
default) and by :func:`released_heatmap` (the released one-image file, float64); :func:`fuse`
rounds each layer's min-max to float32 before the float64 sum, the arithmetic of earlier versions of
this project, kept under ``--fidelity corrected``. The run directory stores A_C as float32 either way
(the released stage 3 casts the float64 map to float32 before using it, so nothing is lost).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def minmax64(x: np.ndarray) -> np.ndarray:
    """float64 ``(x - min x) / max(x - min x)``; a constant map (no information) becomes all zeros
    (the released division would give NaN there)."""
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.min()
    top = float(shifted.max())
    return shifted / top if top > 0.0 else np.zeros(x.shape, np.float64)


def minmax(x: np.ndarray) -> np.ndarray:
    """:func:`minmax64` as float32."""
    return minmax64(x).astype(np.float32)


def fuse64(per_layer: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """per_layer float (n_layers, gh, gw) raw a_l -> float64 (gh, gw) A_C, values in [0, sum(weights)]."""
    return _weighted(per_layer, weights, minmax64)


def _weighted(per_layer: np.ndarray, weights: Sequence[float], norm) -> np.ndarray:
    per_layer = np.asarray(per_layer)
    if per_layer.ndim != 3 or per_layer.shape[0] != len(weights):
        raise ValueError(f"fuse: per-layer maps of shape {per_layer.shape} do not match {len(weights)} weights")
    out = np.zeros(per_layer.shape[1:], np.float64)
    for a, w in zip(per_layer, weights):
        out += float(w) * norm(a)
    return out


def fuse(per_layer: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """per_layer float (n_layers, gh, gw) raw a_l -> float32 (gh, gw) A_C = sum_l w_l minmax(a_l),
    each minmax rounded to float32 before the float64 sum (see the module docstring)."""
    return _weighted(per_layer, weights, minmax).astype(np.float32)


def stack_dump(fused: np.ndarray, per_layer: np.ndarray) -> np.ndarray:
    """The on-disk layout: float32 (1 + n_layers, gh, gw) with [0] = A_C and [1:] = the raw a_l."""
    return np.concatenate([fused[None], per_layer], axis=0).astype(np.float32, copy=False)


def released_heatmap(per_layer: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """float64 (1 + n_layers, gh, gw): [0] = A_C in float64, [1:] = the a_l, as the released script saves."""
    per_layer = np.asarray(per_layer, dtype=np.float64)
    return np.concatenate([fuse64(per_layer, weights)[None], per_layer], axis=0)
