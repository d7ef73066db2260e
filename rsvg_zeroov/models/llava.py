"""The LLaVA-family adapter of stage 1: ``LlavaForConditionalGeneration`` checkpoints in the
``llava-hf`` layout (LLaVA-1.5 7B / 13B, and any model converted to that layout, e.g. a GeoChat
conversion, loaded by path through its ``config.json`` ``model_type: "llava"``).

- **Image.** A fixed square input (the image processor's ``crop_size``: 336 x 336 for LLaVA-1.5):
  the WHOLE image is resized to it (``do_center_crop=False``), so the token grid covers the
  whole image as stage 3 assumes (a centre crop would drop the sides of a non-square image). A
  path is read as stage 1 reads every image (:func:`rsvg_zeroov.images.read_for_vlm`). There are
  no pixel bounds: ``--max-pixels`` / ``--min-pixels`` are refused.
- **Image keys.** The processor expands the template's ``<image>`` into one token per vision
  patch: ``(side / patch_size)^2`` tokens (24 x 24 = 576 at 336 px with 14-pixel patches), plus
  the CLS token first when the model keeps it (``vision_feature_select_strategy="full"``; it is
  skipped). They are the patches in row-major order, as CLIP flattens its patch grid;
  ``cell`` = ``patch_size`` pixels of the square input.
- **Chat.** The checkpoint's chat template (LLaVA-1.5: ``USER: <image>\\n{text} ASSISTANT:``).
- **Answers** are 0-1 fractions of the image (``box_convention = "fraction"``).
- **Layers.** LLaVA-1.5-7B has 32 decoder layers, 13B 40: the default layers follow the
  relative-depth rule of :mod:`rsvg_zeroov.overview.layers` (7B: 18-21, 13B: 23-26).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from .vlm import PreparedBatch, TransformersVLM


class Llava(TransformersVLM):
    """A LLaVA-layout VLM behind the VLM adapter interface. ``Llava(ref).load(dtype, device)``."""

    family = "LLaVA"
    model_class = "LlavaForConditionalGeneration"
    model_types = ("llava",)
    cell = 14
    box_convention = "fraction"
    layer_rule = "relative"

    def check_config(self, config) -> None:
        """Refuse pixel bounds: this family takes a fixed square input."""
        if config.max_pixels is not None or config.min_pixels is not None:
            raise ValueError("--max-pixels / --min-pixels do not apply to a LLaVA-family model: it takes a fixed "
                             "square input (its image processor's crop_size); drop them")

    def prepare(self, items: Sequence[tuple[Any, str]], config) -> PreparedBatch:
        """``items`` = [(image, expression), ...] -> left-padded inputs (see the module docstring)."""
        self.check_config(config)
        processor = self.processor
        side_h, side_w = input_side(processor.image_processor)
        prompts, chat_texts, images, sizes = [], [], [], []
        for image, expression in items:
            pil = _rgb(image)
            text = config.prompt(expression)
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            chat_texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            images.append(pil)
            prompts.append(text)
            sizes.append((pil.height, pil.width))
        crop = {"do_pad": False} if getattr(processor.image_processor, "do_pad", False) else {}
        inputs = processor(text=chat_texts, images=images, padding=True, padding_side="left", return_tensors="pt",
                           do_center_crop=False, size={"height": side_h, "width": side_w}, **crop)
        patch = int(processor.patch_size)
        grid = (side_h // patch, side_w // patch)
        spans = tuple(image_span(row, processor.image_token_id, grid) for row in inputs["input_ids"])
        return PreparedBatch(inputs=inputs, prompts=tuple(prompts), chat_texts=tuple(chat_texts), spans=spans,
                             grids=(grid,) * len(items), image_hw=tuple(sizes),
                             resized_hw=((side_h, side_w),) * len(items))


def input_side(image_processor) -> tuple[int, int]:
    """(H', W') of the square input: the processor's ``crop_size``, else its ``size``."""
    for name in ("crop_size", "size"):
        size = getattr(image_processor, name, None) or {}
        size = size if isinstance(size, dict) else vars(size)
        if size.get("height") and size.get("width"):
            return int(size["height"]), int(size["width"])
        if size.get("shortest_edge"):
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"{type(image_processor).__name__} names no input size (crop_size / size)")


def _rgb(image):
    """A PIL RGB image from a path (read as stage 1 reads images), a PIL image or uint8 (H, W, 3)."""
    import numpy as np
    from PIL import Image
    from qwen_vl_utils.vision_process import to_rgb

    from ..images import read_for_vlm

    if isinstance(image, (str, os.PathLike)):
        return read_for_vlm(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError(f"overview input image must be a path, a PIL image or uint8 RGB (H, W, 3), got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    return Image.fromarray(image)


def image_span(input_ids, image_token_id: int, grid: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of the patch tokens in one row: the single run of image tokens, less a leading
    CLS token when the run has gh * gw + 1 of them."""
    ids = input_ids.tolist()
    where = [i for i, t in enumerate(ids) if t == image_token_id]
    gh, gw = grid
    if not where or where[-1] - where[0] + 1 != len(where):
        raise ValueError("expected one contiguous run of image tokens in the prompt; the chat template must put "
                         "one image in the turn")
    extra = len(where) - gh * gw
    if extra not in (0, 1):
        raise ValueError(f"image token run has {len(where)} tokens, expected gh*gw = {gh}*{gw} (+1 for CLS)")
    return where[0] + extra, where[-1] + 1
