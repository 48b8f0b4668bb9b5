"""``gs-mapping info``: JSON and table output on the real bag; one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gs_mapping.bag import BagWriter
from gs_mapping.cli.info import summarize
from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.messages import transforms_to_tf_message


def run_info(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", "info", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_json_on_kitchen_bag(kitchen_bag):
    proc = run_info(kitchen_bag, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert {t["name"]: (t["type"], t["count"]) for t in info["topics"]} == {
        "/camera/color/image_raw": ("sensor_msgs/msg/Image", 50),
        "/camera/depth/image_rect_raw": ("sensor_msgs/msg/Image", 50),
        "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 50),
        "/tf": ("tf2_msgs/msg/TFMessage", 50),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
    }
    assert info["start_ns"] == 1_700_000_000_000_000_000
    assert info["end_ns"] == 1_700_000_001_633_333_248
    assert info["tf_frames"] == {"base_link": "map", "camera_color_optical_frame": "base_link"}
    edges = {e["child"]: e for e in info["tf_edges"]}
    assert edges["camera_color_optical_frame"]["static"] and not edges["base_link"]["static"]
    assert edges["base_link"]["count"] == 50
    assert info["tf_errors"] == []


def test_table_on_kitchen_bag(kitchen_bag):
    proc = run_info(kitchen_bag)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "/camera/depth/image_rect_raw" in out and "sensor_msgs/msg/CameraInfo" in out
    assert "duration: 1.633 s" in out
    lines = out.splitlines()
    tree = lines[lines.index("TF tree:") + 1 :]
    assert tree[0].strip() == "map"
    assert "base_link" in tree[1] and "dynamic, 50 samples" in tree[1]
    assert "camera_color_optical_frame" in tree[2] and "static" in tree[2]
    assert tree[2].index("└") > tree[1].index("└")  # child indented below its parent
    row = next(line for line in lines if line.startswith("/tf_static"))
    assert row.split()[-2:] == ["1", "latched"]


@pytest.mark.parametrize("make", ["missing", "truncated", "garbage_file"])
def test_errors_are_one_line_and_exit_non_zero(tmp_path, kitchen_bag, make):
    if make == "missing":
        target = tmp_path / "no_such_bag"
    elif make == "truncated":
        target = tmp_path / "cut"
        target.mkdir()
        mcap = next(kitchen_bag.glob("*.mcap"))
        (target / mcap.name).write_bytes(mcap.read_bytes()[:100_000])
        (target / "metadata.yaml").write_bytes((kitchen_bag / "metadata.yaml").read_bytes())
    else:
        target = tmp_path / "junk.mcap"
        target.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 40)
    proc = run_info(target, "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gs-mapping info: error: ") and str(target) in err
    assert "Traceback" not in err


def test_bag_we_write_and_bad_transform_is_reported_not_fatal(tmp_path):
    bag = tmp_path / "b"
    good = TransformStamped("map", "base_link", 5, Transform(np.zeros(3), np.array([0, 0, 0, 1.0])))
    with BagWriter(bag) as w:
        w.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        w.write(
            "/tf_static",
            1,
            transforms_to_tf_message(
                [
                    TransformStamped(
                        "base_link", "lidar", 1, Transform(np.array([0, 0, 1.0]), np.array([0, 0, 0, 1.0]))
                    )
                ]
            ),
        )
        w.write("/tf", 5, transforms_to_tf_message([good]))
        msg = transforms_to_tf_message([TransformStamped("map", "base_link", 6, good.transform)])
        msg.transforms[0].transform.rotation.w = 2.0  # not a unit quaternion
        w.write("/tf", 6, msg)
    info = summarize(bag)
    assert info["tf_frames"] == {"base_link": "map", "lidar": "base_link"}
    assert len(info["tf_errors"]) == 1 and "not unit" in info["tf_errors"][0]
    assert info["tf_errors"][0].startswith("/tf: ")
    assert [t["latched"] for t in info["topics"]] == [False, True]
    proc = run_info(bag)
    assert proc.returncode == 0 and "TF warning: /tf:" in proc.stdout
