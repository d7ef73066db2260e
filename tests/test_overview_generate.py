"""Stage 1 generation extras: the optional stop at the answer's closing bracket (maps as if EOS came
there, batch == one by one), and one progress tick per generated token (outputs unchanged)."""
import numpy as np
import pytest

from overview_helpers import NONSQUARE, SQUARE, eager_oracle
from rsvg_zeroov.overview import generate
from rsvg_zeroov.overview.config import OverviewConfig
from rsvg_zeroov.overview.model import Overview

LAYERS, WEIGHTS, STEPS, TOL = (16, 17, 18, 19), (0.1, 0.1, 0.3, 0.5), 6, 1e-5


def make(tiny_qwen, **kw) -> Overview:
    base = dict(model=str(tiny_qwen), max_new_tokens=STEPS, greedy=True, dtype="float32")
    return Overview(OverviewConfig(**{**base, **kw}), "cpu").load()


@pytest.fixture(scope="module")
def answers(tiny_qwen):
    ov = make(tiny_qwen, min_new_tokens=STEPS)
    return [list(r.token_ids) for r in ov([SQUARE, NONSQUARE])]


def test_stop_at_bracket_is_off_by_default_and_a_flag():
    import llmattn

    assert OverviewConfig().stop_at_bracket is False
    assert llmattn.parse_args(["--image", "a.png", "--text", "q", "--stop-at-bracket"]).stop_at_bracket is True


def test_real_bracket_tokens_close_the_answer(tiny_qwen):
    ov = make(tiny_qwen)
    closes = generate.TokenClosesAnswer(ov.processor.tokenizer)
    ids = ov.processor.tokenizer.encode("[12, 34, 56, 78] done")
    first = next(i for i, t in enumerate(ids) if closes(t))
    assert "]" in ov.processor.tokenizer.decode(ids[: first + 1]) and "]" not in ov.processor.tokenizer.decode(ids[:first])
    assert generate.cut_answer(ids, set(), closes) == ids[: first + 1]


def test_stop_at_bracket_maps_as_if_eos_came_there(tiny_qwen, answers, monkeypatch):
    """The tiny model never writes "]": a token of its own answer plays the closing bracket."""
    long = answers[0]
    k, closing = next((k, t) for k, t in enumerate(long) if k >= 1 and t not in long[:k]
                      and (t not in answers[1] or answers[1].index(t) > k))
    monkeypatch.setattr(generate.TokenClosesAnswer, "__call__", lambda self, t: t == closing)
    one = [make(tiny_qwen, min_new_tokens=STEPS, stop_at_bracket=True)([it])[0] for it in (SQUARE, NONSQUARE)]
    assert list(one[0].token_ids) == long[: k + 1] and len(one[1].token_ids) > k + 1
    ref = eager_oracle(tiny_qwen, SQUARE, LAYERS, WEIGHTS, STEPS, eos=[closing])
    assert ref["tokens"] == long[: k + 1]
    assert np.abs(one[0].per_layer - ref["per_layer"]).max() <= TOL
    assert np.abs(one[0].fused - ref["fused"]).max() <= TOL
    two = make(tiny_qwen, min_new_tokens=STEPS, stop_at_bracket=True, batch_size=2)([SQUARE, NONSQUARE])
    for b, s in zip(two, one):
        assert b.token_ids == s.token_ids
        assert np.abs(b.per_layer - s.per_layer).max() <= TOL


def test_one_progress_tick_per_generated_token(tiny_qwen, monkeypatch):
    import rsvg_zeroov.progress as progress

    bars = []

    class Bar:
        def __init__(self, total, desc, leave=False):
            self.total, self.desc, self.n = total, desc, 0
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    plain = make(tiny_qwen, min_new_tokens=STEPS)([NONSQUARE])[0]
    monkeypatch.setattr(progress, "bar", Bar)
    ticked = make(tiny_qwen, min_new_tokens=STEPS)([NONSQUARE])[0]
    assert [(b.total, b.n) for b in bars] == [(STEPS, STEPS)] and "stage 1" in bars[0].desc
    assert ticked.dump().tobytes() == plain.dump().tobytes() and ticked.token_ids == plain.token_ids
