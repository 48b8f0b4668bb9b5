"""The whole suite: hd_map_node + mapper_node + map_receiver_node (+ RViz).

ros2 launch gs_mapping full.launch.py [params_file:=…] [use_sim_time:=true] [device:=cuda]
                                      [namespace:=robot1] [rviz:=true]

use_sim_time and device override the params file only when given. Under namespace:=robot1 the nodes'
own topics are /robot1/<node>/…, the receiver listens to the mapper there (relative topics), and RViz
gets a copy of config/gs_mapping.rviz whose topics of our nodes carry the namespace
($XDG_RUNTIME_DIR/gs_mapping, else $ROS_HOME or ~/.ros/gs_mapping: one file per namespace). The copy
also takes the params file's frames and camera (Fixed Frame: mapper.topics.map_frame, the view's Target
Frame: hd_map_node.base_frame, the Camera display: hd_map_node.camera_topics[0]), and RViz the
mapper_node's use_sim_time when use_sim_time:= is not given.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from gs_mapping.nodes.launch_support import (
    effective_namespace,
    existing_params_file,
    launch_flag,
    override_params_files,
    rviz_config_for_namespace,
    rviz_settings,
)


def _actions(context):
    share = get_package_share_directory("gs_mapping")
    arg = {
        n: LaunchConfiguration(n).perform(context)
        for n in ("params_file", "use_sim_time", "device", "namespace", "rviz")
    }
    namespace = arg["namespace"]
    # the arguments given, as a params file after the user's (launch_support.override_key: why)
    sim = arg["use_sim_time"]
    params_file = existing_params_file(arg["params_file"])
    actions = [
        Node(
            package="gs_mapping",
            executable="hd_map_node",
            name="hd_map_node",
            namespace=namespace,
            parameters=[
                params_file,
                *override_params_files(
                    "hd_map_node", {"hd_map_node.device": arg["device"], "use_sim_time": sim}
                ),
            ],
            output="screen",
        ),
        Node(
            package="gs_mapping",
            executable="mapper_node",
            name="mapper_node",
            namespace=namespace,
            parameters=[
                params_file,
                *override_params_files("mapper_node", {"mapper.device": arg["device"], "use_sim_time": sim}),
            ],
            output="screen",
        ),
        Node(
            package="gs_mapping",
            executable="map_receiver_node",
            name="map_receiver_node",
            namespace=namespace,
            parameters=[params_file, *override_params_files("map_receiver_node", {"use_sim_time": sim})],
            output="screen",
        ),
    ]
    if launch_flag("rviz", arg["rviz"]):
        # the nodes' namespace as launch_ros gives it: namespace:= under any PushRosNamespace
        # around this file's include (a multi-robot launch file)
        ns = effective_namespace(context.launch_configurations.get("ros_namespace"), namespace)
        rviz_config = os.path.join(share, "config", "gs_mapping.rviz")
        # RViz on the frames, camera and clock the nodes use, as the params file sets them
        settings = rviz_settings(params_file, ns)
        # a copy where the namespace or those differ: one file per namespace, replaced at each
        # launch (launch_support)
        rviz_config = rviz_config_for_namespace(rviz_config, ns, settings=settings)
        if not sim.strip() and settings.use_sim_time is not None:  # (the argument wins when given)
            sim = str(settings.use_sim_time).lower()
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                arguments=["-d", rviz_config],
                parameters=override_params_files("rviz2", {"use_sim_time": sim}),
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    share = get_package_share_directory("gs_mapping")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "full.yaml"),
                description="parameter file (ROS 2 YAML, keyed /**)",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="",
                description="true when playing a bag with --clock (empty: the params file's value)",
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="auto | cpu | cuda (empty: the params file's value)"
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
            DeclareLaunchArgument("rviz", default_value="true", description="start RViz with our config"),
            OpaqueFunction(function=_actions),
        ]
    )
