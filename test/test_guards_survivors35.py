"""Guards from mutation testing (session 35 draw, seed 2312052, over the lines added since c8aeb18
in zenoh_runtime, config_file, the nodes, frames.py, ply.py, the splat formats, tf.py,
output_files and gsmap_hd): each test here fails on a mutant that the suite let live, and compares
the project with something outside it:

- Niantic's SPZ reference vectors (``splats/spz_reference``: guitar.ply written by Niantic's
  library as SPZ v2, gzip framing, and v4, NGSP framing; the PLY its library decodes from v2, read
  here by hand with numpy from its header) and the SPZ format's axes (RUB; PLY's RDF is the scene
  turned 180° about x: y and z negated);
- rcl's name resolution (rcl_expand_topic_name): an absolute name ignores the namespace, a
  relative one is put under it, so two names are one topic when they resolve to the same string;
- tf2's static transforms as ``ros2 bag play`` feeds them to a listener: a /tf_static value
  re-published mid-recording is what a listener holds from when it was logged, the earlier one
  before that.

Known bugs are ``xfail(strict=True)`` whose reason names the bug.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

S = 1_000_000_000


def _ply_xyz_by_hand(path: Path) -> np.ndarray:
    """x, y, z of a binary little-endian PLY of float properties, read from its header by hand."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert "format binary_little_endian 1.0" in header
    count = next(int(h.split()[2]) for h in header if h.startswith("element vertex"))
    names = [h.split()[2] for h in header if h.startswith("property")]
    assert all(h.split()[1] == "float" for h in header if h.startswith("property"))
    rows = np.frombuffer(data, "<f4", count * len(names), end).reshape(count, len(names))
    return rows[:, [names.index("x"), names.index("y"), names.index("z")]]


# ------------------------------------------------------------------------------------------------
# SPZ axes of a gzip (v1-v3) SPZ: no coordinate-system extension means RUB


def test_a_gzip_spz_read_in_rub_axes_is_niantics_decode_turned_about_x(spz_reference):
    """SPZ stores RUB axes unless its (v4) coordinate-system extension says otherwise; the gzip
    framing of versions 1-3 has no such extension, so ``axes="rub"`` must read Niantic's v2
    vector as RUB and turn it into PLY's RDF: Niantic's own decode of the same file (its PLY, in
    the stored axes, read by hand here) with y and z negated. It must not be refused as a file
    'stored in UNSPECIFIED axes' (what a coordinate-system lookup answering 0 instead of 'none'
    for a non-NGSP file leads to), nor read as stored."""
    from gs_mapping.splat_formats import load_splats
    from gs_mapping.splat_formats.spz import read_spz

    ref = spz_reference
    theirs = _ply_xyz_by_hand(ref / "guitar_v2.decoded.ply").astype(np.float64)
    want = theirs * np.array([1.0, -1.0, -1.0])
    ours = read_spz((ref / "guitar_v2.spz").read_bytes(), str(ref / "guitar_v2.spz"), axes="rub")
    assert len(ours) == len(want) == 90854
    assert np.array_equal(ours.means.astype(np.float64), want)
    loaded = load_splats(ref / "guitar_v2.spz", spz_axes="rub")
    assert np.array_equal(loaded.means.astype(np.float64), want)


def test_converting_a_gzip_spz_to_spz_writes_no_coordinate_system_extension(tmp_path, spz_reference):
    """A v2 (gzip) SPZ carries no coordinate-system extension, so ``convert`` in the stored axes
    must not invent one: the v4 file written has the NGSP header Niantic's library wrote for the
    same scene (guitar_v4.spz: flags 0, table of contents right after the 32-byte header), not an
    ``SPZ_ADOBE_coordinate_system`` record saying 0 (UNSPECIFIED)."""
    from gs_mapping.cli import main

    ref = spz_reference
    out = tmp_path / "guitar.spz"
    assert main(["convert", str(ref / "guitar_v2.spz"), str(out)]) == 0
    got = out.read_bytes()
    niantic = (ref / "guitar_v4.spz").read_bytes()
    # magic, version, points, SH degree, fractional bits, flags, streams, table-of-contents offset
    fields = "<IIIBBBBI"
    assert struct.unpack_from(fields, got) == struct.unpack_from(fields, niantic)
    assert got[14] & 2 == 0 and struct.unpack_from("<I", got, 16)[0] == 32


# ------------------------------------------------------------------------------------------------
# map_server_node: every vehicle's topics resolved as rcl resolves them


@pytest.mark.parametrize(
    ("vehicles", "topics", "resolved"),
    [
        # absolute: rcl leaves it as it is in every namespace -> one topic for both vehicles
        (["vehicle1", "vehicle2"], {"delta_topic": "/mapper_node/map_delta"}, "/mapper_node/map_delta"),
        # relative, the same for delta and snapshot: /vehicle1/x for both of the one vehicle
        (["vehicle1"], {"delta_topic": "x", "snapshot_topic": "x"}, "/vehicle1/x"),
    ],
)
def test_map_server_refuses_vehicle_topics_that_resolve_to_one_topic(tmp_path, vehicles, topics, resolved):
    """rcl_expand_topic_name, by hand: an absolute name (``/mapper_node/map_delta``) is the same
    topic in every namespace, a relative one becomes ``/<namespace>/<name>``. Two bindings on one
    topic take each other's messages, so the parameter file must be refused, naming the topic it
    resolves to, whichever vehicle comes first in the list (the first vehicle's topics are checked
    as the others' are)."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.map_server_node import MapServerNode

    lines = [f"      vehicles: [{', '.join(vehicles)}]", f"      store_path: {tmp_path / 'fleet.sqlite3'}"]
    lines += [f"      {k}: {v}" for k, v in topics.items()]
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("/**:\n  ros__parameters:\n    map_server_node:\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=resolved):
        MapServerNode.load_config(str(cfg))
    assert not (tmp_path / "fleet.sqlite3").exists()


# ------------------------------------------------------------------------------------------------
# a recording's /tf_static re-published mid-drive: from its log time on, as a listener held it


def test_a_bags_static_transform_republished_midway_holds_from_when_it_was_logged(tmp_path):
    """``ros2 bag play`` hands /tf_static to tf2's listener in log order: a static transform
    re-published at 5 s (camera moved on its mount from 0.1 m to 0.4 m) is what the listener holds
    from 5 s, and the first value before that (tf2's static cache keeps the latest it was given).
    The bag's TF loaded up front must answer the same for images logged at 2 s (0.1 m) and at 7 s
    (0.4 m), not the last value for the whole drive."""
    from gs_mapping.bag import BagReader, BagWriter, default_typestore
    from gs_mapping.mapping.frames import load_tf
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.messages import RosbagsFactory
    from gs_mapping.messages.factory import make_header

    f = RosbagsFactory(default_typestore())

    def tf(stamp, parent, child, x):
        t = f.make(
            "geometry_msgs/msg/TransformStamped",
            header=make_header(stamp, parent, f),
            child_frame_id=child,
            transform=f.make(
                "geometry_msgs/msg/Transform",
                translation=f.make("geometry_msgs/msg/Vector3", x=x, y=0.0, z=0.0),
                rotation=f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
            ),
        )
        return f.make("tf2_msgs/msg/TFMessage", transforms=[t])

    path = tmp_path / "bag"
    with BagWriter(path) as bag:
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        bag.write("/tf_static", 0, tf(0, "base_link", "camera", 0.1))
        bag.write("/tf_static", 5 * S, tf(5 * S, "base_link", "camera", 0.4))
        for k in range(11):
            bag.write("/tf", k * S, tf(k * S, "map", "base_link", 0.0))
    with BagReader(path) as r:
        buf = load_tf(r, TopicsConfig())
    got = [  # (looked up for images logged at those times, as read_frames does)
        round(float(buf.lookup("base_link", "camera", k * S, logged_ns=k * S).translation[0]), 6)
        for k in (2, 7)
    ]
    assert got == [0.1, 0.4]


# ------------------------------------------------------------------------------------------------
# Zenoh runtime: a keep-last queue's losses, each counted once in the node's diagnostics


def test_zenoh_keep_last_losses_are_counted_once_however_often_the_node_spins():
    """DDS / rmw_zenoh KEEP_LAST(depth): a subscriber that takes nothing while a burst arrives
    keeps the newest ``depth`` samples; the older ones are lost, each once. By hand: 6 samples into
    depth 2 lose 4; later spins with nothing new lose nothing more; a second burst of 3 loses 1
    (total 5). The node's diagnostics must say 4 after the first spin and stay at 4, then 5 (not
    re-count the same losses at every spin). A real router and two real Zenoh sessions on
    127.0.0.1."""
    pytest.importorskip("zenoh")
    import socket
    import time

    from gs_mapping.nodes.context import QoS
    from gs_mapping.nodes.diagnostics import NodeDiagnostics
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp/127.0.0.1:{s.getsockname()[1]}"
    router = run_router([endpoint])
    pub_ctx = sub_ctx = None
    try:
        pub_ctx = ZenohContext("burst_pub", domain_id=47, connect=[endpoint])
        sub_ctx = ZenohContext("burst_sub", domain_id=47, connect=[endpoint])
        diag = NodeDiagnostics("burst_sub")
        sub_ctx.attach_diagnostics(diag)
        got = []
        sub_ctx.create_subscription(
            "/gs_test/burst35", "std_msgs/msg/String", QoS(depth=2), lambda m: got.append(m.data)
        )
        pub = pub_ctx.create_publisher("/gs_test/burst35", "std_msgs/msg/String", QoS(depth=2))
        pub_ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=15)
        time.sleep(0.3)

        def burst(names, lost):  # publish; the last one in, the runtime has pushed out ``lost`` in all
            for name in names:
                pub.publish(pub_ctx.factory.make("std_msgs/msg/String", data=name))
            deadline = time.monotonic() + 10
            while sum(sub_ctx.dropped_samples.values()) < lost and time.monotonic() < deadline:
                time.sleep(0.05)

        burst([f"m{i}" for i in range(6)], 4)
        sub_ctx.spin_once(0.1)
        assert got == ["m4", "m5"]
        assert diag.dropped == {"/gs_test/burst35": 4}
        for _ in range(3):
            sub_ctx.spin_once(0.05)
        assert diag.dropped == {"/gs_test/burst35": 4}
        burst(["n0", "n1", "n2"], 5)
        sub_ctx.spin_once(0.1)
        assert got[2:] == ["n1", "n2"]
        assert diag.dropped == {"/gs_test/burst35": 5}
    finally:
        for c in (sub_ctx, pub_ctx):
            if c is not None:
                c.close()
        router.close()


# ------------------------------------------------------------------------------------------------
# the driving world's ground truth: a lane clipped into two pieces gives two elements


def test_a_lane_leaving_and_reentering_the_patch_gives_both_pieces():
    """MapTR's ground truth (``LiDARInstanceLines`` / ``get_map_geom``: ``line.intersection(patch)``,
    each LineString of a MultiLineString its own instance): a divider that leaves the 60 m x 30 m
    patch across x = 30 and comes back is two elements. By hand, the U-shaped line (0,-10) → (40,-10)
    → (40,10) → (0,10) in the patch |x| ≤ 30, |y| ≤ 15 is the segments (0,-10)-(30,-10) and
    (30,10)-(0,10), each 30 m long."""
    from gs_mapping.world.roads import DIVIDER, MapElement, clip_elements

    u = MapElement(DIVIDER, np.array([[0.0, -10.0], [40.0, -10.0], [40.0, 10.0], [0.0, 10.0]]))
    out = clip_elements([u], np.eye(4), 30.0, 15.0)
    pieces = sorted(
        (tuple(np.round(e.pts[0], 6)), tuple(np.round(e.pts[-1], 6))) for e in out if e.cls == DIVIDER
    )
    assert len(out) == 2
    assert pieces == [((0.0, -10.0), (30.0, -10.0)), ((30.0, 10.0), (0.0, 10.0))]


# ------------------------------------------------------------------------------------------------
# mapper_node: time spent publishing a snapshot is not counted in a waiting frame's wait


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _matrix(tf_msg) -> np.ndarray:
    (t,) = tf_msg.transforms
    m = np.eye(4)
    m[:3, :3] = _quat_matrix(t.transform.rotation)
    v = t.transform.translation
    m[:3, 3] = (v.x, v.y, v.z)
    return m


def _kitchen_node(kitchen_bag, tolerance_s=None):
    from types import SimpleNamespace

    from conftest import use_kitchen_topics

    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    use_kitchen_topics(cfg["mapper"].topics)
    if tolerance_s is not None:
        cfg["mapper"].topics.tf_tolerance_s = tolerance_s
    node = MapperNode(bus.context("mapper_node"), cfg)
    frames = []

    def add_frame(frame):  # (the mapping step itself is not what is checked here)
        frames.append(frame)
        return SimpleNamespace(reason="", is_keyframe=False)

    node.mapper.add_frame = add_frame
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    by_topic: dict[str, list] = {}
    for topic, s, m in msgs:
        by_topic.setdefault(topic, []).append((s, m))

    def busy_snapshot(seconds):  # a snapshot that takes ``seconds`` of node time to publish
        real = node.publish_snapshot

        def publish():  # (the real one, then the time it took: it books when it went out)
            real()
            bus.now_ns += int(seconds * S)

        node.publish_snapshot = publish
        bus.subscribe("/mapper_node/map_snapshot", lambda m: None)  # (one joins: the timer publishes)
        node.on_snapshot_timer()

    return bus, node, frames, by_topic, busy_snapshot


def test_a_frame_waiting_for_its_tf_keeps_waiting_while_a_snapshot_is_published(kitchen_bag):
    """tf2_ros's TransformListener reads /tf on a thread of its own (spin_thread), so while a node's
    callback is busy (here publishing a snapshot that takes 2 s of node time) the transforms keep
    coming and a frame that waits for its TF (tf2_ros MessageFilter) still finds it afterwards. On
    the real kitchen recording: frame 5's CameraInfo is there, /tf only up to frame 4; then the
    2 s snapshot; then frame 5's /tf arrives (the diagnostics timer due first, as an executor runs
    it). The frame must be mapped with the pose of its own stamp: by hand, T_map_base from that /tf
    message times the static T_base_camera (0.1 m along x, the optical rotation), not be dropped
    for want of a pose (tf_tolerance_s 1 ms: the older sample, 33 ms before, does not serve)."""
    bus, node, frames, by, busy_snapshot = _kitchen_node(kitchen_bag, tolerance_s=0.001)
    t = node.cfg.topics
    for s, m in by[t.tf_static]:
        bus.inject(t.tf_static, m, s)
    for s, m in by[t.tf][:5]:
        bus.inject(t.tf, m, s)
    (s_c, color), (s_d, depth), (s_i, info) = by[t.color][5], by[t.depth][5], by[t.camera_info][5]
    bus.inject(t.camera_info, info, s_i)
    bus.inject(t.color, color, s_c)
    bus.inject(t.depth, depth, s_d)
    assert not frames  # waiting for the /tf after its stamp
    busy_snapshot(2.0)
    s_tf, tf5 = by[t.tf][5]
    bus.inject(t.tf, tf5, bus.now_ns)
    assert len(frames) == 1, node.diag.dropped
    want = _matrix(tf5) @ _matrix(by[t.tf_static][0][1])
    np.testing.assert_allclose(frames[0].camera.T_map_cam, want, atol=1e-6)


def test_a_frame_waiting_for_its_camera_info_keeps_its_images_while_a_snapshot_is_published(kitchen_bag):
    """image_transport's CameraPublisher may send a frame's CameraInfo just after its images; the
    frame waits for it. A snapshot published meanwhile (2 s of node time) must not change what
    waits: when the CameraInfo comes the frame is mapped with its own images, by hand from the
    sensor_msgs/Image bytes (REP 118 / the message definition): colour rgb8 → bytes / 255 as (H, W,
    3), depth 16UC1 → millimetres / 1000 as (H, W)."""
    bus, node, frames, by, busy_snapshot = _kitchen_node(kitchen_bag)
    t = node.cfg.topics
    for topic in (t.tf_static, t.tf):
        for s, m in by[topic]:
            bus.inject(topic, m, s)
    node.camera_infos._paired = True  # (a camera whose CameraInfos carry their images' stamps)
    (s_c, color), (s_d, depth), (_, info) = by[t.color][3], by[t.depth][3], by[t.camera_info][3]
    old_s, old = by[t.camera_info][0]
    bus.inject(t.camera_info, old, old_s)  # an older one: the frame's own is awaited
    bus.inject(t.color, color, s_c)
    bus.inject(t.depth, depth, s_d)
    assert not frames
    busy_snapshot(0.3)
    bus.inject(t.camera_info, info, bus.now_ns)
    assert len(frames) == 1, (node.diag.dropped, node.diag.rejected, node.diag.last_error)
    f = frames[0]
    rgb = np.frombuffer(bytes(color.data), np.uint8).reshape(color.height, color.width, 3) / 255.0
    mm = np.frombuffer(bytes(depth.data), "<u2").reshape(depth.height, depth.width).astype(np.float64)
    assert color.encoding == "rgb8" and depth.encoding == "16UC1" and not depth.is_bigendian
    np.testing.assert_allclose(f.rgb, rgb, atol=1e-6)
    valid = mm > 0
    np.testing.assert_allclose(f.depth[valid], mm[valid] / 1000.0, rtol=1e-6)
