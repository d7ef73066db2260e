"""Shared pieces of the stage-2 (Focus) tests: test images, a cached tiny SD, and the released-style oracle."""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from functools import lru_cache

import numpy as np


def make_image(seed: int = 0, height: int = 96, width: int = 128) -> np.ndarray:
    """A structured uint8 RGB image (H, W, 3): smooth gradients plus a bright rectangle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                    np.full_like(xx, 60 + 40 * seed)], axis=-1).astype(np.float64)
    y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
    img[y0:y0 + height // 3, x0:x0 + width // 3] = [250, 240, 30]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _components(tiny_root: str):
    from rsvg_zeroov.models.diffusion import load_diffusion

    return load_diffusion("tiny")


def tiny_sd(tiny_dir):
    """The tiny SD loaded through the diffusion registry's adapter (once per session; ``tiny_dir`` fixture)."""
    return _components(str(tiny_dir))


def row_sums(arr: np.ndarray) -> np.ndarray:
    """Row sums of a saved map, whatever its layout ((r, r, K) or (N, K))."""
    a = np.asarray(arr, dtype=np.float64)
    return a.reshape(-1, a.shape[-1]).sum(axis=1)


@contextmanager
def oracle_capture(unet, sites):
    """The released approach as an independent oracle: diffusers' classic ``AttnProcessor`` on the
    captured layers (the others keep theirs), each layer's ``get_attention_scores`` wrapped to keep a
    host copy of every conditional-half map (all heads) of every call.
    Yields {(kind, r): [tensor (B, heads, N, K), ...]}."""
    from diffusers.models.attention_processor import AttnProcessor

    maps = defaultdict(list)
    original = dict(unet.attn_processors)
    modules = []
    for site in sites:
        module = unet.get_submodule(site.name.removesuffix(".processor"))

        def record(query, key, attention_mask=None, _orig=module.get_attention_scores, _m=module, _s=site):
            probs = _orig(query, key, attention_mask)  # (batch * heads, N, K)
            per = probs.reshape(-1, _m.heads, *probs.shape[1:])
            maps[(_s.kind, _s.r)].append(per[per.shape[0] // 2:].detach().to("cpu", copy=True))
            return probs

        module.get_attention_scores = record
        modules.append(module)
    unet.set_attn_processor({name: AttnProcessor() if name in {s.name for s in sites} else proc
                             for name, proc in original.items()})
    try:
        yield maps
    finally:
        for module in modules:
            del module.get_attention_scores
        unet.set_attn_processor(dict(original))


def oracle_mean(calls) -> np.ndarray:
    """Average of every stored map over calls (layers x steps) and heads: float64 (B, N, K)."""
    total = sum(c.sum(dim=1) for c in calls)  # sum over calls and heads
    return (total / (len(calls) * calls[0].shape[1])).numpy()
