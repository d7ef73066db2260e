"""SAM as a refiner: the tight box of the evolved mask prompts SAM (docs/method.md, stage 3 step 6).

Two-tier like SAM itself: the image embedding is computed only when the image changes (the stage
visits samples grouped by image, so once per distinct image), then each expression is one prompt
(the box; opt-in also points and a mask prior, ``--refine-prompt``). The model is built by :func:`rsvg_zeroov.models.sam_arch.build_sam_arch` and its weights
are read with ``torch.load(weights_only=True, map_location="cpu")``: a checkpoint holding code is
refused without running it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ModelNotFound
from .refiners import ImageCache, Prompt, mask_input_logits

_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def loader_reason(exc: BaseException) -> str:
    """The one informative line of a ``torch.load`` error (its weights_only preamble skipped)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_BOILERPLATE)]
    text = (useful or lines or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def load_sam_model(sam_type: str, path: str | Path, device: str | None = None, official: str | None = None):
    """SAM of ``sam_type`` with the state dict in ``path``; ModelNotFound (one line) if unreadable."""
    import torch

    from .sam_arch import build_sam_arch

    try:  # before building the model: a bad file fails in milliseconds, not after ViT-H's init
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turned into one actionable line
        raise ModelNotFound(f"SAM checkpoint {path} could not be read as a state dict ({loader_reason(exc)}); "
                            f"it must be the official {official or sam_type} file, or run without it (--no-sam)") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    model = build_sam_arch(sam_type)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ModelNotFound(f"SAM checkpoint {path} does not match SAM type {sam_type}: "
                            f"{str(exc).strip().splitlines()[0][:160]}") from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


class SamRefiner(ImageCache):
    """Box-prompted SAM with the embedding of the current image cached (a :class:`Refiner`)."""

    def __init__(self, model, key: str, checkpoint: str | Path | None = None):
        from segment_anything import SamPredictor

        super().__init__()
        self.key, self.checkpoint = key, None if checkpoint is None else Path(checkpoint)
        self.predictor = SamPredictor(model)
        self.device = next(model.parameters()).device.type  # "cpu" | "cuda" | ...
        self.cpu_threads = self.device == "cpu"

    @classmethod
    def load(cls, entry, ref, device: str | None = None) -> "SamRefiner":
        sam_type = entry.options.get("sam_type", entry.key)
        return cls(load_sam_model(sam_type, ref.source, device, entry.checkpoint), entry.key, ref.source)

    @property
    def sam_type(self) -> str:  # the name earlier versions used
        return self.key

    def _embed(self, rgb: np.ndarray) -> None:
        self.predictor.set_image(rgb, image_format="RGB")

    def refine(self, mask: np.ndarray, prompt: Prompt | None = None) -> tuple[np.ndarray, float | None]:
        """(refined bool (H, W) mask, SAM's predicted IoU of it) for the current image.

        ``prompt`` None = the inclusive tight box ``[x1, y1, x2, y2]`` of ``mask`` (the released
        prompt). Points go to SAM as positive ``point_coords``; a mask prior as ``mask_input``
        (:func:`~rsvg_zeroov.models.refiners.mask_input_logits` in SAM's letterboxed 256 x 256
        frame). Of SAM's three masks (``multimask_output=True``) the highest-scoring one is kept.
        An empty ``mask`` without a prompt skips SAM and returns it unchanged with score None.
        """
        prompt = self.prompt_for(mask, prompt)
        if prompt is None:
            return mask, None
        kw = {}
        if prompt.box is not None:
            kw["box"] = np.asarray(prompt.box, dtype=np.float32)
        if prompt.points is not None:
            kw["point_coords"] = np.asarray(prompt.points, dtype=np.float32)
            kw["point_labels"] = np.ones(len(prompt.points), dtype=np.int64)
        if prompt.mask_prior is not None:
            sam = self.predictor.model
            kw["mask_input"] = mask_input_logits(prompt, self.image_size, sam.image_encoder.img_size,
                                                 sam.prompt_encoder.mask_input_size, letterbox=True)
        masks, scores, _low_res = self.predictor.predict(**kw, multimask_output=True)
        best = int(np.argmax(scores))
        return np.asarray(masks[best], dtype=bool), float(scores[best])

    def resolved(self) -> dict:
        return {"key": self.key, "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "device": self.device}
