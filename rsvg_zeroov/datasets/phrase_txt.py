"""RISBench and RefSegRS: ``output_phrase_<split>.txt`` files of ``"<name> <expression>"`` lines.

Each line is split on its FIRST space: the token before is the image name, the rest (stripped) the
expression, kept as written. ``sample_id`` = the 0-based line number, zero-padded to 6 digits (blank
lines are skipped but still counted, so ids stay tied to the file's lines).

RISBench::                                   RefSegRS::

    <root>/img_rgb/<filename>                    <root>/images/<id>.tif
    <root>/mask/<filename>                       <root>/masks/<id>.tif        (0/255)
    <root>/output_phrase_<split>.txt             <root>/output_phrase_<split>.txt

The RISBench filename token carries its extension and is used verbatim; RefSegRS ids get ``.tif``.
Masks: foreground = value > 0. Width and height come from the image header.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import DatasetError, MaskSource, Sample
from .files import (check_unique, image_hw, read_text, reject_options, require_file,
                    split_files_present)

PREFIX, SUFFIX = "output_phrase_", ".txt"


def load_risbench(root, split: str, **options) -> list[Sample]:
    """RISBench ``split`` (the public release has ``train`` and ``test``)."""
    reject_options(options, root, "risbench")
    root = Path(root)
    return _load(root, split, lambda name: (root / "img_rgb" / name, root / "mask" / name))


def load_refsegrs(root, split: str, **options) -> list[Sample]:
    """RefSegRS ``split``: images/<id>.tif and masks/<id>.tif."""
    reject_options(options, root, "refsegrs")
    root = Path(root)
    return _load(root, split, lambda name: (root / "images" / f"{name}.tif", root / "masks" / f"{name}.tif"))


def split_file(root: Path, split: str) -> Path:
    """``<root>/output_phrase_<split>.txt``; a missing one is an error naming the splits present."""
    path = root / f"{PREFIX}{split}{SUFFIX}"
    if not path.is_file():
        present = split_files_present(root, f"{PREFIX}*{SUFFIX}", PREFIX, SUFFIX)
        raise DatasetError(f"{path}: split file is missing; splits present under {root}: {present}")
    return path


def _load(root: Path, split: str, locate: Callable[[str], tuple[Path, Path]]) -> list[Sample]:
    path = split_file(root, split)
    sizes: dict = {}
    samples = []
    for lineno, line in enumerate(read_text(path).split("\n")):
        if not line.strip():
            continue
        name, sep, expression = line.strip().partition(" ")
        expression = expression.strip()
        if not sep or not expression:
            raise DatasetError(f"{path}: line {lineno + 1}: expected '<image name> <expression>', got {line!r}")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise DatasetError(f"{path}: line {lineno + 1}: image name {name!r} leaves the data set folder")
        image, mask = locate(name)
        h, w = image_hw(image, sizes)
        require_file(mask, "ground-truth mask file")
        samples.append(Sample(f"{lineno:06d}", image, expression, w, h, box=None,
                              mask=MaskSource("image", mask), raw_expression=expression,
                              extra=(("image_name", name),)))
    check_unique((s.sample_id for s in samples), path)
    if not samples:
        raise DatasetError(f"{path}: split file has no samples")
    return samples
