"""Outside review (fifth pass) of issue 20 (ROS 2 for real), the TF part: TF when ROS time jumps
back under ``use_sim_time`` (a simulator reset, ``ros2 bag play --loop --clock`` of a bag longer than
its loop gap). tf2_ros clears its buffer on every backward jump of the node's clock (ros2/geometry2
humble, ``tf2_ros/src/buffer.cpp``: the jump threshold "Anything backwards is a jump", ``onTimeJump``
-> "Detected jump back in time. Clearing TF buffer."; tf2_ros_py ``buffer.py`` the same for jumps of
1 s or more).

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it, as in
test_rclpy_runtime.py. (Taken from test_outside_ros2_real5.py, whose other tests live there.)
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# rclpy (real Python layer, stand-in C extension): TF when ROS time jumps back


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    distro = os.environ.get("RCLPY_DISTRO", "humble")  # as test_rclpy_runtime.py: Jazzy's by hand
    store = get_typestore(Stores.ROS2_JAZZY if distro == "jazzy" else Stores.ROS2_HUMBLE)
    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(store, os.environ.get("RCLPY_SOURCE"))
    yield rclpy, standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


S = 10**9


@pytest.mark.parametrize("which", ["mapper_node", "hd_map_node"])
def test_a_backward_sim_time_jump_forgets_the_previous_runs_transforms(ros, which):
    """A simulator reset under use_sim_time: /clock goes back from 20 s to 0 and the robot drives
    again from its start, this time along y. tf2_ros (buffer.cpp onTimeJump) clears the buffer at
    the jump, so the pose at t = 3 s of the new run is the new run's, (0, 3, 0), interpolated
    between its samples at 2.95 s and 3.05 s. mapper_node (under rclpy, /clock and /tf through
    rclpy publishers) still holds the first run's sample at exactly 3 s, (3, 0, 0), and maps the
    new run's frames at the old run's poses."""
    rclpy, _ = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from tf2_msgs.msg import TFMessage

    from gs_mapping.messages import RclpyFactory
    from gs_mapping.messages.tf_message import transforms_to_tf_message
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node
    from gs_mapping.tf import Transform, TransformStamped

    cls, device = {"mapper_node": (MapperNode, "mapper"), "hd_map_node": (HDMapNode, "hd_map_node")}[which]
    context = rclpy.Context()
    rclpy.init(
        args=[which, "--ros-args", "-p", "use_sim_time:=true", "-p", f"{device}.device:=cpu"],
        context=context,
    )
    node, obj = create_node(cls, context)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        probe = rclpy.create_node("sim", context=context)
        executor.add_node(probe)
        clock = probe.create_publisher(Clock, "/clock", 10)
        tf = probe.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        factory = RclpyFactory()

        def tick(stamp: int, x: float, y: float) -> None:
            clock.publish(Clock(clock=Time(sec=stamp // S, nanosec=stamp % S)))
            pose = Transform(np.array([x, y, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))
            tf.publish(transforms_to_tf_message([TransformStamped("map", "base_link", stamp, pose)], factory))
            for _ in range(8):
                executor.spin_once(timeout_sec=0.0)

        for k in range(1, 201):  # first run: 20 s along x at 1 m/s, /tf at 10 Hz
            tick(k * S // 10, k / 10, 0.0)
        assert node.get_clock().now().nanoseconds == 20 * S
        for k in range(40):  # reset: time from 0.05 s again, along y
            t = k * S // 10 + S // 20
            tick(t, 0.0, t / S)
        assert node.get_clock().now().nanoseconds == 3 * S + 95 * S // 100  # the clock went back
        probe.destroy_node()
        xyz = obj.tf.lookup("map", "base_link", 3 * S).matrix()[:3, 3]  # (the nodes' TF buffer)
        np.testing.assert_allclose(xyz, [0.0, 3.0, 0.0], atol=1e-6)
    finally:
        context.try_shutdown()
        close_node(node, obj)


def test_lanes_served_after_the_clock_went_back_are_not_posed_by_the_previous_run(ros):
    """hd_map_node: the clock goes back (a simulator reset) and a frame's lanes are placed before
    the new run's first /tf. tf2_ros cleared its buffer at the jump, so there is no pose yet; the
    node must not place them with the old run's sample at that stamp (every lookup follows the
    clock, not only the next /tf)."""
    rclpy, _ = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from tf2_msgs.msg import TFMessage

    from gs_mapping.messages import RclpyFactory
    from gs_mapping.messages.tf_message import transforms_to_tf_message
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node
    from gs_mapping.tf import Transform, TransformStamped

    context = rclpy.Context()
    rclpy.init(
        args=["hd_map_node", "--ros-args", "-p", "use_sim_time:=true", "-p", "hd_map_node.device:=cpu"],
        context=context,
    )
    node, obj = create_node(HDMapNode, context)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        probe = rclpy.create_node("sim", context=context)
        executor.add_node(probe)
        clock = probe.create_publisher(Clock, "/clock", 10)
        tf = probe.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        factory = RclpyFactory()

        def spin() -> None:
            for _ in range(8):
                executor.spin_once(timeout_sec=0.0)

        for k in range(1, 51):  # first run: 5 s along x, /tf at 10 Hz
            clock.publish(Clock(clock=Time(sec=k // 10, nanosec=k % 10 * S // 10)))
            pose = Transform(np.array([k / 10, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))
            tf.publish(
                transforms_to_tf_message([TransformStamped("map", "base_link", k * S // 10, pose)], factory)
            )
            spin()
        clock.publish(Clock(clock=Time(sec=1, nanosec=0)))  # the reset: /clock back, no /tf yet
        spin()
        assert node.get_clock().now().nanoseconds == S
        obj._lanes_at_pose([], None, 3 * S, None, final=True)  # a frame's lanes at 3 s of the new run
        assert "lane_map_no_map_pose" in obj.diag.dropped, dict(obj.diag.dropped)
    finally:
        context.try_shutdown()
        close_node(node, obj)
