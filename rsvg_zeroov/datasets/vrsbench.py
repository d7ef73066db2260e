"""VRSBench referring: ``VRSBench_EVAL_referring.json`` with boxes on a 0-100 grid.

Layout (docs/datasets.md)::

    <root>/VRSBench_EVAL_referring.json   list of {image_id (file name), question, ground_truth
                                          "{<x1><y1><x2><y2>}", question_id, is_unique, obj_cls, ...}
    <root>/Images_val/<image_id>

The grid values become pixels as ``value * size / 100`` (x with the image width, y with its height,
read from the image header). ``sample_id`` = ``question_id``; expression = ``question`` as written;
category = ``obj_cls``. The eval file is the one split (``test``; ``val`` and ``eval`` are aliases).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import Box, DatasetError, Sample
from .files import (check_unique, expect, image_hw, read_json, reject_options, sample_id, text,
                    xyxy_box)

EVAL_FILE = "VRSBench_EVAL_referring.json"
IMAGE_DIR = "Images_val"
SPLITS = ("test", "val", "eval")
GRID = 100.0
_NUM = r"\s*<\s*([-+]?\d+(?:\.\d*)?)\s*>"
_GT = re.compile(r"^\s*\{" + _NUM * 4 + r"\s*\}\s*$")


def load_vrsbench(root, split: str, **options) -> list[Sample]:
    """The VRSBench referring evaluation records (see module doc)."""
    reject_options(options, root, "vrsbench")
    root = Path(root)
    path = root / EVAL_FILE
    if split not in SPLITS:
        raise DatasetError(f"{path}: VRSBench has one evaluation split; use --split test "
                           f"(aliases: {', '.join(SPLITS[1:])}), got {split!r}")
    records = read_json(path, "VRSBench referring eval file")
    expect(isinstance(records, list), path, "expected a JSON list of referring records")
    sizes: dict = {}
    samples = [_sample(r, i, root / IMAGE_DIR, path, sizes) for i, r in enumerate(records)]
    check_unique((s.sample_id for s in samples), path)
    return samples


def parse_grid_box(value: Any, path: Path, where: str) -> Box:
    """``"{<x1><y1><x2><y2>}"`` -> the four grid values (0..100) as floats."""
    m = _GT.match(value) if isinstance(value, str) else None
    expect(m is not None, path, f"{where}: ground_truth must look like '{{<x1><y1><x2><y2>}}', got {value!r}")
    vals = tuple(float(g) for g in m.groups())
    expect(all(0.0 <= v <= GRID for v in vals), path, f"{where}: ground_truth {value!r} leaves the 0-100 grid")
    return vals


def grid_to_pixels(grid: Box, width: int, height: int) -> Box:
    """0-100 grid XYXY -> pixel XYXY (value * size / 100)."""
    x1, y1, x2, y2 = grid
    return (x1 * width / GRID, y1 * height / GRID, x2 * width / GRID, y2 * height / GRID)


def _sample(rec: Any, i: int, image_dir: Path, path: Path, sizes: dict) -> Sample:
    where = f"record #{i}"
    expect(isinstance(rec, dict), path, f"{where} must be an object")
    sid = sample_id(rec.get("question_id"), path, f"{where} question_id")
    where = f"record #{i} (question_id {sid})"
    name = text(rec.get("image_id"), path, f"{where} image_id")
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise DatasetError(f"{path}: {where}: image_id {name!r} leaves the data set folder")
    question = text(rec.get("question"), path, f"{where} question")
    grid = parse_grid_box(rec.get("ground_truth"), path, where)
    image = image_dir / name
    h, w = image_hw(image, sizes)
    box = xyxy_box(grid_to_pixels(grid, w, h), path, f"{where} ground_truth")
    category, unique = rec.get("obj_cls"), rec.get("is_unique")
    return Sample(sid, image, question, w, h, box=box, mask=None,
                  category=category if isinstance(category, str) else None, raw_expression=question,
                  extra=(("grid_box", grid), ("is_unique", unique if isinstance(unique, bool) else None)))
