"""The full-size GPU benchmark (bench/gpu_fullsize.py), exercised on its CPU ``--scale small`` path.

No timing assertions: these tests check that the script runs end to end, reports every stage for
ours and the released style, builds the real full-size architectures, and that its bounded-memory
released-style store averages exactly what the library's host list keeps.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:
    sys.path.insert(0, str(REPO / "bench"))
os.environ["HF_HUB_OFFLINE"] = "1"

FAST = ["--scale", "small", "--device", "cpu", "--steps", "1", "--inner-steps", "1"]
STAGE_ROWS = ("1 overview", "2 focus", "3 evolve+SAM")


def _row(text: str, stage: str, variant: str) -> list[str] | None:
    m = re.search(rf"^\| {re.escape(stage)} \| {variant} \|(.*)\|$", text, re.M)
    return None if m is None else [c.strip() for c in m.group(1).split("|")]


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    """``python bench/gpu_fullsize.py`` with the fast small settings, one torch thread (robust on a shared CPU)."""
    cmd = [sys.executable, "bench/gpu_fullsize.py", *FAST, *args, "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_small_scale_cli_writes_every_stage_for_ours_and_released(tmp_path):
    """One round of two expressions of one image: batched stages 1-2, SAM embedding reuse, and the
    bounded-memory released store (the full-scale setting) all run."""
    out = tmp_path / "results.md"
    proc = _run(out, "--n", "2", "--batch-size", "2", "--exprs-per-image", "2", "--released-store", "sum")
    text = out.read_text()
    assert "python bench/gpu_fullsize.py --scale small --device cpu" in text  # the exact command
    assert "2 sample(s) measured of 2 requested" in text
    for stage in STAGE_ROWS:
        for variant in ("ours", "released"):
            cells = _row(text, stage, variant)
            assert cells is not None, f"no row for {stage} / {variant}:\n{text}"
            batched = variant == "ours" and stage != "3 evolve+SAM"  # a batch of two is one measurement
            assert float(cells[1]) > 0 and cells[2] == ("1" if batched else "2")  # median s/sample, count
    for name in STAGE_ROWS + ("end to end (sum of stages)",):
        assert re.search(rf"^\| {re.escape(name)} \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", text, re.M), name
    assert "GPU numbers are not measured" in text and "n/a (cpu)" in text
    assert "ours vs released final masks: mean IoU" in text
    # run-to-run: the first round again in the same process; on the CPU exactly the same outputs
    m = re.search(r"run-to-run .*max \|A_C difference\| (\S+), max \|S difference\| (\S+); "
                  r"final masks identical (\d+)/(\d+)", text)
    assert m, text
    assert float(m.group(1)) == 0 and float(m.group(2)) == 0 and m.group(3) == m.group(4) == "2"
    assert _row(text, "2 focus", "ours")[0].endswith("batch 2")
    assert "every map to host (sum)" in _row(text, "2 focus", "released")[0]
    # reuse per image: ours embeds the one image per round (warm-up, measured, repeat), released per expression
    assert "SAM image embeddings computed (warm-up and repeat included): ours 3, released 4" in text
    assert text.strip() in proc.stdout  # also printed


def test_ours_only_fast_settings_subset(tmp_path):
    """The device script's fast phase: half-precision SD, TF32 switch, no released variants."""
    out = tmp_path / "ours.md"
    _run(out, "--n", "1", "--stages", "2", "--skip-released", "--dtype", "bfloat16", "--tf32", "--no-repeat-check")
    text = out.read_text()
    assert _row(text, "2 focus", "ours")[0].startswith("bfloat16 +TF32, 1 x 1")
    assert _row(text, "2 focus", "ours")[2] == "1"
    assert _row(text, "2 focus", "released") is None and _row(text, "1 overview", "ours") is None
    assert "| skipped | skipped |" in text
    assert "run-to-run" not in text


def test_full_scale_rejects_a_shortened_schedule():
    import gpu_fullsize

    with pytest.raises(SystemExit):
        gpu_fullsize.parse_args(["--scale", "full", "--steps", "5"])
    args = gpu_fullsize.parse_args(["--scale", "full", "--device", "cpu"])
    assert (args.steps, args.inner_steps, args.n) == (None, None, 8)  # library schedule: 20 x 10


def test_full_scale_architectures_have_the_published_sizes():
    """Built on the meta device (no memory): the parameter counts of the real checkpoints."""
    import torch
    from fullsize_models import build_qwen, build_sam, build_sd, n_params

    qwen, processor = build_qwen("full", "meta", torch.bfloat16)
    assert n_params(qwen) == pytest.approx(8.29e9, rel=1e-3)  # Qwen2.5-VL-7B-Instruct
    assert qwen.config.text_config.vocab_size == 152064
    assert qwen.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    sd = build_sd("full", "meta")
    assert n_params(sd.unet) == pytest.approx(859.52e6, rel=1e-4)  # SD v1.4 UNet
    assert n_params(sd.vae) == pytest.approx(83.65e6, rel=1e-3)
    assert n_params(sd.text_encoder) == pytest.approx(123.06e6, rel=1e-3)  # CLIP ViT-L/14 text
    assert sd.unet.config.attention_head_dim == 8 and sd.unet.config.cross_attention_dim == 768
    assert n_params(build_sam("full", "meta")) == pytest.approx(641.09e6, rel=1e-3)  # SAM ViT-H


def test_host_sum_store_means_equal_the_library_host_list():
    """The bounded-memory released store averages exactly what the library's HostListStore keeps."""
    import torch
    from fullsize_harness import HostSumStore

    from rsvg_zeroov.focus.capture import HostListStore

    stores = HostListStore(2), HostSumStore(2)
    gen = torch.Generator().manual_seed(0)
    for _call in range(3):  # layer calls
        for b in range(2):
            for _head in range(4):
                probs = torch.softmax(torch.randn(16, 16, generator=gen), dim=-1)
                for store in stores:
                    store.add(("self", 4), b, probs, 1.0 / 4)
            for store in stores:
                store.tick(("self", 4), b)
    listed, summed = (s.mean(("self", 4)) for s in stores)
    assert summed.device.type == "cpu" and summed.shape == (2, 16, 16)
    np.testing.assert_allclose(summed.numpy(), listed.numpy(), atol=1e-7)
