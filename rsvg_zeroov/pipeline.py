"""All three stages in one process: load each model once, then ground many (image, phrase) pairs.

    grounder = Grounder(PipelineConfig()).load()        # Qwen2.5-VL, SD v1.4, SAM ViT-H
    result = grounder.ground(rgb, "the storage tank left of the road")
    result.mask  # bool (H, W);  result.box  # [x1, y1, x2, y2] inclusive pixels, or None

The stages are the same library objects the stage scripts use (Overview, Focus, evolve, SamRefiner),
so one-image results equal a dataset run with the same settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .evolve.config import EvolveConfig
from .focus.config import FocusConfig
from .overview.config import OverviewConfig


@dataclass(frozen=True)
class PipelineConfig:
    """The three stage configs (paper defaults) plus the device."""

    overview: OverviewConfig = field(default_factory=OverviewConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    device: str | None = None


@dataclass(frozen=True, eq=False)
class GroundingResult:
    """One grounded phrase.

    mask: bool (H, W) final mask (after SAM when enabled). box: inclusive XYXY pixels or None (empty).
    mask_before_sam: bool (H, W) thresholded A_E. sam_score: SAM's predicted IoU or None.
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


class Grounder:
    """Overview -> Focus -> Evolve (+ SAM) for single images. Call :meth:`load` once first."""

    def __init__(self, config: PipelineConfig | None = None):
        from .runner import pick_device

        self.config = config or PipelineConfig()
        self.device = pick_device(self.config.device)
        self.overview = self.focus = self.sam = None

    def load(self) -> "Grounder":
        """Load the three models (raises ``ModelNotFound`` with what to download)."""
        from .evolve.refine import SamRefiner
        from .focus.model import Focus
        from .overview.model import Overview

        self.overview = Overview(self.config.overview, self.device).load()
        self.focus = Focus(self.config.focus, self.device).load()
        ev = self.config.evolve
        if ev.sam:
            self.sam = SamRefiner(ev.sam_checkpoint, ev.sam_type, self.device)
        return self

    def ground(self, rgb: np.ndarray, text: str) -> GroundingResult:
        """rgb: uint8 (H, W, 3); text: the referring expression."""
        return self.ground_many(rgb, [text])[0]

    def ground_many(self, rgb: np.ndarray, texts: list[str]) -> list[GroundingResult]:
        """Several phrases on one image: SAM embeds the image once."""
        from .evaluation.iou import tight_box
        from .evolve.evolve import evolve

        if self.overview is None:
            raise RuntimeError("Grounder.load() must be called before ground()")
        items = [(rgb, t) for t in texts]
        overviews = self.overview(items)
        focuses = self.focus(items)
        if self.sam is not None:
            self.sam.set_image(rgb)
        out = []
        for ov, fr in zip(overviews, focuses):
            s = self_attention_matrix(fr.files(), self.config.evolve) if self.config.evolve.use_dm else None
            ev = evolve(ov.fused, s, rgb.shape[:2], self.config.evolve)
            mask, score = self.sam.refine(ev.mask) if self.sam is not None else (ev.mask, None)
            box = tight_box(mask)
            out.append(GroundingResult(mask=mask, box=None if box is None else [int(v) for v in box],
                                       mask_before_sam=ev.mask, sam_score=score, a_c=ov.fused,
                                       a_cs=ev.a_cs, region=ev.region, a_e=ev.a_e, answer=ov.answer))
        return out
