"""Outside review of issues 7 and 20 (ROS 2 nodes, launch, RViz): what RViz 2 itself does with the
config the launch file hands it and with the messages the nodes publish for it.

Everything here is checked against RViz 2's own source (github.com/ros2/rviz, branch humble at
9b354826, branch jazzy at 591594ee), written down below as tables with the file each comes from;
nothing is taken from the project's own bookkeeping. New angles, not in test_launch_config.py /
test_outside_ros2_qos.py / test_outside_ros2_real3.py / test_outside_ros2_real4.py /
test_outside_session24*.py (those check topic names, QoS compatibility, the namespaced copy's
topics and the RGB8 colour bytes):

- rviz_common loads a display, tool, view or panel by its ``Class`` (pluginlib names in
  rviz_default_plugins/plugins_description.xml; panels are rviz_common's built-ins,
  panel_factory.cpp): an unknown class becomes an error display;
- each display reads its settings by its Property objects' names (``new XProperty("Name", …)`` in
  the display's .cpp; rviz_common Property::load looks a child up by exactly that name): a key RViz
  does not know is silently ignored (a QoS never applied, a style never set), and an enum value
  that is not one of the options is not applied either;
- the MarkerArray the hd_map_node publishes, as rviz_default_plugins' marker_common.cpp and
  line_marker_base.cpp take it (duplicate (ns, id) in one array is an error status, DELETEALL with
  an empty ns clears the display, a LINE_STRIP needs points, colours per point only when as many as
  points, NaN/inf anywhere drops the marker);
- the ~/map_cloud PointCloud2 as point_cloud2_display.cpp and its XYZ / RGB8 transformers take it
  (data size = width*height*point_step or the cloud is dropped; XYZ needs 'x' FLOAT32; RGB8 needs
  'rgb'/'rgba' INT32, UINT32 or FLOAT32, read as a uint32 0x00RRGGBB);
- what RViz is started with by full.launch.py for a user's own params file: RViz's Global Options
  'Fixed Frame' and the Camera display's topic must name the frame and camera the nodes were
  configured with, or RViz reports "Frame [map] does not exist" and draws nothing / an empty image.

Known bugs are ``xfail(strict=True)``. No network, no ROS install: launch / launch_ros /
ament_index_python are stood in exactly as test_outside_ff4 does (each Node is the dict of its
keyword arguments).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

import gs_mapping

REPO = Path(gs_mapping.__file__).resolve().parents[2]
RVIZ = REPO / "config" / "gs_mapping.rviz"

# ------------------------------------------------------------------------------------------------
# RViz 2's own names, from ros2/rviz (humble 9b354826, jazzy 591594ee)

# rviz_default_plugins/plugins_description.xml (the same on both branches for these kinds)
RVIZ_DISPLAYS = {
    "rviz_default_plugins/" + n
    for n in (
        "AccelStamped Axes Camera DepthCloud Effort Grid GridCells FluidPressure Illuminance Image "
        "InteractiveMarkers LaserScan Map PointCloud PointCloud2 Polygon Pose PoseWithCovariance Range "
        "RelativeHumidity RobotModel Temperature TF TwistStamped Marker MarkerArray Odometry PoseArray "
        "Path PointStamped Wrench"
    ).split()
} | {"rviz_common/Group"}  # display_factory.cpp built-in
RVIZ_TOOLS = {
    "rviz_default_plugins/" + n
    for n in "MoveCamera PublishPoint Select SetGoal Measure FocusCamera SetInitialPose Interact".split()
}
RVIZ_VIEWS = {
    "rviz_default_plugins/" + n for n in "FPS Orbit TopDownOrtho XYOrbit ThirdPersonFollower".split()
}
# rviz_common/src/rviz_common/panel_factory.cpp addBuiltInClass
RVIZ_PANELS = {
    "rviz_common/" + n
    for n in ("Displays", "Help", "Selection", "Time", "Tool Properties", "Transformation", "Views")
}

# rviz_common/src/rviz_common/properties/qos_profile_property.cpp: the sub-properties of "Topic"
# (ros_topic_display.hpp / message_filter_display.hpp: "Topic", and "Filter size" of the latter)
QOS_OPTIONS = {
    "History Policy": {"System Default", "Keep Last", "Keep All"},
    "Reliability Policy": {"System Default", "Reliable", "Best Effort"},
    "Durability Policy": {"System Default", "Transient Local", "Volatile"},
}
TOPIC_KEYS = {"Value", "Depth", "Filter size", *QOS_OPTIONS}
DISPLAY_BASE = {"Class", "Name", "Enabled", "Value"}  # rviz_common display.cpp load()/save()

# point_cloud_common.cpp + the transformers' own properties (intensity/axis_color/flat_color)
POINT_CLOUD = {
    "Topic",
    "Selectable",
    "Style",
    "Size (m)",
    "Size (Pixels)",
    "Alpha",
    "Decay Time",
    "Position Transformer",
    "Color Transformer",
    "Channel Name",
    "Use rainbow",
    "Invert Rainbow",
    "Min Color",
    "Max Color",
    "Autocompute Intensity Bounds",
    "Min Intensity",
    "Max Intensity",
    "Axis",
    "Autocompute Value Bounds",
    "Min Value",
    "Max Value",
    "Use Fixed Frame",
    "Color",
}
RVIZ_DISPLAY_KEYS = {
    "rviz_default_plugins/Grid": {  # grid_display.cpp
        "Reference Frame",
        "Plane Cell Count",
        "Normal Cell Count",
        "Cell Size",
        "Line Style",
        "Color",
        "Alpha",
        "Plane",
        "Offset",
    },
    "rviz_default_plugins/TF": {  # tf_display.cpp (jazzy adds the two filters)
        "Show Names",
        "Show Axes",
        "Show Arrows",
        "Marker Scale",
        "Update Interval",
        "Frame Timeout",
        "Frames",
        "Tree",
        "Filter (whitelist)",
        "Filter (blacklist)",
    },
    # image_display.cpp (+ image_transport_display.hpp's "Topic")
    "rviz_default_plugins/Image": {"Topic", "Normalize Range", "Min Value", "Max Value", "Median window"},
    "rviz_default_plugins/MarkerArray": {"Topic", "Namespaces"},  # marker_common.cpp
    "rviz_default_plugins/Marker": {"Topic", "Namespaces"},
    "rviz_default_plugins/PointCloud2": POINT_CLOUD,
}
# point_cloud_common.cpp style options; point_cloud_transformer_factory.cpp built-in transformers
PC_STYLES = {"Points", "Squares", "Flat Squares", "Spheres", "Boxes", "Tiles"}
PC_TRANSFORMERS = {"XYZ", "Intensity", "RGB8", "RGBF32", "AxisColor", "FlatColor"}
# visualization_manager.cpp "Global Options" children
GLOBAL_OPTIONS = {"Fixed Frame", "Background Color", "Frame Rate"}
# view_controller.cpp + frame_position_tracking_view_controller.cpp + orbit_view_controller.cpp
ORBIT_KEYS = {
    "Class",
    "Name",
    "Value",
    "Near Clip Distance",
    "Enable Stereo Rendering",
    "Swap Stereo Eyes",
    "Stereo Eye Separation",
    "Stereo Focal Distance",
    "Invert Z Axis",
    "Target Frame",
    "Distance",
    "Focal Shape Size",
    "Focal Shape Fixed Size",
    "Yaw",
    "Pitch",
    "Focal Point",
}

# sensor_msgs/PointField datatypes
INT32, UINT32, FLOAT32 = 5, 6, 7


def _displays(cfg: dict) -> list[dict]:
    return cfg["Visualization Manager"]["Displays"]


# ------------------------------------------------------------------------------------------------
# the shipped config against RViz's names


def test_every_class_in_the_rviz_config_is_one_rviz_can_create():
    """rviz_common creates displays, tools, views and panels from their ``Class`` through pluginlib
    (rviz_default_plugins/plugins_description.xml, rviz_common's panel_factory.cpp built-ins): a
    misspelt class is an error display "The class required for this display, 'X', could not be
    loaded" and shows nothing."""
    cfg = yaml.safe_load(RVIZ.read_text())
    vm = cfg["Visualization Manager"]
    assert {d["Class"] for d in _displays(cfg)} <= RVIZ_DISPLAYS
    assert {t["Class"] for t in vm.get("Tools", [])} <= RVIZ_TOOLS
    assert vm["Views"]["Current"]["Class"] in RVIZ_VIEWS
    assert {p["Class"] for p in cfg.get("Panels", [])} <= RVIZ_PANELS


def test_every_setting_in_the_rviz_config_is_a_property_rviz_reads():
    """RViz applies a saved setting only where a Property of that exact name exists (Property::load
    finds children by name): 'Reliability' instead of 'Reliability Policy', 'Size' instead of
    'Size (Pixels)' or 'Color Transformer: RGB' would be dropped without a word, the display then
    subscribing with its defaults. Every key of each display, its Topic block, the Global Options
    and the Orbit view must be one of RViz's names, and every enum value one of its options."""
    cfg = yaml.safe_load(RVIZ.read_text())
    for d in _displays(cfg):
        known = DISPLAY_BASE | RVIZ_DISPLAY_KEYS[d["Class"]]
        assert set(d) <= known, (d["Name"], set(d) - known)
        topic = d.get("Topic")
        if topic is not None:
            assert isinstance(topic, dict) and set(topic) <= TOPIC_KEYS, (d["Name"], topic)
            for key, options in QOS_OPTIONS.items():
                assert topic.get(key, "System Default") in options, (d["Name"], key, topic.get(key))
            assert int(topic.get("Depth", 1)) >= 1
        if d["Class"] == "rviz_default_plugins/PointCloud2":
            assert d.get("Style", "Flat Squares") in PC_STYLES
            assert d.get("Color Transformer", "RGB8") in PC_TRANSFORMERS
            assert d.get("Position Transformer", "XYZ") in PC_TRANSFORMERS
    vm = cfg["Visualization Manager"]
    assert set(vm["Global Options"]) <= GLOBAL_OPTIONS, set(vm["Global Options"]) - GLOBAL_OPTIONS
    assert set(vm["Views"]["Current"]) <= ORBIT_KEYS, set(vm["Views"]["Current"]) - ORBIT_KEYS
    assert set(vm["Views"]["Current"]["Focal Point"]) == {"X", "Y", "Z"}  # a VectorProperty


@pytest.mark.parametrize("namespace", ["robot1", "/fleet/robot_2/"])
def test_the_namespaced_rviz_copy_changes_topic_values_only(namespace):
    """The copy the launch file hands RViz under ``namespace:=`` is edited as text: it must still be
    a config RViz reads the same way, i.e. the same keys everywhere and only the Topic values of
    our nodes moved, each a valid absolute ROS name (rmw validate_full_topic_name: no '//', no
    trailing '/')."""
    from gs_mapping.nodes.launch_support import namespaced_rviz_config

    before = yaml.safe_load(RVIZ.read_text())
    after = yaml.safe_load(namespaced_rviz_config(RVIZ.read_text(), namespace))

    def strip_topics(cfg):
        out = yaml.safe_load(yaml.safe_dump(cfg))
        for d in _displays(out):
            if "Topic" in d:
                d["Topic"]["Value"] = None
        return out

    assert strip_topics(before) == strip_topics(after)
    ns = "/" + namespace.strip("/")
    for b, a in zip(_displays(before), _displays(after), strict=True):
        if "Topic" not in b:
            continue
        old, new = b["Topic"]["Value"], a["Topic"]["Value"]
        assert new.startswith("/") and "//" not in new and not new.endswith("/"), new
        ours = old.split("/")[1] in ("hd_map_node", "mapper_node", "map_receiver_node")
        assert new == (ns + old if ours else old), (old, new)


# ------------------------------------------------------------------------------------------------
# the hd_map_node's MarkerArray as RViz's marker display takes it


def _rviz_marker_array_problems(markers) -> list[str]:
    """What rviz_default_plugins (humble/jazzy) reports for one MarkerArray, or draws differently
    from what was meant: marker_common.cpp addMessage (duplicate (ns, id) -> error status),
    processMessage (validateFloats on pose, scale, color, points -> marker dropped), DELETEALL
    (empty ns: every marker of the display), line_marker_base.cpp (empty points: nothing drawn;
    per-point colours only when colors.size() == points.size(); width scale.x), marker_base.cpp
    (the pose's quaternion as Ogre takes it: a zero quaternion is no rotation at all)."""
    problems = []
    seen = set()
    for m in markers:
        key = (str(m.ns), int(m.id))
        if key in seen:
            problems.append(f"duplicate ns/id {key}")
        seen.add(key)
        floats = [
            m.pose.position.x,
            m.pose.position.y,
            m.pose.position.z,
            m.pose.orientation.x,
            m.pose.orientation.y,
            m.pose.orientation.z,
            m.pose.orientation.w,
            m.scale.x,
            m.scale.y,
            m.scale.z,
            m.color.r,
            m.color.g,
            m.color.b,
            m.color.a,
        ]
        floats += [c for p in m.points for c in (p.x, p.y, p.z)]
        if not all(math.isfinite(v) for v in floats):
            problems.append(f"{key}: NaN/inf (marker dropped)")
        if int(m.action) == 3:
            continue
        if not str(m.header.frame_id):
            problems.append(f"{key}: empty frame_id")
        q = m.pose.orientation
        if abs(math.sqrt(q.x**2 + q.y**2 + q.z**2 + q.w**2) - 1) > 1e-3:
            problems.append(f"{key}: quaternion not unit")
        if int(m.type) == 4:  # LINE_STRIP
            if len(m.points) < 2:
                problems.append(f"{key}: LINE_STRIP with {len(m.points)} points draws nothing")
            if not m.scale.x > 0:
                problems.append(f"{key}: line width scale.x = {m.scale.x}")
            if m.colors and len(m.colors) != len(m.points):
                problems.append(f"{key}: {len(m.colors)} colours for {len(m.points)} points")
        if not m.color.a > 0 and not m.colors:
            problems.append(f"{key}: fully transparent")
    return problems


def _hd_markers(elements, ids=None, frame="map", heights=None):
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    fake = types.SimpleNamespace(ctx=types.SimpleNamespace(factory=ReplayBus().factory))
    return HDMapNode._markers(fake, elements, ids, frame, 1_700_000_000_123_456_789, heights)


def test_hd_lane_markers_are_what_rvizs_marker_display_draws():
    """hd_map_node's ~/lanes (both modes: per frame, ids = index; fused, ids = lane ids) with several
    elements of one class, a crossing ring and a two-point divider: a DELETEALL of the whole display
    first, then one LINE_STRIP per element RViz draws as meant: unique (ns, id), finite, unit
    quaternion, width > 0, opaque, the element's points in order, in the frame asked for."""
    from gs_mapping.nodes.hd_map_node import CLASS_NAMES, _Elem

    ring = np.array([[5, -2], [9, -2], [9, 2], [5, 2], [5, -2]], float)
    elements = [
        _Elem(0, 0.9, np.array([[0, 1.5], [10, 1.5], [20, 1.6]], float)),
        _Elem(0, 0.8, np.array([[0, -1.5], [20, -1.5]], float)),  # two points: the least a line has
        _Elem(1, 0.7, ring),
        _Elem(2, 0.6, np.array([[0, 4], [20, 4.2], [30, 4.1]], float)),
        _Elem(2, 0.6, np.array([[0, -4], [30, -4]], float)),
    ]
    for ids, frame, heights in (
        (None, "base_link", None),
        ([7, 3, 12, 7, 8], "map", [0.1, 0.2, 0.3, 0.4, 0.5]),
    ):
        markers = _hd_markers(elements, ids, frame, heights)
        assert int(markers[0].action) == 3 and str(markers[0].ns) == ""  # DELETEALL: everything
        assert _rviz_marker_array_problems(markers) == []
        drawn = markers[1:]
        assert len(drawn) == len(elements)
        for e, m, k in zip(elements, drawn, range(len(elements)), strict=True):
            assert int(m.type) == 4 and int(m.action) == 0
            assert str(m.ns) == CLASS_NAMES[e.cls] and str(m.header.frame_id) == frame
            pts = np.array([[p.x, p.y, p.z] for p in m.points])
            np.testing.assert_allclose(pts[:, :2], e.points)
            np.testing.assert_allclose(pts[:, 2], 0.0 if heights is None else heights[k])
            assert m.lifetime.sec == 0 and m.lifetime.nanosec == 0  # stays until replaced
        ring_marker = drawn[2]
        first, last = ring_marker.points[0], ring_marker.points[-1]
        assert (first.x, first.y) == (last.x, last.y)  # a LINE_STRIP closes only if told to


def test_recorded_ground_truth_lanes_are_what_rviz_draws_at_their_stamp(tmp_path):
    """The world bag's /ground_truth/lanes (the config's "Ground-truth lanes" display): each
    MarkerArray passes the marker display's rules above, and RViz can place it: marker_base.cpp
    transforms every marker at its header.stamp (frame_locked false), so the bag must hold the
    transform of its frame to 'map' (the config's Fixed Frame) at exactly that stamp, which tf2
    answers without extrapolation; the camera image is an encoding RViz's Image display reads
    (ros_image_texture.cpp: rgb8, rgba8, bgra8, bgr8, mono8, mono16, 8UC1-4, 16UC1, 32FC1, yuv422)."""
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    write_bag(Drive.make(3, 3, "front", (256, 144)), tmp_path / "w", progress=False)
    tf_at: dict[tuple[str, str], set[int]] = {}
    arrays = 0
    with BagReader(tmp_path / "w") as bag:
        for topic, _, msg in bag.messages():
            if topic in ("/tf", "/tf_static"):
                for t in msg.transforms:
                    pair = (str(t.header.frame_id), str(t.child_frame_id))
                    stamp = t.header.stamp.sec * 1_000_000_000 + t.header.stamp.nanosec
                    tf_at.setdefault(pair, set()).add(stamp)
            elif topic == "/cameras/front/image_raw":
                assert str(msg.encoding) in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
            elif topic == "/ground_truth/lanes":
                arrays += 1
                assert _rviz_marker_array_problems(msg.markers) == []
                for m in msg.markers[1:]:
                    stamp = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
                    frame = str(m.header.frame_id)
                    assert frame == "map" or stamp in tf_at.get(("map", frame), set()), (frame, stamp)
    assert arrays == 3


# ------------------------------------------------------------------------------------------------
# the ~/map_cloud as RViz's PointCloud2 display takes it


def _rviz_rgb8(cloud) -> np.ndarray:
    """rgb8_pc_transformer.cpp transform(): the 'rgb' field's 4 bytes as a uint32, r = (v >> 16) &
    0xff, g = (v >> 8) & 0xff, b = v & 0xff (little-endian host, as RViz runs)."""
    (f,) = [f for f in cloud.fields if f.name in ("rgb", "rgba")]
    data = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)
    v = data[:, f.offset : f.offset + 4].copy().view("<u4").reshape(-1)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], 1)


def _rviz_xyz(cloud) -> np.ndarray:
    data = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)
    off = {f.name: f.offset for f in cloud.fields}
    return np.stack([data[:, off[c] : off[c] + 4].copy().view("<f4").reshape(-1) for c in "xyz"], 1)


def test_map_cloud_passes_rvizs_pointcloud2_checks_and_transformers():
    """map_receiver_node's ~/map_cloud, published through the replay runtime from a snapshot in frame
    'odom': point_cloud2_display.cpp keeps it (x, y, z present; data size = width*height*point_step,
    else "Dropping message"), the XYZ transformer supports it ('x' FLOAT32), the RGB8 transformer
    the config selects supports it ('rgb' INT32/UINT32/FLOAT32) and reads the map's colours, every
    point finite (filterOutInvalidPoints keeps them all), in the map's own frame."""
    from gs_map_share.snapshot import encode_map
    from gs_mapping.gaussians import SH_C0, GaussianMap
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.replay import ReplayBus

    rng = np.random.default_rng(3)
    n = 300
    rgb = rng.uniform(0, 1, (n, 3))
    gmap = GaussianMap(
        sh_degree=0,
        means=rng.uniform(-20, 20, (n, 3)).astype(np.float32),
        quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        log_scales=np.full((n, 3), -3.0, np.float32),
        opacity_logits=np.full(n, 3.0, np.float32),
        sh=((rgb - 0.5) / SH_C0).astype(np.float32)[:, None, :],
    )
    data, _ = encode_map(gmap, frame_id="odom")
    bus = ReplayBus()
    receiver = MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(None))
    clouds = []
    bus.subscribe("/map_receiver_node/map_cloud", clouds.append)
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), 1_000_000_000)
    bus.advance(5_000_000_000)
    receiver.close()
    assert clouds, "no ~/map_cloud"
    cloud = clouds[-1]
    fields = {f.name: f for f in cloud.fields}
    assert {"x", "y", "z"} <= set(fields) and fields["x"].datatype == FLOAT32
    assert fields["rgb"].datatype in (INT32, UINT32, FLOAT32)
    assert cloud.width * cloud.height * cloud.point_step == len(cloud.data)
    assert not cloud.is_bigendian
    assert str(cloud.header.frame_id) == "odom"
    assert cloud.width * cloud.height == n
    xyz = _rviz_xyz(cloud)
    assert np.isfinite(xyz).all()
    # each point RViz places, matched to the nearest Gaussian sent (the codec quantises positions)
    d = np.linalg.norm(xyz[:, None, :] - np.asarray(gmap.means, np.float64)[None], axis=2)
    nearest = d.argmin(1)
    assert d.min(1).max() < 0.05 and len(set(nearest.tolist())) == n
    got = _rviz_rgb8(cloud).astype(int)
    want = np.round(rgb[nearest] * 255).astype(int)
    assert np.abs(got - want).max() <= 3  # (the codec's colour quantisation)


# ------------------------------------------------------------------------------------------------
# full.launch.py: the RViz config against the user's params file


def _full_launch_actions(args: dict[str, str]) -> list:
    """full.launch.py's ``_actions`` with stand-ins for launch, launch_ros and ament_index_python
    (as test_outside_ff4 does): each Node is the dict of its keyword arguments."""

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    fakes = {
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda p: str(REPO)),
        "launch": types.SimpleNamespace(LaunchDescription=list),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=None, OpaqueFunction=None),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.SimpleNamespace(Node=lambda **kw: kw),
    }
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)  # type: ignore[arg-type]
    try:
        spec = importlib.util.spec_from_file_location("full_launch_rviz", REPO / "launch" / "full.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module._actions(types.SimpleNamespace(launch_configurations=args))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _rviz_started_with(tmp_path, monkeypatch, params: dict, namespace: str = "", sim: str = "") -> dict:
    """The rviz2 Node full.launch.py returns for a params file holding ``params`` under ``/**``."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    args = {
        "params_file": str(path),
        "use_sim_time": sim,
        "device": "",
        "namespace": namespace,
        "rviz": "true",
    }
    (rviz,) = [a for a in _full_launch_actions(args) if a.get("executable") == "rviz2"]
    return rviz


def _rviz_config_started_with(tmp_path, monkeypatch, params: dict, namespace: str = "") -> dict:
    rviz = _rviz_started_with(tmp_path, monkeypatch, params, namespace)
    return yaml.safe_load(Path(rviz["arguments"][rviz["arguments"].index("-d") + 1]).read_text())


# A robot without a map frame, as the hd_map_node's own warning tells its user to set it up
# ("a robot without a map frame: set hd_map_node.map_frame to its odometry frame"), the mapper on
# the same frame, a RealSense camera as the package's data README records it.
ODOM_ROBOT = {
    "mapper": {"topics": {"map_frame": "odom"}},
    "hd_map_node": {
        "map_frame": "odom",
        "camera_topics": ["/camera/camera/color/image_raw/compressed"],
    },
}


def test_the_users_params_file_is_one_the_nodes_accept(tmp_path):
    """(The params file of the two tests below is valid: the nodes load it and use its frame and
    camera, so what RViz is handed is the only thing wrong there.)"""
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.nodes.mapper_node import MapperNode

    path = tmp_path / "my_robot.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": ODOM_ROBOT}}))
    hd = HDMapNode.load_config(path)["hd_map_node"]
    assert hd.map_frame == "odom" and list(hd.camera_topics) == ODOM_ROBOT["hd_map_node"]["camera_topics"]
    assert MapperNode.load_config(path)["mapper"].topics.map_frame == "odom"


def test_rviz_fixed_frame_is_the_frame_the_nodes_publish_in(tmp_path, monkeypatch):
    """With ``params_file:=`` whose mapper and hd_map_node map in 'odom', ~/map_cloud and the fused
    ~/lanes carry frame_id 'odom' and no 'map' frame exists in TF. RViz's Global Options 'Fixed
    Frame' is still 'map' (config/gs_mapping.rviz as is): RViz's Global Status turns to an error
    on 'Fixed Frame' (visualization_manager.cpp; tf_frame_transformer.cpp: "Frame [map] does not
    exist") and the cloud and lane displays find "No transform to fixed frame [map]": nothing is
    drawn. The launch file, which already writes a per-namespace copy, must write the
    frame the nodes use (also with a namespace)."""
    for namespace in ("", "robot1"):
        cfg = _rviz_config_started_with(tmp_path, monkeypatch, ODOM_ROBOT, namespace)
        assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "odom", namespace


def test_rviz_camera_display_shows_the_camera_the_hd_map_node_reads(tmp_path, monkeypatch):
    """README: "config/gs_mapping.rviz shows the camera". With a params file naming the camera the
    hd_map_node reads (here the RealSense topic of the package's own real bag, compressed), RViz's
    Image display still subscribes to /cameras/front/image_raw, a topic nothing publishes: an empty
    image panel. RViz's Image display takes a '/compressed' topic as the base topic plus the
    'compressed' transport (image/get_transport_from_topic.cpp), so the first camera topic can be
    handed over as it is."""
    cfg = _rviz_config_started_with(tmp_path, monkeypatch, ODOM_ROBOT)
    (camera,) = [d for d in _displays(cfg) if d["Class"] == "rviz_default_plugins/Image"]
    assert camera["Topic"]["Value"] == ODOM_ROBOT["hd_map_node"]["camera_topics"][0]


def test_rviz_view_follows_the_base_frame_and_a_relative_camera_topic(tmp_path, monkeypatch):
    """The Orbit view's Target Frame is hd_map_node.base_frame (RViz: "Frame [base_link] does not
    exist" on a robot whose base frame is named otherwise); a relative camera topic is shown as the
    node resolves it under the namespace; every other setting stays as shipped."""
    params = {"hd_map_node": {"base_frame": "base_footprint", "camera_topics": ["front/image_raw"]}}
    cfg = _rviz_config_started_with(tmp_path, monkeypatch, params, "robot1")
    assert cfg["Visualization Manager"]["Views"]["Current"]["Target Frame"] == "base_footprint"
    (camera,) = [d for d in _displays(cfg) if d["Class"] == "rviz_default_plugins/Image"]
    assert camera["Topic"]["Value"] == "/robot1/front/image_raw"
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"  # (not set: as shipped)
    shipped = yaml.safe_load(RVIZ.read_text())
    assert set(cfg) == set(shipped) and len(_displays(cfg)) == len(_displays(shipped))


def test_rviz_with_the_shipped_settings_is_handed_the_shipped_config(tmp_path, monkeypatch):
    """A params file that sets the frames and camera to what the shipped config has already, with no
    namespace: RViz gets config/gs_mapping.rviz itself and nothing is written."""
    params = {
        "mapper": {"topics": {"map_frame": "map"}},
        "hd_map_node": {"base_frame": "base_link", "camera_topics": ["/cameras/front/image_raw"]},
    }
    rviz = _rviz_started_with(tmp_path, monkeypatch, params)
    assert Path(rviz["arguments"][rviz["arguments"].index("-d") + 1]).resolve() == RVIZ.resolve()
    assert not (tmp_path / "gs_mapping").exists()


@pytest.mark.parametrize("sim", ["", "false"])
def test_rviz_uses_the_sim_time_of_the_params_file_unless_the_argument_is_given(tmp_path, monkeypatch, sim):
    """use_sim_time: true set only in the params file (a bag played with --clock): the nodes stamp and
    look TF up in the bag's time, RViz must too or it drops every message as too old. The launch
    argument, when given, still wins for RViz as for the nodes."""
    rviz = _rviz_started_with(tmp_path, monkeypatch, {"use_sim_time": True}, "robot1", sim)
    (override,) = rviz["parameters"]
    got = next(iter(yaml.safe_load(Path(override).read_text()).values()))["ros__parameters"]
    assert got == {"use_sim_time": sim != "false"}
