"""The transformers SAM family as refiners: SAM-HQ (``SamHQModel``), SAM 2.1 (``Sam2Model``) and
SAM 3's promptable tracker (``Sam3TrackerModel``), with their processors (docs/method.md, stage 3).

The same two tiers as :mod:`rsvg_zeroov.models.sam`: ``get_image_embeddings`` runs once per
distinct image (the stage visits samples grouped by image), then each prompt runs only the prompt
encoder and mask decoder on the cached embedding (``model(image_embeddings=..., ...)``), which is
what a direct ``model(pixel_values=..., ...)`` call computes. Prompts are placed in the model's
input frame as its processor places them: SAM-HQ letterboxes (the longest side to 1024, SAM's
rounding; the coordinates scaled as ``segment_anything``'s ``ResizeLongestSide`` does, which is the
processor's own arithmetic), SAM 2.1 and SAM 3 stretch the image to a square (1024, 1008) and the
processor scales the coordinates (``original_sizes=`` without the image). Of the three masks
(``multimask_output=True``) the one with the highest predicted IoU is kept and upsampled to the
image size by the processor's ``post_process_masks`` (threshold 0; SAM-HQ: its default of the SAM
and HQ masks summed, ``hq_token_only=False``).

Weights load with ``from_pretrained`` (safetensors files, or ``.bin`` files through transformers'
``torch.load(weights_only=True)``; never remote code) from a hub id in the local
cache or a folder (``--refiner-checkpoint DIR``); ``facebook/sam3`` holds the whole SAM 3, of
which ``Sam3TrackerModel`` loads the tracker.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import ModelNotFound
from .refiners import ImageCache, Prompt, mask_input_logits


@dataclass(frozen=True)
class Family:
    model: str  # transformers class names
    processor: str
    letterbox: bool  # the image keeps its aspect ratio inside the model's input square


FAMILIES = {"sam_hq": Family("SamHQModel", "SamHQProcessor", letterbox=True),
            "sam2": Family("Sam2Model", "Sam2Processor", letterbox=False),
            "sam3_tracker": Family("Sam3TrackerModel", "Sam3TrackerProcessor", letterbox=False)}


def load_family(family: str, source: str | Path, device: str | None = None):
    """(model in eval mode, float32, on ``device``; processor) of ``family`` from ``source``.
    ModelNotFound (one line) when the folder or cache entry cannot be loaded as that family."""
    import torch
    import transformers

    fam = FAMILIES[family]
    try:
        model = getattr(transformers, fam.model).from_pretrained(str(source), dtype=torch.float32)
        processor = getattr(transformers, fam.processor).from_pretrained(str(source))
    except Exception as exc:  # noqa: BLE001 - a folder of another family fails anywhere; one line
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"{source} could not be loaded as {fam.model} ({reason}); run without "
                            f"refinement (--no-sam) or pass a folder saved by save_pretrained") from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, processor


class HFSamRefiner(ImageCache):
    """A transformers SAM-family model with the embedding of the current image cached (a
    :class:`~rsvg_zeroov.models.refiners.Refiner`)."""

    def __init__(self, model, processor, family: str, key: str, source: str | Path | None = None):
        super().__init__()
        self.model, self.processor, self.family = model, processor, family
        self.key, self.source = key, None if source is None else str(source)
        self.device = next(model.parameters()).device
        self.cpu_threads = self.device.type == "cpu"
        self._embedding: dict = {}
        self._sizes: dict = {}

    @classmethod
    def load(cls, entry, ref, device: str | None = None) -> "HFSamRefiner":
        family = entry.options["family"]
        return cls(*load_family(family, ref.source, device), family, entry.key, ref.source)

    # ------------------------------------------------------------------------------ the model's frame
    @property
    def letterbox(self) -> bool:
        return FAMILIES[self.family].letterbox

    @property
    def input_size(self) -> int:
        """The side of the square the image is resized into (1024 for SAM-HQ / SAM 2.1, 1008 SAM 3)."""
        if self.letterbox:
            return int(self.processor.image_processor.size["longest_edge"])
        return int(self.processor.target_size)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """The low-res mask frame (4x the image-embedding grid: 256 x 256, 288 x 288 for SAM 3)."""
        if self.family == "sam_hq":
            side = 4 * int(self.model.config.prompt_encoder_config.image_embedding_size)
            return side, side
        return tuple(int(v) for v in self.model.prompt_encoder.mask_input_size)

    # ------------------------------------------------------------------------------ the two tiers
    def _embed(self, rgb: np.ndarray) -> None:
        import torch

        inputs = self.processor(images=rgb, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            embedding = self.model.get_image_embeddings(pixels)
        if self.family == "sam_hq":  # (last embedding, the global-attention blocks' features)
            self._embedding = {"image_embeddings": embedding[0], "intermediate_embeddings": embedding[1]}
        else:
            self._embedding = {"image_embeddings": embedding}
        self._sizes = {k: inputs[k] for k in ("original_sizes", "reshaped_input_sizes") if k in inputs}

    def prompt_inputs(self, prompt: Prompt) -> dict:
        """The model's prompt tensors for ``prompt`` on the current image (input frame, batch 1)."""
        import torch

        h, w = self.image_size
        out: dict = {}
        n = 0 if prompt.points is None else len(prompt.points)
        if self.letterbox:
            from segment_anything.utils.transforms import ResizeLongestSide

            resize = ResizeLongestSide(self.input_size)
            if prompt.box is not None:
                box = np.asarray(prompt.box, dtype=np.float64)[None]
                out["input_boxes"] = torch.from_numpy(resize.apply_boxes(box, (h, w)))[None]
            if n:
                pts = np.asarray(prompt.points, dtype=np.float64)
                out["input_points"] = torch.from_numpy(resize.apply_coords(pts, (h, w)))[None, None]
        else:
            enc = self.processor(
                original_sizes=[[h, w]], return_tensors="pt",
                input_boxes=None if prompt.box is None else [[[float(v) for v in prompt.box]]],
                input_points=None if not n else [[np.asarray(prompt.points, dtype=float).tolist()]])
            out = {k: enc[k] for k in ("input_boxes", "input_points") if k in enc}
        if n:
            out["input_labels"] = torch.ones((1, 1, n), dtype=torch.int64)
        if prompt.mask_prior is not None:
            logits = mask_input_logits(prompt, (h, w), self.input_size, self.mask_input_size, self.letterbox)
            out["input_masks"] = torch.from_numpy(logits)[None]
        return {k: v.to(self.device) for k, v in out.items()}

    def refine(self, mask: np.ndarray, prompt: Prompt | None = None) -> tuple[np.ndarray, float | None]:
        """(refined bool (H, W) mask, the model's predicted IoU of it) for the current image.

        ``prompt`` None = the inclusive tight box of ``mask``; an empty mask without a prompt is
        returned unchanged with score None."""
        import torch

        prompt = self.prompt_for(mask, prompt)
        if prompt is None:
            return mask, None
        with torch.inference_mode():
            out = self.model(**self._embedding, **self.prompt_inputs(prompt), multimask_output=True)
        scores = out.iou_scores[0, 0].float().cpu()
        best = int(torch.argmax(scores))
        low_res = out.pred_masks[:, :, best:best + 1].cpu()  # (1, 1, 1, h, w): only the kept one
        sizes = [v.cpu() for v in self._sizes.values()]
        full = self.processor.post_process_masks(low_res, *sizes)[0]
        return full[0, 0].numpy().astype(bool, copy=False), float(scores[best])

    def resolved(self) -> dict:
        return {"key": self.key, "checkpoint": self.source, "device": self.device.type,
                "model_class": FAMILIES[self.family].model}
