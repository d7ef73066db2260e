"""Helpers of tests/test_overview_backends.py: the eager oracle for the Qwen3-VL and LLaVA stand-ins,
written independently of rsvg_zeroov.overview (its own inputs, image-token span and grid).

The oracle is the released approach: eager attention, ``output_attentions=True`` for every layer,
batch 1, ``a_l = mean over steps of (mean over heads of attention[last query, image keys])``.
"""
from __future__ import annotations

import numpy as np

from overview_helpers import PROMPT


def oracle_inputs(family: str, processor, config, item):
    """(inputs, (start, end), (gh, gw)) of one (uint8 image, expression), built here from the
    processor and the model config, not by the adapter."""
    from PIL import Image

    image, expression = Image.fromarray(item[0]), item[1]
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": PROMPT.format(q=expression)}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if family == "qwen3-vl":
        from qwen_vl_utils import process_vision_info

        images, _ = process_vision_info(messages, image_patch_size=16)
        inputs = processor(text=[text], images=images, do_resize=False, return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        start, end = ids.index(config.vision_start_token_id) + 1, ids.index(config.vision_end_token_id)
        _, gh, gw = (int(v) // m for v, m in zip(inputs["image_grid_thw"][0], (1, 2, 2)))
        return inputs, (start, end), (gh, gw)
    side = config.vision_config.image_size
    inputs = processor(text=[text], images=[image], do_center_crop=False, size={"height": side, "width": side},
                       return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    where = [i for i, t in enumerate(ids) if t == config.image_token_id]
    n = side // config.vision_config.patch_size
    return inputs, (where[0], where[-1] + 1), (n, n)


def eager_oracle(family: str, model_dir, model_class: str, item, layers, steps: int) -> dict:
    """per_layer float64 (n, gh, gw), tokens, grid and step count of the released recipe."""
    import torch
    import transformers
    from transformers import AutoProcessor

    model = getattr(transformers, model_class).from_pretrained(model_dir, dtype=torch.float32,
                                                                attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    inputs, (start, end), (gh, gw) = oracle_inputs(family, processor, model.config, item)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                             output_attentions=True, return_dict_in_generate=True)
    per_layer = [torch.stack([step[layer][0, :, -1, start:end].mean(0) for step in out.attentions]).mean(0)
                 .reshape(gh, gw) for layer in layers]
    return {"per_layer": torch.stack(per_layer).double().numpy(), "grid": (gh, gw), "steps": len(out.attentions),
            "tokens": out.sequences[0, inputs["input_ids"].shape[1]:].tolist()}


def fused64(per_layer: np.ndarray, weights) -> np.ndarray:
    """The released float64 fusion, written out: sum_l w_l (a_l - min) / (max - min)."""
    return sum(w * (a - a.min()) / (a.max() - a.min()) for w, a in zip(weights, per_layer))
