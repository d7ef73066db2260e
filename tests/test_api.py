"""The public Python API: ``from rsvg_zeroov import Grounder, PipelineConfig, load_samples, evaluate``,
called directly (not through a subprocess) on the tiny offline models."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["the red square", "the dark field"]


def _scene(h=72, w=88):
    rng = np.random.default_rng(3)
    a = (rng.random((h, w, 3)) * 90).astype(np.uint8)
    a[14:40, 20:52] = [230, 40, 30]
    return a


def _quick():
    from rsvg_zeroov import PipelineConfig

    return PipelineConfig.quick_tiny(device="cpu").replace(focus={"num_steps": 2})


def test_import_is_light_and_exports_the_api():
    code = ("import sys, rsvg_zeroov; assert 'torch' not in sys.modules, 'import rsvg_zeroov loaded torch'\n"
            "from rsvg_zeroov import Grounder, PipelineConfig, load_samples, evaluate, GroundingResult\n"
            "assert 'torch' not in sys.modules, 'the API names loaded torch'\n"
            "assert {'Grounder', 'PipelineConfig', 'load_samples', 'evaluate'} <= set(rsvg_zeroov.__all__)\n"
            "import rsvg_zeroov as r; assert r.load_samples is __import__('rsvg_zeroov.datasets').datasets.load_samples\n"
            "try:\n    rsvg_zeroov.nope\nexcept AttributeError as e:\n    assert 'nope' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_quick_tiny_settings_and_what_the_user_sets_wins(caplog):
    import logging

    from rsvg_zeroov import PipelineConfig
    from rsvg_zeroov.focus.config import FocusConfig
    from rsvg_zeroov.overview.config import OverviewConfig

    with caplog.at_level(logging.INFO, logger="rsvg_zeroov.pipeline"):
        quick = PipelineConfig.quick_tiny()
    assert (quick.overview.model, quick.focus.model) == ("tiny", "tiny")
    assert quick.focus.inversion == "ddim" and quick.overview.max_new_tokens == 16
    if hasattr(quick.overview, "stop_at_bracket"):
        assert quick.overview.stop_at_bracket is True
    notes = [r.getMessage() for r in caplog.records if "quick settings" in r.getMessage()]
    assert len(notes) == 1 and "inversion=ddim" in notes[0], notes
    mine = PipelineConfig.quick_tiny(focus=FocusConfig(inversion="noise"), overview=OverviewConfig(max_new_tokens=5))
    assert mine.focus.inversion == "noise" and mine.overview.max_new_tokens == 5
    paper = PipelineConfig()  # the real models keep the paper's settings
    assert paper.focus.inversion == "nulltext" and paper.overview.max_new_tokens == 1024


@pytest.fixture(scope="module")
def grounded(tiny_dir, tmp_path_factory):
    """The same image grounded by the API from its path and from an array, one Grounder."""
    from rsvg_zeroov import Grounder

    tmp = tmp_path_factory.mktemp("api")
    Image.fromarray(_scene()).save(tmp / "scene.png")
    grounder = Grounder(_quick()).load()
    by_path = grounder.ground_many(tmp / "scene.png", TEXTS)
    by_array = [grounder.ground(_scene(), t) for t in TEXTS]
    return tmp, grounder, by_path, by_array


def test_ground_from_a_path_and_from_an_array(grounded):
    _, _, by_path, by_array = grounded
    for p, a in zip(by_path, by_array):
        assert p.mask.shape == (72, 88) and p.mask.dtype == bool
        assert p.a_c.dtype == np.float32 and p.a_cs.shape == (32, 32)
        if p.box is not None:
            ys, xs = np.nonzero(p.mask)
            assert p.box == [xs.min(), ys.min(), xs.max(), ys.max()]
        # an RGB PNG reads the same in every stage's reader: path and array give the same results
        np.testing.assert_array_equal(p.a_c, a.a_c)
        np.testing.assert_array_equal(p.mask, a.mask)
        assert p.box == a.box and p.answer == a.answer


def _stage(script, *args, env):
    proc = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, f"{script}: {proc.stderr[-3000:]}"


def test_grounder_equals_a_data_set_run_with_the_same_settings(grounded, tiny_dir):
    """The three stage scripts on a one-image data set give the API's maps, masks and boxes."""
    from rsvg_zeroov import evaluate, load_samples
    from rsvg_zeroov.rundir import RunDir

    tmp, grounder, by_path, _ = grounded
    rows = [{"id": f"s{i}", "image": "scene.png", "expression": t, "box": [20, 14, 51, 39]} for i, t in enumerate(TEXTS)]
    (tmp / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = ["--dataset", "jsonl", "--root", str(tmp / "test.jsonl"), "--split", "test", "--out", str(tmp / "run")]
    env = dict(os.environ, RSVG_ZEROOV_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", RSVG_ZEROOV_PROGRESS="0")
    ov, fc = grounder.config.overview, grounder.config.focus
    stage1 = ["--model", "tiny", "--max-new-tokens", str(ov.max_new_tokens), "--device", "cpu"]
    if getattr(ov, "stop_at_bracket", False):
        stage1.append("--stop-at-bracket")
    _stage("llmattn.py", *data, *stage1, env=env)
    _stage("generate_diffusion.py", *data, "--model", "tiny", "--inversion", fc.inversion, "--steps",
           str(fc.num_steps), "--device", "cpu", env=env)
    _stage("rs_evolve.py", *data, "--sam-type", "tiny", "--device", "cpu", env=env)
    run = RunDir(tmp / "run")
    preds = {json.loads(line)["sample_id"]: json.loads(line) for line in run.predictions.read_text().splitlines()}
    for i, result in enumerate(by_path):
        sid = f"s{i}"
        np.testing.assert_array_equal(np.load(run.overview_npy(sid))[0], result.a_c)
        mask = np.asarray(Image.open(run.mask_png(sid))) > 0
        np.testing.assert_array_equal(mask, result.mask)
        assert preds[sid]["box"] == result.box
        assert preds[sid]["sam_score"] == pytest.approx(result.sam_score) if result.sam_score is not None \
            else preds[sid]["sam_score"] is None
    scores = evaluate(load_samples("jsonl", tmp / "test.jsonl", "test"), run)
    assert len(scores.sample_ids) == len(TEXTS) and not scores.missing_ids


def test_bad_inputs_are_refused_before_any_model_runs(tmp_path):
    from rsvg_zeroov import Grounder
    from rsvg_zeroov.images import ImageError

    grounder = Grounder(_quick())  # not loaded: the checks come first
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(ImageError, match="28 pixels"):
        grounder.ground(tmp_path / "one.png", "x")
    with pytest.raises(RuntimeError, match="load"):
        grounder.ground(_scene(), "x")


def test_missing_models_named_in_one_message(tmp_path, monkeypatch):
    from rsvg_zeroov import Grounder, PipelineConfig
    from rsvg_zeroov.models.base import ModelNotFound

    monkeypatch.chdir(tmp_path)  # no sam_checkpoint/ here
    config = PipelineConfig().replace(overview={"model": "someone/no-such-vlm"}, focus={"model": str(tmp_path / "nosd")})
    with pytest.raises(ModelNotFound) as exc:
        Grounder(config).load()
    msg = str(exc.value)
    assert "3 models" in msg and "hf download someone/no-such-vlm" in msg and "nosd" in msg
    assert "sam_checkpoint" in msg and "PipelineConfig.overview.model" in msg


def test_refiner_selected_by_key(grounded):
    """A second refiner (box-fill, registered for tests and baselines) chosen by key: no stage code."""
    from rsvg_zeroov import Grounder, PipelineConfig
    from rsvg_zeroov.evolve.config import EvolveConfig

    tmp = grounded[0]
    config = PipelineConfig.quick_tiny(evolve=EvolveConfig(refiner="box-fill")).replace(focus={"num_steps": 2})
    assert config.evolve.refiner == "box-fill"
    result = Grounder(config).load().ground(tmp / "scene.png", TEXTS[0])
    assert result.sam_score is None
    before = result.mask_before_sam
    if before.any():
        ys, xs = np.nonzero(before)
        filled = np.zeros_like(before)
        filled[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        np.testing.assert_array_equal(result.mask, filled)
    else:
        assert not result.mask.any()
