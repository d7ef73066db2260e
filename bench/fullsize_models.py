"""Random-weight builds of the three frozen models at full size (or shrunken), for speed benchmarks.

The cost of a forward pass does not depend on the weights, so the full-size benchmark builds the
architectures from their configs, with random weights, directly on the target device (no download,
no checkpoint). Architecture numbers live here, one place per scale:

- ``full``: Qwen2.5-VL-7B-Instruct (text 28 layers / hidden 3584 / 28 heads / 4 KV heads / vocab
  152064; vision 32 blocks / hidden 1280), SD v1.4 (UNet 320-640-1280-1280, 8 heads, cross-attention
  768; VAE 128-256-512-512; CLIP ViT-L/14 text encoder 12 layers / hidden 768) and SAM ViT-H.
- ``small``: the same structures shrunken to the tiny offline stand-ins (rsvg_zeroov.tiny): CPU
  seconds, used by the tests of the benchmark itself.

Tokenizers and processors are the tiny offline ones (rsvg_zeroov.tiny). The model configs carry
the tiny tokenizers' special-token ids (the Qwen vocabulary stays 152064 at full scale, so the
embedding and LM-head cost is the real one); generated ids outside the tiny vocabulary decode to
nothing, which only affects the (meaningless) answer text.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

SCALES = ("full", "small")
QWEN_TEXT = {
    "full": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
    "small": None,  # rsvg_zeroov.tiny.qwen.TEXT (20 layers, hidden 64), tokenizer-sized vocabulary
}
QWEN_VISION = {
    "full": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                 patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                 fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
    "small": None,  # rsvg_zeroov.tiny.qwen.VISION (2 blocks, hidden 32)
}
UNET = {"full": dict(heads=8, channels=(320, 640, 1280, 1280), cross_attention_dim=768, norm_num_groups=32),
        "small": dict(heads=1, channels=(16, 16, 32, 32), cross_attention_dim=32, norm_num_groups=8)}
VAE = {"full": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
       "small": {}}
CLIP_TEXT = {"full": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, projection_dim=768),
             "small": dict(vocab_size=None, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, projection_dim=32)}
SAM_TYPE = {"full": "vit_h", "small": "tiny"}


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: choose from {', '.join(SCALES)}")


@contextmanager
def on_device(device, seed: int):
    """Create tensors on ``device`` (random init runs there: seconds for 7 B parameters on a GPU), seeded."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        if torch.device(device).type == "cuda":
            torch.cuda.manual_seed(seed)
        yield


def n_params(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def qwen_config(scale: str, ids: dict):
    """Qwen2_5_VLConfig of ``scale`` with the special-token ids ``ids`` (token -> id) of the tokenizer."""
    from transformers import Qwen2_5_VLConfig

    from rsvg_zeroov.tiny.qwen import BPE_VOCAB, SPECIAL_TOKENS, TEXT, VISION

    _check_scale(scale)
    text = QWEN_TEXT[scale] or dict(TEXT, vocab_size=BPE_VOCAB + len(SPECIAL_TOKENS))
    vision = QWEN_VISION[scale] or VISION
    text = dict(text, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(vision), image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)


def build_qwen(scale: str, device="cpu", dtype=None, seed: int = 0):
    """(model, processor): a random Qwen2.5-VL of ``scale`` in ``dtype`` on ``device`` (sdpa, eval, no grad)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rsvg_zeroov.tiny.qwen import SPECIAL_TOKENS, _generation_config, _processor, build_tokenizer

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = qwen_config(scale, ids)
    with on_device(device, seed):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype or torch.float32, attn_implementation="sdpa")
    model.eval().requires_grad_(False)
    model.generation_config = _generation_config(ids)
    return model, _processor(tokenizer)


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    from rsvg_zeroov.tiny.sd import write_tokenizer

    with tempfile.TemporaryDirectory(prefix="clip_tok_") as tmp:
        write_tokenizer(Path(tmp))
        return CLIPTokenizer.from_pretrained(tmp)


def build_sd(scale: str, device="cpu", dtype=None, seed: int = 0):
    """SDComponents of a random SD v1.4-layout model of ``scale`` (float32 unless ``dtype``)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from rsvg_zeroov.models.base import ModelRef
    from rsvg_zeroov.models.sd import StableDiffusion as SDComponents
    from rsvg_zeroov.tiny.sd import unet_config, vae_config

    _check_scale(scale)
    tokenizer = _clip_tokenizer()
    u = UNET[scale]
    clip = dict(CLIP_TEXT[scale])
    clip["vocab_size"] = clip["vocab_size"] or len(tokenizer)
    clip_config = CLIPTextConfig(**clip, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    with on_device(device, seed):
        unet = UNet2DConditionModel(**dict(unet_config(u["heads"], u["channels"], 64, u["cross_attention_dim"]),
                                           norm_num_groups=u["norm_num_groups"]))
        vae = AutoencoderKL(**dict(vae_config(), **VAE[scale]))
        text_encoder = CLIPTextModel(clip_config)
    for m in (unet, vae, text_encoder):
        if dtype is not None and dtype != torch.float32:
            m.to(dtype=dtype)
        m.eval().requires_grad_(False)
    ref = ModelRef("sd", f"random-weight SD v1.4 architecture ({scale})", None)
    return SDComponents(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, ref=ref)


def build_sam(scale: str, device="cpu", seed: int = 0):
    """A random float32 ``segment_anything`` Sam of ``scale`` (ViT-H at full scale) on ``device``."""
    from rsvg_zeroov.models.sam_arch import build_sam_arch

    _check_scale(scale)
    with on_device(device, seed):
        model = build_sam_arch(SAM_TYPE[scale])
    return model.to(device).eval().requires_grad_(False)  # .to: SAM's pixel_mean/std are built on the CPU


def sam_refiner(model, sam_type: str):
    """A :class:`rsvg_zeroov.models.sam.SamRefiner` around an already built ``model`` (no checkpoint)."""
    from rsvg_zeroov.models.sam import SamRefiner

    return SamRefiner(model, sam_type, f"<random {sam_type} weights>")
