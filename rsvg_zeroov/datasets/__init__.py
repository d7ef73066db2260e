"""Data-set loaders behind one interface: ``load_samples(dataset, root, split, **options)``.

Importing this package is light (no torch, no models). Formats: docs/datasets.md.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from importlib import import_module
from typing import Iterator

from .base import Box, DatasetError, MaskSource, Sample

# dataset name -> "module:function"; each function is (root, split, **options) -> list[Sample]
LOADERS = {
    "rrsisd": "rrsisd:load_rrsisd",
    "risbench": "phrase_txt:load_risbench",
    "refsegrs": "phrase_txt:load_refsegrs",
    "dior_rsvg": "rsvg_xml:load_dior_rsvg",
    "opt_rsvg": "rsvg_xml:load_opt_rsvg",
    "vrsbench": "vrsbench:load_vrsbench",
    "jsonl": "jsonl:load_jsonl",
}


def load_samples(dataset: str, root, split: str, **options) -> list[Sample]:
    """All samples of ``dataset``/``split`` under ``root``, in the data set's own order.

    Raises DatasetError (message names the file and the problem) on a malformed data set.
    """
    if dataset not in LOADERS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose from {', '.join(LOADERS)}")
    module, func = LOADERS[dataset].split(":")
    return getattr(import_module(f"{__name__}.{module}"), func)(root, split, **options)


@contextmanager
def notes_muted(muted: bool = True) -> Iterator[None]:
    """Inside the block the loaders' notes (INFO, e.g. RRSIS-D's detected bbox convention) are not
    logged; warnings still are. For a later stage of a run whose first stage already showed them."""
    logger = logging.getLogger(__name__)
    before = logger.level
    if muted:
        logger.setLevel(max(logging.WARNING, before))
    try:
        yield
    finally:
        logger.setLevel(before)


__all__ = ["Box", "DatasetError", "LOADERS", "MaskSource", "Sample", "load_samples", "notes_muted"]
