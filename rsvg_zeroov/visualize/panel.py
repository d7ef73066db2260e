"""One figure per sample: the image and expression, every captured VLM layer, ``A_C``, ``A_CS``, the
grown region with its seeds, ``A_E``, the before-SAM and final masks, and the ground truth.

Drawn with matplotlib's object API on the Agg canvas (no pyplot: no global figure registry to
leak; the figure is dropped after rendering) on a fixed grid of cells sized in inches. Every map is drawn in image coordinates
(``extent = (0, W, H, 0)``, x right, y down, pixels of the original image), so a map cell lies over
the image region it describes; heat maps get a colour bar. Images larger than
:data:`MAX_DISPLAY` pixels a side are subsampled for display only.
"""
from __future__ import annotations

import io
import math
import textwrap

import numpy as np

from .data import PanelData
from .index import format_iou

NCOLS = 5
DPI = 90
# Fixed geometry in inches (no layout engine: ~2x faster than constrained layout, and every map
# is drawn at the same size). A cell: the axes, a gap on its right for the colour bar and its tick
# labels, and a band above it for a title of up to TITLE_LINES lines.
AXES_W = 2.6
GAP_W = 0.75
TITLE_BAND = 0.75
TOP_BAND = 0.65  # the figure title (two lines)
MARGIN = 0.15
TITLE_LINES = 4  # the expression is wrapped to at most this many lines of WRAP characters
WRAP = 38
MAX_DISPLAY = 1024
HEAT_CMAP = "viridis"
MASK_RGB = np.array([255, 40, 40], dtype=np.float32)  # red tint of mask overlays
GT_RGB = np.array([40, 220, 80], dtype=np.float32)  # green tint of the ground truth
TITLE_SIZE = 9
TICK_SIZE = 8  # colour-bar tick labels


def plain(text: str) -> str:
    """``text`` with matplotlib's mathtext disabled (a ``$`` in an expression stays a ``$``)."""
    return text.replace("$", r"\$")


def printable(text: str) -> str:
    """Control characters and U+FFFD (undecodable model output) shown as a middle dot."""
    return "".join(ch if ch.isprintable() and ch != "\ufffd" else "\u00b7" for ch in text)


def wrap(text: str, width: int = WRAP, lines: int = TITLE_LINES) -> str:
    out = textwrap.wrap(printable(" ".join(text.split())), width) or [""]
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1] + "\u2026"
    return "\n".join(out)


def _stride(size: tuple[int, int]) -> int:
    return max(1, math.ceil(max(size) / MAX_DISPLAY))


def overlay(image: np.ndarray, mask: np.ndarray | None, rgb: np.ndarray) -> np.ndarray:
    """uint8 (h, w, 3): the image dimmed to 60 %, the mask's pixels tinted half-way to ``rgb``."""
    out = image.astype(np.float32) * 0.6
    if mask is not None:
        out[mask] = out[mask] * 0.5 + rgb * 0.5
    return out.astype(np.uint8)


def _extent(d: PanelData) -> tuple[int, int, int, int]:
    h, w = d.size
    return 0, w, h, 0


def _box_patch(box, color: str, inclusive: bool, dashed: bool = False):
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = box
    one = 1 if inclusive else 0
    return Rectangle((x1, y1), x2 - x1 + one, y2 - y1 + one, fill=False, edgecolor=color,
                     linewidth=1.5, linestyle="--" if dashed else "-")


# ------------------------------------------------------------------------------ cells
def heat(fig, ax, d: PanelData, arr: np.ndarray, title: str) -> None:
    """A heat map with its colour bar in the gap on the right of the cell.

    Tick labels have at most three significant digits; a common power of ten (raw attention
    maps are ~1e-3) goes above the bar, so the labels fit the gap instead of running into the next
    cell.
    """
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    im = ax.imshow(arr, cmap=HEAT_CMAP, interpolation="nearest", extent=_extent(d))
    bar = fig.colorbar(im, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0]))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_powerlimits((-2, 3))
    bar.locator = MaxNLocator(nbins=5)
    bar.formatter = formatter
    bar.update_ticks()
    bar.ax.tick_params(labelsize=TICK_SIZE)
    bar.ax.yaxis.get_offset_text().set_fontsize(TICK_SIZE)
    ax.set_title(title, fontsize=TITLE_SIZE)


def picture(ax, d: PanelData, rgb: np.ndarray, title: str) -> None:
    ax.imshow(rgb, interpolation="nearest", extent=_extent(d))
    ax.set_title(title, fontsize=TITLE_SIZE)


def region_cell(ax, d: PanelData) -> None:
    h, w = d.size
    ax.imshow(d.region.astype(np.float32), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
              extent=_extent(d))
    ys, xs = np.nonzero(d.seeds)
    g = d.region.shape[0]
    ax.scatter((xs + 0.5) * w / g, (ys + 0.5) * h / g, s=10, c="red", marker="x", linewidths=1)
    ax.set_title(f"region: grown through A_CS > {d.config.tau:g}\n+ seeds (K={d.config.k}, red) "
                 f"- {int(d.region.sum())} cells", fontsize=TITLE_SIZE)


def mask_cell(ax, d: PanelData, img: np.ndarray, s: int, mask: np.ndarray | None, title: str) -> None:
    from ..evaluation import tight_box

    if mask is None:
        ax.imshow(overlay(img, None, MASK_RGB), extent=_extent(d))
        ax.text(0.5, 0.5, "no final mask yet\n(run rs_evolve.py)", transform=ax.transAxes,
                ha="center", va="center", fontsize=TITLE_SIZE, color="white")
        ax.set_title(title, fontsize=TITLE_SIZE)
        return
    picture(ax, d, overlay(img, mask[::s, ::s], MASK_RGB), title + f"\n{int(mask.sum())} px"
            + (" (empty)" if not mask.any() else ""))
    box = tight_box(mask)
    if box is not None:
        ax.add_patch(_box_patch(box, "yellow", inclusive=True, dashed=True))


def truth_cell(ax, d: PanelData, img: np.ndarray, s: int) -> None:
    gt = None if d.gt_mask is None else d.gt_mask[::s, ::s]
    kind = "mask" if d.gt_mask is not None else "box" if d.gt_box is not None else "none"
    picture(ax, d, overlay(img, gt, GT_RGB), f"ground truth ({kind})")
    if d.gt_box is not None:
        ax.add_patch(_box_patch(d.gt_box, "lime", inclusive=False))


# ------------------------------------------------------------------------------ the figure
def cells(fig, d: PanelData) -> list:
    """The drawing functions of every cell, in reading order (each takes an Axes)."""
    s = _stride(d.size)
    img = d.image[::s, ::s]
    cfg = d.config
    expr = plain(wrap(d.expression))
    out = [lambda ax: picture(ax, d, img, expr)]
    for layer, weight, arr in d.layers:
        w = "" if weight is None else f" (w={weight:g})"
        out.append(lambda ax, a=arr, t=f"VLM layer {layer}{w}": heat(fig, ax, d, a, t))
    out += [
        lambda ax: heat(fig, ax, d, d.a_c, "A_C: fused VLM map"),
        lambda ax: heat(fig, ax, d, d.a_cs, "A_CS: propagated by diffusion\nself-attention"
                        + ("" if cfg.use_dm else " (off)")),
        lambda ax: region_cell(ax, d),
        lambda ax: heat(fig, ax, d, d.a_e, "A_E = region x A_CS"),
        lambda ax: mask_cell(ax, d, img, s, d.evolve_mask, f"mask: A_E > {cfg.alpha:g} (before SAM)"),
        lambda ax: mask_cell(ax, d, img, s, d.final_mask, f"final mask (refiner {cfg.refiner})" if cfg.refiner else "final mask (no refiner)"),
        lambda ax: truth_cell(ax, d, img, s),
    ]
    return out


def suptitle(d: PanelData) -> str:
    score = "no final mask" if d.iou is None else f"{d.iou_kind} IoU {format_iou(d.iou)}"
    line = f"{d.sample_id}   |   {score}   |   {d.config.fidelity}, maps {d.maps_source}"
    if d.answer:
        line += "\nVLM answer: " + wrap(d.answer, 100, 1)
    return plain(line)


def render_panel(d: PanelData) -> bytes:
    """The sample's panel as PNG bytes: :data:`NCOLS` cells a row, in the order of :func:`cells`."""
    buf = io.BytesIO()
    build_figure(d).savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def thumbnail(png: bytes, width: int) -> bytes:
    """A JPEG of the panel ``png`` scaled to ``width`` pixels wide (aspect kept; a smaller panel
    keeps its size): ~25 KB where the panel is ~350 KB, for the index page."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
    if rgb.width > width:
        rgb = rgb.resize((width, max(1, round(rgb.height * width / rgb.width))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def build_figure(d: PanelData):
    """The panel's matplotlib Figure (Agg canvas), laid out but not yet saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=DPI)
    FigureCanvasAgg(fig)
    todo = cells(fig, d)
    nrows = math.ceil(len(todo) / NCOLS)
    h, w = d.size
    axes_h = AXES_W * min(max(h / w, 0.25), 2.0)  # extreme aspect ratios: the image is letterboxed
    fig_w = 2 * MARGIN + NCOLS * AXES_W + NCOLS * GAP_W
    fig_h = TOP_BAND + nrows * (TITLE_BAND + axes_h) + MARGIN
    fig.set_size_inches(fig_w, fig_h)
    grid = {"left": MARGIN / fig_w, "right": 1 - (MARGIN + GAP_W) / fig_w, "wspace": GAP_W / AXES_W,
            "top": 1 - (TOP_BAND + TITLE_BAND) / fig_h, "bottom": MARGIN / fig_h, "hspace": TITLE_BAND / axes_h}
    axes = fig.subplots(nrows, NCOLS, squeeze=False, gridspec_kw=grid).ravel()
    for ax, draw in zip(axes, todo):
        draw(ax)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(todo):]:
        ax.set_axis_off()
    fig.suptitle(suptitle(d), fontsize=TITLE_SIZE + 3, y=1 - 0.25 / fig_h, va="top")
    return fig
