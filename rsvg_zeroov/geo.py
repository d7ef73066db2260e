"""GeoTIFF in, georeferenced mask out: what a remote-sensing user loads into QGIS.

``read_geotiff`` returns the image as uint8 RGB plus its georeferencing; ``write_mask_geotiff``
writes a single-band uint8 0/255 GeoTIFF with the same transform and CRS; ``mask_geojson`` turns
the mask into polygons in the image's CRS (pixel corners mapped through the affine transform).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .rundir import atomic_write_bytes

GEOTIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class GeoRef:
    """Georeferencing of a raster: ``transform`` (affine.Affine, pixel -> CRS), ``crs`` (WKT or None)."""

    transform: object
    crs: str | None
    width: int
    height: int


def is_geotiff(path: str | Path) -> bool:
    """True for a .tif/.tiff that carries a CRS or a non-identity transform."""
    if Path(path).suffix.lower() not in GEOTIFF_SUFFIXES:
        return False
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            return src.crs is not None or not src.transform.is_identity
    except RasterioIOError:
        return False


def _to_uint8(bands: np.ndarray) -> np.ndarray:
    """(C, H, W) any dtype -> uint8 (H, W, 3): first three bands (gray repeated), per-band min-max."""
    if bands.shape[0] >= 3:
        bands = bands[:3]
    else:
        bands = np.repeat(bands[:1], 3, axis=0)
    if bands.dtype == np.uint8:
        return np.ascontiguousarray(bands.transpose(1, 2, 0))
    out = np.empty(bands.shape, np.uint8)
    for i, b in enumerate(bands.astype(np.float64)):
        finite = b[np.isfinite(b)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        out[i] = np.clip(np.rint((np.nan_to_num(b, nan=lo) - lo) / max(hi - lo, 1e-12) * 255), 0, 255)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def read_geotiff(path: str | Path) -> tuple[np.ndarray, GeoRef]:
    """(uint8 RGB (H, W, 3), GeoRef). Multi-band rasters use bands 1-3, each stretched to 0-255."""
    import rasterio

    with rasterio.open(path) as src:
        bands = src.read()
        ref = GeoRef(src.transform, src.crs.to_wkt() if src.crs else None, src.width, src.height)
    return _to_uint8(bands), ref


def write_mask_geotiff(path: str | Path, mask: np.ndarray, ref: GeoRef) -> None:
    """A bool (H, W) mask as a uint8 0/255 single-band GeoTIFF with ``ref``'s transform and CRS."""
    import rasterio
    from rasterio.io import MemoryFile

    if mask.shape != (ref.height, ref.width):
        raise ValueError(f"{path}: mask is {mask.shape}, raster is ({ref.height}, {ref.width})")
    profile = dict(driver="GTiff", width=ref.width, height=ref.height, count=1, dtype="uint8",
                   transform=ref.transform, crs=rasterio.crs.CRS.from_wkt(ref.crs) if ref.crs else None,
                   compress="deflate", nodata=None)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write((mask.astype(np.uint8) * 255)[None])
        atomic_write_bytes(path, mem.read())


def mask_geojson(mask: np.ndarray, ref: GeoRef | None, properties: dict | None = None) -> dict:
    """GeoJSON FeatureCollection of the mask's polygons, in the CRS of ``ref`` (pixels if None)."""
    from rasterio import features
    from rasterio.transform import Affine

    transform = ref.transform if ref is not None else Affine.identity()
    shapes = features.shapes(mask.astype(np.uint8), mask=mask.astype(bool), transform=transform, connectivity=8)
    feats = [{"type": "Feature", "geometry": geom, "properties": dict(properties or {})} for geom, _v in shapes]
    fc: dict = {"type": "FeatureCollection", "features": feats}
    if ref is not None and ref.crs:
        fc["crs_wkt"] = ref.crs
        from rasterio.crs import CRS

        epsg = CRS.from_wkt(ref.crs).to_epsg()
        if epsg:
            fc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
    return fc


def write_geojson(path: str | Path, obj: dict) -> None:
    atomic_write_bytes(path, json.dumps(obj).encode())
