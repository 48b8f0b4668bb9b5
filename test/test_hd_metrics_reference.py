"""Bit-exact agreement with numbers produced by the published reference implementations.

``data/hd_metrics_reference_doc.json`` (50 random frames, see its generator) was evaluated once by
the reference code itself, outside this repository, in a side environment of the references' era:
MapTR's ``map_utils/mean_ap.py`` / ``tpfp.py`` / ``tpfp_chamfer.py`` (eval_use_same_gt_sample_num
_flag=True) with shapely 1.8.5 and numpy 1.26, and the MapVR toolkit's ``demo.py`` /
``map_evaluator.py`` / ``eval_config.py`` with OpenCV 4.7.0, scikit-image 0.24 and pycocotools
2.0.11. Only the resulting numbers are stored here (no reference code is vendored).
"""

from __future__ import annotations

from pathlib import Path

from gsmap_hd.eval_io import load_submission
from gsmap_hd.metrics import evaluate

DOC = Path(__file__).parent / "data" / "hd_metrics_reference_doc.json"

MAPTR_AP = [  # rows: 0.5 / 1.0 / 1.5 m; columns: divider, ped_crossing, boundary
    [0.40248286724090576, 0.37946638464927673, 0.2478085160255432],
    [0.5832110047340393, 0.5539799928665161, 0.3716185390949249],
    [0.5832110047340393, 0.5539799928665161, 0.3716185390949249],
]
MAPTR_MAP = 0.4497085379229652
MAPTR_CLASS_AP = [0.5229682922363281, 0.49580879012743634, 0.33034853140513104]
MAPVR = {
    "line_ap": 0.15883109425820116,
    "divider_ap": 0.21862861860175747,
    "boundary_ap": 0.0990335699146449,
    "ped_ap": 0.4105569500346706,
}


def test_matches_reference_implementations_bit_for_bit():
    results, gts = load_submission(DOC)
    out = evaluate(results, gts)
    assert out["chamfer"]["ap"] == MAPTR_AP
    assert out["chamfer"]["mAP"] == MAPTR_MAP
    assert out["chamfer"]["class_ap"] == MAPTR_CLASS_AP
    for key, value in MAPVR.items():
        assert out["raster"][key] == value, key
