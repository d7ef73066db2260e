"""Draw the panels of a run and its index page (what ``tools/visualize.py`` calls).

Writes ``RUN/panels/<id>.png`` and its thumbnail ``RUN/thumbs/<id>.jpg`` per sample and
``RUN/index.html``, each atomically. A sample whose
inputs are missing or bad (overview dump, focus dumps or maps npz, image, masks) is skipped, with
the error naming the file in the report (logged, and listed on the page); the others are drawn.
"""
from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator, Sequence

from ..evolve.config import EvolveConfig
from ..rundir import RunDir, atomic_write_bytes
from .data import gather, load_evolve_config
from .index import THUMB_WIDTH, IndexEntry, render_index
from .panel import render_panel, thumbnail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisualizeReport:
    """drawn: one entry per panel written (data set order); skipped: (sample id, error message)."""

    drawn: tuple[IndexEntry, ...]
    skipped: tuple[tuple[str, str], ...]
    index: Path


def draw_sample(run: RunDir, sample, config: EvolveConfig, protocol: str | None) -> IndexEntry:
    """Gather, render and write one sample's panel; raises ValueError/OSError on bad inputs."""
    sid = sample.sample_id
    data = gather(run, sample, config, protocol)
    png = render_panel(data)
    atomic_write_bytes(run.panel_png(sid), png)
    atomic_write_bytes(run.thumb_jpg(sid), thumbnail(png, THUMB_WIDTH))
    return IndexEntry(sid, sample.expression, data.iou, data.iou_kind, run.panel_rel(sid), run.thumb_rel(sid))


def _draw_job(job: tuple) -> tuple[IndexEntry | None, str | None]:
    """(entry, None) for a drawn sample, (None, error naming the file) for a skipped one."""
    run, sample, config, protocol = job
    try:
        return draw_sample(run, sample, config, protocol), None
    except (ValueError, OSError) as exc:  # a bad input names its file; the rest are drawn
        return None, str(exc)


def _outcomes(jobs: list[tuple], workers: int) -> Iterator[tuple[IndexEntry | None, str | None]]:
    """:func:`_draw_job` over ``jobs`` in order: in this process (``workers`` <= 1 or one job), else
    in up to ``workers`` spawned processes (matplotlib drawing is CPU-bound Python)."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        yield from map(_draw_job, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(_draw_job, jobs, chunksize=4)


def visualize_run(run: RunDir | str | Path, samples: Sequence, *, config: EvolveConfig | None = None,
                  protocol: str | None = None, title: str | None = None, workers: int = 1,
                  show_progress: bool = True) -> VisualizeReport:
    """Draw every sample's panel, then the index page of the drawn ones (worst IoU first).

    config: stage 3 settings for recomputing the soft maps (default: ``RUN/evolve_config.json``,
    else the paper defaults). protocol: evaluation protocol of the IoU (default zeroov).
    workers: drawing processes (1 = this process).
    """
    from ..progress import bar as progress_bar

    run = run if isinstance(run, RunDir) else RunDir(run)
    config = config if config is not None else load_evolve_config(run)
    jobs = [(run, sample, config, protocol) for sample in samples]
    outcomes = _outcomes(jobs, workers)
    drawn, skipped = [], []
    with progress_bar(len(jobs), "visualize", leave=True) if show_progress else nullcontext() as bar:
        for sample, (entry, error) in zip(samples, outcomes):
            if entry is not None:
                drawn.append(entry)
            else:
                skipped.append((sample.sample_id, error))
                log.warning("skipped %s: %s", sample.sample_id, error)
            if bar is not None:
                bar.update()
    page = render_index(drawn, skipped, title or f"RSVG-ZeroOV run {run.root}")
    atomic_write_bytes(run.index_html, page.encode("utf-8"))
    return VisualizeReport(tuple(drawn), tuple(skipped), run.index_html)
