"""The figures next to the tables (matplotlib, Agg, PNG) in ``RUN/tables/``:

- ``main.png``: a bar chart of the main table, ours beside the paper's value, one panel per metric;
- ``sensitivity_heatmap.png``: the K x tau grid of each metric, one panel per alpha, the best cell
  of each panel boxed and the best of all starred;
- ``sensitivity_lines.png``: each parameter varied around the paper's value, the others at theirs;
- ``disagreement.png`` and ``disagreement/panels/<id>.png`` (:mod:`rsvg_zeroov.reproduce.disagree`).

Figures are redrawn when a row was computed in this run or a file is missing.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ..evaluation.report import DEFAULT_COMPARE, lookup, metric_label
from ..rundir import RunDir, atomic_write_bytes
from .tables import sensitivity_records, table_entries, tables_dir

DPI = 100
OURS_COLOR, PAPER_COLOR = "#1f77b4", "#9a9a9a"


def new_figure(width: float, height: float, dpi: int = DPI):
    """A matplotlib Figure on its own Agg canvas (no pyplot state); sizes in inches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def bar_chart(entries: Sequence[tuple], title: str, path: Path) -> Path:
    """One panel per metric of the main table: a pair of bars per row (ours, the paper's)."""
    names = [e[0] for e in entries]
    fig = new_figure(max(8.0, 1.1 * len(names) + 2), 7.5)
    x = np.arange(len(names))
    for i, key in enumerate(DEFAULT_COMPARE):
        ax = fig.add_subplot(2, 2, i + 1)
        ours = [lookup(e[2], key) if e[2] else None for e in entries]
        paper = [e[3].get(key) for e in entries]
        for offset, values, color, label in ((-0.2, ours, OURS_COLOR, "ours"), (0.2, paper, PAPER_COLOR, "paper")):
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x + offset, heights, width=0.4, color=color, label=label)
            for xi, v in zip(x, values):
                ax.text(xi + offset, 0 if v is None else v, "–" if v is None else f"{v:.1f}", ha="center",
                        va="bottom", fontsize=7)
        ax.set_title(metric_label(key), fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("%")
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save(fig, path)


def _metrics(records: Sequence[dict]) -> list[str]:
    return [m for m in ("rsrec_mIoU", "rsres_mIoU") if any(r.get(m) is not None for r in records)]


def heatmaps(records: Sequence[dict], title: str, path: Path) -> Path | None:
    """K (rows) x tau (columns) per alpha (panel columns) and metric (panel rows)."""
    from ..evolve.config import PAPER

    metrics = _metrics(records)
    if not records or not metrics:
        return None
    cells = {(r["k"], r["tau"], r["alpha"]) for r in records}
    ks, taus, alphas = (sorted({r[p] for r in records}) for p in ("k", "tau", "alpha"))
    fig = new_figure(1.2 + 0.9 * len(taus) * len(alphas) + 1.0 * len(alphas), 1.0 + 2.6 * len(metrics))
    for mi, metric in enumerate(metrics):
        grid = np.full((len(alphas), len(ks), len(taus)), np.nan)
        for r in records:
            if r.get(metric) is not None:
                grid[alphas.index(r["alpha"]), ks.index(r["k"]), taus.index(r["tau"])] = r[metric]
        best = np.unravel_index(np.nanargmax(grid), grid.shape) if np.isfinite(grid).any() else None
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for ai, alpha in enumerate(alphas):
            ax = fig.add_subplot(len(metrics), len(alphas), mi * len(alphas) + ai + 1)
            im = ax.imshow(grid[ai], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9, aspect="auto")
            mid = (lo + hi) / 2
            for (ki, ti), v in np.ndenumerate(grid[ai]):
                if np.isfinite(v):
                    ax.text(ti, ki, f"{v:.1f}", ha="center", va="center", fontsize=7,
                            color="black" if v > mid else "white")
            if (PAPER.k, PAPER.tau, PAPER.alpha) in cells and alpha == PAPER.alpha:
                ax.add_patch(_rect(taus.index(PAPER.tau), ks.index(PAPER.k), "white", dashed=True))
            if np.isfinite(grid[ai]).any():
                ki, ti = np.unravel_index(np.nanargmax(grid[ai]), grid[ai].shape)
                ax.add_patch(_rect(ti, ki, "#ff3030"))
            if best is not None and best[0] == ai:
                ax.plot(best[2] + 0.32, best[1] - 0.28, marker="*", color="#ffd700", markersize=12,
                        markeredgecolor="black")  # in the cell's corner, beside its value
            ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus], fontsize=7)
            ax.set_yticks(range(len(ks)), [str(k) for k in ks], fontsize=7)
            ax.set_xlabel("tau", fontsize=8)
            ax.set_ylabel("K", fontsize=8)
            ax.set_title(f"{metric.replace('_', ' ').upper().replace('MIOU', 'mIoU')}, alpha {alpha:g}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title + " (red box: best of the panel; star: best of the grid; dashed: the paper's setting)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)


def _rect(x: float, y: float, color: str, dashed: bool = False):
    from matplotlib.patches import Rectangle

    inset = 0.12 if dashed else 0.0  # the paper's cell inside the best-cell box when they coincide
    return Rectangle((x - 0.5 + inset, y - 0.5 + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False,
                     edgecolor=color, linewidth=1.5 if dashed else 2.5, linestyle="--" if dashed else "-")


def line_plots(records: Sequence[dict], title: str, path: Path) -> Path | None:
    """Each of K, tau, alpha varied with the other two at the paper's values (paper value dashed)."""
    from ..evolve.config import PAPER

    metrics = _metrics(records)
    if not records or not metrics:
        return None
    paper = {"k": PAPER.k, "tau": PAPER.tau, "alpha": PAPER.alpha}
    fig = new_figure(12, 3.6)
    for i, param in enumerate(("k", "tau", "alpha")):
        ax = fig.add_subplot(1, 3, i + 1)
        line = sorted((r for r in records if all(r[p] == paper[p] for p in paper if p != param)),
                      key=lambda r: r[param])
        for metric in metrics:
            pts = [(r[param], r[metric]) for r in line if r.get(metric) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=metric.replace("_", " ").upper().replace("MIOU", "mIoU"))
        ax.axvline(paper[param], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"{param} (paper {paper[param]:g}; others at the paper's values)", fontsize=8)
        ax.set_ylabel("%")
        if not line:
            ax.set_title("the grid holds no line through the paper's values", fontsize=8)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return save(fig, path)


def write_figures(run: RunDir, samples: Sequence, states: dict, options, refiner, redraw: bool,
                  dataset: str) -> list[Path]:
    """Every figure of the tables asked for; existing ones are kept unless ``redraw``."""
    from . import disagree
    from .tables import stand_in_note

    out = tables_dir(run)
    tiny = bool(stand_in_note(run, [s.sample_id for s in samples[:1]]))
    tag = " - RANDOM-WEIGHT STAND-IN MODELS" if tiny else ""
    planned = {}
    if "main" in options.tables:
        planned["main.png"] = lambda p: bar_chart(table_entries("main", states, dataset),
                                                  f"Main table: ours vs the paper{tag}", p)
    if "sensitivity" in options.tables:
        records = sensitivity_records(states)
        planned["sensitivity_heatmap.png"] = lambda p: heatmaps(records, f"Sensitivity{tag}", p)
        planned["sensitivity_lines.png"] = lambda p: line_plots(records, f"Sensitivity around the paper's values{tag}", p)
    written = []
    for name, draw in planned.items():
        path = out / name
        if redraw or not path.is_file():
            path = draw(path)
        if path is not None:
            written.append(path)
    if any(t in options.tables for t in ("main", "ablation")) and options.panels > 0:
        written += disagree.write_disagreement(run, samples, states, options, refiner, redraw, tag)
    return written

