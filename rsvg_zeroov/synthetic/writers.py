"""One writer per on-disk format of docs/datasets.md, filled with synthetic scenes (scenes.py).

Each writer is ``(out, n, seed, width, height, split) -> SyntheticDataset``: it writes ``n`` samples of
``split`` (plus a few of another split, so split filtering is exercised) under ``out`` and returns
the root to pass as ``--root`` with the listing every sample should produce (``truth``: sample_id,
expression, box XYXY pixels, mask_area, width, height), computed from the scenes, not by reading
the files back. Same arguments -> same bytes.
"""
from __future__ import annotations

import json
import pickle
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .scenes import KINDS, Scene, SceneObject, make_scene


@dataclass(frozen=True)
class SyntheticDataset:
    root: Path  # what to pass as --root
    truth: tuple[dict, ...]  # the expected listing of the written split, in order


def _objects(seed: int, width: int, height: int, max_objects: int = 3) -> Iterator[tuple[int, Scene, SceneObject]]:
    """(scene index, scene, object) for every object of the endless scene stream of ``seed``."""
    i = 0
    while True:
        scene = make_scene(seed, i, width, height, max_objects)
        for obj in scene.objects:
            yield i, scene, obj
        i += 1


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _mask_u8(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255


def _other(split: str) -> str:
    return "train" if split != "train" else "test"


def _truth(sid: str, expression: str, box, area: int | None, w: int, h: int) -> dict:
    return {"sample_id": sid, "expression": expression, "box": None if box is None else [float(v) for v in box],
            "mask_area": area, "width": w, "height": h}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _one_per_scene(seed: int, w: int, h: int, count: int) -> list[tuple[int, Scene, SceneObject]]:
    """The first object of scenes 0..count-1 (formats with one mask file per image)."""
    out = []
    for i in range(count):
        scene = make_scene(seed, i, w, h)
        out.append((i, scene, scene.objects[0]))
    return out


# ------------------------------------------------------------------------------------ RRSIS-D
def _rle_counts(mask: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def _polygon_parts(obj: SceneObject, h: int, w: int) -> tuple[list, int]:
    """The object's box as two polygons (left and right halves) and the area of their union."""
    from pycocotools import mask as mask_utils

    x1, y1, x2, y2 = obj.box
    mid = (x1 + x2 + 1) / 2
    parts = [[x1, y1, mid, y1, mid, y2 + 1, x1, y2 + 1], [mid, y1, x2 + 1, y1, x2 + 1, y2 + 1, mid, y2 + 1]]
    area = int(mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, h, w))).sum())
    return parts, area


def write_rrsisd(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """REFER layout; ref 1 of the split has two sentences, ref 2 a two-part polygon segmentation."""
    img_dir = out / "images" / "rrsisd" / "JPEGImages"
    n_refs, other = max(n - 1, 1), _other(split)
    refs, anns, images, truth = [], [], {}, []
    counts, sent_id = {split: 0, other: 0}, 200
    for j, (i, scene, obj) in enumerate(_objects(seed, w, h)):
        if counts[split] >= n_refs and counts[other] >= 2:
            break
        ref_split = other if (j in (1, 4) or counts[split] >= n_refs) else split
        counts[ref_split] += 1
        if i not in images:
            images[i] = {"id": 1000 + i, "file_name": f"syn_{i:05d}.jpg", "height": h, "width": w}
            _save(img_dir / images[i]["file_name"], scene.image, quality=95)
        if ref_split == split and counts[split] == 2:
            seg, area = _polygon_parts(obj, h, w)
        else:
            seg, area = [{"size": [h, w], "counts": _rle_counts(obj.mask)}], int(obj.mask.sum())
        x1, y1, x2, y2 = obj.box
        cat_id = 1 + KINDS.index(obj.kind)
        anns.append({"id": 5000 + j, "image_id": 1000 + i, "category_id": cat_id, "iscrowd": 0, "area": area,
                     "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1], "segmentation": seg})
        texts = [obj.expression]
        if ref_split == split and counts[split] == 1 and n >= 2:
            texts.append(f"the {obj.kind} {obj.position}")
        sentences = []
        for t in texts:
            sentences.append({"raw": t[0].upper() + t[1:] + ".", "sent": t, "tokens": t.split(), "sent_id": sent_id})
            sent_id += 1
        ref_id = 100 + j
        refs.append({"ref_id": ref_id, "ann_id": 5000 + j, "image_id": 1000 + i, "category_id": cat_id,
                     "split": ref_split, "file_name": images[i]["file_name"], "sentences": sentences,
                     "sent_ids": [s["sent_id"] for s in sentences]})
        if ref_split == split:
            for s in sentences:
                sid = str(ref_id) if len(sentences) == 1 else f"{ref_id}_{s['sent_id']}"
                truth.append(_truth(sid, s["sent"], (x1, y1, x2 + 1, y2 + 1), area, w, h))
    (out / "rrsisd").mkdir(parents=True, exist_ok=True)
    (out / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    categories = [{"id": k + 1, "name": name, "supercategory": "object"} for k, name in
                  enumerate(KINDS)]
    _write_json(out / "rrsisd" / "instances.json",
                {"images": list(images.values()), "annotations": anns, "categories": categories})
    return SyntheticDataset(out, tuple(truth))


def write_rrsisd_zeroov_json(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """The released conversion: rrsisd.json + images/<iid:05d>.jpg + targetmask/<iid:05d>.png."""
    data, truth = {split: [], _other(split): []}, []
    for i, scene, obj in _one_per_scene(seed, w, h, n + 2):
        key = split if i < n else _other(split)
        _save(out / "images" / f"{i:05d}.jpg", scene.image, quality=95)
        _save(out / "targetmask" / f"{i:05d}.png", _mask_u8(obj.mask))
        data[key].append({"iid": i, "refs": [obj.expression, f"the {obj.kind} {obj.position}"],
                          "bbox": list(obj.box)})
        if key == split:
            truth.append(_truth(f"{i:05d}", obj.expression, obj.box, int(obj.mask.sum()), w, h))
    _write_json(out / "rrsisd.json", data)
    return SyntheticDataset(out, tuple(truth))


# ------------------------------------------------------------------------------------ phrase files
def write_risbench(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """img_rgb/<name> + mask/<name> + output_phrase_<split>.txt; names carry their extension."""
    lines, other_lines, truth = [], [], []
    for i, scene, obj in _one_per_scene(seed, w, h, n + 2):
        name = f"{i:05d}_syn.v1.png"
        _save(out / "img_rgb" / name, scene.image)
        _save(out / "mask" / name, _mask_u8(obj.mask))
        (lines if i < n else other_lines).append(f"{name} {obj.expression}")
        if i < n:
            truth.append(_truth(f"{i:06d}", obj.expression, None, int(obj.mask.sum()), w, h))
    _write_lines(out / f"output_phrase_{split}.txt", lines)
    _write_lines(out / f"output_phrase_{_other(split)}.txt", other_lines)
    return SyntheticDataset(out, tuple(truth))


def write_refsegrs(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """images/<id>.tif + masks/<id>.tif (0/255) + output_phrase_<split>.txt."""
    lines, other_lines, truth = [], [], []
    for i, scene, obj in _one_per_scene(seed, w, h, n + 2):
        ident = str(3000 + i)
        _save(out / "images" / f"{ident}.tif", scene.image)
        _save(out / "masks" / f"{ident}.tif", _mask_u8(obj.mask))
        (lines if i < n else other_lines).append(f"{ident} {obj.expression}")
        if i < n:
            truth.append(_truth(f"{i:06d}", obj.expression, None, int(obj.mask.sum()), w, h))
    _write_lines(out / f"output_phrase_{split}.txt", lines)
    _write_lines(out / f"output_phrase_{_other(split)}.txt", other_lines)
    return SyntheticDataset(out, tuple(truth))


# ------------------------------------------------------------------------------------ DIOR / OPT
def _xml(file_name: str, w: int, h: int, objects: list[tuple[str, list[str], str]], shuffled: bool) -> bytes:
    """VOC-style XML; ``shuffled`` writes the children of each <object> and <bndbox> in another order."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for name, coords, description in objects:
        obj = ET.SubElement(root, "object")
        children = [("name", name), ("pose", "Unspecified"), ("bndbox", None), ("description", description)]
        for tag, value in (children[::-1] if shuffled else children):
            el = ET.SubElement(obj, tag)
            if tag != "bndbox":
                el.text = value
                continue
            box = list(zip(("xmin", "ymin", "xmax", "ymax"), coords))
            for btag, bval in (box[::-1] if shuffled else box):
                ET.SubElement(el, btag).text = bval
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _write_rsvg(out: Path, n: int, seed: int, w: int, h: int, split: str, floats: bool) -> SyntheticDataset:
    total_needed = n + max(1, n // 2)
    per_scene: dict[int, list] = {}
    records = []  # global object index -> (expression, box, category)
    for i, scene, obj in _objects(seed, w, h):
        if len(records) >= total_needed and i not in per_scene:
            break
        box = (np.asarray(obj.box) + (0.25, 0.25, 0.75, 0.75)).tolist() if floats else list(obj.box)
        category = obj.kind if floats else obj.kind.replace(" ", "")
        coords = [repr(float(v)) if floats else str(int(v)) for v in box]
        description = obj.expression[0].upper() + obj.expression[1:]
        if i not in per_scene:
            per_scene[i] = []
            _save(out / "JPEGImages" / f"{i:05d}.jpg", scene.image, quality=95)
        per_scene[i].append((category, coords, description))
        records.append((obj.expression, box))
    for i, objects in per_scene.items():
        (out / "Annotations").mkdir(parents=True, exist_ok=True)
        (out / "Annotations" / f"{i:05d}.xml").write_bytes(_xml(f"{i:05d}.jpg", w, h, objects, i % 2 == 1))
    order = np.random.default_rng([seed, 7]).permutation(len(records))
    chosen, rest = order[:n], np.sort(order[n:])
    _write_lines(out / f"{split}.txt", [str(int(k)) for k in chosen])
    _write_lines(out / f"{_other(split)}.txt", [str(int(k)) for k in rest])
    truth = [_truth(str(int(k)), records[k][0], records[k][1], None, w, h) for k in chosen]
    return SyntheticDataset(out, tuple(truth))


def write_dior_rsvg(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """Annotations/<name>.xml + JPEGImages/ + <split>.txt of global object indices; integer boxes."""
    return _write_rsvg(out, n, seed, w, h, split, floats=False)


def write_opt_rsvg(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """As DIOR-RSVG with float boxes and class names with spaces."""
    return _write_rsvg(out, n, seed, w, h, split, floats=True)


# ------------------------------------------------------------------------------------ VRSBench, JSONL
def write_vrsbench(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """VRSBench_EVAL_referring.json (0-100 grid boxes) + Images_val/ (``split`` is not used)."""
    records, truth, saved = [], [], set()
    for j, (i, scene, obj) in zip(range(n), _objects(seed, w, h)):
        name = f"P{i:04d}_0000.png"
        if i not in saved:
            saved.add(i)
            _save(out / "Images_val" / name, scene.image)
        x1, y1, x2, y2 = obj.box
        grid = [min(100, round(v * 100 / s)) for v, s in ((x1, w), (y1, h), (x2 + 1, w), (y2 + 1, h))]
        records.append({"image_id": name, "question": obj.expression, "question_id": 1 + j,
                        "ground_truth": "{" + "".join(f"<{g}>" for g in grid) + "}", "is_unique": True,
                        "obj_cls": obj.kind, "type": "referring"})
        box = (grid[0] * w / 100, grid[1] * h / 100, grid[2] * w / 100, grid[3] * h / 100)
        truth.append(_truth(str(1 + j), obj.expression, box, None, w, h))
    _write_json(out / "VRSBench_EVAL_referring.json", records)
    return SyntheticDataset(out, tuple(truth))


def write_jsonl(out: Path, n: int, seed: int, w: int, h: int, split: str) -> SyntheticDataset:
    """<split>.jsonl with paths relative to it; every third sample has no mask. Root = the file."""
    lines, truth, saved = [], [], set()
    for j, (i, scene, obj) in zip(range(n), _objects(seed, w, h)):
        image = f"images/{i:05d}.png"
        if i not in saved:
            saved.add(i)
            _save(out / image, scene.image)
        rec = {"id": f"syn-{j:04d}", "image": image, "expression": obj.expression, "box": list(obj.box),
               "category": obj.kind}
        if j % 3 != 2:
            rec["mask"] = f"masks/syn-{j:04d}.png"
            _save(out / rec["mask"], _mask_u8(obj.mask))
        lines.append(json.dumps(rec, sort_keys=True))
        truth.append(_truth(rec["id"], obj.expression, obj.box, int(obj.mask.sum()) if "mask" in rec else None, w, h))
    _write_lines(out / f"{split}.jsonl", lines)
    return SyntheticDataset(out / f"{split}.jsonl", tuple(truth))


WRITERS = {
    "rrsisd": write_rrsisd,
    "rrsisd-zeroov-json": write_rrsisd_zeroov_json,
    "risbench": write_risbench,
    "dior_rsvg": write_dior_rsvg,
    "opt_rsvg": write_opt_rsvg,
    "refsegrs": write_refsegrs,
    "vrsbench": write_vrsbench,
    "jsonl": write_jsonl,
}
