"""Runtimes that drive the node classes of ``gs_mapping.nodes``: rclpy (ROS 2 machines), rosbag
replay (anywhere) and Cyclone DDS (ROS 2 wire-compatible, no rclpy)."""
