"""Capture the last query row's attention at a few decoder layers of a transformers VLM, cheaply.

Three parts (locator / hook / storage):

- :func:`decoder_attention_modules` finds the language model's self-attention modules (the path
  belongs to the model family's adapter, e.g. :mod:`rsvg_zeroov.models.qwen2_5_vl`).
- :func:`capture_last_row` is the hook: a context manager that switches ONLY the chosen layers'
  attention modules to the attention function :data:`CAPTURE_IMPL`, registered with transformers'
  ``AttentionInterface`` (and ``AttentionMaskInterface``, so masks are built as for sdpa). It gives
  each chosen module a private copy of its config with ``_attn_implementation = CAPTURE_IMPL``;
  every other decoder layer and the whole vision tower keep sdpa. On exit (even on error) the
  original config objects are put back and the forward pre-hook is removed.
- :class:`LastRowAttention` is the storage: per layer, on the model device, the mean over decoding
  steps of ``mean over heads of softmax(q_last . K^T * scale + mask)`` over the prompt keys: a
  float32 running sum, or (released arithmetic with a half-precision model) the per-step rows in
  the model dtype averaged at the end. The captured function still returns the ordinary sdpa
  output for every row, so the model's outputs are unchanged.

Decoding steps (docs/method.md, stage 1): with a KV cache, step 0 (prefill) sees the whole prompt and
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
# id(attention module) -> (the recorder of the capture that switched it, the module's own attention
# function), scoped by capture_last_row.
_RECORDERS: ContextVar[dict | None] = ContextVar("rsvg_zeroov_last_row_recorders", default=None)


def last_row_head_mean(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
                       scaling: float | None, model_dtype: bool = False) -> torch.Tensor:
    """Attention probabilities of the last query row, averaged over heads.

    query (B, nh, Q, D), key (B, nkv, S, D) with nh = nkv * G (grouped-query heads: head h reads kv
    head h // G, as ``repeat_kv``), mask None | bool (B|1, 1|nh, Q, >=S) True = attend | additive float.
    Returns (B, S): softmax over all S keys (no renormalisation).

    ``model_dtype`` False: scores, softmax and head mean in float32; returns float32.
    ``model_dtype`` True (the released arithmetic, docs/method.md "Arithmetic order"): scores in the
    model dtype as eager attention computes them, softmax in float32 cast back to the model dtype,
    head mean in the model dtype; returns the model dtype.
    """
    b, nh, _, d = query.shape
    nkv, s = key.shape[1], key.shape[2]
    scale = d ** -0.5 if scaling is None else scaling
    if model_dtype:
        q = query[:, :, -1:, :].reshape(b, nkv, nh // nkv, d)
        scores = torch.matmul(q, key.transpose(-1, -2)) * scale  # (B, nkv, G, S) in the model dtype
    else:
        q = query[:, :, -1, :].float().reshape(b, nkv, nh // nkv, d)
        scores = torch.matmul(q, key.float().transpose(-1, -2)) * scale  # (B, nkv, G, S)
    if mask is not None:
        m = mask[:, :, -1, :s]  # (B|1, 1|nh, S)
        m = m.reshape(m.shape[0], nkv, nh // nkv, s) if m.shape[1] == nh else m[:, :, None, :]
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.to(scores.dtype)
    if model_dtype:
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return probs.reshape(b, nh, s).mean(dim=1)
    return torch.softmax(scores, dim=-1).mean(dim=(1, 2))


class LastRowAttention:
    """Storage of one capture, kept on the model device.

    ``model_dtype`` False (float32 accumulation): sums[layer] float32 (B, L) = running sum over
    counted steps of :func:`last_row_head_mean` restricted to the first L keys, L = the (left-padded)
    prompt length. ``model_dtype`` True (the released arithmetic): rows[layer] = one (B, L) row per
    step in the model dtype, averaged over each sample's counted steps in that dtype at the end
    (``torch.stack(...).mean(0)``). steps: float32 (B,) steps counted.
    """

    def __init__(self, layers: Sequence[int], eos_token_ids: Sequence[int], model_dtype: bool = False):
        self.layers = tuple(layers)
        self.model_dtype = bool(model_dtype)
        self._eos = list(eos_token_ids)
        self.sums: dict[int, torch.Tensor] = {}
        self.rows: dict[int, list[torch.Tensor]] = {}
        self.counted: list[torch.Tensor] = []  # (B,) bool per step: which samples that step counts for
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
        if self.model_dtype:
            self.counted.append(self._active.clone())

    def stop_rows(self, rows: torch.Tensor) -> None:
        """Rows (bool (B,)) that finished without EOS (a stopping criterion): their later, padded
        steps are not counted, as after an EOS."""
        if self._active is not None:
            self._active &= ~rows.to(self._active.device)

    def add(self, layer: int, query, key, mask, scaling) -> None:
        if self._weight is None:
            raise RuntimeError("captured attention ran before the model's forward pre-hook; call the model "
                               "(or generate) with input_ids inside capture_last_row()")
        row = last_row_head_mean(query, key, mask, scaling, self.model_dtype)[:, : self.prompt_len]
        if self.model_dtype:
            self.rows.setdefault(layer, []).append(row)
        elif layer in self.sums:
            self.sums[layer] += row * self._weight[:, None]
        else:
            self.sums[layer] = row * self._weight[:, None]

    def mean_maps(self) -> dict[int, torch.Tensor]:
        """layer -> float32 (B, L): mean over the counted steps (the released recipe's a_l, per key)."""
        store = self.rows if self.model_dtype else self.sums
        missing = [layer for layer in self.layers if layer not in store]
        if missing or self.steps is None:
            raise RuntimeError(f"no attention was captured for layers {missing or self.layers}; "
                               f"was the model run inside capture_last_row()?")
        if not self.model_dtype:
            return {layer: self.sums[layer] / self.steps.clamp_min(1)[:, None] for layer in self.layers}
        counted = torch.stack(self.counted)  # (T, B)
        out = {}
        for layer in self.layers:
            rows = torch.stack(self.rows[layer])  # (T, B, L) in the model dtype
            out[layer] = torch.stack([rows[counted[:, b], b].mean(0) for b in range(rows.shape[1])]).float()
        return out


def _capture_attention_forward(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """AttentionInterface function: the layer's own output for every row + last-row probabilities to storage."""
    recorder, base = (_RECORDERS.get() or {}).get(id(module), (None, None))
    if recorder is None:
        raise RuntimeError(f"attention implementation {CAPTURE_IMPL!r} is only valid inside capture_last_row(); "
                           f"layer {getattr(module, 'layer_idx', '?')} was left switched")
    out = base(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    with torch.no_grad():
        recorder.add(module.layer_idx, query, key, attention_mask, scaling)
    return out


def base_attention(module, implementation: str):
    """The attention function ``module`` runs without capture: a registered one (sdpa, flash...) or,
    for "eager", the eager function of the module's own modeling file."""
    import sys

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if implementation in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[implementation]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if implementation == "eager" and eager is not None:
        return eager
    raise ValueError(f"cannot capture attention of a layer running {implementation!r}; load the model with "
                     f"attn_implementation='sdpa' (the default here) or 'eager'")


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE_IMPL, _capture_attention_forward)
    AttentionMaskInterface.register(CAPTURE_IMPL, sdpa_mask)


def decoder_attention_modules(model) -> list:
    """The self-attention module of every decoder layer, in layer order: the path is the model
    family's adapter's (``decoder_attention_modules``, chosen by ``model.config.model_type``)."""
    from ..models.vlm import adapter_for_model_type

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        raise TypeError(f"{type(model).__name__} has no config.model_type; expected a transformers VLM")
    return adapter_for_model_type(model_type).decoder_attention_modules(model)


@contextmanager
def capture_last_row(model, layers: Sequence[int], eos_token_ids: Sequence[int] = (),
                     model_dtype: bool = False, modules: Sequence | None = None) -> Iterator[LastRowAttention]:
    """Within the block, decoder ``layers`` (0-based) record last-row attention into the yielded storage.

    ``eos_token_ids``: a sample stops being counted once one of these is fed back (batched generate).
    ``model_dtype``: average in the model dtype as the released script does (see :class:`LastRowAttention`).
    ``modules``: the decoder layers' attention modules (default :func:`decoder_attention_modules`).
    One ``generate`` (or one forward) per context. The model is restored on exit, even on error.
    """
    modules = list(decoder_attention_modules(model) if modules is None else modules)
    bad = [layer for layer in layers if not 0 <= layer < len(modules)]
    if bad:
        raise LayerError(f"overview layers {bad} do not exist: the model has {len(modules)} decoder layers "
                         f"(0..{len(modules) - 1}); choose layers within that range")
    _register()
    recorder = LastRowAttention(layers, eos_token_ids, model_dtype)
    originals = {}
    bases = {id(modules[i]): (recorder, base_attention(modules[i], modules[i].config._attn_implementation))
             for i in layers}
    token = _RECORDERS.set({**(_RECORDERS.get() or {}), **bases})
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
