"""Stage 3, Evolve (docs/method.md, stage 3): VLM map x diffusion self-attention -> region -> mask,
optionally refined by SAM. Importing this package is light (NumPy/SciPy; SAM loads on demand).
"""
from .config import PAPER, EvolveConfig
from .evolve import EvolveResult, evolve

__all__ = ["EvolveConfig", "EvolveResult", "PAPER", "evolve"]
