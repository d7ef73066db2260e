"""The vectorised region growing equals a plain breadth-first search (docs/method.md, stage 3 step 4)."""
import numpy as np
import pytest

from evolve_helpers import bfs_region
from rsvg_zeroov.evolve.region import grow_region, top_k_seeds


def _random_case(rng):
    shape = (32, 32) if rng.random() < 0.7 else tuple(rng.integers(1, 12, 2))
    levels = rng.integers(2, 40)  # quantised values: many exact ties, thresholds hit exactly
    a_cs = (rng.integers(0, levels, shape) / (levels - 1)).astype(np.float32)
    if rng.random() < 0.5:  # smooth blobs as well as salt-and-pepper
        a_cs = np.cumsum(np.cumsum(a_cs, 0), 1)
        a_cs = (a_cs / a_cs.max()).astype(np.float32)
    c = (rng.integers(0, levels, shape) / (levels - 1)).astype(np.float32)
    k = int(rng.integers(1, 12))
    tau = float(rng.choice([0.0, 0.1, 0.3, 0.5, 0.9, 1.0, float(a_cs.flat[0])]))
    return c, a_cs, k, tau


def test_vectorised_growth_equals_bfs_on_many_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(250):
        c, a_cs, k, tau = _random_case(rng)
        seeds = top_k_seeds(c, k)
        np.testing.assert_array_equal(grow_region(a_cs, seeds, tau), bfs_region(a_cs, seeds, tau))


def test_growth_is_eight_connected_and_strict():
    a_cs = np.zeros((5, 5), np.float32)
    a_cs[0, 0] = a_cs[1, 1] = a_cs[2, 2] = 0.9  # a diagonal chain
    a_cs[3, 3] = 0.3  # == tau: not grown into
    a_cs[4, 4] = 0.9  # beyond it: unreachable
    seeds = np.zeros((5, 5), bool)
    seeds[0, 0] = True
    region = grow_region(a_cs, seeds, 0.3)
    assert region.sum() == 3 and region[2, 2] and not region[3, 3] and not region[4, 4]
    np.testing.assert_array_equal(region, bfs_region(a_cs, seeds, 0.3))


def test_seeds_are_always_in_even_below_tau():
    a_cs = np.zeros((4, 4), np.float32)
    seeds = np.zeros((4, 4), bool)
    seeds[1, 2] = True
    np.testing.assert_array_equal(grow_region(a_cs, seeds, 0.3), seeds)
    assert not grow_region(a_cs, np.zeros((4, 4), bool), 0.3).any()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_seeds_match_a_sorted_distinct_reference(k):
    rng = np.random.default_rng(k)
    c = (rng.integers(0, 10, (32, 32)) / 9).astype(np.float32)
    top = sorted(set(c.ravel().tolist()), reverse=True)[:k]
    np.testing.assert_array_equal(top_k_seeds(c, k), np.isin(c, top))
