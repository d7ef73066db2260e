"""Stage 3 arithmetic equals the released torch arithmetic to the bit (docs/method.md, "Arithmetic
order that matters"): masks of crafted nearly flat, tied and plateaued VLM maps are compared with
a plain torch reference pipeline, pixel for pixel, in both fidelities."""
import numpy as np
import pytest

from evolve_helpers import bfs_region, make_crafted_run, cli, read_mask, write_focus, write_overview
from rsvg_zeroov.evolve.config import EvolveConfig
from rsvg_zeroov.evolve.evolve import evolve
from rsvg_zeroov.evolve.interaction import single_threaded_kernels

EPS = 1e-6
SIZES = [(800, 800), (357, 611), (64, 48)]


def torch_reference(a_c: np.ndarray, s: np.ndarray, size, fidelity: str, k=7, tau=0.3, alpha=0.4,
                    maps: dict | None = None):
    """The released stage 3 written out in torch: float64 map cast to float32, interpolate, the
    normalisations, ``c^T S``; seeds and a breadth-first region; interpolate to (H, W) > alpha.
    ``maps``: filled with the reference ``c`` and ``a_cs``."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(a_c).to(torch.float32)[None, None]
    c = F.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    if fidelity == "released":
        c = (c - c.min()) / (c.max() + EPS)
    else:
        c = (c - c.min()) / (c.max() - c.min() + EPS)
    p = c.reshape(-1) @ torch.from_numpy(s)
    p = p / (torch.norm(p) + EPS)
    q = p - p.min()
    a_cs = (q / (q.max() + EPS)).reshape(32, 32)
    if maps is not None:
        maps.update(c=c.numpy(), a_cs=a_cs.numpy())
    distinct = torch.unique(c)  # sorted ascending
    seeds = (c >= distinct[max(distinct.numel() - k, 0)]).numpy()
    region = torch.from_numpy(bfs_region(a_cs.numpy(), seeds, tau))
    a_e = torch.where(region, a_cs, torch.zeros(()))
    up = F.interpolate(a_e[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return (up > alpha).numpy()


def _s(rng) -> np.ndarray:
    """Row-stochastic S with local structure (each query attends to nearby keys)."""
    yx = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1).reshape(-1, 2)
    d2 = ((yx[:, None, :] - yx[None, :, :]) ** 2).sum(-1)
    s = np.exp(-d2 / rng.uniform(6, 30)) + rng.uniform(0, 1e-3, d2.shape)
    return (s / s.sum(1, keepdims=True)).astype(np.float32)


def _blob(rng, grid=29):
    cy, cx = rng.uniform(6, grid - 6, 2)
    yy, xx = np.mgrid[:grid, :grid]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(6, 20))


def crafted_maps(seed: int = 0) -> dict[str, np.ndarray]:
    """float64 (29, 29) stage-1 maps (as released stage 1 saves them) that stress the rounding."""
    rng = np.random.default_rng(seed)
    blob = _blob(rng)
    plateau = np.full((29, 29), 0.2)
    plateau[8:20, 5:15] = 0.9  # a flat top: the K largest distinct values come from its edges
    plateau[8:20, 15:24] = 0.6
    return {
        "nearly_flat": 0.5 + 1e-4 * blob + 1e-6 * rng.random((29, 29)),  # range ~1e-4
        "quantised": np.round(blob * 12) / 12,  # a dozen levels: ties among the top-K values
        "plateaued": plateau + 1e-3 * rng.random((29, 29)) * (plateau < 0.5),
    }


@pytest.mark.parametrize("fidelity", ["released", "corrected"])
@pytest.mark.parametrize("kind", ["nearly_flat", "quantised", "plateaued"])
def test_masks_equal_the_torch_reference_to_the_pixel(kind, fidelity):
    rng = np.random.default_rng(1)
    cfg = EvolveConfig(fidelity=fidelity, refiner=None)
    with single_threaded_kernels():  # as the stage runs it
        for trial in range(3):
            a_c = crafted_maps(trial)[kind]
            s = _s(rng)
            for size in SIZES:
                res, maps = evolve(a_c, s, size, cfg), {}
                mask = res.mask
                ref = torch_reference(a_c, s, size, fidelity, maps=maps)
                assert np.array_equal(res.c.view(np.uint32), maps["c"].view(np.uint32))  # bit for bit
                assert np.array_equal(res.a_cs.view(np.uint32), maps["a_cs"].view(np.uint32))
                assert ref.any() and not ref.all(), (kind, trial, size)  # a real test case
                assert int((mask != ref).sum()) == 0, (kind, fidelity, trial, size)


def test_stage_masks_on_a_nearly_flat_map_equal_the_reference(tmp_path):
    """Through the dumps and the stage (stage 1 dumps float32: the released float64 map cast first)."""
    jsonl, run, _ = make_crafted_run(tmp_path)
    rng = np.random.default_rng(2)
    s = _s(rng)
    a_c = crafted_maps(3)["nearly_flat"]
    write_overview(run, "a1", a_c.astype(np.float32))
    write_focus(run, "a1", s, s)
    assert cli(jsonl, run, "--no-sam") == 0
    with single_threaded_kernels():
        ref = torch_reference(a_c, s, (64, 48), "released")
    assert ref.any() and int((read_mask(run.mask_png("a1")) != ref).sum()) == 0


def test_binarise_equals_the_2d_resize_even_at_alpha_exactly_on_a_value():
    """The two-pass window decides a pixel only away from alpha; at ties (alpha equal to an output
    value, or one ulp off it) the 2-D call decides."""
    from evolve_helpers import torch_resize
    from rsvg_zeroov.evolve.resample import MARGIN, binarise, upsample_window

    rng = np.random.default_rng(5)
    fell_back = 0
    for trial in range(60):
        a = np.zeros((32, 32), np.float32)
        y, x = rng.integers(0, 28, 2)
        a[y:y + 6, x:x + 5] = rng.random((min(6, 32 - y), min(5, 32 - x)), dtype=np.float32)
        size = tuple(int(v) for v in rng.integers(40, 900, 2))
        full = torch_resize(a, size)
        window = upsample_window(a, size)
        vals, (_y0, x0) = window
        assert np.abs(vals - full[:, x0:x0 + vals.shape[1]]).max() <= MARGIN * a.max() / 1.3
        value = float(rng.choice(full[full > 0]))
        for alpha in (value, float(np.nextafter(np.float32(value), np.float32(1))),
                      float(np.nextafter(np.float32(value), np.float32(0))), 0.0, 0.4):
            assert np.array_equal(binarise(window, size, alpha), full > alpha), (trial, size, alpha)
        fell_back += getattr(window, "_exact", None) is not None
    assert fell_back > 0  # the ties did reach the 2-D path
