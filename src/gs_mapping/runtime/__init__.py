"""Runtimes that drive the node classes of ``gs_mapping.nodes``: rclpy (ROS 2 machines), rosbag
replay (anywhere) and Cyclone DDS (ROS 2 wire-compatible, no rclpy)."""

from ..lazy_api import lazy_api

_API = {
    "ReplayBus": "replay",
    "replay_bag": "replay",
    "DdsContext": "dds",
    "RclpyContext": "rclpy_runtime",
    "run_node": "rclpy_runtime",
    "ZenohContext": "zenoh_runtime",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
