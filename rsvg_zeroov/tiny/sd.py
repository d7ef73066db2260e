"""A tiny random-weight Stable Diffusion v1 stand-in, saved in the diffusers folder layout.

``build_tiny_sd(out_dir)`` writes ``vae/``, ``unet/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/`` and ``model_index.json`` (the ``CompVis/stable-diffusion-v1-4`` layout), loadable by
:func:`rsvg_zeroov.models.diffusion.load_diffusion` and by ``StableDiffusionPipeline``. Only the
*structure* of SD v1 is kept:

- UNet: CrossAttnDownBlock2D x3 + DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D +
  CrossAttnUpBlock2D x3, ``layers_per_block=2``; so a 512x512 image (64x64 latent) has
  self-attention (attn1) at r = 64, 32, 16 (2 down + 3 up layers each) and 8 (mid block).
  ``attention_head_dim`` is the *number of heads* in diffusers' SD v1 UNets (1 by default: cheap).
- VAE: 3 downsamplings (512 -> 64), 4 latent channels, scaling factor 0.18215.
- CLIP text encoder (2 layers) and a byte-level CLIP BPE tokenizer built offline: the 256 byte
  symbols, each also with the end-of-word suffix ``</w>``, a few merges, ``<|startoftext|>`` and
  ``<|endoftext|>``; ``model_max_length`` 77. Every character is encodable, so any prompt works.
- scheduler: a fresh DDIM with the paper's settings, as the released script constructs it
  (``steps_offset`` 0, which ``StableDiffusionPipeline.__init__`` rewrites to 1); the focus stage
  builds its own DDIM anyway.

Seeded: the same weights on every build. The weights are random: outputs mean nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# A few merges so that frequent words become single tokens (realistic chunk lengths).
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o n</w>", "o f</w>", "i n</w>", "c a", "ca r</w>",
           "r e", "re d</w>", "l e", "le f", "lef t</w>"]
TEXT_HIDDEN = 32
LATENT_SIZE = 64


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable-character table of byte-level BPE (GPT-2 / CLIP convention)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """(vocab token -> id, merges) of the tiny CLIP tokenizer; the two special tokens come last."""
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    for merge in _MERGES:
        tokens.append(merge.replace(" ", ""))
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, list(_MERGES)


def unet_config(heads: int = 1, channels: tuple[int, ...] = (16, 16, 32, 32), sample_size: int = LATENT_SIZE,
                cross_attention_dim: int = TEXT_HIDDEN) -> dict:
    """UNet2DConditionModel kwargs with the SD v1 block structure and small channels."""
    return dict(
        sample_size=sample_size, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=tuple(channels), layers_per_block=2, norm_num_groups=8,
        cross_attention_dim=cross_attention_dim, attention_head_dim=heads,
    )


def vae_config() -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4,
        scaling_factor=0.18215,
    )


def scheduler_config() -> dict:
    """DDIM as the released script constructs it (docs/method.md, stage 2): ``steps_offset`` 0 here gives
    950, ..., 0; loaded through ``StableDiffusionPipeline`` it becomes 1 and 20 steps run at 951, ..., 1."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=0)


def _text_encoder(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         projection_dim=TEXT_HIDDEN, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    return CLIPTextModel(cfg)


def write_tokenizer(folder: Path) -> dict[str, int]:
    """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (the SD v1.4 tokenizer files)."""
    vocab, merges = tiny_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return vocab


def build_tiny_sd(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny SD v1-layout model to ``out_dir`` and return it (seconds, a few MB)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(out / "tokenizer")
    torch.manual_seed(seed)
    _text_encoder(len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"]).save_pretrained(out / "text_encoder")
    torch.manual_seed(seed + 1)
    UNet2DConditionModel(**unet_config()).save_pretrained(out / "unet")
    torch.manual_seed(seed + 2)
    AutoencoderKL(**vae_config()).save_pretrained(out / "vae")
    DDIMScheduler(**scheduler_config()).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out
