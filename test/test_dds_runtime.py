"""Cyclone DDS runtime: ROS 2 wire compatibility (CDR equal to rosbags') and real processes on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from gs_mapping.nodes.context import LATCHED_QOS, RELIABLE_QOS, resolve_topic
from gs_mapping.runtime import dds_types
from gs_mapping.runtime.dds import DdsContext, dds_topic_name

TS = get_typestore(Stores.ROS2_HUMBLE)


def _rosbags_cdr(msg, typename):
    return bytes(TS.serialize_cdr(msg, typename))


@pytest.mark.parametrize(
    "typename,fields",
    [
        (
            "sensor_msgs/msg/Image",
            dict(height=2, width=3, encoding="rgb8", step=9, data=np.arange(18, dtype=np.uint8)),
        ),
        (
            "sensor_msgs/msg/CameraInfo",
            dict(
                height=240,
                width=320,
                distortion_model="plumb_bob",
                d=np.array([0.1, -0.2, 0, 0, 0.01]),
                k=np.arange(9.0),
            ),
        ),
        ("std_msgs/msg/UInt8MultiArray", dict(data=np.frombuffer(b"\x00\xffdelta", np.uint8))),
        ("std_msgs/msg/String", dict(data="héllo")),
        (
            "diagnostic_msgs/msg/DiagnosticArray",
            dict(
                status=[
                    dds_types.make(
                        "diagnostic_msgs/msg/DiagnosticStatus",
                        level=b"\x01",
                        name="mapper",
                        values=[dds_types.make("diagnostic_msgs/msg/KeyValue", key="gaussians", value="12")],
                    )
                ]
            ),
        ),
        (
            "visualization_msgs/msg/MarkerArray",
            dict(
                markers=[
                    dds_types.make(
                        "visualization_msgs/msg/Marker",
                        ns="divider",
                        id=3,
                        type=4,
                        points=[dds_types.make("geometry_msgs/msg/Point", x=1.0, y=2.0)],
                    )
                ]
            ),
        ),
    ],
)
def test_cdr_matches_rosbags_byte_for_byte(typename, fields):
    msg = dds_types.make(typename, **fields)
    wire = dds_types.serialize(msg)
    decoded = TS.deserialize_cdr(wire, typename)  # rosbags reads what we put on the wire …
    assert _rosbags_cdr(decoded, typename) == wire  # … and writes back the very same bytes
    again = dds_types.deserialize(wire, typename)
    assert dds_types.serialize(again) == wire


def _plain(value):
    """A decoded or given field value as plain Python for comparison (arrays and bytes as lists)."""
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__") or hasattr(value, "__slots__"):
        names = getattr(value, "__dataclass_fields__", None) or getattr(value, "__annotations__", {})
        return {n: _plain(getattr(value, n)) for n in names if n != "__msgtype__"}
    return value


@pytest.mark.parametrize(
    "typename,fields",
    [
        (
            "sensor_msgs/msg/CameraInfo",
            dict(
                height=240,
                width=320,
                distortion_model="plumb_bob",
                d=np.array([0.1, -0.2, 0.003, -0.004, 0.01]),
                k=np.array([525.0, 0.0, 319.5, 0.0, 526.0, 239.5, 0.0, 0.0, 1.0]),
                r=np.eye(3).ravel(),
                p=np.arange(12.0) - 5.5,
                binning_x=2,
            ),
        ),
        (
            "sensor_msgs/msg/Image",
            dict(
                height=2,
                width=3,
                encoding="mono16",
                is_bigendian=1,
                step=6,
                data=np.arange(12, dtype=np.uint8),
            ),
        ),
        ("std_msgs/msg/Float64MultiArray", dict(data=np.array([3.0, -1.5, 2.25, 1e-9]))),
        ("std_msgs/msg/Int32MultiArray", dict(data=[7, -3, 2**31 - 1, 0])),
    ],
)
def test_cdr_decodes_back_to_the_values_we_put_in(typename, fields):
    """rosbags (an independent CDR decoder) reads our wire bytes back to exactly the given values,
    field by field: element order, sign and precision included."""
    wire = dds_types.serialize(dds_types.make(typename, **fields))
    decoded = TS.deserialize_cdr(wire, typename)
    for name, given in fields.items():
        got = getattr(decoded, name)
        assert _plain(got) == _plain(given), (
            f"{typename}.{name}: decoded {_plain(got)} != given {_plain(given)}"
        )


def test_cdr_nested_fields_decode_to_the_values_we_put_in():
    msg = dds_types.make(
        "visualization_msgs/msg/MarkerArray",
        markers=[
            dds_types.make(
                "visualization_msgs/msg/Marker",
                ns="divider",
                id=3,
                type=4,
                points=[
                    dds_types.make("geometry_msgs/msg/Point", x=float(i), y=-2.0 * i, z=0.5) for i in range(4)
                ],
                colors=[dds_types.make("std_msgs/msg/ColorRGBA", r=1.0, g=0.5, b=0.25, a=1.0)],
            )
        ],
    )
    decoded = TS.deserialize_cdr(dds_types.serialize(msg), "visualization_msgs/msg/MarkerArray")
    (m,) = decoded.markers
    assert (m.ns, m.id, m.type) == ("divider", 3, 4)
    assert [(p.x, p.y, p.z) for p in m.points] == [(float(i), -2.0 * i, 0.5) for i in range(4)]
    assert [(c.r, c.g, c.b, c.a) for c in m.colors] == [(1.0, 0.5, 0.25, 1.0)]


def test_camera_info_over_dds_arrives_with_its_values():
    """Through a real DDS topic (reader and writer in this process): K, D and P arrive in order."""
    from gs_mapping.messages import camera_info_to_intrinsics

    k = np.array([525.0, 0.0, 319.5, 0.0, 526.0, 239.5, 0.0, 0.0, 1.0])
    ctx = DdsContext("cdr_values", domain_id=19)
    got = []
    try:
        ctx.create_subscription("/gs_test/info", "sensor_msgs/msg/CameraInfo", RELIABLE_QOS, got.append)
        pub = ctx.create_publisher("/gs_test/info", "sensor_msgs/msg/CameraInfo", RELIABLE_QOS)
        ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=5)
        pub.publish(
            ctx.factory.make(
                "sensor_msgs/msg/CameraInfo",
                height=480,
                width=640,
                distortion_model="plumb_bob",
                d=np.array([0.1, -0.2, 0.0, 0.0, 0.01]),
                k=k,
                p=np.arange(12.0),
            )
        )
        ctx.spin(until=lambda: got, timeout_s=5)
    finally:
        ctx.close()
    assert got
    assert list(got[0].k) == k.tolist() and list(got[0].p) == list(range(12))
    intr = camera_info_to_intrinsics(got[0])
    assert np.array_equal(intr.K, k.reshape(3, 3))


def test_type_names_follow_ros2_conventions():
    assert dds_types.dds_type_name("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert dds_topic_name(
        resolve_topic("~/map_delta", "mapper_node", "robot1")
    ) == "rtrobot1/mapper_node/map_delta".replace("rt", "rt/", 1)
    assert resolve_topic("lanes", "hd", "") == "/lanes"


def test_large_byte_payload_is_block_copied():
    payload = np.random.default_rng(0).integers(0, 256, 4 << 20, dtype=np.uint8)
    msg = dds_types.make("std_msgs/msg/UInt8MultiArray", data=payload)
    t0 = time.process_time()
    wire = dds_types.serialize(msg)
    back = dds_types.deserialize(wire, "std_msgs/msg/UInt8MultiArray")
    elapsed = time.process_time() - t0
    assert back.data == payload.tobytes()
    # A per-byte Python loop takes seconds for 4 MB; a block copy takes milliseconds.
    assert elapsed < 1.0


def test_unknown_type_and_short_data_raise_our_error():
    from gs_mapping.errors import MessageError

    with pytest.raises(MessageError, match="unknown message type"):
        dds_types.make("nope_msgs/msg/Nothing")
    with pytest.raises(MessageError, match="has no field 'bogus'"):
        dds_types.make("std_msgs/msg/String", bogus=1)
    with pytest.raises(MessageError, match="cannot decode"):
        dds_types.deserialize(b"\x00\x01\x00\x00\xff", "sensor_msgs/msg/Image")


_PUBLISHER = textwrap.dedent("""
    import sys, time, numpy as np
    from gs_mapping.runtime.dds import DdsContext
    from gs_mapping.nodes.context import LATCHED_QOS
    ctx = DdsContext("test_pub", domain_id=int(sys.argv[1]))
    pub = ctx.create_publisher("/gs_test/state", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
    pub.publish(ctx.factory.make("std_msgs/msg/UInt8MultiArray",
                                 data=(np.arange(1 << 20) % 251).astype(np.uint8)))
    print("published", flush=True)
    sys.stdin.read()  # stay alive until the test closes stdin
""")


def test_latched_state_reaches_a_late_subscriber_in_another_process():
    domain = 17
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER, str(domain)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "published"
        time.sleep(0.5)  # the subscriber joins after the sample was written
        ctx = DdsContext("test_sub", domain_id=domain)
        got = []
        ctx.create_subscription("/gs_test/state", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS, got.append)
        ctx.spin(until=lambda: got, timeout_s=15)
        assert got, "latched sample not received"
        expected = (np.arange(1 << 20) % 251).astype(np.uint8).tobytes()
        assert got[0].data == expected
        ctx.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_reliable_topic_in_process_and_timer():
    ctx = DdsContext("loop", domain_id=18)
    got, ticks = [], []
    ctx.create_subscription("/gs_test/chatter", "std_msgs/msg/String", RELIABLE_QOS, got.append)
    pub = ctx.create_publisher("/gs_test/chatter", "std_msgs/msg/String", RELIABLE_QOS)
    ctx.create_timer(0.05, lambda: ticks.append(1))
    ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=5)
    for i in range(5):
        pub.publish(ctx.factory.make("std_msgs/msg/String", data=f"m{i}"))
    ctx.spin(until=lambda: len(got) >= 5 and ticks, timeout_s=5)
    assert [m.data for m in got] == [f"m{i}" for i in range(5)]
    assert ticks
