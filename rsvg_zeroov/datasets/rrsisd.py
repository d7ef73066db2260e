"""RRSIS-D: the official REFER layout and the released code's ``rrsisd.json`` conversion.

REFER layout (``format="refer"``, default; docs/datasets.md)::

    <root>/rrsisd/refs(unc).p        list of refs {ref_id, ann_id, image_id, category_id, split, sentences}
    <root>/rrsisd/instances.json     COCO-style images / annotations / categories
    <root>/images/rrsisd/JPEGImages/<file_name>

The pickle is read with the restricted unpickler (nothing is executed). Each (ref, sentence) is one
sample: ``sample_id`` = ``<ref_id>`` for a one-sentence ref, else ``<ref_id>_<sent_id>``;
expression = ``sent`` lower-cased, ``raw`` kept in ``raw_expression``. Masks are the OR of the
annotation's compressed-RLE / polygon parts (validated here so decoding can never overrun).

The ``bbox`` convention of instances.json is undocumented: ``bbox_format="auto"`` compares both
readings with the tight box of the decoded masks (:func:`detect_bbox_format`), logs the choice (INFO,
once per process and instances file; see :func:`rsvg_zeroov.datasets.notes_muted`), and records it
in every sample's ``extra["bbox_format"]``; ``"xywh"`` or ``"xyxy"`` forces it.

Released conversion (``format="zeroov-json"``): ``<root>/rrsisd.json`` {split: [{iid, refs, bbox}]},
``<root>/images/<iid:05d>.jpg``, ``<root>/targetmask/<iid:05d>.png``; ``sample_id`` = ``<iid:05d>``,
expression = ``refs[0]``, bbox XYXY.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Box, DatasetError, MaskSource, Sample
from .coco_seg import coco_parts
from .files import (annotated_hw, check_unique, expect, image_hw, number, read_json, require_file, text,
                    xyxy_box)
from .safe_pickle import load_restricted

FORMATS = ("refer", "zeroov-json")
BBOX_FORMATS = ("auto", "xywh", "xyxy")
log = logging.getLogger(__name__)
_NOTED: set[tuple[str, str]] = set()  # (instances.json, detected format) already logged by this process
DETECT_MAX_ANNOTATIONS = 32  # masks decoded to detect the bbox convention (first ones of the split)


@dataclass(frozen=True)
class BboxDetection:
    """Which reading of instances.json ``bbox`` matches the masks (mean IoU with their tight boxes)."""

    bbox_format: str  # "xywh" | "xyxy"
    iou_xywh: float
    iou_xyxy: float
    n_annotations: int


def load_rrsisd(root, split: str, format: str | None = None, bbox_format: str | None = None) -> list[Sample]:
    """Samples of RRSIS-D ``split`` (see module doc for the layouts and options)."""
    fmt = format or "refer"
    bbox_format = bbox_format or "auto"
    if fmt not in FORMATS:
        raise DatasetError(f"{root}: unknown RRSIS-D format {fmt!r}; choose from {', '.join(FORMATS)}")
    if bbox_format not in BBOX_FORMATS:
        raise DatasetError(f"{root}: unknown bbox format {bbox_format!r}; choose from {', '.join(BBOX_FORMATS)}")
    if fmt == "zeroov-json":
        if bbox_format == "xywh":
            raise DatasetError(f"{Path(root) / 'rrsisd.json'}: the zeroov-json boxes are XYXY; "
                               "--bbox-format xywh applies to the refer format only")
        return _load_zeroov_json(Path(root), split)
    return _load_refer(Path(root), split, bbox_format)


# ------------------------------------------------------------------------------------ REFER layout
@dataclass(frozen=True)
class _Pending:
    """One sample before the bbox convention is decided; ``bbox`` is the raw 4-vector."""

    sample_id: str
    image_path: Path
    expression: str
    raw: str
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    mask: MaskSource
    category: str | None
    ids: tuple[tuple[str, Any], ...]


def _load_refer(root: Path, split: str, bbox_format: str) -> list[Sample]:
    refs_path = root / "rrsisd" / "refs(unc).p"
    inst_path = root / "rrsisd" / "instances.json"
    image_dir = root / "images" / "rrsisd" / "JPEGImages"
    require_file(refs_path, "RRSIS-D refs pickle (REFER layout: <root>/rrsisd/refs(unc).p; "
                 "for the released conversion use --format zeroov-json)")
    refs = load_restricted(refs_path)
    expect(isinstance(refs, list), refs_path, f"expected a list of refs, got {type(refs).__name__}")
    images, anns, cats = _index_instances(read_json(inst_path), inst_path)
    chosen = _split_refs(refs, split, refs_path)
    pending = []
    for ref in chosen:
        pending.extend(_ref_samples(ref, refs_path, inst_path, image_dir, images, anns, cats))
    check_unique((p.sample_id for p in pending), refs_path)
    if bbox_format != "auto":
        return [_finish(p, bbox_format, inst_path) for p in pending]
    det = detect_bbox_format(pending)
    samples = [_finish(p, det.bbox_format, inst_path) for p in pending]
    _note_detection(inst_path, det)
    return samples


def _note_detection(inst_path: Path, det: BboxDetection) -> None:
    key = (str(inst_path.resolve()), det.bbox_format)
    if key in _NOTED or not log.isEnabledFor(logging.INFO):  # muted: the next unmuted load notes it
        return
    _NOTED.add(key)
    log.info("rrsisd: %s: bbox convention detected as %s (mean IoU with the masks' tight boxes: xywh %.3f, "
             "xyxy %.3f, over %d annotations); force with --bbox-format xywh|xyxy", inst_path, det.bbox_format,
             det.iou_xywh, det.iou_xyxy, det.n_annotations)


def _index_instances(inst: Any, path: Path) -> tuple[dict, dict, dict]:
    """``instances.json`` -> (images by id, annotations by id, category names by id)."""
    expect(isinstance(inst, dict), path, "expected a JSON object with images, annotations, categories")
    out = []
    for key in ("images", "annotations", "categories"):
        items = inst.get(key, [] if key == "categories" else None)
        expect(isinstance(items, list), path, f"'{key}' must be a list")
        by_id = {}
        for i, item in enumerate(items):
            expect(isinstance(item, dict) and "id" in item, path, f"{key}[{i}] must be an object with an 'id'")
            by_id[_hashable(item["id"])] = item
        out.append(by_id)
    cats = {k: v.get("name") for k, v in out[2].items()}
    return out[0], out[1], cats


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (int, str, float)) or value is None else repr(value)


def _split_refs(refs: list, split: str, path: Path) -> list[dict]:
    present, chosen = set(), []
    for i, ref in enumerate(refs):
        expect(isinstance(ref, dict), path, f"ref #{i} is a {type(ref).__name__}, expected a dict")
        present.add(str(ref.get("split")))
        if ref.get("split") == split:
            chosen.append(ref)
    if not chosen:
        raise DatasetError(f"{path}: no refs with split {split!r}; splits present: "
                           f"{', '.join(sorted(present)) or 'none'}")
    return chosen


def _ref_samples(ref: dict, refs_path: Path, inst_path: Path, image_dir: Path,
                 images: dict, anns: dict, cats: dict) -> list[_Pending]:
    ref_id = ref.get("ref_id")
    where = f"ref {ref_id!r}"
    expect(isinstance(ref_id, int) and not isinstance(ref_id, bool), refs_path, f"{where}: ref_id must be an int")
    ann = anns.get(_hashable(ref.get("ann_id")))
    expect(ann is not None, inst_path, f"{where}: annotation {ref.get('ann_id')!r} is not in 'annotations'")
    image_id = ref.get("image_id", ann.get("image_id"))
    img = images.get(_hashable(image_id))
    expect(img is not None, inst_path, f"{where}: image {image_id!r} is not in 'images'")
    h, w = annotated_hw(img.get("width"), img.get("height"), inst_path, f"image {image_id!r}")
    file_name = text(img.get("file_name"), inst_path, f"image {image_id!r} file_name")
    image_path = require_file(image_dir / file_name, "image file")
    bbox = ann.get("bbox")
    expect(isinstance(bbox, list) and len(bbox) == 4, inst_path,
           f"annotation {ann['id']!r}: bbox must be a list of 4 numbers, got {bbox!r}")
    bbox = tuple(number(v, inst_path, f"annotation {ann['id']!r} bbox") for v in bbox)
    mask = MaskSource("coco", segmentation=coco_parts(ann.get("segmentation"), h, w, inst_path,
                                                      f"annotation {ann['id']!r} segmentation"))
    cat_id = ref.get("category_id", ann.get("category_id"))
    category = cats.get(_hashable(cat_id))
    sentences = ref.get("sentences")
    expect(isinstance(sentences, list) and sentences, refs_path, f"{where}: 'sentences' must be a non-empty list")
    out = []
    for j, sent in enumerate(sentences):
        expect(isinstance(sent, dict), refs_path, f"{where}: sentence #{j} must be a dict")
        sent_id = sent.get("sent_id")
        expect(isinstance(sent_id, int) and not isinstance(sent_id, bool), refs_path,
               f"{where}: sentence #{j} sent_id must be an int, got {sent_id!r}")
        words = sent.get("sent", sent.get("raw"))
        expression = text(words, refs_path, f"{where} sentence {sent_id}").lower()
        raw = sent.get("raw") if isinstance(sent.get("raw"), str) else words
        sid = str(ref_id) if len(sentences) == 1 else f"{ref_id}_{sent_id}"
        ids = (("ref_id", ref_id), ("sent_id", sent_id), ("ann_id", _hashable(ann["id"])),
               ("image_id", _hashable(image_id)))
        out.append(_Pending(sid, image_path, expression, raw, w, h, bbox, mask,
                            category if isinstance(category, str) else None, ids))
    return out


def _finish(p: _Pending, bbox_format: str, inst_path: Path) -> Sample:
    box = _to_xyxy(p.bbox, bbox_format)
    box = xyxy_box(box, inst_path, f"annotation {dict(p.ids)['ann_id']!r} bbox read as {bbox_format}")
    return Sample(p.sample_id, p.image_path, p.expression, p.width, p.height, box=box, mask=p.mask,
                  category=p.category, raw_expression=p.raw,
                  extra=p.ids + (("bbox_format", bbox_format),))


def _to_xyxy(bbox: tuple[float, float, float, float], bbox_format: str) -> Box:
    x, y, a, b = bbox
    return (x, y, x + a, y + b) if bbox_format == "xywh" else (x, y, a, b)


# ------------------------------------------------------------------------------------ bbox convention
def detect_bbox_format(samples: list, max_annotations: int = DETECT_MAX_ANNOTATIONS) -> BboxDetection:
    """Compare the xywh and xyxy readings of each raw ``bbox`` with its mask's tight box.

    ``samples`` carry ``bbox`` (raw 4-vector), ``mask``, ``width``, ``height``; the first
    ``max_annotations`` distinct masks with foreground are decoded. The reading with the higher
    mean IoU wins; ties (including no usable mask) fall back to COCO's xywh.
    """
    scores = {"xywh": [], "xyxy": []}
    seen = set()
    for p in samples:
        if p.mask in seen or len(seen) >= max_annotations:
            continue
        seen.add(p.mask)
        tight = _tight_box(p.mask.decode(p.height, p.width))
        if tight is None:
            continue
        for fmt in scores:
            scores[fmt].append(_iou(_to_xyxy(p.bbox, fmt), tight))
    mean = {k: float(np.mean(v)) if v else 0.0 for k, v in scores.items()}
    best = "xyxy" if mean["xyxy"] > mean["xywh"] else "xywh"
    return BboxDetection(best, mean["xywh"], mean["xyxy"], len(scores["xywh"]))


def _tight_box(mask: np.ndarray) -> Box | None:
    """Tight box of a bool (H, W) mask as pixel edges [x_min, y_min, x_max + 1, y_max + 1], or None."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _iou(a: Box, b: Box) -> float:
    """IoU of two continuous XYXY boxes (0 for an inverted box)."""
    if a[2] < a[0] or a[3] < a[1]:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ------------------------------------------------------------------------------------ zeroov-json
def _load_zeroov_json(root: Path, split: str) -> list[Sample]:
    path = root / "rrsisd.json"
    data = read_json(path, "RRSIS-D conversion file (<root>/rrsisd.json)")
    expect(isinstance(data, dict), path, "expected a JSON object {split: [entries]}")
    if split not in data:
        present = ", ".join(sorted(map(str, data))) or "none"
        raise DatasetError(f"{path}: no split {split!r}; splits present: {present}")
    entries = data[split]
    expect(isinstance(entries, list), path, f"split {split!r} must be a list of entries")
    samples = []
    for i, e in enumerate(entries):
        where = f"{split}[{i}]"
        expect(isinstance(e, dict), path, f"{where} must be an object {{iid, refs, bbox}}")
        iid = e.get("iid")
        expect(isinstance(iid, int) and not isinstance(iid, bool) and iid >= 0, path,
               f"{where}: iid must be a non-negative integer, got {iid!r}")
        sid = f"{iid:05d}"
        refs = e.get("refs")
        expect(isinstance(refs, list) and refs, path, f"{where}: refs must be a non-empty list of strings")
        expression = text(refs[0], path, f"{where} refs[0]")
        image = root / "images" / f"{sid}.jpg"
        h, w = image_hw(image)
        mask_path = require_file(root / "targetmask" / f"{sid}.png", "ground-truth mask file")
        box = xyxy_box(e.get("bbox"), path, f"{where} bbox")
        samples.append(Sample(sid, image, expression, w, h, box=box, mask=MaskSource("image", mask_path),
                              raw_expression=refs[0], extra=(("iid", iid),)))
    check_unique((s.sample_id for s in samples), path)
    return samples
