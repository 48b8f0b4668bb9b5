"""Only map_receiver_node: `ros2 launch gs_mapping map_receiver_node.launch.py [params_file:=…] [use_sim_time:=true] [namespace:=…]`.

Launch arguments override the params file only when given (see full.launch.py).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gs_mapping.nodes.launch_support import existing_params_file, override_params_files


def _actions(context):
    arg = {n: LaunchConfiguration(n).perform(context) for n in ("params_file", "use_sim_time", "namespace")}
    return [
        Node(
            package="gs_mapping",
            executable="map_receiver_node",
            name="map_receiver_node",
            namespace=arg["namespace"],
            parameters=[
                existing_params_file(arg["params_file"]),
                *override_params_files("map_receiver_node", {"use_sim_time": arg["use_sim_time"]}),
            ],
            output="screen",
        )
    ]


def generate_launch_description():
    share = get_package_share_directory("gs_mapping")
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "full.yaml")),
            DeclareLaunchArgument(
                "use_sim_time", default_value="", description="empty: the params file's value"
            ),
            DeclareLaunchArgument("namespace", default_value=""),
            OpaqueFunction(function=_actions),
        ]
    )
