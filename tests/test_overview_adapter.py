"""Stage 1 behind the VLM adapter interface: the registry table, adapters picked by key or by a
folder's config.json model_type, a new VLM as one adapter class + one registry line, the Stage
protocol and re-running from a recorded config."""
import json

import pytest

import llmattn
from overview_helpers import NONSQUARE, write_jsonl_dataset
from rsvg_zeroov.models import vlm
from rsvg_zeroov.models.qwen2_5_vl import Qwen25VL
from rsvg_zeroov.overview.config import OverviewConfig
from rsvg_zeroov.overview.model import Overview
from rsvg_zeroov.rundir import RunDir

GEN = ["--max-new-tokens", "2", "--greedy"]


def test_the_vlm_table():
    qwen25 = ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-32b", "qwen2.5-vl-72b", "tiny"]
    assert vlm.VLMS.keys()[:5] == qwen25  # other families follow (tests/test_overview_backends.py)
    assert vlm.VLMS.default.key == "qwen2.5-vl-7b"
    assert vlm.VLMS.resolve("qwen2.5-vl-32b").source == "Qwen/Qwen2.5-VL-32B-Instruct"
    assert vlm.VLMS.resolve(None).source == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert all(vlm.VLMS.adapter_class(k) is Qwen25VL for k in qwen25)


def test_a_folder_picks_its_adapter_from_config_json(tiny_qwen, tmp_path):
    assert vlm.adapter_class(vlm.VLMS.resolve(str(tiny_qwen))) is Qwen25VL
    other = tmp_path / "blip"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(ValueError, match="no stage-1 adapter for model_type 'blip-2' \\(known: qwen2_5_vl, qwen3_vl, llava\\)"):
        vlm.adapter_class(vlm.VLMS.resolve(str(other)))
    assert vlm.adapter_class(vlm.VLMS.resolve(str(tmp_path / "absent"))) is Qwen25VL  # its loader names it


def test_qwen_adapter_is_a_vlm_adapter(tiny_qwen):
    adapter = vlm.load_vlm(str(tiny_qwen))
    assert isinstance(adapter, vlm.VLMAdapter) and adapter.cell == 28 and adapter.num_layers == 20
    assert len(adapter.decoder_attention_modules(adapter.model)) == 20


class AnsweringVLM(Qwen25VL):
    """A second adapter, used only here: Qwen2.5-VL whose decoded answer is a fixed box."""

    def decode(self, token_ids):
        return " [1, 2, 3, 4] "


@pytest.fixture
def registered(tiny_qwen):
    vlm.VLMS.add("test-answering-vlm", adapter="test_overview_adapter:AnsweringVLM", hub_id=str(tiny_qwen))
    yield "test-answering-vlm"
    vlm.VLMS._entries.pop("test-answering-vlm")


def test_a_new_vlm_is_one_adapter_and_one_registry_line(registered, tmp_path):
    ov = Overview(OverviewConfig(model=registered, max_new_tokens=2, greedy=True, dtype="float32")).load()
    assert type(ov.adapter) is AnsweringVLM and ov([NONSQUARE])[0].answer == "[1, 2, 3, 4]"
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(NONSQUARE[0]).save(img)
    assert llmattn.main(["--image", str(img), "--text", "a ship", "--vlm", registered, "--out", str(tmp_path / "o"),
                         *GEN]) == 0
    _, meta = RunDir(tmp_path / "o").load_overview("x")
    assert meta["answer"] == "[1, 2, 3, 4]" and meta["model_key"] == registered


def test_overview_stage_is_a_runner_stage(tiny_qwen, tmp_path):
    from rsvg_zeroov.overview.stage import OverviewStage
    from rsvg_zeroov.runner import Stage

    stage = OverviewStage(RunDir(tmp_path), OverviewConfig(model=str(tiny_qwen), dtype="float32"))
    assert isinstance(stage, Stage) and stage.name == "overview" and stage.min_image_side == 28
    assert stage.settings()["resolved"] == {}
    stage.setup()
    resolved = stage.settings()["resolved"]
    assert resolved["dtype"] == "float32" and resolved["model"] == str(tiny_qwen) and resolved["arithmetic"] == "float32"


def test_rerun_from_the_recorded_config(tiny_qwen, tmp_path):
    jsonl = write_jsonl_dataset(tmp_path / "data", [("s0", *NONSQUARE)])
    first, second = tmp_path / "a", tmp_path / "b"
    assert llmattn.main(["--dataset", "jsonl", "--root", jsonl, "--out", str(first), "--model", str(tiny_qwen),
                         "--layers", "2,5", "--weights", "0.5,0.5", "--stop-at-bracket", *GEN]) == 0
    assert llmattn.main(["--dataset", "jsonl", "--root", jsonl, "--out", str(second),
                         "--config", str(RunDir(first).config("overview"))]) == 0
    from rsvg_zeroov.runner import read_stage_config

    a, b = (read_stage_config(RunDir(r).config("overview")) for r in (first, second))
    assert a["config"] == b["config"] and b["config"]["layers"] == [2, 5] and b["config"]["stop_at_bracket"] is True
    assert RunDir(second).load_overview("s0")[1]["layers"] == [2, 5]
