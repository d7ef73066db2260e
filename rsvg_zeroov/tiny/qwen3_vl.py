"""A tiny random-weight Qwen3-VL (registry key ``tiny-qwen3-vl``) with an offline tokenizer,
chat template and processors.

``build(out_dir, seed)`` writes a folder that loads through the real loading code
(``Qwen3VLForConditionalGeneration`` / ``AutoProcessor.from_pretrained``) like a checkpoint:
``config.json`` + weights, a greedy ``generation_config.json``, the byte-level BPE tokenizer of
:mod:`rsvg_zeroov.tiny.qwen` (the same Qwen special tokens), a Qwen3-VL style chat template (no
default system prompt) and ``Qwen3VLProcessor`` with 16-pixel patches merged 2 x 2 and the
Instruct checkpoints' image bounds. Architecture: :data:`TEXT` / :data:`VISION`: 14 decoder
layers (so the relative-depth rule gives layers 8-11, not the paper's numbers), hidden 64,
4 heads / 2 KV heads, head_dim 16 (``mrope_section`` 4+2+2 = 8 = head_dim / 2, interleaved as
Qwen3-VL), a 2-block vision tower with one deepstack layer; q/k scaled by
:data:`~rsvg_zeroov.tiny.qwen.QK_GAIN`. Seeded: the same bytes every build; a few MB; seconds.
"""
from __future__ import annotations

import os
from pathlib import Path

from .qwen import BPE_VOCAB, SPECIAL_TOKENS, build_tokenizer, seeded_model
from .qwen import CHAT_TEMPLATE as QWEN25_TEMPLATE

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=14, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2],
                             "mrope_interleaved": True})
VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
              temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[1])
# Qwen3-VL Instruct image bounds: 64 .. 16384 merged tokens of 32 x 32 pixels.
MIN_PIXELS, MAX_PIXELS = 64 * 32 * 32, 16384 * 32 * 32

# Qwen2.5-VL's chat format without its default system turn (Qwen3-VL adds none).
_SYSTEM = ("{% if loop.first and message['role'] != 'system' %}"
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}")
CHAT_TEMPLATE = QWEN25_TEMPLATE.replace(_SYSTEM, "")


def _processor(tokenizer):
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    grid = dict(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(size=size, **grid), tokenizer=tokenizer,
                            video_processor=Qwen3VLVideoProcessor(**grid), chat_template=CHAT_TEMPLATE)


def build(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny Qwen3-VL folder at ``out_dir`` (float32 weights, seeded); returns its path."""
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(TEXT, vocab_size=BPE_VOCAB + len(SPECIAL_TOKENS), bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    config = Qwen3VLConfig(text_config=text, vision_config=dict(VISION), image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = seeded_model(Qwen3VLForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(do_sample=False, bos_token_id=ids["<|endoftext|>"],
                                               pad_token_id=ids["<|endoftext|>"],
                                               eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]])
    model.save_pretrained(out)
    _processor(tokenizer).save_pretrained(out)
    return out
