"""A scene's mask as polygons users can open: GeoJSON (RFC 7946), GeoPackage, Shapefile.

Polygons are traced from the mask pieces at native resolution (``rasterio.features.shapes``,
4-connected, so each polygon is valid; pixel edges mapped through the scene's affine transform),
merged across pieces (``shapely.unary_union``) and, with ``simplify`` (CRS units), simplified
topology-preserving. Each polygon is one feature with the properties ``expression``, ``score``
(the refiner's, or null), ``area`` (of the polygon as written, in the scene CRS's units squared)
and ``area_unit``.

GeoJSON follows RFC 7946: WGS84 longitude/latitude (``rasterio.warp.transform_geom``), exterior
rings counter-clockwise, no ``crs`` member; ``vector_crs="native"`` keeps the scene's CRS instead
(with the pre-RFC ``crs`` member GDAL and QGIS read). GeoPackage (layer ``mask``) and Shapefile
(``mask.shp`` with its ``.shx``, ``.dbf``, ``.prj``, ``.cpg``) are written through fiona in the
scene's CRS. Every file appears under its final name only when complete.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import cli

FORMATS = {"geojson": "GeoJSON", "gpkg": "GPKG", "shp": "ESRI Shapefile"}
SCHEMA = {"geometry": "Polygon",
          "properties": {"expression": "str", "score": "float", "area": "float", "area_unit": "str"}}


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    bad = [n for n in names if n not in FORMATS and n != "none"]
    if bad:
        raise argparse.ArgumentTypeError(f"--vector {text!r}: choose from {', '.join(FORMATS)} "
                                         "(comma-separated) or none")
    return tuple(n for n in names if n != "none")


@dataclass(frozen=True)
class VectorOptions:
    """formats: any of ``geojson``, ``gpkg``, ``shp``; vector_crs: ``wgs84`` (RFC 7946) or ``native``
    (the scene's CRS) for the GeoJSON; simplify: tolerance in CRS units (None: exact pixel edges)."""

    formats: tuple[str, ...] = field(default=("geojson",), metadata=cli.flag(
        "--vector", "polygon files of a georeferenced input: geojson, gpkg, shp (comma-separated) or none",
        metavar="FORMATS", parse=_formats))
    vector_crs: str = field(default="wgs84", metadata=cli.flag(
        "--vector-crs", "CRS of mask.geojson: wgs84 (RFC 7946) or native (the scene's)",
        choices=("wgs84", "native")))
    simplify: float | None = field(default=None, metadata=cli.flag(
        "--simplify", "simplify the polygons with this tolerance, in the scene CRS's units", metavar="TOL"))

    def __post_init__(self) -> None:
        bad = [n for n in self.formats if n not in FORMATS]
        if bad:
            raise ValueError(f"vector formats {bad}: choose from {', '.join(FORMATS)}")
        if self.vector_crs not in ("wgs84", "native"):
            raise ValueError(f"--vector-crs {self.vector_crs!r}: choose wgs84 or native")
        if self.simplify is not None and not self.simplify >= 0:
            raise ValueError(f"--simplify {self.simplify}: the tolerance must be >= 0 (CRS units)")


def mask_polygons(pieces: Sequence, transform, simplify: float | None = None) -> list:
    """shapely Polygons of the union of ``pieces`` (:class:`rsvg_zeroov.geo.MaskPiece`) in the CRS
    of ``transform`` (the scene's pixel -> CRS affine), largest first."""
    from rasterio import features
    from rasterio.transform import Affine
    from shapely.geometry import shape
    from shapely.ops import unary_union

    polygons = []
    for piece in pieces:
        c, r, _w, _h = piece.window
        if not piece.mask.any():
            continue
        shifted = transform @ Affine.translation(c, r)
        mask = piece.mask.astype(np.uint8)
        polygons += [shape(g) for g, _v in features.shapes(mask, mask=piece.mask, transform=shifted)]
    if len(pieces) > 1 and len(polygons) > 1:
        merged = unary_union(polygons)
        polygons = list(getattr(merged, "geoms", [merged]))
    if simplify:
        polygons = [p.simplify(simplify, preserve_topology=True) for p in polygons]
    polygons = [p for part in polygons for p in getattr(part, "geoms", [part]) if not p.is_empty]
    return sorted(polygons, key=lambda p: -p.area)


def area_unit(crs_wkt: str) -> str:
    """The unit of ``area`` for a CRS: its linear unit squared (``metre^2``), else ``degree^2``."""
    from rasterio.crs import CRS

    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return "degree^2"
    unit = crs.linear_units or "unknown"
    return f"{unit}^2"


def write_vectors(out_dir: str | os.PathLike, polygons: Sequence, crs_wkt: str, expression: str,
                  score: float | None, options: VectorOptions, stem: str = "mask") -> list[str]:
    """Write ``polygons`` (scene CRS) in each of ``options.formats`` as ``out_dir/<stem>.<ext>``;
    returns the file names written (a Shapefile's sidecars included)."""
    unit = area_unit(crs_wkt)
    props = [{"expression": expression, "score": None if score is None else float(score),
              "area": float(p.area), "area_unit": unit} for p in polygons]
    out_dir, written = Path(out_dir), []
    for fmt in options.formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "geojson":
            _write_geojson(path, polygons, props, crs_wkt, options.vector_crs)
            written.append(path.name)
        else:
            written += _write_fiona(path, FORMATS[fmt], polygons, props, crs_wkt)
    return written


def geojson_collection(polygons: Sequence, props: Sequence[dict], crs_wkt: str, vector_crs: str = "wgs84") -> dict:
    """The FeatureCollection (module doc): RFC 7946 WGS84 or the scene's CRS (``native``)."""
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape
    from shapely.geometry.polygon import orient

    from .geo import crs_members

    features = []
    for polygon, p in zip(polygons, props):
        geom = mapping(orient(polygon, 1.0))
        if vector_crs == "wgs84":
            geom = mapping(orient(shape(transform_geom(crs_wkt, "EPSG:4326", geom)), 1.0))
        features.append({"type": "Feature", "geometry": geom, "properties": dict(p)})
    collection: dict = {"type": "FeatureCollection", "features": features}
    if vector_crs == "native":
        collection.update(crs_members(crs_wkt))
    return collection


def _write_geojson(path: Path, polygons, props, crs_wkt: str, vector_crs: str) -> None:
    from .geo import write_geojson

    write_geojson(path, geojson_collection(polygons, props, crs_wkt, vector_crs))


def _write_fiona(path: Path, driver: str, polygons, props, crs_wkt: str) -> list[str]:
    """One fiona layer ``mask`` written in a temporary folder beside ``path``, then moved in."""
    import fiona
    from shapely.geometry import mapping

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with fiona.open(tmp / path.name, "w", driver=driver, crs=crs_wkt, schema=SCHEMA, layer="mask") as dst:
            dst.writerecords({"geometry": mapping(g), "properties": p} for g, p in zip(polygons, props))
        names = sorted(f.name for f in tmp.iterdir())
        for name in names:
            os.replace(tmp / name, path.parent / name)
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
