"""A bag's tail under ``use_sim_time``, with rclpy's real Python code (Humble's, over
test/rclpy_standin.py): at the bag's end /clock stops while map_receiver_node still gets and applies
the mapper's last deltas. Its map cloud comes from a timer on ROS time, which no longer moves: before
session 37 the last deltas were applied and never published (a probe: 1,769 Gaussians held, 1,736
points in the last of 8 clouds). The rclpy runtime's clock watch now runs such a timer on steady time
once /clock has stood still a while and messages came for it. Before any /clock nothing runs while
messages keep coming (the node waits for the bag's clock: test_outside_ros2_nodes pins that for
/diagnostics), only once they stopped (test_ros39_late_receiver_sim_time)."""

from __future__ import annotations

import time

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


def _maps(**sender_kw):
    """The mapper's map as it grows: 600, 900, 1200, 1500 Gaussians (ids kept), and the containers
    a mapper sends for it: a snapshot of the first, deltas to the others."""
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.receiver import APPLIED, SNAPSHOT, MapStore

    full = synthetic_map(1500, 0, seed=37)
    sender = MapSender.from_map(full.subset(np.arange(600)), **sender_kw)
    containers = [sender.snapshot()]
    for n in (900, 1200, 1500):
        containers.append(sender.update(full.subset(np.arange(n)))[0])
    warm = MapStore()  # (numba compiles the decoding here, not within the node's timeline below)
    assert [warm.receive(c) for c in containers] == [SNAPSHOT, APPLIED, APPLIED, APPLIED]
    return sender, containers


def _run(ros, name, ros_args, containers, outputs, clock_stops_at: float | None, seconds: float):
    """Node ``name`` (use_sim_time and ``ros_args``) spun ``seconds`` of wall time: /clock every
    0.1 s from 100 s until ``clock_stops_at`` (None: no /clock at all), ``containers`` (topic prefix,
    [snapshot, delta, delta, delta]) sent at 0, 0.5, 1.9 and 2.2 s of wall time (the last two after
    /clock stopped at 1.6 s). Returns (the node object, {topic: [(wall time, message)]} of
    ``outputs``, given as {topic: (type name, depth or None: latched)})."""
    rclpy, _ = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import UInt8MultiArray

    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import _msg_class, close_node, create_node

    prefix, data = containers
    sends = list(zip((0.0, 0.5, 1.9, 2.2), ("snapshot", "delta", "delta", "delta"), data, strict=True))
    context = rclpy.Context()
    rclpy.init(args=["n", "--ros-args", "-p", "use_sim_time:=true", *ros_args], context=context)
    node, obj = create_node(node_class(name), context)
    got: dict = {topic: [] for topic in outputs}
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        t0 = time.monotonic()
        for topic, (typename, qos) in outputs.items():

            def keep(msg, into=got[topic]):
                into.append((time.monotonic() - t0, msg))

            player.create_subscription(_msg_class(typename), topic, keep, qos or latched)
        snap = player.create_publisher(UInt8MultiArray, f"{prefix}/mapper_node/map_snapshot", latched)
        delta = player.create_publisher(UInt8MultiArray, f"{prefix}/mapper_node/map_delta", 100)
        clock = player.create_publisher(Clock, "/clock", 10)
        tick = 0
        while (t := time.monotonic() - t0) < seconds:
            if sends and t >= sends[0][0]:
                _, kind, container = sends.pop(0)
                pub = snap if kind == "snapshot" else delta
                pub.publish(bytes_to_uint8_multiarray(container, RclpyFactory()))
            if t >= tick * 0.1:
                if clock_stops_at is not None and t < clock_stops_at:
                    sec = 100 + tick * 0.1
                    clock.publish(Clock(clock=Time(sec=int(sec), nanosec=int(round(sec % 1 * 1e9)))))
                tick += 1
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        close_node(node, obj)
    return obj, got


CLOUD = "/map_receiver_node/map_cloud"


def _receiver(ros, clock_stops_at, seconds):
    """map_receiver_node (every Gaussian in its cloud) fed a mapper's containers: (the node object,
    its clouds, the wall times of its /diagnostics, the sender)."""
    sender, data = _maps()
    obj, got = _run(
        ros,
        "map_receiver_node",
        ["-p", "map_receiver_node.min_opacity:=0.0"],
        ("", data),
        {
            CLOUD: ("sensor_msgs/msg/PointCloud2", None),
            "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", 10),
        },
        clock_stops_at,
        seconds,
    )
    return obj, [m for _, m in got[CLOUD]], [t for t, _ in got["/diagnostics"]], sender


def _xyz(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


def test_the_last_deltas_after_the_bags_last_clock_reach_the_map_cloud(ros):
    """The shipped timing (checked every 1 s, a tail after 2 s of ROS time standing still): /clock
    stops at 1.6 s, two deltas come after it; the last cloud holds every Gaussian of the mapper's
    map (decoded from its own snapshot, not through the receiver), point for point."""
    from gs_map_share.snapshot import decode_map
    from gs_mapping.messages import pointcloud2_to_array

    obj, clouds, diagnostics, sender = _receiver(ros, clock_stops_at=1.6, seconds=6.0)
    mapper_map = decode_map(sender.snapshot())
    assert len(mapper_map) == 1500 and obj.store.state.equals(sender.shadow)  # all four applied
    assert clouds, "no cloud while /clock ran"
    last = pointcloud2_to_array(clouds[-1])
    got = np.stack([last["x"], last["y"], last["z"]], 1)
    assert len(got) == 1500, [c.width for c in clouds]
    np.testing.assert_array_equal(_xyz(got), _xyz(mapper_map.means.astype(np.float32)))
    assert not obj._dirty  # nothing applied is left unpublished
    # the tail ran the timers once for the deltas at 1.9 and 2.2 s, not on (no /diagnostics on
    # steady time while nothing comes: a paused bag's nodes stay as quiet as ROS time says)
    assert len([t for t in diagnostics if t > 3.0]) == 1, diagnostics


def test_before_any_clock_the_timers_wait_while_messages_come(ros, monkeypatch):
    """No /clock at all (a bag played without --clock): while containers keep coming (none more
    than TAIL_S apart, here 1.5 s) the map is applied and no cloud published (the timers wait for
    the bag's clock); once none has come for TAIL_S (session 39: a receiver started after a bag's
    end gets its latched snapshot and nothing else, and no /clock will come) they run on steady
    time: the cloud holds the whole map (the mapper's own snapshot decoded by the reference
    decoder), stamped 0."""
    from gs_map_share.snapshot import decode_map
    from gs_mapping.messages import pointcloud2_to_array
    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "TAIL_S", 1.5)
    sender, data = _maps()
    obj, got = _run(
        ros,
        "map_receiver_node",
        ["-p", "map_receiver_node.min_opacity:=0.0"],
        ("", data),
        {CLOUD: ("sensor_msgs/msg/PointCloud2", None)},
        None,
        5.0,
    )
    assert obj.store.ready and len(obj.store.gaussian_map()) == 1500
    clouds = got[CLOUD]
    assert clouds and all(t > 2.2 + 1.5 for t, _ in clouds), [round(t, 2) for t, _ in clouds]
    assert clouds[-1][1].header.stamp.sec == 0 and clouds[-1][1].header.stamp.nanosec == 0
    last = pointcloud2_to_array(clouds[-1][1])
    xyz = np.stack([last["x"], last["y"], last["z"]], 1)
    np.testing.assert_array_equal(_xyz(xyz), _xyz(decode_map(sender.snapshot()).means.astype(np.float32)))


def test_the_map_servers_last_containers_are_acknowledged_and_go_out(ros, tmp_path):
    """map_server_node (one vehicle, a global delta every 0.2 s of ROS time) gets a vehicle's last two
    deltas after the bag's last /clock: each of the four containers is acknowledged, and the global
    map its snapshot and deltas make (applied as a late receiver would) is the vehicle's map."""
    import json

    from gs_map_share.quantize import QuantParams
    from gs_map_share.receiver import MapStore
    from gs_map_share.snapshot import decode_map
    from gs_mapping.messages import uint8_multiarray_to_bytes

    sender, data = _maps(params=QuantParams.from_quality(3), map_id=7)
    ack, snap, delta = "/map_server_node/ack", "/map_server_node/map_snapshot", "/map_server_node/map_delta"
    obj, got = _run(
        ros,
        "map_server_node",
        [
            "-p",
            "map_server_node.vehicles:=[vehicle1]",
            "-p",
            f"map_server_node.store_path:={tmp_path / 'f.db'}",
        ],
        ("/vehicle1", data),
        {
            ack: ("std_msgs/msg/String", 1000),
            snap: ("std_msgs/msg/UInt8MultiArray", None),
            delta: ("std_msgs/msg/UInt8MultiArray", 100),
        },
        clock_stops_at=1.6,
        seconds=6.0,
    )
    acked = [json.loads(m.data)["seq"] for _, m in got[ack]]
    assert len(acked) == 4 and acked[-1] == sender.seq, acked
    store = MapStore()
    for _, m in got[snap][:1] + got[delta]:
        store.receive(uint8_multiarray_to_bytes(m))
    means = store.gaussian_map().means
    assert len(means) == 1500, (len(means), store.stats)
    np.testing.assert_array_equal(_xyz(means), _xyz(decode_map(sender.snapshot()).means))


def test_a_clock_gone_while_stamped_data_goes_on_runs_no_timers_on_steady_time(ros, monkeypatch):
    """/clock's publisher gone while the sensors go on (stamps run past the stopped clock): a fault
    the watch says, not a bag's tail; the node's timers keep waiting for /clock (as its line says),
    no /diagnostics on steady time once the stamps are ``STALL_S`` past it."""
    pytest.importorskip("torch")  # (mapper_node)
    from sensor_msgs.msg import CameraInfo

    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "STALL_S", 1.5)
    monkeypatch.setattr(_SimClockWatch, "TAIL_S", 0.5)
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    def stamp(sec):
        return Time(sec=int(sec), nanosec=int(round(sec % 1 * 1e9)))

    context = rclpy.Context()
    rclpy.init(args=["n", "--ros-args", "-p", "use_sim_time:=true"], context=context)
    node, obj = create_node(node_class("mapper_node"), context)
    diagnostics, start = [], len(standin.LOG)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        t0 = time.monotonic()
        player.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(time.monotonic() - t0), 10
        )
        info = player.create_publisher(CameraInfo, obj.cfg.topics.camera_info, 10)
        clock = player.create_publisher(Clock, "/clock", 10)
        tick = 0
        while (t := time.monotonic() - t0) < 4.5:
            if t >= tick * 0.1:
                tick += 1
                if t < 0.5:
                    clock.publish(Clock(clock=stamp(42.25)))
                msg = CameraInfo(width=8, height=8)
                msg.header.stamp = stamp(42.25 + t)
                info.publish(msg)
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        close_node(node, obj)
    lines = [m for _, who, m in standin.LOG[start:] if who == "mapper_node" and "/clock stopped" in m]
    assert lines and [t for t in diagnostics if t > 2.5] == [], diagnostics
