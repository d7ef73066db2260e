"""Shared test setup: offline hub, repo root importable, one tiny-model build per session."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    """Path of the tiny random Qwen2.5-VL folder alone (built once per session; the overview
    tests use it without setting RSVG_ZEROOV_TINY_DIR)."""
    from rsvg_zeroov.tiny.qwen import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen") / "qwen", seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """All three tiny models built once (rsvg_zeroov.tiny.build_all) and RSVG_ZEROOV_TINY_DIR set to them."""
    from rsvg_zeroov.tiny import build_all

    root = build_all(tmp_path_factory.mktemp("tiny") / "models")
    old = os.environ.get("RSVG_ZEROOV_TINY_DIR")
    os.environ["RSVG_ZEROOV_TINY_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("RSVG_ZEROOV_TINY_DIR", None)
    else:
        os.environ["RSVG_ZEROOV_TINY_DIR"] = old
