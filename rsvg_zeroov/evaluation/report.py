"""Markdown reports of metrics.json objects, the paper's published numbers, and run comparisons.

The paper's numbers live in one file, ``docs/paper-results.md`` (:data:`PAPER_DOC`), read by
:func:`paper_numbers`; :data:`PAPER_RESULTS` is its RSVG-ZeroOV rows as the evaluator prints them.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .protocols import SWEEP, get_protocol, pr_key

log = logging.getLogger(__name__)
PAPER_DOC = Path(__file__).resolve().parents[2] / "docs" / "paper-results.md"
PAPER_SPLIT = "test"
PAPER_PROTOCOL = "zeroov"
OURS = "rsvg-zeroov"  # the row of the method itself in every table of the paper-results file
DEFAULT_COMPARE = ("rsrec.Pr@0.5", "rsrec.mIoU", "rsres.Pr@0.5", "rsres.mIoU")
TASK_LABEL = {"rsrec": "RSREC (box)", "rsres": "RSRES (mask)"}
METRIC_KEYS = [f"{task}.{key}" for task in TASK_LABEL for key in ("mIoU", "oIoU", *map(pr_key, SWEEP))]


@dataclass(frozen=True)
class PaperRow:
    """One row of a table of docs/paper-results.md. values: ``"rsrec.Pr@0.5"``-style key -> percent
    (keys the paper does not report are absent)."""

    table: str
    dataset: str
    row: str
    name: str
    values: dict = field(default_factory=dict)


def _column_key(header: str) -> str | None:
    """``"RSREC Pr@0.5"`` -> ``"rsrec.Pr@0.5"``; None for a column that is not a metric."""
    task, _, key = header.strip().partition(" ")
    key = f"{task.lower()}.{key.strip()}"
    return key if key in METRIC_KEYS else None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_paper_results(text: str, source: str = "paper results") -> list[PaperRow]:
    """Every row of the first markdown table under each ``## <name> table`` heading of ``text``
    (the format docs/paper-results.md describes). Raises ValueError naming ``source`` and the line
    on a malformed table."""
    rows: list[PaperRow] = []
    table, header = None, None
    for lineno, line in enumerate(text.splitlines(), start=1):
        heading = re.match(r"^##\s+(.*?)\s+table\s*$", line, re.I)
        if heading:
            table, header = heading.group(1).strip().lower(), None
            continue
        if line.startswith("#"):
            table = None
        if table is None or not line.lstrip().startswith("|"):
            if header is not None and not line.strip():
                table = None  # the first table of the section is over
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            if "data set" not in header or "row" not in header:
                raise ValueError(f"{source}:{lineno}: a table needs 'data set' and 'row' columns, got {header}")
            continue
        if set(line.replace("|", "").strip()) <= set("-: "):
            continue  # the separator line
        if len(cells) != len(header):
            raise ValueError(f"{source}:{lineno}: {len(cells)} cells, the header has {len(header)}")
        values = {}
        for head, cell in zip(header, cells):
            key = _column_key(head)
            if key is None or cell in ("–", "-", ""):
                continue
            try:
                values[key] = float(cell)
            except ValueError:
                raise ValueError(f"{source}:{lineno}: {head} = {cell!r} is not a number or '–'") from None
        by = dict(zip(header, cells))
        rows.append(PaperRow(table, by["data set"], by["row"], by.get("the paper's name", by["row"]), values))
    return rows


@lru_cache(maxsize=4)
def paper_numbers(path: str | None = None) -> tuple[PaperRow, ...]:
    """The rows of docs/paper-results.md (or ``path``); () with a warning when the file is absent
    (a package installed without the repository's docs)."""
    doc = Path(path) if path is not None else PAPER_DOC
    try:
        text = doc.read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("the paper's numbers are not available: %s (%s)", doc, exc.strerror or exc)
        return ()
    return tuple(parse_paper_results(text, str(doc)))


def paper_values(table: str, dataset: str | None, row: str) -> dict:
    """``{"rsrec.Pr@0.5": ..}`` the paper reports for ``row`` of ``table`` on ``dataset`` ({} if none)."""
    for r in paper_numbers():
        if r.table == table and r.dataset == dataset and r.row == row:
            return dict(r.values)
    return {}


def _evaluator_rows() -> dict[str, dict[str, dict[str, float]]]:
    """The main table's RSVG-ZeroOV rows as ``{dataset: {"rsrec": {"Pr@0.5": ..}, "rsres": {..}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in paper_numbers():
        if r.table == "main" and r.row == OURS:
            for key, value in r.values.items():
                task, _, name = key.partition(".")
                out.setdefault(r.dataset, {}).setdefault(task, {})[name] = value
    return out


# docs/paper-results.md, main table, row rsvg-zeroov: test splits, with SAM refinement, zeroov protocol.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = _evaluator_rows()


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(metrics: dict) -> str:
    """One row per task (RSREC, RSRES) with every threshold, mIoU and oIoU."""
    keys = [pr_key(t) for t in SWEEP] + ["mIoU", "oIoU"]
    rows = [[TASK_LABEL[task], metrics.get(f"{task}_n", metrics["n"]), *(metrics[task][k] for k in keys)]
            for task in ("rsrec", "rsres") if task in metrics]
    return _table(["task", "n", *keys], rows)


def category_table(metrics: dict) -> str:
    """Per-category RSREC/RSRES Pr@0.5 and mIoU; '' when the data set has no categories."""
    cats = metrics.get("per_category") or {}
    if not cats:
        return ""
    masks = "rsres" in metrics
    header = ["category", "n", "RSREC Pr@0.5", "RSREC mIoU"] + (["RSRES Pr@0.5", "RSRES mIoU"] if masks else [])
    rows = []
    for name, m in cats.items():
        row = [name, m["n"], m["rsrec"]["Pr@0.5"], m["rsrec"]["mIoU"]]
        if masks:
            res = m.get("rsres")
            row += [res["Pr@0.5"] if res else None, res["mIoU"] if res else None]
        rows.append(row)
    return _table(header, rows)


def paper_table(metrics: dict) -> str:
    """Ours beside the paper's numbers (rrsisd and risbench only; '' elsewhere)."""
    paper = PAPER_RESULTS.get(metrics.get("dataset"))
    if not paper:
        return ""
    rows = []
    for task, vals in paper.items():
        for key, ref in vals.items():
            ours = metrics.get(task, {}).get(key)
            rows.append([f"{TASK_LABEL[task]} {key}", ours, ref, None if ours is None else ours - ref])
    notes = []
    if metrics.get("split") != PAPER_SPLIT:
        notes.append(f"the paper reports the {PAPER_SPLIT} split, this is {metrics.get('split')}")
    if metrics.get("protocol") != PAPER_PROTOCOL:
        notes.append(f"the paper uses the {PAPER_PROTOCOL} protocol, this is {metrics.get('protocol')}")
    if metrics.get("missing"):
        notes.append(f"{metrics['missing']} samples had no prediction")
    note = f"\n\nNote: {'; '.join(notes)}." if notes else ""
    return _table(["metric", "ours", "paper (docs/paper-results.md)", "ours − paper"], rows) + note


def render(metrics: dict) -> str:
    """The full markdown report the evaluator prints."""
    head = (f"## {metrics['dataset']} / {metrics['split']}: n = {metrics['n']}, missing = {metrics['missing']}, "
            f"protocol = {metrics['protocol']}")
    parts = [head, metrics_table(metrics)]
    try:
        parts.append(get_protocol(metrics["protocol"]).describe())
    except ValueError:
        pass
    for title, body in (("Paper (RSVG-ZeroOV, with SAM refinement)", paper_table(metrics)),
                        ("Per category", category_table(metrics))):
        if body:
            parts += [f"### {title}", body]
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------ comparison
def lookup(metrics: dict, key: str):
    """``"rsrec.Pr@0.5"`` -> metrics["rsrec"]["Pr@0.5"]; a top-level key like ``"n"`` too; None if absent."""
    task, _, name = key.partition(".")
    if name and task in TASK_LABEL:
        return (metrics.get(task) or {}).get(name)
    return metrics.get(key)


def compare_table(runs: Sequence[tuple[str, dict]], keys: Sequence[str] | None = None) -> str:
    """One markdown table: a row per run (name, dataset/split, protocol, n, missing, then ``keys``)."""
    keys = list(keys or DEFAULT_COMPARE)
    header = ["run", "data", "protocol", "n", "missing", *keys]
    rows = [[name, f"{m.get('dataset')}/{m.get('split')}", m.get("protocol"), m.get("n"), m.get("missing"),
             *(lookup(m, k) for k in keys)] for name, m in runs]
    table = _table(header, rows)
    if len({(m.get("protocol"), m.get("dataset"), m.get("split")) for _, m in runs}) > 1:
        table += "\n\nNote: the runs differ in protocol or data set; their numbers are not directly comparable."
    return table


# ------------------------------------------------------------------------------------ ours beside the paper
def metric_label(key: str) -> str:
    """``"rsrec.Pr@0.5"`` -> ``"RSREC Pr@0.5"`` (the column names of docs/paper-results.md)."""
    task, _, name = key.partition(".")
    return f"{task.upper()} {name}" if name else key


def run_status(metrics: dict) -> str:
    """``"ok"``, or ``"ok, N failed"`` when N samples failed (a harness row's ``failed``, a run's
    ``missing``)."""
    failed = metrics.get("failed", metrics.get("missing")) or 0
    return f"ok, {failed} failed" if failed else "ok"


def row_label(metrics: dict, name: str) -> str:
    """The first cell of a :func:`row_table` line: the row's label and, in code, its name."""
    return f"{metrics.get('label') or name} `{metrics.get('row') or name}`"


def row_table(entries: Sequence[tuple[str, dict | None, dict, str]], keys: Sequence[str] | None = None) -> str:
    """One markdown table, a row per entry ``(label, metrics or None, paper values, status)``: each
    metric of ``keys`` (ours, then the paper's ``{"rsrec.Pr@0.5": ..}`` value), then n, empty
    predictions, failed samples and the status. ``python -m rsvg_zeroov.reproduce`` writes its
    tables with it, and ``eval/compare.py --paper TABLE`` prints the same rows."""
    keys = list(keys or DEFAULT_COMPARE)
    header = ["row", *(h for k in keys for h in (metric_label(k), "paper")), "n", "empty", "failed", "status"]
    rows = []
    for label, metrics, paper, status in entries:
        m = metrics or {}
        failed = m.get("failed", m.get("missing")) if metrics else None
        rows.append([label, *(v for k in keys for v in (lookup(m, k) if metrics else None, paper.get(k))),
                     m.get("n"), m.get("empty_predictions"), failed, status])
    return _table(header, rows)
