"""Shared helpers of the Overview tests: test images and the eager oracle (the tiny Qwen fixture,
``tiny_qwen``, is in conftest.py).

The oracle is the released approach, written independently of rsvg_zeroov.overview: eager
attention, ``output_attentions=True`` for all layers, batch 1, then
``a_l = mean over steps of (mean over heads of attention[last query, image keys])`` and
``A_C = sum_l w_l * minmax(a_l)``.
"""
from __future__ import annotations

import numpy as np

PROMPT = ("Locate it according to the following description.  {q} "
          "The output format should be like [x1, y1, x2, y2] without any other text.")


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    """A random uint8 RGB (h, w, 3) image with some structure (a bright block)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = 230
    return img


SQUARE = (rgb(84, 84, 1), "the white storage tank in the middle")  # grid 3 x 3
NONSQUARE = (rgb(56, 84, 2), "a ship near the harbor")             # H 56, W 84 -> grid 2 x 3


def eager_oracle(model_dir, item, layers, weights, max_new_tokens, min_new_tokens=None, eos=None,
                 dtype="float32") -> dict:
    """Released recipe for one (rgb or image path, expression): per_layer (n, gh, gw), fused (gh, gw),
    tokens, grid. In ``dtype`` the model runs, the attention probabilities are taken and averaged
    over heads then steps (as the released script); cast to float32 after, fused in float64."""
    import torch
    from PIL import Image
    from qwen_vl_utils import process_vision_info

    from rsvg_zeroov.models.vlm import load_vlm

    vlm = load_vlm(str(model_dir), dtype=getattr(torch, dtype), device="cpu")
    model, processor = vlm.model, vlm.processor
    model.set_attn_implementation("eager")
    image, expression = item
    image = str(image) if not isinstance(image, np.ndarray) else Image.fromarray(image)  # a path: as released
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": PROMPT.format(q=expression)}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, _ = process_vision_info(messages)
    inputs = processor(text=[text], images=images, padding=True, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")) + 1
    end = ids.index(processor.tokenizer.convert_tokens_to_ids("<|vision_end|>"))
    _, gh, gw = (int(v) for v in inputs["image_grid_thw"][0])
    gh, gw = gh // 2, gw // 2
    gen = dict(max_new_tokens=max_new_tokens, do_sample=False, output_attentions=True, return_dict_in_generate=True)
    if min_new_tokens is not None:
        gen["min_new_tokens"] = min_new_tokens
    if eos is not None:
        gen["eos_token_id"] = eos
    with torch.no_grad():
        out = model.generate(**inputs, **gen)
    per_layer = []
    for layer in layers:
        steps = [step[layer][0, :, -1, start:end].mean(0) for step in out.attentions]  # (gh*gw,) per step
        per_layer.append(torch.stack(steps).mean(0).reshape(gh, gw))
    per_layer = torch.stack(per_layer).float().double()
    fused = sum(w * (a - a.min()) / (a.max() - a.min()) for w, a in zip(weights, per_layer))
    return {"per_layer": per_layer.numpy(), "fused": fused.numpy(), "grid": (gh, gw),
            "tokens": out.sequences[0, inputs["input_ids"].shape[1]:].tolist(), "steps": len(out.attentions)}


def write_jsonl_dataset(folder, items) -> str:
    """A JSONL data set (docs/datasets.md, the JSONL format) of [(id, rgb, expression), ...]; returns the file."""
    import json

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    lines = []
    for sid, image, expression in items:
        Image.fromarray(image).save(folder / "images" / f"{sid}.png")
        h, w = image.shape[:2]
        lines.append(json.dumps({"id": sid, "image": f"images/{sid}.png", "expression": expression,
                                 "box": [1, 1, w // 2, h // 2]}))
    path = folder / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
