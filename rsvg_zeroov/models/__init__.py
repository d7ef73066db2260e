"""Model registry and loaders (see :mod:`rsvg_zeroov.models.registry`)."""
from .registry import ModelNotFound, load_qwen, load_sam, load_sd, resolve, resolve_sam

__all__ = ["ModelNotFound", "load_qwen", "load_sam", "load_sd", "resolve", "resolve_sam"]
