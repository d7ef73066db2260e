"""Stage 2 inputs and progress: images read from their path as the released stage reads them (RGB,
grey, RGBA, palette, 16-bit), the same maps from a path or the array, and progress of the steps."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from focus_helpers import make_image, tiny_sd
from PIL import Image

from rsvg_zeroov import images
from rsvg_zeroov.focus.config import FocusConfig

NOISE = FocusConfig(inversion="noise")  # one UNet forward: cheap, and the image still decides the maps


def _write(folder, mode: str):
    rgb = make_image(4, 40, 52)
    path = folder / f"{mode.replace(';', '_')}.png"
    if mode == "RGBA":
        Image.fromarray(np.dstack([rgb, np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None].repeat(40, 0)]),
                        "RGBA").save(path)
    elif mode == "P":
        Image.fromarray(rgb).quantize(16).save(path)
    elif mode == "I;16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257 + 3).save(path)
    else:
        Image.fromarray(rgb).convert(mode).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_a_path_is_read_as_the_released_stage_reads_it(mode, tmp_path, tiny_dir, monkeypatch):
    from rsvg_zeroov.focus.model import Focus

    path = _write(tmp_path, mode)
    calls = []
    real = images.read_for_diffusion
    monkeypatch.setattr(images, "read_for_diffusion", lambda p: calls.append(p) or real(p))
    focus = Focus(NOISE).attach(tiny_sd(tiny_dir))
    from_path = focus([(path, "the road")])[0]
    assert calls == [path]
    from_array = focus([(real(path), "the road")])[0]
    for name, arr in from_array.files().items():
        np.testing.assert_array_equal(from_path.files()[name], arr, err_msg=name)
    assert from_path.meta["input_size"] == [40, 52]


def test_dataset_stage_reads_by_path(tmp_path, tiny_dir, monkeypatch):
    """The data-set stage hands the sample's path to the same reader."""
    from types import SimpleNamespace

    from rsvg_zeroov.focus.model import Focus
    from rsvg_zeroov.focus.stage import is_done, run_focus
    from rsvg_zeroov.rundir import RunDir

    path = _write(tmp_path, "RGBA")
    seen = []
    real = images.read_for_diffusion
    monkeypatch.setattr(images, "read_for_diffusion", lambda p: seen.append(p) or real(p))
    sample = SimpleNamespace(sample_id="s", image_path=str(path), expression="the road", extra=(),
                             width=52, height=40)
    run = RunDir(tmp_path / "run")
    report = run_focus(run, [sample], Focus(NOISE.override(model="tiny")))
    assert report.failed == 0 and seen == [str(path)] and is_done(run, "s", NOISE)


def test_progress_of_the_steps_is_logged(tiny_dir, caplog, monkeypatch):
    from rsvg_zeroov.focus.model import Focus

    monkeypatch.delenv("RSVG_ZEROOV_PROGRESS", raising=False)  # not a terminal: log records
    focus = Focus(FocusConfig(inversion="ddim", num_steps=4)).attach(tiny_sd(tiny_dir))
    assert focus.progress_steps == 8
    with caplog.at_level(logging.INFO, logger="rsvg_zeroov.progress"):
        focus([(make_image(5, 32, 32), "the roof")])
    lines = [r.getMessage() for r in caplog.records if r.name == "rsvg_zeroov.progress"]
    assert lines[0] == "focus: ddim inversion + re-denoising: started (8 steps)"
    assert lines[-1] == "focus: ddim inversion + re-denoising: done (8/8)" and len(lines) >= 3
    assert Focus(FocusConfig()).progress_steps == 60 and Focus(NOISE).progress_steps == 1
