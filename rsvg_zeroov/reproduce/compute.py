"""Every pending row of one sample from one read of its dumps (the harness's inner loop).

:class:`~rsvg_zeroov.reproduce.dumps.SampleDumps` reads the stage-1 map and sidecar and each
stage-2 matrix the pending rows need, once. :class:`Variants` derives the rows from them, sharing
what rows have in common: ``c`` per fidelity, ``S`` per set of files, ``A_CS`` per (fidelity,
files), the seeds, region and upsampled ``A_E`` per (K, tau) (a change of alpha is one
more threshold of it, as in the sweep). Each step is the stage's own function (:func:`~rsvg_zeroov.evolve.interaction.normalise_c`,
:func:`~rsvg_zeroov.evolve.interaction.propagate`, :func:`~rsvg_zeroov.evolve.evolve.evolve_maps`,
:func:`~rsvg_zeroov.evolve.resample.binarise`; the
mean of the matrices as :func:`~rsvg_zeroov.evolve.interaction.mean_s` computes it), so
a row's mask is the one ``rs_evolve.py`` writes under the same settings, to the pixel. Scores are
the evaluator's (:func:`rsvg_zeroov.evaluation.scoring.score_sample`).

Refinement runs afterwards, in the caller's thread, in image order (:class:`ImageFeeder`: one
embedding per image for all refined rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluation.scoring import SampleScore, missing_score, score_sample, score_window
from ..evolve.evolve import EvolveResult, evolve_maps
from ..evolve.interaction import normalise_c, propagate
from ..evolve.resample import binarise, binarise_local, upsample_window
from ..npyio import DumpError
from ..rundir import RunDir
from .baselines import box_mask, diffpng_mask, vlm_box
from .dumps import SampleDumps, error_text as _error, thread_buffers
from .rows import Row, row_config


class RowFailed(Exception):
    """A row cannot be computed for this sample (its message is recorded for the row)."""


class Variants:
    """The rows of one sample from its dumps, with the shared intermediate results memoised.

    size: (H, W) of the original image in pixels."""

    def __init__(self, dumps: SampleDumps, size: tuple[int, int]):
        self.dumps, self.size = dumps, tuple(size)
        self._c: dict = {}
        self._a_cs: dict = {}
        self._maps: dict = {}

    def _a_c(self) -> np.ndarray:
        if self.dumps.a_c is None:
            raise RowFailed(self.dumps.error)
        return self.dumps.a_c

    def s(self, names: tuple[str, ...]) -> np.ndarray:
        """``S`` float32 (1024, 1024): the mean of ``names``, as stage 3 reads it (read only)."""
        try:
            return self.dumps.s(names)
        except DumpError as exc:
            raise RowFailed(str(exc)) from None

    def c(self, fidelity: str) -> np.ndarray:
        if fidelity not in self._c:
            self._c[fidelity] = normalise_c(self._a_c(), fidelity)
        return self._c[fidelity]

    def a_cs(self, row: Row) -> np.ndarray:
        cfg = row.config
        key = (cfg.fidelity, row.focus_files()) if cfg.use_dm else (cfg.fidelity, None)
        if key not in self._a_cs:
            c = self.c(cfg.fidelity)
            self._a_cs[key] = propagate(c, self.s(key[1])) if cfg.use_dm else c
        return self._a_cs[key]

    def evolve_maps(self, row: Row):
        """(seeds, region, A_E, upsampled window) of an ``evolve`` row, shared over alpha."""
        cfg = row.config
        key = (cfg.fidelity, row.focus_files(), cfg.use_dm, cfg.use_evolve, cfg.k, cfg.tau)
        if key not in self._maps:  # the stage's own step, once per distinct setting
            seeds, region, a_e = evolve_maps(self.c(cfg.fidelity), self.a_cs(row), cfg.k, cfg.tau, cfg.use_evolve)
            self._maps[key] = (seeds, region, a_e, upsample_window(a_e, self.size))
        return self._maps[key]

    def evolve_result(self, row: Row) -> EvolveResult:
        """What :func:`rsvg_zeroov.evolve.evolve` returns for the row's config."""
        seeds, region, a_e, window = self.evolve_maps(row)
        mask = binarise(window, self.size, row.config.alpha)
        return EvolveResult(c=self.c(row.config.fidelity), a_cs=self.a_cs(row), seeds=seeds, region=region,
                            a_e=a_e, mask=mask)

    def part(self, row: Row) -> tuple[np.ndarray, tuple[int, int]]:
        """The row's mask as ``(part, (y0, x0))`` (:func:`~rsvg_zeroov.evolve.resample.binarise_local`),
        for scoring without refinement: an ``evolve`` row's window only, other rows whole."""
        if row.kind == "evolve":
            return binarise_local(self.evolve_maps(row)[3], self.size, row.config.alpha)
        return self.mask(row)[0], (0, 0)

    def mask(self, row: Row) -> tuple[np.ndarray, EvolveResult | None]:
        """(the row's mask before refinement, bool (H, W); the EvolveResult of an ``evolve`` row)."""
        if row.kind == "evolve":
            result = self.evolve_result(row)
            return result.mask, result
        if row.kind == "vlm-box":
            if self.dumps.meta is None:
                raise RowFailed(self.dumps.error)
            try:
                return box_mask(vlm_box(self.dumps.meta), self.size), None
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise RowFailed(_error(exc)) from None
        return diffpng_mask(self._a_c(), self.s(row.focus_files()), self.size), None


@dataclass
class SampleOutcome:
    """One sample's results. scores: row name -> SampleScore; errors: row name -> message (its
    score is the missing score); to_refine: (row, mask before refinement, EvolveResult or None);
    masks: row name -> final bool (H, W) mask, when asked for."""

    sample: object
    gt_mask: np.ndarray | None
    gt_box: object
    gt_area: int | None = None
    scores: dict[str, SampleScore] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    to_refine: list = field(default_factory=list)
    masks: dict = field(default_factory=dict)

    def score(self, name: str, mask: np.ndarray | None, protocol) -> None:
        size = (self.sample.height, self.sample.width)
        self.scores[name] = score_sample(mask, self.gt_mask, self.gt_box, protocol, image_size=size)

    def score_part(self, name: str, part: np.ndarray, offset: tuple[int, int], protocol) -> None:
        """:meth:`score` of the mask that is ``part`` at ``offset`` (:meth:`Variants.part`)."""
        size = (self.sample.height, self.sample.width)
        self.scores[name] = score_window(part, offset, size, self.gt_mask, self.gt_box, protocol, gt_area=self.gt_area)

    def fail(self, name: str, message: str, protocol) -> None:
        size = (self.sample.height, self.sample.width)
        self.errors[name] = message
        self.scores[name] = missing_score(self.gt_mask, self.gt_box, protocol, image_size=size)


def compute_sample(run: RunDir, sample, rows: list[Row], protocol, keep_masks: bool = False) -> SampleOutcome:
    """Score every row of ``rows`` on ``sample`` that needs no refinement; refined rows come back
    in ``to_refine``. ``keep_masks``: also keep each row's mask (``outcome.masks``, for figures).
    A data set problem (an unreadable ground truth) raises; a row's own problem is recorded."""
    from ..evaluation.evaluator import load_gt_mask
    from ..evaluation.iou import tight_box

    alone = frozenset(r.focus_files()[0] for r in rows if len(r.focus_files()) == 1)
    dumps = SampleDumps(run, sample.sample_id, thread_buffers(), alone)
    gt_mask = load_gt_mask(sample)
    gt_box = sample.box if sample.box is not None or gt_mask is None else tight_box(gt_mask)  # once, not per row
    outcome = SampleOutcome(sample, gt_mask, gt_box, None if gt_mask is None else int(np.count_nonzero(gt_mask)))
    variants = Variants(dumps, (sample.height, sample.width))
    for row in rows:
        whole = row.sam or keep_masks  # the (H, W) mask is needed; else the row's window is scored
        try:
            if whole:
                mask, result = variants.mask(row)
            else:
                part, offset = variants.part(row)
        except RowFailed as exc:
            outcome.fail(row.name, str(exc), protocol)
            continue
        except Exception as exc:  # noqa: BLE001 - one row's failure must not stop the others
            outcome.fail(row.name, _error(exc), protocol)
            continue
        if not whole:
            outcome.score_part(row.name, part, offset, protocol)
        elif row.sam:
            outcome.to_refine.append((row, mask, result))
        else:
            outcome.score(row.name, mask, protocol)
            outcome.masks[row.name] = mask
    return outcome


def scores_only(job: tuple) -> SampleOutcome:
    """:func:`compute_sample` of ``(run, sample, rows, protocol)`` (no refined rows) without its
    masks: what a worker process sends back."""
    outcome = compute_sample(*job)
    if outcome.to_refine:
        raise ValueError("scores_only computes rows without refinement")
    outcome.gt_mask, outcome.masks = None, {}
    return outcome


class ImageFeeder:
    """Gives the refiner each sample's image as the row's fidelity reads it
    (:func:`rsvg_zeroov.evolve.refine.image_reader`), embedding an image once for all its refined
    rows, and again only when another fidelity's reading gives other pixels (RGBA, palette or
    16-bit files)."""

    def __init__(self, refiner):
        self.refiner = refiner
        self.current: tuple[Path, str] | None = None
        self._rgb: np.ndarray | None = None

    def use(self, sample, fidelity: str) -> None:
        from ..evolve.refine import image_reader

        path, size = Path(sample.image_path), (sample.height, sample.width)
        if self.current == (path, fidelity):
            return
        if not getattr(self.refiner, "needs_pixels", True):  # box-fill: the size is all it reads
            self.refiner.use_image(path, size)
            self.current = (path, fidelity)
            return
        rgb = image_reader(fidelity)(path)
        if rgb.shape[:2] != size:
            raise ValueError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the data set says "
                             f"{size[1]}x{size[0]}; fix the annotation or the image")
        if self.current is None or self.current[0] != path or not np.array_equal(rgb, self._rgb):
            self.refiner.set_image(rgb, key=path)
        self.current, self._rgb = (path, fidelity), rgb


def refine_outcome(outcome: SampleOutcome, refiner, feeder: ImageFeeder, protocol, keep_masks: bool = False) -> None:
    """Refine and score the outcome's refined rows (an empty mask skips the refiner: empty prediction)."""
    size = (outcome.sample.height, outcome.sample.width)
    # released-fidelity rows first: the image is read a second way at most once per sample
    for row, mask, result in sorted(outcome.to_refine, key=lambda job: job[0].config.fidelity != "released"):
        try:
            if mask.any():
                feeder.use(outcome.sample, row.config.fidelity)
                if result is not None:  # a stage-3 variant: prompted as its config says
                    from ..evolve.refine import refine_result

                    mask, _score = refine_result(refiner, result, row_config(row), size)
                else:  # a mask from elsewhere (the VLM's box): its tight box is the prompt
                    mask, _score = refiner.refine(mask)
        except Exception as exc:  # noqa: BLE001 - recorded for this row, the others go on
            outcome.fail(row.name, _error(exc), protocol)
            continue
        outcome.score(row.name, np.asarray(mask, dtype=bool), protocol)
        if keep_masks:
            outcome.masks[row.name] = np.asarray(mask, dtype=bool)
    outcome.to_refine = []
