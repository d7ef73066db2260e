"""Tiny random-weight stand-ins of the transformers SAM-family refiners (``tiny-sam-hq``,
``tiny-sam2.1``, ``tiny-sam3``): each a folder with ``config.json``, ``model.safetensors`` and the
processor's config, written by ``save_pretrained`` and loaded back by the real ``from_pretrained``
(:mod:`rsvg_zeroov.models.sam_hf`). The real input sizes (1024; 1008 for SAM 3) and mask frames are
kept, the widths and depths are cut to a few hundred thousand parameters. Seeded: the same seed
gives the same tensors. Their masks mean nothing; only the code paths are real.
"""
from __future__ import annotations

import os
from pathlib import Path

# one place for the tiny widths: transformer width, MLP width, heads, IoU-head width
_WIDTH, _MLP, _HEADS = 32, 64, 2
_DECODER = {"hidden_size": _WIDTH, "mlp_dim": _MLP, "num_attention_heads": _HEADS, "iou_head_hidden_dim": _WIDTH}


def _save(model, processor, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _seeded(build, seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_sam_hq(out_path: str | os.PathLike, seed: int = 0) -> Path:
    """SAM-HQ: a 2-layer ViT (width 32, one global-attention layer feeding the HQ path)."""
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor, SamImageProcessor

    config = SamHQConfig(
        vision_config={"hidden_size": _WIDTH, "output_channels": _WIDTH, "num_hidden_layers": 2,
                       "num_attention_heads": _HEADS, "global_attn_indexes": [1], "window_size": 8,
                       "mlp_dim": _MLP, "num_pos_feats": _WIDTH // 2, "initializer_range": 0.02},
        prompt_encoder_config={"hidden_size": _WIDTH},
        mask_decoder_config={**_DECODER, "vit_dim": _WIDTH})
    model = _seeded(lambda: SamHQModel(config), seed)
    return _save(model, SamHQProcessor(image_processor=SamImageProcessor()), Path(out_path))


def build_tiny_sam2(out_path: str | os.PathLike, seed: int = 0) -> Path:
    """SAM 2.1: a 5-block Hiera (widths 8-64, global attention in the third stage) and its FPN."""
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    backbone = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
                "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
                "num_attention_heads_per_stage": [1, 1, 2, 2], "global_attention_blocks": [3]}
    config = Sam2Config(
        vision_config={"model_type": "sam2_vision_model", "backbone_config": backbone,
                       "backbone_channel_list": [64, 32, 16, 8], "fpn_hidden_size": _WIDTH},
        prompt_encoder_config={"hidden_size": _WIDTH}, mask_decoder_config=dict(_DECODER))
    model = _seeded(lambda: Sam2Model(config), seed)
    return _save(model, Sam2Processor(image_processor=Sam2ImageProcessor()), Path(out_path))


def build_tiny_sam3(out_path: str | os.PathLike, seed: int = 0) -> Path:
    """SAM 3's tracker: a 2-layer ViT (width 32, 14-px patches on 1008 px) and its FPN."""
    from transformers import Sam3ImageProcessor, Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerProcessor

    backbone = {"model_type": "sam3_vit_model", "hidden_size": _WIDTH, "intermediate_size": _MLP,
                "num_hidden_layers": 2, "num_attention_heads": _HEADS, "global_attn_indexes": [1]}
    config = Sam3TrackerConfig(
        vision_config={"model_type": "sam3_vision_model", "backbone_config": backbone, "fpn_hidden_size": _WIDTH},
        prompt_encoder_config={"hidden_size": _WIDTH}, mask_decoder_config=dict(_DECODER))
    model = _seeded(lambda: Sam3TrackerModel(config), seed)
    return _save(model, Sam3TrackerProcessor(image_processor=Sam3ImageProcessor()), Path(out_path))
