"""A Livox CustomMsg is a cloud wherever a PointCloud2 is: ``map``'s bag path (named or found),
mapper_node under the replay runtime and under rclpy (its own Python package, the C layer stood in).

The scene is test_outside_lidar_deskew's: a robot on an arc (3 m/s, 0.8 rad/s) past a slanted wall,
each point measured at its own time, the world points made by hand from the camera (the arc's
formula, not TF). A CustomMsg carries them as livox_ros_driver2 writes them (lddc.cpp: the header
stamped with ``timebase``, the first point's time; ``offset_time`` ns after it); the bags are
written with ``rosbags`` and the driver's own definition (test_livox_messages.DRIVER_MSG).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402
import test_outside_lidar_deskew as dk  # noqa: E402
import test_outside_recordings9 as r9  # noqa: E402
from test_livox_messages import NAMES, driver_types  # noqa: E402

LIVOX = NAMES[0]
TOPIC = "/livox/lidar"
COLOR, INFO = "/camera/color/image_raw", "/camera/color/camera_info"
REPO = Path(__file__).resolve().parents[1]
if LIVOX not in rb.TS.fielddefs:  # (robot_bag writes with rb.TS: the driver's definition goes in the bag)
    rb.TS.register(driver_types())


def livox_msg(color_ns, stamp_after_timebase=0, nan_every=0):
    """The wall as a Livox scan for a colour stamp: timebase (the first point) 10 ms before the
    colour image, each point ``offset_time`` after it; the header stamped ``stamp_after_timebase``
    ns after the timebase (0: as the driver stamps it)."""
    timebase = color_ns - 10_000_000
    taus = dk._scan_times(timebase, 0)
    pts = dk._points(color_ns, taus).reshape(-1, 3).astype(np.float32)
    if nan_every:
        pts[::nan_every] = np.nan
    point = rb.TS.types[LIVOX.replace("CustomMsg", "CustomPoint")]
    offsets = (taus - timebase).reshape(-1)
    points = [
        point(offset_time=int(o), x=float(x), y=float(y), z=float(z), reflectivity=100, tag=0x10, line=i % 4)
        for i, (o, (x, y, z)) in enumerate(zip(offsets, pts, strict=True))
    ]
    return rb.TS.types[LIVOX](
        header=rb._hdr(timebase + stamp_after_timebase, "lidar"), timebase=timebase, point_num=len(points),
        lidar_id=0, rsvd=np.zeros(3, np.uint8), points=points,
    )  # fmt: skip


def twin_pointcloud2(color_ns):
    """The same points and times as :func:`livox_msg` in a PointCloud2 (x, y, z, uint32 ns since the stamp)."""
    timebase = color_ns - 10_000_000
    taus = dk._scan_times(timebase, 0)
    offsets = {"offset_time": (taus - timebase).astype(np.uint32)}
    return r9._cloud(timebase, "lidar", dk.GENERIC_OFFSET, dk._points(color_ns, taus), offsets)


def bag(path, cloud, cloud_type=LIVOX, topic=TOPIC):
    """deskew's robot (4 frames, dense /tf on the arc), the LiDAR's clouds ``cloud(color_ns)`` on ``topic``."""
    _, q = r9._rot("z", dk.LIDAR_YAW)
    return rb.robot_bag(
        path, depth=lambda ns, _f, _d: cloud(ns), depth_topic=topic, depth_type=cloud_type, cfid="cam_optical",
        tf_static=r9._static(("base_link", "lidar", dk.LIDAR_AT, q)), tf_dyn=lambda ns, i: [],
        extra_msgs=dk._tf_msgs(dk.T0 - 300_000_000, dk.T0 + 3 * dk.DT + 300_000_000),
    )  # fmt: skip


def frames(path, deskew=True, topic=TOPIC):
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig

    return list(
        read_frames(path, TopicsConfig(color=COLOR, camera_info=INFO), cloud_topic=topic, deskew=deskew)
    )


# -- the bag path ------------------------------------------------------------------------------------
@pytest.mark.parametrize("deskew", [True, False])
def test_a_custom_msg_bag_maps_like_the_same_points_in_a_pointcloud2(deskew, tmp_path):
    """Frame for frame the same depth image as the PointCloud2 of the same points and times,
    deskewed or not (the points posed at the stamp)."""
    livox = frames(bag(tmp_path / "livox", livox_msg), deskew)
    pc2 = frames(bag(tmp_path / "pc2", twin_pointcloud2, rb.PC2), deskew)
    assert len(livox) == len(pc2) == 4
    for a, b in zip(livox, pc2, strict=True):
        assert a.depth.tobytes() == b.depth.tobytes(), a.index
    if not deskew:  # (what deskewing removes: the skew of a 100 ms scan)
        assert max(np.abs(f.depth - dk._depth_truth())[f.depth > 0].max() for f in livox) > 0.1


@pytest.mark.parametrize("stamp_after_timebase", [0, 20_000_000])
def test_points_land_on_the_wall_by_timebase_plus_offset_time(stamp_after_timebase, tmp_path):
    """Placed by timebase + offset_time, every pixel holds its point at the wall's depth (within the
    deskew buckets' few mm), whether the header is stamped with the timebase (the driver) or 20 ms
    after it (a relay's stamp: offsets read from the stamp would miss by 6 cm)."""
    path = bag(tmp_path / "b", lambda ns: livox_msg(ns, stamp_after_timebase))
    dk._assert_on_the_wall(frames(path))


def test_nan_points_are_left_out_and_the_rest_still_land(tmp_path):
    got = frames(bag(tmp_path / "b", lambda ns: livox_msg(ns, nan_every=7)))
    assert len(got) == 4
    for f in got:
        lost = f.depth == 0
        assert 0 < lost.sum() <= lost.size // 7 + 1
        np.testing.assert_allclose(f.depth[~lost], dk._depth_truth()[~lost], atol=5e-3)


def test_a_humble_sqlite3_recording_without_definitions_reads_from_ours(tmp_path):
    """Humble's rosbag2 sqlite3 stores no message definitions: the CustomMsg is read from the
    definition we register, as the standard types are."""
    path = bag(tmp_path / "b", livox_msg)
    (db,) = path.glob("*.db3")
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM message_definitions")
    from gs_mapping.bag import BagReader

    with BagReader(path) as b:
        assert b.topic(TOPIC).type == LIVOX
        (conn,) = [c for c in b._reader.connections if c.topic == TOPIC]
        assert not conn.msgdef.data  # (no definition left)
    dk._assert_on_the_wall(frames(path))


def test_bad_custom_msgs_skip_their_frame_in_one_line_and_the_rest_map(tmp_path, caplog):
    """point_num not the number of points: that frame is skipped with one line naming it; the
    others are made."""

    def cloud(ns):
        msg = livox_msg(ns)
        if ns == dk.T0 + dk.DT:
            msg.point_num += 1
        return msg

    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig

    stats = FrameStats()
    with caplog.at_level(logging.WARNING):
        got = list(
            read_frames(bag(tmp_path / "b", cloud), TopicsConfig(color=COLOR, camera_info=INFO), stats, TOPIC)
        )
    assert [f.index for f in got] == [0, 2, 3] and stats.invalid_depth == 1
    said = [r.getMessage() for r in caplog.records if "point_num" in r.getMessage()]
    assert len(said) == 1 and "point_num is 769 but it holds 768 points" in said[0], said


# -- choosing the cloud topic -----------------------------------------------------------------------
def _types(**more):
    return {COLOR: rb.IMG, INFO: rb.CINFO, "/tf": rb.TFM, "/livox/imu": "sensor_msgs/msg/Imu", **more}


@pytest.mark.parametrize("name", NAMES)
def test_the_one_custom_msg_topic_is_found_as_the_cloud(name):
    from gs_mapping.topics import discover

    found = discover(_types(**{TOPIC: name}))
    assert (found.color, found.camera_info, found.cloud, found.depth) == (COLOR, INFO, TOPIC, "")


def test_a_custom_msg_beside_a_pointcloud2_is_ambiguous_and_either_can_be_named():
    """FAST-LIO's recordings hold its registered PointCloud2 beside the driver's CustomMsg."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.topics import discover

    types = _types(**{TOPIC: LIVOX, "/cloud_registered": rb.PC2})
    with pytest.raises(ConfigError) as exc:
        discover(types)
    assert (
        "/cloud_registered" in str(exc.value)
        and TOPIC in str(exc.value)
        and "--cloud-topic" in str(exc.value)
    )
    assert discover(types, cloud=TOPIC).cloud == TOPIC
    with pytest.raises(ConfigError) as exc:
        discover(types, cloud="/livox/imu")
    assert "is sensor_msgs/msg/Imu, not" in str(exc.value) and LIVOX in str(exc.value)


def test_map_command_finds_the_livox_topic_and_deskews(tmp_path, monkeypatch, capsys):
    """`gs-mapping map` with no topic options: the CustomMsg is found, said, and each frame fed to
    the mapper holds the wall."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main
    from gs_mapping.mapping.mapper import IncrementalMapper

    path = bag(tmp_path / "b", livox_msg)
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
    )
    fed = []
    add = IncrementalMapper.add_frame
    monkeypatch.setattr(IncrementalMapper, "add_frame", lambda m, f: fed.append(f) or add(m, f))
    args = ["map", str(path), "--out", str(tmp_path / "out"), "--device", "cpu", "--holdout-every", "0"]
    assert main([*args, "--config", str(params), "--no-progress"]) == 0
    dk._assert_on_the_wall(fed)


# -- mapper_node ---------------------------------------------------------------------------------------
def _replay_config(**node):
    from gs_mapping.nodes.mapper_node import MapperNode

    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper"].optim.iterations = cfg["mapper"].optim.first_iterations = 1
    cfg["mapper"].topics.color, cfg["mapper"].topics.camera_info = COLOR, INFO
    for k, v in {"cloud_topic": TOPIC, "cloud_type": LIVOX, **node}.items():
        setattr(cfg["mapper_node"], k, v)
    return cfg


def test_mapper_node_under_replay_maps_a_custom_msg_bag(tmp_path, monkeypatch):
    """The replay runtime feeds the recorded CustomMsgs to mapper_node: four frames, each the wall."""
    pytest.importorskip("torch")
    from gs_mapping.mapping.mapper import IncrementalMapper
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import replay_bag

    fed = []
    add = IncrementalMapper.add_frame
    monkeypatch.setattr(IncrementalMapper, "add_frame", lambda m, f: fed.append(f) or add(m, f))
    _, (node,) = replay_bag(
        bag(tmp_path / "b", livox_msg), tmp_path / "out", [MapperNode], [_replay_config()]
    )
    assert node.mapper.stats.frames == 4 and not node.diag.rejected
    dk._assert_on_the_wall(fed)


def test_mapper_node_counts_bad_custom_msgs_and_goes_on():
    """Live (replay bus): a CustomMsg whose point_num is more than its points, and one with no points field, are
    each rejected in one line on the cloud topic; the next good one makes its frame."""
    pytest.importorskip("torch")
    bus, node, t = dk._node()  # (cloud on dk.TOPIC; the replay bus delivers whatever the bag holds)
    dk._send_tf(bus, t, dk.T0 - 300_000_000, dk.T0 + 200_000_000)
    bad = livox_msg(dk.T0)
    bad.point_num = 769  # (fewer is a merger's: the first point_num are read)
    bus.inject(dk.TOPIC, bad, dk.T0)
    assert node.diag.last_error == f"{dk.TOPIC}: livox CustomMsg: point_num is 769 but it holds 768 points"
    bus.inject(dk.TOPIC, rb.TS.types["std_msgs/msg/String"](data="not a cloud"), dk.T0)
    assert node.diag.rejected[dk.TOPIC] == 2 and node.depths == []
    assert "\n" not in node.diag.last_error
    from gs_mapping.messages import numpy_to_image

    bus.inject(t.color, numpy_to_image(rb._scene(0)[0], "rgb8", dk.T0, "cam_optical", bus.factory), dk.T0)
    bus.inject(dk.TOPIC, livox_msg(dk.T0), dk.T0)
    assert len(node.depths) == 1
    np.testing.assert_allclose(node.depths[0], dk._depth_truth(), atol=5e-3)


def test_mapper_node_refuses_a_cloud_type_it_cannot_read():
    pytest.importorskip("torch")  # (the node's module needs it)
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.mapper_node import MapperNodeConfig

    with pytest.raises(ConfigError) as exc:  # (as the config is built, before the node starts)
        MapperNodeConfig(cloud_topic=TOPIC, cloud_type="sensor_msgs/msg/LaserScan")
    assert "mapper_node.cloud_type" in str(exc.value) and LIVOX in str(exc.value)
