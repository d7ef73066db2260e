"""``RUN/tables/<table>.md`` and ``.csv``: our rows beside the paper's (docs/paper-results.md).

The markdown rows are rendered by :func:`rsvg_zeroov.evaluation.report.row_table` from each row's
metrics.json (the same function ``eval/compare.py --paper TABLE`` uses), so the tables, the rows'
metrics.json files and ``eval/compare.py`` show the same numbers. The sensitivity table is the
sweep's own table (:func:`rsvg_zeroov.evolve.sweep.render_markdown`).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from ..evaluation.report import (DEFAULT_COMPARE, METRIC_KEYS, lookup, paper_numbers, paper_values, row_label,
                                 row_table, run_status)
from ..rundir import RunDir, atomic_write_bytes, load_json
from .rows import LAYOUT, SENSITIVITY_PREFIX

NOT_IMPLEMENTED = "not run: not implemented here (the paper's number only)"
TITLES = {"main": "Main table: RSVG-ZeroOV and the zero-shot baselines",
          "ablation": "Ablation table", "sensitivity": "Sensitivity: K / tau / alpha (no refinement)"}


def tables_dir(run: RunDir) -> Path:
    return run.root / "tables"


def stand_in_note(run: RunDir, samples_hint: Sequence[str]) -> str:
    """A warning line when the dumps come from the tiny random-weight stand-in models, else ''."""
    for sid in samples_hint[:1]:
        for path in (run.overview_json(sid), run.focus_file(sid, "meta.json")):
            try:
                if str(load_json(path).get("model_key") or "").startswith("tiny"):
                    return ("> **RANDOM-WEIGHT STAND-IN MODELS** (`tiny*`): these numbers only show that the "
                            "harness ran; they say nothing about the method. The paper's column is the paper's.\n")
            except ValueError:
                continue
    return ""


def _status(state) -> str:
    return state.reason or run_status(state.metrics)


def table_entries(table: str, states: dict, dataset: str) -> list[tuple[str, str, dict | None, dict, str]]:
    """(row name, label, metrics or None, paper values, status) per line of ``table``: our layout,
    then the paper's rows this project does not compute."""
    out = []
    for name, label in LAYOUT[table]:
        state = states[name]
        shown = row_label({"label": label or state.row.label, "row": name}, name)
        out.append((name, shown, state.metrics, paper_values(table, dataset, name), _status(state)))
    ours = {name for name, _ in LAYOUT[table]}
    for prow in paper_numbers():
        if prow.table == table and prow.dataset == dataset and prow.row not in ours:
            out.append((prow.row, row_label({"label": prow.name, "row": prow.row}, prow.row), None,
                        dict(prow.values), NOT_IMPLEMENTED))
    return out


def _csv(rows: Sequence[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["row"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _header(table: str, dataset: str, split: str, protocol: str, n: int, note: str) -> str:
    lines = [f"# {TITLES[table]}", "",
             f"{dataset} / {split}, protocol {protocol}, {n} samples; percentages. Ours from "
             "`RUN/reproduce/rows/<row>/metrics.json`; `paper`: docs/paper-results.md (`–`: not "
             "reported). A failed sample counts as IoU 0 (`failed`); `empty`: empty predictions.", ""]
    return "\n".join(lines) + (note + "\n" if note else "")


def write_table(run: RunDir, table: str, states: dict, dataset: str, split: str, protocol: str, n: int,
                note: str) -> list[Path]:
    """Write ``RUN/tables/<table>.md`` and ``.csv``; returns their paths."""
    out = tables_dir(run)
    entries = table_entries(table, states, dataset)
    md = _header(table, dataset, split, protocol, n, note)
    md += row_table([(label, metrics, paper, status) for _n, label, metrics, paper, status in entries]) + "\n"
    rows = []
    for name, label, metrics, paper, status in entries:
        state = states.get(name)
        rec = {"table": table, "row": name, "label": label.rsplit(" `", 1)[0], "status": status,
               "n": (metrics or {}).get("n"), "empty": (metrics or {}).get("empty_predictions"),
               "failed": (metrics or {}).get("failed")}
        for key in DEFAULT_COMPARE:
            rec[f"ours {key}"] = lookup(metrics or {}, key)
            rec[f"paper {key}"] = paper.get(key)
        rec.update({f"ours {k}": lookup(metrics or {}, k) for k in METRIC_KEYS if f"ours {k}" not in rec})
        rec["settings"] = json.dumps(state.row.settings(), sort_keys=True) if state is not None else ""
        rows.append(rec)
    atomic_write_bytes(out / f"{table}.md", md.encode())
    atomic_write_bytes(out / f"{table}.csv", _csv(rows))
    return [out / f"{table}.md", out / f"{table}.csv"]


def sensitivity_records(states: dict) -> list[dict]:
    """The grid's rows in the sweep's format (``k, tau, alpha, paper_default, n, <task>_<metric>``)."""
    from ..evolve.config import PAPER

    out = []
    for name, state in states.items():
        if not name.startswith(SENSITIVITY_PREFIX) or state.metrics is None:
            continue
        cfg = state.row.config
        rec = {"k": cfg.k, "tau": cfg.tau, "alpha": cfg.alpha,
               "paper_default": (cfg.k, cfg.tau, cfg.alpha) == (PAPER.k, PAPER.tau, PAPER.alpha),
               "n": state.metrics["n"], "failed": state.metrics.get("failed", 0)}
        for task in ("rsrec", "rsres"):
            for metric in ("mIoU", "oIoU", "Pr@0.5"):
                value = lookup(state.metrics, f"{task}.{metric}")
                rec[f"{task}_{metric}"] = None if value is None else round(value, 4)
        out.append(rec)
    return out


def write_sensitivity(run: RunDir, states: dict, dataset: str, split: str, protocol: str, n: int,
                      note: str) -> list[Path]:
    from ..evolve.sweep import render_markdown

    out = tables_dir(run)
    records = sensitivity_records(states)
    title = f"{TITLES['sensitivity']}: {dataset} / {split}, protocol {protocol}, {n} samples"
    md = render_markdown(records, title)
    md = md.replace("\n\n", "\n\n" + note + "\n", 1) if note else md
    atomic_write_bytes(out / "sensitivity.md", md.encode())
    atomic_write_bytes(out / "sensitivity.csv", _csv(records))
    return [out / "sensitivity.md", out / "sensitivity.csv"]


def write_tables(run: RunDir, states: dict, options, dataset: str, split: str, samples: Sequence) -> list[Path]:
    """Every table of ``options.tables``; returns the files written."""
    note = stand_in_note(run, [s.sample_id for s in samples[:1]])
    n = len(samples)
    paths = []
    for table in options.tables:
        if table == "sensitivity":
            paths += write_sensitivity(run, states, dataset, split, options.protocol, n, note)
        else:
            paths += write_table(run, table, states, dataset, split, options.protocol, n, note)
    return paths
