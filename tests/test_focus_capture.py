"""Stage 2 capture and reductions: hooked == unhooked, running means == the released oracle, 64/16 -> 32."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from focus_helpers import oracle_capture, oracle_mean, tiny_sd

from rsvg_zeroov.focus.capture import HostListStore, RunningMeanStore, capture, locate
from rsvg_zeroov.focus.reduce import pool_grid, resize_flat, split_grid, to_grid


@pytest.fixture(scope="module")
def unet2():
    """The tiny SD v1-layout UNet with 2 heads per attention (so head averaging is exercised)."""
    from diffusers import UNet2DConditionModel

    from rsvg_zeroov.tiny.sd import unet_config

    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config(heads=2)).eval().requires_grad_(False)


def _inputs(seed: int, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 64, 64, generator=g)
    emb = torch.randn(batch, 77, 32, generator=g)
    return torch.cat([x, x]), torch.cat([emb.roll(1, 0), emb])  # guidance batch [uncond; cond]


def test_tiny_sd_layout_and_registry_load(tiny_dir):
    sd = tiny_sd(tiny_dir)  # loads through rsvg_zeroov.models.diffusion.load_diffusion("tiny")
    root = tiny_dir / "sd"
    for sub in ("vae", "unet", "text_encoder", "scheduler"):
        assert (root / sub / "config.json").is_file() or (root / sub / "scheduler_config.json").is_file()
    assert {"vocab.json", "merges.txt"} <= {p.name for p in (root / "tokenizer").iterdir()}
    assert json.loads((root / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 10e6
    cfg = sd.unet.config
    assert list(cfg.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(cfg.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert cfg.cross_attention_dim == sd.text_encoder.config.hidden_size and sd.tokenizer.model_max_length == 77
    sites = locate(sd.unet, 64, (16, 32, 64), (32,))
    for r in (16, 32, 64):
        assert sum(s.kind == "self" and s.r == r for s in sites) == 5  # 2 down + 3 up, as SD v1.4
    assert sum(s.kind == "cross" for s in sites) == 5
    assert not any("mid_block" in s.name for s in sites)
    with pytest.raises(ValueError, match="no self-attention layer at resolution"):
        locate(sd.unet, 32, (64,))
    with torch.no_grad():  # 512x512 -> 64x64 latent (3 VAE downsamplings)
        assert sd.vae.encode(torch.zeros(1, 3, 512, 512)).latent_dist.mean.shape == (1, 4, 64, 64)


def test_capture_keeps_output_and_restores_processors(unet2):
    x, emb = _inputs(0)
    original = dict(unet2.attn_processors)
    with torch.no_grad():
        ref = unet2(x, 500, encoder_hidden_states=emb).sample
        sites = locate(unet2, 64, (32, 64), (32,))
        with capture(unet2, sites, RunningMeanStore(2)) as store:
            assert type(unet2.attn_processors[sites[0].name]).__name__ == "CaptureProcessor"
            out = unet2(x, 500, encoder_hidden_states=emb).sample
    assert (out - ref).abs().max().item() <= 1e-5
    assert set(store.keys()) == {("self", 32), ("self", 64), ("cross", 32)}
    assert all(unet2.attn_processors[k] is v for k, v in original.items())
    with pytest.raises(RuntimeError, match="boom"):
        with capture(unet2, sites, RunningMeanStore(2)):
            raise RuntimeError("boom")
    assert all(unet2.attn_processors[k] is v for k, v in original.items())


def test_running_means_equal_released_oracle(unet2):
    sites = locate(unet2, 64, (32, 64), (32,))
    steps = [(_inputs(1, batch=1), 900), (_inputs(2, batch=1), 450)]
    running, host = RunningMeanStore(1), HostListStore(1)
    with torch.no_grad():
        for store in (running, host):
            with capture(unet2, sites, store):
                for (x, emb), t in steps:
                    unet2(x, t, encoder_hidden_states=emb)
        with oracle_capture(unet2, sites) as maps:
            for (x, emb), t in steps:
                unet2(x, t, encoder_hidden_states=emb)
    for key in (("self", 32), ("self", 64), ("cross", 32)):
        assert running.calls(key) == 2 * 5 and len(maps[key]) == 2 * 5  # steps x layers
        want = oracle_mean(maps[key])
        assert want.shape == (1, key[1] ** 2, key[1] ** 2 if key[0] == "self" else 77)
        np.testing.assert_allclose(running.mean(key).numpy(), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(host.mean(key).numpy(), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(running.mean(key).sum(-1).numpy(), 1.0, atol=1e-5)


def _stochastic(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, n, generator=g)).softmax(-1)


def test_released_64_to_32_is_flat_bilinear_resize():
    s64 = _stochastic(4096, 0)
    out = to_grid(s64, 32, "released")
    want = F.interpolate(s64.reshape(1, 1, 4096, 4096), size=(1024, 1024), mode="bilinear", align_corners=False)
    assert out.shape == (1024, 1024)
    torch.testing.assert_close(out, want[0, 0], atol=0, rtol=0)
    i = torch.arange(1024)  # hand formula: mean of flat entries 4i+1, 4i+2 (rows and columns)
    a, b = 4 * i + 1, 4 * i + 2
    hand = (s64[a][:, a] + s64[a][:, b] + s64[b][:, a] + s64[b][:, b]) / 4
    torch.testing.assert_close(out, hand, atol=1e-7, rtol=1e-5)


def test_corrected_64_to_32_is_spatial_pooling():
    s64 = _stochastic(4096, 1)
    out = to_grid(s64, 32, "corrected")
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    want = torch.zeros(1024, 1024, dtype=torch.float64)
    for a in (0, 1):  # query children averaged
        for b in (0, 1):
            rows = s64[torch.from_numpy(((2 * y + a) * 64 + 2 * x + b).ravel())].double()
            for c in (0, 1):  # key children summed
                for d in (0, 1):
                    want += rows[:, torch.from_numpy(((2 * y + c) * 64 + 2 * x + d).ravel())] / 4
    torch.testing.assert_close(out.double(), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.sum(1), torch.ones(1024), atol=1e-5, rtol=0)
    torch.testing.assert_close(pool_grid(s64, 2), out)


def test_16_to_32_released_and_corrected():
    s16 = _stochastic(256, 2)
    rel = to_grid(s16, 32, "released")
    torch.testing.assert_close(rel, resize_flat(s16, 32))
    want = F.interpolate(s16[None, None], size=(1024, 1024), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(rel, want, atol=0, rtol=0)
    cor = to_grid(s16, 32, "corrected")
    torch.testing.assert_close(cor, split_grid(s16, 2))
    y, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    parent = torch.from_numpy(((y // 2) * 16 + x // 2).ravel())  # 32-grid position -> its 16-grid parent
    torch.testing.assert_close(cor, s16[parent][:, parent] / 4, atol=0, rtol=0)
    torch.testing.assert_close(cor.sum(1), torch.ones(1024), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="fidelity"):
        to_grid(s16, 32, "paper")
    with pytest.raises(ValueError, match="square"):
        to_grid(torch.ones(10, 10), 32, "corrected")
