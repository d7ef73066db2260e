"""Grounding a scene, plain or coarse to fine (the steps are in :mod:`rsvg_zeroov.scene`)."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import cli
from ..geo import GeoRef, MaskPiece
from ..raster import TIFF_SUFFIXES, Raster, RasterImage, RasterOptions, needs_raster_reader
from .windows import focus_windows

log = logging.getLogger(__name__)

DEFAULT_CELLS = 16384  # qwen_vl_utils' default pixel budget, in cells of the VLM's merged tokens
# StageProgress.stage of the overview of a scene beyond the budget: its reduced read and stage 1 on
# it, before any window's Grounder.ground_many (index 0: "stage 1/3").
SCENE_OVERVIEW = "overview (scene)"


@dataclass(frozen=True)
class SceneOptions:
    """Coarse-to-fine settings (:mod:`rsvg_zeroov.scene`). budget: pixels (None: the VLM's); margin:
    fraction of the seed box's size added on each side; min_window / max_window: window side bounds
    in native pixels (max None: the budget's side, so a window is read at native resolution;
    min_window is capped by it); windows: focus windows per phrase; join: seed dilation in cells."""

    budget: int | None = field(default=None, metadata=cli.flag(
        "--scene-budget", "pixels a scene may have to go through the plain path, and the size of the "
        "overview and window reads; none = the VLM's max_pixels", metavar="PIXELS"))
    margin: float = field(default=0.5, metadata=cli.flag(
        "--window-margin", "focus window: the seeds' box grown by this fraction of its size on each side"))
    min_window: int = field(default=1024, metadata=cli.flag(
        "--min-window", "focus window: at least this many native pixels a side", metavar="PIXELS"))
    max_window: int | None = field(default=None, metadata=cli.flag(
        "--max-window", "focus window: at most this many native pixels a side, around the strongest "
        "seed; none = the budget's side (a larger window is read reduced to the budget)", metavar="PIXELS"))
    windows: int = field(default=1, metadata=cli.flag(
        "--windows", "focus windows per phrase: the seed clusters with the highest peaks"))
    join: int = 1

    def __post_init__(self) -> None:
        if self.budget is not None and self.budget < 28 * 28:
            raise ValueError(f"--scene-budget {self.budget}: at least 784 pixels (one 28x28 cell)")
        if self.margin < 0 or self.min_window < 1 or self.windows < 1 or self.join < 0:
            raise ValueError("--window-margin must be >= 0, --min-window and --windows >= 1")
        if self.max_window is not None and self.max_window < self.min_window:
            raise ValueError(f"--max-window {self.max_window} is below --min-window {self.min_window}")


@dataclass(frozen=True, eq=False)
class ScenePiece(MaskPiece):
    """One window's share of a phrase's mask: ``window`` (col_off, row_off, width, height) scene
    pixels, ``mask`` bool (height, width) native resolution; ``result``: the
    :class:`~rsvg_zeroov.pipeline.GroundingResult` on the window image, read reduced by ``factor``."""

    result: object = None
    factor: int = 1


@dataclass(frozen=True, eq=False)
class SceneResult:
    """One phrase grounded in one scene.

    size: (H, W) scene pixels; georef: its georeferencing (None for a plain image); crs: whether it
    has a CRS; pieces: the mask, as :class:`ScenePiece` (disjoint; background elsewhere); box:
    inclusive XYXY scene pixels or None; score: the refiner's (best piece) or None; answer: the
    VLM's answer on the (first) window; plain: the scene fitted the budget (one piece, the whole
    scene); image: the scene as read (plain: the whole image; else the overview, shared by the
    phrases); overview_map: float32 (gh, gw) ``A_C`` of stage 1 on the overview (None if plain);
    windows: the focus windows; raster: what was read (``Raster.describe()``; None for PIL files);
    overview_seconds: wall-clock seconds of the :data:`SCENE_OVERVIEW` phase (the overview read and
    stage 1 on it) divided by the number of phrases, which share it (None if plain; the windows'
    own stages are in each piece's ``result.timings``).
    """

    text: str
    path: Path | None
    size: tuple[int, int]
    georef: GeoRef | None
    crs: bool
    pieces: tuple
    box: list[int] | None
    score: float | None
    answer: str
    plain: bool
    image: RasterImage
    overview_map: np.ndarray | None = None
    overview_answer: str | None = None
    windows: tuple = ()
    raster: dict | None = None
    overview_seconds: float | None = None

    @property
    def mask_pixels(self) -> int:
        return int(sum(int(p.mask.sum()) for p in self.pieces))

    def full_mask(self) -> np.ndarray:
        """bool (H, W) of the whole scene (H * W bytes: for scenes that fit in memory)."""
        out = np.zeros(self.size, bool)
        for p in self.pieces:
            c, r, w, h = p.window
            out[r:r + h, c:c + w] |= p.mask
        return out

    def image_mask(self) -> np.ndarray:
        """bool mask on the pixels of :attr:`image` (each image pixel takes the scene pixel at its
        centre): the full mask on the plain path, the mask seen on the overview otherwise."""
        if self.plain:
            return self.full_mask()
        oh, ow = self.image.rgb.shape[:2]
        fy, fx = self.image.factor
        ys = np.minimum(((np.arange(oh) + 0.5) * fy).astype(np.int64), self.size[0] - 1)
        xs = np.minimum(((np.arange(ow) + 0.5) * fx).astype(np.int64), self.size[1] - 1)
        out = np.zeros((oh, ow), bool)
        for p in self.pieces:
            c, r, w, h = p.window
            iy, ix = np.nonzero((ys >= r) & (ys < r + h))[0], np.nonzero((xs >= c) & (xs < c + w))[0]
            if iy.size and ix.size:
                out[np.ix_(iy, ix)] |= p.mask[np.ix_(ys[iy] - r, xs[ix] - c)]
        return out


def scene_budget(grounder, options: SceneOptions) -> int:
    """The budget in pixels: ``options.budget``, else the VLM's ``max_pixels``, else
    :data:`DEFAULT_CELLS` cells of its merged-token side (16384 * 28 * 28 for Qwen2.5-VL)."""
    if options.budget is not None:
        return int(options.budget)
    if grounder.config.overview.max_pixels is not None:
        return int(grounder.config.overview.max_pixels)
    cell = int(getattr(getattr(grounder.overview, "adapter", None), "cell", 28))
    return DEFAULT_CELLS * cell * cell


def uses_raster_reader(path: str | os.PathLike, budget: int, raster_options: RasterOptions) -> bool:
    """Whether ``path`` is read by :class:`~rsvg_zeroov.raster.Raster` (else by the released
    readers, through ``Grounder``): a raster they cannot decode, or a TIFF with bands asked for or
    beyond the budget."""
    path = Path(path)
    if needs_raster_reader(path):
        return True
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return False
    if raster_options.bands is not None:
        return True
    from ..images import image_hw

    h, w = image_hw(path)
    return h * w > budget


def check_scene(image, raster_options: RasterOptions | None = None) -> tuple[int, int]:
    """(H, W) of a scene :func:`ground_scene` can read, else ImageError / ValueError naming the file
    or flag; reads headers only, so it runs before any model loads."""
    from ..images import MIN_SIDE, ImageError
    from ..pipeline import image_input

    raster_options = raster_options or RasterOptions()
    if isinstance(image, (str, os.PathLike)) and Path(image).suffix.lower() in TIFF_SUFFIXES \
            and Path(image).is_file() and Path(image).stat().st_size:
        from ..raster import RasterError

        try:
            with Raster(image, raster_options) as raster:  # the band layout is checked here
                h, w = raster.height, raster.width
        except RasterError as exc:
            if "unreadable raster" not in str(exc):
                raise
        else:
            if min(h, w) < MIN_SIDE:
                raise ImageError(f"{image}: image is {w}x{h} pixels; the VLM needs at least {MIN_SIDE} "
                                 "pixels on each side")
            return h, w
    if raster_options.bands is not None:
        raise ValueError(f"--bands applies to rasters (GeoTIFF / TIFF); {image} is not one")
    return image_input(image).size


def ground_scene(grounder, image, texts: Sequence[str], options: SceneOptions | None = None,
                 raster_options: RasterOptions | None = None) -> list[SceneResult]:
    """Ground each of ``texts`` in the scene ``image`` (a file path, or a uint8 RGB (H, W, 3) array
    that fits the budget) with a loaded :class:`~rsvg_zeroov.pipeline.Grounder` (module doc)."""
    from ..images import ImageError, check_expression

    texts = [check_expression(t) for t in texts]
    if not texts:
        raise ValueError("no phrase to ground: give at least one expression")
    options, raster_options = options or SceneOptions(), raster_options or RasterOptions()
    budget = scene_budget(grounder, options)
    if not isinstance(image, (str, os.PathLike)):
        arr = np.asarray(image)
        if arr.ndim >= 2 and arr.shape[0] * arr.shape[1] > budget:
            raise ImageError(f"image array is {arr.shape[1]}x{arr.shape[0]}, beyond the pixel budget "
                             f"{budget}; pass the file path to ground it by windows")
        return _plain(grounder, image, texts, None, None)
    path = Path(image)
    if not uses_raster_reader(path, budget, raster_options):
        return _plain(grounder, path, texts, None, None)
    with Raster(path, raster_options) as raster:
        if raster.height * raster.width <= budget:
            return _plain(grounder, path, texts, raster, raster.overview(None, "reading raster"))
        return _coarse_to_fine(grounder, raster, texts, options, budget)


def _plain(grounder, image, texts, raster: Raster | None, read: RasterImage | None) -> list[SceneResult]:
    from ..evaluation.iou import tight_box
    from ..images import load_rgb

    if read is None:  # PIL-read file or array: the released readers, through Grounder
        results = grounder.ground_many(image, texts)
        rgb = load_rgb(image) if isinstance(image, (str, os.PathLike)) else np.ascontiguousarray(image)
        h, w = rgb.shape[:2]
        read = RasterImage(rgb, np.ones((h, w), bool), (0, 0, w, h), (1.0, 1.0))
    else:
        results = grounder.ground_many(read.rgb, texts)
    h, w = read.rgb.shape[:2]
    out = []
    for text, res in zip(texts, results):
        mask, box = res.mask, res.box
        if not read.valid.all():
            mask = mask & read.valid
            tight = tight_box(mask)
            box = None if tight is None else [int(v) for v in tight]
        piece = ScenePiece((0, 0, w, h), mask, result=res)
        out.append(_result(text, image, raster, (h, w), (piece,), box, res.sam_score, res.answer, read, True))
    return out


def _result(text, image, raster, size, pieces, box, score, answer, read, plain, **extra) -> SceneResult:
    path = Path(image) if isinstance(image, (str, os.PathLike)) else None
    georef, crs, described = None, False, None
    if raster is not None:
        described = raster.describe()
        if raster.georeferenced or not raster.georef.transform.is_identity:
            georef, crs = raster.georef, raster.georeferenced
    return SceneResult(text=text, path=path, size=size, georef=georef, crs=crs, pieces=tuple(pieces), box=box,
                       score=score, answer=answer, plain=plain, image=read, raster=described, **extra)


def _coarse_to_fine(grounder, raster: Raster, texts, options: SceneOptions, budget: int) -> list[SceneResult]:
    from ..progress import bar

    t0 = time.perf_counter()
    with _reported(grounder.progress, SCENE_OVERVIEW, "reading the scene reduced to the budget"):
        overview = raster.overview(budget)
        log.info("scene %s is %dx%d pixels, beyond the budget of %d: stage 1 on the overview (%dx%d), then "
                 "the pipeline on the focus window(s)", raster.path.name, raster.width, raster.height, budget,
                 overview.rgb.shape[1], overview.rgb.shape[0])
        log.info("stage 1/3 on the overview (VLM attention), %d phrase(s)", len(texts))
        coarse = grounder.overview([(overview.rgb, t) for t in texts])
    overview_seconds = (time.perf_counter() - t0) / len(texts)
    k = grounder.config.evolve.k
    windows = [focus_windows(ov.fused, overview, (raster.height, raster.width), k, options, budget) for ov in coarse]
    groups: dict[tuple, list[int]] = {}
    for i, wins in enumerate(windows):
        for win in wins:
            groups.setdefault(win, []).append(i)
    pieces: list[list[ScenePiece]] = [[] for _ in texts]
    with bar(len(groups), "focus windows", leave=True) as progress:
        for win, members in groups.items():
            read = raster.window(win, budget)
            f = int(round(read.factor[0]))
            results = grounder.ground_many(read.rgb, [texts[i] for i in members])
            valid = raster.valid(win)
            for i, res in zip(members, results):
                mask = res.mask if f == 1 else np.repeat(np.repeat(res.mask, f, 0), f, 1)[:win[3], :win[2]]
                pieces[i].append(ScenePiece(win, mask & valid, result=res, factor=f))
            progress.update()
    return [_result(text, raster.path, raster, (raster.height, raster.width), ps, scene_box(ps),
                    _best_score(ps), ps[0].result.answer if ps else "", overview, False,
                    overview_map=ov.fused, overview_answer=ov.answer, windows=tuple(windows[i]),
                    overview_seconds=overview_seconds)
            for i, (text, ps, ov) in enumerate(zip(texts, pieces, coarse))]


@contextmanager
def _reported(callback, stage: str, detail: str):
    """Report a phase outside ``Grounder.ground_many`` as ground_many reports its stages: a
    :class:`~rsvg_zeroov.pipeline.StageProgress` of ``stage`` (index 0) to ``callback`` (the
    Grounder's ``progress``; None: nothing) when it starts, then at every step of each library
    counter opened inside (the raster read's strips, stage 1's answer tokens; detail: the counter's
    name)."""
    from ..pipeline import StageProgress
    from ..progress import observe

    def emit(desc: str, step: int, total: int | None) -> None:
        callback(StageProgress(stage, 0, step, total, desc))

    if callback is None:
        yield
        return
    emit(detail, 0, None)
    with observe(emit):
        yield


def _best_score(pieces) -> float | None:
    scores = [p.result.sam_score for p in pieces if p.result.sam_score is not None]
    return max(scores) if scores else None


def scene_box(pieces: Sequence[MaskPiece]) -> list[int] | None:
    """Inclusive XYXY scene pixels around every piece's mask, or None when all are empty."""
    from ..evaluation.iou import tight_box

    boxes = []
    for p in pieces:
        b = tight_box(p.mask)
        if b is not None:
            c, r = p.window[:2]
            boxes.append((b[0] + c, b[1] + r, b[2] + c, b[3] + r))
    if not boxes:
        return None
    return [int(min(b[0] for b in boxes)), int(min(b[1] for b in boxes)),
            int(max(b[2] for b in boxes)), int(max(b[3] for b in boxes))]
