"""The clock watch's tail says when a node is idle, with rclpy's real Python code (Humble's, over
test/rclpy_standin.py). mapper_node latches a fresh snapshot in the tail of a bag (ROS time standing
still) once it sent deltas since its last one (test_ros38_late_joiner); a whole-map snapshot costs
seconds on a large map, so it waits until the node is idle (``clock_stopped()`` is true only where
no message came since the check before) rather than re-encoding at every check while the node
still works through queued frames, and a timer that returns true (work left) is called again
without a message, so the idle call does come after the last one.

A timer here plays the mapper's part: messages keep coming for 1.5 s after /clock stopped."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


def test_clock_stopped_waits_for_the_node_to_be_idle_and_the_timer_is_called_again(ros, monkeypatch):
    rclpy, _ = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.rclpy_runtime import RclpyContext, _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "TAIL_S", 0.5)
    context = rclpy.Context()
    rclpy.init(args=["n", "--ros-args", "-p", "use_sim_time:=true"], context=context)
    node = rclpy.create_node("idle_probe", context=context)
    ctx = RclpyContext(node)
    t0 = time.monotonic()
    calls: list[tuple[float, bool]] = []
    state = {"pending": True}

    def timer() -> bool:
        stopped = ctx.clock_stopped()
        calls.append((time.monotonic() - t0, stopped))
        if stopped:  # (the mapper's snapshot: once, when idle)
            state["pending"] = False
        return state["pending"]

    ctx.create_subscription("/work", "std_msgs/msg/String", QoS(), lambda m: None)
    ctx.create_timer(0.25, timer)  # (one check's period, as the mapper's 1 s timer to the 1 s check)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        work = player.create_publisher(String, "/work", 10)
        tick = 0
        while (t := time.monotonic() - t0) < 5.0:
            if t >= tick * 0.1:
                if t < 1.0:
                    sec = 100 + tick * 0.1
                    clock.publish(Clock(clock=Time(sec=int(sec), nanosec=int(round(sec % 1 * 1e9)))))
                if t < 2.5:  # frames still worked through after the bag's last /clock
                    work.publish(String(data="frame"))
                tick += 1
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        node.destroy_node()
    tail = [c for c in calls if c[0] > 1.4]
    assert [c for c in tail if c[0] < 2.5], calls  # the tail ran it while messages came...
    assert not [c for c in tail if c[0] < 2.5 and c[1]], calls  # ...never saying idle then
    idle = [c for c in calls if c[1]]
    assert len(idle) == 1 and 2.5 < idle[0][0] < 3.6, calls  # once, after the last message
    assert calls[-1][1], calls  # (and nothing after it: no work left, no message)
