"""Stage 2 as a library: load Stable Diffusion once, then compute Focus maps for many samples.

    focus = Focus(FocusConfig(), device="cuda:0").load()       # or .attach(load_diffusion(...))
    results = focus([("scene.png", "the red car on the left"), (rgb, "the road"), ...])

Each image is a file path, read as the released stage reads it
(:func:`rsvg_zeroov.images.read_for_diffusion`, docs/method.md "How each stage reads the image file"),
or an already read uint8 ``(H, W, 3)`` / ``(H, W)`` grayscale array; it is resized to
``image_size`` x ``image_size`` (aspect ratio ignored). Items are processed ``batch_size`` at a time:
every UNet call of inversion, optimisation and reconstruction carries the whole batch.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..rundir import FOCUS_16TO32, FOCUS_64TO32, FOCUS_CROSS, FOCUS_FULL_64, FOCUS_SELF_16, FOCUS_SELF_32
from .config import FocusConfig

PHASES = ("encode", "inversion", "optimisation", "reconstruction", "reduce")


@dataclass(frozen=True, eq=False)
class FocusResult:
    """The Focus maps of one sample, float32 on the host. Rows are queries in row-major grid order.

    self_32: (32, 32, 1024) S_32, row (y, x) = that query's distribution over the 32-grid keys.
    self_64to32_released / self_64to32_corrected: (1024, 1024) S_64 reduced to the 32 grid.
    extras: opt-in maps by file name (rundir.FOCUS_*): self_64 (64, 64, 4096), self_16 (16, 16, 256),
        self_16to32_{released,corrected} (1024, 1024), cross_<r> (r, r, 77).
    meta: what meta.json records (model, steps, guidance, inversion mode, chunks, dtype, ...).
    timings: seconds per phase (``PHASES``), this sample's share of its batch.
    """

    self_32: np.ndarray
    self_64to32_released: np.ndarray
    self_64to32_corrected: np.ndarray
    extras: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def files(self) -> dict[str, np.ndarray]:
        """Every map by its file name in ``RUN/focus/<id>/``."""
        return {FOCUS_SELF_32: self.self_32, FOCUS_64TO32["released"]: self.self_64to32_released,
                FOCUS_64TO32["corrected"]: self.self_64to32_corrected, **self.extras}


class PhaseTimer:
    """Wall-clock seconds per phase (CUDA synchronised at both ends)."""

    def __init__(self, device):
        self.device, self.seconds = device, {p: 0.0 for p in PHASES}

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, phase: str):
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[phase] += time.perf_counter() - t0


def as_image(image) -> np.ndarray:
    """A path read as the released stage 2 reads it (uint8 (H, W, 3)); an array as it is."""
    if isinstance(image, (str, os.PathLike)):
        from ..images import read_for_diffusion

        return read_for_diffusion(image)
    return np.asarray(image)


def preprocess(rgb: np.ndarray, size: int, resize: str = "bicubic"):
    """uint8 (H, W, 3) or (H, W) -> float32 tensor (3, size, size) in [-1, 1]."""
    import torch
    from PIL import Image

    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"Focus expects uint8 RGB images (H, W, 3), got {arr.dtype} {arr.shape}; "
                         f"pass the file path or read it with rsvg_zeroov.images.read_for_diffusion")
    filt = getattr(Image.Resampling, resize.upper())
    img = np.asarray(Image.fromarray(arr).resize((size, size), resample=filt), dtype=np.float32)
    return torch.from_numpy(img).permute(2, 0, 1) / 127.5 - 1.0


class Focus:
    """Stable Diffusion null-text inversion + self-attention capture for a list of samples."""

    def __init__(self, config: FocusConfig | None = None, device="cpu"):
        import torch

        self.config = config or FocusConfig()
        self.device = torch.device(device)
        self.dtype = self.config.torch_dtype()
        self.sd = None  # the diffusion adapter (rsvg_zeroov.models.diffusion), set by load / attach
        self.ddim = None  # its DDIM schedule for this config

    def load(self) -> "Focus":
        """Load the model through the diffusion registry (ModelNotFound says what to do)."""
        from ..models.diffusion import load_diffusion

        return self.attach(load_diffusion(self.config.model, dtype=self.dtype, device=self.device))

    def attach(self, components) -> "Focus":
        """Use an already loaded diffusion adapter, or components with ``vae``, ``unet``,
        ``text_encoder``, ``tokenizer`` and ``ref`` (moved to this device and dtype)."""
        from ..models.diffusion import as_adapter

        self.sd = as_adapter(components).to(self.device, self.dtype)
        self.ddim = self.sd.schedule(self.config)
        return self

    def resolved(self) -> dict:
        """What loading decided, for the stage config: model source and key, dtype, latent scale."""
        return {"model": self.sd.ref.source, "model_key": self.sd.ref.key, "dtype": self.config.dtype or "float32",
                "latent_scale": self.sd.latent_scale}

    @property
    def progress_steps(self) -> int:
        """Timesteps of one batch, as the progress bar counts them: inversion, null-text optimisation
        and re-denoising 20 each (60) by default, 40 with ddim inversion, the one forward in noise mode."""
        phases = {"nulltext": 3, "ddim": 2}.get(self.config.inversion)
        return phases * self.config.num_steps if phases else 1

    @property
    def latent_size(self) -> int:
        return self.config.image_size // self.sd.latent_factor

    def __call__(self, items: Sequence[tuple]) -> list[FocusResult]:
        """The maps of ``(image, expression)`` items; an image is a path or a uint8 array."""
        if self.sd is None:
            raise RuntimeError("Focus.load() (or .attach(components)) must be called before computing maps")
        items = [(as_image(image), text) for image, text in items]
        out, bs = [], self.config.batch_size
        for start in range(0, len(items), bs):
            out.extend(self._batch(list(items[start:start + bs])))
        return out

    # ------------------------------------------------------------------------------- phases
    def encode(self, items: Sequence[tuple[np.ndarray, str]]):
        """The inputs of inversion for ``items`` (one batch): ``(latent0, prompts, cond, uncond)``.

        latent0: float32 (B, 4, h, w), the VAE latent mean x scaling factor (0.18215 for SD v1);
        prompts: list of prompt.Prompt (chunks); cond: float32 (B, 77, D) CLIP states of each first
        chunk; uncond: float32 (B, 77, D) the empty prompt's states (the null-text starting point).
        """
        import torch

        from .prompt import encode, split_prompt

        c, sd = self.config, self.sd
        pixels = torch.stack([preprocess(rgb, c.image_size, c.resize) for rgb, _ in items]).to(self.device)
        with torch.no_grad():
            dist = sd.vae.encode(pixels.to(self.dtype)).latent_dist
            latent0 = dist.mean.float() * sd.latent_scale
        prompts = [split_prompt(sd.tokenizer, q, c.max_tokens) for _, q in items]
        cond = encode(sd.text_encoder, sd.tokenizer, [p.token_ids for p in prompts], self.device)
        uncond = encode(sd.text_encoder, sd.tokenizer, [[]], self.device).expand(len(items), -1, -1).contiguous()
        return latent0, prompts, cond, uncond

    def _invert(self, latent0, cond, uncond, timer, on_step=None):
        """(start latent, per-step unconditional embeddings, null-text record | None)."""
        from .inversion import ddim_invert, nulltext_optimise

        c, unet = self.config, self.sd.unet
        if c.inversion == "noise":
            import torch

            noise = torch.stack([torch.randn(latent0.shape[1:], generator=torch.Generator().manual_seed(c.seed))
                                 for _ in range(latent0.shape[0])]).to(self.device)
            return self.ddim.add_noise(latent0, noise, c.noise_timestep), [uncond], None
        with timer("inversion"):
            trajectory = ddim_invert(unet, self.ddim, latent0, cond, self.dtype, on_step)
        if c.inversion == "ddim":
            return trajectory[-1], [uncond] * len(self.ddim.timesteps), None
        with timer("optimisation"):
            null = nulltext_optimise(unet, self.ddim, trajectory, cond, uncond, c, self.dtype, on_step)
        return trajectory[-1], list(null.embeddings), null

    def _denoise(self, latent, cond, unconds, sites, store, on_step=None):
        """The capture pass; returns the reconstructed clean latent (None in noise mode)."""
        from .capture import capture
        from .inversion import guided_eps, reconstruct

        c = self.config
        with capture(self.sd.unet, sites, store):
            if c.inversion == "noise":
                guided_eps(self.sd.unet, latent, c.noise_timestep, cond, unconds[0], c.guidance, self.dtype)
                if on_step is not None:
                    on_step()
                return None
            return reconstruct(self.sd.unet, self.ddim, latent, cond, unconds, c.guidance, self.dtype, on_step)

    def _batch(self, items) -> list[FocusResult]:
        import torch

        from ..progress import bar
        from .capture import HostListStore, RunningMeanStore

        c = self.config
        sites = self.sd.sites(self.latent_size, c.self_resolutions, c.cross_resolutions)
        timer = PhaseTimer(self.device)
        with timer("encode"):
            latent0, prompts, cond, uncond = self.encode(items)
        store = (HostListStore if c.accumulate == "host_list" else RunningMeanStore)(len(items))
        with bar(self.progress_steps, desc=f"focus: {c.inversion} inversion + re-denoising") as steps:
            latent, unconds, null = self._invert(latent0, cond, uncond, timer, steps.update)
            with timer("reconstruction"):
                rec = self._denoise(latent, cond, unconds, sites, store, steps.update)
        with timer("reduce"):
            means: dict = {}  # each key's (B, N, K) mean computed once for the whole batch

            def mean(key):
                if key not in means:
                    means[key] = store.mean(key)
                return means[key]

            maps = [self._reduce(mean, b) for b in range(len(items))]
            means.clear()
        mse = None if rec is None else (rec - latent0).pow(2).flatten(1).mean(1).tolist()
        share = {k: v / len(items) for k, v in timer.seconds.items()}
        results = []
        for b, (rgb, _) in enumerate(items):
            meta = self._meta(prompts[b], rgb, store, sites, null, b, None if mse is None else mse[b])
            main = {k: maps[b].pop(k) for k in ("self_32", "released", "corrected")}
            results.append(FocusResult(main["self_32"], main["released"], main["corrected"], maps[b], meta, share))
        del store
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return results

    def _reduce(self, mean, b: int) -> dict[str, np.ndarray]:
        """Sample ``b``'s maps: "self_32", "released", "corrected" and the opt-in extras by file name.

        mean: key -> the batch's (B, N, K) mean map of that key (the store's, computed once)."""
        from .reduce import to_grid

        c = self.config

        def host(t):
            return t.float().cpu().numpy()

        s32, s64 = mean(("self", 32))[b], mean(("self", 64))[b]
        out = {"self_32": host(s32).reshape(32, 32, 1024),
               "released": host(to_grid(s64, 32, "released")), "corrected": host(to_grid(s64, 32, "corrected"))}
        if c.save_full_64:
            out[FOCUS_FULL_64] = host(s64).reshape(64, 64, 4096)
        if c.save_self_16:
            s16 = mean(("self", 16))[b]
            out[FOCUS_SELF_16] = host(s16).reshape(16, 16, 256)
            for fidelity, name in FOCUS_16TO32.items():
                out[name] = host(to_grid(s16, 32, fidelity))
        for r in c.cross_resolutions:
            out[FOCUS_CROSS.format(r=r)] = host(mean(("cross", r))[b]).reshape(r, r, -1)
        return out

    def _meta(self, prompt, rgb, store, sites, null, b: int, mse) -> dict:
        c, ref = self.config, self.sd.ref
        meta = {
            "model": ref.source, "model_key": ref.key, "image_size": c.image_size, "resize": c.resize,
            "input_size": [int(rgb.shape[0]), int(rgb.shape[1])], "steps": c.num_steps,
            "timesteps": list(self.ddim.timesteps), "guidance": c.guidance, "inversion": c.inversion,
            "scheduler": {"name": "DDIM", "beta_start": c.beta_start, "beta_end": c.beta_end,
                          "beta_schedule": "scaled_linear", "num_train_timesteps": c.num_train_timesteps,
                          "clip_sample": False, "set_alpha_to_one": False, "steps_offset": c.steps_offset,
                          "eta": 0.0},
            "dtype": c.dtype or "float32", "storage_dtype": c.storage_dtype, "batch_size": c.batch_size,
            "latent_scale": self.sd.latent_scale, "reconstruction_mse": mse,
            "captured": {f"{kind}_{r}": {"layers": len(group), "heads": group[0][1], "calls": store.calls((kind, r))}
                         for (kind, r), group in self._sites_by_key(sites).items()},
            **prompt.record(),
        }
        if c.inversion == "noise":
            meta.update(noise_timestep=c.noise_timestep, seed=c.seed)
        if null is not None:
            meta["nulltext"] = {"max_inner_steps": c.inner_steps, "lr": c.lr, "lr_decay": c.lr_decay,
                                "early_stop": c.early_stop, "early_stop_slope": c.early_stop_slope,
                                "inner_steps": list(null.inner_steps[b]), "losses": list(null.losses[b])}
        return meta

    def _sites_by_key(self, sites) -> dict:
        """(kind, r) -> [(layer name, heads), ...] of the captured layers."""
        unet, out = self.sd.unet, {}
        for s in sites:
            heads = unet.get_submodule(s.name.removesuffix(".processor")).heads
            out.setdefault((s.kind, s.r), []).append((s.name, heads))
        return out
