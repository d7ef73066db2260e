"""The files of one grounded phrase (:class:`~rsvg_zeroov.scene.SceneResult`), as ``ground.py``
writes them (docs/scenes.md):

- ``box.json``: the box in scene pixels (``box``, inclusive XYXY) and, for a raster with a CRS, in
  CRS coordinates (``box_crs``: ``[min x, min y, max x, max y]`` of the pixels' outer edges) and in
  WGS84 (``box_wgs84``, lon/lat bounds), the VLM's answer, the refiner's score, the scene record
  (path taken, overview size, windows, bands, stretch) and the files written;
- ``overlay.png``: the image with the mask (plain path), or the overview with the mask as seen
  at the overview's resolution;
- ``mask.png``: uint8 0/255 at the scene's size, on the plain path only (a scene beyond the budget
  is too large for one PNG: its mask is ``mask.tif``);
- ``mask.tif``: for a georeferenced input or a scene beyond the budget, the mask on the scene's grid
  (size, CRS, transform), tiled and compressed, :data:`rsvg_zeroov.geo.MASK_NODATA` (its nodata
  value) where the input had no data;
- ``mask.geojson`` / ``mask.gpkg`` / ``mask.shp`` (:mod:`rsvg_zeroov.vectors`) when the input has
  a CRS. Without a CRS the outputs are in pixels only, and a log line says so.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..geo import GeoRef, write_scene_mask
from ..vectors import VectorOptions, mask_polygons, write_vectors

log = logging.getLogger(__name__)


def box_in_crs(box: list[int] | None, ref: GeoRef) -> list[float] | None:
    """``[min x, min y, max x, max y]`` in the CRS of ``ref`` of the inclusive pixel ``box``'s
    outer edges (all four corners through the transform)."""
    if box is None:
        return None
    x1, y1, x2, y2 = box
    corners = [ref.transform @ (x, y) for x in (x1, x2 + 1) for y in (y1, y2 + 1)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return [float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))]


def _overlay(result) -> np.ndarray:
    from ..visualize.overlay import mask_overlay

    rgb, box = result.image.rgb, result.box
    if box is not None and not result.plain:
        fy, fx = result.image.factor
        h, w = rgb.shape[:2]
        box = [min(int(box[0] / fx), w - 1), min(int(box[1] / fy), h - 1),
               min(int(box[2] / fx), w - 1), min(int(box[3] / fy), h - 1)]
    return mask_overlay(rgb, result.image_mask(), box)


def _validity(result):
    """``window -> bool`` validity of the scene's raster for mask.tif's nodata, or None."""
    from ..raster import Raster, RasterOptions

    if result.raster is None or not result.raster["masked"] or result.path is None:
        return None, None
    raster = Raster(result.path, RasterOptions(bands=tuple(result.raster["bands"])))
    return raster, raster.valid


def write_scene_outputs(result, out_dir, vectors: VectorOptions | None = None, extra: dict | None = None) -> dict:
    """Write the files of ``result`` (module doc) into ``out_dir``; returns the ``box.json`` record
    (``extra`` merged in: the caller's settings)."""
    from ..rundir import save_json, save_png

    vectors, out = vectors or VectorOptions(), Path(out_dir)
    h, w = result.size
    files = ["box.json", "overlay.png"]
    save_png(out / "overlay.png", _overlay(result))
    if result.plain:
        save_png(out / "mask.png", result.full_mask().astype(np.uint8) * 255)
        files.append("mask.png")
    georeferenced = []
    if result.georef is not None or not result.plain:
        from rasterio.transform import Affine

        ref = result.georef or GeoRef(Affine.identity(), None, w, h)
        raster, valid = _validity(result)
        try:
            write_scene_mask(out / "mask.tif", ref, result.pieces, valid)
        finally:
            if raster is not None:
                raster.close()
        files.append("mask.tif")
        georeferenced.append("mask.tif")
    record = {"image": None if result.path is None else str(result.path), "text": result.text, "box": result.box,
              "sam_score": result.score, "mask_pixels": result.mask_pixels, "vlm_answer": result.answer,
              "width": int(w), "height": int(h), "scene": _scene_record(result)}
    if result.crs:
        from rasterio.warp import transform_bounds

        record["crs"] = _crs_name(result.georef.crs)
        record["box_crs"] = box_in_crs(result.box, result.georef)
        record["box_wgs84"] = (None if record["box_crs"] is None else
                               [float(v) for v in transform_bounds(result.georef.crs, "EPSG:4326", *record["box_crs"])])
        if vectors.formats:
            polygons = mask_polygons(result.pieces, result.georef.transform, vectors.simplify)
            written = write_vectors(out, polygons, result.georef.crs, result.text, result.score, vectors)
            files += written
            georeferenced += written
            record["polygons"] = len(polygons)
    elif result.raster is not None:
        log.warning("%s has no CRS: pixel outputs only (%s); no polygons",
                    result.path.name, ", ".join(f for f in files if f != "overlay.png"))
        record["note"] = "the input has no CRS: pixel outputs only"
    if georeferenced:
        record["georeferenced"] = georeferenced
    record["outputs"] = files
    record.update(extra or {})
    save_json(out / "box.json", record)
    return record


def _crs_name(wkt: str) -> str:
    from rasterio.crs import CRS

    epsg = CRS.from_wkt(wkt).to_epsg()
    return f"EPSG:{epsg}" if epsg else wkt


def _scene_record(result) -> dict:
    scene = {"plain": result.plain, "raster": result.raster}
    if not result.plain:
        scene.update(overview=list(result.image.rgb.shape[:2]), overview_factor=list(result.image.factor),
                     overview_answer=result.overview_answer,
                     windows=[{"window": list(p.window), "factor": p.factor, "mask_pixels": int(p.mask.sum())}
                              for p in result.pieces])
    return scene
