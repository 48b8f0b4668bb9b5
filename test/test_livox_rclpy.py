"""mapper_node under rclpy with a Livox CustomMsg cloud (rclpy's own Python package; its C layer
and the rosidl classes stood in by test/rclpy_standin.py, the robot's installed packages being those
of the typestore it is given: here livox_ros_driver2's, from the driver's definition, and not
livox_interfaces').

The node subscribes raw (CDR bytes, read as one array: rclpy's own conversion makes a checked
Python object a point) and maps test_outside_lidar_deskew's wall from a CustomMsg a plain rclpy
publisher sends; a package that is not installed is one line and exit status 2.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("torch")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402
import test_outside_lidar_deskew as dk  # noqa: E402
from test_livox_mapping import LIVOX, REPO, TOPIC, livox_msg  # noqa: E402
from test_livox_messages import driver_types  # noqa: E402

OVERRIDES = f"""
/**:
  ros__parameters:
    mapper:
      device: cpu
      optim: {{iterations: 1, first_iterations: 1, refine_iterations: 0}}
    mapper_node:
      cloud_topic: {TOPIC}
      cloud_type: {LIVOX}
"""


@pytest.fixture(scope="module")
def ros():
    """rclpy on the stand-in, with livox_ros_driver2's messages installed (only that driver's)."""
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(driver_types([LIVOX]))
    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(store)
    yield rclpy, rclpy_standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _args(tmp, *extra):
    overrides = tmp / "overrides.yaml"
    overrides.write_text(OVERRIDES)
    full = REPO / "config" / "full.yaml"
    return ["node", "--ros-args", "--params-file", str(full), "--params-file", str(overrides), *extra]


def _spin_until(executor, cond, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not cond():
        executor.spin_once(timeout_sec=0.02)
    return cond()


def test_mapper_node_maps_a_custom_msg_through_rclpy(ros, tmp_path):
    rclpy, standin = ros
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import (
        CameraIntrinsics,
        RclpyFactory,
        convert_message,
        default_factory,
        intrinsics_to_camera_info,
        numpy_to_image,
        transforms_to_tf_message,
    )
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import _msg_class, close_node, create_node

    context = rclpy.Context()
    rclpy.init(args=_args(tmp_path), context=context)
    executor = SingleThreadedExecutor(context=context)
    player = rclpy.create_node("player", context=context)
    executor.add_node(player)
    node, obj = create_node(MapperNode, context)
    executor.add_node(node)
    try:
        (sub,) = [s for s in node.subscriptions if s.topic_name == TOPIC]
        assert sub.raw and sub.msg_type is _msg_class(LIVOX)  # (the driver's class, read raw)
        depths = []
        add = obj.mapper.add_frame
        obj.mapper.add_frame = lambda frame: depths.append(frame.depth.copy()) or add(frame)
        pubs = {}
        f = default_factory()
        t = obj.cfg.topics

        def send(topic, typename, msg, latched=False):
            if topic not in pubs:
                qos = QoSProfile(depth=10)
                if latched:
                    qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
                pubs[topic] = player.create_publisher(_msg_class(typename), topic, qos)
            pubs[topic].publish(convert_message(msg, typename, RclpyFactory()))
            executor.spin_once(timeout_sec=0.01)

        K = np.array(rb.K).reshape(3, 3)
        info = intrinsics_to_camera_info(
            CameraIntrinsics(dk.W, dk.H, K, frame_id="cam_optical"), f, stamp_ns=dk.T0
        )
        static = [
            TransformStamped("base_link", "cam_optical", dk.T0, Transform.from_matrix(dk.BASE_CAM)),
            TransformStamped("base_link", "lidar", dk.T0, Transform.from_matrix(dk.BASE_LIDAR)),
        ]
        send(t.tf_static, "tf2_msgs/msg/TFMessage", transforms_to_tf_message(static, f), latched=True)
        send(t.camera_info, "sensor_msgs/msg/CameraInfo", info)
        for ns in range(dk.T0 - 300_000_000, dk.T0 + 200_000_001, 4 * dk.TF_STEP):
            tfs = [
                TransformStamped("map", "odom", ns, Transform()),
                TransformStamped("odom", "base_link", ns, Transform.from_matrix(dk._base(ns))),
            ]
            send(t.tf, "tf2_msgs/msg/TFMessage", transforms_to_tf_message(tfs, f))
        # bytes no CustomMsg is made of: skipped with one warning, the node goes on
        (raw_sub,) = [s for s in standin.BUS.subscriptions if s.topic == TOPIC]
        raw_sub.push(b"\x00\x01\x00\x00garbage")
        n_log = len(standin.LOG)
        executor.spin_once(timeout_sec=0.05)
        said = [m for _, _, m in standin.LOG[n_log:] if "undecodable" in m]
        assert len(said) == 1 and TOPIC in said[0] and "\n" not in said[0], said
        send(
            t.color, "sensor_msgs/msg/Image", numpy_to_image(rb._scene(0)[0], "rgb8", dk.T0, "cam_optical", f)
        )
        send(TOPIC, LIVOX, livox_msg(dk.T0))
        assert _spin_until(executor, lambda: depths, 30)
        np.testing.assert_allclose(depths[0], dk._depth_truth(), atol=5e-3)
    finally:
        context.try_shutdown()
        close_node(node, obj)


def test_a_livox_package_that_is_not_installed_is_one_line_and_exit_2(ros, tmp_path, capsys):
    """livox_ros2_driver's livox_interfaces is not on this robot: the node refuses to start in one
    line that names the package to install, no traceback."""
    rclpy, _ = ros
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    args = _args(tmp_path, "-p", "mapper_node.cloud_type:=livox_interfaces/msg/CustomMsg")
    assert run_node(MapperNode, args, rclpy.Context()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert (
        "livox_interfaces/msg/CustomMsg" in err[0] and "install the ROS 2 package livox_interfaces" in err[0]
    )
