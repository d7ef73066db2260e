"""Stage 3's refinement step (docs/method.md, stage 3 step 6): the one place a refiner is built
from an :class:`~rsvg_zeroov.evolve.config.EvolveConfig`, how it reads the image, and
:func:`refine_result`, the one call that refines an evolved sample (stage 3, the one-image
pipeline and the reproduction harness all use it).

The refiners themselves (SAM, SAM-HQ, SAM 2.1, SAM 3, box-fill, ...) are adapters behind the
refiner registry (:mod:`rsvg_zeroov.models.refiners`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .config import EvolveConfig

# the prompt pieces of each --refine-prompt mode
PROMPT_PIECES = {"box": ("box",), "box+points": ("box", "points"), "points": ("points",),
                 "box+mask": ("box", "mask")}


def seed_points(seeds: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (N, 2) ``[x, y]``: the centre of every seed cell of the (gh, gw) grid, row-major, in
    the refiner's pixel-index coordinates of an (H, W) image.

    Cell (r, c) spans x in [c W / gw, (c + 1) W / gw) of the continuous image (pixel j spans
    [j, j + 1)); its centre (c + 0.5) W / gw is pixel index (c + 0.5) W / gw - 0.5 (SAM adds the
    0.5 back). The same correspondence as stage 3's bilinear resize (``align_corners=False``)."""
    gh, gw = seeds.shape
    h, w = size
    rows, cols = np.nonzero(seeds)
    xs = (cols + 0.5) * (w / gw) - 0.5
    ys = (rows + 0.5) * (h / gh) - 0.5
    return np.stack([xs, ys], axis=1).astype(np.float32)


def build_prompt(mask: np.ndarray, result, config: EvolveConfig, size: tuple[int, int]):
    """The :class:`~rsvg_zeroov.models.refiners.Prompt` of ``config.refine_prompt``: the tight box of
    ``mask``, the seeds of ``result`` as positive points, ``result.a_e`` as the mask prior
    (threshold ``config.alpha``). None when the mode needs a box and ``mask`` is empty."""
    from ..models.refiners import Prompt

    pieces = PROMPT_PIECES[config.refine_prompt]
    box = Prompt.box_of(mask) if "box" in pieces else None
    if "box" in pieces and box is None:
        return None
    return Prompt(box=None if box is None else box.box,
                  points=seed_points(result.seeds, size) if "points" in pieces else None,
                  mask_prior=result.a_e if "mask" in pieces else None, prior_threshold=config.alpha)


def refine_result(refiner, result, config: EvolveConfig, size: tuple[int, int]) -> tuple[np.ndarray, float | None]:
    """(final bool (H, W) mask, refiner score or None) of one evolved sample on the refiner's
    current image (``use_image`` / ``set_image`` done by the caller).

    ``result``: the :class:`~rsvg_zeroov.evolve.evolve.EvolveResult` (its mask, seeds, ``A_E``);
    ``size``: (H, W). No refiner, or an empty evolved mask: the mask as it is, score None (an empty
    prediction). Otherwise ``config.refine_iters`` passes of the ``config.refine_prompt`` prompt,
    each pass after the first with the box of the previous pass's mask (points and mask prior
    unchanged); a pass that returns an empty mask ends it. The default (``box``, 1 pass) is exactly
    the released call: ``refiner.refine(mask, <the tight box of mask>)``."""
    mask, score = result.mask, None
    if refiner is None or not mask.any():
        return mask, None
    for _ in range(config.refine_iters):
        prompt = build_prompt(mask, result, config, size)
        if prompt is None:
            break
        mask, score = refiner.refine(mask, prompt)
    return mask, score


def check_prompt_support(config: EvolveConfig) -> None:
    """ValueError (before any weights load) when ``config.refiner`` cannot take the pieces of
    ``config.refine_prompt`` (``box-fill`` takes only a box)."""
    if config.refiner is None:
        return
    from ..models.refiners import REFINERS

    if REFINERS.entry(config.refiner) is None:
        return  # refused with the known keys when it is resolved
    takes = REFINERS.adapter_class(config.refiner).prompt_pieces
    missing = [p for p in PROMPT_PIECES[config.refine_prompt] if p not in takes]
    if missing:
        raise ValueError(f"--refine-prompt {config.refine_prompt}: refiner {config.refiner!r} takes only "
                         f"{' / '.join(takes)} prompts (not {' / '.join(missing)}); use --refine-prompt box")


def build_refiner(config: EvolveConfig, device: str | None = None, flag: str = "--sam-checkpoint"):
    """The :class:`~rsvg_zeroov.models.refiners.Refiner` of ``config.refiner`` (None: no refinement).

    Raises ModelNotFound before any sample is touched when its weights are unavailable; the message
    names ``flag`` (the calling script's weights flag) and how to run without refinement."""
    if config.refiner is None:
        return None
    from ..models.refiners import load_refiner

    check_prompt_support(config)
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
