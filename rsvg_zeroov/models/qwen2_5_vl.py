"""The Qwen2.5-VL adapter of stage 1 (any size: 3B, 7B, 32B, 72B, and the tiny stand-in).

What a VLM adapter defines (the :class:`rsvg_zeroov.models.vlm.VLMAdapter` protocol; the shared
loading, decoder-layer path and capture hook are :class:`~rsvg_zeroov.models.vlm.TransformersVLM`'s):

- ``model_types``: the ``config.json`` model types it serves (folders and hub ids not in the table);
- ``cell``: image pixels per merged token side (28 here: 14-px patches merged 2 x 2);
- ``layer_rule``: ``"absolute"``: the configured layers are used as they are (the paper's 16-19 on
  every size, as the released code does; docs/method.md);
- ``load(dtype, device)``: the model and processor classes, sdpa attention, no remote code;
- ``prepare(items, config)``: the chat turn (one user turn: the image, then the grounding text; the
  template's default system prompt; ``add_generation_prompt=True``), the image preprocessing
  (``qwen_vl_utils`` smart resize to multiples of ``cell`` within the pixel budget), and where the
  image tokens are and their grid -> :class:`~rsvg_zeroov.models.vlm.PreparedBatch`;
- ``decoder_attention_modules(model)``: the decoder-layer path (the self-attention module of every
  language-model layer, in order), and ``capture(...)``: the capture hook over them
  (:func:`rsvg_zeroov.overview.capture.capture_last_row`, transformers' AttentionInterface).

The image key positions of row ``b`` are the tokens strictly between ``<|vision_start|>`` and
``<|vision_end|>``: ``gh * gw`` tokens in row-major order of the merged grid
(``(gh, gw) = image_grid_thw[b, 1:] // merge_size``); docs/method.md, stage 1. Qwen3-VL
(:mod:`rsvg_zeroov.models.qwen3_vl`) reuses :func:`prepare_batch` with its own patch size.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .vlm import PreparedBatch, TransformersVLM

CELL = 28
# qwen_vl_utils' image defaults (IMAGE_MIN_TOKEN_NUM / IMAGE_MAX_TOKEN_NUM merged tokens of 28x28 px).
QWEN_VL_MIN_PIXELS, QWEN_VL_MAX_PIXELS = 4 * CELL * CELL, 16384 * CELL * CELL


class Qwen25VL(TransformersVLM):
    """Qwen2.5-VL behind the VLM adapter interface. ``Qwen25VL(ref).load(dtype, device)``."""

    family = "Qwen2.5-VL"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    model_types = ("qwen2_5_vl",)
    cell = CELL
    box_convention = "resized-pixels"  # answers in pixels of the resized input (overview/answer.py)
    layer_rule = "absolute"  # the released code's layers 16-19 on every size

    def prepare(self, items: Sequence[tuple[Any, str]], config) -> PreparedBatch:
        """Turn ``items`` = [(image, expression), ...] into left-padded model inputs; ``image`` as
        :func:`vlm_image` takes it (a path as the released script, a PIL image, or uint8 RGB (H, W, 3)).
        ``config``: an OverviewConfig (prompt text and pixel budget)."""
        return prepare_batch(self.processor, items, config)


def build_messages(image, text: str, config) -> list[dict]:
    """The released conversation: one user turn with the image (a path or a PIL image) then ``text``."""
    element: dict = {"type": "image", "image": image}
    if config.max_pixels is not None:
        element["max_pixels"] = int(config.max_pixels)
    if config.min_pixels is not None:
        element["min_pixels"] = int(config.min_pixels)
    return [{"role": "user", "content": [element, {"type": "text", "text": text}]}]


def _processor_size(config) -> dict:
    """With pixel bounds overridden, the processor gets the same bounds so it does not resize again."""
    if config.max_pixels is None and config.min_pixels is None:
        return {}  # released: qwen_vl_utils output is already a fixed point of the processor's resize
    return {"size": {"shortest_edge": int(config.min_pixels or QWEN_VL_MIN_PIXELS),
                     "longest_edge": int(config.max_pixels or QWEN_VL_MAX_PIXELS)}}


def vlm_image(image) -> tuple[Any, tuple[int, int]]:
    """What ``qwen_vl_utils`` gets for one image, and the original (H, W).

    A path (str / PathLike) is passed on as the path, as the released script does: ``fetch_image``
    opens it with PIL, composites RGBA onto white and converts every other mode with
    ``convert("RGB")`` (docs/method.md, "How each stage reads the image"); a TIFF PIL cannot decode
    faithfully (:func:`rsvg_zeroov.raster.needs_raster_reader`) goes as the PIL image of
    :func:`rsvg_zeroov.images.read_for_vlm`. A PIL image goes through the same conversion; a uint8
    RGB (H, W, 3) array is wrapped as a PIL image.
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from ..images import image_hw, read_for_vlm
        from ..raster import needs_raster_reader

        h, w = image_hw(image)  # ImageError for a missing / unreadable file, before the model runs
        if needs_raster_reader(image):  # 16-bit, float, > 4 bands, GeoTIFF: read as every stage reads it
            return read_for_vlm(image), (h, w)
        return str(image), (h, w)
    if isinstance(image, Image.Image):
        return image, (image.height, image.width)
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError(f"overview input image must be a path, a PIL image or uint8 RGB (H, W, 3), got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    return Image.fromarray(image), (int(image.shape[0]), int(image.shape[1]))


def prepare_batch(processor, items: Sequence[tuple[Any, str]], config, patch_size: int = CELL // 2,
                  processor_kwargs: dict | None = None) -> PreparedBatch:
    """:meth:`Qwen25VL.prepare` for a processor (the model is not needed). ``patch_size``: the
    vision tower's patch side (``qwen_vl_utils`` resizes to multiples of 2 x that);
    ``processor_kwargs``: passed to the processor call instead of the pixel bounds (Qwen3-VL)."""
    from qwen_vl_utils import process_vision_info

    prompts, chat_texts, images, sizes = [], [], [], []
    for image, expression in items:
        element, size = vlm_image(image)
        text = config.prompt(expression)
        messages = build_messages(element, text, config)
        chat_texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        image_inputs, _ = process_vision_info(messages, image_patch_size=patch_size)
        images.extend(image_inputs)
        prompts.append(text)
        sizes.append(size)
    extra = _processor_size(config) if processor_kwargs is None else processor_kwargs
    inputs = processor(text=chat_texts, images=images, padding=True, padding_side="left",
                       return_tensors="pt", **extra)
    merge = int(processor.image_processor.merge_size)
    grids = tuple((int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"].tolist())
    spans = tuple(image_span(row, processor, grid) for row, grid in zip(inputs["input_ids"], grids))
    return PreparedBatch(inputs=inputs, prompts=tuple(prompts), chat_texts=tuple(chat_texts), spans=spans,
                         grids=grids, image_hw=tuple(sizes), resized_hw=tuple((im.height, im.width) for im in images))


def image_span(input_ids, processor, grid: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of the tokens strictly between <|vision_start|> and <|vision_end|> in one row."""
    tok = processor.tokenizer
    ids = input_ids.tolist()
    start_id, end_id = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>"))
    starts = [i for i, t in enumerate(ids) if t == start_id]
    ends = [i for i, t in enumerate(ids) if t == end_id]
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise ValueError(f"expected exactly one <|vision_start|> ... <|vision_end|> pair in the prompt, found "
                         f"{len(starts)} starts / {len(ends)} ends; the chat template must put one image in the turn")
    start, end = starts[0] + 1, ends[0]
    gh, gw = grid
    if end - start != gh * gw or any(t != processor.image_token_id for t in ids[start:end]):
        raise ValueError(f"image token span has {end - start} tokens, expected gh*gw = {gh}*{gw} image tokens")
    return start, end
