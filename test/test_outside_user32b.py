"""Outside user #32b's probe of the mapping side (map, replay) on the real kitchen bags and bags
derived from them: what it found, each as a test.

- A parameter file whose node key is misspelt (``/mapper_nod:`` over a ``mapper:`` section) was read
  as rcl reads it, for no node, so ``map`` and ``replay`` ran with the defaults and said nothing.
  Now a key holding the suite's sections that names none of its nodes is refused (exit 2, nothing
  written), and a namespaced one (``/robot1/mapper_node``, which these commands never run) is said.
- TF that starts late where the camera's motion is ``map -> base_link`` itself (the 7-Scenes layout:
  a SLAM's or a dataset's ground-truth poses, no odometry under them) was taken for a late
  localisation over odometry: the frames before its first sample were all posed at that first
  sample, mapped, and none counted as skipped (1 s of frames piled at one pose). They have no pose.
- ``map --max-frames N`` says skipped frames do not count, yet counted them; and a frame skipped
  after the N-th pair was read past the limit: with TF starting late ``--max-frames 2`` read on to the
  first posed frame, dropped it, and said "no usable frame to map".
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gs_mapping.cli import main

KITCHEN = "7scenes_kitchen_rgbd"
FAST = "/**:\n  ros__parameters:\n    mapper:\n      optim: {iterations: 2, first_iterations: 2, refine_iterations: 0}\n"


def _late_tf_bag(src, dst, late: int, frames: int):
    """The kitchen bag's first ``frames`` frames with its first ``late`` ``/tf`` messages (its only
    moving edge, ``map -> base_link``, one per frame) left out: TF starts at frame ``late``."""
    from gs_mapping.bag import BagReader, BagWriter

    images = ("/camera/color/image_raw", "/camera/depth/image_rect_raw", "/camera/color/camera_info")
    seen: dict[str, int] = {}
    with BagReader(src) as r, BagWriter(dst) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        for topic, stamp, msg in r.messages():
            seen[topic] = seen.get(topic, 0) + 1
            if (topic == "/tf" and seen[topic] <= late) or (topic in images and seen[topic] > frames):
                continue
            w.write(topic, stamp, msg)
    return dst


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("command", ["map", "replay"])
def test_a_misspelt_node_key_is_refused_not_left_unread(shared_data, tmp_path, capsys, command):
    config = tmp_path / "mine.yaml"
    config.write_text("/mapper_nod:\n  ros__parameters:\n    mapper:\n      optim: {iterations: 5}\n")
    out = tmp_path / "out"
    argv = [command, str(shared_data / KITCHEN), "--out", str(out), "--config", str(config)]
    argv += ["--max-frames", "1"] if command == "map" else ["--nodes", "map_receiver_node"]
    assert main(argv) == 2
    err = _one_error(capsys)
    assert f"gs-mapping {command}: error: {config}: node key '/mapper_nod' names no node" in err, err
    assert "'mapper' section" in err, err
    assert not out.exists()


def test_a_namespaced_node_key_replay_does_not_run_is_said(shared_data, tmp_path, caplog):
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "/robot1/map_receiver_node:\n  ros__parameters:\n    map_receiver_node: {min_opacity: 0.5}\n"
    )
    out = tmp_path / "out"
    argv = ["replay", str(shared_data / KITCHEN), "--out", str(out), "--config", str(config)]
    assert main([*argv, "--nodes", "map_receiver_node"]) == 0
    said = [
        r.getMessage() for r in caplog.records if "'/robot1/map_receiver_node' is not read" in r.getMessage()
    ]
    assert len(said) == 1 and "outside any namespace" in said[0], said


def test_a_camera_pose_tf_that_starts_late_is_no_pose_not_its_first_sample(shared_data, tmp_path):
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.messages import stamp_to_ns

    src = shared_data / KITCHEN
    bag = _late_tf_bag(src, tmp_path / "late", late=5, frames=8)
    topics = TopicsConfig(
        color="/camera/color/image_raw",
        depth="/camera/depth/image_rect_raw",
        camera_info="/camera/color/camera_info",
        depth_camera_info="",
    )
    stats = FrameStats()
    frames = list(read_frames(bag, topics, stats))
    # frames 0..3 are over 50 ms (tf_tolerance_s) before the first sample (frame 5's stamp; frame 4
    # is 33 ms before it, within): no pose, skipped and counted
    assert stats.no_pose == 4 and stats.skipped == 4, (stats.no_pose, stats.skipped)
    assert [f.index for f in frames] == [4, 5, 6, 7]
    # the others are posed by the recording's own map -> base_link and mount, composed here by hand
    # (frame 4, 33 ms before the first sample, by that sample, as tf_tolerance_s allows)
    poses, mount = {}, None
    with BagReader(src) as r:
        for topic, _, msg in r.messages(["/tf", "/tf_static"]):
            for t in msg.transforms:
                if topic == "/tf_static":
                    mount = _matrix(t.transform)
                else:
                    poses[stamp_to_ns(t.header.stamp)] = _matrix(t.transform)
    for f in frames:
        stamp = f.stamp_ns if f.index > 4 else frames[1].stamp_ns
        np.testing.assert_allclose(f.camera.T_map_cam, poses[stamp] @ mount, atol=1e-9)


def _matrix(tr) -> np.ndarray:
    x, y, z, w = tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w
    m = np.eye(4)
    m[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    m[:3, 3] = tr.translation.x, tr.translation.y, tr.translation.z
    return m


def test_max_frames_counts_the_frames_mapped_not_the_skipped_ones(shared_data, tmp_path, capsys):
    pytest.importorskip("torch")
    bag = _late_tf_bag(shared_data / KITCHEN, tmp_path / "late", late=5, frames=8)
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    out = tmp_path / "out"
    argv = ["map", str(bag), "--out", str(out), "--config", str(config), "--holdout-every", "0"]
    assert main([*argv, "--max-frames", "2", "--no-progress"]) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    # pairs 0..3 skipped (no pose), 4 and 5 mapped: the run stops after them, nothing read past
    assert (m["mapping_frames"], m["frames"], m["skipped"]) == (2, 6, 4), m
    assert m["skipped_detail"]["no_pose"] == 4, m["skipped_detail"]
    assert "from 2 keyframes of 6 frames (4 skipped)" in capsys.readouterr().out
