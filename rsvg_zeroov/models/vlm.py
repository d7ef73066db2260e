"""Stage 1's role: vision-language models behind one adapter interface, and their registry.

A key, hub id or folder given as ``--model`` resolves through :data:`VLMS`; a hub id or folder that
is not a registry entry picks its adapter from the ``model_type`` of its ``config.json`` (each
adapter class lists the model types it serves). Adding a VLM family is one adapter module
(:class:`VLMAdapter`, usually a :class:`TransformersVLM` subclass; ``models/qwen2_5_vl.py``,
``models/qwen3_vl.py`` and ``models/llava.py`` are the examples) plus one ``VLMS.add(...)`` line here.

Families: Qwen2.5-VL (the paper's), Qwen3-VL and the LLaVA layout (``llava-hf`` conversions, and any
model converted to that layout, loaded by path through its ``model_type``). Keys starting with
``tiny`` are the offline random-weight stand-ins, built on first use.

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
_QWEN3 = "rsvg_zeroov.models.qwen3_vl:Qwen3VL"
for _size in ("2B", "4B", "8B", "32B"):
    VLMS.add(f"qwen3-vl-{_size.lower()}", adapter=_QWEN3, hub_id=f"Qwen/Qwen3-VL-{_size}-Instruct", size=_size)
VLMS.add("tiny-qwen3-vl", adapter=_QWEN3, tiny_path="qwen3vl", tiny_build="rsvg_zeroov.tiny.qwen3_vl:build",
         size="a few MB, random weights")
_LLAVA = "rsvg_zeroov.models.llava:Llava"
VLMS.add("llava-1.5-7b", adapter=_LLAVA, hub_id="llava-hf/llava-1.5-7b-hf", size="7B")
VLMS.add("llava-1.5-13b", adapter=_LLAVA, hub_id="llava-hf/llava-1.5-13b-hf", size="13B")
VLMS.add("tiny-llava", adapter=_LLAVA, tiny_path="llava", tiny_build="rsvg_zeroov.tiny.llava:build",
         size="a few MB, random weights")


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for B (image, expression) pairs plus what is needed to read the maps back.

    inputs: the processor's tensors (input_ids / attention_mask (B, L) left padded, pixel values, ...).
    prompts: the user text of each row; chat_texts: the chat-templated text.
    spans: [start, end) column range of each row's image tokens in ``input_ids`` (end - start = gh*gw).
    grids: (gh, gw) merged-token grid of each row. image_hw: (H, W) of each original image.
    resized_hw: (H', W') pixels fed to the vision tower (multiples of the adapter's ``cell``).
    """

    inputs: Any
    prompts: tuple[str, ...]
    chat_texts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    grids: tuple[tuple[int, int], ...]
    image_hw: tuple[tuple[int, int], ...]
    resized_hw: tuple[tuple[int, int], ...]

    @property
    def prompt_len(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


@runtime_checkable
class VLMAdapter(Protocol):
    """What stage 1 needs from a VLM family (built as ``Adapter(ref)``, then ``.load(dtype, device)``).

    model_types: the ``config.json`` model types served. cell: image pixels per token-grid cell
    (of the resized image). box_convention: the coordinates its answers use
    (:data:`rsvg_zeroov.overview.answer.CONVENTIONS`). layer_rule: how the default layers are
    chosen for this family's depth (:data:`rsvg_zeroov.overview.layers.LAYER_RULES`).
    model / processor / ref: set by :meth:`load` (a transformers model with ``generate``).
    Optional: ``check_config(config)`` raises ValueError for settings the family cannot honour
    (stage 1 calls it once the model is loaded).
    """

    model_types: tuple[str, ...]
    cell: int
    box_convention: str
    layer_rule: str
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


class TransformersVLM:
    """The part of an adapter every family here shares: a transformers
    ``...ForConditionalGeneration`` model (``model_class``, loaded with sdpa attention, no remote
    code) and ``AutoProcessor``, whose language model's decoder layers are
    ``model.model.language_model.layers``. A subclass sets ``family`` (its name in messages),
    ``model_class``, ``model_types``, ``cell``, ``box_convention``, ``layer_rule`` and ``prepare``."""

    family = "VLM"
    model_class = ""
    model_types: tuple[str, ...] = ()
    cell = 0
    box_convention = "resized-pixels"
    layer_rule = "relative"

    def __init__(self, ref: ModelRef):
        self.ref = ref
        self.model = self.processor = None

    def load(self, dtype=None, device=None):
        import torch
        import transformers
        from transformers import AutoProcessor

        from .base import ModelNotFound

        dtype = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
        try:
            model = getattr(transformers, self.model_class).from_pretrained(
                self.ref.source, dtype=dtype, attn_implementation="sdpa", trust_remote_code=False)
            processor = AutoProcessor.from_pretrained(self.ref.source, trust_remote_code=False)
        except OSError as exc:
            raise ModelNotFound(f"{self.family} model {self.ref.source!r} could not be loaded "
                                f"({str(exc).splitlines()[0][:200]}); "
                                f"{VLMS.missing_message(self.ref, '--model')}") from None
        model.eval().requires_grad_(False)
        if device is not None:
            model.to(device)
        self.model, self.processor = model, processor
        return self

    @property
    def num_layers(self) -> int:
        return int(self.model.config.get_text_config().num_hidden_layers)

    @classmethod
    def depth_of(cls, ref: ModelRef) -> int | None:
        """Decoder depth from the model's ``config.json`` without loading weights (None when that
        file cannot be read: the loader then names what is missing)."""
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(ref.source, trust_remote_code=False)
        except (OSError, ValueError):
            return None
        return int(config.get_text_config().num_hidden_layers)

    @classmethod
    def decoder_attention_modules(cls, model) -> list:
        """The self-attention module of every decoder layer of the language model, in layer order."""
        layers = getattr(getattr(getattr(model, "model", model), "language_model", None), "layers", None)
        if layers is None:
            raise TypeError(f"{type(model).__name__} has no .model.language_model.layers; expected a "
                            f"{cls.family} ({cls.model_class}) model")
        return [layer.self_attn for layer in layers]

    def capture(self, layers: Sequence[int], eos_token_ids: Sequence[int] = (), model_dtype: bool = False):
        """Context manager: the chosen decoder layers record last-row attention
        (:func:`rsvg_zeroov.overview.capture.capture_last_row`)."""
        from ..overview.capture import capture_last_row

        return capture_last_row(self.model, layers, eos_token_ids, model_dtype,
                                modules=self.decoder_attention_modules(self.model))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.processor.decode(list(token_ids), skip_special_tokens=True)

    def check_config(self, config) -> None:
        """Raise ValueError for settings this family cannot honour (called once the model is loaded,
        before any sample). Every setting applies here."""


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
