"""Grounding phrases in a whole scene, however large: coarse to fine (docs/scenes.md).

    from rsvg_zeroov.scene import SceneOptions, ground_scene, write_scene_outputs
    results = ground_scene(grounder, "scene.tif", ["the storage tank"], SceneOptions())
    write_scene_outputs(results[0], "grounded/")

**A scene that fits the pixel budget** (``H * W <= budget``; by default the VLM's, its
``max_pixels`` or 16384 cells) takes the plain path: ``Grounder.ground_many`` on the file, as
``ground.py`` always did. A raster the released readers cannot decode (:mod:`rsvg_zeroov.raster`)
goes in as the array the routed readers would give, so the result equals ``Grounder.ground`` on
the file; with non-default :class:`~rsvg_zeroov.raster.RasterOptions`, the array they ask for.

**A larger scene** is never held at full resolution:

1. the overview, the whole scene reduced to the budget, is read once for all phrases and stage 1
   (the VLM's attention) runs on it for every phrase in one batch;
2. per phrase, the focus windows: the seeds are the ``K`` largest distinct values of the fused map
   ``A_C`` (``EvolveConfig.k``) over cells with valid pixels, grouped into 8-connected clusters
   after a dilation by ``join`` cells; the ``windows`` clusters with the highest peak are kept, each
   cluster's cells become a box in scene pixels, grown by ``margin`` times its size on every side
   and to at least ``min_window`` pixels a side, cut to ``max_window`` (default: the budget's
   side) around the peak, kept inside the scene; overlapping windows are merged;
3. each window is read at native resolution (reduced by the smallest integer factor that fits the
   budget when it is larger), and the paper's pipeline, stages 1-3 and the refiner
   (``Grounder.ground_many``), runs on it; phrases with the same window run together, so the
   refiner embeds it once;
4. the window's mask is brought back to native resolution (nearest) and placed in the scene.

Pixels without data (nodata, alpha, non-finite) are never in a mask :func:`ground_scene` returns,
on either path (a data set run's stage-3 PNG masks are the masks as predicted; only its
``--georef`` GeoTIFFs mark those pixels, as nodata). The overview phase of a scene beyond the
budget (its read and stage 1) is reported to the Grounder's ``progress`` as
:data:`SCENE_OVERVIEW`, before each window's stages.
"""
from .grounding import (DEFAULT_CELLS, SCENE_OVERVIEW, SceneOptions, ScenePiece, SceneResult,  # noqa: F401
                        check_scene, ground_scene, scene_box, scene_budget, uses_raster_reader)
from .outputs import box_in_crs, write_scene_outputs  # noqa: F401
from .windows import focus_windows  # noqa: F401
