"""Stage 2's role: text-to-image diffusion models behind one adapter interface, and their registry.

A key, hub id or folder given as ``--model`` resolves through :data:`DIFFUSIONS`; a hub id or folder
that is not a registry entry uses the Stable Diffusion adapter (SD v1.x and 2.x share its layout).
Adding a family is one adapter module with the interface of :class:`DiffusionAdapter` plus one
``DIFFUSIONS.add(...)`` line here. Importing this module loads nothing (no torch).

    sd = load_diffusion("sd-v1-4", dtype=torch.float32, device="cuda:0")
    ddim = sd.schedule(FocusConfig())                      # the DDIM of the config
    sites = sd.sites(64, self_res=(32, 64), cross_res=())  # attn1 layers at r = 32, 64
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from .base import ModelNotFound, ModelRef, Registry, check_models, load_object, looks_like_path

DIFFUSIONS = Registry("diffusion", probe="model_index.json")
_SD = "rsvg_zeroov.models.sd:StableDiffusion"
DIFFUSIONS.add("sd-v1-4", adapter=_SD, hub_id="CompVis/stable-diffusion-v1-4", size="~4 GB fp32", default=True)
DIFFUSIONS.add("sd-v1-5", adapter=_SD, hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5", size="~4 GB fp32")
DIFFUSIONS.add("sd-v2-1-base", adapter=_SD, hub_id="stabilityai/stable-diffusion-2-1-base", size="~5 GB fp32")
DIFFUSIONS.add("tiny", adapter=_SD, size="a few MB, random weights")


@runtime_checkable
class DiffusionAdapter(Protocol):
    """What stage 2 needs from a diffusion model (:class:`rsvg_zeroov.models.sd.StableDiffusion`).

    vae, unet, text_encoder, tokenizer: the loaded components (diffusers / transformers modules).
    ref: the resolved :class:`ModelRef`. latent_scale: the VAE scaling factor (0.18215 for SD v1).
    latent_factor: image pixels per latent cell (8). schedule(config): the deterministic DDIM of
    a FocusConfig (docs/method.md, stage 2). sites(latent_size, self_res, cross_res): the attention
    layers to capture at those resolutions (``focus.capture.Site`` list).
    """

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    ref: ModelRef

    @property
    def latent_scale(self) -> float: ...

    @property
    def latent_factor(self) -> int: ...

    def schedule(self, config): ...

    def sites(self, latent_size: int, self_res: Sequence[int], cross_res: Sequence[int] = ()) -> list: ...


def resolve_diffusion(name: str | None, flag: str = "--model") -> ModelRef:
    """The :class:`ModelRef` of ``name`` (None = sd-v1-4), checked to be available before any compute:
    ModelNotFound says what to download (``hf download ...``) or that a path does not exist."""
    ref = DIFFUSIONS.resolve(name)
    if not ref.is_tiny and looks_like_path(ref.source) and not Path(ref.source).exists():
        raise ModelNotFound(f"model path {ref.source} does not exist; pass {flag} with a registry key "
                            f"({', '.join(DIFFUSIONS.keys())}), a hub id or a Stable Diffusion folder")
    return check_models([("diffusion", ref, flag)])[0]


def load_diffusion(name: str | None = None, dtype=None, device=None, flag: str = "--model") -> DiffusionAdapter:
    """Load the diffusion model ``name`` (key, hub id or folder) through its adapter, in ``dtype``
    (default float32) on ``device``, frozen in eval mode. Never runs remote code."""
    ref = resolve_diffusion(name, flag)
    entry = DIFFUSIONS.entry(ref.key) if ref.key else None
    return load_object(entry.adapter if entry else _SD).load(ref, dtype=dtype, device=device)


def as_adapter(components) -> DiffusionAdapter:
    """An adapter for already loaded components: an adapter as it is, or any object with ``vae``,
    ``unet``, ``text_encoder``, ``tokenizer`` and ``ref`` (e.g. the older ``SDComponents``)."""
    if isinstance(components, DiffusionAdapter):
        return components
    return load_object(_SD).from_components(components)
