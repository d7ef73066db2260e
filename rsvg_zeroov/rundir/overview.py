"""Stage 1's files in the run directory (docs/run-directory.md): the dump, its sidecar, and the
released one-image interface's float64 heatmap.

    RUN/overview/<sample_id>.npy   float32 (1 + n_layers, gh, gw): [0] fused A_C, [1:] raw a_l in layer order
    RUN/overview/<sample_id>.json  sidecar: prompt, answer, tokens, grid, image size, layers, weights, model, ...
    DIR/heatmap_<layers>.npy       one-image mode only: float64 (1 + n_layers, gh, gw), the released file
                                   (e.g. heatmap_16171819.npy); [0] = A_C computed in float64

Paths come from :class:`~rsvg_zeroov.rundir.RunDir`; every write is atomic (dump first, then the
sidecar, so a dump without its sidecar is not "done" and is recomputed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import DumpError, RunDir, save_json, save_npy

DUMP_LAYOUT = "float32 (1 + n_layers, gh, gw): [0] fused A_C, [1:] raw per-layer maps a_l in 'layers' order"


def is_done(run: RunDir, sid: str, layers: Sequence[int], weights: Sequence[float],
            image_hw: tuple[int, int] | None = None, config=None) -> bool:
    """True when the sample's dump and sidecar load, validate, and were made with these layers and
    weights (and, if given, this original image size (H, W) and every other setting of ``config``
    that decides the maps: :func:`settings_match`)."""
    try:
        _, meta = run.load_overview(sid)
    except DumpError:
        return False
    if [int(v) for v in meta["layers"]] != [int(v) for v in layers]:
        return False
    if [round(float(v), 9) for v in meta["weights"]] != [round(float(w), 9) for w in weights]:
        return False
    if config is not None and not settings_match(meta, config):
        return False
    return image_hw is None or [int(v) for v in meta.get("image_size", ())] == [image_hw[1], image_hw[0]]  # [W, H]


def settings_match(meta: dict, config) -> bool:
    """Whether a sidecar was written with ``config``'s model (the default one when none is named), dtype, fidelity, answer budget, stop
    rule, prompt and pixel bounds. A key that sidecars of earlier versions lack counts as its
    default then (released fidelity, no bracket stop, the released prompt)."""
    from ..models.vlm import VLMS
    from ..overview.config import PROMPT_TEMPLATE

    if config.model is None:  # the default VLM: a sidecar naming another key (or family) is not its
        key = meta.get("model_key")
        same_model = key == VLMS.default.key or (key is None and "box_convention" not in meta)
    else:  # a model named explicitly: by key, else by its path or hub id
        entry = VLMS.entry(config.model)
        same_model = (meta.get("model_key") == entry.key if entry is not None
                      else meta.get("model") == config.model)
    generation = meta.get("generation") or {}
    return (same_model and (config.dtype is None or meta.get("dtype") == config.dtype)
            and meta.get("fidelity", "released") == config.fidelity
            and bool(meta.get("stop_at_bracket", False)) == config.stop_at_bracket
            and meta.get("prompt_template", PROMPT_TEMPLATE) == config.prompt_template
            and meta.get("max_pixels") == config.max_pixels and meta.get("min_pixels") == config.min_pixels
            and generation.get("max_new_tokens", config.max_new_tokens) == config.max_new_tokens)


def sidecar(result, sid: str, image: str, config, settings: dict) -> dict:
    """The ``<sample_id>.json`` next to the dump: what docs/run-directory.md promises plus everything
    that decided the maps. ``result``: an OverviewResult; ``settings``: ``Overview.resolved()``."""
    return {
        "sample_id": sid, "image": image, "prompt": result.prompt, "chat_prompt": result.chat_prompt,
        "answer": result.answer, "generated_token_ids": list(result.token_ids),
        "num_generated_tokens": len(result.token_ids), "grid": list(result.grid),
        "image_size": list(result.image_size), "resized_size": list(result.resized_size),
        "layers": list(config.layers), "weights": list(config.weights), "model": settings["model"],
        "model_key": settings["model_key"], "dtype": settings["dtype"], "generation": settings["generation"],
        "max_pixels": config.max_pixels, "min_pixels": config.min_pixels, "dump": DUMP_LAYOUT, "dump_dtype": "float32",
        "fidelity": config.fidelity, "stop_at_bracket": config.stop_at_bracket,
        "prompt_template": config.prompt_template, **result.extra,
    }


def write_result(run: RunDir, sid: str, result, image: str, config, settings: dict) -> None:
    """Dump then sidecar, each atomically."""
    save_npy(run.overview_npy(sid), result.dump())
    save_json(run.overview_json(sid), sidecar(result, sid, image, config, settings))


def heatmap_path(folder: str | Path, layers: Sequence[int]) -> Path:
    """``folder/heatmap_<layers joined>.npy``, the released file name (``heatmap_16171819.npy``)."""
    return Path(folder) / f"heatmap_{''.join(str(int(v)) for v in layers)}.npy"


def write_heatmap(folder: str | Path, layers: Sequence[int], heatmap: np.ndarray) -> Path:
    """Save the released one-image file: float64 (1 + n_layers, gh, gw)."""
    heatmap = np.asarray(heatmap)
    if heatmap.dtype != np.float64 or heatmap.ndim != 3 or heatmap.shape[0] != 1 + len(layers):
        raise ValueError(f"heatmap must be float64 (1 + {len(layers)}, gh, gw), got {heatmap.dtype} {heatmap.shape}")
    path = heatmap_path(folder, layers)
    save_npy(path, heatmap)
    return path
