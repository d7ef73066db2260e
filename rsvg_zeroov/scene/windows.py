"""The focus windows of the coarse-to-fine path (:mod:`rsvg_zeroov.scene`, step 2): where, in a
scene beyond the pixel budget, the paper's pipeline runs at native resolution."""
from __future__ import annotations

import math

import numpy as np

from ..raster import RasterImage


def window_sides(options, budget: int) -> tuple[int, int]:
    """(smallest, largest) window side in native pixels: ``max_window``, else the budget's side
    (so that a window is read at native resolution), and ``min_window`` capped by it."""
    largest = int(options.max_window) if options.max_window is not None else math.isqrt(int(budget))
    return min(int(options.min_window), largest), largest


def focus_windows(a_c: np.ndarray, overview: RasterImage, size: tuple[int, int], k: int,
                  options, budget: int) -> list[tuple[int, int, int, int]]:
    """The focus windows (col_off, row_off, width, height) of one phrase (:mod:`rsvg_zeroov.scene`,
    step 2) from its fused overview map ``a_c`` (gh, gw); cells without a valid overview pixel are
    not seeds; window sides within :func:`window_sides`."""
    from scipy import ndimage

    from ..evolve.region import EIGHT_CONNECTED, top_k_seeds

    gh, gw = a_c.shape
    oh, ow = overview.valid.shape
    cell_valid = np.zeros((gh, gw), bool)
    np.logical_or.at(cell_valid, ((np.arange(oh) * gh // oh)[:, None], (np.arange(ow) * gw // ow)[None, :]),
                     overview.valid)
    if not cell_valid.any():
        return []
    c = np.where(cell_valid, a_c.astype(np.float64), -np.inf)
    seeds = top_k_seeds(c, k) & cell_valid
    grown = ndimage.binary_dilation(seeds, EIGHT_CONNECTED, iterations=options.join) if options.join else seeds
    labels, n = ndimage.label(grown, structure=EIGHT_CONNECTED)
    clusters = []
    for label in range(1, n + 1):
        cells = seeds & (labels == label)
        if cells.any():
            peak = np.unravel_index(np.argmax(np.where(cells, c, -np.inf)), c.shape)
            clusters.append((c[peak], peak, np.nonzero(cells)))
    clusters.sort(key=lambda t: -t[0])
    H, W = size
    sides = window_sides(options, budget)
    windows = []
    for _value, peak, (rows, cols) in clusters[:options.windows]:
        y0, y1 = rows.min() * H / gh, (rows.max() + 1) * H / gh
        x0, x1 = cols.min() * W / gw, (cols.max() + 1) * W / gw
        py, px = (peak[0] + 0.5) * H / gh, (peak[1] + 0.5) * W / gw
        ys = _span(y0, y1, py, H, options.margin, sides)
        xs = _span(x0, x1, px, W, options.margin, sides)
        windows.append((xs[0], ys[0], xs[1] - xs[0], ys[1] - ys[0]))
    return _merge(windows)


def _span(lo: float, hi: float, peak: float, limit: int, margin: float, sides: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of one window side in scene pixels, inside [0, limit): [lo, hi) grown by
    ``margin`` of its length on each side, then to the smallest side (centred), then cut to the
    largest (centred on ``peak`` as far as the grown span allows)."""
    smallest, largest = sides
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    if hi - lo < smallest:
        centre = (lo + hi) / 2
        lo, hi = centre - smallest / 2, centre + smallest / 2
    if hi - lo > largest:
        centre = min(max(peak, lo + largest / 2), hi - largest / 2)
        lo, hi = centre - largest / 2, centre + largest / 2
    size = min(math.floor(hi - lo + 1e-9), limit)
    start = min(max(math.floor(lo + 1e-9), 0), limit - size)
    return start, start + size


def _merge(windows: list) -> list:
    """Overlapping windows replaced by their bounding window until none overlap (order kept)."""
    out = list(windows)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]:
                    c0, r0 = min(a[0], b[0]), min(a[1], b[1])
                    c1, r1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    out[i] = (c0, r0, c1 - c0, r1 - r0)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out
