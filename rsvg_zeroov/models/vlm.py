"""Stage 1's role: vision-language models behind one adapter interface, and their registry.

A key, hub id or folder given as ``--model`` resolves through :data:`VLMS`; a hub id or folder that
is not a registry entry picks its adapter from the ``model_type`` of its ``config.json`` (each
adapter class lists the model types it serves). Adding a VLM family is one adapter module
(:class:`VLMAdapter`; ``models/qwen2_5_vl.py`` is the example) plus one ``VLMS.add(...)`` line here.

Importing this module is light (no torch): ``check_models`` uses the table before any compute.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Protocol, Sequence, runtime_checkable

from .base import ModelRef, Registry, load_object

VLMS = Registry("vlm")
_QWEN25 = "rsvg_zeroov.models.qwen2_5_vl:Qwen25VL"
VLMS.add("qwen2.5-vl-3b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-3B-Instruct", size="3B")
VLMS.add("qwen2.5-vl-7b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-7B-Instruct", size="7B", default=True)
VLMS.add("qwen2.5-vl-32b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-32B-Instruct", size="32B")
VLMS.add("qwen2.5-vl-72b", adapter=_QWEN25, hub_id="Qwen/Qwen2.5-VL-72B-Instruct", size="72B")
VLMS.add("tiny", adapter=_QWEN25, size="a few MB, random weights")


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for B (image, expression) pairs plus what is needed to read the maps back.

    inputs: the processor's tensors (input_ids / attention_mask (B, L) left padded, pixel values, ...).
    prompts: the user text of each row; chat_texts: the chat-templated text.
    spans: [start, end) column range of each row's image tokens in ``input_ids`` (end - start = gh*gw).
    grids: (gh, gw) merged-token grid of each row. image_sizes: (W, H) original pixels.
    resized: (W', H') pixels fed to the vision tower (multiples of the adapter's ``cell``).
    """

    inputs: Any
    prompts: tuple[str, ...]
    chat_texts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    grids: tuple[tuple[int, int], ...]
    image_sizes: tuple[tuple[int, int], ...]
    resized: tuple[tuple[int, int], ...]

    @property
    def prompt_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


@runtime_checkable
class VLMAdapter(Protocol):
    """What stage 1 needs from a VLM family (built as ``Adapter(ref)``, then ``.load(dtype, device)``).

    model_types: the ``config.json`` model types served. cell: image pixels per token-grid cell.
    box_convention: the coordinates its answers use (:data:`rsvg_zeroov.overview.answer.CONVENTIONS`).
    model / processor / ref: set by :meth:`load` (a transformers model with ``generate``).
    """

    model_types: tuple[str, ...]
    cell: int
    box_convention: str
    model: Any
    processor: Any
    ref: ModelRef

    def load(self, dtype=None, device=None) -> "VLMAdapter": ...

    @property
    def num_layers(self) -> int: ...

    @staticmethod
    def decoder_attention_modules(model) -> list: ...

    def capture(self, layers: Sequence[int], eos_token_ids: Sequence[int] = (),
                model_dtype: bool = False) -> ContextManager: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def prepare(self, items: Sequence[tuple[Any, str]], config) -> PreparedBatch: ...


def adapter_specs() -> list[str]:
    """Every adapter of the table, once each, in registration order."""
    return list(dict.fromkeys(e.adapter for e in VLMS.entries()))


def adapter_for_model_type(model_type: str) -> type:
    """The adapter class serving a ``config.json`` model type; ValueError naming the known ones."""
    known = {}
    for spec in adapter_specs():
        cls = load_object(spec)
        for t in cls.model_types:
            known.setdefault(t, cls)
    if model_type not in known:
        raise ValueError(f"no stage-1 adapter for model_type {model_type!r} (known: {', '.join(known)}); "
                         f"add one in rsvg_zeroov/models/ and register it in rsvg_zeroov/models/vlm.py")
    return known[model_type]


def model_type_of(ref: ModelRef) -> str | None:
    """``model_type`` from the ``config.json`` of a local folder or a hub id in the local cache."""
    path = Path(ref.source) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(ref.source, "config.json")
        except ValueError:  # not a repository id
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def adapter_class(ref: ModelRef) -> type:
    """The adapter of a resolved name: the table's, else by ``model_type`` (the default adapter when
    there is no readable config.json, whose loader then names what is missing)."""
    if ref.key is not None:
        return VLMS.adapter_class(ref.key)
    model_type = model_type_of(ref)
    return VLMS.adapter_class(None) if model_type is None else adapter_for_model_type(model_type)


def load_vlm(name: str | None = None, dtype=None, device=None) -> VLMAdapter:
    """A loaded adapter for a key, hub id or folder (None: the default, Qwen2.5-VL-7B)."""
    ref = VLMS.resolve(name)
    return adapter_class(ref)(ref).load(dtype=dtype, device=device)
