"""Markdown reports of metrics.json objects, the paper's published numbers, and run comparisons."""
from __future__ import annotations

from typing import Sequence

from .protocols import SWEEP, get_protocol, pr_key

# docs/method.md, "Published numbers to reproduce": test splits, with SAM refinement, released (zeroov) protocol. Percentages.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "rrsisd": {"rsrec": {"Pr@0.5": 31.39, "mIoU": 34.49}, "rsres": {"Pr@0.5": 27.39, "mIoU": 28.35}},
    "risbench": {"rsrec": {"Pr@0.5": 38.90, "mIoU": 38.87}, "rsres": {"Pr@0.5": 31.03, "mIoU": 31.84}},
}
PAPER_SPLIT = "test"
PAPER_PROTOCOL = "zeroov"
DEFAULT_COMPARE = ("rsrec.Pr@0.5", "rsrec.mIoU", "rsres.Pr@0.5", "rsres.mIoU")
TASK_LABEL = {"rsrec": "RSREC (box)", "rsres": "RSRES (mask)"}


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
    return _table(["metric", "ours", "paper (docs/method.md)", "ours − paper"], rows) + note


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
