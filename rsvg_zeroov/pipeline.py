"""All three stages in one process: load each model once, then ground many (image, phrase) pairs.

    grounder = Grounder(PipelineConfig()).load()        # Qwen2.5-VL, SD v1.4, SAM ViT-H
    result = grounder.ground("scene.png", "the storage tank left of the road")
    result.mask  # bool (H, W);  result.box  # [x1, y1, x2, y2] inclusive pixels, or None

An image given as a path is read by each stage as its released script reads the file
(docs/method.md, "How each stage reads the image"): the VLM gets the path (``qwen_vl_utils``),
Stable Diffusion :func:`rsvg_zeroov.images.read_for_diffusion`, the refiner the same reader as
stage 3 of a data set run. A uint8 (H, W, 3) array goes to all three as it is. The stages are the
library objects the stage scripts use, so one-image results equal a data set run with the same
settings. :meth:`PipelineConfig.quick_tiny` is the "try it quickly" configuration.

Interfaces (the interactive page) pass ``progress=`` to :meth:`Grounder.ground_many` to follow the
stages (:class:`StageProgress`), read :attr:`GroundingResult.timings`, and change the per-request
settings without reloading a model with :meth:`Grounder.reconfigured`. Neither changes a result.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .evolve.config import EvolveConfig
from .focus.config import FocusConfig
from .overview.config import OverviewConfig

log = logging.getLogger(__name__)

# The cheap documented settings the tiny stand-ins default to (docs/method.md, cheaper modes):
# (config section, field, value).
QUICK = (("focus", "inversion", "ddim"), ("overview", "max_new_tokens", 16),
         ("overview", "stop_at_bracket", True))
TINY = "tiny"
# How the API names the model settings in a missing-model message (ground.py passes its flags).
API_FLAGS = {"vlm": "PipelineConfig.overview.model", "diffusion": "PipelineConfig.focus.model",
             "refiner": "PipelineConfig.evolve.refiner_checkpoint"}
# The progress stages of ground_many, in order (StageProgress.stage); index + 1 = "stage i/3".
STAGES = ("overview", "focus", "evolve")
# What stage 2's step counter counts, per inversion mode: one phase per num_steps steps
# (Focus.progress_steps); "noise" is one forward pass.
FOCUS_PHASES = {"nulltext": ("DDIM inversion", "null-text optimisation", "re-denoising"),
                "ddim": ("DDIM inversion", "re-denoising"), "noise": ("one noisy forward pass",)}
# The settings that decide which model weights are loaded: a reconfigured Grounder keeps them.
MODEL_FIELDS = {"overview": ("model", "dtype"), "focus": ("model", "dtype")}


@dataclass(frozen=True)
class PipelineConfig:
    """The three stage configs (paper defaults) plus the device."""

    overview: OverviewConfig = field(default_factory=OverviewConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    device: str | None = None

    @classmethod
    def quick_tiny(cls, **sections) -> "PipelineConfig":
        """The offline random-weight stand-ins with the quick settings (:data:`QUICK`).

        ``sections``: ``overview=`` / ``focus=`` / ``evolve=`` configs or ``device=``, used instead
        of the defaults; fields they set away from the defaults are kept (not made quick). A field
        left at its default cannot be told from an unset one: to run e.g. the paper's null-text
        inversion on the stand-ins, ``quick_tiny().replace(focus={"inversion": "nulltext"})``.
        """
        config = cls(**sections)
        config = config.replace(overview={"model": config.overview.model or TINY},
                                focus={"model": config.focus.model or TINY}, evolve=tiny_refiner(config.evolve))
        given = {(name, key) for name, key, _ in QUICK
                 if getattr(getattr(config, name), key) != getattr(type(getattr(config, name))(), key)}
        return config.with_quick_settings(given)

    def replace(self, **sections) -> "PipelineConfig":
        """A copy with section fields replaced: ``replace(focus={"inversion": "ddim"})``; a value
        that is a config object replaces the whole section."""
        out = {}
        for name, change in sections.items():
            if isinstance(change, dict):
                out[name] = dataclasses.replace(getattr(self, name), **change)
            else:
                out[name] = change
        return dataclasses.replace(self, **out)

    def with_quick_settings(self, given=frozenset()) -> "PipelineConfig":
        """The :data:`QUICK` settings applied, except the ``(section, field)`` pairs in ``given``
        (what the user set); logs one line saying which were applied."""
        changes: dict[str, dict] = {}
        for section, name, value in QUICK:
            if (section, name) not in given:
                changes.setdefault(section, {})[name] = value
        if changes:
            said = ", ".join(f"{k}={v}" for c in changes.values() for k, v in c.items())
            log.info("tiny stand-in models: quick settings %s (set them explicitly to change; the real "
                     "models keep the paper's)", said)
        return self.replace(**changes)


def tiny_refiner(config: EvolveConfig) -> EvolveConfig:
    """``config`` with the tiny SAM stand-in where it asks for the default refiner without a
    weights file; another refiner (``box-fill``, a given checkpoint, none) is kept."""
    if config.refiner == EvolveConfig.refiner and config.refiner_checkpoint is None:
        return dataclasses.replace(config, refiner=TINY)
    return config


@dataclass(frozen=True, eq=False)
class GroundingResult:
    """One grounded phrase.

    mask: bool (H, W) final mask (after the refiner when enabled). box: inclusive XYXY pixels or None
    (empty). mask_before_sam: bool (H, W) thresholded A_E. sam_score: the refiner's score or None.
    a_c: float32 (gh, gw) fused VLM map; a_cs, region, a_e: the 32-grid maps; answer: the VLM's text.
    per_layer: float32 (n_layers, gh, gw) the raw VLM map of each decoder layer in ``layers``;
    seeds: bool (32, 32) the region-growing seeds. timings: wall-clock seconds per stage,
    ``"overview"``, ``"focus"`` (with ``"focus.<phase>"``, :data:`rsvg_zeroov.focus.model.PHASES`),
    ``"evolve"``, ``"refine"`` (the image embedding included, counted for the first phrase that
    needs it) and ``"total"``; stages 1-2 run batched over the phrases: each gets an equal share.
    """

    mask: np.ndarray
    box: list[int] | None
    mask_before_sam: np.ndarray
    sam_score: float | None
    a_c: np.ndarray
    a_cs: np.ndarray
    region: np.ndarray
    a_e: np.ndarray
    answer: str
    per_layer: np.ndarray | None = None
    layers: tuple[int, ...] = ()
    seeds: np.ndarray | None = None
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StageProgress:
    """One progress report of :meth:`Grounder.ground_many`.

    stage: one of :data:`STAGES` (or :data:`rsvg_zeroov.scene.SCENE_OVERVIEW`, which
    ``ground_scene`` reports through the Grounder's ``progress`` before a large scene's windows);
    index: its position (0, 1, 2: "stage index+1/3"); step, total:
    the stage's counter (answer tokens of stage 1, where ``total`` is the token budget and the answer
    may end sooner; diffusion steps of stage 2, all phases together; phrases of stage 3), step 0
    when the stage starts; detail: what is being counted (stage 2: the current phase, e.g.
    ``"DDIM inversion"``, ``"re-denoising"``).
    """

    stage: str
    index: int
    step: int
    total: int | None
    detail: str

    @property
    def fraction(self) -> float | None:
        """How far the stage is, 0..1 (None when its length is unknown)."""
        return min(self.step / self.total, 1.0) if self.total else None


def self_attention_matrix(files: dict[str, np.ndarray], config: EvolveConfig) -> np.ndarray:
    """``S`` float32 (1024, 1024): the mean of the configured resolutions' 32-grid maps.

    files: stage-2 maps by file name (``FocusResult.files()``); the same names the stage reads.
    """
    from .evolve.interaction import focus_names, mean_s

    names = focus_names(config)
    missing = [n for n in names if n not in files]
    if missing:
        raise ValueError(f"stage 2 did not produce {', '.join(missing)} (needed by resolutions "
                         f"{config.resolutions}); enable it in the focus config (e.g. save_self_16)")
    return mean_s(files[name] for name in names)


@dataclass(frozen=True)
class ImageInput:
    """One input image as each stage takes it: ``vlm`` / ``focus``: a path or the array; ``path``:
    the file (None for an array); ``rgb``: the array (None for a path); ``size``: (H, W)."""

    vlm: object
    focus: object
    path: Path | None
    rgb: np.ndarray | None
    size: tuple[int, int]


def image_input(image) -> ImageInput:
    """A path (checked: readable, each side >= 28 px) or a uint8 RGB (H, W, 3) array."""
    from .images import MIN_SIDE, ImageError, check_image

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return ImageInput(path, path, path, None, check_image(path))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"the image must be a file path or a uint8 RGB (H, W, 3) array, got "
                         f"{arr.dtype} {arr.shape}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image array is {arr.shape[1]}x{arr.shape[0]} pixels; the VLM needs at least "
                         f"{MIN_SIDE} pixels on each side")
    arr = np.ascontiguousarray(arr)
    return ImageInput(arr, arr, None, arr, (int(arr.shape[0]), int(arr.shape[1])))


class _Stages:
    """Times the stages of one :meth:`Grounder.ground_many` call and reports them as
    :class:`StageProgress` to ``callback`` (None: timing only)."""

    def __init__(self, callback: Callable[[StageProgress], None] | None, focus_config):
        self.callback = callback
        self.phases = FOCUS_PHASES.get(focus_config.inversion, ("diffusion steps",))
        self.per_phase = max(int(focus_config.num_steps), 1)
        self.seconds: dict[str, float] = {}

    def detail(self, stage: str, step: int) -> str:
        if stage == "focus":
            return self.phases[min(max(step - 1, 0) // self.per_phase, len(self.phases) - 1)]
        return {"overview": "answer tokens", "evolve": "evolve + refine"}[stage]

    def emit(self, stage: str, step: int, total: int | None) -> None:
        if self.callback is not None:
            self.callback(StageProgress(stage, STAGES.index(stage), step, total, self.detail(stage, step)))

    @contextmanager
    def __call__(self, stage: str, total: int | None):
        """Report the stage's start and every step of the library counters opened inside it."""
        from .progress import observe

        self.emit(stage, 0, total)
        t0 = time.perf_counter()
        with observe(lambda _desc, n, tot: self.emit(stage, n, tot)) if self.callback else nullcontext():
            yield
        self.seconds[stage] = time.perf_counter() - t0


class Grounder:
    """Overview -> Focus -> Evolve (+ refiner) for single images. Call :meth:`load` once first."""

    def __init__(self, config: PipelineConfig | None = None):
        from .runner import pick_device

        self.config = config or PipelineConfig()
        self.device = pick_device(self.config.device)
        self.overview = self.focus = self.refiner = None
        self.flags = dict(API_FLAGS)
        self.progress: Callable[[StageProgress], None] | None = None  # ground_many's default callback
        self._reuse_embedding = True  # a reconfigured Grounder re-embeds: its reader may differ

    def check_models(self, flags: dict[str, str] | None = None) -> list:
        """Resolve the three models without loading them; ONE ``ModelNotFound`` names every missing
        one with what to download. ``flags``: role -> the caller's option (default :data:`API_FLAGS`)."""
        from .evolve.refine import refiner_ref
        from .models.base import check_models

        flags = {**API_FLAGS, **(flags or {})}
        wanted = [("vlm", self.config.overview.model, flags["vlm"]),
                  ("diffusion", self.config.focus.model, flags["diffusion"])]
        refiner = refiner_ref(self.config.evolve)
        if refiner is not None:
            wanted.append(("refiner", refiner, flags["refiner"]))
        return check_models(wanted)

    def load(self, flags: dict[str, str] | None = None) -> "Grounder":
        """Check then load the three models (raises ``ModelNotFound`` naming every missing one)."""
        from .evolve.refine import build_refiner
        from .focus.model import Focus
        from .overview.model import Overview
        from .progress import bar

        self.check_models(flags)
        self.flags = {**API_FLAGS, **(flags or {})}
        with bar(3, "loading models", leave=True) as progress:
            self.overview = Overview(self.config.overview, self.device).load()
            progress.update()
            self.focus = Focus(self.config.focus, self.device).load()
            progress.update()
            self.refiner = build_refiner(self.config.evolve, self.device, self.flags["refiner"])
            progress.update()
        return self

    def reconfigured(self, config: PipelineConfig, refiners: dict | None = None) -> "Grounder":
        """A Grounder with ``config``'s settings that shares this one's loaded VLM and diffusion model.

        For interfaces that change, per request, settings that need no reload: fidelity, the
        generation settings, inversion mode and steps, K / tau / alpha, the refiner. ``config`` must
        name this Grounder's models and dtypes (:data:`MODEL_FIELDS`) and device, else ValueError.
        The refiner is this one's when ``config`` asks for the same key and weights file; another is
        built (``ModelNotFound`` when its weights are missing) and kept in ``refiners``, a dict the
        caller keeps between calls (``(key, weights file) -> refiner``), so each loads once. The
        results equal those of ``Grounder(config).load()``.
        """
        from .evolve.refine import build_refiner
        from .focus.model import Focus

        if self.overview is None:
            raise RuntimeError("Grounder.load() must be called before reconfigured()")
        changed = [f"{section}.{name}" for section, names in MODEL_FIELDS.items() for name in names
                   if getattr(getattr(config, section), name) != getattr(getattr(self.config, section), name)]
        if config.device != self.config.device:
            changed.append("device")
        if changed:
            raise ValueError(f"reconfigured() keeps the loaded models, but {', '.join(changed)} differ; "
                             "build a new Grounder and load() it")
        new = copy.copy(self)
        new.config, new._reuse_embedding = config, False
        new.overview = copy.copy(self.overview)
        new.overview.requested = new.overview.config = config.overview
        new.overview._decide_layers()  # the layers as load() decides them for this config
        new.focus = Focus(config.focus, self.device).attach(self.focus.sd)
        wanted = (config.evolve.refiner, config.evolve.refiner_checkpoint)
        if wanted != (self.config.evolve.refiner, self.config.evolve.refiner_checkpoint):
            cache = {} if refiners is None else refiners
            if wanted not in cache:
                cache[wanted] = build_refiner(config.evolve, self.device, self.flags["refiner"])
            new.refiner = cache[wanted]
        return new

    def ground(self, image, text: str) -> GroundingResult:
        """image: a file path or uint8 RGB (H, W, 3); text: the referring expression."""
        return self.ground_many(image, [text])[0]

    def ground_many(self, image, texts: list[str],
                    progress: Callable[[StageProgress], None] | None = None) -> list[GroundingResult]:
        """Several phrases on one image: the refiner embeds the image once.

        progress: called with a :class:`StageProgress` when each stage starts and at each step of
        its counter, in the calling thread; an exception it raises stops the run (how an interface
        cancels). It does not change any result. None: the Grounder's ``progress`` attribute (set
        it when another function calls this one, e.g. :func:`rsvg_zeroov.scene.ground_scene`).
        Each result's ``timings`` says where the time went.
        """
        from .evaluation.iou import tight_box
        from .evolve.evolve import evolve
        from .evolve.refine import refine_result
        from .images import check_expression
        from .progress import bar

        texts = [check_expression(t) for t in texts]
        inp = image_input(image)  # the inputs first: a bad one costs nothing
        if self.overview is None:
            raise RuntimeError("Grounder.load() must be called before ground()")
        stages, n = _Stages(progress if progress is not None else self.progress, self.config.focus), len(texts)
        log.info("stage 1/3 overview (VLM attention), %d phrase(s)", n)
        with stages("overview", self.config.overview.max_new_tokens):
            overviews = self.overview([(inp.vlm, t) for t in texts])
        log.info("stage 2/3 focus (diffusion self-attention)")
        with stages("focus", self.focus.progress_steps):
            focuses = self.focus([(inp.focus, t) for t in texts])
        out, embedded = [], False
        with stages("evolve", n), bar(n, "stage 3/3 evolve + refine", leave=True) as counter:
            for ov, fr in zip(overviews, focuses):
                t0 = time.perf_counter()
                ev_cfg = self.config.evolve
                s = self_attention_matrix(fr.files(), ev_cfg) if ev_cfg.use_dm else None
                ev = evolve(ov.fused, s, inp.size, ev_cfg)
                t1 = time.perf_counter()
                mask, score = ev.mask, None
                if self.refiner is not None and ev.mask.any():  # as stage 3: an empty mask skips it
                    if not embedded:
                        self._set_image(inp)
                        embedded = True
                    mask, score = refine_result(self.refiner, ev, ev_cfg, inp.size)
                box = tight_box(mask)
                timings = {"overview": stages.seconds["overview"] / n, "focus": stages.seconds["focus"] / n,
                           **{f"focus.{k}": v for k, v in fr.timings.items()},
                           "evolve": t1 - t0, "refine": time.perf_counter() - t1}
                timings["total"] = sum(timings[k] for k in ("overview", "focus", "evolve", "refine"))
                out.append(GroundingResult(mask=mask, box=None if box is None else [int(v) for v in box],
                                           mask_before_sam=ev.mask, sam_score=score, a_c=ov.fused,
                                           a_cs=ev.a_cs, region=ev.region, a_e=ev.a_e, answer=ov.answer,
                                           per_layer=ov.per_layer, layers=tuple(self.overview.config.layers),
                                           seeds=ev.seeds, timings=timings))
                counter.update()
        return out

    def _set_image(self, inp: ImageInput) -> None:
        """A path is read by the refiner's own reader (``use_image``, as in a data set run of
        stage 3); an array is embedded as it is. A :meth:`reconfigured` Grounder reads the file
        itself and embeds it without a key, so an embedding made under another fidelity's reader
        is never reused (nor is its own)."""
        from .evolve.refine import image_reader

        if inp.path is None:
            self.refiner.set_image(inp.rgb)
        elif self._reuse_embedding:
            self.refiner.use_image(inp.path, inp.size, image_reader(self.config.evolve.fidelity))
        else:
            self.refiner.set_image(image_reader(self.config.evolve.fidelity)(inp.path))
