"""The mapper's "call again" after a bag's end, with rclpy's real Python code (Humble's, over
test/rclpy_standin.py) and the real mapper_node: frames taken in the second before the clock watch's
check (the node not idle then) leave deltas in no snapshot; the snapshot timer says so by returning
true, and the watch calls it again at its next check without a message, when the node is idle, so
the latched snapshot is the mapper's final map.

ROS time: the world bag's /clock, played at each message's stamp up to its last two colour frames;
those come after /clock has stopped (a bag's tail, the node working through what it had queued).
Steady time: the clock watch's own (its rclpy steady timer is cancelled and its checks are made
here, on a stand-in ``time.monotonic``), so which check sees which input is fixed, not left to the
load of the machine; every other line run is the real one.

Expected value: the mapper's own final map (every id), read back from the last latched
/map_snapshot by the receiver's decoder (gs_map_share's MapStore)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # (mapper_node)

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      max_gaussians: 20000
      seeding: {stride: 4}
      optim: {iterations: 2, first_iterations: 4, refine_iterations: 0}
      keyframe: {max_gap: 1}
      levels: {count: 2}
      topics:
        color: /cameras/front/image_raw
        depth: /cameras/front/depth
        camera_info: /cameras/front/camera_info
    mapper_node:
      snapshot_period_s: 1000.0
"""


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


@pytest.fixture(scope="module")
def world_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("again") / "world"
    write_bag(Drive.make(5, 8, "front", (192, 108)), out, progress=False)
    return out


def _idle(standin):
    with standin.BUS.lock:
        return not any(s.queue for s in standin.BUS.subscriptions)


def _spin(executor, standin, rounds: int = 400) -> None:
    for _ in range(rounds):
        executor.spin_once(timeout_sec=0.005)
        if _idle(standin):
            break
    for _ in range(5):  # (what the last callback published)
        executor.spin_once(timeout_sec=0.005)


def test_frames_just_before_a_check_still_end_in_the_latched_snapshot(ros, world_bag, tmp_path):
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import UInt8MultiArray

    from gs_map_share.receiver import MapStore
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import RclpyFactory, convert_message, uint8_multiarray_to_bytes
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime import rclpy_runtime
    from gs_mapping.runtime.rclpy_runtime import _msg_class, close_node, create_node

    steady = [1000.0]
    mp = pytest.MonkeyPatch()
    mp.setattr(rclpy_runtime, "time", types.SimpleNamespace(monotonic=lambda: steady[0]))
    calls: list[tuple[float, bool, object]] = []  # (steady, clock_stopped(), returned)
    real_timer = MapperNode.on_snapshot_timer

    def spy(self):
        stopped = self.ctx.clock_stopped()
        got = real_timer(self)
        calls.append((steady[0], stopped, got))
        return got

    mp.setattr(MapperNode, "on_snapshot_timer", spy)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(OVERRIDES)
    files = ["--params-file", str(REPO / "config" / "full.yaml"), "--params-file", str(overrides)]
    context = rclpy.Context()
    rclpy.init(args=["n", "--ros-args", *files, "-p", "use_sim_time:=true"], context=context)
    node, mapper = create_node(node_class("mapper_node"), context)
    watch = mapper.ctx.clock_watch
    watch.timer.cancel()  # (its checks are made below, on the stand-in steady time)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        snapshots: list = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        player.create_subscription(UInt8MultiArray, "/mapper_node/map_snapshot", snapshots.append, latched)
        pubs: dict = {}
        with BagReader(world_bag) as bag:
            types_ = {t.name: t.type for t in bag.topics}
            played = [(t, s, m) for t, s, m in bag.messages() if not t.startswith("/ground_truth")]
        colour = [i for i, (t, _, _) in enumerate(played) if t == "/cameras/front/image_raw"]
        split = colour[-2]  # the last two colour frames (and what follows them) after /clock stops

        def publish(topic, stamp_ns, msg, with_clock):
            if with_clock:
                sec, nsec = divmod(stamp_ns, 1_000_000_000)
                clock.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))
            if topic not in pubs:
                qos = QoSProfile(depth=100)
                if topic == "/tf_static":
                    qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
                pubs[topic] = player.create_publisher(_msg_class(types_[topic]), topic, qos)
            pubs[topic].publish(convert_message(msg, types_[topic], RclpyFactory()))
            _spin(executor, standin)

        for topic, stamp_ns, msg in played[:split]:
            publish(topic, stamp_ns, msg, True)
            steady[0] += 0.1
            watch.check()
        steady[0] += 0.25
        watch.check()  # /clock has stood still since the check before: the tail's wait starts
        deltas_before = mapper.deltas
        for topic, stamp_ns, msg in played[split:]:  # the node works through its last frames
            publish(topic, stamp_ns, msg, False)
        assert mapper.deltas > deltas_before, "the last frames made no delta: nothing to test"
        n_calls = len(calls)
        steady[0] += watch.TAIL_S + 1.0
        watch.check()  # the tail's first check: inputs came since the one before (not idle)
        _spin(executor, standin)
        assert [c[1] for c in calls[n_calls:]] == [False], calls  # called, not idle: no snapshot
        steady[0] += watch.PERIOD_S
        watch.check()  # idle now: no message since (the timer is called only if it asked to be)
        _spin(executor, standin)
        steady[0] += watch.PERIOD_S
        watch.check()
        _spin(executor, standin)

        final = mapper.mapper.gmap  # the mapper's own map, as it ends
        store = MapStore()
        store.receive(uint8_multiarray_to_bytes(snapshots[-1]))  # what a joiner from now on gets
        got = store.gaussian_map()
        assert np.array_equal(np.sort(got.ids), np.sort(final.ids)), (
            len(got),
            len(final),
            calls[n_calls:],
        )
        order_f, order_g = np.argsort(final.ids), np.argsort(got.ids)
        assert np.abs(got.means[order_g] - final.means[order_f]).max() < 0.05
        assert [c[1] for c in calls[n_calls:]] == [False, True], calls  # once, when idle
        player.destroy_node()
    finally:
        mp.undo()
        context.try_shutdown()
        close_node(node, mapper)
