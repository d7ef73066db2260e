"""DIOR-RSVG and OPT-RSVG: one VOC-style XML per image, split files of global object indices.

Layout (both data sets, docs/datasets.md)::

    <root>/Annotations/<name>.xml   <annotation><filename/> and one <object> per referred object:
                                    <name>, <pose>, <bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>, <description>
    <root>/JPEGImages/<filename>
    <root>/<split>.txt              one 0-based integer per line

The integers index ONE running count of ``<object>`` elements over all XML files taken in sorted
path order; ``sample_id`` is that global index, samples come in split-file order. Children are
read by tag name (their order does not matter). Expressions (``<description>``) are lower-cased;
``category`` is ``<name>`` (OPT-RSVG class names contain spaces). Boxes are XYXY pixels as written:
integers in DIOR-RSVG, floats in OPT-RSVG (both returned as float). Width/height: image header.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .base import DatasetError, Sample
from .files import (check_unique, expect, image_hw, number, read_text, reject_options,
                    split_files_present, text, xyxy_box)

BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def load_dior_rsvg(root, split: str, **options) -> list[Sample]:
    """DIOR-RSVG ``split`` (train / val / test)."""
    reject_options(options, root, "dior_rsvg")
    return _load(Path(root), split)


def load_opt_rsvg(root, split: str, **options) -> list[Sample]:
    """OPT-RSVG ``split`` (train / val / test); same layout and indexing as DIOR-RSVG."""
    reject_options(options, root, "opt_rsvg")
    return _load(Path(root), split)


def read_split_indices(path: Path) -> list[tuple[int, int]]:
    """``(line number, object index)`` for every non-blank line of a split file."""
    out = []
    for lineno, line in enumerate(read_text(path, "split file").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            idx = int(line.strip())
        except ValueError:
            raise DatasetError(f"{path}: line {lineno}: expected one object index (an integer), "
                               f"got {line.strip()!r}") from None
        expect(idx >= 0, path, f"line {lineno}: object index {idx} is negative")
        out.append((lineno, idx))
    return out


def parse_xml(path: Path) -> ET.Element:
    """The root element of an annotation XML; a syntax error names the line and column."""
    data = path.read_bytes()
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: malformed XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # unknown or unsupported encoding declaration
        raise DatasetError(f"{path}: unreadable XML ({exc})") from None


def _load(root: Path, split: str) -> list[Sample]:
    ann_dir, split_path = root / "Annotations", root / f"{split}.txt"
    if not split_path.is_file():
        present = split_files_present(root, "*.txt", "", ".txt")
        raise DatasetError(f"{split_path}: split file is missing; splits present under {root}: {present}")
    wanted = read_split_indices(split_path)
    if not ann_dir.is_dir():
        raise DatasetError(f"{ann_dir}: annotation folder is missing (expected <root>/Annotations/*.xml)")
    objects, total = _collect_objects(sorted(ann_dir.glob("*.xml"), key=str), {i for _, i in wanted})
    sizes: dict = {}
    samples = []
    for lineno, idx in wanted:
        if idx not in objects:
            raise DatasetError(f"{split_path}: line {lineno}: object index {idx} is out of range: "
                               f"the XML files under {ann_dir} hold {total} <object> elements")
        xml_path, xml_root, k, obj = objects[idx]
        samples.append(_sample(idx, xml_path, xml_root, k, obj, root / "JPEGImages", sizes))
    check_unique((s.sample_id for s in samples), split_path)
    return samples


def _collect_objects(xml_files: list[Path], needed: set[int]) -> tuple[dict, int]:
    """({global index: (xml path, root element, index in file, <object>)} for the needed indices,
    number of objects seen). Parsing stops after the largest needed index.
    """
    out: dict = {}
    total, last = 0, max(needed, default=-1)
    for path in xml_files:
        if total > last:
            break
        xml_root = parse_xml(path)
        for k, obj in enumerate(xml_root.findall("object")):
            if total in needed:
                out[total] = (path, xml_root, k, obj)
            total += 1
    return out, total


def _child_text(elem: ET.Element, tag: str, path: Path, where: str) -> str:
    child = elem.find(tag)
    expect(child is not None and child.text is not None and child.text.strip() != "", path,
           f"{where}: <{tag}> is missing or empty")
    return child.text.strip()


def _sample(idx: int, path: Path, xml_root: ET.Element, k: int, obj: ET.Element,
            image_dir: Path, sizes: dict) -> Sample:
    where = f"<object> #{k}"
    file_name = _child_text(xml_root, "filename", path, "<annotation>")
    if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        raise DatasetError(f"{path}: <filename> {file_name!r} leaves the data set folder")
    bndbox = obj.find("bndbox")
    expect(bndbox is not None, path, f"{where}: <bndbox> is missing")
    coords = [number(_child_text(bndbox, t, path, f"{where} <bndbox>"), path, f"{where} <{t}>") for t in BOX_TAGS]
    box = xyxy_box(coords, path, f"{where} <bndbox>")
    raw = text(_child_text(obj, "description", path, where), path, f"{where} <description>")
    category = _child_text(obj, "name", path, where)
    h, w = image_hw(image_dir / file_name, sizes)
    return Sample(str(idx), image_dir / file_name, raw.lower(), w, h, box=box, mask=None,
                  category=category, raw_expression=raw,
                  extra=(("xml", path.name), ("object_in_file", k)))
