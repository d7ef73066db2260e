"""The K / tau / alpha study on cached dumps: every setting of a grid scored in one pass, no SAM.

Each sample's dumps are read once; ``c`` and ``A_CS`` do not depend on the grid, the region on
(K, tau) only, and each alpha is one threshold of the same upsampled ``A_E``. Writes
``RUN/sweep.csv`` (one row per setting) and ``RUN/sweep.md`` (the table, paper default marked).
"""
from __future__ import annotations

import csv
import io
import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from ..rundir import RunDir, atomic_write_bytes
from .config import PAPER, EvolveConfig
from .evolve import evolve_maps, interaction
from .interaction import SReader, ThreadReaders, load_inputs, single_threaded_kernels
from .resample import binarise, upsample_window

log = logging.getLogger(__name__)
SWEEP_CSV, SWEEP_MD = "sweep.csv", "sweep.md"
SWEEP_STAGE = "evolve-sweep"
PARAMS = {"k": int, "tau": float, "alpha": float}
CHUNK = 16  # samples whose dumps are in memory at once


@dataclass(frozen=True)
class Setting:
    k: int
    tau: float
    alpha: float

    @property
    def is_paper(self) -> bool:
        return (self.k, self.tau, self.alpha) == (PAPER.k, PAPER.tau, PAPER.alpha)


def parse_grid(spec: str, config: EvolveConfig) -> list[Setting]:
    """``"k=5,7,9 tau=0.2,0.3 alpha=0.4"`` -> every combination; an absent name keeps ``config``'s value."""
    values = {name: [getattr(config, name)] for name in PARAMS}
    for token in spec.split():
        name, sep, listed = token.partition("=")
        if not sep or name not in PARAMS or not listed:
            raise ValueError(f"--sweep: bad item {token!r}; expected NAME=V1,V2,... with NAME in "
                             f"{', '.join(PARAMS)} (e.g. \"k=5,7,9 tau=0.2,0.3 alpha=0.3,0.4\")")
        try:
            values[name] = [PARAMS[name](v) for v in listed.split(",")]
        except ValueError:
            raise ValueError(f"--sweep: {name} values {listed!r} are not all {PARAMS[name].__name__}s") from None
        if name == "k" and min(values[name]) < 1:
            raise ValueError(f"--sweep: k values must be >= 1, got {listed}")
    return [Setting(k, t, a) for k, t, a in itertools.product(values["k"], values["tau"], values["alpha"])]


def _score_sample(run: RunDir, sample, config: EvolveConfig, settings: Sequence[Setting], protocol,
                  reader: SReader):
    """({setting: SampleScore}, failed) for one sample; a missing/bad dump is recorded in
    failures.jsonl and the sample scores as missing (IoU 0) under every setting. ``reader``: this
    thread's :class:`SReader` (reused memory)."""
    from ..evaluation.evaluator import load_gt_mask
    from ..evaluation.scoring import missing_score, score_sample
    from ..runner import record_failure

    gt_mask, gt_box = load_gt_mask(sample), sample.box
    size = (sample.height, sample.width)
    try:
        a_c, s = load_inputs(run, sample.sample_id, config, reader)
    except Exception as exc:  # noqa: BLE001 - recorded; the study goes on with the other samples
        record_failure(run, sample.sample_id, SWEEP_STAGE, exc)
        miss = missing_score(gt_mask, gt_box, protocol, image_size=size)
        return dict.fromkeys(settings, miss), True
    c, a_cs = interaction(a_c, s, config)
    out, windows = {}, {}
    for st in settings:
        if (st.k, st.tau) not in windows:
            _seeds, _region, a_e = evolve_maps(c, a_cs, st.k, st.tau, config.use_evolve)
            windows[(st.k, st.tau)] = upsample_window(a_e, size)
        mask = binarise(windows[(st.k, st.tau)], size, st.alpha)
        out[st] = score_sample(mask, gt_mask, gt_box, protocol, image_size=size)
    return out, False


def sweep(run: RunDir, samples: Sequence, config: EvolveConfig, settings: Sequence[Setting],
          protocol: str = "zeroov", workers: int | None = None) -> tuple[list[dict], int]:
    """Score every setting over ``samples``: (one row dict per setting in grid order, failed samples)."""
    from ..evaluation.protocols import get_protocol
    from ..evaluation.scoring import summarize
    from ..progress import bar as progress_bar
    from ..runner import prune_failures

    proto = get_protocol(protocol)
    prune_failures(run, SWEEP_STAGE, lambda sid: True)  # records of an earlier sweep are stale
    failed = 0
    scores: dict[Setting, list] = {st: [] for st in settings}
    workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
    readers = ThreadReaders(run, config)

    with single_threaded_kernels(), ThreadPoolExecutor(workers, thread_name_prefix="sweep") as pool, \
            progress_bar(len(samples), SWEEP_STAGE, leave=True) as bar:
        for i in range(0, len(samples), CHUNK):
            chunk = samples[i:i + CHUNK]
            for result, bad in pool.map(lambda smp: _score_sample(run, smp, config, settings, proto,
                                                                   readers.get()), chunk):
                failed += bad
                for st, sc in result.items():
                    scores[st].append(sc)
            bar.update(len(chunk))
    return [_row(st, summarize(scores[st], proto), len(samples)) for st in settings], failed


def _row(st: Setting, summary: dict, n: int) -> dict:
    row = {"k": st.k, "tau": st.tau, "alpha": st.alpha, "paper_default": st.is_paper, "n": n}
    for task in ("rsrec", "rsres"):
        for metric in ("mIoU", "oIoU", "Pr@0.5"):
            value = summary.get(task, {}).get(metric)
            row[f"{task}_{metric}"] = None if value is None else round(value, 4)
    return row


def write_sweep(run: RunDir, rows: Sequence[dict], title: str) -> tuple[str, str]:
    """Write ``RUN/sweep.csv`` and ``RUN/sweep.md`` atomically; returns the markdown text too."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["k", "tau", "alpha"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(run.root / SWEEP_CSV, buf.getvalue().encode())
    md = render_markdown(rows, title)
    atomic_write_bytes(run.root / SWEEP_MD, md.encode())
    return str(run.root / SWEEP_CSV), md


def render_markdown(rows: Sequence[dict], title: str) -> str:
    """One table row per setting: RSREC / RSRES mIoU and Pr@0.5 (percent); the paper default in bold."""
    has_res = any(r.get("rsres_mIoU") is not None for r in rows)
    head = ["K", "tau", "alpha", "RSREC mIoU", "RSREC Pr@0.5"] + (["RSRES mIoU", "RSRES Pr@0.5"] if has_res else [])
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["k"]), f"{r['tau']:g}", f"{r['alpha']:g}", _pct(r["rsrec_mIoU"]), _pct(r["rsrec_Pr@0.5"])]
        if has_res:
            cells += [_pct(r["rsres_mIoU"]), _pct(r["rsres_Pr@0.5"])]
        if r["paper_default"]:
            cells = [f"**{c}**" for c in cells]
            cells[0] += " (paper)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def run_sweep(run: RunDir, samples: Sequence, config: EvolveConfig, spec: str, *, protocol: str = "zeroov",
              workers: int | None = None, extra: dict | None = None) -> tuple[list[dict], int, str]:
    """Parse ``spec``, score the grid, write the files and ``RUN/sweep_config.json`` (``extra``:
    its "run" part); returns (rows, number of samples whose dumps failed, the markdown table)."""
    from ..runner import jsonable, write_config

    settings = parse_grid(spec, config)
    write_config(run, "sweep", {"config": jsonable(config), "resolved": {"grid": spec, "protocol": protocol,
                                                                       "settings": len(settings)},
                                "run": jsonable(extra or {})})
    rows, failed = sweep(run, samples, config, settings, protocol, workers)
    title = (f"Evolve sweep: {len(samples)} samples, protocol {protocol}, fidelity {config.fidelity}, "
             f"resolutions {list(config.resolutions)}, no SAM"
             + (f"; {failed} without dumps, scored as missing" if failed else ""))
    _csv, md = write_sweep(run, rows, title)
    if failed:
        log.warning("[%s] %d sample(s) without dumps scored as missing; see %s", SWEEP_STAGE, failed, run.failures)
    return rows, failed, md
