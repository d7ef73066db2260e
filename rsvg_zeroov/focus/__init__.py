"""Stage 2, Focus: Stable Diffusion null-text inversion and UNet self-attention capture (docs/method.md, stage 2).

Importing the package is light (no torch): :class:`FocusConfig` here; :class:`Focus` and
:class:`FocusResult` load on first access from :mod:`.model`.
"""
from .config import FocusConfig

__all__ = ["Focus", "FocusConfig", "FocusResult"]


def __getattr__(name):
    if name in ("Focus", "FocusResult"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
