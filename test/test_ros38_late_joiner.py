"""A late joiner after a bag's end, with rclpy's real Python code (Humble's, over
test/rclpy_standin.py): mapper_node maps a driving-world bag under ``use_sim_time`` (/clock at each
message's stamp, as ``ros2 bag play --clock``), a map receiver follows it from the start; then the
bag ends and /clock stops. A receiver, and an RViz-like subscriber of the map cloud, that start
after that get the latched snapshot and cloud and nothing else: no further message comes.

Before session 38 the latched snapshot was the one sent when the first receiver joined, early in
the bag: the mapper's later deltas were never in a snapshot, the snapshot timer's period never
passed on a clock that had stopped (a probe: the late receiver held 0 Gaussians of the mapper's
1,769). Now the mapper latches a fresh snapshot once ROS time stands still after deltas and it is
idle (the clock watch's tail, ``clock_stopped``): the latched snapshot is the final map before
anyone joins (a join that rmw's count shows brings a fresh one too, while the mapper's timer runs
in the tail; ``ros2 topic echo --once``, or one joining as another leaves, gets only the latched one).
"""

from __future__ import annotations

import time
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
      keyframe: {max_gap: 2}
      levels: {count: 2}
      topics:
        color: /cameras/front/image_raw
        depth: /cameras/front/depth
        camera_info: /cameras/front/camera_info
    mapper_node:
      snapshot_period_s: 1000.0
    map_receiver_node:
      min_opacity: 0.0
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

    out = tmp_path_factory.mktemp("late") / "world"
    write_bag(Drive.make(5, 8, "front", (192, 108)), out, progress=False)
    return out


def _spin(executor, seconds: float, cond=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (cond is not None and cond()):
        executor.spin_once(timeout_sec=0.02)


def _idle(standin):
    with standin.BUS.lock:
        return not any(s.queue for s in standin.BUS.subscriptions)


def _sorted(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


def test_a_receiver_started_after_the_bags_end_ends_with_the_mappers_final_map(ros, world_bag, tmp_path):
    rclpy, standin = ros
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import UInt8MultiArray

    from gs_map_share.receiver import MapStore
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import (
        RclpyFactory,
        convert_message,
        pointcloud2_to_array,
        uint8_multiarray_to_bytes,
    )
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import _msg_class, _SimClockWatch, close_node, create_node

    # (a quicker watch: checks every 0.25 s, a tail after 0.5 s of ROS time standing still)
    mp = pytest.MonkeyPatch()
    mp.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    mp.setattr(_SimClockWatch, "TAIL_S", 0.5)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(OVERRIDES)
    files = ["--params-file", str(REPO / "config" / "full.yaml"), "--params-file", str(overrides)]
    context = rclpy.Context()
    rclpy.init(args=["n", "--ros-args", *files, "-p", "use_sim_time:=true"], context=context)
    late_context = rclpy.Context()  # (a receiver started by hand afterwards, on the system clock)
    late_args = ["n", "--ros-args", *files, "-r", "__node:=late_receiver"]
    rclpy.init(args=late_args, context=late_context)
    nodes = [create_node(node_class(n), context) for n in ("mapper_node", "map_receiver_node")]
    (_, mapper), (_, early) = nodes
    late = None
    try:
        executor = SingleThreadedExecutor(context=context)
        for node, _ in nodes:
            executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        snapshots: list = []  # (what is latched: the last one)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        player.create_subscription(UInt8MultiArray, "/mapper_node/map_snapshot", snapshots.append, latched)
        pubs: dict = {}
        with BagReader(world_bag) as bag:
            types = {t.name: t.type for t in bag.topics}
            for topic, stamp_ns, msg in bag.messages():
                if topic.startswith("/ground_truth"):
                    continue
                sec, nsec = divmod(stamp_ns, 1_000_000_000)
                clock.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))
                if topic not in pubs:
                    qos = QoSProfile(depth=100)
                    if topic == "/tf_static":
                        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
                    pubs[topic] = player.create_publisher(_msg_class(types[topic]), topic, qos)
                pubs[topic].publish(convert_message(msg, types[topic], RclpyFactory()))
                _spin(executor, 60, lambda: _idle(standin))
        assert mapper.deltas >= 2, mapper.deltas
        # the bag's end: /clock stops; the nodes go on (the watch's tail runs their timers)
        _spin(executor, 2.5)
        final = mapper.mapper.gmap  # the mapper's own map, as it ends
        assert early.store.ready and early.store.seq == mapper.sender.seq
        # latched before anyone joins (a join, where rmw's count shows it, brings a fresh one too;
        # `ros2 topic echo --once`, or one joining as another leaves, gets only what is latched)
        latest = MapStore()
        latest.receive(uint8_multiarray_to_bytes(snapshots[-1]))
        assert np.array_equal(np.sort(latest.gaussian_map().ids), np.sort(final.ids)), (
            len(latest.gaussian_map()),
            len(final),
        )

        late_node, late = create_node(node_class("map_receiver_node"), late_context)
        late_executor = SingleThreadedExecutor(context=late_context)
        late_executor.add_node(late_node)
        viewer = rclpy.create_node("rviz", context=late_context)  # the early receiver's cloud
        late_executor.add_node(viewer)
        clouds: list = []
        viewer.create_subscription(PointCloud2, "/map_receiver_node/map_cloud", clouds.append, latched)
        for _ in range(150):  # (both executors: the mapper's node still runs meanwhile)
            executor.spin_once(timeout_sec=0.01)
            late_executor.spin_once(timeout_sec=0.01)
        assert late.store.ready, late.store.stats
        got = late.store.gaussian_map()
        # point for point the mapper's map: every id, each position within the codec's quantisation
        assert len(got) == len(final), (len(got), len(final), late.store.seq, mapper.sender.seq)
        order_f, order_g = np.argsort(final.ids), np.argsort(got.ids)
        np.testing.assert_array_equal(got.ids[order_g], final.ids[order_f])
        err = np.abs(got.means[order_g] - final.means[order_f]).max()
        assert err < 0.05, err
        # and exactly the map the receiver that followed every delta rebuilt
        np.testing.assert_array_equal(
            _sorted(got.means.astype(np.float64)),
            _sorted(early.store.gaussian_map().means.astype(np.float64)),
        )
        # the RViz-like late subscriber's cloud: the final map too (the early receiver's tail)
        assert clouds, "no latched cloud"
        cloud = pointcloud2_to_array(clouds[-1])
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)
        np.testing.assert_array_equal(_sorted(xyz), _sorted(got.means.astype(np.float32)))
        viewer.destroy_node()
        player.destroy_node()
    finally:
        mp.undo()
        context.try_shutdown()
        late_context.try_shutdown()
        for node, obj in nodes:
            close_node(node, obj)
        if late is not None:
            close_node(late_node, late)
