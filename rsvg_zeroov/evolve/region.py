"""Seeds and region growing on the 32 x 32 grid (docs/method.md, stage 3 step 4), vectorised.

Growing from the seeds through 8-connected positions with ``A_CS > tau`` is the same set as the
8-connected components of ``(A_CS > tau) | seeds`` that contain a seed, so one connected-component
labelling replaces a breadth-first search.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def top_k_seeds(c: np.ndarray, k: int) -> np.ndarray:
    """bool map, True where ``c`` equals one of its ``k`` largest distinct values (ties all kept).

    Exact float equality defines "distinct"; fewer than ``k`` distinct values make every position
    a seed.
    """
    if k < 1:
        raise ValueError(f"k={k}: need at least one seed value")
    distinct = np.unique(c)  # sorted ascending
    threshold = distinct[max(distinct.size - k, 0)]
    return c >= threshold


def grow_region(a_cs: np.ndarray, seeds: np.ndarray, tau: float) -> np.ndarray:
    """bool map: positions 8-connected to a seed through ``a_cs > tau`` (strict); seeds always in."""
    grow = (a_cs > tau) | seeds
    labels, _n = ndimage.label(grow, structure=EIGHT_CONNECTED)
    keep = np.unique(labels[seeds])
    keep = keep[keep > 0]
    lookup = np.zeros(labels.max() + 1, dtype=bool)
    lookup[keep] = True
    return lookup[labels]
