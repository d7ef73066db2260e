"""Reading input images the same way in every stage: any PIL-readable file -> uint8 RGB (H, W, 3).

Grayscale, palette, RGBA (alpha dropped), 16-bit and float images are converted; an unreadable or
empty file raises :class:`ImageError` naming the file. Images up to ``MAX_PIXELS`` are accepted
(remote-sensing tiles are large); beyond that the file is refused instead of exhausting memory.

A TIFF that PIL's readings cannot decode faithfully (data other than 8 bits, more than 4 bands,
georeferenced, or not openable by PIL: :func:`needs_raster_reader`) is read by every reader here
through :func:`rsvg_zeroov.raster.read_rgb` instead (band choice, percentile stretch, nodata and
alpha pixels 0), so every stage sees the same RGB image; JPEG, PNG and other files go through the
released readings unchanged.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAX_PIXELS = 20000 * 20000
TIFF_SUFFIXES = (".tif", ".tiff")


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


def _routed(path: str | Path) -> np.ndarray | None:
    """uint8 RGB of a raster the released readings cannot decode (module doc), else None."""
    if not needs_raster_reader(path):
        return None
    from .raster import read_rgb

    return read_rgb(path)


def needs_raster_reader(path: str | os.PathLike) -> bool:
    """True for a TIFF that PIL's released readers cannot decode faithfully: data other than 8 bits,
    more than 4 bands, georeferencing, or a file PIL cannot open at all. Other files, and a TIFF
    that rasterio cannot open, go to the released readers (and their error messages)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        stat = path.stat()
    except (OSError, ValueError):  # missing, unreadable, or a name no file can have (a NUL byte)
        return False
    if stat.st_size == 0:
        return False
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _ROUTED:
        if len(_ROUTED) > 4096:
            _ROUTED.clear()
        _ROUTED[key] = _probe(path)
    return _ROUTED[key]


_ROUTED: dict = {}  # (path, mtime, size) -> needs_raster_reader's answer


def _probe(path: Path) -> bool:
    """needs_raster_reader's answer for a TIFF, from its header (rasterio, then PIL)."""
    from rasterio.errors import RasterioIOError

    from .raster import _open

    try:
        with _open(path) as src:
            if src.count > 4 or any(d != "uint8" for d in src.dtypes):
                return True
            if src.crs is not None or not src.transform.is_identity:
                return True
    except RasterioIOError:
        return False
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return False
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return True


def load_rgb(path: str | Path) -> np.ndarray:
    """Return the image at ``path`` as uint8 RGB (H, W, 3) (PIL's decoding; alpha dropped)."""
    routed = _routed(path)
    if routed is not None:
        return routed
    with _open_checked(path) as im:
        try:
            if im.mode in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr", "1"):
                arr = np.asarray(im.convert("RGB"))
            else:  # I;16, I, F ...: scale to 8 bits first
                arr = np.asarray(im)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{path}: unreadable image ({exc})") from None
    if arr.ndim == 2:
        arr = np.repeat(_to_uint8(arr)[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] != 3:
        arr = _to_uint8(arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2))
    arr = _to_uint8(arr)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{path}: image has zero size")
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------ per-stage readers (docs/method.md)
MIN_SIDE = 28  # the VLM's smallest input: one 28-pixel cell (qwen_vl_utils' factor)


def _open_checked(path: str | Path):
    """``PIL.Image`` of ``path`` (lazy), or ImageError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file is missing")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from None


def read_for_vlm(path: str | Path):
    """The image as stage 1's released script hands it to the VLM: a PIL RGB image.

    The released script passes the path to ``qwen_vl_utils``, whose ``to_rgb`` composites RGBA onto
    white and converts every other mode with ``convert("RGB")`` (so LA loses its alpha, and 16-bit
    data is clipped at 255 by PIL). Stage 1 itself hands the path to ``qwen_vl_utils``; this reader
    gives the same image to callers that need it in memory.
    """
    from PIL import Image
    from qwen_vl_utils.vision_process import to_rgb

    routed = _routed(path)
    if routed is not None:
        return Image.fromarray(routed)

    with _open_checked(path) as im:
        try:
            im.load()
            return to_rgb(im)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{path}: unreadable image ({exc})") from None


def read_for_diffusion(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) as stage 2's released ``load_512`` reads the file: ``np.array(Image.open)``.

    Defined by the release: RGB as it is, grey repeated to three channels. Defined by us, where the
    released code would crash or feed garbage: RGBA/LA keep their colour channels (alpha dropped, no
    compositing), palette, CMYK and YCbCr images are converted to RGB, 16-bit images are scaled to 8
    bits as OpenCV scales them (value >> 8), other integer and float images by their range.
    """
    routed = _routed(path)
    if routed is not None:
        return routed
    with _open_checked(path) as im:
        try:
            sixteen = im.mode.startswith("I;16")
            if im.mode in ("P", "CMYK", "YCbCr", "1"):
                im = im.convert("RGBA" if im.mode == "P" and "transparency" in im.info else "RGB")
            arr = np.array(im)
        except (OSError, ValueError) as exc:
            raise ImageError(f"{path}: unreadable image ({exc})") from None
    if sixteen or arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[..., :1], 3, axis=2)
    else:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def read_for_sam(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB as the released stage 3 reads the file for SAM: ``cv2.imread`` in colour
    mode (alpha dropped, grey to three channels, 16-bit scaled to 8 bits) then BGR -> RGB."""
    import cv2

    routed = _routed(path)
    if routed is not None:
        return routed
    _open_checked(path).close()  # the same missing / empty / unreadable messages as the other readers
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"{path}: OpenCV cannot decode this image")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def image_hw(path: str | Path) -> tuple[int, int]:
    """(H, W) of the image file, from its header (``datasets.files.image_hw`` is the data sets'
    reader, with a per-run cache and deferred errors)."""
    if needs_raster_reader(path):
        from .raster import raster_hw

        return raster_hw(path)
    with _open_checked(path) as im:
        return im.height, im.width


def check_image(path: str | Path, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """(H, W) of a readable image whose sides are at least ``min_side`` pixels, else ImageError.

    Run before any model loads, so a bad input costs nothing."""
    h, w = image_hw(path)
    if min(h, w) < min_side:
        raise ImageError(f"{path}: image is {w}x{h} pixels; the VLM needs at least {min_side} pixels "
                         f"on each side")
    return h, w


def check_expression(text: str | None) -> str:
    """The referring expression, or ValueError when it is missing, empty or whitespace only."""
    if text is None or not str(text).strip():
        raise ValueError("the referring expression is empty; give the phrase to ground "
                         "(e.g. --text \"the storage tank left of the road\")")
    return str(text)
