"""Capture the last query row's attention at a few Qwen2.5-VL decoder layers, cheaply.

Three parts (locator / hook / storage):

- :func:`decoder_attention_modules` finds the language model's self-attention modules.
- :func:`capture_last_row` is the hook: a context manager that switches ONLY the chosen layers'
  attention modules to the attention function :data:`CAPTURE_IMPL`, registered with transformers'
  ``AttentionInterface`` (and ``AttentionMaskInterface``, so masks are built as for sdpa). It gives
  each chosen module a private copy of its config with ``_attn_implementation = CAPTURE_IMPL``;
  every other decoder layer and the whole vision tower keep sdpa. On exit (even on error) the
  original config objects are put back and the forward pre-hook is removed.
- :class:`LastRowAttention` is the storage: per layer, a running sum on the model device of
  ``mean over heads of softmax(q_last . K^T * scale + mask)`` over the prompt keys, over decoding
  steps. The captured function still returns the ordinary sdpa output for every row, so the
  model's outputs are unchanged.

Decoding steps (METHOD.md section 1): with a KV cache, step 0 (prefill) sees the whole prompt and
its last row is the last prompt token; step t >= 1 sees one query, the generated token t-1 fed back.
In a batch, a sample that has emitted EOS keeps being fed (padding) by ``generate``; those steps are
not counted for it (its ``active`` flag drops when its EOS is fed back), so batch B == batch 1.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch

from .config import LayerError

CAPTURE_IMPL = "rsvg_zeroov_last_row"
# id(attention module) -> the recorder of the capture that switched it (scoped by capture_last_row).
_RECORDERS: ContextVar[dict | None] = ContextVar("rsvg_zeroov_last_row_recorders", default=None)


def last_row_head_mean(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
                       scaling: float | None) -> torch.Tensor:
    """Attention probabilities of the last query row, averaged over heads.

    query (B, H, Q, D), key (B, Hkv, S, D) with H = Hkv * G (grouped-query heads: head h reads kv
    head h // G, as ``repeat_kv``), mask None | bool (B|1, 1|H, Q, >=S) True = attend | additive float.
    Returns float32 (B, S): softmax over all S keys (no renormalisation), computed in float32.
    """
    b, h, _, d = query.shape
    hkv, s = key.shape[1], key.shape[2]
    q = query[:, :, -1, :].float().reshape(b, hkv, h // hkv, d)
    scale = d ** -0.5 if scaling is None else scaling
    scores = torch.matmul(q, key.float().transpose(-1, -2)) * scale  # (B, Hkv, G, S)
    if mask is not None:
        m = mask[:, :, -1, :s]  # (B|1, 1|H, S)
        m = m.reshape(m.shape[0], hkv, h // hkv, s) if m.shape[1] == h else m[:, :, None, :]
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    return torch.softmax(scores, dim=-1).mean(dim=(1, 2))


class LastRowAttention:
    """Storage of one capture: running sums over decoding steps, kept on the model device.

    sums[layer]: float32 (B, L) = sum over counted steps of :func:`last_row_head_mean` restricted
    to the first L keys, L = the (left-padded) prompt length; steps: float32 (B,) steps counted.
    """

    def __init__(self, layers: Sequence[int], eos_token_ids: Sequence[int]):
        self.layers = tuple(layers)
        self._eos = list(eos_token_ids)
        self.sums: dict[int, torch.Tensor] = {}
        self.steps: torch.Tensor | None = None
        self.prompt_len: int | None = None
        self._active: torch.Tensor | None = None
        self._weight: torch.Tensor | None = None
        self._eos_ids: torch.Tensor | None = None

    def begin_step(self, input_ids: torch.Tensor) -> None:
        """Called before every forward of the model: input_ids (B, L) at prefill, (B, 1) after."""
        if self._active is None:
            self.prompt_len = int(input_ids.shape[1])
            self._active = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            self.steps = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
            self._eos_ids = torch.tensor(self._eos, dtype=input_ids.dtype, device=input_ids.device)  # once
        else:
            self._active &= ~torch.isin(input_ids[:, -1], self._eos_ids)
        self._weight = self._active.float()
        self.steps += self._weight

    def add(self, layer: int, query, key, mask, scaling) -> None:
        if self._weight is None:
            raise RuntimeError("captured attention ran before the model's forward pre-hook; call the model "
                               "(or generate) with input_ids inside capture_last_row()")
        row = last_row_head_mean(query, key, mask, scaling)[:, : self.prompt_len] * self._weight[:, None]
        if layer in self.sums:
            self.sums[layer] += row
        else:
            self.sums[layer] = row

    def mean_maps(self) -> dict[int, torch.Tensor]:
        """layer -> float32 (B, L): mean over the counted steps (the released recipe's a_l, per key)."""
        missing = [layer for layer in self.layers if layer not in self.sums]
        if missing or self.steps is None:
            raise RuntimeError(f"no attention was captured for layers {missing or self.layers}; "
                               f"was the model run inside capture_last_row()?")
        return {layer: self.sums[layer] / self.steps.clamp_min(1)[:, None] for layer in self.layers}


def _capture_attention_forward(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """AttentionInterface function: sdpa output for every row + last-row probabilities to storage."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    recorder = (_RECORDERS.get() or {}).get(id(module))
    if recorder is None:
        raise RuntimeError(f"attention implementation {CAPTURE_IMPL!r} is only valid inside capture_last_row(); "
                           f"layer {getattr(module, 'layer_idx', '?')} was left switched")
    out = ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    with torch.no_grad():
        recorder.add(module.layer_idx, query, key, attention_mask, scaling)
    return out


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE_IMPL, _capture_attention_forward)
    AttentionMaskInterface.register(CAPTURE_IMPL, sdpa_mask)


def decoder_attention_modules(model) -> list:
    """The self-attention module of every decoder layer of the language model, in layer order."""
    language_model = getattr(getattr(model, "model", model), "language_model", None)
    layers = getattr(language_model, "layers", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no .model.language_model.layers; expected a "
                        f"Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration) model")
    return [layer.self_attn for layer in layers]


@contextmanager
def capture_last_row(model, layers: Sequence[int], eos_token_ids: Sequence[int] = ()) -> Iterator[LastRowAttention]:
    """Within the block, decoder ``layers`` (0-based) record last-row attention into the yielded storage.

    ``eos_token_ids``: a sample stops being counted once one of these is fed back (batched generate).
    One ``generate`` (or one forward) per context. The model is restored on exit, even on error.
    """
    modules = decoder_attention_modules(model)
    bad = [layer for layer in layers if not 0 <= layer < len(modules)]
    if bad:
        raise LayerError(f"overview layers {bad} do not exist: the model has {len(modules)} decoder layers "
                         f"(0..{len(modules) - 1}); choose layers within that range")
    _register()
    recorder = LastRowAttention(layers, eos_token_ids)
    originals = {}
    token = _RECORDERS.set({**(_RECORDERS.get() or {}), **{id(modules[i]): recorder for i in layers}})
    handle = model.register_forward_pre_hook(_pre_hook(recorder), with_kwargs=True)
    try:
        for i in layers:
            originals[i] = modules[i].config
            switched = copy.copy(originals[i])
            switched._attn_implementation = CAPTURE_IMPL
            modules[i].config = switched
        yield recorder
    finally:
        for i, config in originals.items():
            modules[i].config = config
        handle.remove()
        _RECORDERS.reset(token)


def _pre_hook(recorder: LastRowAttention):
    def hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise RuntimeError("capture_last_row needs the model to be called with input_ids (not inputs_embeds)")
        recorder.begin_step(input_ids)
    return hook
