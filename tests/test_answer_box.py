"""The VLM answer -> original-pixel box, per coordinate convention, on hand-written answers."""
import pytest

from rsvg_zeroov.overview.answer import box_from_sidecar, convention_of, parse_box, to_original


@pytest.mark.parametrize("answer, box", [
    ("[10, 20, 50, 60]", (10, 20, 50, 60)),
    ("The box is [10.5,20 , 50, 60.25] ok", (10.5, 20, 50, 60.25)),
    ("(1, 2, 3, 4) then [5, 6, 7, 8]", (1, 2, 3, 4)),
    ('```json\n[{"bbox_2d": [12, 34, 56, 78]}]```', (12, 34, 56, 78)),
    ("[10, 20, 50]", None), ("no box here", None), ("", None),
])
def test_parse_box(answer, box):
    assert parse_box(answer) == box


def test_resized_pixels_map_to_the_original_image():
    # (H, W) = (600, 800) seen as (588, 812): x scales by 800/812, y by 600/588
    assert to_original((10, 20, 50, 60), "resized-pixels", (600, 800), (588, 812)) == pytest.approx(
        [10 * 800 / 812, 20 * 600 / 588, 50 * 800 / 812, 60 * 600 / 588])


def test_grid_and_fraction_conventions_and_clipping():
    assert to_original((100, 250, 500, 1000), "grid-1000", (400, 800)) == [80.0, 100.0, 400.0, 400.0]
    assert to_original((0.1, 0.2, 0.5, 0.6), "fraction", (100, 200)) == pytest.approx([20, 20, 100, 60])
    assert to_original((60, 70, -5, 900), "resized-pixels", (100, 100), (100, 100)) == [0.0, 70.0, 60.0, 100.0]
    assert to_original((5, 5, 5, 9), "fraction", (100, 100)) is None  # zero width once clipped
    with pytest.raises(ValueError, match="unknown box convention"):
        to_original((0, 0, 1, 1), "percent", (10, 10))


def test_sidecar_of_an_earlier_version_uses_qwen25_pixels():
    meta = {"answer": "[10, 20, 50, 60]", "image_size": [256, 192], "resized_size": [252, 196],
            "model": "/nowhere/qwen", "model_key": "qwen2.5-vl-7b"}
    assert convention_of(meta) == "resized-pixels"
    assert box_from_sidecar(meta) == pytest.approx([10 * 256 / 252, 20 * 192 / 196, 50 * 256 / 252, 60 * 192 / 196])
    assert box_from_sidecar({**meta, "answer": "I cannot tell"}) is None
    assert box_from_sidecar({**meta, "box_convention": "fraction", "answer": "[0, 0, 0.5, 0.5]"}) == [0, 0, 128, 96]


def test_geochat_answers_are_read_on_their_0_100_grid():
    """GeoChat's own form {<x1><y1><x2><y2>|<angle>} says its convention: a 0-100 grid, whatever the
    model's (a GeoChat conversion loads as a LLaVA-family model, whose answers are 0-1 fractions)."""
    from rsvg_zeroov.overview.answer import parse_answer
    from rsvg_zeroov.overview.model import answer_extra

    assert parse_answer("{<10><20><50><60>|<0>}", "fraction") == ((10, 20, 50, 60), "grid-100")
    assert parse_answer("a ship at { <12.5> <20><50> <60>}", "fraction") == ((12.5, 20, 50, 60), "grid-100")
    assert parse_answer("[0.1, 0.2, 0.5, 0.6] or {<1><2><3><4>}", "fraction") == ((0.1, 0.2, 0.5, 0.6), "fraction")
    assert parse_answer("{<10><20><50>}", "fraction") == (None, "fraction")
    assert to_original((10, 20, 50, 60), "grid-100", (400, 200)) == [20.0, 80.0, 100.0, 240.0]
    meta = {"answer": "{<10><20><50><60>|<30>}", "image_size": [200, 400], "resized_size": [336, 336],
            "box_convention": "fraction"}
    assert box_from_sidecar(meta) == [20.0, 80.0, 100.0, 240.0]
    extra = answer_extra(meta["answer"], "fraction", (400, 200), (336, 336))
    assert extra == {"box_convention": "fraction", "answer_box": [20.0, 80.0, 100.0, 240.0]}
