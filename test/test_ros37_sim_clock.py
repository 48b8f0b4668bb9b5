"""use_sim_time without a moving /clock, under rclpy's real Python code (Humble's, over
test/rclpy_standin.py): a bag played without ``--clock`` while the nodes run with
``use_sim_time:=true`` (the launch files' argument, the README's demo) leaves ROS time at 0. rclpy's
timers run on the node's ROS clock, so every timer of our nodes waits for /clock: no /diagnostics,
no "waiting for" line, no map cloud from the receiver, while the subscriptions map and apply the
messages. Before session 37 the nodes said nothing at all (mapper_node and map_receiver_node mapped
a whole drive that way: 8 keyframes, the map applied, 0 clouds, 0 log lines). The rclpy runtime now
watches ROS time on a steady clock and says it in one line.
"""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


def _receiver(rclpy, *ros_args):
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import create_node

    context = rclpy.Context()
    rclpy.init(args=["map_receiver_node", "--ros-args", *ros_args], context=context)
    node, obj = create_node(MapReceiverNode, context)
    return context, node, obj


def _run(ros, ros_args, seconds, clock_at=None, messages=True):
    """A receiver with ``ros_args`` spun for ``seconds`` of wall time, a container on its delta topic
    every 0.1 s (``messages``) and /clock at ``clock_at(t)`` seconds (None: no /clock then). Returns
    the receiver's log lines about the clock."""
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import UInt8MultiArray

    context, node, obj = _receiver(rclpy, *ros_args)
    start = len(standin.LOG)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        deltas = player.create_publisher(UInt8MultiArray, "/mapper_node/map_delta", 10)
        t0 = time.monotonic()
        next_send = t0
        while (t := time.monotonic()) - t0 < seconds:
            if t >= next_send:
                next_send += 0.1
                if messages:
                    deltas.publish(UInt8MultiArray(data=list(b"not a container")))
                sec = clock_at(t - t0) if clock_at else None
                if sec is not None:
                    clock.publish(Clock(clock=Time(sec=int(sec), nanosec=int(sec % 1 * 1e9))))
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        from gs_mapping.runtime.rclpy_runtime import close_node

        close_node(node, obj)
    return [
        (sev, msg)
        for sev, name, msg in standin.LOG[start:]
        if name == "map_receiver_node" and "/clock" in msg
    ]


@pytest.fixture
def quick(monkeypatch):
    """The watch's check every 0.25 s and a stall of 1.5 s (the shipped 1 s / 5 s have a test of
    their own): the cases below each spin about 3 s instead of 7."""
    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "STALL_S", 1.5)


def test_a_bag_played_without_clock_is_said_once_in_one_line(ros):
    """The shipped timing: within 5 s of steady time (checked every 1 s), one warning naming
    use_sim_time and --clock; not repeated while the stall goes on."""
    lines = _run(ros, ["-p", "use_sim_time:=true"], 8.0)
    assert len(lines) == 1, lines
    sev, msg = lines[0]
    assert sev == 30 and "no /clock has come" in msg and "--clock" in msg and "use_sim_time" in msg, msg
    assert "\n" not in msg


def test_a_clock_that_stops_while_messages_go_on_is_said_with_its_time(ros, quick):
    lines = _run(ros, ["-p", "use_sim_time:=true"], 3.5, clock_at=lambda t: 42.25 if t < 0.5 else None)
    assert len(lines) == 1 and "/clock stopped at 42.250 s" in lines[0][1], lines


@pytest.mark.parametrize(
    "case, ros_args, clock_at, messages",
    [
        ("clock moving", ["-p", "use_sim_time:=true"], lambda t: 100 + t, True),
        # a /clock at 1 Hz (ros2 bag play --clock 1): ROS time stands 1 s at a time, under the stall
        ("slow clock", ["-p", "use_sim_time:=true"], lambda t: 100 + int(t), True),
        ("system time", [], None, True),  # (use_sim_time false: ROS time is the system clock)
        # the nodes started before the bag: nothing came yet, nothing to say
        ("nothing came", ["-p", "use_sim_time:=true"], None, False),
    ],
)
def test_nothing_is_said_where_nothing_is_wrong(ros, quick, case, ros_args, clock_at, messages):
    assert _run(ros, ros_args, 3.0, clock_at=clock_at, messages=messages) == [], case
