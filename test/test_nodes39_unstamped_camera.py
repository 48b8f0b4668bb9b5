"""A camera driver that does not stamp (every header stamp zero), live: mapper_node under the
replay runtime (``gs-mapping replay``, whose clock is the bag's log time, as /clock is under
use_sim_time) on the real 7-Scenes kitchen bag with its /camera stamps zeroed. Each frame is timed
by its arrival on the node's clock, paired and posed by TF at it: the map is the original stamped
bag's (its log times are its stamps), frame for frame. Before session 39 every frame was dropped
(``frames_no_pose``: TF looked up at time 0) and the node said nothing. A zero stamp among stamped
ones (a glitch, a driver's clock not up yet) is skipped, counted and said once.

Expected values: the original bag replayed through the same node (its frames' stamps and TF poses,
its Gaussian count), not the node's own counters."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("torch")

from conftest import FAST_NODES_YAML, SHARED_DATA, rewrite_camera_messages, zero_stamp  # noqa: E402

SOURCE = SHARED_DATA / "7scenes_kitchen_rgbd"
COLOR = "/camera/color/image_raw"
DEPTH = "/camera/depth/image_rect_raw"
INFO = "/camera/color/camera_info"


def _rewrite(out, zero):
    """The real bag with ``zero(topic, i)`` camera messages' header stamps set to 0 (the i-th of its
    topic); everything else, log times included, as recorded."""
    return rewrite_camera_messages(SOURCE, out, lambda topic, i, m: zero(topic, i) and zero_stamp(m))


def _replay(bag, out, config):
    """mapper_node replayed over ``bag``: (the node, [(stamp, T_map_cam) of each frame it mapped])."""
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import replay_bag

    frames = []
    init = MapperNode.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        add = self.mapper.add_frame

        def add_frame(frame):
            frames.append((frame.stamp_ns, frame.camera.T_map_cam.copy()))
            return add(frame)

        self.mapper.add_frame = add_frame

    MapperNode.__init__ = spy
    try:
        _, (node,) = replay_bag(bag, out, [MapperNode], [MapperNode.load_config(config)])
    finally:
        MapperNode.__init__ = init
    return node, frames


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text(FAST_NODES_YAML)
    return path


@pytest.fixture(scope="module")
def original(shared_data, config, tmp_path_factory):
    return _replay(SOURCE, tmp_path_factory.mktemp("orig") / "out", config)


def _same_poses(got, want):
    for (_, a, *_), (_, b, *_) in zip(got, want, strict=True):
        assert np.linalg.norm(a[:3, 3] - b[:3, 3]) < 1e-4
        cos = np.clip((np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2, -1, 1)
        assert np.degrees(np.arccos(cos)) < 0.01


def test_a_camera_that_does_not_stamp_maps_as_the_stamped_one(original, config, tmp_path, caplog):
    from gs_mapping.say_once import forget

    node0, want = original
    bag = _rewrite(tmp_path / "unstamped", lambda topic, i: True)
    forget()
    caplog.set_level(logging.WARNING)
    node, got = _replay(bag, tmp_path / "out", config)
    assert len(want) == 50
    assert len(got) == 50, (dict(node.diag.dropped), node.diag.last_error)
    assert [f[0] for f in got] == [f[0] for f in want]  # the same frames, at the same times
    _same_poses(got, want)
    n0, n = len(node0.mapper.gmap), len(node.mapper.gmap)
    assert n0 > 1000 and abs(n - n0) <= 0.02 * n0, (n, n0)
    assert node.mapper.stats.keyframes == node0.mapper.stats.keyframes
    assert not node.diag.dropped, dict(node.diag.dropped)
    said = [r.getMessage() for r in caplog.records if "header stamp is zero" in r.getMessage()]
    assert sorted(x.split(":")[0] for x in said) == sorted([COLOR, DEPTH, INFO]), said  # once a topic
    assert all("arrival on the node's clock" in x for x in said)


def test_zero_stamps_among_stamped_ones_are_skipped_and_counted(original, config, tmp_path, caplog):
    """Colour images 10-12 unstamped (a glitch of a driver that stamps): those 3 frames skipped,
    counted in /diagnostics and said once; every other frame is the original's."""
    from gs_mapping.say_once import forget

    _, want = original
    bag = _rewrite(tmp_path / "glitch", lambda topic, i: topic == COLOR and 10 <= i <= 12)
    forget()
    caplog.set_level(logging.WARNING)
    node, got = _replay(bag, tmp_path / "out", config)
    keep = want[:10] + want[13:]
    assert [f[0] for f in got] == [f[0] for f in keep]
    _same_poses(got, keep)
    assert node.diag.dropped["messages_unstamped"] == 3
    lines = [r.getMessage() for r in caplog.records]
    said = [x for x in lines if "zero header stamp" in x]
    assert said == [f"{COLOR}: a message with a zero header stamp among stamped ones: skipped (counted: messages_unstamped)"]  # fmt: skip
    assert not [x for x in lines if "header stamp is zero" in x]


def _hd_replay(bag, out):
    """hd_map_node replayed over ``bag`` (the kitchen camera, lanes fused in ``map`` by TF's pose
    at each frame's time): (its lanes_json documents, [(lane count, state CRC)] of each lane
    container, the node)."""
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import string_message_to_json
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import replay_bag

    cfg = HDMapNode.load_config(None)
    node_cfg = cfg["hd_map_node"]
    node_cfg.device, node_cfg.score_threshold, node_cfg.camera_topics = "cpu", 0.0, [COLOR]
    _, (node,) = replay_bag(bag, out, [HDMapNode], [cfg])
    with BagReader(out) as b:
        docs = [string_message_to_json(m) for _, _, m in b.messages(["/hd_map_node/lanes_json"])]
        state, lanes = None, []
        for _, _, m in b.messages(["/hd_map_node/lanes_delta"]):
            header, state = decode_lanes(bytes(m.data), state)  # (the reference decoder)
            lanes.append((len(state.lanes), header.state_crc))
    return docs, lanes, node


def test_hd_map_node_of_a_camera_that_does_not_stamp_predicts_as_the_stamped_one(shared_data, tmp_path):
    """The same frames predicted (its lanes_json, stamps included, equal) and the same lane map
    fused in ``map`` (each lane container's decoded state). Before session 39: frames stamped 0,
    every other one dropped as 'not after the previous', 'time went back' said at each, and the
    lane map never made (no map pose at 0)."""
    want = _hd_replay(SOURCE, tmp_path / "orig")
    got = _hd_replay(_rewrite(tmp_path / "unstamped", lambda topic, i: True), tmp_path / "out")
    assert len(want[0]) == 17 and sum(len(d["vectors"]) for d in want[0]) > 100 and len(want[1]) > 10
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert not got[2].diag.dropped and got[2].diag.skipped == want[2].diag.skipped


def test_under_rclpy_with_a_bags_clock_it_maps_as_the_stamped_one(original, config, tmp_path):
    """The same under rclpy's real Python code (Humble's, over test/rclpy_standin.py) with
    use_sim_time: the bag played as ``ros2 bag play --clock`` does, /clock at each message's log
    time, the messages rclpy's own classes (the restamped copy passes rosidl's setter checks).
    Before session 39: 0 frames, 50 dropped as frames_no_pose, no line about the stamps."""
    import rclpy_standin

    from gs_mapping.bag import BagReader
    from gs_mapping.messages import RclpyFactory, convert_message, deserialize_cdr
    from gs_mapping.nodes.registry import node_class

    node0, want = original
    bag = _rewrite(tmp_path / "unstamped", lambda topic, i: True)
    frames = []
    with rclpy_standin.humble_for_tests() as rclpy:
        from builtin_interfaces.msg import Time
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from rosgraph_msgs.msg import Clock

        from gs_mapping.runtime.rclpy_runtime import close_node, create_node

        context = rclpy.Context()
        args = ["mapper_node", "--ros-args", "-p", "use_sim_time:=true", "--params-file", str(config)]
        rclpy.init(args=args, context=context)
        node, obj = create_node(node_class("mapper_node"), context)
        add = obj.mapper.add_frame
        obj.mapper.add_frame = lambda f: frames.append((f.stamp_ns, f.camera.T_map_cam.copy())) or add(f)
        start = len(rclpy_standin.LOG)
        try:
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            player = rclpy.create_node("player", context=context)
            executor.add_node(player)
            clock = player.create_publisher(Clock, "/clock", 10)
            pubs: dict = {}
            with BagReader(bag) as b:
                types = {t.name: t.type for t in b.topics}
                for topic, logged, data in b.raw_messages(list(types)):
                    msg = convert_message(deserialize_cdr(data, types[topic]), types[topic], RclpyFactory())
                    if topic not in pubs:
                        latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
                        pubs[topic] = player.create_publisher(
                            type(msg), topic, latched if "static" in topic else 10
                        )
                    clock.publish(Clock(clock=Time(sec=logged // 10**9, nanosec=logged % 10**9)))
                    for _ in range(3):
                        executor.spin_once(timeout_sec=0.0)
                    pubs[topic].publish(msg)
                    for _ in range(3):
                        executor.spin_once(timeout_sec=0.0)
            player.destroy_node()
            gaussians, dropped = len(obj.mapper.gmap), dict(obj.diag.dropped)
        finally:
            context.try_shutdown()
            close_node(node, obj)
        lines = [m for _, who, m in rclpy_standin.LOG[start:] if who == "mapper_node"]
    assert [f[0] for f in frames] == [f[0] for f in want]
    _same_poses(frames, want)
    n0 = len(node0.mapper.gmap)
    assert abs(gaussians - n0) <= 0.02 * n0 and not dropped, (gaussians, n0, dropped)
    assert len([x for x in lines if "header stamp is zero" in x]) == 3, lines
