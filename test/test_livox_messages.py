"""Livox's CustomMsg (messages/livox.py) read without the driver, against things outside it.

The truth: the driver's field lists (livox_ros_driver2 ``msg/CustomMsg.msg``, ``msg/CustomPoint.msg``,
written out below as the driver has them) parsed by rosbags; CDR bytes built here by hand with
``struct`` from the CDR rules (and checked equal to rosbags' serialiser); points and times placed by
hand; rosbags' own RIHS01 hash. Read three ways: a rosbags message (its points a list of objects), the
CDR bytes (rclpy's raw subscriptions), cyclonedds with our block machine (the DDS and Zenoh runtimes).
"""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

from gs_mapping.errors import MessageError  # noqa: E402

NAMES = (
    "livox_ros_driver2/msg/CustomMsg",
    "livox_ros_driver/msg/CustomMsg",
    "livox_interfaces/msg/CustomMsg",
)
# the driver's own .msg text (livox_ros_driver2 master, msg/), comments and all
DRIVER_POINT = """# Livox costom pointcloud format.

uint32 offset_time      # offset time relative to the base time
float32 x               # X axis, unit:m
float32 y               # Y axis, unit:m
float32 z               # Z axis, unit:m
uint8 reflectivity      # reflectivity, 0~255
uint8 tag               # livox tag
uint8 line              # laser number in lidar
"""
DRIVER_MSG = """# Livox publish pointcloud msg format.

std_msgs/Header header    # ROS standard message header
uint64 timebase           # The time of first point
uint32 point_num          # Total number of pointclouds
uint8  lidar_id           # Lidar device id number
uint8[3]  rsvd            # Reserved use
CustomPoint[] points      # Pointcloud data
"""


def driver_types(names=NAMES) -> dict:
    types: dict = {}
    for name in names:
        types.update(get_types_from_msg(DRIVER_POINT, name.replace("CustomMsg", "CustomPoint")))
        types.update(get_types_from_msg(DRIVER_MSG, name))
    return types


TS = get_typestore(Stores.ROS2_HUMBLE)
TS.register(driver_types())

STAMP = 1_700_000_000_123_456_789
# (offset_time ns, x, y, z, reflectivity, tag, line), by hand
POINTS = [
    (0, 1.5, -0.25, 0.125, 10, 0x10, 0),
    (33_333, 2.0, 0.5, -1.0, 200, 0x11, 3),
    (99_999_000, -4.0, 8.0, 0.0625, 255, 0x24, 1),
]


def driver_msg(
    name=NAMES[0], stamp=STAMP, timebase=STAMP, points=POINTS, point_num=None, frame_id="livox_frame"
):
    """A CustomMsg as rosbags builds it from the driver's definition (points: a list of objects)."""
    point = TS.types[name.replace("CustomMsg", "CustomPoint")]
    fields = ("offset_time", "x", "y", "z", "reflectivity", "tag", "line")
    header = TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id=frame_id,
    )
    return TS.types[name](
        header=header, timebase=timebase, point_num=len(points) if point_num is None else point_num,
        lidar_id=7, rsvd=np.array([1, 2, 3], np.uint8), points=[point(**dict(zip(fields, p, strict=True))) for p in points],
    )  # fmt: skip


def hand_cdr(stamp=STAMP, timebase=STAMP, points=POINTS, frame_id="livox_frame", big=False) -> bytes:
    """CDR by the rules: encapsulation, then each field at a multiple of its size from the body's start."""
    o = ">" if big else "<"
    body = bytearray()

    def align(n):
        body.extend(b"\0" * (-len(body) % n))

    fid = frame_id.encode() + b"\0"
    body += struct.pack(o + "iII", stamp // 10**9, stamp % 10**9, len(fid)) + fid
    align(8)
    body += struct.pack(o + "QIB", timebase, len(points), 7) + bytes([1, 2, 3])
    align(4)
    body += struct.pack(o + "I", len(points))
    for p in points:
        align(4)
        body += struct.pack(o + "IfffBBB", *p)
    return (b"\0\0\0\0" if big else b"\0\1\0\0") + bytes(body)


def want_xyz_times(stamp=STAMP, timebase=STAMP, points=POINTS):
    xyz = np.array([p[1:4] for p in points], np.float32)
    return xyz, np.array([(timebase + p[0] - stamp) / 1e9 for p in points])


# -- the layout ---------------------------------------------------------------------------------------
def test_our_definitions_are_the_drivers_field_for_field():
    """Registered from our own words, the types equal rosbags' parse of the driver's .msg files,
    under all three package names: a field renamed, retyped or reordered fails here."""
    from gs_mapping.messages import ros_typestore

    ours = ros_typestore()
    for name in NAMES:
        for t in (name, name.replace("CustomMsg", "CustomPoint")):
            assert ours.fielddefs[t] == TS.fielddefs[t], t


def test_hand_cdr_is_what_rosbags_serialises():
    """(The hand serialiser above is right: the reference the decoders are held to.)"""
    for fid in ("livox_frame", "a", "abc", ""):
        assert bytes(TS.serialize_cdr(driver_msg(frame_id=fid), NAMES[0])) == hand_cdr(frame_id=fid)


def test_jazzy_type_hash_is_rosbags_hash_of_the_drivers_definition():
    """rmw_zenoh's key expressions and Jazzy's DDS USER_DATA carry RIHS01: ours (runtime/type_hash,
    from our registration) equals rosbags' implementation over the driver's definition."""
    from gs_mapping.runtime.type_hash import type_hash

    jazzy = get_typestore(Stores.ROS2_JAZZY)
    jazzy.register(driver_types())
    for name in NAMES:
        assert type_hash(name) == jazzy.hash_rihs01(name), name


# -- reading, three ways ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_points_and_times_read_three_ways_equal_the_hand_values(name):
    """timebase 3 ms before the header stamp (a relay's): times are (timebase + offset_time - stamp)
    s, by hand; x, y, z exactly the floats placed; the same from a rosbags message, from the CDR
    bytes and through cyclonedds."""
    from gs_mapping.messages import cloud_xyz_times, custom_msg_from_cdr
    from gs_mapping.runtime import dds_types

    timebase = STAMP - 3_000_000
    want_xyz, want_t = want_xyz_times(timebase=timebase)
    data = hand_cdr(timebase=timebase)
    msgs = {
        "rosbags": driver_msg(name, timebase=timebase),
        "cdr": custom_msg_from_cdr(data),
        "cyclonedds": dds_types.deserialize(data, name),
    }
    for how, msg in msgs.items():
        xyz, t = cloud_xyz_times(msg)
        assert xyz.dtype == np.float32 and np.array_equal(xyz, want_xyz), how
        np.testing.assert_allclose(t, want_t, rtol=0, atol=1e-12, err_msg=how)
        assert str(msg.header.frame_id) == "livox_frame" and int(msg.timebase) == timebase, how
    assert isinstance(msgs["cyclonedds"].points, np.ndarray)  # (the block machine, not 20k objects)


def test_big_endian_cdr_reads_the_same():
    from gs_mapping.messages import cloud_xyz_times, custom_msg_from_cdr

    xyz, t = cloud_xyz_times(custom_msg_from_cdr(hand_cdr(big=True)))
    want_xyz, want_t = want_xyz_times()
    assert np.array_equal(xyz, want_xyz)
    np.testing.assert_allclose(t, want_t, atol=1e-12)


def test_a_timebase_on_another_clock_leaves_offsets_from_the_stamp():
    """The LiDAR's own clock (4000 s of uptime) with the header re-stamped on the host's: the
    offsets are read from the stamp (FAST-LIO's reading), not 1.7e9 s away."""
    from gs_mapping.messages import cloud_xyz_times

    _, t = cloud_xyz_times(driver_msg(timebase=4_000_000_000_000))
    np.testing.assert_allclose(t, [p[0] / 1e9 for p in POINTS], atol=1e-12)


def test_cyclonedds_writes_the_bytes_rosbags_writes():
    """Our DDS type, its points written in one block, puts rosbags' CDR on the wire (what a ROS 2
    node with the driver reads), for a Mid-360-sized message too."""
    from gs_mapping.runtime import dds_types

    rng = np.random.default_rng(0)
    many = [
        (int(i * 5000), *map(float, rng.normal(size=3).astype(np.float32)), i % 256, i % 64, i % 4)
        for i in range(20000)
    ]
    for points in (POINTS, many, []):
        msg = driver_msg(points=points)
        assert dds_types.serialize(dds_types.to_idl(msg, NAMES[0])) == bytes(TS.serialize_cdr(msg, NAMES[0]))


# -- bad messages --------------------------------------------------------------------------------------
def test_point_num_that_is_not_the_number_of_points_is_one_line():
    from gs_mapping.messages import cloud_xyz_times

    with pytest.raises(MessageError) as exc:
        cloud_xyz_times(driver_msg(point_num=5))
    assert "point_num is 5 but it holds 3 points" in str(exc.value) and "\n" not in str(exc.value)


def test_an_empty_message_has_no_points_and_nan_points_are_dropped():
    from gs_mapping.messages import cloud_xyz_times

    xyz, t = cloud_xyz_times(driver_msg(points=[]))
    assert xyz.shape == (0, 3) and t.shape == (0,)
    nan = [POINTS[0], (5, float("nan"), 1.0, 1.0, 0, 0, 0), POINTS[2]]
    xyz, t = cloud_xyz_times(driver_msg(points=nan))
    want_xyz, want_t = want_xyz_times(points=[POINTS[0], POINTS[2]])
    assert np.array_equal(xyz, want_xyz)
    np.testing.assert_allclose(t, want_t, atol=1e-12)


@pytest.mark.parametrize(
    "data, says",
    [
        (hand_cdr()[:-5], "3 points need 59 bytes"),  # cut short
        (hand_cdr()[:30], "truncated or corrupt"),  # inside the header
        (b"\0\1\0\0" + struct.pack("<iII", 0, 0, 10**6), "frame_id"),  # a string past the end
        (b"\0\x07\0\0" + hand_cdr()[4:], "not plain CDR"),  # XCDR2's encapsulation
        (b"", "not plain CDR"),
    ],
)
def test_bytes_that_are_not_a_custom_msg_are_one_line(data, says):
    from gs_mapping.messages import custom_msg_from_cdr

    with pytest.raises(MessageError) as exc:
        custom_msg_from_cdr(data)
    assert says in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_message_that_is_no_custom_msg_is_named():
    from gs_mapping.messages.livox import custom_msg_xyz_times

    with pytest.raises(MessageError) as exc:
        custom_msg_xyz_times(TS.types["std_msgs/msg/String"](data="x"))
    assert "livox CustomMsg" in str(exc.value)


# -- live transports ---------------------------------------------------------------------------------
def test_a_custom_msg_crosses_cyclone_dds():
    """DDS runtime, reader and writer in this process: the points arrive as one array, equal."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.messages import cloud_xyz_times
    from gs_mapping.nodes.context import SENSOR_QOS
    from gs_mapping.runtime.dds import DdsContext

    ctx = DdsContext("livox_dds", domain_id=23)
    got = []
    try:
        ctx.create_subscription("/livox/lidar", NAMES[0], SENSOR_QOS, got.append)
        pub = ctx.create_publisher("/livox/lidar", NAMES[0], SENSOR_QOS)
        ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=5)
        for _ in range(20):  # (best effort: until one arrives)
            pub.publish(driver_msg())
            ctx.spin(until=lambda: got, timeout_s=0.25)
            if got:
                break
    finally:
        ctx.close()
    assert got and isinstance(got[0].points, np.ndarray)
    xyz, t = cloud_xyz_times(got[0])
    want_xyz, want_t = want_xyz_times()
    assert np.array_equal(xyz, want_xyz)
    np.testing.assert_allclose(t, want_t, atol=1e-12)


def test_a_custom_msg_crosses_zenoh():
    """Zenoh runtime (rmw_zenoh's key: the type's name and hash): published, received, equal."""
    pytest.importorskip("zenoh")
    from gs_mapping.messages import cloud_xyz_times
    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp/127.0.0.1:{s.getsockname()[1]}"
    router = run_router([endpoint])
    pub_ctx = ZenohContext("livox_pub", domain_id=48, connect=[endpoint])
    sub_ctx = ZenohContext("livox_sub", domain_id=48, connect=[endpoint])
    got: list = []
    try:
        sub_ctx.create_subscription("/livox/lidar", NAMES[2], RELIABLE_QOS, got.append)
        pub = pub_ctx.create_publisher("/livox/lidar", NAMES[2], RELIABLE_QOS)
        for _ in range(40):
            pub.publish(driver_msg(NAMES[2]))
            sub_ctx.spin(until=lambda: got, timeout_s=0.25)
            if got:
                break
    finally:
        sub_ctx.close()
        pub_ctx.close()
        router.close()
    assert got
    xyz, t = cloud_xyz_times(got[0])
    assert np.array_equal(xyz, want_xyz_times()[0])
    np.testing.assert_allclose(t, want_xyz_times()[1], atol=1e-12)
