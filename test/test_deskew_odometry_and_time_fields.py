"""Deskewing in the odometry frame, long clouds, 64-bit and Autoware nebula time fields
(mapping/deskew.py, tf.odometry_frame, frames.depth_in_color, messages/pointcloud2.py).

The scene is test_outside_lidar_deskew's: a robot on an arc with a roof LiDAR and a camera, the
truth its hand geometry (every pixel at the wall's depth), never the deskewer's bookkeeping. nebula's
layouts were read in tier4/nebula's source (nebula_core_common/point_types.hpp: PointXYZIRCAEDT's
``time_stamp`` uint32 at offset 28 of 32 bytes, hesai_decoder.hpp ``get_point_time_relative``: ns
since the scan's start, which decoder_wrapper.cpp stamps the cloud with; PointXYZIRADT's
``time_stamp`` float64 at offset 40 of 48, nebula_common.cpp: that stamp + the relative time, s).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402
import test_outside_lidar_deskew as dk  # noqa: E402
import test_outside_recordings9 as r9  # noqa: E402

T0, DT = rb.T0, rb.DT
MS = 1_000_000


def _arc(ns):
    """(xyz, quaternion) of dk's robot (T_odom_base_link, the arc) at ``ns``."""
    T = dk._base(ns)
    th = np.arctan2(T[1, 0], T[0, 0])
    return T[:3, 3], (0.0, 0.0, float(np.sin(th / 2)), float(np.cos(th / 2)))


def _bag(path, cloud, tf_at):
    """dk's four frames and roof LiDAR, with ``tf_at(ns)`` -> [TransformStamped] on /tf every 5 ms."""
    tf = [
        (ns, "/tf", rb.T[rb.TFM](transforms=tf_at(ns)))
        for ns in range(T0 - 300 * MS, T0 + 3 * DT + 300 * MS + 1, dk.TF_STEP)
    ]
    _, q = r9._rot("z", dk.LIDAR_YAW)
    return rb.robot_bag(
        path, depth=lambda ns, _f, _d: cloud(ns), depth_topic=dk.TOPIC, depth_type=rb.PC2, cfid="cam_optical",
        tf_static=r9._static(("base_link", "lidar", dk.LIDAR_AT, q)), tf_dyn=lambda ns, i: [], extra_msgs=tf,
    )  # fmt: skip


JUMP_AT = T0 + DT + 50 * MS  # mid-scan of frame 1 (its cloud stamped 10 ms before its colour image)
JUMP = (0.1, 0.05, 0.0)  # a localisation correcting map -> odom by 11 cm

TREES = {
    # map -> odom (jumping once mid-scan) -> base_link (the arc): the motion is odom's
    "map jumps, odom moves": lambda ns: [
        rb._tf(ns, "map", "odom", JUMP if ns > JUMP_AT else (0.0, 0.0, 0.0)),
        rb._tf(ns, "odom", "base_link", *_arc(ns)),
    ],
    # no odometry: a localisation (or a simulator's truth) publishing map -> base_link, the only motion
    "map -> base_link only": lambda ns: [rb._tf(ns, "map", "base_link", *_arc(ns))],
    # no map: the first frame's pose is the map, odom the root
    "odom -> base_link, no map": lambda ns: [rb._tf(ns, "odom", "base_link", *_arc(ns))],
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_a_moving_robots_scan_is_deskewed_by_its_odometry_whatever_the_tree(tree, tmp_path):
    """The robot drives the arc; ouster clouds (``t`` ns since the scan's start). Each point lands on
    its pixel at the wall's depth: through ``odom`` while the localisation corrects ``map -> odom``
    by 11 cm halfway through frame 1's scan (taken in ``map``, the correction would move that scan's
    second half by 11 cm); through ``map`` where only it moves the robot; through the root where
    there is no map."""
    dk._assert_on_the_wall(dk._frames(_bag(tmp_path / "b", dk._driver_cloud("ouster"), TREES[tree])))


def test_odometry_frame_is_maps_child_where_odometry_moves_the_frame():
    """tf2's fixed frame for a scan's motion, by hand on five trees."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.tf import TFBuffer, odometry_frame

    def tree(*edges):
        tf = TFBuffer()
        for parent, child, static in edges:
            tf.add(TransformStamped(parent, child, T0, Transform()), static=static)
        return tf

    lidar = [("base_link", "lidar", True)]
    full = tree(("earth", "map", True), ("map", "odom", False), ("odom", "base_link", False), *lidar)
    assert odometry_frame(full, "map", "lidar") == "odom"
    assert odometry_frame(full, "/map", "/lidar") == "odom"
    assert odometry_frame(tree(("map", "base_link", False), *lidar), "map", "lidar") is None
    assert odometry_frame(tree(("odom", "base_link", False), *lidar), "map", "lidar") is None
    still_odom = tree(("map", "odom", False), ("odom", "base_link", True), *lidar)
    assert odometry_frame(still_odom, "map", "lidar") is None  # (only map moves it)


def test_live_node_deskews_through_odom_while_the_localisation_corrects_map_mid_scan():
    """mapper_node, the same rule: ``map -> odom`` jumps by 11 cm 40 ms into the scan (the cloud
    stamped 10 ms before the colour image, the scan 100 ms); the robot drives the arc. Every pixel
    holds its point at the wall's depth."""
    pytest.importorskip("torch")
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message

    bus, node, t = dk._node()
    jump = np.eye(4)
    jump[:3, 3] = JUMP
    for ns in range(T0 - 300 * MS, T0 + 200 * MS + 1, dk.TF_STEP):
        tfs = [
            TransformStamped(
                "map", "odom", ns, Transform.from_matrix(jump if ns > T0 + 40 * MS else np.eye(4))
            ),
            TransformStamped("odom", "base_link", ns, Transform.from_matrix(dk._base(ns))),
        ]
        bus.inject(t.tf, transforms_to_tf_message(tfs, bus.factory), ns)
    dk._send_frame(bus, t)
    assert len(node.depths) == 1
    np.testing.assert_allclose(node.depths[0], dk._depth_truth(), atol=5e-3)


# -- Autoware nebula's time_stamp ------------------------------------------------------------------------
NEBULA_XYZIRCAEDT = r9._layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "u1"), ("return_type", 13, "u1"),
     ("channel", 14, "u2"), ("azimuth", 16, "f4"), ("elevation", 20, "f4"), ("distance", 24, "f4"),
     ("time_stamp", 28, "u4")], 32,
)  # fmt: skip
NEBULA_XYZIRADT = r9._layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 16, "f4"), ("ring", 20, "u2"),
     ("azimuth", 24, "f4"), ("distance", 28, "f4"), ("return_type", 32, "u1"), ("time_stamp", 40, "f8")], 48,
)  # fmt: skip
# layout, dk._encode's encoding: uint32 ns since the stamp (nebula_points), absolute s (aw_points_ex)
NEBULA = {"nebula_points": (NEBULA_XYZIRCAEDT, "ouster"), "aw_points_ex": (NEBULA_XYZIRADT, "hesai")}


@pytest.mark.parametrize("topic", sorted(NEBULA))
def test_autoware_nebula_time_stamp_clouds_land_on_the_wall(topic, tmp_path):
    """nebula stamps a cloud with its scan's start; ``time_stamp`` is uint32 ns since it in its own
    points (PointXYZIRCAEDT) and that stamp plus them in float64 s in Autoware's (PointXYZIRADT).
    Read by that convention, every point lands on its pixel at the wall's depth."""
    layout, kind = NEBULA[topic]

    def cloud(color_ns):
        stamp = color_ns - 10 * MS
        taus = dk._scan_times(stamp, 0)
        return r9._cloud(stamp, "lidar", layout, dk._points(color_ns, taus), {"time_stamp": dk._encode(kind, taus, stamp)})  # fmt: skip

    dk._assert_on_the_wall(dk._frames(dk._bag(tmp_path / "b", cloud)))


# -- 8-byte integer times -----------------------------------------------------------------------------
SIM = 12_300_000_000  # a simulator's clock, 12.3 s after its start


@pytest.mark.parametrize(
    "values, stamp_ns, want",
    [
        (np.array([-100 * MS, 0], np.int64), T0, [-0.1, 0.0]),  # ns since the stamp, before it
        (np.array([0, 80 * MS], np.uint64), T0, [0.0, 0.08]),  # ns since the stamp
        (np.array([T0, T0 + 80 * MS, T0 + 123], np.uint64), T0, [0.0, 0.08, 123e-9]),  # absolute ns
        (np.array([T0 - 100 * MS + 7, T0], np.int64), T0, [-0.1 + 7e-9, 0.0]),  # absolute ns, before
        (np.array([0, 50 * MS], np.int64), SIM, [0.0, 0.05]),  # ns since the stamp, simulator clock
        (np.array([SIM, SIM + 50 * MS], np.uint64), SIM, [0.0, 0.05]),  # absolute ns, simulator clock
        (np.array([0, 50 * MS], np.uint32), T0, [0.0, 0.05]),  # 4 bytes: ns since the stamp, always
    ],
)
def test_eight_byte_integer_times_are_read_by_the_nearest_reading(values, stamp_ns, want):
    """ns since the stamp or absolute ns, whichever is nearest the stamp, to the nanosecond (a float64
    of an absolute ns count is 256 ns coarse: the difference is taken in integers)."""
    from gs_mapping.messages.pointcloud2 import seconds_since_stamp

    np.testing.assert_allclose(seconds_since_stamp(values, stamp_ns), want, rtol=0, atol=1e-12)


# -- clouds of seconds -----------------------------------------------------------------------------------
def _straight(ns):
    """T_odom_lidar: driving along x at 1 m/s from the origin at T0."""
    T = np.eye(4)
    T[0, 3] = (ns - T0) / 1e9
    return T


def test_a_three_second_cloud_stamped_at_its_end_is_deskewed_whole_in_at_most_64_lookups():
    """A Hesai 10 Hz sensor with ``frame_frequency`` 1/3 Hz (30 rotations a cloud), stamped at its
    end as velodyne's default does, float32 ``time`` s since the stamp (-3 .. 0 s), read through
    pointcloud2_xyz_times. Driving at 1 m/s, each point must be where it was in the LiDAR's frame at
    the stamp (hand geometry), within a bucket's motion (3 s / 64: 47 mm), TF asked at most 64 times."""
    from gs_mapping.mapping.deskew import MAX_BUCKETS, Deskew
    from gs_mapping.messages import pointcloud2_xyz_times

    rng = np.random.default_rng(11)
    n, span = 4000, 3_000_000_000
    stamp = T0 + span
    taus = T0 + np.sort(rng.integers(0, span + 1, n))
    world = np.column_stack([rng.uniform(5, 20, n), rng.uniform(-5, 5, n), rng.uniform(-1, 2, n)])
    seen = world - ((taus - T0) / 1e9)[:, None] * np.array([1.0, 0.0, 0.0])
    msg = r9._cloud(stamp, "lidar", r9.VELODYNE, seen[None], {"time": ((taus - stamp) / 1e9)[None]}, dense=True)  # fmt: skip
    xyz, dt = pointcloud2_xyz_times(msg)
    asked = []
    out = Deskew(dk.TOPIC)(xyz, dt, stamp, _straight(stamp), lambda ns: asked.append(ns) or _straight(ns))
    err = np.linalg.norm(out - (world - _straight(stamp)[:3, 3]), axis=1)
    assert err.max() <= span / 1e9 / MAX_BUCKETS, (
        f"{int((err > 0.05).sum())} points off, up to {err.max():.3f} m"
    )
    assert 0 < len(asked) <= MAX_BUCKETS


def test_times_beyond_the_longest_cloud_a_driver_publishes_stay_at_the_stamp_said_once(caplog):
    """A time further from the stamp than MAX_SKEW_S is not its scan's (a unit misread): those points
    are posed at the stamp (left as they are), the others moved by their times, one warning naming
    the topic."""
    from gs_mapping.mapping.deskew import MAX_SKEW_S, Deskew

    p = np.array([[10.0, 0.0, 0.0], [10.0, 1.0, 0.0], [10.0, 2.0, 0.0]])
    dt = np.array([0.05, MAX_SKEW_S + 1.0, -(MAX_SKEW_S + 1.0)])
    with caplog.at_level(logging.WARNING):
        out = Deskew(dk.TOPIC)(p, dt, T0, _straight(T0), _straight)
    np.testing.assert_allclose(out, [[10.05, 0.0, 0.0], [10.0, 1.0, 0.0], [10.0, 2.0, 0.0]], atol=1e-9)
    said = [r.getMessage() for r in caplog.records if dk.TOPIC in r.getMessage()]
    assert len(said) == 1 and f"more than {MAX_SKEW_S:g} s" in said[0], said
