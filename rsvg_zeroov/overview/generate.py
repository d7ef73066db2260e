"""How stage 1 calls ``generate``: the generation config, the optional stop at the answer's closing
bracket, and per-token progress. Both extras are transformers ``StoppingCriteria`` (the library's
own extension point); neither changes a generated token, the first only where generation ends.

Stopping at the bracket (``OverviewConfig.stop_at_bracket``, off by default = released): a row is
finished once it generates a token whose text contains "]", the end of the requested
``[x1, y1, x2, y2]``. The maps then average the steps up to that token, exactly as if the model
had emitted EOS there; in a batch the finished row stops being counted (:meth:`LastRowAttention.stop_rows`).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from transformers import StoppingCriteria

BRACKET = "]"


def generation_config(model, config):
    """The checkpoint's generation config with the run's overrides (what ``generate`` gets)."""
    gc = copy.deepcopy(model.generation_config)
    gc.max_new_tokens = config.max_new_tokens
    if config.min_new_tokens is not None:
        gc.min_new_tokens = config.min_new_tokens
    if config.greedy is True:
        gc.do_sample, gc.temperature, gc.top_p, gc.top_k = False, None, None, None
    elif config.greedy is False:
        gc.do_sample = True
    return gc


def eos_ids(gc) -> list[int]:
    eos = gc.eos_token_id
    return [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


class TokenClosesAnswer:
    """Whether a token id's text contains the closing bracket (cached per id)."""

    def __init__(self, tokenizer):
        self._tokenizer, self._cache = tokenizer, {}

    def __call__(self, token_id: int) -> bool:
        if token_id not in self._cache:
            self._cache[token_id] = BRACKET in self._tokenizer.decode([token_id], skip_special_tokens=True)
        return self._cache[token_id]


class StopAtBracket(StoppingCriteria):
    """Finishes each row at its first token containing "]"; ``on_stop(rows)`` hears of newly
    finished rows (bool (B,)), so a capture stops counting their padded steps."""

    def __init__(self, closes: TokenClosesAnswer, on_stop: Callable[[torch.Tensor], None] | None = None):
        self.closes, self.on_stop, self.done = closes, on_stop, None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        hit = torch.tensor([self.closes(int(t)) for t in input_ids[:, -1].tolist()], device=input_ids.device)
        new = hit if self.done is None else hit & ~self.done
        self.done = new if self.done is None else self.done | new
        if self.on_stop is not None and bool(new.any()):
            self.on_stop(new)
        return self.done.clone()


class TokenProgress(StoppingCriteria):
    """Never stops; one progress tick per generated token."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        self.bar.update(1)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def cut_answer(tokens: list[int], eos: set[int], closes: TokenClosesAnswer | None = None) -> list[int]:
    """Generated ids up to and including the first EOS (what a batch-1 ``generate`` returns), or
    with ``closes`` the first token containing "]" if that comes first."""
    for i, t in enumerate(tokens):
        if t in eos or (closes is not None and closes(t)):
            return tokens[: i + 1]
    return tokens
