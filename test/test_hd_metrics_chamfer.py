"""MapTR Chamfer AP: hand-computed cases, reference quirks, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString

from gsmap_hd.eval_io import Vector
from gsmap_hd.metrics import evaluate_chamfer
from gsmap_hd.metrics.ap import voc_area_ap
from gsmap_hd.metrics.chamfer import score_matrix, tpfp
from gsmap_hd.metrics.resample import resample

F32 = lambda v: float(np.float32(v))  # noqa: E731  (APs are float32 in MapTR)


def vline(x, y0=0.0, y1=10.0, cls=0, score=1.0):
    return Vector(np.array([[x, y0], [x, y1]], float), cls, score)


def brute_chamfer(a, b):
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return (d.min(1).mean() + d.min(0).mean()) / 2


# ---- resampling ------------------------------------------------------------------------------


def test_resample_is_even_arc_length_and_matches_shapely_interpolate():
    pts = np.array([[0, 0], [3, 0], [3, 4], [10, 4.5]], float)
    out = resample(pts)
    line = LineString(pts)
    ref = np.array([line.interpolate(d).coords[0] for d in np.linspace(0, line.length, 100)])
    assert out.shape == (100, 2)
    assert np.array_equal(out, ref)  # bit-identical to the reference's per-point interpolate
    steps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    # Even spacing along the arc (chords are shorter only across the two corners).
    assert np.isclose(np.sort(steps)[2:], line.length / 99).all()


def test_prediction_with_exactly_100_points_is_not_resampled_but_gt_is():
    pts = np.concatenate([np.zeros((99, 2)), [[0, 10]]])  # 99 points piled at one end
    pts[:, 1] += np.linspace(0, 1e-3, 100)
    assert np.array_equal(resample(pts, keep_if_num=True), pts)
    assert not np.array_equal(resample(pts), pts)
    # So the Chamfer of such a prediction against the straight GT uses the raw points.
    gt = resample(np.array([[0, 0], [0, 10.0]]))
    s = score_matrix(pts[None], gt[None])[0, 0]
    assert s == pytest.approx(-brute_chamfer(pts, gt), abs=1e-12)
    assert s < -1.0  # far worse than the resampled version (≈ 0)


def test_zero_length_prediction_never_matches():
    pred = resample(np.array([[0, 0], [0, 0.0]]))
    gt = resample(np.array([[0, 0], [0, 10.0]]))
    assert np.array_equal(pred, np.zeros((100, 2)))
    # Its buffer is empty, so it intersects nothing: −100 as any non-overlapping pair.
    assert score_matrix(pred[None], gt[None])[0, 0] == -100.0


# ---- score matrix ----------------------------------------------------------------------------


def test_score_is_minus_mean_of_both_directed_chamfers():
    a = resample(np.array([[0, 0], [0, 10.0]]))
    b = resample(np.array([[0.7, 0], [0.7, 10.0]]))
    assert score_matrix(a[None], b[None])[0, 0] == pytest.approx(-0.7, abs=1e-12)
    c = resample(np.array([[1.0, 0], [1.0, 20.0]]))  # longer: directed distances differ
    assert score_matrix(a[None], c[None])[0, 0] == pytest.approx(-brute_chamfer(a, c), abs=1e-12)


def test_buffer_gate_2m_flat_caps():
    gt = resample(np.array([[0, 0], [0, 10.0]]))
    near = resample(np.array([[3.9, 0], [3.9, 10.0]]))  # 2 m + 2 m buffers overlap
    far = resample(np.array([[4.1, 0], [4.1, 10.0]]))  # they do not
    beyond_cap = resample(np.array([[0, 10.5], [0, 20.0]]))  # flat caps: no overlap past the end
    touching_end = resample(np.array([[0, 9.5], [0, 20.0]]))
    m = score_matrix(np.stack([near, far, beyond_cap, touching_end]), gt[None])[:, 0]
    assert m[0] == pytest.approx(-3.9, abs=1e-9)
    assert m[1] == -100.0
    assert m[2] == -100.0
    assert m[3] == pytest.approx(-brute_chamfer(touching_end, gt), abs=1e-12)


# ---- matching and AP -------------------------------------------------------------------------


def test_tpfp_threshold_is_inclusive_and_best_gt_has_no_fallback():
    scores = np.array([[-0.5, -100.0], [-0.4, -0.8]])
    conf = np.array([0.9, 0.8])
    tp, fp = tpfp(scores, conf, 0.5)
    assert tp.tolist() == [1, 0] and fp.tolist() == [0, 1]  # −0.5 ≥ −0.5 counts; GT 0 is taken
    # The second prediction would fit GT 1 at 1.0 m, but its best GT is GT 0: FP anyway.
    tp, fp = tpfp(scores, conf, 1.0)
    assert tp.tolist() == [1, 0]
    tp, fp = tpfp(scores, np.array([0.1, 0.8]), 1.0)  # order by confidence decides who wins
    assert tp.tolist() == [0, 1]


def test_voc_area_ap_hand_values():
    assert voc_area_ap([], [], 3) == 0
    assert voc_area_ap([0, 0], [1, 1], 0) == 0
    assert voc_area_ap([1, 1], [0, 0], 2) == 1
    assert voc_area_ap([0, 1], [1, 0], 1) == np.float32(0.5)
    # recall .5 → 1 with precision envelope 2/3 over both halves.
    assert voc_area_ap([0, 1, 1], [1, 0, 0], 2) == np.float32(2 / 3)
    # TP, FP, TP with 4 GTs: recall .25, .25, .5; precisions 1, .5, 2/3 → .25·1 + .25·(2/3).
    expect = np.float32(0.25) * np.float32(1) + np.float32(0.25) * (np.float32(2) / np.float32(3))
    assert voc_area_ap([1, 0, 1], [0, 1, 0], 4) == np.float32(expect)
    assert voc_area_ap([1, 0, 1], [0, 1, 0], 4).dtype == np.float32


def test_hand_computed_single_frame_three_thresholds():
    gts = [[vline(0.0)]]
    results = [[vline(0.7, score=0.9), vline(0.0, score=0.8)]]
    out = evaluate_chamfer(results, gts)
    # 0.5 m: the confident 0.7 m-off line is FP, the exact one TP → P/R (0, 0), (.5, 1) → AP .5.
    # 1.0 / 1.5 m: the 0.7 m line takes the GT, the exact duplicate is FP → AP 1.
    assert [row[0] for row in out["ap"]] == [0.5, 1.0, 1.0]
    assert out["ap"][0][1:] == [0.0, 0.0]  # classes with neither GT nor predictions
    assert out["class_ap"][0] == pytest.approx(2.5 / 3)
    assert out["mAP"] == pytest.approx(2.5 / 9, abs=1e-15)
    assert out["num_gts"] == [1, 0, 0] and out["num_dets"] == [2, 0, 0]


def test_pooling_across_frames_sorts_all_detections_by_confidence():
    gts = [[vline(0.0)], [vline(0.0, cls=2, score=1)], [vline(5.0)]]
    results = [
        [vline(0.1, score=0.9)],  # TP
        [vline(0.0, cls=0, score=0.95)],  # frame without divider GT: FP
        [vline(20.0, score=0.97), vline(5.2, score=0.5)],  # FP (far), then TP
    ]
    out = evaluate_chamfer(results, gts)
    # Pooled order: .97 FP, .95 FP, .9 TP, .5 TP; 2 GTs → recall 0,0,.5,1; precision 0,0,1/3,1/2.
    p1 = np.float32(1) / np.float32(3)
    p2 = np.float32(2) / np.float32(4)
    expect = F32(np.float32(0.5) * max(p1, p2) + np.float32(0.5) * p2)
    assert out["ap"][0][0] == expect == F32(0.5)
    assert out["num_gts"] == [2, 0, 1]
    # The boundary GT has no prediction: AP 0, counted in the mAP.
    assert out["ap"][0][2] == 0.0
    assert out["mAP"] == pytest.approx(0.5 * 3 / 9)


def test_no_fallback_to_second_best_gt_end_to_end():
    gts = [[vline(0.0), vline(1.2)]]
    results = [[vline(0.0, score=0.9), vline(0.4, score=0.8)]]
    out = evaluate_chamfer(results, gts)
    # At 1.0 m the second line's best GT (x=0, 0.4 m) is covered: FP, though x=1.2 is 0.8 m away.
    assert out["ap"][1][0] == 0.5
    assert out["recall"][1][0] == 0.5


def test_perfect_predictions_give_ap_one_and_shift_crosses_thresholds():
    gts = [
        [
            vline(0.0),
            Vector(np.array([[-2, -2], [2, -2], [2, 2], [-2, 2], [-2, -2.0]]), 1, 1),
            Vector(np.array([[-10, -20], [-9, 0], [-10, 20.0]]), 2, 1),
        ]
    ]
    perfect = [[Vector(v.pts.copy(), v.cls, 0.9) for v in gts[0]]]
    out = evaluate_chamfer(perfect, gts)
    assert out["ap"] == [[1.0, 1.0, 1.0]] * 3 and out["mAP"] == 1.0
    for shift, expect in [(0.3, [1, 1, 1]), (0.75, [0, 1, 1]), (1.25, [0, 0, 1]), (1.75, [0, 0, 0])]:
        moved = [[Vector(v.pts + [shift, 0], v.cls, 0.9) for v in gts[0]]]
        out = evaluate_chamfer(moved, gts)
        assert [row[0] for row in out["ap"]] == expect, shift  # straight divider: chamfer = shift


def test_empty_frames_and_skipped_short_predictions():
    gts = [[], [vline(0.0)], []]
    results = [[vline(0.0, score=0.6)], [], [Vector(np.array([[0.0, 0.0]]), 0, 0.99)]]
    out = evaluate_chamfer(results, gts)
    assert out["num_dets"][0] == 1  # the 1-point prediction is skipped, as MapTR does
    assert out["ap"][0][0] == 0.0  # one FP (frame without GT), one missed GT
    out = evaluate_chamfer([], [])
    assert out["mAP"] == 0.0 and out["ap"] == [[0.0] * 3] * 3


def test_points_outside_the_range_are_evaluated_as_is():
    gts = [[vline(40.0, 50, 60)]]
    out = evaluate_chamfer([[vline(40.2, 50, 60, score=0.3)]], gts)
    assert out["ap"][0][0] == 1.0


def test_tied_confidences_use_input_order():
    gts = [[vline(0.0)]]
    fwd = vline(0.2, score=0.5)
    rev = Vector(fwd.pts[::-1].copy(), 0, 0.5)  # reversed copy, same score: same Chamfer
    out = evaluate_chamfer([[fwd, rev]], gts)
    assert out["ap"][0][0] == 1.0  # first in input order is TP, the duplicate FP after it
    far = vline(9.0, score=0.5)
    out_a = evaluate_chamfer([[far, fwd]], gts)  # tie: the FP comes first
    out_b = evaluate_chamfer([[fwd, far]], gts)
    assert out_a["ap"][0][0] == 0.5 and out_b["ap"][0][0] == 1.0


# ---- properties ------------------------------------------------------------------------------

coord = st.floats(-14, 14, allow_nan=False)
polyline = st.lists(st.tuples(coord, st.floats(-29, 29)), min_size=2, max_size=6).filter(
    lambda p: LineString(p).length > 0.5
)
vec = st.tuples(polyline, st.integers(0, 2))
frame_st = st.lists(vec, max_size=4)


@settings(max_examples=25, deadline=None)
@given(gts=st.lists(frame_st, min_size=1, max_size=3), noise=st.floats(0, 1.6), data=st.data())
def test_reversal_and_frame_order_do_not_change_ap(gts, noise, data):
    gt_frames = [[Vector(np.array(p, float), c, 1.0) for p, c in fr] for fr in gts]
    n = sum(len(fr) for fr in gt_frames)
    scores = data.draw(st.lists(st.floats(0.01, 1), min_size=n, max_size=n, unique=True))
    it = iter(scores)
    res = [[Vector(v.pts + noise * np.array([0.6, 0.8]), v.cls, next(it)) for v in fr] for fr in gt_frames]
    base = evaluate_chamfer(res, gt_frames)
    rev = evaluate_chamfer(
        [[Vector(v.pts[::-1].copy(), v.cls, v.score) for v in fr] for fr in res], gt_frames
    )
    assert rev["ap"] == base["ap"]
    perm = data.draw(st.permutations(range(len(res))))
    shuffled = evaluate_chamfer([res[i] for i in perm], [gt_frames[i] for i in perm])
    assert shuffled["ap"] == base["ap"]
