"""Stage 1 reads each image file as the released script does: the path goes to qwen_vl_utils
(RGBA composited onto white, every other mode convert("RGB"): LA loses its alpha, 16-bit values
clip at 255). RGBA, LA, palette, grey and 16-bit PNGs equal the eager oracle fed by path (fp32, <= 1e-5)."""
import numpy as np
import pytest
import torch
from PIL import Image

from overview_helpers import NONSQUARE, eager_oracle
from rsvg_zeroov.images import ImageError
from rsvg_zeroov.overview.config import OverviewConfig
from rsvg_zeroov.overview.model import Overview

LAYERS, WEIGHTS, STEPS, TOL = (16, 17, 18, 19), (0.1, 0.1, 0.3, 0.5), 3, 1e-5
EXPRESSION = "a ship near the harbor"


def png(tmp_path, mode: str):
    """A 56 x 84 PNG of ``mode`` whose alpha (where there is one) is partly 0, partly 128."""
    rgb = NONSQUARE[0]
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :28], alpha[:28, 28:56] = 0, 128
    image = {"RGBA": lambda: Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
             "LA": lambda: Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"),
             "P": lambda: Image.fromarray(rgb).quantize(16),
             "L": lambda: Image.fromarray(rgb[..., 1]),
             "I;16": lambda: Image.fromarray(rgb[..., 2].astype(np.uint16) * 3)}[mode]()
    path = tmp_path / f"{mode}.png"
    image.save(path)
    assert Image.open(path).mode == mode
    return path


@pytest.fixture(scope="module")
def overview(tiny_qwen):
    return Overview(OverviewConfig(model=str(tiny_qwen), max_new_tokens=STEPS, min_new_tokens=STEPS, greedy=True,
                                   dtype="float32"), "cpu").load()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16"])
def test_image_modes_equal_the_oracle_fed_by_path(overview, tiny_qwen, tmp_path, mode):
    """I;16: as released, PIL's convert("RGB") clips values above 255 (no rescaling)."""
    path = png(tmp_path, mode)
    res = overview([(path, EXPRESSION)])[0]
    ref = eager_oracle(tiny_qwen, (path, EXPRESSION), LAYERS, WEIGHTS, STEPS, min_new_tokens=STEPS)
    assert list(res.token_ids) == ref["tokens"] and res.grid == ref["grid"] == (2, 3)
    assert res.image_size == (84, 56)
    assert np.abs(res.per_layer - ref["per_layer"]).max() <= TOL
    assert np.abs(res.fused - ref["fused"]).max() <= TOL


def test_rgba_is_composited_onto_white_not_alpha_dropped(overview, tmp_path):
    path = png(tmp_path, "RGBA")
    by_path = overview.prepare([(path, EXPRESSION)]).inputs["pixel_values"]
    dropped = np.asarray(Image.open(path).convert("RGB"))  # the old reading: alpha thrown away
    white = np.asarray(Image.alpha_composite(Image.new("RGBA", (84, 56), "white"), Image.open(path)).convert("RGB"))
    assert torch.equal(by_path, overview.prepare([(white, EXPRESSION)]).inputs["pixel_values"])
    assert not torch.equal(by_path, overview.prepare([(dropped, EXPRESSION)]).inputs["pixel_values"])


def test_a_path_an_array_and_a_pil_image_give_the_same_inputs(overview, tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(NONSQUARE[0]).save(path)
    batches = [overview.prepare([(image, EXPRESSION)]) for image in (path, str(path), NONSQUARE[0], Image.open(path))]
    for b in batches[1:]:
        assert torch.equal(b.inputs["pixel_values"], batches[0].inputs["pixel_values"])
        assert b.image_hw == batches[0].image_hw == ((56, 84),)


def test_missing_image_is_an_image_error(overview, tmp_path):
    with pytest.raises(ImageError, match="missing"):
        overview.prepare([(tmp_path / "nope.png", EXPRESSION)])
    with pytest.raises(ValueError, match="a path, a PIL image or uint8 RGB"):
        overview.prepare([(np.zeros((4, 4), np.float32), EXPRESSION)])


def test_la_and_16_bit_are_converted_as_qwen_vl_utils_does(overview, tmp_path):
    """qwen_vl_utils composites only RGBA: LA goes through convert("RGB") (alpha dropped), and a
    16-bit grey image through PIL's convert("RGB") (values clipped at 255)."""
    for mode in ("LA", "I;16"):
        path = png(tmp_path, mode)
        by_path = overview.prepare([(path, EXPRESSION)]).inputs["pixel_values"]
        converted = np.asarray(Image.open(path).convert("RGB"))
        assert torch.equal(by_path, overview.prepare([(converted, EXPRESSION)]).inputs["pixel_values"])
