"""Stage 3 maths on hand-computed toy cases, in both fidelity modes (docs/method.md, stage 3)."""
import numpy as np
import pytest

from evolve_helpers import torch_resize
from rsvg_zeroov.evolve.config import EvolveConfig
from rsvg_zeroov.evolve.evolve import evolve, evolve_maps, interaction
from rsvg_zeroov.evolve.interaction import normalise_c, propagate
from rsvg_zeroov.evolve.region import top_k_seeds
from rsvg_zeroov.evolve.resample import binarise, resize_bilinear, upsample_window

EPS = 1e-6


# ------------------------------------------------------------------------------ resampling
def test_bilinear_taps_hand_computed_2_to_4():
    # src = max((i + .5) * 2/4 - .5, 0) = 0, .25, .75, 1.25 -> clamped to the last input sample;
    # column j of the tap matrix is the resize of the unit vector e_j
    dense = resize_bilinear(np.eye(2, dtype=np.float32), (4, 2))
    np.testing.assert_allclose(dense, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


@pytest.mark.parametrize("src,dst", [((29, 29), (32, 32)), ((32, 32), (32, 32)), ((46, 30), (32, 32)),
                                     ((32, 32), (800, 800)), ((32, 32), (37, 61)), ((5, 7), (3, 2))])
def test_resize_equals_torch_interpolate(src, dst):
    a = np.random.default_rng(0).random(src, dtype=np.float32)
    np.testing.assert_allclose(resize_bilinear(a, dst), torch_resize(a, dst), atol=1e-6)


def test_upsample_window_equals_full_resize_on_sparse_maps():
    rng = np.random.default_rng(1)
    for trial in range(40):
        a = np.zeros((32, 32), np.float32)
        y, x = rng.integers(0, 30, 2)
        h, w = rng.integers(1, 8, 2)
        a[y:y + h, x:x + w] = rng.random((min(h, 32 - y), min(w, 32 - x)))
        size = tuple(int(v) for v in rng.integers(20, 300, 2))
        full = torch_resize(a, size)
        window = upsample_window(a, size)
        for alpha in (-0.1, 0.0, 0.2, 0.4):
            np.testing.assert_array_equal(binarise(window, size, alpha), full > alpha)
        vals, (y0, x0) = window
        outside = full.copy()
        outside[y0:y0 + vals.shape[0], x0:x0 + vals.shape[1]] = 0
        assert not outside.any()


def test_upsample_single_cell_hand_computed():
    # one cell (16, 16) = 1 upsampled x2: weights .25/.75/.75/.25 on rows 31..34 and cols 31..34
    a = np.zeros((32, 32), np.float32)
    a[16, 16] = 1.0
    window = upsample_window(a, (64, 64))
    full = np.zeros((64, 64), np.float32)
    vals, (y0, x0) = window
    full[y0:y0 + vals.shape[0], x0:x0 + vals.shape[1]] = vals
    w = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(full[31:35, 31:35], np.outer(w, w), atol=1e-7)
    assert full.sum() == pytest.approx(4.0)
    m = binarise(window, (64, 64), 0.4)  # only 0.5625 > 0.4: the central 2 x 2 block
    assert m.sum() == 4 and m[32:34, 32:34].all()
    m = binarise(window, (64, 64), 0.1)  # 0.1875 and 0.5625 pass, the 0.0625 corners do not
    assert m.sum() == 12 and not m[31, 31] and m[31, 32]
    assert binarise(None, (5, 6), 0.4).shape == (5, 6) and not binarise(None, (5, 6), 0.4).any()


# ------------------------------------------------------------------------------ normalisation
def test_normalise_c_released_and_corrected_hand_computed():
    a_c = np.full((32, 32), 0.6, np.float32)
    a_c[0, 0], a_c[5, 5] = 0.2, 1.0
    rel = normalise_c(a_c, "released")  # (c - .2) / (1 + 1e-6)
    cor = normalise_c(a_c, "corrected")  # (c - .2) / (.8 + 1e-6)
    assert rel[0, 0] == 0 and cor[0, 0] == 0
    assert rel[5, 5] == pytest.approx(0.8 / (1 + EPS), rel=1e-6)
    assert rel[1, 1] == pytest.approx(0.4 / (1 + EPS), rel=1e-6)
    assert cor[5, 5] == pytest.approx(0.8 / (0.8 + EPS), rel=1e-6)
    assert cor[1, 1] == pytest.approx(0.4 / (0.8 + EPS), rel=1e-6)
    assert rel.dtype == cor.dtype == np.float32 and rel.shape == (32, 32)
    with pytest.raises(ValueError, match="fidelity"):
        normalise_c(a_c, "paper")


def test_normalise_c_resizes_the_vlm_grid_first():
    a_c = np.random.default_rng(2).random((29, 29), dtype=np.float32)
    c = normalise_c(a_c, "corrected")
    ref = torch_resize(a_c, (32, 32))
    ref = (ref - ref.min()) / (ref.max() - ref.min() + EPS)
    np.testing.assert_allclose(c, ref, atol=1e-6)


# ------------------------------------------------------------------------------ propagation
def test_propagate_hand_computed():
    c = np.zeros((32, 32), np.float32)
    c.flat[0], c.flat[1] = 1.0, 0.5
    s = np.full((1024, 1024), 1 / 1024, np.float32)
    s[0] = 0
    s[0, 5] = 1.0  # query 0 attends only to key 5
    s[1] = 0
    s[1, 5] = s[1, 6] = 0.5  # query 1 splits over keys 5 and 6
    # p = 1.25 e5 + 0.25 e6; ||p|| = sqrt(1.625); min p = 0
    a_cs = propagate(c, s)
    q5 = 1.25 / (np.sqrt(1.625) + EPS)
    q6 = 0.25 / (np.sqrt(1.625) + EPS)
    assert a_cs.flat[5] == pytest.approx(q5 / (q5 + EPS), rel=1e-6)
    assert a_cs.flat[6] == pytest.approx(q6 / (q5 + EPS), rel=1e-6)
    assert np.count_nonzero(a_cs) == 2 and a_cs.shape == (32, 32)


def test_propagate_subtracts_the_minimum_and_uses_rows_as_queries():
    rng = np.random.default_rng(3)
    c = rng.random((32, 32), dtype=np.float32)
    s = rng.random((1024, 1024), dtype=np.float32)
    p = (c.reshape(-1).astype(np.float64) @ s.astype(np.float64))  # sum over query rows
    p = p / (np.linalg.norm(p) + EPS)
    q = p - p.min()
    np.testing.assert_allclose(propagate(c, s).reshape(-1), q / (q.max() + EPS), atol=2e-5)


# ------------------------------------------------------------------------------ seeds
def test_seeds_take_k_largest_distinct_values_with_ties():
    c = np.zeros((32, 32), np.float32)
    c[0, :2] = 0.9  # two-way tie at the top
    c[1, :3] = 0.8  # three-way tie second
    c[2, 0] = 0.7
    assert top_k_seeds(c, 1).sum() == 2
    assert top_k_seeds(c, 2).sum() == 5
    assert top_k_seeds(c, 3).sum() == 6
    assert top_k_seeds(c, 4).all()  # the 4th distinct value is the background 0
    assert top_k_seeds(c, 50).all()  # fewer distinct values than K: every position
    with pytest.raises(ValueError):
        top_k_seeds(c, 0)


# ------------------------------------------------------------------------------ growth
def _grow_case():
    """A_CS with a high block A, a low-valued seed bridging to block B diagonally, an unseeded
    high block C, and a cell exactly at tau (strict: not grown into)."""
    a_cs = np.zeros((32, 32), np.float32)
    a_cs[2:5, 2:5] = 0.9  # A (holds the top seeds)
    a_cs[5, 5] = 0.1  # low seed, diagonal to A's corner (4, 4)
    a_cs[6:8, 6:8] = 0.5  # B, diagonal to the low seed
    a_cs[20:23, 20:23] = 0.8  # C, not connected
    a_cs[2, 1] = 0.3  # exactly tau
    a_cs[10, 10] = 0.05  # an isolated low seed: kept, grows nowhere
    c = np.zeros((32, 32), np.float32)
    c[3, 3], c[5, 5], c[10, 10] = 1.0, 0.9, 0.8
    return c, a_cs


def test_growth_through_and_around_low_valued_seeds():
    c, a_cs = _grow_case()
    seeds, region, a_e = evolve_maps(c, a_cs, k=3, tau=0.3)
    assert seeds.sum() == 3
    expect = np.zeros((32, 32), bool)
    expect[2:5, 2:5] = expect[5, 5] = True
    expect[6:8, 6:8] = expect[10, 10] = True
    np.testing.assert_array_equal(region, expect)
    np.testing.assert_array_equal(a_e, np.where(expect, a_cs, 0))
    # without the bridging seed, B is unreachable
    _s, region2, _ = evolve_maps(c, a_cs, k=1, tau=0.3)
    assert region2[2:5, 2:5].all() and not region2[6:8, 6:8].any() and region2.sum() == 9
    # no growth: A_E = A_CS
    _s, region3, a_e3 = evolve_maps(c, a_cs, k=1, tau=0.3, use_evolve=False)
    assert region3.all() and np.array_equal(a_e3, a_cs)


# ------------------------------------------------------------------------------ the whole function
@pytest.mark.parametrize("fidelity", ["released", "corrected"])
def test_evolve_step_by_step(fidelity):
    rng = np.random.default_rng(4)
    a_c = rng.random((29, 29), dtype=np.float32) * 0.1 + 0.3
    a_c[10:15, 12:18] += 0.6
    s = rng.random((1024, 1024), dtype=np.float32)
    s /= s.sum(1, keepdims=True)
    cfg = EvolveConfig(fidelity=fidelity, refiner=None)
    res = evolve(a_c, s, (120, 90), cfg)
    ref = torch_resize(a_c, (32, 32))
    denom = ref.max() + EPS if fidelity == "released" else ref.max() - ref.min() + EPS
    c = (ref - ref.min()) / denom
    np.testing.assert_allclose(res.c, c, atol=1e-6)
    np.testing.assert_allclose(res.a_cs, propagate(c, s), atol=1e-5)
    np.testing.assert_array_equal(res.seeds, top_k_seeds(res.c, 7))
    np.testing.assert_array_equal(res.a_e, np.where(res.region, res.a_cs, 0))
    expect_mask = torch_resize(res.a_e, (120, 90)) > 0.4
    assert (res.mask != expect_mask).sum() <= 2  # float rounding exactly at alpha at most
    assert res.mask.shape == (120, 90) and res.mask.dtype == bool


def test_fidelity_changes_c_when_the_minimum_is_not_zero():
    a_c = np.full((32, 32), 0.5, np.float32)
    a_c[4:8, 4:8] = 1.0
    rel = interaction(a_c, None, EvolveConfig(use_dm=False, fidelity="released"))[0]
    cor = interaction(a_c, None, EvolveConfig(use_dm=False, fidelity="corrected"))[0]
    assert rel.max() == pytest.approx(0.5, rel=1e-5) and cor.max() == pytest.approx(1.0, rel=1e-5)


def test_ablation_switches():
    a_c = np.random.default_rng(5).random((32, 32), dtype=np.float32)
    no_dm = evolve(a_c, None, (64, 64), EvolveConfig(use_dm=False, refiner=None))
    np.testing.assert_array_equal(no_dm.a_cs, no_dm.c)
    no_ev = evolve(a_c, None, (64, 64), EvolveConfig(use_dm=False, use_evolve=False, refiner=None))
    assert no_ev.region.all() and np.array_equal(no_ev.a_e, no_ev.a_cs)
    with pytest.raises(ValueError, match="needs S"):
        evolve(a_c, None, (64, 64), EvolveConfig(refiner=None))


def test_config_defaults_overrides_and_validation():
    cfg = EvolveConfig()
    assert (cfg.k, cfg.tau, cfg.alpha, cfg.resolutions, cfg.fidelity) == (7, 0.3, 0.4, (32, 64), "released")
    assert cfg.use_dm and cfg.use_evolve and cfg.sam and not cfg.save_maps and cfg.refiner == "vit_h"
    assert cfg.override(k=None, tau=0.25) == EvolveConfig(tau=0.25)
    assert EvolveConfig(resolutions=(64, 32, 16)).resolutions == (16, 32, 64)
    assert cfg.fingerprint() != cfg.override(alpha=0.5).fingerprint()
    assert cfg.fingerprint() == cfg.override(save_maps=True).fingerprint()
    for bad in (dict(fidelity="paper"), dict(resolutions=(8,)), dict(resolutions=()), dict(k=0)):
        with pytest.raises(ValueError):
            EvolveConfig(**bad)
