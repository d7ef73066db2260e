"""The ``box-fill`` refiner: the filled tight box of the evolved mask, score None.

No weights and no image content: the "filled box" baseline, and the proof that a refiner is one
adapter module plus one registry line (:mod:`rsvg_zeroov.models.refiners`).
"""
from __future__ import annotations

import numpy as np

from .refiners import ImageCache, Prompt


class BoxFillRefiner(ImageCache):
    key = "box-fill"
    prompt_pieces = ("box",)
    needs_pixels = False

    @classmethod
    def load(cls, entry, ref, device=None) -> "BoxFillRefiner":
        return cls()

    def _embed(self, rgb: np.ndarray) -> None:
        pass  # the box does not depend on the image

    def use_image(self, path, size: tuple[int, int], read=None) -> None:
        """Only the image's (H, W) matters: read from the file's header, never decoded."""
        from pathlib import Path

        from ..images import image_hw

        path = Path(path)
        if self.image_key == path:
            return
        actual = image_hw(path)
        if actual != tuple(size):
            raise ValueError(f"{path}: image is {actual[1]}x{actual[0]}, the data set says "
                             f"{size[1]}x{size[0]}; fix the annotation or the image")
        self.image_key, self.image_size = path, tuple(size)
        self.n_images += 1

    def refine(self, mask: np.ndarray, prompt: Prompt | None = None) -> tuple[np.ndarray, float | None]:
        """bool (H, W): True inside the inclusive box (``prompt.box``, default the tight box of
        ``mask``); an empty mask without a prompt stays empty. Only box prompts are taken."""
        prompt = self.prompt_for(mask, prompt)
        out = np.zeros(mask.shape, dtype=bool)
        if prompt is not None and prompt.box is not None:
            x1, y1, x2, y2 = (int(v) for v in prompt.box)
            out[y1:y2 + 1, x1:x2 + 1] = True
        return out, None

    def resolved(self) -> dict:
        return {"key": self.key, "checkpoint": None, "device": None}
