"""A tiny random-weight LLaVA (registry key ``tiny-llava``) in the ``llava-hf`` layout, with an
offline tokenizer, chat template and processor.

``build(out_dir, seed)`` writes a folder that loads through the real loading code
(``LlavaForConditionalGeneration`` / ``AutoProcessor.from_pretrained``) like a converted
checkpoint: ``config.json`` (``model_type: "llava"``: a CLIP vision tower, a Llama language model,
the 2-layer projector, ``vision_feature_layer=-2``, ``vision_feature_select_strategy="default"``)
+ weights, a greedy ``generation_config.json``, the byte-level BPE tokenizer of
:mod:`rsvg_zeroov.tiny.qwen` with LLaVA's special tokens, a LLaVA-1.5 style chat template
(``USER: <image>\\n{text} ASSISTANT:``) and ``LlavaProcessor`` with a ``CLIPImageProcessor``.
Architecture: :data:`TEXT` / :data:`VISION`: 112-pixel square input, 14-pixel patches (an 8 x 8
token grid, 64 image tokens), 12 decoder layers (the relative-depth rule gives 7-10), hidden 64,
4 heads / 2 KV heads; q/k scaled by :data:`~rsvg_zeroov.tiny.qwen.QK_GAIN`. Seeded; a few MB; seconds.
"""
from __future__ import annotations

import os
from pathlib import Path

from .qwen import BPE_VOCAB, build_tokenizer, seeded_model

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
SIDE, PATCH = 112, 14
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=12, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIDE,
              patch_size=PATCH, projection_dim=32)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% else %}{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% if not loop.last %} {% endif %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def _processor(tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE},
                                         do_center_crop=True, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def build(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny LLaVA folder at ``out_dir`` (float32 weights, seeded); returns its path."""
    from transformers import GenerationConfig, LlavaConfig, LlavaForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(SPECIAL_TOKENS, eos_token="</s>", pad_token="<pad>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(TEXT, model_type="llama", vocab_size=BPE_VOCAB + len(SPECIAL_TOKENS), bos_token_id=ids["<s>"],
                eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"], tie_word_embeddings=False)
    config = LlavaConfig(vision_config=dict(VISION, model_type="clip_vision_model"), text_config=text,
                         image_token_index=ids["<image>"], image_seq_length=(SIDE // PATCH) ** 2,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         tie_word_embeddings=False)
    model = seeded_model(LlavaForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(do_sample=False, bos_token_id=ids["<s>"], pad_token_id=ids["<pad>"],
                                               eos_token_id=ids["</s>"])
    model.save_pretrained(out)
    _processor(tokenizer).save_pretrained(out)
    return out
