"""The refiner backends and prompt modes: SAM (segment-anything), SAM-HQ, SAM 2.1 and SAM 3's
tracker (transformers) on their tiny random-weight stand-ins. Each refiner equals a direct call of
its library with the same prompt (mask and score) in every --refine-prompt mode and with
--refine-iters; one image embedding per image; selection by key from rs_evolve.py, ground.py and
the API; the listing; the missing-model messages; the default's fingerprint is unchanged."""
import json

import numpy as np
import pytest
import torch

from evolve_helpers import BLOB, CRAFTED, blob_a_c, cli, crafted, exit_status, read_evolve_config  # noqa: F401
from rsvg_zeroov.evolve.config import REFINE_PROMPTS, EvolveConfig

HF = ("tiny-sam-hq", "tiny-sam2.1", "tiny-sam3")
SIZE = (90, 140)  # (H, W): not square, so SAM's letterbox and SAM 2's stretch differ


@pytest.fixture(scope="module")
def scene():
    """(uint8 RGB image, EvolveResult) of one sample: a seeded blob evolved without S."""
    from rsvg_zeroov.evolve.evolve import evolve

    rgb = np.random.default_rng(5).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    result = evolve(blob_a_c(*BLOB, seed=3), None, SIZE, EvolveConfig(use_dm=False))
    assert result.mask.any() and 1 < result.seeds.sum() < 40
    return rgb, result


# ------------------------------------------------------------------------------ the library oracles
def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def _seed_centres(seeds, size):
    """Cell (r, c) of the 32 grid -> its centre in pixel-index coordinates: (c + 0.5) * W / 32 - 0.5."""
    rows, cols = np.nonzero(seeds)
    return np.stack([(cols + 0.5) * size[1] / 32 - 0.5, (rows + 0.5) * size[0] / 32 - 0.5], 1).astype(np.float32)


def _pieces(mode, mask, result, refiner):
    """(box, points, low-res mask logits) of ``mode`` as the library calls take them."""
    from rsvg_zeroov.models.refiners import Prompt, mask_input_logits

    box = _tight_box(mask) if "box" in mode else None
    points = _seed_centres(result.seeds, SIZE) if "points" in mode else None
    logits = None
    if mode == "box+mask":
        prior = Prompt(mask_prior=result.a_e, prior_threshold=0.4)
        if hasattr(refiner, "predictor"):
            frame = (refiner.predictor.model.image_encoder.img_size, refiner.predictor.model.prompt_encoder.mask_input_size, True)
        else:
            frame = (refiner.input_size, refiner.mask_input_size, refiner.letterbox)
        logits = mask_input_logits(prior, SIZE, *frame)
    return box, points, logits


def _segment_anything(predictor, box, points, logits):
    masks, scores, _ = predictor.predict(box=box, point_coords=points, mask_input=logits, multimask_output=True,
                                         point_labels=None if points is None else np.ones(len(points), np.int64))
    best = int(np.argmax(scores))
    return masks[best], float(scores[best])


def _transformers(refiner, rgb, box, points, logits):
    """model(pixel_values=...) with the processor's own prompt placement and post-processing."""
    proc, model = refiner.processor, refiner.model
    kw = {}
    if box is not None:
        kw["input_boxes"] = [[box.tolist()]]
    if points is not None:
        kw["input_points"], kw["input_labels"] = [[points.tolist()]], [[[1] * len(points)]]
    inputs = proc(images=rgb, return_tensors="pt", **kw)
    sizes = [inputs.pop(k) for k in ("original_sizes", "reshaped_input_sizes") if k in inputs]
    if logits is not None:
        inputs["input_masks"] = torch.from_numpy(logits)[None]
    with torch.no_grad():
        out = model(**inputs, multimask_output=True)
    masks = proc.post_process_masks(out.pred_masks, *sizes)[0][0]
    best = int(torch.argmax(out.iou_scores[0, 0]))
    return masks[best].numpy(), float(out.iou_scores[0, 0, best])


@pytest.mark.parametrize("key", ["tiny", *HF])
def test_each_refiner_equals_its_library_in_every_prompt_mode(tiny_dir, scene, key):
    from segment_anything import SamPredictor

    from rsvg_zeroov.evolve.refine import refine_result
    from rsvg_zeroov.models.refiners import load_refiner

    rgb, result = scene
    refiner = load_refiner(key)
    refiner.set_image(rgb)
    oracle = None
    if key == "tiny":
        oracle = SamPredictor(refiner.predictor.model)  # its own embedding of the same image
        oracle.set_image(rgb)
    scores = {}
    for mode, iters in [(m, 1) for m in REFINE_PROMPTS] + [("box+mask", 2)]:
        cfg = EvolveConfig(refiner=key, refine_prompt=mode, refine_iters=iters)
        got, score = refine_result(refiner, result, cfg, SIZE)
        scores[mode, iters] = score
        want, want_score = result.mask, None
        for _ in range(iters):  # each further pass: the same pieces, the box of the last mask
            pieces = _pieces(mode, want, result, refiner)
            want, want_score = (_segment_anything(oracle, *pieces) if oracle is not None
                                else _transformers(refiner, rgb, *pieces))
        assert got.dtype == bool and got.shape == SIZE
        assert np.array_equal(got, want), (key, mode, iters)
        assert score == pytest.approx(want_score, rel=1e-5, abs=1e-7), (key, mode, iters)
    assert len({scores[m, 1] for m in REFINE_PROMPTS}) == 4, scores  # every piece reaches the model
    assert refiner.n_images == 1


def test_the_mask_prior_is_placed_in_each_models_low_res_frame():
    from rsvg_zeroov.models.refiners import MASK_LOGIT_GAIN, Prompt, mask_input_logits

    ones = Prompt(mask_prior=np.ones((32, 32), np.float32), prior_threshold=0.4)
    box = mask_input_logits(ones, (100, 200), 1024, (256, 256), letterbox=True)
    assert box.shape == (1, 256, 256) and box.dtype == np.float32
    inside, pad = MASK_LOGIT_GAIN * 0.6, -MASK_LOGIT_GAIN * 0.4
    np.testing.assert_allclose(box[0, :128], inside, rtol=1e-6)  # 100 x 200 -> 512 x 1024 -> 128 rows
    np.testing.assert_allclose(box[0, 128:], pad, rtol=1e-6)
    half = np.zeros((32, 32), np.float32)
    half[:, :16] = 1.0
    stretched = mask_input_logits(Prompt(mask_prior=half, prior_threshold=0.4), (100, 200), 1008, (288, 288), False)
    assert stretched.shape == (1, 288, 288)
    assert (stretched[0, :, :140] > 0).all() and (stretched[0, :, 148:] < 0).all()  # the step at column 144


def test_seed_points_are_the_cell_centres():
    from rsvg_zeroov.evolve.refine import seed_points

    seeds = np.zeros((32, 32), bool)
    seeds[0, 0] = seeds[31, 31] = seeds[2, 5] = True
    np.testing.assert_allclose(seed_points(seeds, (64, 128)), [[1.5, 0.5], [21.5, 4.5], [125.5, 62.5]])


# ------------------------------------------------------------------------------ stage 3
@pytest.mark.parametrize("key", HF)
def test_stage3_embeds_each_image_once_and_records_the_prompt(tiny_dir, crafted, monkeypatch, key):
    import transformers

    from rsvg_zeroov.models.refiners import REFINERS
    from rsvg_zeroov.models.sam_hf import FAMILIES

    jsonl, run, _ = crafted
    cls = getattr(transformers, FAMILIES[REFINERS.entry(key).options["family"]].model)
    calls = []
    real = cls.get_image_embeddings
    monkeypatch.setattr(cls, "get_image_embeddings", lambda self, px, **kw: (calls.append(px.shape), real(self, px, **kw))[1])
    assert cli(jsonl, run, "--refiner", key, "--refine-prompt", "box+mask", "--device", "cpu") == 0
    assert len(calls) == len({s["image"] for s in CRAFTED if not s.get("empty")}) == 2
    cfg = read_evolve_config(run)
    assert (cfg["refiner"], cfg["refine_prompt"], cfg["refine_iters"]) == (key, "box+mask", 1)
    assert cfg["resolved"]["refiner"]["key"] == key
    assert cfg["resolved"]["fingerprint"] != EvolveConfig(refiner=key).fingerprint()
    preds = {json.loads(line)["sample_id"]: json.loads(line) for line in run.predictions.read_text().splitlines()}
    assert preds["z1"]["sam_score"] is None and all(isinstance(preds[s]["sam_score"], float) for s in ("a1", "a2", "b1"))


def test_box_fill_refuses_point_and_mask_prompts_before_loading(crafted, capsys):
    jsonl, run, _ = crafted
    assert exit_status(cli, jsonl, run, "--refiner", "box-fill", "--refine-prompt", "box+points") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "box-fill" in err[0] and "--refine-prompt box" in err[0], err


# ------------------------------------------------------------------------------ settings and keys
def test_default_fingerprint_and_spelling_are_those_of_earlier_runs():
    assert EvolveConfig().fingerprint() == "fbffe7c63cb6"  # every run directory written before these modes
    assert EvolveConfig(refiner=None).fingerprint() == "11f6535801da"
    assert EvolveConfig(refiner="sam-vit-h") == EvolveConfig() and EvolveConfig().refiner == "vit_h"
    assert EvolveConfig(refine_prompt="box", refine_iters=1).fingerprint() == EvolveConfig().fingerprint()
    prints = {EvolveConfig(refine_prompt=m).fingerprint() for m in REFINE_PROMPTS} | {EvolveConfig(refine_iters=3).fingerprint()}
    assert len(prints) == 5
    old = {"k": 7, "tau": 0.3, "alpha": 0.4, "resolutions": [32, 64], "refiner": "vit_h", "refiner_checkpoint": None}
    assert EvolveConfig.from_recorded(old) == EvolveConfig()
    assert EvolveConfig.from_recorded({**old, "refiner": "sam-vit-h", "refine_prompt": "box"}) == EvolveConfig()
    with pytest.raises(ValueError, match="needs a prompt with a box"):
        EvolveConfig(refine_prompt="points", refine_iters=2)
    with pytest.raises(ValueError, match="refine_prompt 'mask'"):
        EvolveConfig(refine_prompt="mask")


def test_rs_evolve_selects_refiners_by_key_alias_and_hub_id():
    import rs_evolve

    base = ["--dataset", "jsonl", "--root", "r", "--out", "o"]
    for flags, key in ((["--refiner", "sam-vit-h"], "vit_h"), (["--refiner", "sam2.1-hiera-b+"], "sam2.1-hiera-b+"),
                       (["--refiner", "facebook/sam2.1-hiera-large"], "sam2.1-hiera-l"),
                       (["--sam-type", "sam3"], "sam3"), (["--refiner", "syscv-community/sam-hq-vit-base"], "sam-hq-vit-b")):
        assert rs_evolve.build_config(rs_evolve.parse_args(base + flags)).refiner == key, flags
    cfg = rs_evolve.build_config(rs_evolve.parse_args(base + ["--refine-prompt", "box+points", "--refine-iters", "3"]))
    assert (cfg.refine_prompt, cfg.refine_iters) == ("box+points", 3)
    with pytest.raises(SystemExit):
        rs_evolve.parse_args(base + ["--refine-prompt", "mask"])


def test_ground_py_and_the_api_select_a_refiner_and_its_prompt(tiny_dir, tmp_path, scene):
    from PIL import Image

    import ground
    from rsvg_zeroov import Grounder, PipelineConfig

    Image.fromarray(scene[0]).save(tmp_path / "scene.png")
    argv = ["--image", str(tmp_path / "scene.png"), "--text", "the field", "--out", str(tmp_path / "res"), "--tiny",
            "--steps", "2", "--max-new-tokens", "4", "--refiner", "tiny-sam3", "--refine-prompt", "box+mask",
            "--refine-iters", "2"]
    assert ground.main(argv) == 0
    rec = json.loads((tmp_path / "res" / "box.json").read_text())
    ev = rec["config"]["evolve"]
    assert (ev["refiner"], ev["refine_prompt"], ev["refine_iters"]) == ("tiny-sam3", "box+mask", 2)
    config = PipelineConfig(evolve=EvolveConfig(refiner="facebook/sam2.1-hiera-tiny", refine_prompt="points"))
    assert config.evolve.refiner == "sam2.1-hiera-t"
    wanted = Grounder(PipelineConfig.quick_tiny(evolve=EvolveConfig(refiner="tiny-sam-hq"))).check_models()
    assert [r.key for r in wanted if r.role == "refiner"] == ["tiny-sam-hq"]


def test_models_listing_shows_every_refiner_and_the_aliases(tiny_dir, capsys):
    from rsvg_zeroov.models.__main__ import main

    keys = ["vit_h", "vit_l", "vit_b", "sam-hq-vit-h", "sam-hq-vit-l", "sam-hq-vit-b", "sam2.1-hiera-l",
            "sam2.1-hiera-b+", "sam2.1-hiera-s", "sam2.1-hiera-t", "sam3", *HF]
    main(["--json"])
    rows = {r["key"]: r for r in map(json.loads, capsys.readouterr().out.splitlines()) if r["role"] == "refiner"}
    assert set(keys) <= set(rows) and rows["vit_h"]["aliases"] == ["sam-vit-h"]
    assert rows["sam2.1-hiera-b+"]["source"] == "facebook/sam2.1-hiera-base-plus" and rows["sam3"]["source"] == "facebook/sam3"
    assert rows["tiny-sam2.1"]["source"].endswith("(built offline)")
    main([])
    assert "| refiner | vit_h | sam-vit-h |" in capsys.readouterr().out


# ------------------------------------------------------------------------------ missing models
def test_a_missing_hub_refiner_is_one_line_naming_the_download(tiny_dir, crafted, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from rsvg_zeroov.models.base import ModelNotFound
    from rsvg_zeroov.models.refiners import REFINERS, load_refiner

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    jsonl, run, _ = crafted
    assert exit_status(cli, jsonl, run, "--refiner", "sam2.1-hiera-b+") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: a model this command needs is missing") and len(err) == 3, err
    assert "`hf download facebook/sam2.1-hiera-base-plus`" in err[1] and "--no-sam" in err[1], err
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelNotFound, match=r"'sam3': model folder .*folder holds no config.json"):
        load_refiner("sam3", str(tmp_path / "folder"))
    with pytest.raises(ModelNotFound, match="does not exist"):
        load_refiner("sam-hq-vit-h", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFound, match=r"could not be loaded as Sam2Model \(.*--no-sam") as exc:
        load_refiner("sam2.1-hiera-t", REFINERS.resolve("tiny-sam-hq").source)  # another family's folder
    assert "\n" not in str(exc.value)
    assert not run.mask_png("a1").exists()


def test_tiny_builders_are_seeded_and_load_back(tmp_path):
    from rsvg_zeroov.models.sam_hf import load_family
    from rsvg_zeroov.tiny import sam_hf

    for build, family in ((sam_hf.build_tiny_sam_hq, "sam_hq"), (sam_hf.build_tiny_sam2, "sam2"),
                          (sam_hf.build_tiny_sam3, "sam3_tracker")):
        a, b = build(tmp_path / f"{family}-a"), build(tmp_path / f"{family}-b")
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
        model, _processor = load_family(family, a)
        assert sum(p.numel() for p in model.parameters()) < 500_000 and not model.training


def test_tiny_root_made_by_another_stand_in_still_gets_the_paper_stand_ins(tmp_path, monkeypatch):
    from rsvg_zeroov import tiny
    from rsvg_zeroov.models.base import ensure_tiny

    def fake(name):
        def build(path, seed=0):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name) if path.suffix else path.mkdir()
        return build

    for module, fn in (("qwen", "build_tiny_qwen"), ("sd", "build_tiny_sd"), ("sam", "build_tiny_sam")):
        monkeypatch.setattr(f"rsvg_zeroov.tiny.{module}.{fn}", fake(module))
    root = tmp_path / "tiny"
    (root / "sam_hf" / "tiny-sam2.1").mkdir(parents=True)  # built first, on first use
    monkeypatch.setenv("RSVG_ZEROOV_TINY_DIR", str(root))
    assert ensure_tiny("refiner").read_text() == "sam"
    assert (root / "qwen").is_dir() and (root / "sd").is_dir() and (root / "sam_hf" / "tiny-sam2.1").is_dir()
    assert tiny.build_all(root) == root  # nothing left to add


def test_prompt_settings_without_a_refiner_are_refused(crafted, capsys):
    """--refine-prompt / --refine-iters with --no-sam would do nothing (and change the fingerprint):
    one clear error before any sample is touched."""
    with pytest.raises(ValueError, match="there is none"):
        EvolveConfig(refiner=None, refine_prompt="points")
    with pytest.raises(ValueError, match="there is none"):
        EvolveConfig().override(sam=False, refine_iters=2)
    assert EvolveConfig(refiner=None).fingerprint() == EvolveConfig(refiner=None, refine_prompt="box").fingerprint()
    jsonl, run, _ = crafted
    assert exit_status(cli, jsonl, run, "--no-sam", "--refine-prompt", "box+points") == 2
    assert "--refine-prompt" in capsys.readouterr().err and not run.predictions.exists()
