"""Stage 3's refinement step (docs/method.md, stage 3 step 6): the one place a refiner is built
from an :class:`~rsvg_zeroov.evolve.config.EvolveConfig`, and how it reads the image.

The refiners themselves (SAM, box-fill, ...) are adapters behind the refiner registry
(:mod:`rsvg_zeroov.models.refiners`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .config import EvolveConfig


def build_refiner(config: EvolveConfig, device: str | None = None, flag: str = "--sam-checkpoint"):
    """The :class:`~rsvg_zeroov.models.refiners.Refiner` of ``config.refiner`` (None: no refinement).

    Raises ModelNotFound before any sample is touched when its weights are unavailable; the message
    names ``flag`` (the calling script's weights flag) and how to run without refinement."""
    if config.refiner is None:
        return None
    from ..models.refiners import load_refiner

    return load_refiner(config.refiner, config.refiner_checkpoint, device, flag)


def refiner_ref(config: EvolveConfig):
    """The weights ``config``'s refiner needs (a ModelRef for ``check_models``), or None."""
    if config.refiner is None:
        return None
    from ..models.refiners import refiner_ref as resolve

    return resolve(config.refiner, config.refiner_checkpoint)


def image_reader(fidelity: str) -> Callable[[str], np.ndarray]:
    """How the refiner reads an image file: under ``released`` as the released stage 3 does
    (OpenCV colour decoding, BGR -> RGB: alpha dropped, grey repeated, 16-bit scaled to 8 bits);
    under ``corrected`` the project's RGB reader (PIL)."""
    from .. import images

    return images.read_for_sam if fidelity == "released" else images.load_rgb
