"""The Qwen3-VL adapter of stage 1 (2B, 4B, 8B, 32B Instruct, and the tiny stand-in).

Qwen3-VL keeps Qwen2.5-VL's conversation and image tokens (one user turn: the image between
``<|vision_start|>`` and ``<|vision_end|>``, then the text), so the preparation is
:func:`rsvg_zeroov.models.qwen2_5_vl.prepare_batch` with two differences:

- 16-pixel patches merged 2 x 2: each merged token covers a 32 x 32 cell. ``qwen_vl_utils`` is
  called with ``image_patch_size=16`` (smart resize to multiples of 32 within its pixel bounds,
  ``--min-pixels`` / ``--max-pixels`` or its own 4 .. 16384 tokens), and the processor gets
  ``do_resize=False`` so it keeps that size, as Qwen3-VL's own usage does;
- the chat template is the checkpoint's (Qwen3-VL adds no default system prompt).

The image keys are the ``gh * gw`` tokens between the vision start and end tokens, row-major over
the merged grid ``image_grid_thw[1:] // merge_size`` (the rope position ids of the model's
``get_rope_index`` give the same layout; tests/test_overview_backends.py checks it).

Answers use a 0-1000 grid over the image (``box_convention = "grid-1000"``). Decoder depths
differ from the paper's 28 (2B: 28, 4B / 8B: 36, 32B: 64): the default layers follow the
relative-depth rule of :mod:`rsvg_zeroov.overview.layers`.
"""
from __future__ import annotations

from typing import Any, Sequence

from .qwen2_5_vl import prepare_batch
from .vlm import PreparedBatch, TransformersVLM

PATCH = 16
CELL = 2 * PATCH


class Qwen3VL(TransformersVLM):
    """Qwen3-VL behind the VLM adapter interface. ``Qwen3VL(ref).load(dtype, device)``."""

    family = "Qwen3-VL"
    model_class = "Qwen3VLForConditionalGeneration"
    model_types = ("qwen3_vl",)
    cell = CELL
    box_convention = "grid-1000"
    layer_rule = "relative"

    def prepare(self, items: Sequence[tuple[Any, str]], config) -> PreparedBatch:
        """``items`` = [(image, expression), ...] -> left-padded inputs (see the module docstring)."""
        return prepare_batch(self.processor, items, config, patch_size=PATCH,
                             processor_kwargs={"do_resize": False})
