"""The model registry: every model key, its hub id or checkpoint name, and the loaders.

A ``--model`` value is either a registry key (``qwen2.5-vl-7b``, ``sd-v1-4``, ``vit_h``, ``tiny``...),
a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``) or a local directory / checkpoint path. Loading never
runs remote code. A model that is not available gives one :class:`ModelNotFound` message naming
what to download and where to put it.

``tiny`` resolves to the offline random-weight stand-ins written by ``python -m rsvg_zeroov.tiny``
under :func:`tiny_root`; they are built on first use (seeded, a few MB, seconds).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .base import TINY, ModelNotFound, ModelRef, tiny_root  # noqa: F401 - re-exported
from .base import ensure_tiny as _ensure_tiny

QWEN_MODELS = {
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen2.5-vl-32b": "Qwen/Qwen2.5-VL-32B-Instruct",
    "qwen2.5-vl-72b": "Qwen/Qwen2.5-VL-72B-Instruct",
}
SD_MODELS = {
    "sd-v1-4": "CompVis/stable-diffusion-v1-4",
    "sd-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd-v2-1-base": "stabilityai/stable-diffusion-2-1-base",
}
# SAM type -> official checkpoint file name (https://github.com/facebookresearch/segment-anything)
SAM_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
DEFAULT_QWEN, DEFAULT_SD, DEFAULT_SAM = "qwen2.5-vl-7b", "sd-v1-4", "vit_h"
SAM_CHECKPOINT_DIR = Path("sam_checkpoint")


FAMILY_ROLE = {"qwen": "vlm", "sd": "diffusion", "sam": "refiner"}  # earlier names of the roles


def ensure_tiny(family: str) -> Path:
    """Path of the tiny model of ``family`` ("qwen" | "sd" | "sam"), building all three if absent."""
    return _ensure_tiny(FAMILY_ROLE.get(family, family))


def resolve(family: str, name: str | None) -> ModelRef:
    """Turn a ``--model`` value into a :class:`ModelRef` for ``family`` in {"qwen", "sd"}."""
    table, default = {"qwen": (QWEN_MODELS, DEFAULT_QWEN), "sd": (SD_MODELS, DEFAULT_SD)}[family]
    name = name or default
    if name == TINY:
        return ModelRef(family, str(ensure_tiny(family)), TINY, is_tiny=True)
    if name in table:
        return ModelRef(family, table[name], name)
    return ModelRef(family, name, None)


def _not_found(family: str, ref: ModelRef, exc: Exception) -> ModelNotFound:
    what = {"qwen": "Qwen2.5-VL", "sd": "Stable Diffusion"}[family]
    return ModelNotFound(
        f"{what} model {ref.source!r} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Download it once with `huggingface-cli download {ref.source if '/' in ref.source else '<hub-id>'}` "
        f"(needs network) or pass --model /path/to/local/{what.replace(' ', '-')}-folder; "
        f"known keys: {', '.join(sorted({'qwen': QWEN_MODELS, 'sd': SD_MODELS}[family]))}, tiny.")


def _check_local(ref: ModelRef) -> None:
    p = Path(ref.source)
    looks_local = p.is_absolute() or ref.source.startswith(".") or os.sep in ref.source and ref.source.count("/") != 1
    if looks_local and not p.exists():
        raise ModelNotFound(f"model path {ref.source} does not exist")


def load_qwen(name: str | None = None, dtype=None, device=None):
    """Load (model, processor) for Qwen2.5-VL with sdpa attention everywhere. No remote code."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    ref = resolve("qwen", name)
    _check_local(ref)
    dtype = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            ref.source, dtype=dtype, attn_implementation="sdpa", trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(ref.source, trust_remote_code=False)
    except OSError as exc:
        raise _not_found("qwen", ref, exc) from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, processor, ref


def load_sd(name: str | None = None, dtype=None, device=None):
    """Load the Stable Diffusion components (vae, unet, text_encoder, tokenizer); stage 2 builds its own METHOD DDIM schedule."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    ref = resolve("sd", name)
    _check_local(ref)
    dtype = dtype or torch.float32
    try:
        kw = dict(torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(ref.source, subfolder="vae", **kw)
        unet = UNet2DConditionModel.from_pretrained(ref.source, subfolder="unet", **kw)
        text_encoder = CLIPTextModel.from_pretrained(ref.source, subfolder="text_encoder", dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(ref.source, subfolder="tokenizer")
    except OSError as exc:
        raise _not_found("sd", ref, exc) from None
    for m in (vae, unet, text_encoder):
        m.eval().requires_grad_(False)
        if device is not None:
            m.to(device)
    return SDComponents(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, ref=ref)


@dataclass
class SDComponents:
    vae: object
    unet: object
    text_encoder: object
    tokenizer: object
    ref: ModelRef


def resolve_sam(checkpoint: str | None, sam_type: str | None = None) -> tuple[str, Path]:
    """(sam_type, checkpoint path). ``checkpoint`` may be None (-> sam_checkpoint/<official name>) or 'tiny'."""
    if checkpoint == TINY or (sam_type == TINY and not checkpoint):
        return TINY, ensure_tiny("sam")
    if sam_type == TINY:  # an explicit tiny checkpoint file (e.g. written by rsvg_zeroov.tiny.sam)
        if not Path(checkpoint).is_file():
            raise ModelNotFound(f"tiny SAM checkpoint {checkpoint} not found; write one with "
                                f"`python -m rsvg_zeroov.tiny` or pass --sam-checkpoint tiny")
        return TINY, Path(checkpoint)
    sam_type = sam_type or DEFAULT_SAM
    if sam_type not in SAM_CHECKPOINTS:
        raise ModelNotFound(f"unknown SAM type {sam_type!r}; choose from {', '.join(SAM_CHECKPOINTS)}, tiny")
    path = Path(checkpoint) if checkpoint else SAM_CHECKPOINT_DIR / SAM_CHECKPOINTS[sam_type]
    if not path.is_file():
        raise ModelNotFound(
            f"SAM checkpoint {path} not found. Download {SAM_CHECKPOINTS[sam_type]} from "
            f"https://dl.fbaipublicfiles.com/segment_anything/{SAM_CHECKPOINTS[sam_type]} into "
            f"{SAM_CHECKPOINT_DIR}/ (or pass --sam-checkpoint FILE), or run with --no-sam.")
    return sam_type, path


def load_sam(checkpoint: str | None = None, sam_type: str | None = None, device=None):
    """Build SAM of ``sam_type`` and load its checkpoint with ``weights_only=True`` on the CPU first."""
    import torch

    sam_type, path = resolve_sam(checkpoint, sam_type)
    from .sam_arch import build_sam_arch

    model = build_sam_arch(sam_type)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turned into one actionable message
        raise ModelNotFound(f"SAM checkpoint {path} could not be read as a state dict ({exc}); "
                            f"it must be the official {SAM_CHECKPOINTS.get(sam_type, 'tiny')} file") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelNotFound(f"SAM checkpoint {path} does not match --sam-type {sam_type}: "
                            f"{str(exc).splitlines()[0]}") from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, sam_type, path
