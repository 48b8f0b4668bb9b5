"""MapVR rasterised-IoU AP: OpenCV-exact rasteriser, pycocotools IoU, hand-computed APs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsmap_hd.eval_io import Vector
from gsmap_hd.metrics import evaluate_raster
from gsmap_hd.metrics.ap import REC_THRS, coco_precision
from gsmap_hd.metrics.raster import (
    HEIGHT,
    LINE_IOU_THRS,
    POLY_IOU_THRS,
    WIDTH,
    dilate,
    draw_polyline,
    fill_poly,
    mask_iou,
    match,
    rasterize,
    segment_pixels,
    to_pixels,
)

cv2 = pytest.importorskip("cv2")  # independent reference, test-only (requirements-test.txt)
coco_mask = pytest.importorskip("pycocotools.mask")

FIXTURE = Path(__file__).parent / "data" / "hd_metrics_cv47_raster.json"
EPS = np.spacing(1)


def cv_lines(pts):
    m = np.zeros((HEIGHT, WIDTH))
    cv2.polylines(m, [np.asarray(pts, np.int32)], False, 1, 1)
    return m > 0


def cv_fill(pts):
    m = np.zeros((HEIGHT, WIDTH))
    cv2.fillPoly(m, [np.asarray(pts, np.int32)], 1)
    return m > 0


def sha1(mask):
    return hashlib.sha1(np.packbits(mask.astype(bool)).tobytes()).hexdigest()


# ---- pixel mapping and rasterisation ---------------------------------------------------------


def test_pixel_mapping_axes_and_half_even_rounding():
    px = to_pixels(np.array([[-15, -30], [15, 30], [0, 0], [0.0625, 0], [0.1875, 7.5]]))
    # x → column over 240 px, y → row over 480 px, row 0 at y = −30; np.around rounds half to
    # even: these x land exactly on 120.5 and 121.5.
    assert (0.0625 + 15) / 30 * 240 == 120.5 and (0.1875 + 15) / 30 * 240 == 121.5
    assert px.tolist() == [[0, 0], [240, 480], [120, 240], [120, 240], [122, 300]]


def test_bresenham_hand_cases():
    r, c = segment_pixels([[0, 0]], [[2, 1]])
    assert sorted(zip(c.tolist(), r.tolist(), strict=False)) == [(0, 0), (1, 0), (2, 1)]
    r, c = segment_pixels([[2, 1]], [[0, 0]])  # drawn left to right: the same pixels
    assert sorted(zip(c.tolist(), r.tolist(), strict=False)) == [(0, 0), (1, 0), (2, 1)]
    r, c = segment_pixels([[5, 5]], [[5, 5]])
    assert (c.tolist(), r.tolist()) == ([5], [5])
    r, c = segment_pixels([[-10, 3]], [[-1, 3]])  # entirely left of the image
    assert len(r) == 0
    m = draw_polyline(np.array([[10, 10], [20, 10]]))
    assert m.sum() == 11 and dilate(m).sum() == 15 * 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-400, 640), st.integers(-400, 880)), min_size=1, max_size=9))
def test_polylines_match_opencv_pixel_for_pixel(pts):
    pts = np.array(pts)
    assert np.array_equal(draw_polyline(pts), cv_lines(pts))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, WIDTH - 1), st.integers(0, HEIGHT - 1)), min_size=1, max_size=9),
    st.integers(1, 4),
)
def test_fill_poly_matches_opencv_inside_the_image(pts, scale):
    # Inside the image every OpenCV ≤ 4.7 and ≥ 4.11 fills identically; shrink some shapes so
    # small, pixel-level polygons (the hard cases) are well represented.
    pts = np.array(pts) // scale
    assert np.array_equal(fill_poly(pts), cv_fill(pts))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-300, 540), st.integers(-300, 780)), min_size=1, max_size=9))
def test_fill_poly_4_11_variant_matches_installed_opencv_everywhere(pts):
    pts = np.array(pts)
    assert int(cv2.__version__.split(".")[0]) >= 5 or int(cv2.__version__.split(".")[1]) >= 11
    assert np.array_equal(fill_poly(pts, variant="4.11"), cv_fill(pts))


def test_rasteriser_matches_opencv_4_7_including_border_clipping():
    fx = json.loads(FIXTURE.read_text())
    assert fx["opencv"].startswith("4.7") and (fx["height"], fx["width"]) == (HEIGHT, WIDTH)
    bad = [
        i
        for i, s in enumerate(fx["shapes"])
        if sha1(fill_poly(np.array(s["pts"]))) != s["fillPoly"]
        or sha1(draw_polyline(np.array(s["pts"]))) != s["polylines"]
    ]
    assert not bad, f"{len(bad)} of {len(fx['shapes'])} shapes differ from OpenCV 4.7, e.g. {bad[:5]}"


def test_metric_rasterize_matches_opencv_pipeline():
    rng = np.random.default_rng(7)
    for _ in range(40):
        pts = rng.uniform([-17, -33], [17, 33], size=(int(rng.integers(2, 21)), 2))
        for polygon in (False, True):
            ours = rasterize(pts, polygon, fill_variant="4.11")  # the installed OpenCV's fill
            px = np.around((pts - [-15, -30]) / [30, 60] * [WIDTH, HEIGHT]).astype(int)
            ref = cv_fill(px) if polygon else cv_lines(px)
            ref = cv2.dilate(ref.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            assert np.array_equal(ours, ref)


def test_dilation_is_a_centred_5x5_square_clipped_at_the_border():
    m = np.zeros((HEIGHT, WIDTH), bool)
    m[0, 0] = m[100, 100] = True
    d = dilate(m)
    assert d.sum() == 9 + 25
    assert d[:3, :3].all() and d[98:103, 98:103].all() and not d[3, 0] and not d[97, 100]


def test_mask_iou_matches_pycocotools():
    rng = np.random.default_rng(3)
    dts = np.array([rasterize(rng.uniform([-15, -30], [15, 30], (5, 2)), bool(i % 2)) for i in range(6)])
    gts = np.array([rasterize(rng.uniform([-15, -30], [15, 30], (4, 2)), bool(i % 2)) for i in range(5)])
    dts[0] = False  # an empty mask
    enc = lambda ms: [coco_mask.encode(np.asfortranarray(m.astype(np.uint8))) for m in ms]  # noqa
    ref = coco_mask.iou(enc(dts), enc(gts), np.zeros(len(gts)))
    assert np.array_equal(mask_iou(dts, gts), ref)


# ---- matching and AP -------------------------------------------------------------------------


def test_match_takes_the_best_unmatched_gt_and_the_later_one_on_ties():
    ious = np.array([[0.6, 0.6, 0.2], [0.6, 0.0, 0.3], [0.1, 0.1, 0.1]])
    dtm = match(ious, np.array([0.25, 0.5]))
    assert dtm[0].tolist() == [1, 0, -1]  # tie → later GT; the second takes what is left
    assert dtm[1].tolist() == [1, 0, -1]
    assert match(ious, np.array([0.65]))[0].tolist() == [-1, -1, -1]
    # IoU equal to the threshold matches (≥).
    assert match(np.array([[0.5]]), np.array([0.5]))[0].tolist() == [0]


def test_coco_precision_hand_values():
    q = coco_precision(np.array([True, False]), 1)
    assert np.array_equal(q, np.full(101, 1 / (1 + EPS)))
    q = coco_precision(np.array([False, True]), 1)
    assert np.array_equal(q, np.full(101, 1 / (2 + EPS)))  # recall 0 reads the first detection
    q = coco_precision(np.array([True]), 2)
    assert np.array_equal(q[:51], np.full(51, 1 / (1 + EPS))) and not q[51:].any()
    assert not coco_precision(np.zeros(0, bool), 3).any()
    assert len(REC_THRS) == 101 and REC_THRS[1] == np.linspace(0, 1, 101)[1]


def vline(x, y0=0.0, y1=10.0, cls=0, score=1.0):
    return Vector(np.array([[x, y0], [x, y1]], float), cls, score)


def test_hand_computed_ap_per_threshold_greedy():
    # GT at column 122 (x = 0.2 m), detections at column 120 (x = 0) and exactly on the GT.
    # Both masks 5 px wide after dilation, 2 px apart → IoU 3/7 ≈ 0.43.
    gts = [[vline(0.2)]]
    results = [[vline(0.0, score=0.9), vline(0.2, score=0.8)]]
    out = evaluate_raster(results, gts)
    one, half = 1 / (1 + EPS), 1 / (2 + EPS)
    # IoU thresholds .25–.40: the confident detection matches (TP), the exact one is FP after it.
    # .45/.50: the confident one is FP, the exact one TP → precision 1/2 everywhere.
    assert out["ap_per_threshold"]["divider"] == pytest.approx([one] * 4 + [half] * 2, abs=1e-15)
    assert out["divider_ap"] == pytest.approx(5 / 6, abs=1e-12)
    assert out["boundary_ap"] == -1.0 and out["ped_ap"] == -1.0
    assert out["line_ap"] == out["divider_ap"]
    assert out["mAP"] == out["divider_ap"]  # absent classes are left out


def test_perfect_predictions_and_shift_crossing_thresholds():
    ped = np.array([[-3, -2], [3, -2], [3, 2], [-3, 2], [-3, -2.0]])
    gts = [[vline(-5.0), Vector(ped, 1, 1), vline(8.0, -20, 20, cls=2)]]
    perfect = [[Vector(v.pts.copy(), v.cls, 0.9) for v in gts[0]]]
    out = evaluate_raster(perfect, gts)
    for key in ("divider_ap", "ped_ap", "boundary_ap", "line_ap", "mAP"):
        assert out[key] == pytest.approx(1.0, abs=1e-12), key
    # Lines shifted by k columns (0.125 m each): IoU = (5 − k) / (5 + k) along the line.
    for k, _n_tp in [(1, 6), (2, 4), (3, 0)]:  # 4/6 ≥ .5; 3/7 ≥ .25….40; 2/8 = .25 ≥ .25 → 1
        moved = [[Vector(gts[0][0].pts + [k * 0.125, 0], 0, 0.9)]]
        out = evaluate_raster(moved, [[gts[0][0]]])
        ious = (5 - k) / (5 + k)
        expect = np.mean([ious >= t for t in LINE_IOU_THRS])
        assert out["divider_ap"] == pytest.approx(expect, abs=1e-12), k


def test_score_threshold_max_dets_and_short_predictions():
    gts = [[vline(0.0)]]
    low = [[vline(0.0, score=0.049)]]
    assert evaluate_raster(low, gts)["num_dets"]["divider"] == 0
    assert evaluate_raster([[vline(0.0, score=0.05)]], gts)["divider_ap"] > 0.99
    # 101 far-away detections with higher scores: only the top 100 of the frame count, so the
    # true one (lowest score) is dropped.
    many = [[vline(10.0, score=0.5 + i / 1000) for i in range(101)] + [vline(0.0, score=0.4)]]
    out = evaluate_raster(many, gts)
    assert out["num_dets"]["divider"] == 100 and out["divider_ap"] == 0.0
    one_point = [[Vector(np.array([[0.0, 0.0]]), 0, 0.9)]]
    assert evaluate_raster(one_point, gts)["num_dets"]["divider"] == 0


def test_empty_frames_pooling_and_absent_classes():
    gts = [[], [vline(0.0)], [vline(3.0, cls=2)]]
    results = [[vline(0.0, score=0.95)], [vline(0.0, score=0.9)], []]
    out = evaluate_raster(results, gts)
    # divider: pooled .95 FP (frame 0 has no GT), .9 TP → precision 1/2 at every recall point.
    assert out["divider_ap"] == pytest.approx(1 / (2 + EPS), abs=1e-15)
    assert out["boundary_ap"] == 0.0  # GT but no detection: present, AP 0
    assert out["ped_ap"] == -1.0  # absent
    assert out["line_ap"] == pytest.approx(np.mean([1 / (2 + EPS), 0.0]), abs=1e-15)
    empty = evaluate_raster([], [])
    assert empty["mAP"] == -1.0 and empty["line_ap"] == -1.0


def test_polygon_iou_thresholds_and_reversed_polygon():
    assert np.allclose(POLY_IOU_THRS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75])
    assert np.allclose(LINE_IOU_THRS, [0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
    ped = np.array([[-3, -2], [3, -2.5], [3.5, 2], [-3, 2], [-3, -2.0]])
    assert np.array_equal(rasterize(ped, True), rasterize(ped[::-1], True))
    assert np.array_equal(rasterize(ped, False), rasterize(ped[::-1], False))


def test_vectors_outside_the_range():
    outside = vline(40.0, 50, 60)  # entirely outside the 30 × 60 m window: an empty mask
    assert not rasterize(outside.pts, False).any()
    out = evaluate_raster([[Vector(outside.pts, 0, 0.9)]], [[outside]])
    # Empty masks have IoU 0 (pycocotools' convention), so even a perfect copy is a miss.
    assert out["divider_ap"] == 0.0 and out["num_gts"]["divider"] == 1
    # A line leaving the window is clipped at the border like OpenCV does, and still matches.
    crossing = vline(0.0, 20, 45)
    out = evaluate_raster([[Vector(crossing.pts, 0, 0.9)]], [[crossing]])
    assert out["divider_ap"] == pytest.approx(1.0, abs=1e-12)
