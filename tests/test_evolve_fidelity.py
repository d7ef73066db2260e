"""Stage 3 arithmetic equals the released torch arithmetic to the bit (docs/method.md, "Arithmetic
order that matters"): masks of crafted nearly flat, tied and plateaued VLM maps are compared with
a plain torch reference pipeline, pixel for pixel, in both fidelities."""
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolve_helpers import bfs_region, make_crafted_run, cli, read_mask, write_focus, write_overview
from rsvg_zeroov.evolve import resample
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


# ------------------------------------------------------------------------------ the fast mask path
# upsample_window + binarise decide most pixels by bands and emulate torch's arithmetic near alpha
# (rsvg_zeroov/evolve/resample.py); these compare them with the plain 2-D torch call.

KINDS = ("random", "sparse", "flat", "tied", "near_alpha", "plateau", "signed")
NAMED_SIZES = [(37, 1000), (1000, 37), (800, 800), (357, 611), (1, 900), (129, 1), (31, 97), (64, 48), (32, 700)]
sizes = st.one_of(st.sampled_from(NAMED_SIZES), st.tuples(st.integers(1, 1000), st.integers(1, 1000)))


def _map(kind: str, rng) -> np.ndarray:
    """A float32 (32, 32) map: A_E-like (a non-zero patch), flat, tied, just above 0.4, or signed."""
    if kind == "random":
        return rng.random((32, 32), dtype=np.float32)
    a = np.zeros((32, 32), np.float32)
    y, x = rng.integers(0, 30, 2)
    h, w = rng.integers(1, 16, 2)
    patch = a[y:y + h, x:x + w]
    patch[:] = {"sparse": lambda: rng.random(patch.shape), "flat": lambda: 0.4 + 0.3 * rng.integers(0, 2),
                "tied": lambda: rng.integers(0, 5, patch.shape) / 4,  # 0.25 steps: 0.4 is never a corner
                "near_alpha": lambda: 0.4 + 1e-6 * rng.random(patch.shape),  # every pixel within 1e-6
                "plateau": lambda: np.where(rng.random(patch.shape) < 0.7, 0.6, 0.2 * rng.random(patch.shape)),
                "signed": lambda: rng.random(patch.shape) - 0.3}[kind]()
    return a


def _torch_masks(a: np.ndarray, size, alphas) -> list[np.ndarray]:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(a)[None, None]
    up = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return [(up > alpha).numpy() for alpha in alphas]


@settings(max_examples=45, deadline=None)
@given(kind=st.sampled_from(KINDS), size=sizes, seed=st.integers(0, 2**32 - 1))
def test_fast_mask_equals_the_2d_torch_call(kind, size, seed):
    """Random, flat, tied, plateaued, near-alpha and signed maps; alpha also exactly on an output
    value and one float32 step either side of it, 0, negative and tiny."""
    rng = np.random.default_rng(seed)
    a = _map(kind, rng)
    full = resample.resize_bilinear(a, size)
    alphas = [0.4, 0.3, 0.0, -0.25, 1e-31, float("nan")]
    positive = full[full > 0]
    for value in rng.choice(positive, 2) if positive.size else ():
        alphas += [float(v) for v in (value, np.nextafter(value, np.float32(2)), np.nextafter(value, np.float32(0)))]
    window = resample.upsample_window(a, size)
    for alpha, ref in zip(alphas, _torch_masks(a, size, alphas)):
        assert np.array_equal(resample.binarise(window, size, alpha), ref), (kind, size, alpha)


def test_near_alpha_pixels_are_decided_by_the_exact_arithmetic():
    """A map within 1e-6 of alpha everywhere: every pixel goes through the emulation of torch's
    arithmetic, and the mask still equals the 2-D call (where plain float32 would differ)."""
    if resample.emulation() is None:
        pytest.skip("this torch build's resize is not emulated: every mask is the 2-D call's")
    rng = np.random.default_rng(3)
    a = (0.4 + 1e-6 * rng.random((32, 32))).astype(np.float32)
    size = (357, 611)
    window = resample.upsample_window(a, size)
    alpha = float(np.median(resample.resize_bilinear(a, size)))
    (ref,) = _torch_masks(a, size, [alpha])
    assert np.array_equal(resample.binarise(window, size, alpha), ref)
    ys, _xs, _exact = window._exact
    assert ys.size > 0.9 * ref.size  # nearly every pixel needed the exact path
    assert not np.array_equal(window.values > np.float32(alpha), ref)  # plain float32 flips pixels


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
       size=st.tuples(st.integers(1, 400), st.integers(1, 400)), seed=st.integers(0, 2**32 - 1))
def test_the_emulation_reproduces_torch_bit_for_bit(shape, size, seed):
    """The detected arithmetic at every pixel, for odd, non-square, up- and downsampled shapes
    (outputs with H + W > 128; torch resizes smaller ones with another kernel, never emulated)."""
    variant = resample.emulation()
    if variant is None:
        pytest.skip("this torch build's resize is not emulated: every mask is the 2-D call's")
    if sum(size) <= resample.SMALL_OUTPUT:
        size = (size[0] + resample.SMALL_OUTPUT, size[1])
    a = np.random.default_rng(seed).random(shape, dtype=np.float32)
    emulated = resample.exact_resize(a, size, variant == "fused")
    assert np.array_equal(emulated.view(np.uint32), resample.resize_bilinear(a, size).view(np.uint32))


def _round32(q: Fraction) -> np.float32:
    """The float32 nearest to the rational ``q`` (ties to even), exactly."""
    r = np.float32(float(q))
    cands = [r, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf))]
    return min(cands, key=lambda c: (abs(Fraction(float(c)) - q), int(c.view(np.uint32)) & 1))


f32s = st.floats(min_value=-4.0, max_value=4.0, width=32, allow_subnormal=True)


@settings(max_examples=300, deadline=None)
@given(a=f32s, b=f32s, c=f32s)
def test_fma32_rounds_once(a, b, c):
    a, b, c = np.float32(a), np.float32(b), np.float32(c)
    want = _round32(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))
    assert resample.fma32(a, b, c) == want


def test_fma32_rounds_once_where_the_float64_sum_is_a_float32_midpoint():
    """a * b + c whose float64 sum lies exactly halfway between two float32 with the true value
    just below (first) or just above (second) it: rounding the float64 sum would pick the wrong one."""
    u = 2.0 ** -23
    cases = [(2 ** -12 * (1 + u), 2 ** -12 * (1 - u), 1 + u),  # 1 + u + 2**-24 - 2**-70
             (2 ** -12 * (1 + 2896 * u), 2 ** -12 * (1 - 2895 * u), 1.0)]  # 1 + 2**-24 + ~2**-58
    for a, b, c in cases:
        a, b, c = np.float32(a), np.float32(b), np.float32(c)
        exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
        naive = np.float32(float(a) * float(b) + float(c))
        assert resample.fma32(a, b, c) == _round32(exact) != naive


def test_without_a_verified_emulation_every_mask_is_the_2d_call(monkeypatch):
    monkeypatch.setattr(resample, "_PROBE", [None])
    a = _map("near_alpha", np.random.default_rng(4))
    window = resample.upsample_window(a, (300, 500))
    (ref,) = _torch_masks(a, (300, 500), [0.4])
    assert window.exact and np.array_equal(resample.binarise(window, (300, 500), 0.4), ref)


def test_a_build_without_fused_multiply_adds_is_emulated_too():
    """torch's generic CPU kernels (ATEN_CPU_CAPABILITY=default) round every product: the probe
    finds that arithmetic (or none) and the masks equal the 2-D call."""
    code = (
        "import numpy as np, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_evolve_fidelity import _map, _torch_masks, KINDS\n"
        "from rsvg_zeroov.evolve import resample\n"
        "rng = np.random.default_rng(6)\n"
        "for i in range(20):\n"
        "    a, size = _map(KINDS[i % 6], rng), (int(rng.integers(60, 900)), int(rng.integers(60, 900)))\n"
        "    full = resample.resize_bilinear(a, size)\n"
        "    alphas = [0.4, float(rng.choice(full[full > 0])) if (full > 0).any() else 0.3]\n"
        "    w = resample.upsample_window(a, size)\n"
        "    for alpha, ref in zip(alphas, _torch_masks(a, size, alphas)):\n"
        "        assert np.array_equal(resample.binarise(w, size, alpha), ref), (i, size, alpha)\n"
        "print(resample.emulation())\n")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] in ("plain", "fused", "None")
