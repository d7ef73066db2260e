"""Stage 1 arithmetic: with a bfloat16 model, released fidelity reproduces the released script's order
of operations and precision (probabilities in the model dtype, mean over heads then over steps in that
dtype, float32 after, fused in float64); corrected accumulates in float32; in float32 both agree.

The oracle (tests/overview_helpers.py) runs the whole model with eager attention and
``output_attentions=True``, as the released script. To compare the arithmetic and nothing else, our
capture runs on the same eager model here (the capture returns each layer's own attention output, so
the hidden states are the oracle's). Tolerances: per-layer maps bit-identical (0); the fused map is
the float32 rounding of the oracle's float64 value, so within 2**-24 of it (values <= 1).
"""
import numpy as np
import pytest
import torch

from overview_helpers import NONSQUARE, SQUARE, eager_oracle
from rsvg_zeroov.overview.config import OverviewConfig
from rsvg_zeroov.overview.model import Overview

LAYERS, WEIGHTS, STEPS = (16, 17, 18, 19), (0.1, 0.1, 0.3, 0.5), 5
FUSED_TOL = 2.0 ** -24  # float32 rounding of a float64 value in [0, 1]


def make(tiny_qwen, dtype, fidelity, eager=False) -> Overview:
    ov = Overview(OverviewConfig(model=str(tiny_qwen), max_new_tokens=STEPS, min_new_tokens=STEPS, greedy=True,
                                 dtype=dtype, fidelity=fidelity), "cpu").load()
    if eager:
        ov.model.set_attn_implementation("eager")
    return ov


@pytest.fixture(scope="module")
def oracles(tiny_qwen):
    return {id(item): eager_oracle(tiny_qwen, item, LAYERS, WEIGHTS, STEPS, min_new_tokens=STEPS, dtype="bfloat16")
            for item in (SQUARE, NONSQUARE)}


@pytest.mark.parametrize("item", [SQUARE, NONSQUARE], ids=["square", "nonsquare"])
def test_bf16_released_equals_released_arithmetic_oracle(tiny_qwen, oracles, item):
    ov = make(tiny_qwen, "bfloat16", "released", eager=True)
    assert ov.released_arithmetic
    res, ref = ov([item])[0], oracles[id(item)]
    assert list(res.token_ids) == ref["tokens"] and res.grid == ref["grid"]
    assert res.per_layer.dtype == np.float32 and np.array_equal(res.per_layer, ref["per_layer"])
    assert np.abs(res.fused.astype(np.float64) - ref["fused"]).max() <= FUSED_TOL


@pytest.mark.parametrize("item", [SQUARE, NONSQUARE], ids=["square", "nonsquare"])
def test_bf16_corrected_accumulates_in_float32(tiny_qwen, oracles, item):
    """corrected differs from the released arithmetic (float32 probabilities and sums), by well under
    the maps' bfloat16 resolution of 1 % but visibly."""
    ov = make(tiny_qwen, "bfloat16", "corrected", eager=True)
    assert not ov.released_arithmetic
    res, ref = ov([item])[0], oracles[id(item)]
    assert list(res.token_ids) == ref["tokens"]
    rel = np.abs(res.per_layer - ref["per_layer"]).max() / ref["per_layer"].max()
    assert 1e-5 < rel < 1e-2


def test_capture_keeps_the_eager_layers_output(tiny_qwen):
    """On an eager model the captured layers still return eager attention: generate is unchanged."""
    ov = make(tiny_qwen, "bfloat16", "released", eager=True)
    batch = ov.prepare([NONSQUARE])
    plain, _ = ov.generate_ids(batch, capture=False)
    captured, recorder = ov.generate_ids(batch, capture=True)
    assert torch.equal(plain, captured) and recorder.steps.tolist() == [STEPS]


def test_float32_fidelities_differ_only_in_the_fusion_rounding(tiny_qwen):
    """In float32 both fidelities capture the same per-layer maps; released fuses them in float64 as
    the released script does (fuse64), corrected rounds each layer's min-max to float32 first."""
    from rsvg_zeroov.overview.fuse import fuse, fuse64

    released, corrected = make(tiny_qwen, "float32", "released"), make(tiny_qwen, "float32", "corrected")
    assert not released.released_arithmetic
    a, b = released([SQUARE])[0], corrected([SQUARE])[0]
    assert a.per_layer.tobytes() == b.per_layer.tobytes()
    weights = released.config.weights
    assert a.fused.tobytes() == fuse64(a.per_layer, weights).astype(np.float32).tobytes()
    assert b.fused.tobytes() == fuse(b.per_layer, weights).tobytes()
    np.testing.assert_allclose(a.fused, b.fused, rtol=0, atol=float(np.spacing(np.float32(a.fused.max()))))


def test_fidelity_is_checked():
    with pytest.raises(ValueError, match="fidelity='exact'; choose from released, corrected"):
        OverviewConfig(fidelity="exact")


def test_model_dtype_storage_counts_each_sample_own_steps():
    """The per-step storage of the released arithmetic averages only a sample's own steps (a sample
    that fed back EOS stops counting), as the float32 running sum does."""
    from rsvg_zeroov.overview.capture import LastRowAttention

    g = torch.Generator().manual_seed(0)
    eos, length = 7, 6
    recorders = [LastRowAttention((3,), [eos], model_dtype=flag) for flag in (False, True)]
    feeds = [torch.ones(2, length, dtype=torch.long), torch.tensor([[eos], [1]]), torch.tensor([[0], [2]])]
    for ids in feeds:
        q, k = torch.randn(2, 4, ids.shape[1], 8, generator=g), torch.randn(2, 2, length + 2, 8, generator=g)
        for rec in recorders:
            rec.begin_step(ids)
            rec.add(3, q, k, None, None)
    (plain, stored) = (rec.mean_maps()[3] for rec in recorders)
    assert recorders[1].steps.tolist() == [1.0, 3.0]
    assert stored.dtype == torch.float32 and torch.allclose(plain, stored, atol=1e-6)
