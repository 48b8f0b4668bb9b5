"""Outside review (ff1): hd_map_node and map_receiver_node as a user runs them and reads their
/diagnostics, compared with ros/diagnostics' own conventions (diagnostic_updater's FrequencyStatus:
no event in its window is ERROR "No events recorded.", never OK) and with the project's stated rule
that a node waiting for an input it cannot work without reports WARN with ``waiting_for``.

Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import pytest

WARN = 1


def _status(diag_array):
    """(level as int, message, {key: value}) of the node's one DiagnosticStatus."""
    (s,) = diag_array.status
    level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
    return level, s.message, {kv.key: kv.value for kv in s.values}


def _receiver(**over):
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    diags: list = []
    bus.subscribe("/diagnostics", diags.append)
    cfg = MapReceiverNode.load_config(None)
    for k, v in over.items():
        setattr(cfg["map_receiver_node"], k, v)
    node = MapReceiverNode(bus.context("map_receiver_node"), cfg)
    return bus, node, diags


def test_a_receiver_that_never_got_a_map_is_not_reported_ok():
    """A receiver started with a delta / snapshot topic that nothing publishes on (a namespace left
    out, a typo) gets no container for 5 s. diagnostic_updater's FrequencyStatus reports such a
    topic ERROR "No events recorded.", and hd_map_node / mapper_node report WARN with
    ``waiting_for`` naming the topics; rqt_robot_monitor must not show this receiver OK. The
    status names both topics it listens to, so a user sees which name to check."""
    bus, node, diags = _receiver()
    for k in range(1, 6):
        bus.advance(k * 10**9)
    assert len(diags) >= 4
    for d in diags:
        level, _, values = _status(d)
        assert level >= WARN, [_status(x)[:2] for x in diags]
        assert "/mapper_node/map_snapshot" in values.get("waiting_for", "")
        assert "/mapper_node/map_delta" in values.get("waiting_for", "")


def test_two_camera_topic_names_that_resolve_to_one_topic_are_refused_in_one_line():
    """rcl's name expansion (rcl_expand_topic_name: a relative name is prefixed with the node's
    namespace) makes ``front/image_raw`` in namespace /robot1 the topic /robot1/front/image_raw.
    Listing it beside ``/robot1/front/image_raw`` is one camera given twice: every image would
    reach two subscriptions, be grouped with itself and run through the two-camera (surround)
    model. It is refused as a configuration error naming both spellings and the topic, as
    map_server_node refuses one vehicle namespace listed twice."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = ["/robot1/front/image_raw", "front/image_raw"]
    with pytest.raises(ConfigError) as err:
        HDMapNode(ReplayBus().context("hd_map_node", "/robot1"), cfg)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'/robot1/front/image_raw'" in msg and "'front/image_raw'" in msg, msg


def test_one_camera_on_two_image_transports_is_refused_in_one_line():
    """image_transport publishes one camera's stream on ``image_raw`` and on
    ``image_raw/compressed`` (the transport a suffix of the base topic; both share the base topic's
    camera_info). Listing both is the same camera twice, grouped with itself."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = ["/cam/image_raw", "/cam/image_raw/compressed"]
    with pytest.raises(ConfigError, match=r"'/cam/image_raw' and '/cam/image_raw/compressed'"):
        HDMapNode(ReplayBus().context("hd_map_node"), cfg)


@pytest.fixture(scope="module")
def ros():
    """Humble's real pure-Python rclpy over the test stand-in of its C extension."""
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(get_typestore(Stores.ROS2_HUMBLE))
    yield rclpy
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def test_under_rclpy_a_remap_that_makes_two_cameras_one_is_refused(ros):
    """``-r /cameras/left/image_raw:=/cameras/front/image_raw`` (a user pointing a second input at
    the one camera there is) makes rclpy's ``Node.resolve_topic_name`` (rcl: expansion, then the
    ``-r`` rules) give one topic for both listed cameras; rclpy would subscribe twice to it. The
    node is not built: one ConfigError naming both entries and the topic rclpy resolved."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.rclpy_runtime import create_node

    rclpy = ros
    context = rclpy.Context()
    args = [
        "-r",
        "/cameras/left/image_raw:=/cameras/front/image_raw",
        "-p",
        "hd_map_node.device:=cpu",
        "-p",
        "hd_map_node.camera_topics:=[/cameras/front/image_raw,/cameras/left/image_raw]",
    ]
    rclpy.init(args=["hd_map_node", "--ros-args", *args], context=context)
    try:
        with pytest.raises(ConfigError) as err:
            create_node(HDMapNode, context)
    finally:
        context.try_shutdown()
    msg = str(err.value)
    assert "'/cameras/front/image_raw' and '/cameras/left/image_raw'" in msg, msg
    assert msg.rstrip().endswith("(/cameras/front/image_raw)"), msg


def test_hd_map_node_names_the_camera_it_waits_for_as_ros2_topic_list_shows_it():
    """hd_map_node in namespace /robot1 with ``camera_topics: [front/image_raw]`` subscribes to
    /robot1/front/image_raw (rcl_expand_topic_name: a relative name gets the node's namespace), the
    name ``ros2 topic list`` / ``ros2 topic info`` show. Its waiting_for names the camera_info topic
    that way already; the image is named the same way, not as written in the parameter."""
    pytest.importorskip("torch")  # (the node loads the shipped model)
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    diags: list = []
    bus.subscribe("/diagnostics", diags.append)
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = ["front/image_raw"]
    HDMapNode(bus.context("hd_map_node", "/robot1"), cfg)
    for k in (1, 2):
        bus.advance(k * 10**9)
    waiting = _status(diags[-1])[2]["waiting_for"]
    assert "image on /robot1/front/image_raw" in waiting, waiting
    assert "camera_info on /robot1/front/camera_info" in waiting, waiting
