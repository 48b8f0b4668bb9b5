"""hd-eval: file validation (HDMapError naming frame/vector/key), evaluate(), the CLI."""

from __future__ import annotations

import json
import math

import pytest

from gs_mapping.cli import main
from gsmap_hd.errors import HDMapError
from gsmap_hd.eval_io import load_submission, parse_submission
from gsmap_hd.metrics import evaluate


def good_doc():
    return {
        "results": [
            {
                "sample_token": "a",
                "vectors": [
                    {"pts": [[0, 0], [0, 10]], "type": 0, "confidence_level": 0.9},
                    {
                        "pts": [[-2, -2], [2, -2], [2, 2], [-2, 2], [-2, -2]],
                        "type": 1,
                        "confidence_level": 0.8,
                        "pts_num": 5,
                        "cls_name": "ped_crossing",
                    },
                    {"pts": [[10, -20], [10, 20]], "type": 2, "confidence_level": 0.7},
                ],
            },
            {"vectors": []},
        ],
        "GTs": [
            {
                "sample_token": "a",
                "vectors": [
                    {"pts": [[0.1, 0], [0.1, 10]], "type": 0},
                    {"pts": [[-2, -2], [2, -2], [2, 2], [-2, 2], [-2, -2]], "type": 1},
                    {"pts": [[10, -20], [10, 20]], "type": 2},
                ],
            },
            {"vectors": [{"pts": [[-10, 0], [-10, 5]], "type": 0}]},
        ],
    }


def test_parse_good_doc_and_evaluate_dicts_directly():
    results, gts = parse_submission(good_doc())
    assert [len(f) for f in results] == [3, 0] and results[0][1].cls == 1
    assert gts[0][0].score == 1.0
    out = evaluate(good_doc()["results"], good_doc()["GTs"])
    assert out["num_frames"] == 2
    assert out["chamfer"]["thresholds"] == [0.5, 1.0, 1.5]
    assert len(out["chamfer"]["ap"]) == 3 and all(len(r) == 3 for r in out["chamfer"]["ap"])
    # divider: 1 TP of 2 GTs → AP .5; ped / boundary exact → 1.
    assert out["chamfer"]["ap"] == [[0.5, 1.0, 1.0]] * 3
    assert out["chamfer"]["mAP"] == pytest.approx(2.5 / 3)
    for key in ("line_ap", "ped_ap", "mAP"):
        assert -1 <= out["raster"][key] <= 1


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["results"][0]["vectors"][0].update(type=3), "results[0].vectors[0].type"),
        (lambda d: d["GTs"][0]["vectors"][2].update(type="boundary"), "GTs[0].vectors[2].type"),
        (lambda d: d["GTs"][0]["vectors"][0].update(type=True), "unknown class"),
        (lambda d: d["results"][0]["vectors"][1].update(pts=[[0, 0], [1]]), "vectors[1].pts[1]"),
        (lambda d: d["results"][0]["vectors"][1].update(pts=[[0, 0], [1, "x"]]), "pts[1]"),
        (lambda d: d["results"][0]["vectors"][1].update(pts={"x": 1}), "vectors[1].pts"),
        (lambda d: d["results"][0]["vectors"][0].update(pts=[[0, 0], [math.nan, 1]]), "not finite"),
        (lambda d: d["GTs"][1]["vectors"][0].update(pts=[[0, 0], [1e6, 1]]), "GTs[1].vectors[0].pts[1]"),
        (lambda d: d["results"][0]["vectors"][0].pop("confidence_level"), "'confidence_level'"),
        (lambda d: d["results"][0]["vectors"][0].update(confidence_level=math.inf), "confidence_level"),
        (lambda d: d["GTs"][0]["vectors"][0].pop("pts"), "GTs[0].vectors[0]: missing key 'pts'"),
        (lambda d: d["GTs"][1].pop("vectors"), "GTs[1]: missing key 'vectors'"),
        (lambda d: d.pop("GTs"), "missing key 'GTs'"),
        (lambda d: d["GTs"].pop(), "2 result frames but 1 GT frames"),
        (lambda d: d["GTs"][1]["vectors"][0].update(pts=[[0, 0]]), "at least 2 points"),
        (lambda d: d["GTs"][0].update(sample_token="b"), "sample_token"),
        (lambda d: d["results"].__setitem__(1, 7), "results[1]: a frame must be an object"),
    ],
)
def test_bad_input_names_what_and_where(mutate, needle):
    doc = good_doc()
    mutate(doc)
    with pytest.raises(HDMapError) as exc:
        parse_submission(doc, "f.json")
    assert needle in str(exc.value) and "f.json" in str(exc.value)


def test_short_predictions_are_valid_input():
    doc = good_doc()
    doc["results"][0]["vectors"][0]["pts"] = [[0, 0]]
    doc["results"][1]["vectors"].append({"pts": [], "type": 2, "confidence_level": 0.1})
    results, _ = parse_submission(doc)  # accepted as input …
    assert [len(f) for f in results] == [3, 1]
    # … and skipped by the metrics, as both references do: the same figures as without them
    without = good_doc()
    del without["results"][0]["vectors"][0]
    got, want = evaluate(doc["results"], doc["GTs"]), evaluate(without["results"], without["GTs"])
    assert got["chamfer"] == want["chamfer"] and got["raster"] == want["raster"]
    assert got["chamfer"]["ap"][0][0] == 0.0  # the divider's only prediction was the short one
    assert evaluate(good_doc()["results"], good_doc()["GTs"])["chamfer"]["ap"][0][0] == 0.5


def test_load_errors(tmp_path):
    with pytest.raises(HDMapError, match="cannot read"):
        load_submission(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(HDMapError, match="empty file"):
        load_submission(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text('{"results": [')
    with pytest.raises(HDMapError, match="not valid JSON"):
        load_submission(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text(json.dumps(good_doc()).replace("0.9", "NaN"))
    with pytest.raises(HDMapError, match="confidence_level"):
        load_submission(tmp_path / "nan.json")


def test_cli_prints_one_json_object(tmp_path, capsys):
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(good_doc()))
    out_path = tmp_path / "out" / "metrics.json"
    assert main(["hd-eval", str(path), "--out", str(out_path)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(printed)
    assert set(res) >= {"chamfer", "raster"}
    assert set(res["chamfer"]) >= {"thresholds", "ap", "mAP"}
    assert set(res["raster"]) >= {"line_ap", "ped_ap", "mAP"}
    assert json.loads(out_path.read_text()) == res
    assert main(["hd-eval", str(path), "--opencv-fill", "4.11", "--no-chamfer"]) == 0
    res2 = json.loads(capsys.readouterr().out)
    assert "chamfer" not in res2 and res2["raster"].pop("opencv_fill") == "4.11"
    assert res["raster"].pop("opencv_fill") == "4.7"
    assert res2["raster"] == res["raster"]  # nothing is clipped by the border here


def test_cli_zero_frames(tmp_path, capsys):
    path = tmp_path / "zero.json"
    path.write_text(json.dumps({"results": [], "GTs": []}))
    assert main(["hd-eval", str(path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["chamfer"]["mAP"] == 0.0 and res["raster"]["mAP"] == -1.0


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    doc = good_doc()
    doc["GTs"][0]["vectors"][1]["type"] = 7
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["hd-eval", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GTs[0].vectors[1].type" in err[0] and "unknown class 7" in err[0]


def test_rep103_frame_is_rotated_into_the_maptr_window():
    # A divider 25 m ahead in ROS base_link (x forward, y left) lies outside MapTR's ±15 m x window
    # but inside its ±30 m y window once rotated: x' = −y, y' = x.
    gt = {"vectors": [{"pts": [[20, 1], [28, 1]], "type": 0}]}
    pred = {"vectors": [{"pts": [[20, 1], [28, 1]], "type": 0, "confidence_level": 0.8}]}
    as_maptr = evaluate([pred], [gt])
    as_rep103 = evaluate([pred], [gt], frame="rep103")
    assert as_maptr["raster"]["divider_ap"] == 0.0  # empty masks: outside the window
    assert as_rep103["raster"]["divider_ap"] == pytest.approx(1.0, abs=1e-12)
    assert as_rep103["chamfer"]["ap"] == as_maptr["chamfer"]["ap"] == [[1.0, 0.0, 0.0]] * 3
    with pytest.raises(HDMapError, match="unknown BEV frame"):
        evaluate([pred], [gt], frame="enu")
