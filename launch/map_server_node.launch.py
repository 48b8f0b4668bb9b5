"""The fleet map server: `ros2 launch gs_mapping map_server_node.launch.py [params_file:=…] [use_sim_time:=true] [namespace:=…]`."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("gs_mapping")
    params = [LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}]
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "full.yaml")),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            DeclareLaunchArgument("namespace", default_value=""),
            Node(
                package="gs_mapping",
                executable="map_server_node",
                name="map_server_node",
                namespace=LaunchConfiguration("namespace"),
                parameters=params,
                output="screen",
            ),
        ]
    )
