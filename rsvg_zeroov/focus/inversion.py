"""DDIM inversion, batched null-text optimisation and the re-denoising pass (docs/method.md, stage 2).

Shapes: latents are float32 ``(B, 4, h, w)`` (h = w = image_size / 8, 64 for SD at 512); text
embeddings float32 ``(B, 77, D)``. The UNet runs in ``dtype`` (inputs are cast, outputs cast back to
float32), with whatever attention processors it has: the fast kernel unless the caller wraps a
call in :func:`rsvg_zeroov.focus.capture.capture`. ``on_step``, where given, is called after each
timestep (progress reporting; it never changes a result).

Batching never couples samples: every sample has its own unconditional embedding, its own Adam
and its own early stopping, and the loss is the *sum* of per-sample mean squared errors, so each
sample's gradient equals its unbatched gradient. A sample that stopped leaves the UNet batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .scheduler import DDIM

# Fixed loss scale for float16 UNets: per-element gradients of a 16k-element MSE are ~1e-7, below
# float16's normal range; the gradient is unscaled before each Adam step (Adam sees the true value).
FP16_LOSS_SCALE = 2.0 ** 14


def _tick(on_step) -> None:
    if on_step is not None:
        on_step()


def unet_eps(unet, x: torch.Tensor, t: int, emb: torch.Tensor, dtype) -> torch.Tensor:
    """Noise prediction float32 (B, 4, h, w) of latents ``x`` at timestep ``t`` given embeddings ``emb``."""
    return unet(x.to(dtype), t, encoder_hidden_states=emb.to(dtype)).sample.float()


def guided_eps(unet, x, t: int, cond, uncond, guidance: float, dtype) -> torch.Tensor:
    """Classifier-free guidance with one UNet call on the batch ``[uncond_1..B, cond_1..B]``.

    The conditional half is the second half of the batch (the capture processors rely on it).
    """
    eps = unet_eps(unet, torch.cat([x, x]), t, torch.cat([uncond, cond]), dtype)
    eps_u, eps_c = eps.chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


@torch.no_grad()
def ddim_invert(unet, ddim: DDIM, latent0: torch.Tensor, cond: torch.Tensor, dtype, on_step=None) -> list[torch.Tensor]:
    """DDIM inversion with the conditional embedding only.

    Returns the n_steps + 1 latents: ``[0]`` = ``latent0`` (the clean latent), ``[k]`` = the latent at
    timestep ``ddim.timesteps[n - k]``; ``[-1]`` is the inverted latent at the largest timestep.
    """
    trajectory = [latent0]
    x = latent0
    for t in reversed(ddim.timesteps):
        x = ddim.invert_step(unet_eps(unet, x, t, cond, dtype), t, x)
        trajectory.append(x)
        _tick(on_step)
    return trajectory


@dataclass(frozen=True)
class NullText:
    """embeddings[i]: float32 (B, 77, D) unconditional embedding of denoising step i;
    inner_steps[b][i]: Adam steps sample b took at step i; losses[b][i]: its last loss."""

    embeddings: tuple[torch.Tensor, ...]
    inner_steps: tuple[tuple[int, ...], ...]
    losses: tuple[tuple[float, ...], ...]


def _optimise_one_step(unet, ddim: DDIM, latent, t: int, eps_cond, target, start, lr: float, threshold: float,
                       guidance: float, inner_steps: int, dtype):
    """Per-sample Adam on the unconditional embedding at one timestep. Returns (emb (B, 77, D), steps, losses)."""
    batch = latent.shape[0]
    params = [start[b:b + 1].clone().requires_grad_(True) for b in range(batch)]
    optims = [torch.optim.Adam([p], lr=lr) for p in params]
    scale = FP16_LOSS_SCALE if dtype == torch.float16 else 1.0
    active, steps, last = list(range(batch)), [0] * batch, [float("nan")] * batch
    for _ in range(inner_steps):
        if not active:
            break
        idx = torch.tensor(active, device=latent.device)
        x = latent[idx]
        eps_u = unet_eps(unet, x, t, torch.cat([params[b] for b in active]), dtype)
        eps = eps_u + guidance * (eps_cond[idx] - eps_u)
        losses = (ddim.step(eps, t, x) - target[idx]).pow(2).flatten(1).mean(1)  # (A,) per-sample MSE
        (losses.sum() * scale).backward()
        losses = losses.detach().tolist()
        still = []
        for k, b in enumerate(active):
            if scale != 1.0:
                params[b].grad.div_(scale)
            optims[b].step()
            optims[b].zero_grad(set_to_none=True)
            steps[b] += 1
            last[b] = losses[k]
            if not last[b] < threshold:
                still.append(b)
        active = still
    return torch.cat([p.detach() for p in params]), steps, last


def nulltext_optimise(unet, ddim: DDIM, trajectory: list[torch.Tensor], cond: torch.Tensor, uncond: torch.Tensor,
                      config, dtype, on_step=None) -> NullText:
    """Null-text optimisation along the denoising direction (docs/method.md, stage 2, step 2).

    ``uncond`` (B, 77, D): the empty prompt's embedding, the start of step 0; each step starts from
    the previous step's result. ``config`` supplies guidance, inner_steps, lr, lr_decay, early_stop,
    early_stop_slope.
    """
    n = len(ddim.timesteps)
    assert len(trajectory) == n + 1, "trajectory must come from ddim_invert with the same schedule"
    latent = trajectory[-1]
    embeddings, steps, losses = [], [], []
    for i, t in enumerate(ddim.timesteps):
        with torch.no_grad():
            eps_cond = unet_eps(unet, latent, t, cond, dtype)
        lr = config.lr * (1.0 - i / config.lr_decay)
        threshold = config.early_stop + i * config.early_stop_slope
        uncond, s, loss = _optimise_one_step(unet, ddim, latent, t, eps_cond, trajectory[n - 1 - i], uncond, lr,
                                             threshold, config.guidance, config.inner_steps, dtype)
        embeddings.append(uncond)
        steps.append(s)
        losses.append(loss)
        with torch.no_grad():
            latent = ddim.step(guided_eps(unet, latent, t, cond, uncond, config.guidance, dtype), t, latent)
        _tick(on_step)
    return NullText(tuple(embeddings), tuple(zip(*steps)), tuple(zip(*losses)))


@torch.no_grad()
def reconstruct(unet, ddim: DDIM, latent: torch.Tensor, cond: torch.Tensor, unconds, guidance: float,
                dtype, on_step=None) -> torch.Tensor:
    """Re-denoise from the inverted latent with guidance, ``unconds[i]`` (B, 77, D) at step i.

    Returns the reconstructed clean latent float32 (B, 4, h, w).
    """
    for i, t in enumerate(ddim.timesteps):
        latent = ddim.step(guided_eps(unet, latent, t, cond, unconds[i], guidance, dtype), t, latent)
        _tick(on_step)
    return latent
