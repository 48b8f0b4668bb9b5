"""Guards for behaviours a random-sample mutation pass (25th round, seed 2402) found unguarded: the
mapper's snapshot for a subscriber that joins, CameraIntrinsics.fy, the map id range docs/fleet.md
states, PointCloud2 colours in an ``rgba`` field (PCL's PointXYZRGBA) and the error for a cloud
without colour, the header stamp of a cloud built without one, rmw_zenoh's liveliness admin space,
a bag whose message definitions are IDL (rosbag2's ``ros2idl``), the fleet server's "a storage
failure stops ingest", the ``info`` table's header row, ``encode`` of a map of one Gaussian, the
DDS endpoints' XCDR1 data representation (rmw_cyclonedds'), a Zenoh late joiner of a
transient-local topic getting ``depth`` samples, not one, and the mapper's per-frame latency.
Each test compares the component with an independent reference (a hand-built input with a
hand-computed answer, the rule a doc, docstring or parameter description states, or the ROS 2 /
rmw_zenoh convention), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import struct

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# mapper_node: snapshot_period_s 0 = "only when subscribers join"


def test_mapper_publishes_a_snapshot_when_the_first_subscriber_joins():
    """mapper_node.snapshot_period_s: '0 = only when subscribers join'. A subscriber there before the
    first tick (a receiver started first) is one that joined: one snapshot at that tick, and none
    at a tick without a new subscriber."""
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper_node"].snapshot_period_s = 0.0
    node = MapperNode(bus.context("mapper_node"), cfg)
    topic = "/mapper_node/map_snapshot"
    n = bus.published[topic]
    got = []
    bus.subscribe(topic, got.append)  # one subscriber joins (the first), before the first tick
    node.on_snapshot_timer()
    assert bus.published[topic] == n + 1
    node.on_snapshot_timer()  # nobody new
    assert bus.published[topic] == n + 1


# ------------------------------------------------------------------------------------------------
# messages.camera_info: CameraIntrinsics.fy is K[1, 1]


def test_intrinsics_fy_is_k11_not_fx():
    """A camera with non-square pixels: fx = K[0, 0], fy = K[1, 1] (sensor_msgs/CameraInfo's K)."""
    from gs_mapping.messages.camera_info import CameraIntrinsics

    K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
    intr = CameraIntrinsics(width=640, height=480, K=K)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 400.0, 320.0, 240.0)


# ------------------------------------------------------------------------------------------------
# mapper_node.map_id: docs/fleet.md "its own map id (1 … 2^31 − 1)"


@pytest.mark.parametrize("map_id, ok", [(1, True), (2**31 - 1, True), (2**31, False), (0, False)])
def test_mapper_map_id_range_is_the_one_docs_fleet_states(map_id, ok):
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.mapper_node import MapperNodeConfig

    if ok:
        assert from_dict(MapperNodeConfig, {"map_id": map_id}).map_id == map_id
    else:
        with pytest.raises(ConfigError, match="map_id"):
            from_dict(MapperNodeConfig, {"map_id": map_id})


# ------------------------------------------------------------------------------------------------
# messages.pointcloud2: colours


def _cloud(fields: dict[str, tuple[np.dtype, np.ndarray]]):
    from gs_mapping.messages import array_to_pointcloud2

    n = len(next(iter(fields.values()))[1])
    arr = np.zeros(n, np.dtype([(k, dt) for k, (dt, _) in fields.items()]))
    for k, (_, v) in fields.items():
        arr[k] = v
    return array_to_pointcloud2(arr, 5, "lidar")


def test_rgba_field_colours_are_read_like_pcl_packs_them():
    """PCL's PointXYZRGBA keeps colour in a 4-byte ``rgba`` field, 0xAARRGGBB as a uint32: the
    colours come from it (the docstring: 'a PCL-packed rgb/rgba field')."""
    from gs_mapping.messages.pointcloud2 import pointcloud2_rgb

    packed = np.array([0xFF102030, 0x80FF0001, 0x00000000], np.uint32)
    xyz = np.zeros(3, np.float32)
    msg = _cloud(
        {"x": (np.float32, xyz), "y": (np.float32, xyz), "z": (np.float32, xyz), "rgba": (np.uint32, packed)}
    )
    want = np.array([[0x10, 0x20, 0x30], [0xFF, 0x00, 0x01], [0, 0, 0]], np.uint8)
    assert np.array_equal(pointcloud2_rgb(msg), want)


def test_a_cloud_without_colour_is_refused_naming_the_missing_field():
    """An x, y, z cloud has no colour: MessageError saying so (not a message about another field)."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages.pointcloud2 import pointcloud2_rgb

    xyz = np.zeros(2, np.float32)
    msg = _cloud({"x": (np.float32, xyz), "y": (np.float32, xyz), "z": (np.float32, xyz)})
    with pytest.raises(MessageError, match="no rgb/rgba field"):
        pointcloud2_rgb(msg)


def test_a_cloud_built_without_a_stamp_is_stamped_zero():
    """ROS 2: a header stamp of 0 s 0 ns is 'no time'; array_to_pointcloud2 without one says that."""
    from gs_mapping.messages import array_to_pointcloud2

    arr = np.zeros(1, np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32)]))
    stamp = array_to_pointcloud2(arr).header.stamp
    assert (int(stamp.sec), int(stamp.nanosec)) == (0, 0)


# ------------------------------------------------------------------------------------------------
# runtime.zenoh_wire: a liveliness token outside rmw_zenoh's admin space


def test_a_liveliness_token_outside_the_ros2_admin_space_is_refused():
    """rmw_zenoh's graph cache takes tokens under '@ros2_lv' only; one otherwise well-formed under
    another admin space is not a ROS entity."""
    pytest.importorskip("xxhash")  # (zenoh_wire's gid hash; the numpy-1 venv has no xxhash)
    from gs_mapping.errors import MessageError
    from gs_mapping.runtime import zenoh_wire as zw

    node = zw.GraphEntity(
        domain_id=0, zid="aa11", node_id="0", entity_id="0", kind=zw.NODE, enclave="/",
        namespace="/", node_name="talker",
    )  # fmt: skip
    key = node.keyexpr
    assert key.startswith("@ros2_lv/") and zw.parse_liveliness(key).node_name == "talker"
    with pytest.raises(MessageError, match="admin space"):
        zw.parse_liveliness("@other_lv/" + key.split("/", 1)[1])


# ------------------------------------------------------------------------------------------------
# bag: message definitions in IDL (rosbag2 'ros2idl'), the bag's own definition wins

_SEP = "=" * 80 + "\n"


def test_an_idl_message_definition_in_the_bag_is_used_to_decode(tmp_path):
    """rosbag2 stores a definition as IDL ('ros2idl': blocks of 80 '=' + 'IDL: <type>' + the IDL
    text). A bag defining std_msgs/String with an extra int32 (another distribution's type) decodes
    with the bag's definition, as it does for a .msg one. CDR bytes written by hand."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from gs_mapping.bag import BagReader

    idl = (
        f"{_SEP}IDL: std_msgs/msg/String\n"
        "module std_msgs {\n  module msg {\n    struct String {\n      string data;\n"
        "      int32 extra;\n    };\n  };\n};\n"
    )
    path = tmp_path / "idl_bag"
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/s", "std_msgs/msg/String", msgdef=idl, rihs01="RIHS01_" + "0" * 64)
        cdr = b"\x00\x01\x00\x00" + struct.pack("<I", 3) + b"hi\x00" + b"\x00" + struct.pack("<i", -7)
        w.write(c, 5, cdr)
    with BagReader(path) as bag:
        ((_, _, msg),) = bag.messages()
        assert (msg.data, msg.extra) == ("hi", -7)


def test_a_file_that_is_not_mcap_is_reported_as_a_bad_magic(tmp_path):
    """MCAP files start with the 8-byte magic 0x89 'MCAP0' CR LF. A file named .mcap without it is
    reported as not MCAP (bad magic), not as a damaged MCAP header record."""
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    p = tmp_path / "not.mcap"
    p.write_bytes(b"GARBAGE!" + bytes(range(200)))  # byte 8 is 0x00, not the Header opcode 0x01
    with pytest.raises(BagError, match="(?i)magic"):
        with BagReader(p) as bag:
            list(bag.messages())


# ------------------------------------------------------------------------------------------------
# map_server_node: docs/fleet.md "a storage failure while running … stops ingest"


def test_after_a_storage_failure_a_container_is_not_applied(tmp_path):
    """docs/fleet.md: a storage failure stops ingest. A container arriving after the failure is
    refused (REJECTED) and the vehicle's map stays what it was (the map the first two containers
    make, built by hand from the same Gaussians), not the one the third would make."""
    import os

    from test_guards_survivors7 import _send, _server, _stream

    from gs_map_share.merge import REJECTED
    from gs_mapping.runtime.replay import ReplayBus

    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    stream, states = _stream(1, 2)
    _send(bus, "vehicle1", stream[0])
    os.unlink(store)  # the store is gone: the next flush fails
    _send(bus, "vehicle1", stream[1])
    assert server.storage_failed
    before = server.merge.vehicles[1].state
    assert before.equals(states[1])
    assert server.ingest(stream[2]) == REJECTED
    assert server.merge.vehicles[1].state.equals(states[1])
    server.close()


# ------------------------------------------------------------------------------------------------
# cli.info: the table's header row


def test_info_table_has_a_header_and_a_rule_as_wide_as_each_column():
    """`info`: 'topics, types, counts' as a table: a header row (topic, type, count), a rule of
    dashes per column as wide as its widest cell (header included), then one row per topic."""
    from gs_mapping.cli.info import format_text

    info = {
        "path": "b", "message_count": 3, "start_ns": 0, "end_ns": 10**9, "duration_s": 1.0,
        "topics": [{"name": "/a", "type": "x/msg/Y", "count": 3, "latched": False}],
        "tf_frames": [], "tf_errors": [],
    }  # fmt: skip
    lines = format_text(info).splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("topic"))
    assert lines[i].split() == ["topic", "type", "count"]
    # widths: max(len("topic"), len("/a")) = 5, max(4, 7) = 7, max(5, 1) = 5
    assert lines[i + 1] == "-----  -------  -----"
    assert lines[i + 2].split() == ["/a", "x/msg/Y", "3"]


# ------------------------------------------------------------------------------------------------
# cli.encode: a map of one Gaussian


def test_encode_of_a_one_gaussian_map_warns_of_no_scale(tmp_path, caplog):
    """_warn_coarse_for_scene: with fewer than 2 Gaussians there is no scene span to judge, so no
    'the scene spans … units' warning (a lone Gaussian spans 0 units whatever its units are)."""
    import logging

    from synthetic_maps import synthetic_map

    from gs_mapping.cli.encode import _warn_coarse_for_scene

    one = synthetic_map(1, 0, seed=1)
    assert len(one) == 1
    with caplog.at_level(logging.WARNING, logger="gs_mapping.encode"):
        _warn_coarse_for_scene(one, 0.001)
    assert not [r for r in caplog.records if "spans" in r.getMessage()]


# ------------------------------------------------------------------------------------------------
# runtime.dds: rmw_cyclonedds' data representation


@pytest.mark.parametrize("reliable, latched", [(True, False), (False, False), (True, True)])
def test_dds_endpoints_offer_xcdr1_as_rmw_cyclonedds_does(reliable, latched):
    """rmw_cyclonedds sets DATA_REPRESENTATION to XCDR1 only (dds_qset_data_representation(qos, 1,
    {DDS_DATA_REPRESENTATION_XCDR1})): the plain CDR every ROS 2 peer speaks; XCDR2 is not offered."""
    pytest.importorskip("cyclonedds")
    from cyclonedds.qos import Policy

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import dds_qos

    q = dds_qos(QoS(reliable=reliable, transient_local=latched, depth=3))
    assert q[Policy.DataRepresentation] == Policy.DataRepresentation(
        use_cdrv0_representation=True, use_xcdrv2_representation=False
    )


# ------------------------------------------------------------------------------------------------
# runtime.zenoh_runtime: a late joiner of a transient-local topic gets `depth` samples


def test_a_zenoh_late_joiner_gets_the_last_depth_samples_of_a_latched_topic():
    """Transient-local keep-last N (e.g. /tf_static: depth 100, one message per static broadcaster):
    a subscriber that joins after N samples went out gets all N, in order, not only the newest."""
    pytest.importorskip("zenoh")
    import socket
    import time

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp/127.0.0.1:{port}"
    qos = QoS(reliable=True, transient_local=True, depth=3)
    router = run_router([endpoint])
    pub_ctx = ZenohContext("state_pub", domain_id=47, connect=[endpoint])
    sub_ctx = None
    try:
        pub = pub_ctx.create_publisher("/gs_test/static", "std_msgs/msg/String", qos)
        for i in range(3):
            pub.publish(pub_ctx.factory.make("std_msgs/msg/String", data=f"s{i}"))
        time.sleep(0.5)  # the subscriber joins after all three went out
        sub_ctx = ZenohContext("late_sub", domain_id=47, connect=[endpoint])
        got = []
        sub_ctx.create_subscription(
            "/gs_test/static", "std_msgs/msg/String", qos, lambda m: got.append(m.data)
        )
        sub_ctx.spin(until=lambda: len(got) >= 3, timeout_s=10)
        assert got == ["s0", "s1", "s2"]
    finally:
        for c in (sub_ctx, pub_ctx):
            if c is not None:
                c.close()
        router.close()


# ------------------------------------------------------------------------------------------------
# mapper_node: the per-frame latency in /diagnostics


def test_mapper_frame_latency_is_the_time_the_frame_took():
    """/diagnostics 'latency frame p50_ms': how long the mapper took for a frame. One frame made
    for real (CameraInfo, TF, colour, depth on the node's topics): its latency is positive and no
    more than the wall time measured around the message that completed the pair."""
    import time

    from hostile_cases import tf_message

    from gs_mapping.messages import intrinsics_to_camera_info, metres_to_depth_image, numpy_to_image
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    node = MapperNode(bus.context("mapper_node"), cfg)
    t, f, frame = cfg["mapper"].topics, bus.factory, "camera_color_optical_frame"
    w, h, stamp = 32, 24, 10**9
    K = np.array([[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]])
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    bus.inject(t.camera_info, intrinsics_to_camera_info(CameraIntrinsics(w, h, K, frame_id=frame), f), stamp)
    bus.inject(t.tf_static, tf_message(f, 0, "map", frame, 0.0), stamp)
    bus.inject(t.color, numpy_to_image(rgb, "rgb8", stamp, frame, f), stamp)
    t0 = time.perf_counter()
    bus.inject(t.depth, metres_to_depth_image(np.full((h, w), 1.5), "16UC1", stamp, frame, f), stamp)
    wall_ms = (time.perf_counter() - t0) * 1e3
    assert node.mapper.stats.frames == 1, dict(node.diag.rejected) | dict(node.diag.dropped)
    st = node.diag.latency_stats("frame")
    assert 0 < st["p50_ms"] <= wall_ms
