"""SAM architectures: the official sizes from ``segment_anything.sam_model_registry``, and the
tiny offline stand-in, whose numbers live here and nowhere else.

Built from segment-anything's own classes (no vendored fork). Weights are loaded separately, with
``torch.load(weights_only=True)`` (:mod:`rsvg_zeroov.models.sam`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamArch:
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    image_size: int = 1024
    patch_size: int = 16
    mlp_ratio: float = 4.0
    window_size: int = 14


OFFICIAL = ("vit_h", "vit_l", "vit_b")  # built by segment_anything.sam_model_registry
TINY_ARCH = SamArch(32, 2, 2, (1,), prompt_embed_dim=32, decoder_mlp_dim=64, decoder_heads=2,
                    iou_head_hidden_dim=32, mlp_ratio=2.0, window_size=8)  # random-weight stand-in, ~100 kB
SAM_TYPES = (*OFFICIAL, "tiny")


def build_sam_arch(sam_type: str):
    """A ``segment_anything.modeling.Sam`` of ``sam_type`` with freshly initialised weights."""
    from functools import partial

    import torch
    from segment_anything import sam_model_registry
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    if sam_type in OFFICIAL:
        return sam_model_registry[sam_type](checkpoint=None)
    if sam_type != "tiny":
        raise ValueError(f"unknown SAM type {sam_type!r}; choose from {', '.join(SAM_TYPES)}")
    a = TINY_ARCH
    grid = a.image_size // a.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=a.encoder_depth, embed_dim=a.encoder_embed_dim, img_size=a.image_size,
            mlp_ratio=a.mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a.encoder_num_heads, patch_size=a.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=a.encoder_global_attn_indexes, window_size=a.window_size,
            out_chans=a.prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(a.image_size, a.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=a.decoder_depth, embedding_dim=a.prompt_embed_dim,
                                          mlp_dim=a.decoder_mlp_dim, num_heads=a.decoder_heads),
            transformer_dim=a.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=a.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
