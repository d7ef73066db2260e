"""Capturing UNet attention probabilities through diffusers' attention-processor API.

Three separate concerns:

- locator: which layers, a :class:`Site` list from the diffusion adapter
  (:func:`rsvg_zeroov.models.sd.attention_sites`, re-exported here as ``locate``): for SD v1 at
  512x512, 5 attn1 layers (2 down + 3 up) at each of r = 64, 32, 16.
- hook, :class:`CaptureProcessor`: the layer output of the default processor (the fast
  ``scaled_dot_product_attention`` on the unconditional half; the same value, up to float rounding,
  from the explicit probabilities on the conditional half), and for the conditional half
  (the second half of the guidance batch) explicit softmax probabilities, float32 ``(N, K)`` per
  head and sample with N = r*r queries and K keys (N for self, 77 for cross), computed in two
  reusable buffers (:class:`Workspace`) so the explicit path allocates no N x K tensor per call.
- storage: :class:`RunningMeanStore` keeps one running sum of head means per (kind, r) on the
  device; :class:`HostListStore` is the released approach (every map of every head, step and
  layer copied to the host, averaged at the end) kept as the oracle and benchmark baseline.

:func:`capture` installs the processors with ``unet.set_attn_processor`` and restores the original
ones on exit, also when the block raises. Layers outside the sites keep their fast processor.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..models.sd import Site
from ..models.sd import attention_sites as locate  # noqa: F401 - the sites live with the model adapter


# ------------------------------------------------------------------------------------- storage
class RunningMeanStore:
    """Running sums of head-mean probabilities per (kind, r), float32 ``(B, N, K)`` on the device."""

    def __init__(self, batch: int):
        self.batch = batch
        self.sums: dict[tuple[str, int], torch.Tensor] = {}
        self.counts: dict[tuple[str, int], list[int]] = {}

    def _ensure(self, key: tuple[str, int], probs: torch.Tensor) -> None:
        if key not in self.counts:
            self.counts[key] = [0] * self.batch
            self.sums[key] = torch.zeros((self.batch, *probs.shape), dtype=torch.float32, device=probs.device)

    def add(self, key: tuple[str, int], b: int, probs: torch.Tensor, weight: float) -> None:
        """Add ``weight`` (1 / heads) x one head's probabilities float32 ``(N, K)`` of sample ``b``."""
        self._ensure(key, probs)
        self.sums[key][b].add_(probs, alpha=weight)

    def tick(self, key: tuple[str, int], b: int) -> None:
        """One layer call of sample ``b`` is complete (all its heads were added)."""
        self.counts[key][b] += 1

    def keys(self) -> list[tuple[str, int]]:
        return list(self.counts)

    def calls(self, key: tuple[str, int]) -> int:
        """Layer calls (layers x steps) averaged into ``key``."""
        return self.counts[key][0]

    def mean(self, key: tuple[str, int]) -> torch.Tensor:
        """Mean over heads, layers and steps, float32 ``(B, N, K)``."""
        counts = torch.tensor(self.counts[key], dtype=torch.float32, device=self.sums[key].device)
        if (counts == 0).any():
            raise RuntimeError(f"capture of {key} saw no layer call for some samples: {self.counts[key]}")
        return self.sums[key] / counts[:, None, None]


class HostListStore(RunningMeanStore):
    """The released approach: every map (every head, layer and step) copied to the host, averaged at the end."""

    def __init__(self, batch: int):
        super().__init__(batch)
        self.maps: dict[tuple[str, int], list[list[torch.Tensor]]] = {}

    def _ensure(self, key: tuple[str, int], probs: torch.Tensor) -> None:
        if key not in self.counts:
            self.counts[key] = [0] * self.batch
            self.maps[key] = [[] for _ in range(self.batch)]

    def add(self, key: tuple[str, int], b: int, probs: torch.Tensor, weight: float) -> None:
        self._ensure(key, probs)
        self.maps[key][b].append(probs.detach().to("cpu", copy=True))

    def mean(self, key: tuple[str, int]) -> torch.Tensor:
        return torch.stack([torch.stack(maps).mean(0) for maps in self.maps[key]])


# ---------------------------------------------------------------------------------------- hook
class Workspace:
    """Two reusable float32 (N, K) buffers per shape (scores, probabilities), shared by the processors
    of one :func:`capture` block: no large allocation per layer call."""

    def __init__(self):
        self.buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, n: int, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (n, k, str(device))
        if key not in self.buffers:
            self.buffers[key] = tuple(torch.empty(n, k, dtype=torch.float32, device=device) for _ in range(2))
        return self.buffers[key]


class CaptureProcessor:
    """Attention processor: the default output, plus the conditional half's probabilities to ``store``."""

    def __init__(self, store: RunningMeanStore, site: Site, workspace: Workspace | None = None):
        self.store, self.site, self.workspace = store, site, workspace or Workspace()

    def _project(self, attn, hidden_states, encoder_hidden_states):
        query = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        batch, head_dim = query.shape[0], key.shape[-1] // attn.heads
        q, k, v = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if getattr(attn, "norm_q", None) is not None:
            q = attn.norm_q(q)
        if getattr(attn, "norm_k", None) is not None:
            k = attn.norm_k(k)
        return q, k, v  # each (batch, heads, tokens, head_dim)

    def _attend(self, attn, q, k, v) -> torch.Tensor:
        """(batch, heads, N, head_dim) output; records the conditional half's probabilities head by head."""
        batch, heads, n = q.shape[:3]
        if n != self.site.r ** 2 or batch % 2:
            raise RuntimeError(f"{self.site.name}: expected a guidance batch (even size) of {self.site.r ** 2} "
                               f"queries, got batch {batch} with {n} queries")
        half, key = batch // 2, (self.site.kind, self.site.r)
        out = torch.empty_like(q)
        out[:half] = F.scaled_dot_product_attention(q[:half], k[:half], v[:half])
        scores, probs = self.workspace.get(n, k.shape[2], q.device)
        for b in range(half):
            for h in range(heads):
                torch.matmul(q[half + b, h].float() * attn.scale, k[half + b, h].float().T, out=scores)
                torch.softmax(scores, dim=-1, out=probs)  # (N, K) float32, rows sum to 1
                out[half + b, h] = torch.matmul(probs, v[half + b, h].float()).to(out.dtype)
                self.store.add(key, b, probs, 1.0 / heads)
            self.store.tick(key, b)
        return out

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if attention_mask is not None:
            raise NotImplementedError(f"{self.site.name}: capture does not support attention masks (SD uses none)")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        q, k, v = self._project(attn, hidden_states, encoder_hidden_states)
        out = self._attend(attn, q, k, v)
        out = out.transpose(1, 2).reshape(out.shape[0], -1, out.shape[1] * out.shape[3]).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def capture(unet, sites: Sequence[Site], store: RunningMeanStore) -> Iterator[RunningMeanStore]:
    """Install :class:`CaptureProcessor` on ``sites`` for the duration of the block; always restore."""
    original = dict(unet.attn_processors)
    wanted = {s.name: s for s in sites}
    unknown = set(wanted) - set(original)
    if unknown:
        raise ValueError(f"capture sites {sorted(unknown)} are not attention layers of this UNet")
    workspace = Workspace()
    procs = {name: CaptureProcessor(store, wanted[name], workspace) if name in wanted else proc
             for name, proc in original.items()}
    unet.set_attn_processor(procs)
    try:
        yield store
    finally:
        unet.set_attn_processor(dict(original))
