"""Bringing self-attention maps of other resolutions onto the 32 grid (docs/method.md, stage 2).

A map at resolution r is a query-by-key matrix ``S`` float32 ``(r*r, r*r)``: row ``y*r + x`` is the
distribution of query (y, x) over the keys, in the same row-major order. Every function here maps
such a matrix to ``(32*32, 32*32)`` = ``(1024, 1024)`` (generally: to another resolution).

- "released": the matrix resized as if it were an image (bilinear, ``align_corners=False``,
  no antialiasing). For 64 -> 32 each output entry is the mean of the 2x2 matrix entries at rows
  and columns 4i+1, 4i+2 of the flattened index: spatial layout is scrambled and rows sum to about
  1/4. This is what the published numbers used.
- "corrected": a spatial operation on both grids. Down (64 -> 32): queries averaged and keys summed
  over each 2x2 block. Up (16 -> 32): each query row copied to its 4 children and each key's
  probability split equally over its 4 children. Rows keep summing to 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..fidelity import FIDELITIES  # noqa: F401 - re-exported



def _side(matrix: torch.Tensor) -> int:
    n = matrix.shape[-1]
    r = int(round(n ** 0.5))
    if matrix.ndim != 2 or matrix.shape[0] != n or r * r != n:
        raise ValueError(f"expected a square (r*r, r*r) attention matrix, got shape {tuple(matrix.shape)}")
    return r


def resize_flat(matrix: torch.Tensor, r_out: int) -> torch.Tensor:
    """Released: bilinear resize of the (r*r, r*r) matrix to (r_out*r_out, r_out*r_out) as an image."""
    _side(matrix)
    size = r_out * r_out
    out = F.interpolate(matrix[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    return out[0, 0]


def pool_grid(matrix: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Corrected down: (r*r, r*r) -> ((r/f)^2, (r/f)^2), query mean and key sum over f x f blocks."""
    r = _side(matrix)
    if r % factor:
        raise ValueError(f"resolution {r} is not divisible by the pooling factor {factor}")
    m = r // factor
    grid = matrix.float().reshape(m, factor, m, factor, m, factor, m, factor)
    return grid.mean(dim=(1, 3)).sum(dim=(3, 5)).reshape(m * m, m * m)


def split_grid(matrix: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Corrected up: (r*r, r*r) -> ((r*f)^2, (r*f)^2), query rows copied, key mass split over f x f children."""
    r = _side(matrix)
    grid = matrix.float().reshape(r, r, r, r)
    for dim in range(4):
        grid = grid.repeat_interleave(factor, dim=dim)
    m = r * factor
    return (grid / (factor * factor)).reshape(m * m, m * m)


def to_grid(matrix: torch.Tensor, r_out: int, fidelity: str) -> torch.Tensor:
    """Map a (r*r, r*r) matrix onto the r_out grid with the ``fidelity`` ("released" | "corrected") rule."""
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity={fidelity!r}; choose from {', '.join(FIDELITIES)}")
    r = _side(matrix)
    if fidelity == "released":
        return resize_flat(matrix, r_out)
    if r >= r_out:
        if r % r_out:
            raise ValueError(f"cannot pool resolution {r} onto {r_out}: not an integer factor")
        return pool_grid(matrix, r // r_out) if r > r_out else matrix.float()
    if r_out % r:
        raise ValueError(f"cannot split resolution {r} onto {r_out}: not an integer factor")
    return split_grid(matrix, r_out // r)
