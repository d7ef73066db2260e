"""The loaders of earlier versions, kept as thin wrappers over the role registries.

New code uses the role modules directly: :mod:`rsvg_zeroov.models.vlm` (``load_vlm``),
:mod:`rsvg_zeroov.models.diffusion` (``load_diffusion``) and :mod:`rsvg_zeroov.models.refiners`
(``load_refiner``); every key, hub id and checkpoint name lives in those registries only.
A family here is the earlier name of a role: ``qwen`` = vlm, ``sd`` = diffusion, ``sam`` = refiner.
"""
from __future__ import annotations

from pathlib import Path

from .base import TINY, ModelNotFound, ModelRef, registry, tiny_root  # noqa: F401 - re-exported
from .base import ensure_tiny as _ensure_tiny
from .sd import StableDiffusion as SDComponents  # noqa: F401 - the earlier name of the SD components

FAMILY_ROLE = {"qwen": "vlm", "sd": "diffusion", "sam": "refiner"}


def ensure_tiny(family: str) -> Path:
    """Path of the tiny model of ``family`` ("qwen" | "sd" | "sam"), building all three if absent."""
    return _ensure_tiny(FAMILY_ROLE.get(family, family))


def resolve(family: str, name: str | None) -> ModelRef:
    """A ``--model`` value -> :class:`ModelRef` through the registry of ``family``'s role."""
    return registry(FAMILY_ROLE.get(family, family)).resolve(name)


def load_qwen(name: str | None = None, dtype=None, device=None):
    """(model, processor, ref) of a VLM (:func:`rsvg_zeroov.models.vlm.load_vlm`)."""
    from .vlm import load_vlm

    adapter = load_vlm(name, dtype=dtype, device=device)
    return adapter.model, adapter.processor, adapter.ref


def load_sd(name: str | None = None, dtype=None, device=None):
    """The Stable Diffusion components (:func:`rsvg_zeroov.models.diffusion.load_diffusion`)."""
    from .diffusion import load_diffusion

    return load_diffusion(name, dtype=dtype, device=device)


def resolve_sam(checkpoint: str | None, sam_type: str | None = None) -> tuple[str, Path]:
    """(SAM type, checkpoint path) of ``--sam-checkpoint`` / ``--sam-type``; ModelNotFound saying
    where the official file goes when it is missing. ``checkpoint`` "tiny" = the stand-in."""
    from .base import check_models
    from .refiners import refiner_ref

    if checkpoint == TINY:
        checkpoint, sam_type = None, TINY
    ref = refiner_ref(sam_type or registry("refiner").default.key, checkpoint)
    check_models([("refiner", ref, "--sam-checkpoint")])
    return ref.key, Path(ref.source)


def load_sam(checkpoint: str | None = None, sam_type: str | None = None, device=None):
    """(SAM model, SAM type, checkpoint path), weights read with ``weights_only=True``."""
    from .sam import load_sam_model

    sam_type, path = resolve_sam(checkpoint, sam_type)
    official = registry("refiner").entry(sam_type).checkpoint
    return load_sam_model(sam_type, path, device, official=official), sam_type, path
