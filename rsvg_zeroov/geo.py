"""GeoTIFF in, georeferenced mask out: what a remote-sensing user loads into QGIS.

``read_geotiff`` returns the image as uint8 RGB plus its georeferencing (the whole raster, read by
:mod:`rsvg_zeroov.raster`: band choice, percentile stretch of non-8-bit data, nodata and alpha
pixels 0); ``write_mask_geotiff`` writes a single-band uint8 0/255 GeoTIFF with the same transform
and CRS; :func:`write_scene_mask` the same for a scene-sized mask given as pieces, written by
strips, tiled and compressed, with :data:`MASK_NODATA` where the input had no data;
:func:`write_mask_like` the GeoTIFF twin of a mask PNG whose image was georeferenced (stage 3's
``--georef``); ``mask_geojson`` turns the mask into polygons in the image's CRS (pixel corners
mapped through the affine transform). Vector files for users are :mod:`rsvg_zeroov.vectors`'.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .rundir import atomic_write_bytes

GEOTIFF_SUFFIXES = (".tif", ".tiff")
MASK_NODATA = 1  # mask.tif where the input had no data (nodata / alpha); 0 background, 255 object
TILE = 512  # block side of the mask GeoTIFFs written here


@dataclass(frozen=True)
class GeoRef:
    """Georeferencing of a raster: ``transform`` (affine.Affine, pixel -> CRS), ``crs`` (WKT or None)."""

    transform: object
    crs: str | None
    width: int
    height: int


def is_geotiff(path: str | Path) -> bool:
    """True for a .tif/.tiff that carries a CRS or a non-identity transform (a plain TIFF is
    answered without rasterio's NotGeoreferencedWarning)."""
    if Path(path).suffix.lower() not in GEOTIFF_SUFFIXES:
        return False
    from rasterio.errors import RasterioIOError

    from .raster import _open

    try:
        with _open(path) as src:
            return src.crs is not None or not src.transform.is_identity
    except RasterioIOError:
        return False


def read_geotiff(path: str | Path, options=None) -> tuple[np.ndarray, GeoRef]:
    """(uint8 RGB (H, W, 3), GeoRef) of the whole raster; ``options``: a
    :class:`rsvg_zeroov.raster.RasterOptions` (bands, stretch). A scene beyond the VLM's pixel
    budget is better grounded by :func:`rsvg_zeroov.scene.ground_scene`, which reads it by windows."""
    from .raster import Raster

    with Raster(path, options) as raster:
        return raster.overview(None, "reading raster").rgb, raster.georef


@dataclass(frozen=True, eq=False)
class MaskPiece:
    """Part of a scene-sized mask: ``window`` (col_off, row_off, width, height) in scene pixels and
    ``mask`` bool (height, width) there; the scene is background outside every piece."""

    window: tuple[int, int, int, int]
    mask: np.ndarray


def write_mask_geotiff(path: str | Path, mask: np.ndarray, ref: GeoRef) -> None:
    """A bool (H, W) mask as a uint8 0/255 single-band GeoTIFF with ``ref``'s transform and CRS."""
    if mask.shape != (ref.height, ref.width):
        raise ValueError(f"{path}: mask is {mask.shape}, raster is ({ref.height}, {ref.width})")
    write_scene_mask(path, ref, [MaskPiece((0, 0, ref.width, ref.height), mask)])


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (GDAL); renamed to
    ``path`` when the block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_scene_mask(path: str | Path, ref: GeoRef, pieces: Sequence[MaskPiece],
                     valid: Callable[[tuple[int, int, int, int]], np.ndarray] | None = None) -> None:
    """The scene's mask as a tiled (``TILE``), deflate-compressed uint8 GeoTIFF of ``ref``'s grid:
    255 inside the pieces, 0 elsewhere, written by strips of ``TILE`` rows (the full mask is never
    in memory). ``valid``: the input's validity, ``window -> bool (height, width)``; where it is
    False the file holds :data:`MASK_NODATA`, its nodata value (None: no nodata value)."""
    import rasterio
    from rasterio.windows import Window

    from .progress import bar

    crs = rasterio.crs.CRS.from_wkt(ref.crs) if ref.crs else None
    profile = dict(driver="GTiff", width=ref.width, height=ref.height, count=1, dtype="uint8",
                   transform=ref.transform, crs=crs, tiled=True, blockxsize=TILE, blockysize=TILE,
                   compress="deflate", nodata=None if valid is None else MASK_NODATA)
    rows = range(0, ref.height, TILE)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst, \
            bar(len(rows), f"writing {Path(path).name}") as progress:
        for top in rows:
            n = min(TILE, ref.height - top)
            strip = np.zeros((n, ref.width), np.uint8)
            for piece in pieces:
                c, r, w, h = piece.window
                lo, hi = max(r, top), min(r + h, top + n)
                if lo < hi:
                    part = strip[lo - top:hi - top, c:c + w]
                    part[piece.mask[lo - r:hi - r]] = 255
            if valid is not None:
                strip[~valid((0, top, ref.width, n))] = MASK_NODATA
            dst.write(strip[None], window=Window(0, top, ref.width, n))
            progress.update()


def write_mask_like(path: str | Path, mask: np.ndarray, image_path: str | Path) -> bool:
    """Write ``mask`` (bool (H, W), the image's size) as a GeoTIFF with the georeferencing of the
    image at ``image_path`` (CRS, transform; :data:`MASK_NODATA` where the image had no data) when
    that image is georeferenced (:func:`is_geotiff`); returns whether a file was written.

    Stage 3's ``--georef``: ``write_mask_like(RUN/masks/<id>.tif, mask, sample.image_path)``."""
    if not is_geotiff(image_path):
        return False
    from .raster import Raster

    with Raster(image_path) as raster:
        if mask.shape != (raster.height, raster.width):
            raise ValueError(f"{path}: mask is {mask.shape}, {image_path} is ({raster.height}, {raster.width})")
        write_scene_mask(path, raster.georef, [MaskPiece((0, 0, raster.width, raster.height), mask)],
                         raster.valid if raster.has_invalid else None)
    return True


def mask_geojson(mask: np.ndarray, ref: GeoRef | None, properties: dict | None = None) -> dict:
    """GeoJSON FeatureCollection of the mask's polygons, in the CRS of ``ref`` (pixels if None)."""
    from rasterio import features
    from rasterio.transform import Affine

    transform = ref.transform if ref is not None else Affine.identity()
    shapes = features.shapes(mask.astype(np.uint8), mask=mask.astype(bool), transform=transform, connectivity=8)
    feats = [{"type": "Feature", "geometry": geom, "properties": dict(properties or {})} for geom, _v in shapes]
    fc: dict = {"type": "FeatureCollection", "features": feats}
    if ref is not None and ref.crs:
        fc.update(crs_members(ref.crs))
    return fc


def crs_members(wkt: str) -> dict:
    """The CRS of a GeoJSON in a CRS other than WGS84: ``crs_wkt`` and, when it has an EPSG code,
    the pre-RFC 7946 ``crs`` member that GDAL and QGIS read."""
    from rasterio.crs import CRS

    members: dict = {"crs_wkt": wkt}
    epsg = CRS.from_wkt(wkt).to_epsg()
    if epsg:
        members["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
    return members


def write_geojson(path: str | Path, obj: dict) -> None:
    """``obj`` as a JSON file, atomically."""
    atomic_write_bytes(path, json.dumps(obj).encode())
