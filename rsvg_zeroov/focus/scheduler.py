"""The deterministic DDIM schedule of stage 2 (docs/method.md, stage 2; eta = 0), for both directions.

Settings: ``num_train_timesteps`` 1000, scaled-linear betas from ``beta_start`` 0.00085 to
``beta_end`` 0.012, ``clip_sample`` False, ``set_alpha_to_one`` False (the alpha "before" timestep 0,
``final_alpha_cumprod``, is alpha_cumprod[0]) and "leading" spacing plus ``steps_offset``:
20 steps give 951, 901, ..., 1 with the released offset 1 (``StableDiffusionPipeline.__init__``
rewrites a fresh ``DDIMScheduler``'s offset 0 to 1) and 950, 900, ..., 0 with offset 0. The
cumulative alphas are computed in float32 exactly as diffusers' ``DDIMScheduler`` does, so one
denoising step equals ``DDIMScheduler.step(..., eta=0)``; a step whose previous timestep is
negative (t = 1 or 0 -> t - 50) moves to the final alpha, and so does the inversion's first step.

Both moves go through the predicted clean latent::

    x0   = (x - sqrt(1 - a_from) * eps) / sqrt(a_from)
    x_to = sqrt(a_to) * x0 + sqrt(1 - a_to) * eps

Latents are float32 ``(B, 4, h, w)`` (h = w = image_size / 8); ``eps`` is the noise prediction.
"""
from __future__ import annotations

from dataclasses import dataclass


def leading_timesteps(num_steps: int, num_train_timesteps: int = 1000, steps_offset: int = 1) -> tuple[int, ...]:
    """The "leading" DDIM timesteps in denoising order: ``i * (num_train // num_steps) + steps_offset``."""
    ratio = num_train_timesteps // num_steps
    return tuple(i * ratio + steps_offset for i in reversed(range(num_steps)))


@dataclass(frozen=True)
class DDIM:
    """``timesteps`` in denoising order (e.g. 951, ..., 1) and ``alphas_cumprod`` (python floats)."""

    timesteps: tuple[int, ...]
    alphas_cumprod: tuple[float, ...]
    step_ratio: int

    @classmethod
    def from_config(cls, num_steps: int = 20, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                    beta_end: float = 0.012, steps_offset: int = 1) -> "DDIM":
        import torch

        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        timesteps = leading_timesteps(num_steps, num_train_timesteps, steps_offset)
        return cls(timesteps, tuple(float(a) for a in alphas_cumprod), num_train_timesteps // num_steps)

    def alpha(self, t: int) -> float:
        """alpha_cumprod at timestep ``t``; for t < 0 the final alpha (alpha_cumprod[0], set_alpha_to_one False)."""
        return self.alphas_cumprod[t] if t >= 0 else self.alphas_cumprod[0]

    @staticmethod
    def _move(x, eps, a_from: float, a_to: float):
        x0 = (x - (1.0 - a_from) ** 0.5 * eps) / a_from ** 0.5
        return a_to ** 0.5 * x0 + (1.0 - a_to) ** 0.5 * eps

    def step(self, eps, t: int, x):
        """One denoising step from timestep ``t`` to ``t - step_ratio`` (the previous, less noisy latent)."""
        return self._move(x, eps, self.alpha(t), self.alpha(t - self.step_ratio))

    def invert_step(self, eps, t: int, x):
        """One inversion step: ``x`` is the latent at ``t - step_ratio``, ``eps`` the prediction at ``t``;
        returns the latent at ``t`` (the usual DDIM-inversion approximation)."""
        return self._move(x, eps, self.alpha(min(t - self.step_ratio, len(self.alphas_cumprod) - 1)), self.alpha(t))

    def add_noise(self, x0, noise, t: int):
        """Forward diffusion ``sqrt(a_t) x0 + sqrt(1 - a_t) noise`` (the single-forward "noise" mode)."""
        a = self.alpha(t)
        return a ** 0.5 * x0 + (1.0 - a) ** 0.5 * noise
