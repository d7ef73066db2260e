"""Stage 1 inputs: the chat messages, qwen_vl_utils image preprocessing, and where the image tokens are.

One user turn holds the image and the released prompt (docs/method.md, stage 1); the chat template's
default system prompt stays and ``add_generation_prompt=True``. Images are resized by
``qwen_vl_utils`` (smart resize to multiples of 28 within ``[min_pixels, max_pixels]``), then the
processor turns a batch into left-padded model inputs. The image key positions of row ``b`` are
the tokens strictly between ``<|vision_start|>`` and ``<|vision_end|>``: ``gh * gw`` tokens in
row-major order of the merged grid (``(gh, gw) = image_grid_thw[b, 1:] // merge_size``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .config import OverviewConfig

# qwen_vl_utils' image defaults (IMAGE_MIN_TOKEN_NUM / IMAGE_MAX_TOKEN_NUM merged tokens of 28x28 px).
QWEN_VL_MIN_PIXELS, QWEN_VL_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for B (image, expression) pairs plus what is needed to read the maps back.

    inputs: the processor's tensors: input_ids / attention_mask / mm_token_type_ids (B, L) left padded,
        pixel_values (sum of patches, C*T*14*14), image_grid_thw (B, 3) in 14-px patches.
    prompts: the user text of each row; chat_texts: the chat-templated text (one ``<|image_pad|>``).
    spans: [start, end) column range of each row's image tokens in ``input_ids`` (end - start = gh*gw).
    grids: (gh, gw) merged-token grid of each row. image_sizes: (W, H) original pixels.
    resized: (W', H') pixels fed to the vision tower.
    """

    inputs: Any
    prompts: tuple[str, ...]
    chat_texts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    grids: tuple[tuple[int, int], ...]
    image_sizes: tuple[tuple[int, int], ...]
    resized: tuple[tuple[int, int], ...]

    @property
    def prompt_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def build_messages(image, text: str, config: OverviewConfig) -> list[dict]:
    """The released conversation: one user turn with the image (a path or a PIL image) then ``text``."""
    element: dict = {"type": "image", "image": image}
    if config.max_pixels is not None:
        element["max_pixels"] = int(config.max_pixels)
    if config.min_pixels is not None:
        element["min_pixels"] = int(config.min_pixels)
    return [{"role": "user", "content": [element, {"type": "text", "text": text}]}]


def _processor_size(config: OverviewConfig) -> dict:
    """With pixel bounds overridden, the processor gets the same bounds so it does not resize again."""
    if config.max_pixels is None and config.min_pixels is None:
        return {}  # released: qwen_vl_utils output is already a fixed point of the processor's resize
    return {"size": {"shortest_edge": int(config.min_pixels or QWEN_VL_MIN_PIXELS),
                     "longest_edge": int(config.max_pixels or QWEN_VL_MAX_PIXELS)}}


def vlm_image(image) -> tuple[Any, tuple[int, int]]:
    """What ``qwen_vl_utils`` gets for one image, and the original (W, H).

    A path (str / PathLike) is passed on as the path, as the released script does: ``fetch_image``
    opens it with PIL, composites RGBA onto white and converts every other mode with
    ``convert("RGB")`` (docs/method.md, "How each stage reads the image"). A PIL image goes through
    the same conversion; a uint8 RGB (H, W, 3) array is wrapped as a PIL image.
    """
    import os

    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from ..images import image_size

        h, w = image_size(image)  # ImageError for a missing / unreadable file, before the model runs
        return str(image), (w, h)
    if isinstance(image, Image.Image):
        return image, image.size
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError(f"overview input image must be a path, a PIL image or uint8 RGB (H, W, 3), got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    return Image.fromarray(image), (int(image.shape[1]), int(image.shape[0]))


def prepare_batch(processor, items: Sequence[tuple[Any, str]], config: OverviewConfig) -> PreparedBatch:
    """Turn ``items`` = [(image, expression), ...] into left-padded model inputs; ``image`` as
    :func:`vlm_image` takes it (a path as the released script, a PIL image, or uint8 RGB (H, W, 3))."""
    from qwen_vl_utils import process_vision_info

    prompts, chat_texts, images, sizes = [], [], [], []
    for image, expression in items:
        element, size = vlm_image(image)
        text = config.prompt(expression)
        messages = build_messages(element, text, config)
        chat_texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        image_inputs, _ = process_vision_info(messages)
        images.extend(image_inputs)
        prompts.append(text)
        sizes.append(size)
    inputs = processor(text=chat_texts, images=images, padding=True, padding_side="left",
                       return_tensors="pt", **_processor_size(config))
    merge = int(processor.image_processor.merge_size)
    grids = tuple((int(h) // merge, int(w) // merge) for _, h, w in inputs["image_grid_thw"].tolist())
    spans = tuple(image_span(row, processor, grid) for row, grid in zip(inputs["input_ids"], grids))
    return PreparedBatch(inputs=inputs, prompts=tuple(prompts), chat_texts=tuple(chat_texts), spans=spans,
                         grids=grids, image_sizes=tuple(sizes), resized=tuple(tuple(im.size) for im in images))


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
