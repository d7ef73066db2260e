"""Custom data: one JSON object per line — how a user grounds their own imagery.

Each line: ``{"id", "image", "expression", "box"?: [x1, y1, x2, y2], "mask"?: path, "category"?}``.
``image`` and ``mask`` are paths relative to the JSONL file's folder (absolute paths are kept);
``box`` is XYXY pixels; a mask is any image file with foreground = value > 0. ``sample_id`` = ``id``
(letters, digits, ``_ . -``: it names files in the run directory). Width and height come from the
image header. ``--root`` is the JSONL file itself (``--split`` then only labels the run) or a folder
holding ``<split>.jsonl``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import DatasetError, MaskSource, Sample
from .files import (check_unique, expect, image_hw, read_text, reject_options, require_file, sample_id,
                    split_files_present, text, xyxy_box)


def jsonl_path(root, split: str) -> Path:
    """The JSONL file for ``root`` (a file, or a folder with ``<split>.jsonl``)."""
    root = Path(root)
    if root.is_file():
        return root
    if root.is_dir():
        path = root / f"{split}.jsonl"
        if not path.is_file():
            present = split_files_present(root, "*.jsonl", "", ".jsonl")
            raise DatasetError(f"{path}: split file is missing; splits present under {root}: {present}")
        return path
    raise DatasetError(f"{root}: not found (--root must be a .jsonl file or a folder holding <split>.jsonl)")


def load_jsonl(root, split: str, **options) -> list[Sample]:
    """Samples of a JSONL file (see module doc)."""
    reject_options(options, root, "jsonl")
    path = jsonl_path(root, split)
    base = path.parent
    sizes: dict = {}
    samples = []
    for lineno, line in enumerate(read_text(path, "JSONL file").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise DatasetError(f"{path}: line {lineno}: invalid JSON (nested too deeply)") from None
        samples.append(_sample(rec, path, f"line {lineno}", base, sizes))
    check_unique((s.sample_id for s in samples), path)
    if not samples:
        raise DatasetError(f"{path}: no samples (expected one JSON object per line)")
    return samples


def _sample(rec: Any, path: Path, where: str, base: Path, sizes: dict) -> Sample:
    expect(isinstance(rec, dict), path, f"{where}: expected a JSON object with id, image, expression")
    sid = sample_id(rec.get("id"), path, f"{where} id")
    image = base / text(rec.get("image"), path, f"{where} image")
    expression = text(rec.get("expression"), path, f"{where} expression")
    h, w = image_hw(image, sizes)
    box = None if rec.get("box") is None else xyxy_box(rec["box"], path, f"{where} box")
    mask = None
    if rec.get("mask") is not None:
        mask_path = require_file(base / text(rec["mask"], path, f"{where} mask"), "ground-truth mask file")
        mask = MaskSource("image", mask_path)
    category = rec.get("category")
    return Sample(sid, image, expression, w, h, box=box, mask=mask,
                  category=category if isinstance(category, str) else None, raw_expression=expression)
