"""A map receiver started after a bag's end with ``use_sim_time:=true``, with rclpy's real Python
code (Humble's, over test/rclpy_standin.py): it gets the mapper's latched snapshot (the final map)
and nothing else, and no /clock will come. Before session 39 it held the map and never published
its cloud (the cloud's timer is on ROS time, which stood at 0), and after 5 s told the user to play
the bag with --clock, which is over. Now, where messages came and stopped coming with ROS time at
0, the node's timers run on steady time (said once, as info): the cloud of what it holds goes out,
stamped 0. Nothing came (the nodes launched before a bag is played): nothing runs, nothing said.

Expected value: the codec's reference decoder's reading of the latched snapshot (not the receiver's
MapStore), point for point."""

from __future__ import annotations

import time

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


def _sorted(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


def _late_receiver(
    ros,
    seconds: float,
    snapshot: bytes | None,
    clock_at: float | None = None,
    snapshot_at: float | None = None,
):
    """A map_receiver_node (use_sim_time) started after a snapshot was latched on the mapper's topic
    (None: nothing was; ``snapshot_at``: sent that many seconds after the start instead), spun
    ``seconds``; /clock at 200 s from ``clock_at`` s on (None: never). Returns ([(wall time, cloud)],
    the node's log lines)."""
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import UInt8MultiArray

    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    context = rclpy.Context()
    args = ["n", "--ros-args", "-p", "use_sim_time:=true", "-p", "map_receiver_node.min_opacity:=0.0"]
    rclpy.init(args=args, context=context)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    mapper = rclpy.create_node("mapper_node", context=context)  # (its bag over, its snapshot latched)
    snap = mapper.create_publisher(UInt8MultiArray, "/mapper_node/map_snapshot", latched)
    if snapshot is not None and snapshot_at is None:
        snap.publish(bytes_to_uint8_multiarray(snapshot, RclpyFactory()))
    start = len(standin.LOG)
    node, obj = create_node(node_class("map_receiver_node"), context)
    clouds: list = []
    try:
        executor = SingleThreadedExecutor(context=context)
        for n in (node, mapper):
            executor.add_node(n)
        t0 = time.monotonic()
        mapper.create_subscription(
            PointCloud2,
            "/map_receiver_node/map_cloud",
            lambda m: clouds.append((time.monotonic() - t0, m)),
            latched,
        )
        clock = mapper.create_publisher(Clock, "/clock", 10)
        tick = 0
        while (t := time.monotonic() - t0) < seconds:
            if clock_at is not None and t >= clock_at and t >= tick * 0.1:
                clock.publish(Clock(clock=Time(sec=200 + tick // 10, nanosec=tick % 10 * 100_000_000)))
            if t >= tick * 0.1:
                tick += 1
            if snapshot_at is not None and t >= snapshot_at:
                snap.publish(bytes_to_uint8_multiarray(snapshot, RclpyFactory()))
                snapshot_at = None
            executor.spin_once(timeout_sec=0.02)
        mapper.destroy_node()
    finally:
        context.try_shutdown()
        close_node(node, obj)
    lines = [(sev, msg) for sev, who, msg in standin.LOG[start:] if who == "map_receiver_node"]
    return clouds, lines


@pytest.fixture(scope="module")
def final_snapshot():
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.receiver import MapStore
    from gs_map_share.snapshot import decode_map

    sender = MapSender.from_map(synthetic_map(1200, 0, seed=39))
    data = sender.snapshot()
    MapStore().receive(data)  # (numba compiles the decoding here, not within the timeline below)
    return data, decode_map(data)  # the codec's reference decoder, not the receiver


@pytest.fixture
def quick(monkeypatch):
    """The watch's check every 0.25 s, its wait 0.5 s, the stall line at 1.5 s (shipped: 1 s, 2 s,
    5 s): each case spins 3 s instead of 8."""
    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "TAIL_S", 0.5)
    monkeypatch.setattr(_SimClockWatch, "STALL_S", 1.5)


def test_a_receiver_started_after_the_bags_end_publishes_the_final_maps_cloud(ros, quick, final_snapshot):
    from gs_mapping.messages import pointcloud2_to_array

    data, reference = final_snapshot
    clouds, lines = _late_receiver(ros, 3.0, data)
    assert clouds, lines
    assert len(clouds) == 1, [round(t, 2) for t, _ in clouds]  # (published on change only)
    t, msg = clouds[0]
    assert t < 1.5, t  # (a quiet check after the first, then the 0.5 s wait, checks every 0.25 s)
    assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0  # (ROS time, standing at 0)
    cloud = pointcloud2_to_array(msg)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
    np.testing.assert_array_equal(_sorted(xyz), _sorted(reference.means.astype(np.float32)))
    said = [msg for _, msg in lines if "/clock" in msg]
    assert len(said) == 1 and "steady time" in said[0] and "no /clock has come" in said[0], lines
    assert not [s for s, _ in lines if s >= 30], lines  # (no 'play the bag with --clock' warning)


def test_a_clock_that_comes_later_takes_over(ros, quick, final_snapshot):
    """A bag played after all (with --clock): ROS time moves, the node's timers are its own again
    (the cloud already out; nothing more said)."""
    data, _ = final_snapshot
    clouds, lines = _late_receiver(ros, 3.0, data, clock_at=1.5)
    assert len(clouds) == 1 and clouds[0][0] < 1.5
    assert len([m for _, m in lines if "/clock" in m]) == 1, lines
    assert not [s for s, _ in lines if s >= 30], lines


def test_a_snapshot_that_comes_after_the_start_is_published_not_warned_about(ros, quick, final_snapshot):
    """The mapper's last snapshot reaches the receiver after its first checks (it settled a moment
    after the receiver started): one message, then none, is no bag played without --clock."""
    data, reference = final_snapshot
    clouds, lines = _late_receiver(ros, 3.0, data, snapshot_at=0.6)
    assert len(clouds) == 1 and clouds[0][1].width == len(reference), lines
    assert not [s for s, _ in lines if s >= 30], lines  # (2.4 s of it: past the 1.5 s stall)
    said = [msg for _, msg in lines if "/clock" in msg]
    assert len(said) == 1 and "steady time" in said[0], lines


def test_nothing_came_nothing_runs(ros, quick):
    """The nodes launched before a bag is played: no message, no /clock: nothing is published and
    nothing said (the node waits for the bag's clock)."""
    clouds, lines = _late_receiver(ros, 2.5, None)
    assert clouds == [] and not [m for _, m in lines if "/clock" in m], lines
