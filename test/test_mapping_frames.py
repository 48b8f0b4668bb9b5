"""Bag → frames on a bag derived from the real kitchen data: frames whose pose cannot be looked up
(TF ends before them) or whose depth is invalid are skipped and counted, never fatal."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import KITCHEN_TOPICS

from gs_mapping.bag import BagReader, BagWriter
from gs_mapping.mapping import FrameStats, read_frames
from gs_mapping.mapping.mapper_config import TopicsConfig
from gs_mapping.messages import numpy_to_image, stamp_to_ns

T = TopicsConfig(**KITCHEN_TOPICS)
TYPES = {
    T.color: "sensor_msgs/msg/Image",
    T.depth: "sensor_msgs/msg/Image",
    T.camera_info: "sensor_msgs/msg/CameraInfo",
    T.tf: "tf2_msgs/msg/TFMessage",
    T.tf_static: "tf2_msgs/msg/TFMessage",
}


def derived_bag(src, dst, n_frames=8, tf_frames=5, zero_depth=(1,), bad_encoding=(2,)):
    """The first ``n_frames`` of ``src`` with /tf only for the first ``tf_frames``, an all-invalid
    depth image at ``zero_depth`` and an undecodable (rgb8) depth image at ``bad_encoding``."""
    counts = {k: 0 for k in TYPES}
    with BagReader(src) as r, BagWriter(dst) as w:
        for name, typ in TYPES.items():
            w.add_topic(name, typ, latched=name == T.tf_static)
        for topic, stamp, msg in r.messages(list(TYPES)):
            i = counts[topic]
            counts[topic] += 1
            if topic != T.tf_static and i >= n_frames:
                continue
            if topic == T.tf and i >= tf_frames:
                continue
            if topic == T.depth and i in zero_depth:
                msg = numpy_to_image(
                    np.zeros((msg.height, msg.width), np.uint16),
                    "16UC1",
                    stamp_to_ns(msg.header.stamp),
                    msg.header.frame_id,
                )
            elif topic == T.depth and i in bad_encoding:
                msg = numpy_to_image(
                    np.zeros((msg.height, msg.width, 3), np.uint8),
                    "rgb8",
                    stamp_to_ns(msg.header.stamp),
                    msg.header.frame_id,
                )
            w.write(topic, stamp, msg)
    return dst


@pytest.fixture(scope="module")
def broken_bag(kitchen_bag, tmp_path_factory):
    return derived_bag(kitchen_bag, tmp_path_factory.mktemp("bags") / "broken")


def test_real_bag_frames(kitchen_bag):
    stats = FrameStats()
    frames = list(read_frames(kitchen_bag, T, stats=stats))
    assert len(frames) == 50 and stats.skipped == 0
    f = frames[0]
    assert f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.float32 and 0 <= f.rgb.min() <= f.rgb.max() <= 1
    assert f.depth.shape == (240, 320) and np.isfinite(f.depth).all() and 0.5 < np.median(f.depth) < 3
    assert f.camera.K[0, 0] == pytest.approx(292.5) and f.camera.frame_id == "camera_color_optical_frame"
    # the optical axis is a unit vector, consecutive poses about 1-2 mm apart at 30 Hz
    R = f.camera.T_map_cam[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    step = np.linalg.norm(frames[1].camera.T_map_cam[:3, 3] - f.camera.T_map_cam[:3, 3])
    assert 1e-4 < step < 0.02
    assert [x.index for x in frames] == list(range(50))


def test_missing_tf_and_invalid_depth_are_skipped_and_counted(broken_bag, caplog):
    caplog.set_level(logging.WARNING)
    stats = FrameStats()
    frames = list(read_frames(broken_bag, T, stats=stats))
    # frames 0..4 have TF; 5 is 33 ms after the last sample (within the 50 ms tolerance), 6 and 7
    # are beyond it → no pose. Frame 2's depth cannot be decoded → invalid depth.
    assert stats.pairs == 8
    assert stats.no_pose == 2 and stats.invalid_depth == 1 and stats.skipped == 3
    assert [f.index for f in frames] == [0, 1, 3, 4, 5]
    assert "no pose map <- camera_color_optical_frame" in caplog.text
    # Frame 1 decodes but holds no valid depth: the mapper skips and counts it.
    assert not np.any(frames[1].depth > 0)


def test_missing_topic_is_a_bag_error(kitchen_bag):
    from gs_mapping.errors import BagError

    with pytest.raises(BagError, match="/nope"):
        list(read_frames(kitchen_bag, TopicsConfig(color="/nope")))


def test_messages_recorded_twice_are_skipped_once_said(kitchen_bag, tmp_path, caplog):
    """A bag with every image twice (recorded by two recorders, or merged with itself): each frame
    is read once, and the repeats are counted as such, not as 'messages that found no partner'."""
    with BagReader(kitchen_bag) as r, BagWriter(tmp_path / "twice") as w:
        for name, typ in TYPES.items():
            w.add_topic(name, typ, latched=name == T.tf_static)
        seen = {T.color: 0, T.depth: 0}
        for topic, stamp, msg in r.messages(list(TYPES)):
            if topic in seen:
                if seen[topic] >= 6:
                    continue
                seen[topic] += 1
                w.write(topic, stamp, msg)
            w.write(topic, stamp, msg)
    stats = FrameStats()
    with caplog.at_level(logging.WARNING):
        frames = list(read_frames(tmp_path / "twice", T, stats=stats))
    assert len(frames) == 6 and [f.index for f in frames] == list(range(6))
    assert stats.duplicates == 12 and stats.unpaired == 0 and stats.skipped == 0
    assert "12 colour/depth messages repeat the stamp" in caplog.text and "no partner" not in caplog.text


def test_registered_depth_moves_with_the_colour_camera_never_by_its_headers_frame(caplog):
    """Depth taken as registered (no depth CameraInfo) is in the colour camera's image: stamped
    later than colour it is moved by the colour camera's own motion between the stamps (here 0.2 m
    forward in 1 s: a 2 m wall reads 2.2 m from where colour was), never by the TF offset of the
    frame its header names (1 m behind colour here: 1.2 m if applied). That frame is said once, not
    each frame (hand computation; mapper_node calls the same function with the same arguments)."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.tf import MapPoses, TFBuffer

    s, q = 10**9, np.array([0.0, 0.0, 0.0, 1.0])
    K = np.array([[100.0, 0, 15.5], [0, 100.0, 11.5], [0, 0, 1]])
    color = CameraIntrinsics(32, 24, K, frame_id="reg_color")
    tf = TFBuffer(cache_time_s=0)
    for k in range(2):  # (the colour optical frame's z is its view axis)
        tf.add(TransformStamped("map", "reg_color", k * s, Transform(np.array([0, 0, 0.2 * k]), q)))
    tf.add(TransformStamped("reg_color", "reg_depth", 0, Transform(np.array([0, 0, -1.0]), q)), static=True)
    poses = MapPoses(tf, "map")
    wall = np.full((24, 32), 2.0, np.float32)
    caplog.set_level(logging.WARNING, logger="gs_mapping.mapping.frames")
    for depth_stamp, want in ((0, 2.0), (s, 2.2), (s, 2.2)):
        out = depth_in_color(
            wall, "reg_depth", depth_stamp, color, np.eye(4), poses, None, False, 0, "reg_color"
        )
        assert float(np.median(out[out > 0])) == pytest.approx(want, abs=1e-4)
    said = [r for r in caplog.records if "'reg_depth'" in r.getMessage()]
    assert len(said) == 1 and "taken as registered" in said[0].getMessage()


def test_mapper_node_places_registered_depth_by_the_same_rule(tmp_path):
    """The live path (mapper_node's ``_frame``, given a pair as its synchroniser gives one) places
    a registered depth whose header names a frame 0.2 m behind colour as ``map`` does: the recorded
    1.5 m wall (hand computation: the robot moves 0.2 µm in 1 µs), whether the depth is stamped as
    colour or 1 µs later."""
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    pytest.importorskip("rosbags.rosbag2")
    import test_hostile_robot_inputs as rb

    from gs_mapping.messages.camera_image import color_to_rgb, depth_to_metres
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    optical, depth_frame = "camera_color_optical_frame", "camera_depth_optical_frame"
    static = [
        rb._tf(rb.T0, "base_link", "camera_link", (0.1, 0.0, 0.2)),
        rb._tf(rb.T0, "camera_link", optical, q=rb.OPT_Q),
        rb._tf(rb.T0, optical, depth_frame, (0.0, 0.0, -0.2)),
    ]
    depth_topic = "/camera/aligned_depth_to_color/image_raw"
    medians = []
    for offset in (0, 1_000):

        def depth(ns, fid, d, offset=offset):
            return rb._image(ns + offset, fid, (d * 1000).astype(np.uint16), "16UC1")

        bag = rb.robot_bag(tmp_path / f"b{offset}", n=2, depth=depth, dfid=depth_frame, tf_static=[static])
        with BagReader(bag) as b:
            msgs = list(b.messages())
        params = tmp_path / "p.yaml"
        params.write_text(
            f"/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n"
            f"      topics: {{color: /camera/color/image_raw, camera_info: /camera/color/camera_info, depth: {depth_topic}}}\n"
        )
        bus = ReplayBus()
        node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(params)))
        for topic, stamp, msg in msgs:
            if topic in ("/tf", "/tf_static", "/camera/color/camera_info"):
                bus.inject(topic, msg, stamp)
        color = next(m for t, _, m in msgs if t == "/camera/color/image_raw")
        dmsg = next(m for t, _, m in msgs if t == depth_topic)
        frame = node._frame(
            (color.header, color_to_rgb(color)),
            (dmsg.header, depth_to_metres(dmsg)),
            stamp_to_ns(color.header.stamp),
        )
        medians.append(float(np.median(frame.depth[frame.depth > 0])))
    assert medians == pytest.approx([1.5, 1.5], abs=1e-3)
