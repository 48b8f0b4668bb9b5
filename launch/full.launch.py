"""The whole suite: hd_map_node + mapper_node + map_receiver_node (+ RViz).

ros2 launch gs_mapping full.launch.py [params_file:=…] [use_sim_time:=true] [device:=cuda]
                                      [namespace:=robot1] [rviz:=true]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("gs_mapping")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    device = LaunchConfiguration("device")
    namespace = LaunchConfiguration("namespace")
    common = [params_file, {"use_sim_time": use_sim_time}]
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "full.yaml"),
                description="parameter file (ROS 2 YAML, keyed /**)",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="use /clock (true when playing a bag with --clock)",
            ),
            DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
            DeclareLaunchArgument("rviz", default_value="true", description="start RViz with our config"),
            Node(
                package="gs_mapping",
                executable="hd_map_node",
                name="hd_map_node",
                namespace=namespace,
                parameters=common + [{"hd_map_node.device": device}],
                output="screen",
            ),
            Node(
                package="gs_mapping",
                executable="mapper_node",
                name="mapper_node",
                namespace=namespace,
                parameters=common + [{"mapper.device": device}],
                output="screen",
            ),
            Node(
                package="gs_mapping",
                executable="map_receiver_node",
                name="map_receiver_node",
                namespace=namespace,
                parameters=common,
                output="screen",
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                arguments=["-d", os.path.join(share, "config", "gs_mapping.rviz")],
                parameters=[{"use_sim_time": use_sim_time}],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
