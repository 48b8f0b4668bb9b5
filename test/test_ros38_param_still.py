"""``ros2 param set`` while ROS time stands still (``use_sim_time``, the bag paused or ended), with
rclpy's real Python code (Humble's, over test/rclpy_standin.py): map_receiver_node's
``min_opacity`` changes which Gaussians its ``~/map_cloud`` holds, and the cloud goes out from a
timer on ROS time. Before session 38 the change waited for the bag to play on (no cloud came while
/clock stood still: the clock watch ran the timers only for messages). Now a parameter change
counts as one: the new cloud comes at the watch's next check, on steady time.
"""

from __future__ import annotations

import time

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


def _set_parameters(executor, standin, node_name: str, values: dict):
    """What `ros2 param set` sends: an rcl_interfaces/srv/SetParameters request to the node's service."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    service = next(s for s in standin.BUS.services if s.name == f"/{node_name}/set_parameters")
    request = SetParameters.Request(
        parameters=[
            ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value()) for k, v in values.items()
        ]
    )
    seq = service.call(request)
    end = time.monotonic() + 10
    while seq not in service.responses and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    return [(r.successful, r.reason) for r in service.responses[seq].results]


def _sorted(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


def test_min_opacity_set_while_the_bags_clock_stands_still_reaches_the_map_cloud(ros, monkeypatch):
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import UInt8MultiArray
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.receiver import MapStore
    from gs_map_share.snapshot import decode_map
    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray, pointcloud2_to_array
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch, close_node, create_node

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "TAIL_S", 0.5)
    full = synthetic_map(1500, 0, seed=38)
    sender = MapSender.from_map(full.subset(np.arange(1000)))
    data = [sender.snapshot(), sender.update(full)[0]]
    MapStore().receive(data[0])  # (numba compiles the decoding here, not within the timeline below)
    reference = decode_map(sender.snapshot())  # the codec's reference decoder, not the receiver

    context = rclpy.Context()
    args = ["n", "--ros-args", "-p", "use_sim_time:=true", "-p", "map_receiver_node.min_opacity:=0.0"]
    rclpy.init(args=args, context=context)
    node, obj = create_node(node_class("map_receiver_node"), context)
    clouds: list = []
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        t0 = time.monotonic()
        player.create_subscription(
            PointCloud2,
            "/map_receiver_node/map_cloud",
            lambda m: clouds.append((time.monotonic() - t0, m)),
            10,
        )
        snap = player.create_publisher(UInt8MultiArray, "/mapper_node/map_snapshot", latched)
        delta = player.create_publisher(UInt8MultiArray, "/mapper_node/map_delta", 100)
        clock = player.create_publisher(Clock, "/clock", 10)
        tick, sent, set_at = 0, 0, None
        while (t := time.monotonic() - t0) < 6.0:
            if t >= tick * 0.1:
                if t < 1.0:  # the bag plays 1 s, then pauses (or ends): /clock stands still
                    sec = 100 + tick * 0.1
                    clock.publish(Clock(clock=Time(sec=int(sec), nanosec=int(round(sec % 1 * 1e9)))))
                tick += 1
            if sent == 0 and t >= 0.2:
                snap.publish(bytes_to_uint8_multiarray(data[0], RclpyFactory()))
                sent = 1
            elif sent == 1 and t >= 0.5:
                delta.publish(bytes_to_uint8_multiarray(data[1], RclpyFactory()))
                sent = 2
            if set_at is None and t >= 3.0:  # clock stood still 2 s: the tail's cloud is out
                assert clouds and clouds[-1][1].width == len(reference), [m.width for _, m in clouds]
                set_at = time.monotonic() - t0
                ok = _set_parameters(
                    executor, standin, "map_receiver_node", {"map_receiver_node.min_opacity": 0.5}
                )
                assert ok == [(True, "")], ok
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        close_node(node, obj)
    after = [(t, m) for t, m in clouds if t > set_at]
    assert after, f"no cloud after the change (clouds at {[round(t, 2) for t, _ in clouds]})"
    assert after[0][0] - set_at < 1.5, after[0][0] - set_at  # (the watch checks every 0.25 s here)
    cloud = pointcloud2_to_array(after[-1][1])
    keep = reference.opacities() >= 0.5
    assert 0 < keep.sum() < len(reference)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
    np.testing.assert_array_equal(_sorted(xyz), _sorted(reference.means[keep].astype(np.float32)))
    assert len(after) == 1  # one cloud for the change, not one every check
