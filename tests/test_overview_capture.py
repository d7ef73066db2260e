"""Stage 1 capture: equals the eager output_attentions oracle, changes nothing, batches, restores the model."""
import numpy as np
import pytest
import torch

from overview_helpers import NONSQUARE, SQUARE, eager_oracle
from rsvg_zeroov.overview.capture import (CAPTURE_IMPL, capture_last_row, decoder_attention_modules,
                                          last_row_head_mean)
from rsvg_zeroov.overview.config import LayerError, OverviewConfig
from rsvg_zeroov.overview.fuse import fuse, minmax
from rsvg_zeroov.overview.model import Overview

LAYERS, WEIGHTS, STEPS = (16, 17, 18, 19), (0.1, 0.1, 0.3, 0.5), 5
TOL = 1e-5


def make(tiny_qwen, **kw) -> Overview:
    base = dict(model=str(tiny_qwen), max_new_tokens=STEPS, min_new_tokens=STEPS, greedy=True, dtype="float32")
    return Overview(OverviewConfig(**{**base, **kw}), "cpu").load()


@pytest.fixture(scope="module")
def overview(tiny_qwen):
    return make(tiny_qwen)


@pytest.mark.parametrize("item", [SQUARE, NONSQUARE], ids=["square", "nonsquare"])
def test_capture_equals_eager_oracle(overview, tiny_qwen, item):
    res = overview([item])[0]
    ref = eager_oracle(tiny_qwen, item, LAYERS, WEIGHTS, STEPS, min_new_tokens=STEPS)
    assert ref["steps"] == STEPS and len(res.token_ids) == STEPS  # a multi-step generation
    assert list(res.token_ids) == ref["tokens"]
    assert res.grid == ref["grid"] and res.per_layer.shape == (4, *ref["grid"])
    assert res.per_layer.dtype == np.float32 and res.fused.dtype == np.float32
    assert np.abs(res.per_layer - ref["per_layer"]).max() <= TOL
    assert np.abs(res.fused - ref["fused"]).max() <= TOL
    assert res.per_layer.std() > 0  # not a degenerate map
    assert res.image_size == (item[0].shape[1], item[0].shape[0])
    assert res.dump().shape == (5, *res.grid)


def test_generated_ids_identical_with_and_without_capture(overview):
    batch = overview.prepare([NONSQUARE])
    plain, _ = overview.generate_ids(batch, capture=False)
    captured, recorder = overview.generate_ids(batch, capture=True)
    assert torch.equal(plain, captured)
    assert recorder.steps.tolist() == [STEPS]


def test_only_selected_layers_switched_and_model_restored(overview):
    model = overview.model
    modules = decoder_attention_modules(model)
    before = [m.config for m in modules]
    with capture_last_row(model, (16, 19)):
        impl = [m.config._attn_implementation for m in modules]
        assert impl == [CAPTURE_IMPL if i in (16, 19) else "sdpa" for i in range(len(modules))]
        assert model.config.vision_config._attn_implementation == "sdpa"
        assert all(blk.attn.config._attn_implementation == "sdpa" for blk in model.model.visual.blocks)
        assert model.config.text_config._attn_implementation == "sdpa"
    assert all(m.config is b for m, b in zip(modules, before))
    assert not model._forward_pre_hooks


def test_restored_even_on_error(overview):
    model = overview.model
    modules = decoder_attention_modules(model)
    before = [m.config for m in modules]
    with pytest.raises(KeyError):
        with capture_last_row(model, LAYERS):
            raise KeyError("boom")
    assert all(m.config is b for m, b in zip(modules, before)) and not model._forward_pre_hooks
    batch = overview.prepare([SQUARE])
    plain, rec = overview.generate_ids(batch, capture=False)  # still runs as plain sdpa
    assert rec is None and plain.shape[1] == batch.prompt_len + STEPS


def test_batch_of_two_equals_one_by_one(tiny_qwen, overview):
    batched = make(tiny_qwen, batch_size=2)
    items = [SQUARE, NONSQUARE]  # different grids -> different prompt lengths -> left padding
    assert batched.prepare(items).inputs["attention_mask"].min() == 0
    for b, s in zip(batched(items), [overview([it])[0] for it in items]):
        assert b.token_ids == s.token_ids and b.grid == s.grid
        assert np.abs(b.per_layer - s.per_layer).max() <= TOL
        assert np.abs(b.fused - s.fused).max() <= TOL


def test_batch_with_early_eos_counts_each_sample_own_steps(tiny_qwen, overview):
    """One sample stops early (EOS) while the other goes on: its maps average only its own steps."""
    items = [SQUARE, NONSQUARE]
    long = [overview([it])[0].token_ids for it in items]
    # an EOS id that the first sample emits at step k >= 1 (first time) and the second does not emit at k
    k, eos = next((k, t) for k, t in enumerate(long[0]) if k >= 1 and t not in long[0][:k]
                  and (t not in long[1] or long[1].index(t) > k))
    single, batched = make(tiny_qwen, min_new_tokens=None), make(tiny_qwen, min_new_tokens=None, batch_size=2)
    for ov in (single, batched):
        ov.model.generation_config.eos_token_id = [eos]
    one = [single([it])[0] for it in items]
    two = batched(items)
    assert len(one[0].token_ids) == k + 1 and len(one[1].token_ids) > k + 1
    ref = eager_oracle(tiny_qwen, items[0], LAYERS, WEIGHTS, STEPS, eos=[eos])
    assert ref["tokens"] == list(one[0].token_ids)
    assert np.abs(one[0].per_layer - ref["per_layer"]).max() <= TOL
    for b, s in zip(two, one):
        assert b.token_ids == s.token_ids
        assert np.abs(b.per_layer - s.per_layer).max() <= TOL


@pytest.mark.parametrize("batch_items", [[NONSQUARE], [SQUARE, NONSQUARE]], ids=["single", "padded"])
def test_grid_placement_agrees_with_mrope_position_ids(overview, batch_items):
    """Image token k sits at (k // gw, k % gw): the h/w index that get_rope_index gives it."""
    batch = overview.prepare(batch_items)
    inp = batch.inputs
    pos, _ = overview.model.model.get_rope_index(
        inp["input_ids"], mm_token_type_ids=inp["mm_token_type_ids"], image_grid_thw=inp["image_grid_thw"],
        attention_mask=inp["attention_mask"])
    for b, ((start, end), (gh, gw)) in enumerate(zip(batch.spans, batch.grids)):
        h = pos[1, b, start:end] - pos[1, b, start]
        w = pos[2, b, start:end] - pos[2, b, start]
        k = torch.arange(end - start)
        assert torch.equal(h, k // gw) and torch.equal(w, k % gw)
        assert int(h.max()) + 1 == gh and int(w.max()) + 1 == gw
        per = np.arange(gh * gw, dtype=np.float32).reshape(gh, gw)  # our reshape is row-major
        assert per[int(h[-1]), int(w[-1])] == gh * gw - 1


def test_layers_out_of_range_are_a_clear_error(tiny_qwen, overview):
    with pytest.raises(LayerError, match=r"\[25\] do not exist: the model has 20 decoder layers"):
        make(tiny_qwen, layers=(16, 25), weights=(0.5, 0.5))
    with pytest.raises(LayerError, match="do not exist"):
        with capture_last_row(overview.model, (20,)):
            pass
    with pytest.raises(ValueError, match="one weight per layer"):
        OverviewConfig(layers=(1, 2), weights=(1.0,))


def test_configurable_layers_and_weights(tiny_qwen):
    ov = make(tiny_qwen, layers=(0, 7), weights=(0.25, 0.75))
    res = ov([SQUARE])[0]
    ref = eager_oracle(tiny_qwen, SQUARE, (0, 7), (0.25, 0.75), STEPS, min_new_tokens=STEPS)
    assert res.per_layer.shape == (2, 3, 3)
    assert np.abs(res.per_layer - ref["per_layer"]).max() <= TOL
    assert np.abs(res.fused - ref["fused"]).max() <= TOL


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_last_row_head_mean_matches_explicit_attention(mask_kind):
    g = torch.Generator().manual_seed(0)
    b, h, hkv, q, s, d = 2, 6, 2, 4, 9, 8
    query, key = torch.randn(b, h, q, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
    allow = torch.ones(b, 1, q, s, dtype=torch.bool)
    allow[0, :, :, :3] = False  # left padding of sample 0
    mask = {"none": None, "bool": allow, "float": torch.where(allow, 0.0, torch.finfo(torch.float32).min)}[mask_kind]
    k_full = key.repeat_interleave(h // hkv, dim=1)
    scores = query @ k_full.transpose(-1, -2) * 0.3
    if mask is not None:
        scores = scores.masked_fill(~allow, float("-inf"))
    expected = torch.softmax(scores, -1)[:, :, -1].mean(1)
    got = last_row_head_mean(query, key, mask, 0.3)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(b))


def test_minmax_and_fuse_by_hand():
    a = np.array([[1.0, 3.0], [2.0, 5.0]])
    np.testing.assert_allclose(minmax(a), [[0, 0.5], [0.25, 1]])
    assert (minmax(np.full((2, 2), 7.0)) == 0).all()
    fused = fuse(np.stack([a, -a]), (0.5, 0.25))
    np.testing.assert_allclose(fused, 0.5 * minmax(a) + 0.25 * minmax(-a), rtol=1e-6)
    assert fused.dtype == np.float32


def test_prompt_is_the_released_text_and_max_pixels_controls_the_grid(overview):
    from rsvg_zeroov.models.qwen2_5_vl import prepare_batch

    assert OverviewConfig().prompt("the red car") == (
        "Locate it according to the following description.  the red car The output format should be like "
        "[x1, y1, x2, y2] without any other text.")
    batch = overview.prepare([SQUARE])
    assert batch.chat_texts[0].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert batch.chat_texts[0].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert batch.grids == ((3, 3),) and batch.resized_hw == ((84, 84),)
    small = prepare_batch(overview.processor, [SQUARE], OverviewConfig(max_pixels=4 * 28 * 28))
    assert small.resized_hw == ((56, 56),) and small.grids == ((2, 2),)
    assert small.spans[0][1] - small.spans[0][0] == 4
