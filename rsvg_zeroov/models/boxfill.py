"""The ``box-fill`` refiner: the filled tight box of the evolved mask, score None.

No weights and no image content: the "filled box" baseline, and the proof that a refiner is one
adapter module plus one registry line (:mod:`rsvg_zeroov.models.refiners`).
"""
from __future__ import annotations

import numpy as np

from .refiners import ImageCache


class BoxFillRefiner(ImageCache):
    key = "box-fill"

    @classmethod
    def load(cls, entry, ref, device=None) -> "BoxFillRefiner":
        return cls()

    def _embed(self, rgb: np.ndarray) -> None:
        pass  # the box does not depend on the image

    def refine(self, mask: np.ndarray) -> tuple[np.ndarray, float | None]:
        """bool (H, W): True inside the inclusive tight box of ``mask`` (empty stays empty)."""
        self.check_mask(mask)
        out = np.zeros(mask.shape, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        return out, None

    def resolved(self) -> dict:
        return {"key": self.key, "checkpoint": None, "device": None}
