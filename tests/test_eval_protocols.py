"""Evaluation protocols: the pinned cases of docs/datasets.md, random cases against a direct reference,
the rmsin 480x480 nearest resize, missing and empty predictions, and the aggregates."""
import subprocess
import sys

import numpy as np
import pytest

from rsvg_zeroov.evaluation import (PROTOCOLS, box_iou, get_protocol, missing_score, per_category, resize_nearest,
                                    score_sample, summarize, tight_box)
from eval_helpers import REF_RULES, THRESHOLDS, pil_nearest, random_case, ref_aggregate, ref_score

A, B, C = (0, 0, 10, 10), (0, 0, 10, 20), (5, 0, 15, 10)
PLUS_ONE = ("zeroov", "rmsin", "vrsbench")
CONTINUOUS = ("mgvlf", "lpva")


def box_score(protocol, pred_box, gt_box, size=(100, 100)):
    """Score a box-only prediction on a 100x100 image (the VRSBench grid equals pixels there)."""
    return score_sample(None, None, gt_box, protocol, pred_box=pred_box, image_size=size)


def rect_mask(box, size=(100, 100)):
    m = np.zeros(size, bool)
    m[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return m


# ------------------------------------------------------------------------------------ pinned cases
def test_pinned_half_is_exact_without_plus_one():
    assert box_iou(A, B) == 0.5
    assert box_iou(A, B, plus_one=True) == 121 / 231


@pytest.mark.parametrize("name", CONTINUOUS)
def test_pinned_half_hit_operator(name):
    s = box_score(name, A, B)
    assert s.box_iou == 0.5 and (s.box_inter, s.box_union) == (100, 200)
    pr = summarize([s], name)["rsrec"]["Pr@0.5"]
    assert pr == (100.0 if name == "lpva" else 0.0)  # >= hits, > misses


@pytest.mark.parametrize("name", PLUS_ONE)
def test_pinned_half_with_plus_one(name):
    s = box_score(name, A, B)
    assert (s.box_inter, s.box_union) == (121, 231)
    assert s.box_iou == pytest.approx(121 / 231, rel=1e-8)
    assert summarize([s], name)["rsrec"]["Pr@0.5"] == 100.0  # 0.524 > 0.5 under both operators


@pytest.mark.parametrize("name", PROTOCOLS)
def test_pinned_shifted_box(name):
    s = box_score(name, A, C)
    want = (66, 176) if name in PLUS_ONE else (50, 150)
    assert (s.box_inter, s.box_union) == want
    assert s.box_iou == pytest.approx(want[0] / want[1], rel=1e-8)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_pinned_cases_through_predicted_masks(name):
    """The predicted box is the inclusive tight box of the mask: pixels 0..10 -> (0, 0, 10, 10)."""
    pm = rect_mask(A)
    assert tight_box(pm) == A
    s = score_sample(pm, None, B, name)
    assert s.box_iou == pytest.approx(121 / 231 if name in PLUS_ONE else 0.5, rel=1e-8)
    s = score_sample(pm, None, C, name)
    assert s.box_iou == pytest.approx(66 / 176 if name in PLUS_ONE else 50 / 150, rel=1e-8)


def test_vrsbench_compares_on_the_0_100_grid():
    # 800x600 image: pixel boxes map to grid A and B exactly; +1 applies on the grid, not on pixels
    s = box_score("vrsbench", (0, 0, 80, 60), (0, 0, 80, 120), size=(600, 800))
    assert (s.box_inter, s.box_union) == (121, 231)
    # a predicted tight box is rounded half-up onto the grid: x2 = 84 px -> 10.5 -> 11
    s = box_score("vrsbench", (0, 0, 84, 60), (0, 0, 80, 60), size=(600, 800))
    assert (s.box_inter, s.box_union) == (121, 132)


def test_empty_prediction_rules():
    empty = np.zeros((100, 100), bool)
    gt = rect_mask(A)
    s = score_sample(empty, gt, A, "zeroov")  # released box (0,0,0,0): the single origin pixel
    assert s.empty and (s.box_inter, s.box_union) == (1, 121)
    assert s.mask_iou == 0.0 and s.mask_union == 121
    assert score_sample(empty, gt, C, "zeroov").box_iou == 0.0  # gt away from the origin
    for name in ("rmsin", "mgvlf", "lpva", "vrsbench"):
        s = score_sample(empty, gt, A, name)
        assert s.empty and s.box_iou == 0.0 and s.box_inter == 0.0 and s.mask_iou == 0.0


@pytest.mark.parametrize("name", PROTOCOLS)
def test_empty_union_scores_zero(name):
    empty = np.zeros((30, 30), bool)
    s = score_sample(empty, empty, None, name)
    assert s.mask_iou == 0.0 and s.mask_union == 0 and s.box_iou == 0.0
    if name in CONTINUOUS:  # degenerate boxes have area 0 without +1
        assert box_score(name, (3, 3, 3, 3), (3, 3, 3, 3)).box_iou == 0.0


@pytest.mark.parametrize("name", PROTOCOLS)
def test_missing_prediction_is_iou_zero_and_keeps_the_union(name):
    gt = rect_mask(A)
    s = missing_score(gt, A, name)
    assert s.missing and s.box_iou == 0.0 and s.mask_iou == 0.0 and s.box_inter == 0 and s.mask_inter == 0
    assert s.mask_union == (121 if name != "rmsin" else int(pil_nearest(gt, (480, 480)).sum()))
    hit = score_sample(gt, gt, A, name)
    m = summarize([hit, s], name)
    assert m["rsres"]["mIoU"] == pytest.approx(50.0, rel=1e-6) and m["rsres"]["Pr@0.9"] == 50.0
    assert m["rsres"]["oIoU"] == pytest.approx(50.0, rel=1e-6)


# ------------------------------------------------------------------------------------ rmsin resize
@pytest.mark.parametrize("shape", [(800, 800), (512, 512), (300, 200), (1000, 700), (481, 479)])
def test_resize_nearest_equals_pil(shape):
    rng = np.random.default_rng(shape[0])
    m = rng.random(shape) > 0.7
    assert np.array_equal(resize_nearest(m, (480, 480)), pil_nearest(m, (480, 480)))


def test_rmsin_resize_changes_the_iou():
    """960x960 -> 480x480 nearest keeps the odd rows/columns: gt cols 0..9 and pred cols 1..10 both
    keep columns 1,3,5,7,9, so the native IoU 90/110 becomes 1.0 (a hit at 0.9 only under rmsin)."""
    gt, pred = np.zeros((960, 960), bool), np.zeros((960, 960), bool)
    gt[0:10, 0:10] = True
    pred[0:10, 1:11] = True
    native = score_sample(pred, gt, None, "lpva")  # same hit operator, native resolution
    rmsin = score_sample(pred, gt, None, "rmsin")
    assert native.mask_iou == pytest.approx(90 / 110)
    assert (rmsin.mask_inter, rmsin.mask_union, rmsin.mask_iou) == (25, 25, 1.0)
    assert rmsin.mask_iou == ref_score("rmsin", pred, gt, (0, 0, 9, 9), 960, 960)[3]
    assert summarize([rmsin], "rmsin")["rsres"]["Pr@0.9"] == 100.0
    assert summarize([native], "lpva")["rsres"]["Pr@0.9"] == 0.0
    assert rmsin.box_iou == pytest.approx(90 / 110)  # boxes stay at native resolution


# ------------------------------------------------------------------------------------ random vs reference
@pytest.mark.parametrize("name", PROTOCOLS)
def test_random_cases_match_the_reference(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    scores, refs = [], []
    for i in range(60):
        h, w, pred, gt, box = random_case(rng, grid_boxes=(name == "vrsbench"))
        missing = i % 13 == 5
        s = missing_score(gt, box, name) if missing else score_sample(pred, gt, box, name)
        r = ref_score(name, pred, gt, box, h, w, missing=missing)
        assert s.box_iou == pytest.approx(r[0], abs=1e-12) and (s.box_inter, s.box_union) == pytest.approx(r[1:3])
        assert s.mask_iou == pytest.approx(r[3], abs=1e-12) and (s.mask_inter, s.mask_union) == r[4:6]
        scores.append(s)
        refs.append(r)
    got = summarize(scores, name)
    want_rec = ref_aggregate(name, [r[0] for r in refs], [r[1] for r in refs], [r[2] for r in refs])
    want_res = ref_aggregate(name, [r[3] for r in refs], [r[4] for r in refs], [r[5] for r in refs])
    assert list(got["rsrec"]) == ["mIoU", "oIoU", *(f"Pr@{t}" for t in THRESHOLDS)]
    assert got["rsrec"] == pytest.approx(want_rec) and got["rsres"] == pytest.approx(want_res)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_hits_at_exact_thresholds(name):
    """IoU exactly t (continuous boxes) separates >= (lpva) from > (mgvlf)."""
    ge = REF_RULES[name][0]
    for t, gt_box in ((0.5, (0, 0, 10, 20)), (0.8, (0, 0, 10, 12.5))):
        s = score_sample(None, None, gt_box, name, pred_box=A, image_size=(100, 100))
        assert s.box_iou == t
        assert summarize([s], name)["rsrec"][f"Pr@{t}"] == (100.0 if ge else 0.0)


def test_box_only_summary_has_no_rsres_and_categories_group():
    s1, s2, s3 = (box_score("lpva", A, b) for b in (A, B, C))
    m = summarize([s1, s2, s3], "lpva")
    assert set(m) == {"rsrec"} and m["rsrec"]["Pr@0.5"] == pytest.approx(200 / 3)
    cats = per_category([s1, s2, s3], ["ship", None, "ship"], "lpva")
    assert list(cats) == ["ship"] and cats["ship"]["n"] == 2
    assert cats["ship"]["rsrec"]["mIoU"] == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_tight_box_and_protocol_lookup():
    assert tight_box(np.zeros((5, 5), bool)) is None
    m = np.zeros((5, 7), bool)
    m[3, 6] = True
    assert tight_box(m) == (6, 3, 6, 3)
    assert get_protocol(None).name == "zeroov" and get_protocol("vrsbench").thresholds == (0.5, 0.7)
    with pytest.raises(ValueError, match="choose from"):
        get_protocol("coco")


def test_importing_evaluation_does_not_import_torch():
    code = "import sys, rsvg_zeroov.evaluation; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="original image size"):
        score_sample(np.zeros((4, 4), bool), np.zeros((5, 5), bool), None, "zeroov")


def test_a_window_scores_as_its_whole_mask():
    """score_window (a mask given as its part inside a window, as the table harness scores its rows)
    gives score_sample's SampleScore of the whole mask, under every protocol: random parts and
    offsets, empty parts, parts from real upsampled windows, box-only and empty ground truths."""
    from rsvg_zeroov.evaluation.scoring import score_window
    from rsvg_zeroov.evolve.resample import binarise, binarise_local, upsample_window

    rng = np.random.default_rng(7)
    size = (60, 80)
    cases = []
    for _ in range(40):
        h, w = rng.integers(1, 61), rng.integers(1, 81)
        y0, x0 = rng.integers(0, 61 - h), rng.integers(0, 81 - w)
        part = rng.random((h, w)) < rng.choice([0.0, 0.01, 0.3, 1.0])
        cases.append((part, (int(y0), int(x0))))
    for _ in range(10):  # windows of A_E maps: a blob on the 32 grid, upsampled, thresholded
        a_e = np.zeros((32, 32), np.float32)
        y, x = rng.integers(0, 28, 2)
        a_e[y:y + 4, x:x + 4] = rng.random((4, 4), dtype=np.float32)
        window = upsample_window(a_e, size)
        cases.append(binarise_local(window, size, 0.4))
        whole = binarise(window, size, 0.4)
        part, (y0, x0) = cases[-1]
        embedded = np.zeros(size, bool)
        embedded[y0:y0 + part.shape[0], x0:x0 + part.shape[1]] = part
        assert np.array_equal(embedded, whole)
    gts = [rng.random(size) < 0.2, np.zeros(size, bool), None]
    for name in PROTOCOLS:
        for part, (y0, x0) in cases:
            whole = np.zeros(size, bool)
            whole[y0:y0 + part.shape[0], x0:x0 + part.shape[1]] = part
            for gt in gts:
                gt_box = (3, 4, 50, 40) if gt is None else None
                expected = score_sample(whole, gt, gt_box, name, image_size=size)
                area = None if gt is None else int(gt.sum())
                assert score_window(part, (y0, x0), size, gt, gt_box, name, gt_area=area) == expected, name
                assert score_window(part, (y0, x0), size, gt, gt_box, name) == expected, name
    with pytest.raises(ValueError, match="does not fit"):
        score_window(np.ones((10, 10), bool), (55, 0), size, None, (0, 0, 1, 1), "zeroov")
