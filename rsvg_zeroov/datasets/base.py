"""The one interface every data-set loader implements.

A loader turns ``(root, split, **options)`` into a list of :class:`Sample`. Samples are small,
frozen and picklable (they travel to worker processes in the evaluator); the ground-truth mask is
decoded lazily by :meth:`Sample.load_mask` from a :class:`MaskSource`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # XYXY, pixels of the original image


class DatasetError(ValueError):
    """A malformed or missing data set. The message names the file and the problem."""


@dataclass(frozen=True)
class MaskSource:
    """Where a ground-truth mask comes from.

    kind ``"image"``: ``path`` is a PNG/TIF/...; foreground = value > 0.
    kind ``"coco"``: ``segmentation`` is a tuple of COCO parts (compressed-RLE dicts or polygons,
    stored as JSON strings so the dataclass stays hashable); the parts are OR-ed.
    """

    kind: str
    path: Path | None = None
    segmentation: tuple[str, ...] = ()

    def decode(self, height: int, width: int) -> np.ndarray:
        """Return the mask as bool (height, width)."""
        if self.kind == "image":
            return _read_mask_image(self.path, height, width)
        if self.kind == "coco":
            return _decode_coco(self.segmentation, height, width)
        raise ValueError(f"unknown mask source kind {self.kind!r}")


@dataclass(frozen=True)
class Sample:
    """One (image, expression) pair with its ground truth.

    box: XYXY float pixels of the original image, or None where the data set has none.
    width/height: the original image size in pixels.
    """

    sample_id: str
    image_path: Path
    expression: str
    width: int
    height: int
    box: Box | None = None
    mask: MaskSource | None = None
    category: str | None = None
    raw_expression: str | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def load_mask(self) -> np.ndarray | None:
        """Ground-truth mask, bool (H, W), or None for box-only data sets."""
        if self.mask is None:
            return None
        return self.mask.decode(self.height, self.width)

    def listing(self) -> dict:
        """The JSON object printed by ``python -m rsvg_zeroov.datasets`` (docs/datasets.md, "One interface")."""
        m = self.load_mask()
        return {
            "sample_id": self.sample_id,
            "image": str(self.image_path),
            "expression": self.expression,
            "width": self.width,
            "height": self.height,
            "box": None if self.box is None else [float(v) for v in self.box],
            "mask_area": None if m is None else int(m.sum()),
        }


def _read_mask_image(path: Path, height: int, width: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if path is None or not Path(path).is_file():
        raise DatasetError(f"{path}: ground-truth mask file is missing")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: unreadable mask image ({exc})") from None
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.shape != (height, width):
        raise DatasetError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, image is {width}x{height}")
    return arr > 0


def _decode_coco(parts: tuple[str, ...], height: int, width: int) -> np.ndarray:
    import json

    from pycocotools import mask as mask_utils

    out = np.zeros((height, width), dtype=bool)
    for part in parts:
        seg = json.loads(part)
        if isinstance(seg, dict):  # RLE
            rle = dict(seg)
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, height, width)
            elif isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode()
            out |= mask_utils.decode(rle).astype(bool)
        else:  # polygon(s): list of flat coordinate lists
            polys = seg if seg and isinstance(seg[0], list) else [seg]
            rles = mask_utils.frPyObjects([p for p in polys if len(p) >= 6], height, width)
            if rles:
                out |= mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return out
