"""Hostile outside review of Livox CustomMsg clouds (52580de, merged as 20d98e6): what real Livox
recordings and robots give, against independent things.

The truth, each time: the points and times placed by hand on test_outside_lidar_deskew's wall (a
robot on an arc, each point measured at its own time; the depth every pixel must get back); CDR
bytes built with ``struct`` by the CDR rules (XCDR2 checked equal to Cyclone's own serialiser);
the message layouts Livox shipped (livox_ros_driver 844dd85, April 2019: CustomPoint without
``tag``) and a public fork's (robotics-laboratory/livox_ros_driver2: ``intensity`` for
``reflectivity``); what a real merger writes (HZY-97/multi_livox_merge LidarMerge.cpp appends the
second LiDAR's points and leaves ``point_num`` the first one's; FAST-LIO reads ``point_num``
points); rclpy's own ``check_for_type_support`` (a message package whose C type support does not
load); livox_ros_driver2's ``publish_freq`` down to 0.5 Hz, its clouds stamped with their first
point (lddc.cpp) and so logged a scan after their stamp.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402
import test_livox_mapping as lm  # noqa: E402
import test_livox_messages as lmsg  # noqa: E402
import test_outside_lidar_deskew as dk  # noqa: E402
import test_outside_recordings9 as r9  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

POINT = lm.LIVOX.replace("CustomMsg", "CustomPoint")
COLOR_HZ = 30


def _color_ns(j: int) -> int:
    """The j-th frame of a 30 Hz camera (frame 60 is exactly 2 s after frame 0)."""
    return dk.T0 + j * 10**9 // COLOR_HZ


def _custom_msg(color_ns, scan_ns=dk.SCAN_NS, store=None, name=lm.LIVOX, fields=None, stamp_shift=None):
    """The wall for a colour stamp as livox_ros_driver2 sends it: the timebase (first point) 10 ms
    before the image, ``scan_ns`` of points (columns spread over it), the header stamped with the
    timebase (``stamp_shift(timebase)`` ns after it). ``fields(offset, x, y, z)`` -> a point's
    fields (default: the driver's)."""
    store = store or rb.TS
    timebase = color_ns - 10_000_000
    v, u = np.mgrid[0 : dk.H, 0 : dk.W]
    taus = timebase + u.astype(np.int64) * (scan_ns // dk.W) + v.astype(np.int64) * 20_000
    pts = dk._points(color_ns, taus).reshape(-1, 3).astype(np.float32)
    fields = fields or (
        lambda o, x, y, z: dict(offset_time=o, x=x, y=y, z=z, reflectivity=9, tag=0x10, line=1)
    )
    P = store.types[name.replace("CustomMsg", "CustomPoint")]
    offsets = (taus - timebase).reshape(-1)
    points = [
        P(**fields(int(o), float(x), float(y), float(z))) for o, (x, y, z) in zip(offsets, pts, strict=True)
    ]
    return store.types[name](
        header=rb._hdr(timebase + (stamp_shift(timebase) if stamp_shift else 0), "lidar"), timebase=timebase,
        point_num=len(points), lidar_id=0, rsvd=np.zeros(3, np.uint8), points=points,
    )  # fmt: skip


# -- the bag's own definition wins ---------------------------------------------------------------------
def test_a_bag_defining_its_own_message_of_that_name_is_read_by_its_own_definition(tmp_path):
    """A user's own ``livox_ros_driver2/msg/CustomMsg`` with other fields, recorded with its
    definition (MCAP): the reader decodes it by the bag's definition, not ours (whose layout would
    misread these bytes)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from gs_mapping.bag import BagReader

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg("std_msgs/Header header\nuint32 count\nfloat32[] xyz\n", lm.LIVOX))
    msg = store.types[lm.LIVOX](
        header=rb._hdr(dk.T0, "f"), count=3, xyz=np.array([1.5, -2.5, 3.25], np.float32)
    )
    with Writer(tmp_path / "b", version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection(lm.TOPIC, lm.LIVOX, typestore=store)
        w.write(conn, dk.T0, store.serialize_cdr(msg, lm.LIVOX))
    with BagReader(tmp_path / "b") as b:
        ((_, _, got),) = list(b.messages([lm.TOPIC]))
        assert not b.bad_messages
    assert got.count == 3 and got.xyz.tolist() == [1.5, -2.5, 3.25]


OLD_POINT = (
    "uint32 offset_time\nfloat32 x\nfloat32 y\nfloat32 z\nuint8 reflectivity\nuint8 line\n"  # (844dd85)
)
FORK_POINT = lmsg.DRIVER_POINT.replace("uint8 reflectivity", "uint8 intensity")  # (robotics-laboratory)
OLD_FIELDS = lambda o, x, y, z: dict(offset_time=o, x=x, y=y, z=z, reflectivity=9, line=1)  # noqa: E731
FORK_FIELDS = lambda o, x, y, z: dict(offset_time=o, x=x, y=y, z=z, intensity=9, tag=0x10, line=1)  # noqa: E731


@pytest.mark.parametrize(
    "name, point_def, fields",
    [("livox_ros_driver/msg/CustomMsg", OLD_POINT, OLD_FIELDS), (lm.LIVOX, FORK_POINT, FORK_FIELDS)],
    ids=["livox_ros_driver_2019_without_tag", "fork_with_intensity"],
)
def test_a_recording_carrying_another_drivers_definition_maps_by_it(
    name, point_def, fields, tmp_path, monkeypatch
):
    """Livox's own 2019 layout (no ``tag``: 18-byte points) and a fork's (a field renamed) clash
    with the definitions we register: the bag's win, and every point lands on the wall."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(point_def, name.replace("CustomMsg", "CustomPoint")))
    store.register(get_types_from_msg(lmsg.DRIVER_MSG, name))
    monkeypatch.setattr(rb, "TS", store)  # (robot_bag writes with it: this definition goes in the bag)
    path = lm.bag(tmp_path / "b", lambda ns: _custom_msg(ns, store=store, name=name, fields=fields), name)
    dk._assert_on_the_wall(lm.frames(path))


def test_bag_writer_takes_a_forks_definition_of_the_drivers_point(tmp_path):
    """BagWriter.register_msg ("add a custom message type from its .msg text") took any Livox
    definition before 52580de; the layout we register must not refuse the user's own."""
    from gs_mapping.bag import BagWriter

    with BagWriter(tmp_path / "b") as w:
        w.register_msg(POINT, FORK_POINT)
        assert "intensity" in [f for f, _ in w.typestore.fielddefs[POINT][1]]


# -- what real recordings hold -------------------------------------------------------------------------
def _ros1_stamp_after_timebase(timebase: int) -> int:
    """livox_ros_driver (ROS 1) stamps ``ros::Time(timebase / 1e9)``: a double, floor for sec and
    round for nsec (ros::Time::fromSec)."""
    t = timebase / 1e9
    sec = math.floor(t)
    return sec * 10**9 + round((t - sec) * 1e9) - timebase


@pytest.mark.parametrize("ros1_stamp", [False, True], ids=["driver2_stamp", "ros1_double_stamp"])
def test_shuffled_offsets_zero_points_and_any_tag_or_line_still_land(ros1_stamp, tmp_path):
    """Points out of time order (two LiDARs merged, dual returns), no-return zeros (x = y = z = 0,
    as the driver zeroes a lost packet's points) with ``tag``/``line`` at 255, and ROS 1's stamp
    through a double: every pixel still holds its point at the wall's depth."""
    rng = np.random.default_rng(6)

    def cloud(ns):
        msg = _custom_msg(ns, stamp_shift=_ros1_stamp_after_timebase if ros1_stamp else None)
        assert (rb._hdr(msg.timebase, "").stamp != msg.header.stamp) == ros1_stamp
        P = rb.TS.types[POINT]
        zeros = [P(offset_time=int(o), x=0.0, y=0.0, z=0.0, reflectivity=0, tag=255, line=255) for o in rng.integers(0, 99_000_000, 50)]  # fmt: skip
        points = list(msg.points) + zeros
        msg.points = [points[i] for i in rng.permutation(len(points))]
        msg.point_num = len(points)
        return msg

    dk._assert_on_the_wall(lm.frames(lm.bag(tmp_path / "b", cloud)))


def _merged(ns):
    """HZY-97/multi_livox_merge: the second LiDAR's points appended to the first's message, point_num
    left the first's (here the second LiDAR's points are the first's again: either reading places
    every pixel on the wall)."""
    msg = _custom_msg(ns)
    msg.points = list(msg.points) * 2
    return msg


def test_a_merged_cloud_whose_point_num_counts_the_first_lidar_still_maps(tmp_path):
    dk._assert_on_the_wall(lm.frames(lm.bag(tmp_path / "b", _merged)))


def _slow_livox_bag(path, period_s: int, clouds: int = 4):
    """A 30 Hz camera and a Livox at 1/period_s Hz (publish_freq), each cloud a period long, stamped
    with its first point and logged when it is published, a period later, as rosbag2 records it."""
    per = period_s * COLOR_HZ
    last = _color_ns(per * (clouds - 1)) + period_s * 10**9 + 200_000_000
    msgs = [(dk.T0 - 10**9, "/tf_static", rb.T[rb.TFM](transforms=s)) for s in r9._static(("base_link", "lidar", dk.LIDAR_AT, r9._rot("z", dk.LIDAR_YAW)[1]))]  # fmt: skip
    rgb = rb._scene(0)[0]
    for j in range(-10, (last - dk.T0) * COLOR_HZ // 10**9):
        ns = _color_ns(j)
        msgs += [(ns + 1000, lm.COLOR, rb._image(ns, "cam_optical", rgb, "rgb8")), (ns + 1000, lm.INFO, rb._info(ns, "cam_optical"))]  # fmt: skip
    msgs += dk._tf_msgs(dk.T0 - 500_000_000, last)
    for k in range(clouds):
        msg = _custom_msg(_color_ns(k * per), scan_ns=period_s * 10**9)
        msgs.append((msg.timebase + period_s * 10**9 + 5_000_000, lm.TOPIC, msg))
    topics = {lm.COLOR: rb.IMG, lm.INFO: rb.CINFO, "/tf": rb.TFM, "/tf_static": rb.TFM, lm.TOPIC: lm.LIVOX}
    return rb._write(path, topics, msgs)


@pytest.mark.parametrize(
    "period_s",
    [1, 2],
    ids=["1Hz", "0.5Hz"],
)
def test_map_pairs_slow_livox_clouds_logged_a_scan_after_their_stamp(period_s, tmp_path):
    """Each cloud gives its frame, and placed by its points' times (up to 2 s of motion) every
    pixel holds the wall."""
    dk._assert_on_the_wall(lm.frames(_slow_livox_bag(tmp_path / "b", period_s)))


@pytest.mark.parametrize(
    "scan_ns",
    [dk.SCAN_NS, 1_000_000_000, 2_000_000_000],
    ids=["10Hz", "1Hz", "0.5Hz"],
)
def test_mapper_node_pairs_a_cloud_that_arrives_a_scan_after_its_stamp(scan_ns):
    """Live (the replay bus, as any runtime delivers): colour at 30 Hz and TF at 200 Hz stream in,
    the cloud comes when the driver publishes it, a scan after its stamp; its frame holds the wall."""
    pytest.importorskip("torch")
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import numpy_to_image, transforms_to_tf_message

    bus, node, t = dk._node()
    msg = _custom_msg(dk.T0, scan_ns)
    arrive = msg.timebase + scan_ns + 5_000_000
    events = [
        (_color_ns(j) + 1, "colour", _color_ns(j))
        for j in range(-3, (arrive - dk.T0) * COLOR_HZ // 10**9 + 3)
    ]
    events += [(ns, "tf", ns) for ns in range(dk.T0 - 300_000_000, arrive + 50_000_000, dk.TF_STEP)]
    events.append((arrive, "cloud", 0))
    rgb = rb._scene(0)[0]
    for when, kind, ns in sorted(events, key=lambda e: e[0]):
        if kind == "colour":
            bus.inject(t.color, numpy_to_image(rgb, "rgb8", ns, "cam_optical", bus.factory), when)
        elif kind == "tf":
            tfs = [
                TransformStamped("map", "odom", ns, Transform()),
                TransformStamped("odom", "base_link", ns, Transform.from_matrix(dk._base(ns))),
            ]
            bus.inject(t.tf, transforms_to_tf_message(tfs, bus.factory), when)
        else:
            bus.inject(dk.TOPIC, msg, when)
    assert len(node.depths) == 1, node.diag.summary()
    np.testing.assert_allclose(node.depths[0], dk._depth_truth(), atol=5e-3)


# -- bytes on the wire -----------------------------------------------------------------------------------
def _xcdr2(big=False, points=lmsg.POINTS, stamp=lmsg.STAMP, frame_id="livox_frame") -> bytes:
    """PLAIN_CDR2 (XTypes 1.3): 8-byte members aligned to 4, a DHEADER (byte length) before a
    sequence of structs."""
    o = ">" if big else "<"
    body = bytearray()
    fid = frame_id.encode() + b"\0"
    body += struct.pack(o + "iII", stamp // 10**9, stamp % 10**9, len(fid)) + fid
    body += b"\0" * (-len(body) % 4)
    body += struct.pack(o + "QIB", stamp, len(points), 7) + bytes([1, 2, 3])
    seq = bytearray(struct.pack(o + "I", len(points)))
    for p in points:
        seq += b"\0" * (-len(seq) % 4)
        seq += struct.pack(o + "IfffBBB", *p)
    body += struct.pack(o + "I", len(seq)) + seq
    return (b"\0\x06\0\0" if big else b"\0\x07\0\0") + bytes(body)


def test_hand_xcdr2_is_what_cyclone_writes():
    """(The XCDR2 above is right: Cyclone's own serialiser, points as its own objects.)"""
    pytest.importorskip("cyclonedds")
    from gs_mapping.runtime import dds_types

    msg = dds_types.deserialize(lmsg.hand_cdr(), lm.LIVOX)
    P = dds_types.idl_class(POINT)
    names = ("offset_time", "x", "y", "z", "reflectivity", "tag", "line")
    msg.points = [P(**dict(zip(names, p, strict=True))) for p in lmsg.POINTS]
    assert msg.serialize(use_version_2=True) == _xcdr2()


@pytest.mark.parametrize(
    "data",
    [lmsg.hand_cdr(big=True), _xcdr2(), _xcdr2(big=True)],
    ids=["xcdr1_big_endian", "xcdr2_little_endian", "xcdr2_big_endian"],
)
def test_dds_and_zenoh_read_big_endian_and_xcdr2_custom_msgs_as_sent(data):
    """The DDS and Zenoh runtimes' decoder (cyclonedds, our block machine for XCDR1): each point and
    time as placed by hand, whatever the byte order or CDR version a peer used."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.messages import cloud_xyz_times
    from gs_mapping.runtime import dds_types

    xyz, times = cloud_xyz_times(dds_types.deserialize(data, lm.LIVOX))
    want_xyz, want_t = lmsg.want_xyz_times()
    np.testing.assert_array_equal(xyz, want_xyz)
    np.testing.assert_allclose(times, want_t, rtol=0, atol=1e-12)


@pytest.mark.parametrize("big", [False, True])
def test_raw_bytes_padded_as_rmw_pads_them_read_the_same(big):
    """rmw hands a raw subscription the payload padded to 4 bytes, the pad count in the options'
    low bits (XTypes 7.6.3.1.2): the points and times are still the hand ones."""
    from gs_mapping.messages import cloud_xyz_times, custom_msg_from_cdr

    data = lmsg.hand_cdr(big=big)
    pad = -len(data) % 4
    assert pad
    padded = data[:3] + bytes([pad]) + data[4:] + b"\0" * pad
    xyz, times = cloud_xyz_times(custom_msg_from_cdr(padded))
    want_xyz, want_t = lmsg.want_xyz_times()
    np.testing.assert_array_equal(xyz, want_xyz)
    np.testing.assert_allclose(times, want_t, rtol=0, atol=1e-12)


# -- rclpy: the robot's installed package ---------------------------------------------------------------
@pytest.fixture(scope="module")
def ros():
    """rclpy's own package on its C-layer stand-in, livox_ros_driver2's messages installed."""
    pytest.importorskip("torch")  # (mapper_node's module needs it)
    import rclpy_standin

    from gs_mapping.messages import RclpyFactory

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(lmsg.driver_types([lm.LIVOX]))
    RclpyFactory._class.cache_clear()
    rclpy, _standin, interfaces = rclpy_standin.install(store)
    yield rclpy
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _run_mapper_node(rclpy, tmp_path, *extra):
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n    mapper_node:\n"
        f"      cloud_topic: {lm.TOPIC}\n      cloud_type: {lm.LIVOX}\n"
    )
    full = lm.REPO / "config" / "full.yaml"
    args = ["node", "--ros-args", "--params-file", str(full), "--params-file", str(overrides), *extra]
    return run_node(MapperNode, args, rclpy.Context())


def test_a_cloud_type_typed_short_is_one_line_and_exit_2(ros, tmp_path, capsys):
    """``livox_ros_driver2/CustomMsg`` (ROS 1's spelling, which `ros2 topic echo` also takes): one
    line naming the parameter and the types read, exit 2."""
    rc = _run_mapper_node(ros, tmp_path, "-p", "mapper_node.cloud_type:=livox_ros_driver2/CustomMsg")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "mapper_node.cloud_type" in err[0] and lm.LIVOX in err[0]


def test_a_driver_package_whose_type_support_does_not_load_is_one_line_and_exit_2(
    ros, tmp_path, capsys, monkeypatch
):
    """rosidl's generated ``__import_type_support__`` logs the ImportError of the C extension at
    debug level and returns, leaving ``_TYPE_SUPPORT`` None; rclpy then raises in
    ``check_for_type_support``."""
    import importlib

    module = importlib.import_module("livox_ros_driver2.msg")
    installed = module.CustomMsg

    class NoTypeSupport(type(installed)):
        _TYPE_SUPPORT = None

        @classmethod
        def __import_type_support__(cls):
            pass  # (the ImportError, logged at debug and swallowed)

    monkeypatch.setattr(module, "CustomMsg", NoTypeSupport("CustomMsg", (installed,), {}))
    rc = _run_mapper_node(ros, tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "livox_ros_driver2" in err[0]
