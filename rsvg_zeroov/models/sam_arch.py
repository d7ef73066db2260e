"""SAM architecture numbers, one place: the three official sizes and the tiny offline stand-in.

Built from segment-anything's own modeling classes (no vendored fork). Weights are loaded
separately by :func:`rsvg_zeroov.models.registry.load_sam`.
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


SAM_ARCHS = {
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    # Random-weight offline stand-in: same code path, a few hundred kB.
    "tiny": SamArch(32, 2, 2, (1,), prompt_embed_dim=32, decoder_mlp_dim=64, decoder_heads=2,
                    iou_head_hidden_dim=32, mlp_ratio=2.0, window_size=8),
}


def build_sam_arch(sam_type: str):
    """An uninitialised-weights ``segment_anything.modeling.Sam`` of ``sam_type``."""
    from functools import partial

    import torch
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    if sam_type not in SAM_ARCHS:
        raise ValueError(f"unknown SAM type {sam_type!r}; choose from {', '.join(SAM_ARCHS)}")
    a = SAM_ARCHS[sam_type]
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
