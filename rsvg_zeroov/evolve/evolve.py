"""Stage 3 for one sample as a pure function: ``A_C`` and ``S`` in, the 32-grid maps and the mask out.

    c     = norm(bilinear(A_C -> 32 x 32))                 (fidelity-dependent normalisation)
    A_CS  = norm(c^T S)                                    (use_dm=False: A_CS = c)
    seeds = positions of the K largest distinct values of c
    R     = 8-connected growth from the seeds through A_CS > tau   (use_evolve=False: everything)
    A_E   = R * A_CS
    M     = bilinear(A_E -> H x W) > alpha
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EvolveConfig
from .interaction import normalise_c, propagate
from .region import grow_region, top_k_seeds
from .resample import binarise, upsample_window


@dataclass(frozen=True)
class EvolveResult:
    """Maps on the 32 grid (float32 / bool (32, 32), row-major) and the binary mask bool (H, W)."""

    c: np.ndarray
    a_cs: np.ndarray
    seeds: np.ndarray
    region: np.ndarray
    a_e: np.ndarray
    mask: np.ndarray

    def maps(self) -> dict[str, np.ndarray]:
        """The 32-grid maps by name (what ``--save-maps`` writes)."""
        return {"c": self.c, "a_cs": self.a_cs, "seeds": self.seeds, "region": self.region, "a_e": self.a_e}


def interaction(a_c: np.ndarray, s: np.ndarray | None, config: EvolveConfig) -> tuple[np.ndarray, np.ndarray]:
    """(``c``, ``A_CS``), both float32 (32, 32). ``s`` may be None only when ``config.use_dm`` is off."""
    c = normalise_c(a_c, config.fidelity)
    if not config.use_dm:
        return c, c
    if s is None:
        raise ValueError("the interaction needs S (1024, 1024); pass it or set use_dm=False")
    return c, propagate(c, s)


def evolve_maps(c: np.ndarray, a_cs: np.ndarray, k: int, tau: float, use_evolve: bool = True):
    """(seeds bool, region bool, ``A_E`` float32), all (32, 32)."""
    seeds = top_k_seeds(c, k)
    region = grow_region(a_cs, seeds, tau) if use_evolve else np.ones_like(seeds)
    a_e = np.where(region, a_cs, np.float32(0)).astype(np.float32, copy=False)
    return seeds, region, a_e


def evolve(a_c: np.ndarray, s: np.ndarray | None, size: tuple[int, int], config: EvolveConfig) -> EvolveResult:
    """Run stage 3 (without SAM) on one sample.

    a_c: float (gh, gw) fused VLM map; s: float32 (1024, 1024) self-attention, rows = queries
    (None with ``use_dm=False``); size: (H, W) of the original image in pixels.
    """
    c, a_cs = interaction(a_c, s, config)
    seeds, region, a_e = evolve_maps(c, a_cs, config.k, config.tau, config.use_evolve)
    mask = binarise(upsample_window(a_e, size), size, config.alpha)
    return EvolveResult(c=c, a_cs=a_cs, seeds=seeds, region=region, a_e=a_e, mask=mask)
