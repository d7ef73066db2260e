"""Reading input images the same way in every stage: any PIL-readable file -> uint8 RGB (H, W, 3).

Grayscale, palette, RGBA (alpha dropped), 16-bit and float images are converted; an unreadable or
empty file raises :class:`ImageError` naming the file. Images up to ``MAX_PIXELS`` are accepted
(remote-sensing tiles are large); beyond that the file is refused instead of exhausting memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_PIXELS = 20000 * 20000


class ImageError(ValueError):
    """An input image that cannot be read or converted."""


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if np.issubdtype(np.asarray(arr).dtype, np.floating) and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scaled = (np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def load_rgb(path: str | Path) -> np.ndarray:
    """Return the image at ``path`` as uint8 RGB (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file is missing")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr", "1"):
                arr = np.asarray(im.convert("RGB"))
            else:  # I;16, I, F ...: scale to 8 bits first
                arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from None
    if arr.ndim == 2:
        arr = np.repeat(_to_uint8(arr)[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] != 3:
        arr = _to_uint8(arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2))
    arr = _to_uint8(arr)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{path}: image has zero size")
    return np.ascontiguousarray(arr)
