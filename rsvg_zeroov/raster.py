"""Rasters of any size, band layout and data type read as uint8 RGB, by windows (GDAL via rasterio).

A :class:`Raster` never holds a large scene at full resolution: the whole scene is read reduced
(:meth:`Raster.overview`), a part of it at native resolution (:meth:`Raster.window`), each by strips
of rows, with GDAL's block cache capped (``GDAL_CACHEMAX`` = :data:`CACHE_MB` MB unless the
environment sets it). Peak memory is about the output array plus one strip, whatever the scene size.

**Bands** (``RasterOptions.bands``, ``--bands``, 1-based): one band (shown grey) or three (R, G, B).
Default: the bands whose colour interpretation is red, green and blue; else a raster with one band
besides an alpha band (a palette band is expanded through its colour table); else bands 1, 2, 3
(said in a log line). Two bands without alpha, complex data or an alpha band asked for are refused
(:class:`RasterError`, naming ``--bands``).

**Validity**: a pixel is valid where any chosen band is valid under GDAL's mask (the nodata value,
an alpha band or an internal mask) and, for float data, finite. Invalid pixels are 0 in the RGB
image, are left out of the stretch and, downstream (:mod:`rsvg_zeroov.scene`), out of every mask.

**8 bits**: 8-bit bands are taken as stored. Any other type is stretched per band, linearly, from
its ``stretch`` percentiles (default 2 and 98) to 0 and 255 (clipped, rounded). The percentiles are
those of the band's valid pixels in the overview read: the whole raster when it fits the pixel
budget, else the scene reduced to the budget; every later window uses the same values, so colours
agree between the overview and the windows. ``--stretch 0,100`` is a min-max stretch.

**Reduction**: a reduced read by an integer factor ``f`` gives each ``f x f`` block the mean of its
valid pixels (a block with none is invalid); palette rasters take each block's first pixel. A file's
internal overviews (a cloud-optimised GeoTIFF's) are used when they are at most as coarse as needed.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cli
from .images import MAX_PIXELS, TIFF_SUFFIXES, ImageError, needs_raster_reader  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

CACHE_MB = 128  # GDAL block cache for our reads (its default is 5 % of the machine's memory)
STRIP_ROWS = 128  # at most this many rows per read (a multiple of the block height where blocks are shorter)
STRETCH_SAMPLES = 4_000_000  # at most this many values per band enter the percentiles (even stride)
STRETCH_BUDGET = 1024 * 1024  # overview size used to fit the stretch when only windows are read


class RasterError(ImageError):
    """A raster that cannot be read or shown as RGB (the message names the file and the fix)."""


def _pair(text: str) -> tuple[float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stretch expects two percentiles LO,HI like 2,98, got {text!r}") from None


@dataclass(frozen=True)
class RasterOptions:
    """How a raster becomes uint8 RGB (module doc). bands: 1-based band numbers, 1 or 3 of them,
    None = the default choice; stretch: (low, high) percentiles, 0 <= low < high <= 100."""

    bands: tuple[int, ...] | None = field(default=None, metadata=cli.flag(
        "--bands", "raster bands shown as R,G,B (1-based; one band = grey); default the raster's "
        "red/green/blue colour interpretation, else bands 1,2,3", metavar="R,G,B"))
    stretch: tuple[float, ...] = field(default=(2.0, 98.0), metadata=cli.flag(
        "--stretch", "percentiles of the valid pixels mapped to 0 and 255 for non-8-bit rasters",
        metavar="LO,HI", parse=_pair))

    def __post_init__(self) -> None:
        if self.bands is not None:
            bands = tuple(int(b) for b in self.bands)
            if len(bands) not in (1, 3) or min(bands) < 1:
                raise ValueError(f"--bands {','.join(map(str, self.bands))}: give one band (grey) or three "
                                 "(R,G,B), numbered from 1")
            object.__setattr__(self, "bands", bands)
        stretch = tuple(float(v) for v in self.stretch)
        if len(stretch) != 2 or not 0 <= stretch[0] < stretch[1] <= 100:
            raise ValueError(f"--stretch {self.stretch}: give two percentiles LO,HI with 0 <= LO < HI <= 100")
        object.__setattr__(self, "stretch", stretch)


def _gdal_env():
    import rasterio

    return rasterio.Env(**({} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": CACHE_MB}))


def _open(path, **kwargs):
    """``rasterio.open`` without its warning for a TIFF without georeferencing (ours is clearer)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, **kwargs)


def reduction_factor(height: int, width: int, budget: int | None) -> int:
    """The smallest integer ``f >= 1`` with ``ceil(height/f) * ceil(width/f) <= budget`` (1 if None)."""
    if budget is None or height * width <= budget:
        return 1
    f = max(1, math.floor(math.sqrt(height * width / budget)))
    while math.ceil(height / f) * math.ceil(width / f) > budget:
        f += 1
    return f


@dataclass(frozen=True, eq=False)
class RasterImage:
    """One read: ``rgb`` uint8 (h, w, 3), ``valid`` bool (h, w); ``window`` (col_off, row_off, width,
    height) in scene pixels; ``factor`` (fy, fx): scene pixels per output pixel (1.0 at native
    resolution; an output pixel ``(i, j)`` covers scene rows ``[i*fy, (i+1)*fy)`` of the window)."""

    rgb: np.ndarray
    valid: np.ndarray
    window: tuple[int, int, int, int]
    factor: tuple[float, float]


class Raster:
    """An open raster (module doc). Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike, options: RasterOptions | None = None):
        from rasterio.errors import RasterioIOError

        from .geo import GeoRef

        self.path, self.options = Path(path), options or RasterOptions()
        try:
            self._src = _open(self.path)
        except RasterioIOError as exc:
            raise RasterError(f"{self.path}: unreadable raster ({str(exc).splitlines()[0][:200]})") from None
        src = self._src
        self.height, self.width = int(src.height), int(src.width)
        try:
            self.indexes, self.lut = self._choose_bands()
        except BaseException:  # a refused band layout: no handle left open
            src.close()
            raise
        self.dtype = np.dtype(src.dtypes[self.indexes[0] - 1])
        crs = src.crs.to_wkt() if src.crs else None
        self.georeferenced = src.crs is not None
        self.georef = GeoRef(src.transform, crs, self.width, self.height)
        self._flags = [src.mask_flag_enums[i - 1] for i in self.indexes]
        self._nodata = [src.nodatavals[i - 1] for i in self.indexes]
        self.has_invalid = self.dtype.kind == "f" or not all(_all_valid(f) for f in self._flags)
        self.stretch: tuple[np.ndarray, np.ndarray] | None = None  # per-band (low, high)

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "Raster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ band layout
    def _choose_bands(self) -> tuple[tuple[int, ...], np.ndarray | None]:
        from rasterio.enums import ColorInterp

        src, wanted = self._src, self.options.bands
        interp = list(src.colorinterp)
        alpha = {i + 1 for i, c in enumerate(interp) if c == ColorInterp.alpha}
        names = ", ".join(c.name for c in interp)
        if np.dtype(src.dtypes[0]).kind == "c":
            raise RasterError(f"{self.path}: complex-valued data ({src.dtypes[0]}) cannot be shown as RGB; "
                              "convert it to amplitude first")
        if wanted is not None:
            bad = [b for b in wanted if b > src.count or b in alpha]
            if bad:
                raise RasterError(f"{self.path}: --bands {','.join(map(str, wanted))}: the raster has "
                                  f"{src.count} band(s) ({names}); band {bad[0]} is "
                                  f"{'its alpha band' if bad[0] in alpha else 'not one of them'}")
            indexes = wanted
        elif all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            indexes = tuple(interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
        else:
            data = [i for i in range(1, src.count + 1) if i not in alpha]
            if len(data) == 1:
                indexes = (data[0],)
            elif len(data) >= 3:
                indexes = tuple(data[:3])
                log.info("%s: %d bands (%s) without an RGB colour interpretation: bands %s shown as R,G,B "
                         "(choose others with --bands)", self.path.name, src.count, names,
                         ",".join(map(str, indexes)))
            else:
                raise RasterError(f"{self.path}: {src.count} bands ({names}) is not a layout that can be shown "
                                  "as RGB; choose --bands B (one band, shown grey) or --bands R,G,B")
        lut = None
        if len(indexes) == 1 and interp[indexes[0] - 1] == ColorInterp.palette:
            cmap = src.colormap(indexes[0])
            lut = np.zeros((max(256, max(cmap) + 1), 3), np.uint8)
            for value, rgba in cmap.items():
                lut[value] = rgba[:3]
        return tuple(indexes), lut

    def describe(self) -> dict:
        """What was read, for records: bands, data type, stretch (None for 8-bit), palette, nodata."""
        stretch = None if self.stretch is None else {
            "percentiles": list(self.options.stretch), "low": [float(v) for v in self.stretch[0]],
            "high": [float(v) for v in self.stretch[1]]}
        return {"bands": list(self.indexes), "dtype": str(self.dtype), "palette": self.lut is not None,
                "stretch": stretch, "nodata": [None if v is None else float(v) for v in self._nodata],
                "masked": self.has_invalid}

    # ------------------------------------------------------------------------------ reading
    def overview(self, budget: int | None, desc: str = "reading overview") -> RasterImage:
        """The whole scene reduced to at most ``budget`` pixels (None: at full resolution), from the
        file's internal overviews where they help; fits the stretch when not yet fitted."""
        f = reduction_factor(self.height, self.width, budget)
        factors = list(self._src.overviews(self.indexes[0]))
        usable = [o for o in factors if o <= f]
        if not usable:
            return self._read(self._src, (0, 0, self.width, self.height), f, desc)
        with _open(self.path, overview_level=factors.index(max(usable))) as ds:
            image = self._read(ds, (0, 0, ds.width, ds.height), reduction_factor(ds.height, ds.width, budget), desc)
        return dataclasses.replace(image, window=(0, 0, self.width, self.height))

    def window(self, window: tuple[int, int, int, int], budget: int | None = None,
               desc: str = "reading window") -> RasterImage:
        """``window`` = (col_off, row_off, width, height) in scene pixels, at native resolution, or
        reduced by the smallest integer factor that fits ``budget`` pixels."""
        c, r, w, h = window
        if not (0 <= c and 0 <= r and w > 0 and h > 0 and c + w <= self.width and r + h <= self.height):
            raise ValueError(f"{self.path}: window {window} is outside the {self.width}x{self.height} raster")
        if self.stretch is None and self.dtype != np.uint8 and self.lut is None:
            self.overview(STRETCH_BUDGET, "reading overview (stretch)")
        return self._read(self._src, window, reduction_factor(h, w, budget), desc)

    def valid(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """bool (height, width) validity of ``window`` at native resolution (module doc)."""
        c, r, w, h = window
        if not self.has_invalid:
            return np.ones((h, w), bool)
        with _gdal_env():
            _data, valid = self._block(self._src, _window(c, r, w, h))
        return valid.any(0)

    def _read(self, ds, window, f: int, desc: str) -> RasterImage:
        """Read ``window`` of ``ds`` reduced by ``f``: strips of at most :data:`STRIP_ROWS` rows, whole
        block rows where the file's blocks are shorter (GDAL reads whole blocks fastest), else
        :data:`STRIP_ROWS` rows of a taller block at a time (an untiled file's strip, possibly the
        whole raster: GDAL decodes it again as needed, the strip in memory stays small); each strip
        is reduced in chunks of whole ``f``-row blocks."""
        from rasterio.errors import RasterioIOError

        from .progress import bar

        c, r, w, h = window
        ho, wo = -(-h // f), -(-w // f)
        data = np.zeros((len(self.indexes), ho, wo), np.float32 if f > 1 or self.dtype != np.uint8 else np.uint8)
        bvalid = np.zeros((len(self.indexes), ho, wo), bool)
        block_rows = int(ds.block_shapes[0][0])
        step = block_rows * (STRIP_ROWS // block_rows) if block_rows <= STRIP_ROWS else STRIP_ROWS
        starts = [r] + list(range((r // step + 1) * step, r + h, step))
        chunk, done, pending = f * max(1, STRIP_ROWS // f), 0, None
        try:
            with _gdal_env(), bar(len(starts), desc) as progress:
                for k, top in enumerate(starts):
                    bottom = starts[k + 1] if k + 1 < len(starts) else r + h
                    strip = self._block(ds, _window(c, top, w, bottom - top))
                    if pending is not None:
                        strip = tuple(np.concatenate([p, s], axis=1) for p, s in zip(pending, strip))
                    last = bottom == r + h
                    usable = strip[0].shape[1] if last else strip[0].shape[1] // f * f
                    for i in range(0, usable, chunk):
                        part, ok = _reduce(strip[0][:, i:min(i + chunk, usable)], strip[1][:, i:min(i + chunk, usable)],
                                           f, self.lut is not None)
                        data[:, done:done + part.shape[1]], bvalid[:, done:done + part.shape[1]] = part, ok
                        done += part.shape[1]
                    pending = None if usable == strip[0].shape[1] else tuple(a[:, usable:] for a in strip)
                    progress.update()
        except RasterioIOError as exc:
            raise RasterError(f"{self.path}: unreadable raster data ({str(exc).splitlines()[0][:200]})") from None
        if self.stretch is None and self.dtype != np.uint8 and self.lut is None:
            self.stretch = _fit_stretch(data, bvalid, self.options.stretch)
        rgb, valid = self._to_rgb(data, bvalid)
        fy, fx = self.height / ds.height * f, self.width / ds.width * f  # scene pixels per output pixel
        return RasterImage(rgb, valid, tuple(int(v) for v in window), (fy, fx))

    def _block(self, ds, win) -> tuple[np.ndarray, np.ndarray]:
        """(data (C, h, w) as stored, per-band validity bool (C, h, w)) of one window of ``ds``."""
        data = ds.read(self.indexes, window=win)
        if all(_all_valid(f) for f in self._flags):
            valid = np.ones(data.shape, bool)
        elif all(_nodata_only(f) for f in self._flags):
            valid = np.stack([_not_nodata(b, v) for b, v in zip(data, self._nodata)])
        else:
            valid = ds.read_masks(self.indexes, window=win) > 0
        if data.dtype.kind == "f":
            valid &= np.isfinite(data)
        return data, valid

    def _to_rgb(self, data: np.ndarray, bvalid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = bvalid.any(0)
        if self.lut is not None:
            rgb = self.lut[np.clip(data[0], 0, len(self.lut) - 1).astype(np.intp)]
        else:
            if self.stretch is None:  # 8-bit: as stored
                out = np.clip(np.rint(data), 0, 255).astype(np.uint8) if data.dtype != np.uint8 else data
            else:
                lo, hi = (v.astype(np.float32)[:, None, None] for v in self.stretch)
                with np.errstate(over="ignore", invalid="ignore"):  # huge values: clipped to 255 below
                    scaled = (data - lo) / (hi - lo) * np.float32(255.0)
                out = np.clip(np.rint(np.nan_to_num(scaled, nan=0.0)), 0, 255).astype(np.uint8)
            rgb = np.repeat(out, 3, axis=0) if out.shape[0] == 1 else out
            rgb = rgb.transpose(1, 2, 0)
        rgb = np.ascontiguousarray(rgb)
        rgb[~valid] = 0
        return rgb, valid


def _window(col: int, row: int, width: int, height: int):
    from rasterio.windows import Window

    return Window(col, row, width, height)


def _all_valid(flags) -> bool:
    from rasterio.enums import MaskFlags

    return MaskFlags.all_valid in flags


def _nodata_only(flags) -> bool:
    from rasterio.enums import MaskFlags

    return MaskFlags.nodata in flags and MaskFlags.alpha not in flags and MaskFlags.per_dataset not in flags


def _not_nodata(band: np.ndarray, nodata: float) -> np.ndarray:
    """bool: ``band`` differs from its ``nodata`` value, compared in the band's data type as GDAL
    compares it (a float32 band's -9999.9 is float32(-9999.9), not the float64 in the header)."""
    if np.isnan(nodata):
        return ~np.isnan(band)
    if band.dtype.kind in "iu":
        info = np.iinfo(band.dtype)
        if not (info.min <= nodata <= info.max and float(nodata).is_integer()):
            return np.ones(band.shape, bool)  # a value the band cannot hold marks no pixel
    with np.errstate(over="ignore"):  # beyond float32: inf, a value invalid anyway (not finite)
        return band != np.asarray(nodata).astype(band.dtype)


def _reduce(data: np.ndarray, valid: np.ndarray, f: int, first: bool) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) -> (C, ceil(h/f), ceil(w/f)): the mean of each block's valid pixels (``first``: the
    block's first pixel, for palette indices); a block without valid pixels is invalid."""
    if f == 1:
        return data, valid
    if first:
        return data[:, ::f, ::f], valid[:, ::f, ::f]
    _c, h, w = data.shape
    total = np.where(valid, data, 0).astype(np.float32)
    count = valid.astype(np.float32)
    cols, rows = np.arange(0, w, f), np.arange(0, h, f)
    total = np.add.reduceat(np.add.reduceat(total, cols, axis=2), rows, axis=1)
    count = np.add.reduceat(np.add.reduceat(count, cols, axis=2), rows, axis=1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0), count > 0


def _fit_stretch(data: np.ndarray, bvalid: np.ndarray, percentiles) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) float64: the ``percentiles`` of each band's valid values."""
    lows, highs = [], []
    for band, ok in zip(data, bvalid):
        values = band[ok]
        if values.size > STRETCH_SAMPLES:
            values = values[:: -(-values.size // STRETCH_SAMPLES)]
        lo, hi = (np.percentile(values.astype(np.float64), percentiles) if values.size else (0.0, 1.0))
        lows.append(float(lo))
        highs.append(float(hi) if hi > lo else float(lo) + 1.0)
    return np.array(lows), np.array(highs)


# ---------------------------------------------------------------------------- whole-file readings
def raster_hw(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of a raster from its header."""
    from rasterio.errors import RasterioIOError

    try:
        with _open(path) as src:
            return int(src.height), int(src.width)
    except RasterioIOError as exc:
        raise RasterError(f"{path}: unreadable raster ({str(exc).splitlines()[0][:200]})") from None


def read_rgb(path: str | os.PathLike, options: RasterOptions | None = None) -> np.ndarray:
    """The whole raster as uint8 RGB (H, W, 3) (module doc; invalid pixels 0). Refused beyond
    ``images.MAX_PIXELS``: a larger scene goes through :func:`rsvg_zeroov.scene.ground_scene`."""
    with Raster(path, options) as r:
        if r.height * r.width > MAX_PIXELS:
            raise RasterError(f"{path}: {r.width}x{r.height} pixels is more than {MAX_PIXELS} to read at once; "
                              "ground it with ground.py or rsvg_zeroov.scene.ground_scene (read by windows)")
        return r.overview(None, "reading raster").rgb
