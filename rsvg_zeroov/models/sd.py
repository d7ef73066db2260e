"""The Stable Diffusion adapter (SD v1.x and 2.x layouts): components, DDIM schedule, attention sites.

Loading: ``AutoencoderKL`` (``vae/``), ``UNet2DConditionModel`` (``unet/``), ``CLIPTextModel``
(``text_encoder/``) and ``CLIPTokenizer`` (``tokenizer/``) of a diffusers folder or hub repository,
never remote code. The model's own scheduler is not used: stage 2 runs its deterministic DDIM
(docs/method.md, stage 2), built by :meth:`StableDiffusion.schedule` from a FocusConfig; a model whose
scheduler predicts anything but the noise (``prediction_type`` "v_prediction", e.g. SD 2.x at 768) is
refused, since that DDIM assumes epsilon prediction.

Attention sites (:func:`attention_sites`): attn1 (self) / attn2 (cross) of the transformer blocks of
``down_blocks`` and ``up_blocks`` (never the mid block), with their resolution r derived from the
block position: down block i runs at latent_size / 2**i, up block j at latent_size / 2**(n_up - 1 - j).
For SD v1 at 512x512: 5 attn1 layers (2 down + 3 up) at each of r = 64, 32, 16.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .base import ModelNotFound, ModelRef

_SITE = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\..*\.(attn1|attn2)\.processor$")
KINDS = {"attn1": "self", "attn2": "cross"}


@dataclass(frozen=True)
class Site:
    """One captured layer: ``name`` (its key in ``unet.attn_processors``), kind "self"|"cross", resolution r."""

    name: str
    kind: str
    r: int


def attention_sites(unet, latent_size: int, self_res: Sequence[int], cross_res: Sequence[int] = ()) -> list[Site]:
    """The attn1/attn2 layers of the down and up blocks of ``unet`` at the requested resolutions.

    Raises ValueError when a requested resolution has no layer (e.g. r = 64 with a 256-pixel image).
    """
    n_up = len(unet.up_blocks)
    sites = []
    for name in unet.attn_processors:
        m = _SITE.match(name)
        if m is None:
            continue
        block, idx, which = m.group(1), int(m.group(2)), m.group(3)
        level = idx if block == "down_blocks" else n_up - 1 - idx
        r, kind = latent_size >> level, KINDS[which]
        if r in (self_res if kind == "self" else cross_res):
            sites.append(Site(name, kind, r))
    for kind, wanted in (("self", self_res), ("cross", cross_res)):
        missing = sorted(set(wanted) - {s.r for s in sites if s.kind == kind})
        if missing:
            raise ValueError(f"no {kind}-attention layer at resolution(s) {missing} for a {latent_size}x"
                             f"{latent_size} latent; use a larger image_size (512 -> 64, 32, 16)")
    return sites


@dataclass
class StableDiffusion:
    """A loaded SD v1.x / 2.x model (the :class:`rsvg_zeroov.models.diffusion.DiffusionAdapter` of stage 2)."""

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    ref: ModelRef

    @classmethod
    def load(cls, ref: ModelRef, dtype=None, device=None) -> "StableDiffusion":
        """The four components of ``ref`` in ``dtype`` (default float32) on ``device``, frozen."""
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        dtype = dtype or torch.float32
        try:
            _check_prediction_type(ref)
            vae = AutoencoderKL.from_pretrained(ref.source, subfolder="vae", torch_dtype=dtype)
            unet = UNet2DConditionModel.from_pretrained(ref.source, subfolder="unet", torch_dtype=dtype)
            text_encoder = CLIPTextModel.from_pretrained(ref.source, subfolder="text_encoder", dtype=dtype)
            tokenizer = CLIPTokenizer.from_pretrained(ref.source, subfolder="tokenizer")
        except OSError as exc:
            reason = str(exc).splitlines()[0][:200]
            from .diffusion import DIFFUSIONS

            raise ModelNotFound(f"Stable Diffusion model {ref.source!r} could not be loaded ({reason}); it must be "
                                f"a diffusers folder or hub repository with vae/, unet/, text_encoder/ and "
                                f"tokenizer/: {DIFFUSIONS.missing_message(ref, '--model')}") from None
        for m in (vae, unet, text_encoder):
            m.eval().requires_grad_(False)
            if device is not None:
                m.to(device)
        return cls(vae, unet, text_encoder, tokenizer, ref)

    @classmethod
    def from_components(cls, components) -> "StableDiffusion":
        """Wrap an object holding ``vae``, ``unet``, ``text_encoder``, ``tokenizer`` and ``ref``."""
        return cls(components.vae, components.unet, components.text_encoder, components.tokenizer, components.ref)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def schedule(self, config):
        """The deterministic DDIM of a FocusConfig (beta schedule, steps, steps_offset)."""
        from ..focus.scheduler import DDIM

        return DDIM.from_config(config.num_steps, config.num_train_timesteps, config.beta_start, config.beta_end,
                                config.steps_offset)

    def sites(self, latent_size: int, self_res: Sequence[int], cross_res: Sequence[int] = ()) -> list[Site]:
        return attention_sites(self.unet, latent_size, self_res, cross_res)

    def to(self, device, dtype) -> "StableDiffusion":
        """Move the three modules to ``device`` and ``dtype`` (in place), frozen in eval mode."""
        for m in (self.vae, self.unet, self.text_encoder):
            m.to(device)
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.eval().requires_grad_(False)
        return self


def _check_prediction_type(ref: ModelRef) -> None:
    """ValueError if the model's scheduler config declares a prediction other than the noise."""
    from diffusers import DDIMScheduler

    try:
        config = DDIMScheduler.load_config(ref.source, subfolder="scheduler")
    except (OSError, ValueError):  # no scheduler folder: SD v1 layouts always predict epsilon
        return
    kind = config.get("prediction_type", "epsilon")
    if kind != "epsilon":
        raise ValueError(f"{ref.source}: the scheduler predicts {kind!r}; stage 2's DDIM inversion needs an "
                         f"epsilon-prediction model (SD v1.x, SD 2.x base at 512)")
