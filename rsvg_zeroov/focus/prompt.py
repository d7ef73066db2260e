"""The text side of stage 2: CLIP chunking of long expressions (docs/method.md, stage 2) and embeddings.

A prompt of more than ``max_tokens`` (75) CLIP tokens is cut into chunks: the first chunk ends at
the last token ending in "." within the first 75 tokens, or, without one, after exactly 75 tokens;
the rest is chunked the same way. Only the first chunk conditions the UNet; every chunk is recorded.
Token ids here never include BOS/EOS; :func:`input_ids` adds them and pads to 77 (pad = EOS for SD).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

CLIP_LENGTH = 77
EOW = "</w>"


@dataclass(frozen=True)
class Prompt:
    """text: the expression; chunks: the text of every chunk (substrings of ``text``);
    token_ids: CLIP ids of the first chunk (no BOS/EOS); n_tokens: CLIP tokens of the whole text."""

    text: str
    chunks: tuple[str, ...]
    token_ids: tuple[int, ...]
    n_tokens: int

    def record(self) -> dict:
        return {"prompt": self.text, "chunks": list(self.chunks), "n_chunks": len(self.chunks),
                "n_tokens": self.n_tokens, "first_chunk_tokens": len(self.token_ids)}


def chunk_lengths(is_period: Sequence[bool], max_tokens: int = 75) -> list[int]:
    """Lengths of the consecutive chunks of a token sequence whose tokens end in "." where ``is_period``."""
    lengths, start, n = [], 0, len(is_period)
    while n - start > max_tokens:
        window = is_period[start:start + max_tokens]
        last = max((i for i, p in enumerate(window) if p), default=None)
        cut = max_tokens if last is None else last + 1
        lengths.append(cut)
        start += cut
    if n - start > 0 or not lengths:
        lengths.append(n - start)
    return lengths


def split_prompt(tokenizer, text: str, max_tokens: int = 75) -> Prompt:
    """Tokenize ``text`` with the CLIP tokenizer and chunk it (docs/method.md, stage 2)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)  # no length warning
    ids = list(enc["input_ids"])
    offsets = enc["offset_mapping"]
    toks = tokenizer.convert_ids_to_tokens(ids)
    is_period = [t.removesuffix(EOW).endswith(".") for t in toks]
    lengths = chunk_lengths(is_period, max_tokens)
    chunks, start = [], 0
    for n in lengths:
        chunks.append(text[offsets[start][0]:offsets[start + n - 1][1]].strip() if n else "")
        start += n
    return Prompt(text=text, chunks=tuple(chunks), token_ids=tuple(ids[:lengths[0]]), n_tokens=len(ids))


def input_ids(tokenizer, ids: Sequence[int], length: int = CLIP_LENGTH) -> list[int]:
    """``[BOS] + ids + [EOS]`` padded with the pad token (SD v1: EOS) to ``length``."""
    if len(ids) > length - 2:
        raise ValueError(f"{len(ids)} CLIP tokens do not fit in {length} positions; chunk the prompt first")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    return out + [pad] * (length - len(out))


def encode(text_encoder, tokenizer, id_lists: Sequence[Sequence[int]], device):
    """CLIP last hidden states of the prompts, float32 ``(B, 77, D)`` (D = text hidden size)."""
    import torch

    batch = torch.tensor([input_ids(tokenizer, ids) for ids in id_lists], device=device)
    with torch.no_grad():
        return text_encoder(batch)[0].float()
