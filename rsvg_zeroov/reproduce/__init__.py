"""The paper's tables as one command: every row of the main, ablation and sensitivity tables
derived from one run's stage-1/2 dumps, scored by the evaluator, beside the paper's numbers
(docs/reproduce.md, docs/paper-results.md).

    python -m rsvg_zeroov.reproduce --dataset rrsisd --root datasets/rrsisd --split test --out outputs/rrsisd_test

Modules: :mod:`.rows` (what each row computes, the tables' layout), :mod:`.baselines` (VLM box,
DiffPNG w/ VLM), :mod:`.compute` (one sample, every pending row), :mod:`.store` (scores on disk,
resume), :mod:`.harness` (the pass and the rows' metrics), :mod:`.tables`, :mod:`.figures`,
:mod:`.disagree`. Importing this package loads NumPy and SciPy (no torch, no matplotlib).
"""
from .harness import Options, Report, reproduce

__all__ = ["Options", "Report", "reproduce"]
