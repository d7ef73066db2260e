"""Synthetic data sets in every on-disk format of docs/datasets.md (for tests, demos and smoke runs).

``write_dataset(fmt, out, n)`` writes ``n`` samples of coloured objects on textured ground
(scenes.py) in format ``fmt`` and returns the path to pass as ``--root``. Images are
``size x (3 * size // 4)`` pixels (width x height; deliberately not square). Deterministic: the
same arguments give the same bytes.
"""
from __future__ import annotations

from pathlib import Path

from .writers import WRITERS, SyntheticDataset

FORMATS = tuple(WRITERS)

# synthetic format -> (--dataset, extra listing options)
DATASET_OF_FORMAT = {
    "rrsisd": ("rrsisd", {}),
    "rrsisd-zeroov-json": ("rrsisd", {"format": "zeroov-json"}),
    "risbench": ("risbench", {}),
    "dior_rsvg": ("dior_rsvg", {}),
    "opt_rsvg": ("opt_rsvg", {}),
    "refsegrs": ("refsegrs", {}),
    "vrsbench": ("vrsbench", {}),
    "jsonl": ("jsonl", {}),
}


def image_shape(size: int) -> tuple[int, int]:
    """(height, width) of the synthetic images for ``size`` (``size`` wide, 3/4 of it high)."""
    return 3 * size // 4, size


def build_dataset(fmt: str, out, n: int, seed: int = 0, size: int = 256, split: str = "test") -> SyntheticDataset:
    """Write the data set and return its root and the listing every sample should produce."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown synthetic format {fmt!r}; choose from {', '.join(WRITERS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    height, width = image_shape(size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return WRITERS[fmt](out, n, seed, width, height, split)


def write_dataset(fmt: str, out, n: int, seed: int = 0, size: int = 256, split: str = "test") -> Path:
    """Write ``n`` synthetic samples of ``split`` in format ``fmt`` under ``out``; return the --root."""
    return build_dataset(fmt, out, n, seed, size, split).root


__all__ = ["DATASET_OF_FORMAT", "FORMATS", "SyntheticDataset", "build_dataset", "image_shape", "write_dataset"]
