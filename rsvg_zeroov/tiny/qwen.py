"""A tiny random-weight Qwen2.5-VL with an offline tokenizer, chat template and image processor.

``build_tiny_qwen(out_dir, seed)`` writes a folder that loads through
:func:`rsvg_zeroov.models.vlm.load_vlm` exactly like a real checkpoint: ``config.json`` +
weights, ``generation_config.json`` (greedy), a byte-level BPE tokenizer with the Qwen special
tokens, the Qwen2.5-VL chat template (default system prompt) and the Qwen2-VL image/video
processors with the Qwen2.5-VL checkpoint's pixel bounds. Architecture numbers live in
:data:`TEXT`/:data:`VISION`: 20 decoder layers so the paper's layers 16-19 exist, hidden 64,
4 heads / 2 KV heads (head_dim 16, mrope_section 2+3+3 = 8); the text q/k projections are scaled
by :data:`QK_GAIN` so the random attention is peaked and greedy answers vary with the input.
Seeded: the same bytes every build; a few MB; seconds. The weights are random: answers and maps mean nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

# Qwen's special tokens, in the checkpoint's relative order; ids = BPE vocabulary size + index.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
BPE_VOCAB = 480  # byte-level BPE ids 0..479 (256 bytes + merges); special tokens follow
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=20, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]})
VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1], out_hidden_size=64,
              tokens_per_second=2)
QK_GAIN = 5.0  # text q/k projections scaled after init: peaked attention, input-dependent answers

# The Qwen2.5-VL chat format: default system turn, images as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "You are a helpful assistant. Locate it according to the following description.  "
    "The output format should be like [x1, y1, x2, y2] without any other text. "
    "the airplane on the left of the runway; a small white ship near the harbor; the storage tank at the "
    "bottom right; vehicle parked next to the building; bridge over the river; tennis court, baseball field, "
    "ground track field, expressway service area, stadium, chimney, dam, golf course, train station, windmill. "
    "0123456789 [12, 34, 56, 78] [100, 200, 300, 400] "
)


def build_tokenizer(special_tokens=SPECIAL_TOKENS, eos_token: str = "<|im_end|>", pad_token: str = "<|endoftext|>"):
    """A deterministic byte-level BPE (``tokenizers``) wrapped as a transformers fast tokenizer;
    ``special_tokens`` get the ids from :data:`BPE_VOCAB` on (other families' stand-ins pass theirs)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    while tok.get_vocab_size() < BPE_VOCAB:  # pad the vocabulary to a fixed size so special ids are fixed
        tok.add_tokens([f"<|unused{tok.get_vocab_size()}|>"])
    tok.add_special_tokens(list(special_tokens))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token=eos_token, pad_token=pad_token,
        unk_token=None, model_max_length=32768, padding_side="left", clean_up_tokenization_spaces=False,
        split_special_tokens=False)


def _config(ids: dict, text: dict, vision: dict):
    from transformers import Qwen2_5_VLConfig

    text = dict(text, vocab_size=BPE_VOCAB + len(SPECIAL_TOKENS), bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(vision), image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)


def _generation_config(ids: dict):
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=False, bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]])


def _processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from ..models.qwen2_5_vl import QWEN_VL_MAX_PIXELS, QWEN_VL_MIN_PIXELS  # the Instruct checkpoints' bounds too

    bounds = dict(min_pixels=QWEN_VL_MIN_PIXELS, max_pixels=QWEN_VL_MAX_PIXELS, patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**bounds),
                               tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(**bounds),
                               chat_template=CHAT_TEMPLATE)


def build_tiny_qwen(out_dir: str | os.PathLike, seed: int = 0, text: dict | None = None,
                    vision: dict | None = None) -> Path:
    """Write the tiny Qwen2.5-VL folder at ``out_dir`` (weights float32, seeded) and return its path.

    ``text`` / ``vision`` update :data:`TEXT` / :data:`VISION` (e.g. a mid-size random config for
    benchmarks); the tokenizer, chat template and processor stay the same.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert list(ids.values()) == list(range(BPE_VOCAB, BPE_VOCAB + len(SPECIAL_TOKENS))), ids
    config = _config(ids, {**TEXT, **(text or {})}, {**VISION, **(vision or {})})
    model = seeded_model(Qwen2_5_VLForConditionalGeneration, config, seed)
    model.generation_config = _generation_config(ids)
    model.save_pretrained(out)
    _processor(tokenizer).save_pretrained(out)
    return out


def seeded_model(model_class, config, seed: int):
    """``model_class(config)`` with seeded random float32 weights, its language model's q/k
    projections scaled by :data:`QK_GAIN` (the tiny stand-ins of every VLM family)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32).eval()
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                layer.self_attn.q_proj.weight.mul_(QK_GAIN)
                layer.self_attn.k_proj.weight.mul_(QK_GAIN)
    return model
