"""Fixtures for the evaluation tests: random cases, a direct reference scorer, on-disk runs and data sets.

The reference is written independently of rsvg_zeroov.evaluation: boxes under the +1 convention are
rasterised and their pixels counted, masks resized with PIL, hits and aggregates in plain Python.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (hit >=, box convention, union eps, mask size, empty box) as docs/datasets.md states them.
REF_RULES = {
    "zeroov": (False, "plus1", 1e-6, None, (0, 0, 0, 0)),
    "rmsin": (True, "plus1", 0.0, (480, 480), None),
    "mgvlf": (False, "cont", 0.0, None, None),
    "lpva": (True, "cont", 0.0, None, None),
    "vrsbench": (True, "grid", 0.0, None, None),
}
THRESHOLDS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


# ------------------------------------------------------------------------------------ random cases
def random_mask(rng: np.random.Generator, h: int, w: int, p_empty: float = 0.1) -> np.ndarray:
    """bool (h, w): empty, or a union of 1-3 random rectangles with some speckle removed."""
    m = np.zeros((h, w), bool)
    if rng.random() < p_empty:
        return m
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        m[y0:y0 + int(rng.integers(1, h // 2 + 2)), x0:x0 + int(rng.integers(1, w // 2 + 2))] = True
    speckled = m & (rng.random((h, w)) > 0.05)
    return speckled if speckled.any() else m


def random_case(rng: np.random.Generator, grid_boxes: bool = False):
    """(h, w, pred_mask, gt_mask, gt_box XYXY float)."""
    h, w = int(rng.integers(8, 70)), int(rng.integers(8, 70))
    gt = random_mask(rng, h, w, p_empty=0.0)
    if grid_boxes:  # VRSBench: the ground truth lives on the 0-100 grid
        g = np.sort(rng.integers(0, 101, size=(2, 2)), axis=1)
        box = (g[0, 0] * w / 100, g[1, 0] * h / 100, g[0, 1] * w / 100, g[1, 1] * h / 100)
    else:
        ys, xs = np.nonzero(gt)
        box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return h, w, random_mask(rng, h, w), gt, tuple(float(v) for v in box)


# ------------------------------------------------------------------------------------ reference
def ref_tight_box(mask: np.ndarray):
    pts = np.argwhere(mask)
    if len(pts) == 0:
        return None
    (y1, x1), (y2, x2) = pts.min(0), pts.max(0)
    return float(x1), float(y1), float(x2), float(y2)


def _raster(box, size: int) -> np.ndarray:
    """Inclusive integer box as a pixel canvas (the +1 convention counts these pixels)."""
    c = np.zeros((size, size), bool)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    c[y1:y2 + 1, x1:x2 + 1] = True
    return c


def ref_box_counts(p, g, convention: str, h: int, w: int):
    if convention == "grid":
        p, g = (tuple(math.floor(v * 100 / s + 1e-9 + 0.5) for v, s in zip(b, (w, h, w, h))) for b in (p, g))
    if convention in ("plus1", "grid") and all(float(v).is_integer() for v in (*p, *g)):
        size = int(max(*p, *g)) + 2
        a, b = _raster(p, size), _raster(g, size)
        return float((a & b).sum()), float((a | b).sum())
    one = 1.0 if convention != "cont" else 0.0
    ix = max(0.0, min(p[2], g[2]) - max(p[0], g[0]) + one)
    iy = max(0.0, min(p[3], g[3]) - max(p[1], g[1]) + one)
    area = lambda b: max(0.0, b[2] - b[0] + one) * max(0.0, b[3] - b[1] + one)  # noqa: E731
    return ix * iy, area(p) + area(g) - ix * iy


def pil_nearest(mask: np.ndarray, size) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(im) > 0


def ref_score(protocol: str, pred, gt, gt_box, h, w, missing=False):
    """(box_iou, box_inter, box_union, mask_iou, mask_inter, mask_union) by direct computation."""
    _, conv, eps, msize, empty_box = REF_RULES[protocol]
    pbox = None if (missing or pred is None) else ref_tight_box(pred)
    if pbox is None and not missing:
        pbox = empty_box
    if pbox is None:
        bi, bu = ref_box_counts(gt_box, gt_box, conv, h, w)
        bi, biou = 0.0, 0.0
    else:
        bi, bu = ref_box_counts(pbox, gt_box, conv, h, w)
        biou = bi / (bu + eps) if bu + eps > 0 else 0.0
    if gt is None:
        return biou, bi, bu, None, None, None
    p = np.zeros_like(gt) if (missing or pred is None) else pred
    if msize is not None:
        p, gt = pil_nearest(p, msize), pil_nearest(gt, msize)
    mi, mu = int((p & gt).sum()), int((p | gt).sum())
    miou = 0.0 if missing else (mi / (mu + eps) if mu + eps > 0 else 0.0)
    return biou, bi, bu, miou, mi, mu


def ref_aggregate(protocol: str, ious, inters, unions) -> dict:
    ge = REF_RULES[protocol][0]
    n = len(ious)
    out = {"mIoU": 100 * sum(ious) / n, "oIoU": 100 * sum(inters) / sum(unions) if sum(unions) else 0.0}
    for t in THRESHOLDS:
        out[f"Pr@{t}"] = 100 * sum((i >= t) if ge else (i > t) for i in ious) / n
    return out


# ------------------------------------------------------------------------------------ on disk
def save_mask(path: Path, mask: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return str(path)


def write_jsonl_dataset(root: Path, cases: list[dict], name: str = "test.jsonl") -> Path:
    """cases: {"id", "h", "w", "gt": bool mask | None, "box": XYXY | None}. Returns the JSONL path."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for c in cases:
        img = root / "images" / f"{c['id']}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((c["h"], c["w"], 3), 90, np.uint8)).save(img)
        rec = {"id": c["id"], "image": f"images/{c['id']}.png", "expression": f"the object {c['id']}"}
        if c.get("box") is not None:
            rec["box"] = [float(v) for v in c["box"]]
        if c.get("gt") is not None:
            save_mask(root / "masks" / f"{c['id']}.png", c["gt"])
            rec["mask"] = f"masks/{c['id']}.png"
        lines.append(json.dumps(rec))
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def write_run(run: Path, preds: dict[str, np.ndarray | None], extra_lines: list[str] = ()) -> Path:
    """RUN/masks/<id>.png (0/255) and RUN/predictions.jsonl for {sample_id: bool mask | None}."""
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for sid, mask in preds.items():
        rel = None
        box = None
        if mask is not None:
            rel = f"masks/{sid}.png"
            save_mask(run / rel, mask)
            box = ref_tight_box(mask)
        lines.append(json.dumps({"sample_id": sid, "box": box and list(box), "mask": rel, "sam_score": 0.5}))
    (run / "predictions.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return run
