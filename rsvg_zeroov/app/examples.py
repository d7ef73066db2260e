"""The page's example scenes: synthetic images from :mod:`rsvg_zeroov.synthetic`, not real imagery.

Three coloured-object scenes as PNG, each with the expression of one of its objects, and one of
them again as a GeoTIFF with made-up georeferencing (UTM zone 33N, 0.5 m pixels), to try the
georeferenced downloads. Deterministic: the same files on every start.
"""
from __future__ import annotations

from pathlib import Path

SCENES = 3
WIDTH, HEIGHT = 256, 192
GEO_CRS = "EPSG:32633"
GEO_ORIGIN = (500000.0, 4200000.0)  # west, north (metres)
GEO_PIXEL = 0.5  # metres


def write_examples(folder) -> list[tuple[str, str, str]]:
    """Write the example files into ``folder``; ``[(file path, expression, caption), ...]``."""
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from ..synthetic.scenes import make_scene

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out, scenes = [], []
    for index in range(SCENES):
        scene = make_scene(seed=0, index=index, width=WIDTH, height=HEIGHT)
        scenes.append(scene)
        path = folder / f"synthetic_scene_{index}.png"
        Image.fromarray(scene.image).save(path)
        expression = scene.objects[0].expression
        out.append((str(path), expression, f"synthetic scene {index} (PNG)"))
    scene = scenes[0]  # the first scene again, georeferenced
    path = folder / "synthetic_scene_0_geo.tif"
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8",
                       crs=GEO_CRS, transform=from_origin(*GEO_ORIGIN, GEO_PIXEL, GEO_PIXEL)) as dst:
        dst.write(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))
    out.append((str(path), scene.objects[0].expression, "synthetic scene 0 as a GeoTIFF (made-up georeferencing)"))
    return out
