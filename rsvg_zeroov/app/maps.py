"""The stage maps of one grounded phrase as separate pictures, for the page's gallery.

Each picture is one cell of the run panel (:mod:`rsvg_zeroov.visualize.panel`: the same drawing
code, titles and colour bars), drawn on a figure of its own: every captured VLM layer, ``A_C``,
``A_CS``, the grown region with its seeds, ``A_E``, and the masks before and after the refiner.
"""
from __future__ import annotations

import io

import numpy as np

from ..evolve.config import EvolveConfig
from ..visualize.data import PanelData


def panel_data(result, rgb: np.ndarray, expression: str, weights: tuple[float, ...],
               config: EvolveConfig) -> PanelData:
    """The :class:`~rsvg_zeroov.visualize.PanelData` of a :class:`~rsvg_zeroov.pipeline.GroundingResult`
    (no ground truth): ``rgb`` uint8 (H, W, 3) the image as shown; ``weights`` the fusion weights
    of ``result.layers``."""
    padded = list(weights) + [None] * len(result.layers)
    return PanelData(
        sample_id="upload", expression=expression, answer=result.answer, image=rgb,
        layers=tuple((int(layer), padded[i], result.per_layer[i]) for i, layer in enumerate(result.layers)),
        a_c=result.a_c, a_cs=result.a_cs, seeds=result.seeds, region=result.region, a_e=result.a_e,
        evolve_mask=result.mask_before_sam, final_mask=result.mask, gt_mask=None, gt_box=None,
        iou=None, iou_kind="mask", config=config, maps_source="this request")


def _png_to_array(fig) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def stage_maps(d: PanelData) -> list[tuple[np.ndarray, str]]:
    """``(uint8 (h, w, 3) picture, caption)`` per stage map: the panel's cells without the first
    (the image with the expression) and the last (the ground truth, which an upload lacks). The
    caption is the cell's title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..visualize import panel

    h, w = d.size
    axes_h = panel.AXES_W * min(max(h / w, 0.25), 2.0)  # as the panel's cells
    fig_w = 2 * panel.MARGIN + panel.AXES_W + panel.GAP_W
    fig_h = panel.TITLE_BAND + axes_h + 2 * panel.MARGIN
    out = []
    n_cells = len(panel.cells(Figure(), d))
    for i in range(1, n_cells - 1):
        fig = Figure(figsize=(fig_w, fig_h), dpi=panel.DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((panel.MARGIN / fig_w, panel.MARGIN / fig_h, panel.AXES_W / fig_w, axes_h / fig_h))
        panel.cells(fig, d)[i](ax)  # the drawing functions close over their figure: one list per figure
        ax.set_xticks([])
        ax.set_yticks([])
        out.append((_png_to_array(fig), " ".join(ax.get_title().split())))
    return out
