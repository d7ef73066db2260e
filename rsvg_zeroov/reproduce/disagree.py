"""The samples where the rows disagree most: the largest spread (max - min) of the per-sample IoU
over the rows of the main and ablation tables that ran (mask IoU where the data set has masks,
else box IoU; a failed row counts as IoU 0).

For those samples (10 by default) every row's mask is recomputed from the dumps (the harness's own
per-sample code) and drawn side by side in ``RUN/tables/disagreement.png``; the attention panels of
``tools/visualize.py`` (:func:`rsvg_zeroov.visualize.visualize_run`) go to
``RUN/tables/disagreement/panels/<id>.png`` with an index page, the final mask shown there being
the method's (``rsvg-zeroov``, else ``no-sam``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..rundir import RunDir, save_mask_png
from .rows import LAYOUT

log = logging.getLogger(__name__)
SHOWN_FINAL = ("rsvg-zeroov", "no-sam")  # the row whose mask the panels show as final


def compared_states(states: dict, tables: Sequence[str]) -> list:
    """The rows of the main / ablation tables that ran, each once, in table order."""
    names = dict.fromkeys(n for t in tables if t in LAYOUT for n, _ in LAYOUT[t])
    return [states[n] for n in names if states[n].reason is None]


def iou_of(entry, has_mask: bool) -> float:
    score = entry.score
    return float(score.mask_iou if has_mask and score.mask_iou is not None else score.box_iou)


def most_disagreeing(samples: Sequence, compared: list, n: int) -> list:
    """The ``n`` samples with the largest IoU spread over ``compared`` rows (ties: data set order)."""
    if len(compared) < 2:
        return []
    spreads = []
    for i, s in enumerate(samples):
        has_mask = s.mask is not None
        ious = [iou_of(st.entries[s.sample_id], has_mask) for st in compared]
        spreads.append((-(max(ious) - min(ious)), i))
    return [samples[i] for _, i in sorted(spreads)[:n]]


def recompute_masks(run: RunDir, sample, rows: list, protocol: str, refiner) -> dict[str, np.ndarray]:
    """Every row's final mask of one sample (refined rows only when ``refiner`` is given)."""
    from .compute import ImageFeeder, compute_sample, refine_outcome

    outcome = compute_sample(run, sample, rows, protocol, keep_masks=True)
    if outcome.to_refine and refiner is not None:
        refine_outcome(outcome, refiner, ImageFeeder(refiner), protocol, keep_masks=True)
    return outcome.masks


def grid_figure(samples: Sequence, compared: list, masks: dict, path: Path, tag: str) -> Path:
    """Rows: samples; columns: the image with the ground truth, then each row's mask and IoU."""
    from ..visualize.data import load_image
    from ..visualize.panel import GT_RGB, MASK_RGB, overlay, wrap
    from .figures import new_figure, save

    cols = 1 + len(compared)
    fig = new_figure(1.4 * cols, 1.6 * len(samples) + 0.6, dpi=80)
    for r, sample in enumerate(samples):
        image = load_image(sample)
        step = max(1, int(np.ceil(max(image.shape[:2]) / 256)))
        small = image[::step, ::step]
        gt = sample.load_mask()
        ax = fig.add_subplot(len(samples), cols, r * cols + 1)
        ax.imshow(overlay(small, None if gt is None else gt[::step, ::step], GT_RGB))
        ax.set_title(wrap(f"{sample.sample_id}: {sample.expression}", 24, 3), fontsize=5)
        ax.axis("off")
        for c, state in enumerate(compared):
            ax = fig.add_subplot(len(samples), cols, r * cols + 2 + c)
            mask = masks[sample.sample_id].get(state.row.name)
            ax.imshow(overlay(small, None if mask is None else mask[::step, ::step], MASK_RGB))
            iou = iou_of(state.entries[sample.sample_id], gt is not None)
            shown = "not redrawn" if mask is None else f"IoU {iou:.2f}"
            ax.set_title(f"{state.row.name}\n{shown}", fontsize=5)
            ax.axis("off")
    fig.suptitle(f"The {len(samples)} samples where the rows disagree most (largest IoU spread){tag}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return save(fig, path)


def write_disagreement(run: RunDir, samples: Sequence, states: dict, options, refiner, redraw: bool,
                       tag: str) -> list[Path]:
    """``RUN/tables/disagreement.png`` and the panels of the most disagreeing samples."""
    from ..evolve.config import EvolveConfig
    from ..visualize import visualize_run
    from .tables import tables_dir

    path = tables_dir(run) / "disagreement.png"
    target = RunDir(tables_dir(run) / "disagreement", source=run.source)
    if not redraw and path.is_file() and target.index_html.is_file():
        return [path, target.index_html]
    compared = compared_states(states, options.tables)
    chosen = most_disagreeing(samples, compared, options.panels)
    if not chosen:
        return []
    if refiner is None and any(st.row.sam for st in compared):
        from .harness import build_refiner

        refiner = build_refiner(options)
    rows = [st.row for st in compared]
    masks = {s.sample_id: recompute_masks(run, s, rows, options.protocol, refiner) for s in chosen}
    grid_figure(chosen, compared, masks, path, tag)
    final = next((n for n in SHOWN_FINAL if any(st.row.name == n for st in compared)), rows[0].name)
    for s in chosen:
        mask = masks[s.sample_id].get(final)
        if mask is not None:
            save_mask_png(target.mask_png(s.sample_id), mask)
    report = visualize_run(target, chosen, config=EvolveConfig(refiner=None), protocol=options.protocol,
                           title=f"The {len(chosen)} samples where the rows disagree most (final mask: {final})",
                           show_progress=False)
    for sid, error in report.skipped:
        log.warning("[reproduce] disagreement panel of %s skipped: %s", sid, error)
    return [path, report.index]
