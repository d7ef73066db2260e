"""Where the harness keeps each row's per-sample scores and metrics (docs/reproduce.md):

    RUN/reproduce/rows/<row>/scores.jsonl   one line per scored sample, appended per chunk
    RUN/reproduce/rows/<row>/metrics.json   the evaluator's metrics.json object + the row's settings
    RUN/reproduce/config.json               the harness's settings, every row's, the run, versions
    RUN/reproduce/failures.jsonl            {"sample_id", "row", "error"} of the last pass

A score line is ``{"sample_id", "fp", "s": [box_inter, box_union, box_iou, mask_inter, mask_union,
mask_iou, missing, empty]}`` (the fields of :class:`~rsvg_zeroov.evaluation.scoring.SampleScore`),
plus ``"error"`` when the row failed on the sample (``s`` is then the missing score, IoU 0). ``fp``
is the row's fingerprint (:func:`fingerprint`): lines of other settings are dropped on load, so a
changed row is recomputed and an unchanged one never is. A torn last line (a killed run) is skipped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from ..evaluation.scoring import SampleScore
from ..rundir import RunDir, atomic_write_bytes, load_json, save_json
from .rows import Row

SCORE_FIELDS = tuple(f.name for f in dataclasses.fields(SampleScore))


def reproduce_dir(run: RunDir) -> Path:
    return run.root / "reproduce"


def fingerprint(row: Row, context: dict) -> str:
    """Short hash of the row's settings and the scoring context (protocol, data set, split, root)."""
    blob = json.dumps({"row": row.name, "settings": row.settings(), **context}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def encode_score(score: SampleScore) -> list:
    return [getattr(score, f) for f in SCORE_FIELDS]


def decode_score(values: list) -> SampleScore:
    if not isinstance(values, list) or len(values) != len(SCORE_FIELDS):
        raise ValueError(f"a score has {len(SCORE_FIELDS)} fields, got {values!r}")
    return SampleScore(**dict(zip(SCORE_FIELDS, values)))


@dataclasses.dataclass
class Entry:
    """One sample's score under a row; error: why the row failed on it (score = the missing score)."""

    score: SampleScore
    error: str | None = None


class RowStore:
    """The files of one row under ``RUN/reproduce/rows/<row>/``."""

    def __init__(self, run: RunDir, row: Row, fp: str):
        self.row, self.fp = row, fp
        self.folder = reproduce_dir(run) / "rows" / row.name
        self.scores_path = self.folder / "scores.jsonl"
        self.metrics_path = self.folder / "metrics.json"

    def load(self) -> dict[str, Entry]:
        """The entries of this fingerprint, the last line of a sample winning; lines of other
        settings are removed from the file."""
        if not self.scores_path.is_file():
            return {}
        entries: dict[str, Entry] = {}
        stale = 0
        keep = []
        for line in self.scores_path.read_text().splitlines():
            try:
                obj = json.loads(line)
                if obj.get("fp") != self.fp:
                    stale += 1
                    continue
                entries[str(obj["sample_id"])] = Entry(decode_score(obj["s"]), obj.get("error"))
                keep.append(line)
            except (ValueError, KeyError, TypeError, AttributeError):
                stale += 1  # a torn or foreign line
        if stale:
            atomic_write_bytes(self.scores_path, "".join(ln + "\n" for ln in keep).encode())
        return entries

    def append(self, items: list[tuple[str, Entry]], replace: bool = False) -> None:
        """Append the lines of ``items`` (sample id, entry) in one write (``replace``: the file's
        earlier lines are dropped first, as ``--force`` does at a row's first write)."""
        if not items:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"sample_id": sid, "fp": self.fp, "s": encode_score(e.score),
                                   **({"error": e.error} if e.error else {})}) + "\n" for sid, e in items)
        if replace:
            atomic_write_bytes(self.scores_path, text.encode(), durable=False)
            return
        fd = os.open(self.scores_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def write_metrics(self, metrics: dict) -> None:
        save_json(self.metrics_path, metrics)

    def read_metrics(self) -> dict | None:
        """The row's metrics.json when it was written under this fingerprint, else None."""
        if not self.metrics_path.is_file():
            return None
        try:
            metrics = load_json(self.metrics_path)
        except ValueError:
            return None
        return metrics if metrics.get("fingerprint") == self.fp else None


def write_failures(run: RunDir, failures: list[dict]) -> Path:
    """``RUN/reproduce/failures.jsonl``: the failed (sample, row) pairs of the rows as they stand."""
    path = reproduce_dir(run) / "failures.jsonl"
    atomic_write_bytes(path, "".join(json.dumps(f) + "\n" for f in failures).encode())
    return path
