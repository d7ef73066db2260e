"""Stage 1 on the other VLM families (Qwen3-VL, LLaVA), each on its tiny random-weight stand-in:
the sdpa capture equals the eager output_attentions oracle, the token grid sits where the model
puts it, batch == single, the default layers follow the relative-depth rule, the answer becomes
an original-pixel box per family, and every entry point selects them by key, folder or flag."""
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import llmattn
from backend_helpers import eager_oracle, fused64
from overview_helpers import NONSQUARE, SQUARE, rgb, write_jsonl_dataset
from rsvg_zeroov.models import vlm
from rsvg_zeroov.models.base import ModelNotFound, check_models
from rsvg_zeroov.models.llava import Llava
from rsvg_zeroov.models.qwen3_vl import Qwen3VL
from rsvg_zeroov.overview.answer import box_from_sidecar, convention_of
from rsvg_zeroov.overview.capture import CAPTURE_IMPL
from rsvg_zeroov.overview.config import OverviewConfig
from rsvg_zeroov.overview.layers import default_layers, planned_layers
from rsvg_zeroov.overview.model import Overview, answer_extra
from rsvg_zeroov.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
STEPS, TOL, WEIGHTS = 4, 1e-5, (0.1, 0.1, 0.3, 0.5)
# family -> (registry key, transformers class, default layers of its stand-in: 14 layers -> 8-11, 12 -> 7-10)
FAMILIES = {"qwen3-vl": ("tiny-qwen3-vl", "Qwen3VLForConditionalGeneration", (8, 9, 10, 11)),
            "llava": ("tiny-llava", "LlavaForConditionalGeneration", (7, 8, 9, 10))}


@lru_cache(maxsize=None)
def _load(name: str) -> SimpleNamespace:
    key, model_class, layers = FAMILIES[name]
    ov = Overview(OverviewConfig(model=key, max_new_tokens=STEPS, min_new_tokens=STEPS, greedy=True,
                                 dtype="float32")).load()
    return SimpleNamespace(name=name, key=key, model_class=model_class, layers=layers, ov=ov)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tiny_dir):
    return _load(request.param)


@pytest.fixture(scope="module")
def qwen3(tiny_dir):
    return _load("qwen3-vl")


@pytest.fixture(scope="module")
def llava(tiny_dir):
    return _load("llava")


def test_capture_equals_eager_oracle(family):
    res = family.ov([NONSQUARE])[0]
    ref = eager_oracle(family.name, family.ov.ref.source, family.model_class, NONSQUARE, family.layers, STEPS)
    assert family.ov.config.layers == family.layers and res.layers == family.layers
    assert ref["steps"] == STEPS and list(res.token_ids) == ref["tokens"]
    assert res.grid == ref["grid"] and res.per_layer.shape == (4, *ref["grid"])
    assert np.abs(res.per_layer - ref["per_layer"]).max() <= TOL
    assert np.abs(res.fused - fused64(ref["per_layer"], WEIGHTS)).max() <= TOL
    assert res.per_layer.std() > 0 and res.image_size == (84, 56)


def test_only_the_chosen_layers_switch_and_the_model_is_restored(family):
    adapter = family.ov.adapter
    modules = adapter.decoder_attention_modules(adapter.model)
    before = [m.config for m in modules]
    with adapter.capture(family.layers):
        assert [m.config._attn_implementation for m in modules] == [
            CAPTURE_IMPL if i in family.layers else "sdpa" for i in range(len(modules))]
        assert adapter.model.config.vision_config._attn_implementation == "sdpa"
    assert all(m.config is b for m, b in zip(modules, before)) and not adapter.model._forward_pre_hooks


def test_batch_of_two_equals_one_by_one(family):
    ov = family.ov
    batch = ov.prepare([SQUARE, NONSQUARE])  # different prompt lengths -> left padding
    assert batch.inputs["attention_mask"].min() == 0
    for b, s in zip(ov.run(batch), [ov([it])[0] for it in (SQUARE, NONSQUARE)]):
        assert b.token_ids == s.token_ids and b.grid == s.grid
        assert np.abs(b.per_layer - s.per_layer).max() <= TOL and np.abs(b.fused - s.fused).max() <= TOL


def test_qwen3_grid_placement_agrees_with_rope_position_ids(qwen3):
    """Image token k sits at (k // gw, k % gw): the h/w index of Qwen3-VL's own get_rope_index."""
    batch = qwen3.ov.prepare([SQUARE, NONSQUARE])
    inp = batch.inputs
    pos, _ = qwen3.ov.model.model.get_rope_index(
        inp["input_ids"], mm_token_type_ids=inp["mm_token_type_ids"], image_grid_thw=inp["image_grid_thw"],
        attention_mask=inp["attention_mask"])
    assert batch.grids == ((3, 3), (2, 3)) and batch.resized_hw == ((96, 96), (64, 96))  # 32-pixel cells
    assert batch.chat_texts[0].startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Locate")
    for b, ((start, end), (gh, gw)) in enumerate(zip(batch.spans, batch.grids)):
        h, w = pos[1, b, start:end] - pos[1, b, start], pos[2, b, start:end] - pos[2, b, start]
        k = torch.arange(end - start)
        assert torch.equal(h, k // gw) and torch.equal(w, k % gw)


def test_llava_grid_placement_follows_the_processor_patch_layout(llava):
    """The whole image is resized to the square input (no centre crop); patch (i, j) of it feeds vision
    token 1 + i * gw + j (after CLS), and the k-th image token of the prompt gets image feature k."""
    model, ov = llava.ov.model, llava.ov
    image = np.zeros((56, 112, 3), np.uint8)
    image[:, :8] = 255  # a left stripe: a centre crop would cut it away
    batch = ov.prepare([(image, "a stripe")])
    pixels, (start, end), (gh, gw) = batch.inputs["pixel_values"], batch.spans[0], batch.grids[0]
    assert (gh, gw) == (8, 8) and batch.resized_hw == ((112, 112),) and end - start == 64
    assert batch.chat_texts[0].startswith("USER: <image>\nLocate it") and batch.chat_texts[0].endswith(" ASSISTANT:")
    assert pixels[0, :, :, :4].mean() > pixels[0, :, :, 20:].mean() + 1.0
    tower = model.model.vision_tower
    embeddings = getattr(tower, "vision_model", tower).embeddings
    with torch.no_grad():
        base = embeddings(pixels)
        i, j, p = 2, 5, 14
        moved = pixels.clone()
        moved[..., i * p:(i + 1) * p, j * p:(j + 1) * p] += 1.0
        changed = (embeddings(moved) - base).abs().sum(-1)[0].nonzero().flatten().tolist()
    assert changed == [1 + i * gw + j]
    seen = {}

    def keep(module, args, kwargs):
        seen.setdefault("embeds", kwargs["inputs_embeds"])

    hook = model.model.language_model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            features = model.model.get_image_features(pixel_values=pixels).pooler_output
            model(**batch.inputs)
    finally:
        hook.remove()
    features = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features.reshape(-1, features.shape[-1])
    assert torch.allclose(seen["embeds"][0, start:end], features, atol=1e-6)


def test_default_layers_follow_the_documented_rule(tiny_dir):
    assert {d: default_layers("relative", d) for d in (28, 32, 36, 40, 64, 14, 12, 4)} == {
        28: (16, 17, 18, 19), 32: (18, 19, 20, 21), 36: (21, 22, 23, 24), 40: (23, 24, 25, 26),
        64: (37, 38, 39, 40), 14: (8, 9, 10, 11), 12: (7, 8, 9, 10), 4: (0, 1, 2, 3)}
    assert default_layers("absolute", 80) == (16, 17, 18, 19)  # Qwen2.5-VL: as the released code
    with pytest.raises(ValueError, match="pass --layers"):
        default_layers("relative", 3)
    assert planned_layers(OverviewConfig(model="tiny")) == (16, 17, 18, 19)
    assert planned_layers(OverviewConfig(model="qwen2.5-vl-72b")) == (16, 17, 18, 19)
    assert planned_layers(OverviewConfig(model="tiny-qwen3-vl")) == (8, 9, 10, 11)
    assert planned_layers(OverviewConfig(model="tiny-llava")) == (7, 8, 9, 10)
    assert planned_layers(OverviewConfig(model="tiny-llava", layers=(2, 5), weights=(0.5, 0.5))) == (2, 5)
    assert planned_layers(OverviewConfig(model="qwen3-vl-8b")) is None  # not on this machine: loading says so


def test_stage_records_the_rule_writes_the_box_and_resumes(tmp_path, tiny_dir):
    jsonl = write_jsonl_dataset(tmp_path / "data", [("s0", *NONSQUARE)])
    out = tmp_path / "run"
    args = ["--dataset", "jsonl", "--root", jsonl, "--out", str(out), "--model", "tiny-qwen3-vl",
            "--max-new-tokens", "2", "--greedy"]
    assert llmattn.main(args) == 0
    run = RunDir(out)
    recorded = json.loads(run.config("overview").read_text())
    assert recorded["config"]["layers"] is None and recorded["resolved"]["layers"] == [8, 9, 10, 11]
    assert recorded["resolved"]["layer_rule"].startswith("relative") and recorded["resolved"]["model_depth"] == 14
    maps, meta = run.load_overview("s0")
    assert maps.shape == (5, 2, 3) and meta["layers"] == [8, 9, 10, 11] and meta["model_key"] == "tiny-qwen3-vl"
    assert meta["box_convention"] == "grid-1000" and "answer_box" in meta
    stamp = run.overview_json("s0").stat().st_mtime_ns
    assert llmattn.main(args) == 0 and run.overview_json("s0").stat().st_mtime_ns == stamp  # resumed: done
    assert llmattn.main([*args, "--layers", "2,5", "--weights", "0.5,0.5"]) == 0  # overridable, as given
    recorded = json.loads(run.config("overview").read_text())
    assert run.load_overview("s0")[1]["layers"] == [2, 5] and recorded["resolved"]["layer_rule"].startswith("configured")


def test_answers_become_original_pixel_boxes_per_family(family, monkeypatch):
    """The same box, answered in each family's own coordinates, lands on the same original pixels."""
    answer = {"qwen3-vl": '[{"bbox_2d": [250, 500, 750, 1000], "label": "ship"}]',
              "llava": "[0.25, 0.5, 0.75, 1.0]"}[family.name]
    monkeypatch.setattr(family.ov.adapter, "decode", lambda ids: f" {answer} ")
    res = family.ov([NONSQUARE])[0]  # 84 x 56 pixels
    assert res.answer == answer and res.extra["box_convention"] == family.ov.adapter.box_convention
    assert res.extra["answer_box"] == pytest.approx([21.0, 28.0, 63.0, 56.0])
    meta = {"answer": answer, "image_size": list(res.image_size), "resized_size": list(res.resized_size),
            "model": family.ov.ref.source}
    assert box_from_sidecar(meta) == pytest.approx([21.0, 28.0, 63.0, 56.0])  # via the folder's config.json


def test_hand_written_answers_and_conventions_by_key():
    assert convention_of({"model_key": "qwen3-vl-8b"}) == "grid-1000"
    assert convention_of({"model_key": "llava-1.5-7b"}) == "fraction"
    assert convention_of({"model_key": "qwen2.5-vl-7b"}) == "resized-pixels"
    assert answer_extra("[100, 250, 500, 1000]", "grid-1000", (400, 800), (384, 800))["answer_box"] == [
        80.0, 100.0, 400.0, 400.0]
    assert answer_extra("(0.1, 0.2, 0.5, 0.6)", "fraction", (100, 200), (336, 336))["answer_box"] == pytest.approx(
        [20.0, 20.0, 100.0, 60.0])
    assert answer_extra("no box", "fraction", (100, 200), (336, 336)) == {"box_convention": "fraction",
                                                                          "answer_box": None}
    assert answer_extra("[1, 2, 3, 4]", "resized-pixels", (200, 100), (196, 112)) == {}  # Qwen2.5-VL layout kept


def test_selection_by_folder_listing_and_missing_models(tiny_dir, capsys):
    for key, cls in (("tiny-qwen3-vl", Qwen3VL), ("tiny-llava", Llava)):
        folder = vlm.VLMS.resolve(key).source
        assert vlm.VLMS.adapter_class(key) is cls and vlm.adapter_class(vlm.VLMS.resolve(folder)) is cls
    with pytest.raises(ValueError, match="fixed square input"):  # once, when the model is loaded
        Overview(OverviewConfig(model="tiny-llava", max_pixels=4096)).load()
    from rsvg_zeroov.models.__main__ import main

    assert main([]) == 0
    listing = capsys.readouterr().out
    for key in ("qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b", "qwen3-vl-32b", "llava-1.5-7b", "tiny-qwen3-vl",
                "tiny-llava"):
        assert f"| vlm | {key} |" in listing
    with pytest.raises(ModelNotFound) as err:
        check_models([("vlm", "qwen3-vl-8b", "--model"), ("vlm", "llava-1.5-7b", "--vlm")])
    assert "hf download Qwen/Qwen3-VL-8B-Instruct" in str(err.value) and "hf download llava-hf/llava-1.5-7b-hf" in str(err.value)


def test_ground_py_takes_another_vlm(tmp_path, tiny_dir):
    import ground
    from PIL import Image

    Image.fromarray(rgb(64, 96, 3)).save(tmp_path / "scene.png")
    assert ground.main(["--image", str(tmp_path / "scene.png"), "--text", "a ship", "--out", str(tmp_path / "g"),
                        "--tiny", "--vlm", "tiny-llava", "--max-new-tokens", "2", "--steps", "2"]) == 0
    record = json.loads((tmp_path / "g" / "box.json").read_text())
    assert record["config"]["overview"]["model"] == "tiny-llava" and (tmp_path / "g" / "mask.png").is_file()


def test_make_demo_with_another_vlm_and_refiner(tmp_path, tiny_dir):
    """`make demo VLM=... REFINER=...` passes both knobs to scripts/demo.sh, which runs the three stages
    end to end (here tiny Qwen3-VL and tiny SAM 2.1)."""
    dry = subprocess.run(["make", "-n", "demo", "VLM=tiny-qwen3-vl", "REFINER=tiny-sam2.1"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert 'VLM="tiny-qwen3-vl" REFINER="tiny-sam2.1"' in dry.stdout and "scripts/demo.sh" in dry.stdout
    env = {**os.environ, "RSVG_ZEROOV_TINY_DIR": str(tiny_dir), "DEMO_DIR": str(tmp_path / "demo"),
           "DEMO_N": "1", "DEMO_STAGE1_ARGS": "--max-new-tokens 2", "PYTHON": sys.executable,
           "DEMO_STAGE2_ARGS": "--inversion ddim --steps 2", "VLM": "tiny-qwen3-vl", "REFINER": "tiny-sam2.1"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = tmp_path / "demo" / "run-tiny-qwen3-vl-tiny-sam2.1"  # its own folder: nothing resumes on other dumps
    run = RunDir(folder)
    (sid,) = [p.stem for p in (folder / "overview").glob("*.npy")]
    meta = run.load_overview(sid)[1]
    assert meta["model_key"] == "tiny-qwen3-vl" and meta["box_convention"] == "grid-1000"
    assert json.loads(run.config("evolve").read_text())["config"]["refiner"] == "tiny-sam2.1"
    assert run.metrics.is_file() and run.mask_png(sid).is_file() and run.focus_file(sid, "meta.json").is_file()


def test_a_default_model_run_does_not_resume_on_another_models_dumps():
    """Without --model the run is the default VLM's: a sidecar of another key or family is redone."""
    from rsvg_zeroov.rundir.overview import settings_match

    config = OverviewConfig()
    base = {"fidelity": "released", "generation": {"max_new_tokens": config.max_new_tokens}}
    assert settings_match({**base, "model_key": vlm.VLMS.default.key}, config)
    assert settings_match(base, config)  # a sidecar of an earlier version names no key
    assert not settings_match({**base, "model_key": "qwen3-vl-2b", "box_convention": "grid-1000"}, config)
    assert not settings_match({**base, "model_key": None, "box_convention": "fraction"}, config)
    assert settings_match({**base, "model_key": "qwen3-vl-2b"}, OverviewConfig(model="qwen3-vl-2b"))
