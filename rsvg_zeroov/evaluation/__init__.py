"""Evaluation of grounding runs: RSREC (box) and RSRES (mask) mIoU / oIoU / Pr@t per protocol.

Importing this package is light (numpy only; OpenCV and PIL load when a mask is decoded; never torch).

    from rsvg_zeroov.evaluation import evaluate, get_protocol
    result = evaluate(samples, "outputs/rrsisd_test", "zeroov")
    metrics = result.metrics("rrsisd", "test")      # the metrics.json object (docs/run-directory.md)
"""
from .evaluator import EvalResult, default_workers, evaluate, load_gt_mask, score_all, write_metrics
from .iou import box_inter_union, box_iou, mask_inter_union, resize_nearest, tight_box, to_grid
from .predictions import EvalInputError, Prediction, load_pred_mask, read_predictions
from .protocols import PROTOCOLS, SWEEP, Protocol, get_protocol, pr_key
from .report import PAPER_RESULTS, compare_table, render
from .scoring import SampleScore, missing_score, per_category, score_sample, summarize

__all__ = [
    "EvalInputError", "EvalResult", "PAPER_RESULTS", "PROTOCOLS", "Prediction", "Protocol", "SWEEP",
    "SampleScore", "box_inter_union", "box_iou", "compare_table", "default_workers", "evaluate",
    "get_protocol", "load_gt_mask", "load_pred_mask", "mask_inter_union", "missing_score", "per_category",
    "pr_key", "read_predictions", "render", "resize_nearest", "score_all", "score_sample", "summarize",
    "tight_box", "to_grid", "write_metrics",
]
