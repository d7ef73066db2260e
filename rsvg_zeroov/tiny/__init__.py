"""Tiny random-weight offline stand-ins for the three frozen models (tests, the bundled demo).

``build_all(root)`` writes ``root/qwen`` (Qwen2.5-VL + tokenizer + processor), ``root/sd`` (a Stable
Diffusion v1 layout pipeline) and ``root/sam/sam_tiny.pth``; each loads back through the real
loaders of :mod:`rsvg_zeroov.models.registry`. Seeded: the same bytes on every build.
The models are random: their outputs mean nothing, only the code paths are exercised.

Other backends' stand-ins (registry entries with ``tiny_path`` / ``tiny_build``) are built one at a
time by :func:`build_one`, on first use or by ``python -m rsvg_zeroov.tiny --all``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SEED = 0


def build_all(root: str | os.PathLike) -> Path:
    """Build the three tiny models under ``root`` (atomically: a half-built folder is never visible)."""
    from .qwen import build_tiny_qwen
    from .sam import build_tiny_sam
    from .sd import build_tiny_sd

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        build_tiny_qwen(tmp / "qwen", seed=SEED)
        build_tiny_sd(tmp / "sd", seed=SEED)
        build_tiny_sam(tmp / "sam" / "sam_tiny.pth", seed=SEED)
        if root.exists():  # another process (or another backend's stand-in) made the folder first:
            for part in sorted(tmp.iterdir()):  # add what it lacks, keep what it has
                if not (root / part.name).exists():
                    os.replace(part, root / part.name)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def build_one(spec: str, path: str | os.PathLike, seed: int = SEED) -> Path:
    """Build one stand-in at ``path`` with the builder ``"package.module:function"`` (called as
    ``function(out_path, seed=seed)``), atomically: it is written under a temporary sibling and
    moved into place, so a half-built model is never visible; a concurrent build that finished
    first is kept."""
    from ..models.base import load_object

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        load_object(spec)(tmp / path.name, seed=seed)
        if not path.exists():
            os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def stand_in_entries() -> list:
    """Every registry entry (all roles) with its own tiny builder, in registration order."""
    from ..models.base import ROLE_MODULES, registry

    return [e for role in ROLE_MODULES for e in registry(role).entries() if "tiny_build" in e.options]
