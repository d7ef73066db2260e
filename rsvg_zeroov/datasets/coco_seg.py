"""Validating COCO ``segmentation`` values before pycocotools decodes them.

pycocotools' C decoder trusts its input: a compressed-RLE string with a bad character or a run
total other than H*W makes it read or write past its buffers. :func:`coco_parts` checks every part
(compressed RLE: characters, terminated runs, non-negative counts summing to H*W; uncompressed RLE:
the same on the list; polygons: an even number >= 6 of finite coordinates near the image) and
returns them as JSON strings for :class:`~rsvg_zeroov.datasets.base.MaskSource` ``kind="coco"``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import DatasetError
from .files import expect, number

_MAX_RUN = 2 ** 32 - 1  # pycocotools stores counts as uint32


def coco_parts(seg: Any, height: int, width: int, path: Path, where: str) -> tuple[str, ...]:
    """Validated parts of a COCO segmentation (a list of RLE dicts / flat polygons, or one RLE dict)."""
    if isinstance(seg, dict):
        seg = [seg]
    expect(isinstance(seg, list) and len(seg) > 0, path,
           f"{where} must be a non-empty list of RLE dicts or polygons, got {_short(seg)}")
    parts = []
    for i, part in enumerate(seg):
        if isinstance(part, dict):
            parts.append(json.dumps(_rle(part, height, width, path, f"{where}[{i}]")))
        else:
            parts.append(json.dumps(_polygon(part, height, width, path, f"{where}[{i}]")))
    return tuple(parts)


def _rle(part: dict, height: int, width: int, path: Path, where: str) -> dict:
    size = part.get("size")
    expect(size == [height, width] or size == (height, width), path,
           f"{where}: RLE size {size!r} does not match the image size [height, width] = [{height}, {width}]")
    counts = part.get("counts")
    if isinstance(counts, str):
        runs = compressed_counts(counts)
        expect(runs is not None, path, f"{where}: malformed compressed RLE counts string")
        total = int(runs.sum())
    else:
        ok = isinstance(counts, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= _MAX_RUN for c in counts)
        expect(ok, path, f"{where}: RLE counts must be a compressed string or a list of integers in [0, 2^32)")
        total = sum(counts)
    expect(total == height * width, path,
           f"{where}: RLE runs cover {total} pixels, the image has {height}x{width} = {height * width}")
    return {"size": [height, width], "counts": counts}


def compressed_counts(s: str) -> np.ndarray | None:
    """Run lengths (int64) of a COCO compressed-RLE string, or None if it is malformed.

    The format (pycocotools ``rleFrString``): each run is a little-endian group of 5-bit digits,
    character = digit + 48 with bit 0x20 = "more digits follow" and bit 0x10 of the last digit the
    sign; runs from the fourth on are stored as the difference to the run two places before.
    """
    if not s:
        return np.zeros(0, np.int64)
    try:
        c = np.frombuffer(s.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return None
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return None
    last = (c & 0x20) == 0  # a run's final character
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:  # > 35 bits: far beyond any real run
        return None
    k = np.arange(c.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    values = values - np.where(negative, np.left_shift(1, 5 * lengths), 0)
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # run i >= 3 adds run i - 2
    runs[2::2] = np.cumsum(values[2::2])
    if runs.size and (runs.min() < 0 or runs.max() > _MAX_RUN):
        return None
    return runs


def _polygon(part: Any, height: int, width: int, path: Path, where: str) -> list:
    ok = (isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part))
    expect(ok, path, f"{where}: a polygon must be a flat list of an even number (>= 6) of coordinates, "
           f"got {_short(part)}")
    xy = np.asarray([number(v, path, where) for v in part], dtype=np.float64).reshape(-1, 2)
    inside = (np.isfinite(xy).all() and xy[:, 0].min() >= -width and xy[:, 0].max() <= 2 * width
              and xy[:, 1].min() >= -height and xy[:, 1].max() <= 2 * height)
    expect(bool(inside), path, f"{where}: polygon coordinates lie far outside the {width}x{height} image")
    return part


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


__all__ = ["DatasetError", "coco_parts", "compressed_counts"]
