"""Guards for mutants that survived the project's tests (mutation run 46: the HD-map metrics
gsmap_hd/metrics/, gsmap_hd/lane_map_eval.py and ``gs-mapping hd-eval``).

Each test compares with something outside the code's own bookkeeping: MapTR's Chamfer AP and the
MapVR toolkit's rules as their docstrings cite them, computed by hand (numpy distances, VOC/COCO AP
arithmetic on a handful of detections), or the CLI's documented options. Each fails on the mutant
named in it and passes on the real code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gsmap_hd.eval_io import Vector


def _line(pts, cls=0, score=1.0):
    return Vector(np.asarray(pts, np.float64), cls, score)


def _vline(x, cls=0, score=1.0, y0=0.0, y1=10.0):
    return _line([[x, y0], [x, y1]], cls, score)


# ------------------------------------------------------------------------------------------------
# metrics/chamfer.py


def test_a_prediction_tied_between_two_gts_takes_the_first_one():
    """MapTR (``tpfp.py: custom_tpfp_gen``, ``matrix.argmax(axis=1)``): a prediction takes its
    best-scoring GT, 'first on a tie', with no fallback. Prediction A (0.9) lies exactly between
    dividers G0 (x = +0.4) and G1 (x = −0.4): 0.4 m from both, so it takes G0. Prediction B (0.8) lies
    on G0: its best GT is covered → FP, though G1 is free. By hand at 0.5 m: TP, FP over 2 GTs →
    recall ½, ½, precision 1, ½ → VOC area AP ½ (at 1.0 and 1.5 m the same).
    Kills: chamfer.py ``best_gt = scores.argmax(axis=1)`` → the last GT on ties (A takes G1, B then
    G0: AP 1)."""
    from gsmap_hd.metrics import evaluate_chamfer

    gts = [[_vline(0.4), _vline(-0.4)]]
    preds = [[_vline(0.0, score=0.9), _vline(0.4, score=0.8)]]
    out = evaluate_chamfer(preds, gts)
    assert [row[0] for row in out["ap"]] == [0.5, 0.5, 0.5]
    assert [row[0] for row in out["recall"]] == [0.5, 0.5, 0.5]


def test_chamfer_recall_is_the_share_of_gts_matched():
    """evaluate_chamfer's ``recall``: the final recall, TP / GTs. Two dividers, three predictions:
    one on the first GT, two 5 m away from everything (FP at every threshold). By hand: 1 TP of 2 GTs
    → recall ½ at each threshold (not the 2 FPs over 2 GTs = 1).
    Kills: chamfer.py ``recalls.append(float(tp.sum() / num_gts))`` → ``fp.sum()``."""
    from gsmap_hd.metrics import evaluate_chamfer

    gts = [[_vline(0.0), _vline(20.0)]]
    preds = [[_vline(0.0, score=0.9), _vline(5.0, score=0.8), _vline(10.0, score=0.7)]]
    out = evaluate_chamfer(preds, gts)
    assert [row[0] for row in out["recall"]] == [0.5, 0.5, 0.5]
    # AP by hand: TP first (precision 1 up to recall ½), then FPs → ½.
    assert [row[0] for row in out["ap"]] == [0.5, 0.5, 0.5]


def test_a_prediction_of_exactly_100_points_is_scored_on_its_own_points():
    """MapTR (``get_cls_results``, ``eval_use_same_gt_sample_num_flag``): a prediction that already
    has 100 points is used as it is, not resampled (GTs always are). A divider on the GT's own line
    (0..10 m) but with 99 of its 100 points bunched in its first 2 m: pred → GT is 0; GT (100
    points evenly spaced, by hand) → pred is ~1.6 m on average, so the Chamfer score computed by
    hand with numpy is ≈ −0.80 m: FP at 0.5 m, TP at 1.0 and 1.5 m. Resampled it would be the GT
    itself (TP everywhere).
    Kills: metrics/__init__.py ``resample(v.pts, NUM_SAMPLES, keep_if_num=True)`` → ``False``."""
    from gsmap_hd.metrics import evaluate_chamfer

    pred = np.stack([np.r_[np.linspace(0.0, 2.0, 99), 10.0], np.zeros(100)], 1)
    gt = np.array([[0.0, 0.0], [10.0, 0.0]])
    gt_samples = np.stack([np.linspace(0.0, 10.0, 100), np.zeros(100)], 1)
    d = np.sqrt(((pred[:, None] - gt_samples[None]) ** 2).sum(-1))
    hand = -(d.min(1).mean() + d.min(0).mean()) / 2
    assert -0.9 < hand < -0.6  # well inside the (−1.0, −0.5) gap between thresholds
    out = evaluate_chamfer([[_line(pred, score=0.9)]], [[_line(gt)]])
    assert [row[0] for row in out["ap"]] == [0.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------
# metrics/__init__.py


def test_evaluate_refuses_prediction_and_gt_lists_of_different_lengths():
    """evaluate(): 'Both metrics on matching prediction / ground-truth frame lists' — two result
    frames against one GT frame is an error naming both counts, not a score of the first frame
    alone (zip would drop the second frame's false positive silently: divider AP 1 instead of ½).
    Kills: metrics/__init__.py the ``raise HDMapError(... result frames but ... GT frames)`` dropped."""
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.metrics import evaluate

    results = [[_vline(0.0, score=0.9)], [_vline(0.0, score=0.95)]]
    gts = [[_vline(0.0)]]
    with pytest.raises(HDMapError, match="2 result frames but 1 GT frames"):
        evaluate(results, gts)


# ------------------------------------------------------------------------------------------------
# metrics/raster.py


def test_a_raster_class_with_detections_but_no_gt_anywhere_is_absent():
    """MapVR toolkit (``_accumulate``: ``npig == 0: continue``) and raster.py's docstring: 'classes
    with no GT anywhere are "absent" (−1) and left out of averages' — also when that class has
    detections. Boundary detections without any boundary GT: boundary AP −1; the divider matched
    perfectly (AP 1 by hand: one TP, one GT) is the only defined class, so mAP = line AP = 1.
    Kills: raster.py ``if not ev or num_gts == 0:`` → ``if not ev:``."""
    from gsmap_hd.metrics import evaluate_raster

    gts = [[_vline(0.0)]]
    preds = [[_vline(0.0, score=0.9), _vline(8.0, cls=2, score=0.8)]]
    with np.errstate(all="ignore"):  # (the mutant divides by zero GTs)
        out = evaluate_raster(preds, gts)
    assert out["boundary_ap"] == -1.0
    assert out["ped_ap"] == -1.0
    assert out["divider_ap"] == pytest.approx(1.0, abs=1e-12)
    assert out["mAP"] == pytest.approx(1.0, abs=1e-12)
    assert out["line_ap"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# lane_map_eval.py


def test_per_frame_baseline_is_scored_inside_the_frames_window():
    """score(): the per-frame predictions are scored 'in the windows of frames 0..n−1': a prediction
    outside the frame's region (a confident phantom divider behind the car, region = the forward
    half x ≥ 0) is cut away like the GT there, so the divider on the GT is the only detection: AP 1
    at every threshold, per-frame mAP ⅓ (by hand: one class of three). Left in, the phantom would
    be a first FP: AP ½, mAP ⅙.
    Kills: lane_map_eval.py ``res_frame.append({"vectors": clip_vectors(vecs, ...)})`` → the
    unclipped ``vecs``."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap
    from gsmap_hd.lane_map_eval import FusedDrive, score
    from gsmap_hd.region import Region

    line = np.stack([np.linspace(2.0, 20.0, 10), np.zeros(10)], 1)
    phantom = np.stack([np.linspace(-20.0, -5.0, 10), np.full(10, 6.0)], 1)
    fd = FusedDrive(
        poses=[np.eye(4)],
        regions=[Region("front", box(0, -15, 30, 15))],
        frame_preds=[[(0, 0.5, line), (0, 0.9, phantom)]],
        snapshots={1: []},
        lane_map=LaneMap(),
        gt_map=[(0, line)],
    )
    out = score(fd)
    assert out["per_frame_mAP"] == pytest.approx(1.0 / 3.0)
    assert out["per_frame_class_ap"] == pytest.approx([1.0, 0.0, 0.0])


# ------------------------------------------------------------------------------------------------
# cli/hd_eval.py


def _rep103_doc(tmp_path):
    """A divider 20..28 m ahead in ROS base_link (x forward): inside MapVR's window only once
    rotated into MapTR's frame (x' = −y, y' = x); read as MapTR's x it lies beyond ±15 m."""
    v = {"pts": [[20, 1], [28, 1]], "type": 0}
    doc = {
        "frame": "rep103",
        "results": [{"vectors": [dict(v, confidence_level=0.8)]}],
        "GTs": [{"vectors": [v]}],
    }
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(doc))
    return path


def test_hd_eval_frame_option_overrides_the_files_frame(tmp_path, capsys):
    """hd-eval --help: '--frame ... default: the file's own frame' — so a given --frame wins over
    the file's. A rep103 file read with --frame maptr puts the divider 20..28 m to the right, outside
    the raster's ±15 m columns: an empty mask, IoU 0, divider AP 0 (raster.py: 'Empty masks have IoU
    0'); read in its own frame it is inside and matches itself (AP 1).
    Kills: hd_eval.py ``frame = args.frame or doc.get("frame", ...)`` → the file's frame first."""
    from gs_mapping.cli import main

    path = _rep103_doc(tmp_path)
    assert main(["hd-eval", str(path), "--frame", "maptr"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["frame"] == "maptr"
    assert forced["raster"]["divider_ap"] == 0.0
    assert main(["hd-eval", str(path)]) == 0
    own = json.loads(capsys.readouterr().out)
    assert own["frame"] == "rep103"
    assert own["raster"]["divider_ap"] == pytest.approx(1.0, abs=1e-12)


def test_hd_eval_no_raster_skips_the_raster_metric(tmp_path, capsys):
    """hd-eval --help: '--no-raster  skip the raster IoU AP': the printed object has the Chamfer AP
    (a perfect divider: AP 1 at every threshold, by hand) and no raster part.
    Kills: hd_eval.py ``raster_metric=not args.no_raster`` → ``True``."""
    from gs_mapping.cli import main

    path = _rep103_doc(tmp_path)
    assert main(["hd-eval", str(path), "--no-raster"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "raster" not in out
    assert [row[0] for row in out["chamfer"]["ap"]] == [1.0, 1.0, 1.0]
