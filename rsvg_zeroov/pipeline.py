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
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

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


class Grounder:
    """Overview -> Focus -> Evolve (+ refiner) for single images. Call :meth:`load` once first."""

    def __init__(self, config: PipelineConfig | None = None):
        from .runner import pick_device

        self.config = config or PipelineConfig()
        self.device = pick_device(self.config.device)
        self.overview = self.focus = self.refiner = None

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
        with bar(3, "loading models", leave=True) as progress:
            self.overview = Overview(self.config.overview, self.device).load()
            progress.update()
            self.focus = Focus(self.config.focus, self.device).load()
            progress.update()
            flag = {**API_FLAGS, **(flags or {})}["refiner"]
            self.refiner = build_refiner(self.config.evolve, self.device, flag)
            progress.update()
        return self

    def ground(self, image, text: str) -> GroundingResult:
        """image: a file path or uint8 RGB (H, W, 3); text: the referring expression."""
        return self.ground_many(image, [text])[0]

    def ground_many(self, image, texts: list[str]) -> list[GroundingResult]:
        """Several phrases on one image: the refiner embeds the image once."""
        from .evaluation.iou import tight_box
        from .evolve.evolve import evolve
        from .evolve.refine import refine_result
        from .images import check_expression
        from .progress import bar

        texts = [check_expression(t) for t in texts]
        inp = image_input(image)  # the inputs first: a bad one costs nothing
        if self.overview is None:
            raise RuntimeError("Grounder.load() must be called before ground()")
        log.info("stage 1/3 overview (VLM attention), %d phrase(s)", len(texts))
        overviews = self.overview([(inp.vlm, t) for t in texts])
        log.info("stage 2/3 focus (diffusion self-attention)")
        focuses = self.focus([(inp.focus, t) for t in texts])
        out, embedded = [], False
        with bar(len(texts), "stage 3/3 evolve + refine", leave=True) as progress:
            for ov, fr in zip(overviews, focuses):
                ev_cfg = self.config.evolve
                s = self_attention_matrix(fr.files(), ev_cfg) if ev_cfg.use_dm else None
                ev = evolve(ov.fused, s, inp.size, ev_cfg)
                mask, score = ev.mask, None
                if self.refiner is not None and ev.mask.any():  # as stage 3: an empty mask skips it
                    if not embedded:
                        self._set_image(inp)
                        embedded = True
                    mask, score = refine_result(self.refiner, ev, ev_cfg, inp.size)
                box = tight_box(mask)
                out.append(GroundingResult(mask=mask, box=None if box is None else [int(v) for v in box],
                                           mask_before_sam=ev.mask, sam_score=score, a_c=ov.fused,
                                           a_cs=ev.a_cs, region=ev.region, a_e=ev.a_e, answer=ov.answer))
                progress.update()
        return out

    def _set_image(self, inp: ImageInput) -> None:
        """A path is read by the refiner's own reader (``use_image``, as in a data set run of
        stage 3); an array is embedded as it is."""
        from .evolve.refine import image_reader

        if inp.path is not None:
            self.refiner.use_image(inp.path, inp.size, image_reader(self.config.evolve.fidelity))
        else:
            self.refiner.set_image(inp.rgb)
