"""Inspecting a run: one panel per sample of every attention map and mask, and an index page.

    from rsvg_zeroov.visualize import visualize_run
    report = visualize_run("outputs/rrsisd_test", samples)   # RUN/panels/<id>.png, RUN/index.html

Modules: :mod:`.data` gathers a sample's maps, masks and IoU from the run directory;
:mod:`.panel` draws them (matplotlib, Agg); :mod:`.index` writes the HTML page; :mod:`.driver`
loops over samples. Importing this package loads NumPy and SciPy (via :mod:`rsvg_zeroov.evolve`); matplotlib loads
when a panel is drawn, torch only when float16 focus dumps are converted.
"""
from .data import PanelData, gather, load_evolve_config, load_maps_npz
from .driver import VisualizeReport, visualize_run
from .index import IndexEntry, render_index
from .panel import render_panel

__all__ = [
    "IndexEntry", "PanelData", "VisualizeReport", "gather", "load_evolve_config",
    "load_maps_npz", "render_index", "render_panel", "visualize_run",
]
