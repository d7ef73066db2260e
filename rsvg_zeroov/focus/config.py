"""Stage 2 settings: one frozen object with the paper/released defaults (docs/method.md, stage 2).

Everything the Focus stage does is decided here; CLI flags only override the fields they are given.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..cli import flag

INVERSIONS = ("nulltext", "ddim", "noise")
DTYPES = ("float32", "float16", "bfloat16")
STORAGE_DTYPES = ("float16", "float32")
ACCUMULATE = ("running", "host_list")
RESIZE = ("bicubic", "bilinear", "lanczos", "nearest")


@dataclass(frozen=True)
class FocusConfig:
    """How the Focus maps S_r are computed.

    model: registry key, hub id or local folder (None = the registry default, SD v1.4).
    image_size: the image is resized to image_size x image_size, aspect ratio ignored (paper: 512,
        so the latent is 64x64 and self-attention exists at r = 64, 32, 16, 8). ``resize`` is the
        PIL filter (bicubic: PIL's default for ``Image.resize``).
    num_steps: DDIM steps of inversion, optimisation and re-denoising (paper: 20 -> 951, ..., 1).
    steps_offset: added to every timestep (1: the released pipeline, whose
        ``StableDiffusionPipeline.__init__`` rewrites a fresh DDIMScheduler's 0 to 1, so 20 steps run
        at 951, 901, ..., 1; 0: the timesteps 950, ..., 0 of versions before this option).
    guidance: classifier-free guidance scale (paper: 7.5).
    beta_start, beta_end, num_train_timesteps: the scaled-linear DDIM schedule (paper: 0.00085,
        0.012, 1000; clip_sample False and set_alpha_to_one False are fixed).
    inversion: "nulltext" (paper: DDIM inversion + null-text optimisation), "ddim" (inversion only;
        the unconditional embedding stays the empty prompt's) or "noise" (one noised forward at
        ``noise_timestep`` with seeded Gaussian noise; ``seed``). The last two are cheaper,
        beyond the paper, and recorded in meta.json.
    inner_steps: at most this many Adam steps per timestep (paper: 10).
    lr, lr_decay: Adam learning rate at step i is ``lr * (1 - i / lr_decay)`` (paper: 1e-2, 100).
    early_stop, early_stop_slope: stop the inner loop of step i when the loss is below
        ``early_stop + i * early_stop_slope`` (paper: 1e-5, 2e-5).
    max_tokens: prompts longer than this many CLIP tokens are chunked (paper: 75).
    save_full_64: also save ``self_64.npy`` (64, 64, 4096) (64 MiB in float32, 32 MiB in float16).
    save_self_16: also save ``self_16.npy`` (16, 16, 256) and its two 16->32 reductions.
    save_cross: also save cross-attention ``cross_<r>.npy`` (r, r, 77) of every captured resolution.
    dtype: model dtype "float32" | "float16" | "bfloat16" | None (= float32: the released ran in
        float32, and null-text gradients underflow in float16 without loss scaling).
    storage_dtype: dtype of the saved maps (float32 default, as released: 12 MiB per sample; float16
        halves it and moves a few mask pixels; recorded in meta.json). Readers accept both.
    batch_size: samples per UNet call in every phase (each keeps its own null-text embeddings and
        its own early stopping; results equal batch 1 within 1e-4).
    accumulate: "running" (running sums on the device, default) or "host_list" (the released
        approach: every map copied to the host, averaged at the end; for tests and benchmarks).
    """

    model: str | None = field(default=None, metadata=flag(
        "--model", "diffusion model: registry key (sd-v1-4, sd-v1-5, sd-v2-1-base, tiny), hub id or local "
        "folder; none: sd-v1-4", aliases=("--sd",)))
    image_size: int = 512
    resize: str = "bicubic"
    num_steps: int = field(default=20, metadata=flag("--steps", "DDIM steps", aliases=("--num-steps",)))
    steps_offset: int = field(default=1, metadata=flag(
        "--steps-offset", "added to every timestep: 1 = the released 951, ..., 1; 0 = 950, ..., 0 "
        "(earlier versions)"))
    guidance: float = field(default=7.5, metadata=flag("--guidance", "classifier-free guidance scale"))
    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000
    inversion: str = field(default="nulltext", metadata=flag(
        "--inversion", "nulltext (the paper), ddim (no optimisation) or noise (one noised forward at "
        "--timestep)", choices=INVERSIONS))
    noise_timestep: int = field(default=100, metadata=flag(
        "--timestep", "timestep of --inversion noise", aliases=("--noise-timestep",)))
    seed: int = 0
    inner_steps: int = field(default=10, metadata=flag("--inner-steps", "max Adam steps per timestep"))
    lr: float = 1e-2
    lr_decay: float = 100.0
    early_stop: float = 1e-5
    early_stop_slope: float = 2e-5
    max_tokens: int = 75
    save_full_64: bool = field(default=False, metadata=flag(
        "--save-full-64", "also save self_64.npy (64 MiB in float32)", store_true=True))
    save_self_16: bool = field(default=False, metadata=flag(
        "--save-self-16", "also save self_16.npy and self_16to32_{released,corrected}.npy", store_true=True))
    save_cross: bool = field(default=False, metadata=flag(
        "--save-cross", "also save cross_<r>.npy (r, r, 77)", store_true=True))
    dtype: str | None = field(default=None, metadata=flag(
        "--dtype", "model dtype; none: float32", choices=DTYPES))
    storage_dtype: str = field(default="float32", metadata=flag(
        "--dump-dtype", "dtype of the saved maps (float32 as released, 12 MiB a sample; float16: 6 MiB)",
        choices=STORAGE_DTYPES, aliases=("--storage-dtype",)))
    batch_size: int = field(default=1, metadata=flag("--batch-size", "samples per UNet call"))
    accumulate: str = "running"

    def __post_init__(self) -> None:
        checks = [
            (self.inversion in INVERSIONS, f"inversion={self.inversion!r}; choose from {', '.join(INVERSIONS)}"),
            (self.dtype is None or self.dtype in DTYPES, f"dtype={self.dtype!r}; choose from {', '.join(DTYPES)}"),
            (self.storage_dtype in STORAGE_DTYPES,
             f"storage_dtype={self.storage_dtype!r}; choose from {', '.join(STORAGE_DTYPES)}"),
            (self.accumulate in ACCUMULATE, f"accumulate={self.accumulate!r}; choose from {', '.join(ACCUMULATE)}"),
            (self.resize in RESIZE, f"resize={self.resize!r}; choose from {', '.join(RESIZE)}"),
            (self.image_size >= 64 and self.image_size % 64 == 0,
             f"image_size={self.image_size}; must be a positive multiple of 64 (paper: 512)"),
            (1 <= self.num_steps <= self.num_train_timesteps,
             f"num_steps={self.num_steps}; must be in 1..{self.num_train_timesteps} (paper: 20)"),
            (0 <= self.steps_offset and (self.num_steps - 1) * (self.num_train_timesteps // max(self.num_steps, 1))
             + self.steps_offset < self.num_train_timesteps,
             f"steps_offset={self.steps_offset}; must be >= 0 and keep the largest timestep below "
             f"{self.num_train_timesteps} (released: 1)"),
            (0 <= self.noise_timestep < self.num_train_timesteps,
             f"noise_timestep={self.noise_timestep}; must be in 0..{self.num_train_timesteps - 1}"),
            (self.inner_steps >= 0, f"inner_steps={self.inner_steps}; must be >= 0 (paper: 10)"),
            (self.batch_size >= 1, f"batch_size={self.batch_size}; must be >= 1"),
            (1 <= self.max_tokens <= 75, f"max_tokens={self.max_tokens}; must be in 1..75 (CLIP: 77 with BOS/EOS)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FocusConfig.{msg}")

    @property
    def self_resolutions(self) -> tuple[int, ...]:
        """Resolutions r whose self-attention is captured: 32 and 64, plus 16 on request."""
        return (16, 32, 64) if self.save_self_16 else (32, 64)

    @property
    def timesteps(self) -> tuple[int, ...]:
        """The DDIM timesteps in denoising order (951, 901, ..., 1 by default)."""
        from .scheduler import leading_timesteps

        return leading_timesteps(self.num_steps, self.num_train_timesteps, self.steps_offset)

    @property
    def cross_resolutions(self) -> tuple[int, ...]:
        return self.self_resolutions if self.save_cross else ()

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype or "float32")

    def override(self, **changes) -> "FocusConfig":
        """A copy with the non-None ``changes`` applied (CLI flags default to None)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
