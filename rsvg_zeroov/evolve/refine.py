"""SAM refinement (METHOD.md section 3 step 6): the tight box of the evolved mask prompts SAM.

Two-tier like SAM itself: :meth:`SamRefiner.use_image` computes the image embedding only when the
image path changes (the stage visits samples grouped by image, so once per distinct image), then
:meth:`SamRefiner.refine` answers one box prompt per expression.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluation.iou import tight_box


class SamRefiner:
    """Box-prompted SAM with the embedding of the current image cached.

    checkpoint / sam_type: as :func:`rsvg_zeroov.models.registry.load_sam` (None -> ViT-H official
    checkpoint; "tiny" -> the offline random stand-in). Raises ``ModelNotFound`` if unavailable.
    """

    def __init__(self, checkpoint: str | None = None, sam_type: str | None = None, device: str | None = None):
        from segment_anything import SamPredictor

        from ..models.registry import load_sam

        model, self.sam_type, self.checkpoint = load_sam(checkpoint, sam_type, device)
        self.predictor = SamPredictor(model)
        self.device = next(model.parameters()).device.type  # "cpu" | "cuda" | ...
        self.image_path: Path | None = None
        self.image_size: tuple[int, int] | None = None  # (H, W)
        self.n_images = 0  # how many embeddings were computed

    def set_image(self, rgb: np.ndarray, key: Path | str | None = None) -> None:
        """Embed ``rgb`` uint8 (H, W, 3) RGB; ``key`` names it for :meth:`use_image`'s cache."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"SAM needs a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
        self.predictor.set_image(rgb, image_format="RGB")
        self.image_path = None if key is None else Path(key)
        self.image_size = rgb.shape[:2]
        self.n_images += 1

    def use_image(self, path: Path | str, size: tuple[int, int]) -> None:
        """Make ``path`` the current image, embedding it only if it is not already the current one.

        size: the (H, W) the data set declares; a different file size is an error naming the file.
        """
        path = Path(path)
        if self.image_path == path:
            return
        from ..images import load_rgb

        rgb = load_rgb(path)
        if rgb.shape[:2] != tuple(size):
            raise ValueError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the data set says "
                             f"{size[1]}x{size[0]}; fix the annotation or the image")
        self.set_image(rgb, key=path)

    def refine(self, mask: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(refined bool (H, W) mask, SAM's predicted IoU of it) for the current image.

        The prompt is the inclusive tight box ``[x1, y1, x2, y2]`` of ``mask``; of SAM's three
        masks (``multimask_output=True``) the highest-scoring one is kept. An empty ``mask`` skips
        SAM and returns it unchanged with score None.
        """
        if self.image_size is None:
            raise RuntimeError("SamRefiner.refine: set an image with use_image(...) or set_image(...) first")
        if mask.shape != self.image_size:
            raise ValueError(f"mask is {mask.shape}, the current image is {self.image_size} (H, W)")
        box = tight_box(mask)
        if box is None:
            return mask, None
        masks, scores, _low_res = self.predictor.predict(box=np.asarray(box, dtype=np.float32),
                                                         multimask_output=True)
        best = int(np.argmax(scores))
        return np.asarray(masks[best], dtype=bool), float(scores[best])
