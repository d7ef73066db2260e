"""The tiny offline SAM: the real segment-anything code path with seeded random weights.

Written as a plain state dict of tensors (``torch.save``), so it loads back with
``torch.load(..., weights_only=True)`` through :mod:`rsvg_zeroov.models.sam` (refiner key
``tiny``: ``--refiner tiny``, or the older ``--sam-type tiny``). Its masks mean nothing; only the
code path is real.
"""
from __future__ import annotations

import io
import os
from pathlib import Path


def build_tiny_sam(pth_path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny SAM state dict to ``pth_path`` (atomically) and return the path.

    The weights come from the architecture's own initialisers under ``torch.manual_seed(seed)``,
    so the same seed gives the same tensors.
    """
    import torch

    from ..models.sam_arch import build_sam_arch
    from ..rundir import atomic_write_bytes

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam_arch("tiny")
    state = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    path = Path(pth_path)
    atomic_write_bytes(path, buf.getvalue())
    return path
