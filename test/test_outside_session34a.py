"""Outside review, session 34 (user34a): the ROS 2 nodes as a ROS 2 engineer deploys them.

- ``qos_overrides``: ROS 2's way (the "About QoS settings" / QoS overrides design) to make a node's
  subscription match a driver's publisher, given in a params file or with ``-p``. rclpy applies
  them only to entities created with ``qos_overriding_options``; without those it keeps the values
  without a word and the node ran with its own QoS (a best-effort publisher never reached the
  reliable ``map_delta`` subscription, whatever the file said). A value rclpy cannot apply is one
  line and exit status 2, as every other bad parameter.

rclpy is Humble's pure-Python package (``rclpy-intellisense``) with test/rclpy_standin.py under it,
as in test_rclpy_runtime.py: the QoS a subscription hands to rcl, and whether a publisher's
message reaches it, are the stand-in's bus matching reliability as rmw does. What a real rmw logs
on an incompatible pair (rclpy's default ``incompatible_qos`` event callback) needs a ROS 2 machine.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ros():
    """rclpy's real Python package over test/rclpy_standin.py's C layer (skipped where absent)."""
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


DELTA = "/mapper_node/map_delta"


def _map_through_best_effort_publisher(rclpy, *ros_args):
    """A map_receiver_node started with ``ros_args``, a best-effort publisher (a bridge, a relay
    with sensor QoS) sending one map on its delta topic: (Gaussians the node holds, its delta
    subscription's QoS as handed to rcl, the map sent)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import UInt8MultiArray
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    context = rclpy.Context()
    rclpy.init(args=["map_receiver_node", "--ros-args", *ros_args], context=context)
    node, obj = create_node(MapReceiverNode, context)
    probe = rclpy.create_node("bridge", context=context)
    try:
        (sub,) = [s for s in node.subscriptions if s.topic_name == DELTA]
        pub = probe.create_publisher(UInt8MultiArray, DELTA, qos_profile_sensor_data)
        data, _ = encode_map(synthetic_map(200, 0, seed=3))
        pub.publish(bytes_to_uint8_multiarray(data, RclpyFactory()))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        end = time.monotonic() + 5
        while time.monotonic() < end and obj.store.state is None:
            executor.spin_once(timeout_sec=0.05)
        held = 0 if obj.store.state is None else len(obj.store.gaussian_map())
        return held, sub.qos_profile, decode_map(data)
    finally:
        probe.destroy_node()
        context.try_shutdown()
        close_node(node, obj)


def test_qos_overrides_in_a_params_file_make_the_subscription_match_a_best_effort_publisher(ros, tmp_path):
    rclpy, _ = ros
    from rclpy.qos import ReliabilityPolicy

    # as the node comes: reliable; a best-effort publisher is incompatible and nothing arrives
    held, qos, _ = _map_through_best_effort_publisher(rclpy)
    assert qos.reliability == ReliabilityPolicy.RELIABLE and held == 0
    # the params file a ROS 2 user writes for it (rcl's nesting: keys joined by '.')
    f = tmp_path / "qos.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    qos_overrides:\n"
        f"      {DELTA}:\n        subscription: {{reliability: best_effort, depth: 7}}\n"
    )
    held, qos, sent = _map_through_best_effort_publisher(rclpy, "--params-file", str(f))
    assert qos.reliability == ReliabilityPolicy.BEST_EFFORT and qos.depth == 7
    assert held == len(sent) == 200


def test_qos_overrides_of_a_publisher_reach_what_rcl_is_given(ros):
    """``~/map_cloud`` is latched (transient local) for RViz; a tool that wants it volatile says so."""
    rclpy, _ = ros
    from rclpy.qos import DurabilityPolicy

    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    context = rclpy.Context()
    name = "qos_overrides./map_receiver_node/map_cloud.publisher.durability"
    rclpy.init(args=["r", "--ros-args", "-p", f"{name}:=volatile"], context=context)
    node, obj = create_node(MapReceiverNode, context)
    try:
        (pub,) = [p for p in node.publishers if p.topic_name == "/map_receiver_node/map_cloud"]
        assert pub.qos_profile.durability == DurabilityPolicy.VOLATILE
        # and `ros2 param get` shows what it runs with (read-only, as rclpy declares it)
        assert node.get_parameter(name).value == "volatile"
    finally:
        context.try_shutdown()
        close_node(node, obj)


@pytest.mark.parametrize(
    "value, words",
    [
        ("reliability:=sometimes", "sometimes"),  # no such policy value
        ("depth:=0", "depth 0"),  # keep-last of nothing
        ("depth:=-3", "depth -3"),  # rcl's depth is a size_t
        ("depth:=ten", "ten"),  # rclpy's type check (the override's type is INTEGER)
    ],
)
def test_a_qos_override_rclpy_cannot_apply_is_one_line_and_exit_2(ros, capsys, value, words):
    rclpy, _ = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    arg, context, result = f"qos_overrides.{DELTA}.subscription.{value}", rclpy.Context(), []
    # (in a thread: a node that took the value anyway would spin until its context is shut down)
    t = threading.Thread(
        target=lambda: result.append(run_node(MapReceiverNode, ["n", "--ros-args", "-p", arg], context))
    )
    t.start()
    t.join(30)
    if t.is_alive():
        context.try_shutdown()
        t.join(30)
    assert result == [2], "the node started with the override it could not apply"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{DELTA}.subscription.{value.split(':')[0]}" in err[0] and words in err[0], err


def test_the_saved_map_of_a_best_effort_fed_receiver_is_the_map_sent(ros, tmp_path):
    """What arrived through the overridden subscription is the map, not a count: the node's PLY
    against the independently decoded snapshot."""
    rclpy, _ = ros
    f = tmp_path / "qos.yaml"
    f.write_text(
        f"/**:\n  ros__parameters:\n    qos_overrides.{DELTA}.subscription.reliability: best_effort\n"
        f"    map_receiver_node: {{save_path: {tmp_path / 'rx.ply'}}}\n"
    )
    held, _, sent = _map_through_best_effort_publisher(rclpy, "--params-file", str(f))
    from gs_mapping.ply import load_ply

    saved = load_ply(tmp_path / "rx.ply")
    assert held == len(saved) == len(sent)
    order = lambda m: np.lexsort(np.asarray(m.means).T)  # noqa: E731 - the same Gaussians, any order
    np.testing.assert_allclose(
        np.asarray(saved.means)[order(saved)], np.asarray(sent.means)[order(sent)], atol=1e-5
    )


# ------------------------------------------------------------------------------------------------
# save_path naming a folder: refused where it is given, not found out at shutdown


@pytest.mark.parametrize("node_name", ["map_receiver_node", "mapper_node"])
def test_ros2_param_set_of_a_folder_as_save_path_is_refused_with_a_reason(ros, tmp_path, node_name):
    """``ros2 param set /mapper_node mapper_node.save_path /data/maps`` (the folder, not the file)
    was accepted; at shutdown the save failed and the map went to the temp directory. It is refused
    with the reason, and the node keeps (in rclpy and in what it uses) the path it had."""
    rclpy, _ = ros
    if node_name == "mapper_node":  # (its mapper is torch's; Humble's venv has none)
        pytest.importorskip("torch")
    from rclpy.parameter import Parameter

    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    good = tmp_path / "map.ply"
    name = f"{node_name}.save_path"
    context = rclpy.Context()
    args = ["n", "--ros-args", "-p", f"{name}:={good}", "-p", "mapper.device:=cpu"]
    rclpy.init(args=args, context=context)
    node, obj = create_node(node_class(node_name), context)
    try:
        (res,) = node.set_parameters([Parameter(name, value=str(tmp_path))])
        assert not res.successful and "directory" in res.reason and name in res.reason, res
        assert node.get_parameter(name).value == str(good) == obj.config[node_name].save_path
        (res,) = node.set_parameters([Parameter(name, value=str(tmp_path / "other.ply"))])
        assert res.successful and obj.config[node_name].save_path == str(tmp_path / "other.ply")
    finally:
        context.try_shutdown()
        close_node(node, obj)


def test_a_folder_as_save_path_at_start_is_one_line_and_exit_2(ros, tmp_path, capsys):
    rclpy, _ = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    arg, context, result = f"map_receiver_node.save_path:={tmp_path}", rclpy.Context(), []
    t = threading.Thread(
        target=lambda: result.append(run_node(MapReceiverNode, ["n", "--ros-args", "-p", arg], context))
    )
    t.start()
    t.join(30)
    if t.is_alive():
        context.try_shutdown()
        t.join(30)
    assert result == [2], "the node started with a folder as its save path"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "save_path" in err[0] and "directory" in err[0], err


def test_a_folder_really_cannot_take_the_final_save(tmp_path):
    """Why refusing is right: the real final save to a folder fails and goes to the temp directory
    (the map_saving path the node runs at shutdown), leaving the folder as it was."""
    import logging

    from synthetic_maps import synthetic_map

    from gs_mapping.nodes.map_saving import final_save

    saved = final_save(synthetic_map(50, 0, seed=1), str(tmp_path), logging.getLogger("t"), "n")
    try:
        assert saved is not None and saved != str(tmp_path) and list(tmp_path.iterdir()) == []
    finally:
        if saved:
            __import__("os").remove(saved)
