"""Outside review (third pass) of issue 20 (ROS 2 for real): what ROS 2's own code does with the
names, parameter files and launch arguments users really give, and where the suite does otherwise.

New angles, not in test_rclpy_runtime.py / test_outside_ros2_nodes.py / test_outside_ros2_qos.py /
test_launch_config.py:

- hd_map_node's "sibling camera_info" against image_transport's rule (``getCameraInfoTopic`` of the
  *resolved* image topic, image_common ``camera_common.cpp`` / ``camera_subscriber.cpp``): a relative
  camera topic in the node's namespace, and a remapped camera topic;
- parameter files the CLI reads but rcl does not read the same way: a sequence mixing integers and
  doubles (rcl ``parse.c``: "Sequence should be of same type"), an empty sequence (rcl leaves the
  parameter unset; rclpy ``node.cpp`` ``_parameter_from_rcl_variant`` makes it NOT_SET; launch_ros
  refuses it: "Expected a non-empty sequence");
- a parameter file rcl refuses fails in ``rclpy.init`` (rcl ``init.c`` parses ``--params-file`` in
  ``rcl_parse_arguments``; rclpy ``context.cpp`` throws ``RCLError``), not in node creation where the
  stand-in parses it: the entry point must still say it in one line with status 2;
- the launch files run by the real ``launch`` / ``launch_ros`` (jazzy branch) the way ``ros2 launch``
  runs them, each node process replaced by a script that records its command line:
  ``PushRosNamespace`` (how multi-robot launch files namespace an included launch file) and a
  ``params_file:=`` that does not exist; then the recorded command lines read by rclpy.

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it, as in
test_rclpy_runtime.py. ``launch``, ``launch_ros`` and ``ament_index_python`` are not on PyPI: the
launch tests run where they import (a ROS 2 install, or checkouts of ros2/launch, ros2/launch_ros,
ament/ament_index plus ``osrf_pycommon`` and ``lark`` named in ``$GS_LAUNCH_PYTHONPATH``, paths
separated by ``os.pathsep``) and skip elsewhere. Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# rclpy (real Python layer, stand-in C extension)


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(get_typestore(Stores.ROS2_HUMBLE))
    yield rclpy, standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _make(rclpy, node_cls, *ros_args):
    from gs_mapping.runtime.rclpy_runtime import create_node

    context = rclpy.Context()
    rclpy.init(args=[node_cls.name, "--ros-args", *ros_args], context=context)
    try:
        node, obj = create_node(node_cls, context)
    except BaseException:
        context.try_shutdown()
        raise
    return context, node, obj


def _close(context, node, obj):
    from gs_mapping.runtime.rclpy_runtime import close_node

    context.try_shutdown()
    close_node(node, obj)


# ------------------------------------------------------------------------------------------------
# hd_map_node's camera_info topic, by image_transport's rule


def _image_transport_info_topic(resolved_image_topic: str) -> str:
    """image_transport ``getCameraInfoTopic`` (image_common, camera_common.cpp), line for line:
    split the base topic on '/', drop empty tokens and the last one, join with '/', add
    '/camera_info'. CameraSubscriber gives it the *resolved* base topic (namespace and remapping
    applied: camera_subscriber.cpp, ``resolve_topic_name(base_topic)``)."""
    tokens = [t for t in resolved_image_topic.split("/")[:-1] if t] + [resolved_image_topic.split("/")[-1]]
    return "".join("/" + t for t in tokens[:-1]) + "/camera_info"


def test_the_image_transport_rule_as_written():
    """The hand port above on image_transport's own examples (absolute topics)."""
    assert _image_transport_info_topic("/camera/image_raw") == "/camera/camera_info"
    assert _image_transport_info_topic("/a/b/image") == "/a/b/camera_info"
    assert _image_transport_info_topic("/image") == "/camera_info"


@pytest.mark.parametrize(
    "ros_args",
    [
        pytest.param(
            ["-r", "__ns:=/cam", "-p", "hd_map_node.camera_topics:=[image_raw]"],
            id="relative-in-namespace",
        ),
        pytest.param(
            ["-r", "__ns:=/cam", "-p", "hd_map_node.camera_topics:=[image_raw/compressed]"],
            id="relative-compressed",
        ),
        pytest.param(
            ["-r", "/cameras/front/image_raw:=/camera/color/image_raw"],
            id="remapped",
        ),
        pytest.param(["-r", "__ns:=/cam"], id="absolute-default"),
    ],
)
def test_hd_map_node_listens_to_the_camera_info_image_transport_would(ros, ros_args):
    """README: each camera topic 'needs a sibling camera_info topic'. The ROS meaning of that sibling
    is image_transport's (every CameraSubscriber, image_proc, RViz's Camera display): the resolved
    image topic's parent namespace + camera_info. A camera driver started in a namespace publishes
    ``image_raw`` and ``camera_info`` there; a user remaps our input onto it with ``-r``."""
    rclpy, _ = ros
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.topics import transport_base

    context, node, obj = _make(rclpy, HDMapNode, "-p", "hd_map_node.device:=cpu", *ros_args)
    try:
        topics = {s.topic_name for s in node.subscriptions}
        (cam,) = obj.cfg.camera_topics
        image = node.resolve_topic_name(cam)  # rclpy's own resolution (namespace + remapping)
        assert image in topics
        assert _image_transport_info_topic(transport_base(image)) in topics, sorted(topics)
    finally:
        _close(context, node, obj)


# ------------------------------------------------------------------------------------------------
# parameter files the CLI reads and rcl does not read the same way


def _params(tmp_path, body: str) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n" + body)
    return f


def test_cli_refuses_a_list_mixing_integers_and_doubles_as_rcl_does(tmp_path):
    """rcl_yaml_param_parser parse.c (humble and jazzy): the first item fixes a sequence's type and an
    INTEGER after a DOUBLE (or the reverse) is an error for the whole file. ``-2`` is an INTEGER to
    rcl, ``-1.5`` a DOUBLE. parameter_entries promises 'ConfigError naming the file for anything rcl
    would not read'; config/full.yaml's promise is one file for both."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.mapper_node import MapperNode

    f = _params(
        tmp_path, "    mapper:\n      virtual_views: {enabled: true, offsets_m: [-2, -1.5, 1.5, 2]}\n"
    )
    with pytest.raises(ConfigError, match=str(f)):
        MapperNode.load_config(str(f))


def _rcl_empty_sequence_is_unset(monkeypatch, standin_module):
    """rcl leaves a parameter written as ``[]`` without a value (parse.c: SEQUENCE_START then
    SEQUENCE_END, no item, no type); rclpy's ``_parameter_from_rcl_variant`` (node.cpp) then makes
    it ``Parameter(name, Type.NOT_SET, None)``. The stand-in hands ``[]`` on as a value: make it
    hand on what rcl does."""
    real = standin_module.node_parameters

    def node_parameters(sources, fqn):
        return {k: (None if v == [] else v) for k, v in real(sources, fqn).items()}

    monkeypatch.setattr(standin_module, "node_parameters", node_parameters)


@pytest.mark.parametrize(
    "node, name, body",
    [
        pytest.param(
            "map_server_node",
            "map_server_node.vehicles",
            "    map_server_node: {vehicles: []}\n",
            id="vehicles",
        ),
        pytest.param(
            "mapper_node",
            "mapper.virtual_views.offsets_m",
            "    mapper:\n      virtual_views: {offsets_m: []}\n",
            id="offsets",
        ),
    ],
)
def test_an_empty_list_means_the_same_to_the_cli_and_under_rclpy(
    ros, tmp_path, monkeypatch, node, name, body
):
    """ROS 2 has no empty-array parameter in a YAML file: rcl gives no value, launch_ros refuses
    ``[]`` outright ('Expected a non-empty sequence'). README: config/full.yaml 'is the same file
    the CLI reads'. Either both refuse the file or both build the node with the same value."""
    import rclpy_standin

    from gs_mapping.config_file import flatten
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.registry import node_class

    rclpy, _ = ros
    cls = node_class(node)
    f = _params(tmp_path, body)
    section, field = name.split(".", 1)
    try:
        cli = list(flatten(cls.load_config(str(f))[section])[field])
    except GsMappingError:
        cli = None
    _rcl_empty_sequence_is_unset(monkeypatch, rclpy_standin)
    try:
        context, n, obj = _make(rclpy, cls, "--params-file", str(f))
    except Exception:  # noqa: BLE001 - whatever rclpy or the node raises: the file gave no node
        under_ros = None
    else:
        under_ros = list(n.get_parameter(name).value or [])
        _close(context, n, obj)
    assert cli == under_ros, f"CLI: {cli}, under rclpy as rcl reads the file: {under_ros}"


def test_a_params_file_rcl_refuses_is_one_line_and_exit_2(ros, tmp_path, monkeypatch, capsys):
    """rcl parses every ``--params-file`` inside ``rcl_init`` (init.c: rcl_parse_arguments ->
    arguments.c: _rcl_parse_param_file -> rcl_parse_yaml_file) and rclpy's Context constructor
    throws ``RCLError('failed to initialize rcl')`` (context.cpp): so under ROS 2 a bad file fails in
    ``rclpy.init``. The stand-in parses files later, at node creation; here its Context does what
    rcl's does for a file rcl refuses (a sequence mixing INTEGER and DOUBLE, parse.c). run_node's
    docstring: 'A bad parameter is one line and exit status 2'."""
    rclpy, standin = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    bad = _params(tmp_path, "    map_receiver_node: {min_opacity: 0.1}\n    other: {xs: [1, 2.5]}\n")
    real_context = standin.Context

    class RclContext(real_context):
        def __init__(self, args, domain_id):
            if str(bad) in list(args or []):
                raise standin.RCLError("failed to initialize rcl")
            super().__init__(args, domain_id)

    monkeypatch.setattr(standin, "Context", RclContext)
    try:
        rc = run_node(MapReceiverNode, ["n", "--ros-args", "--params-file", str(bad)], rclpy.Context())
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"run_node raised {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, (rc, err)


# ------------------------------------------------------------------------------------------------
# the launch files under the real launch / launch_ros


_FAKE_EXE = """#!{python}
import json, os, sys
files = {{a: open(a).read() for i, a in enumerate(sys.argv) if i and sys.argv[i - 1] == "--params-file"}}
with open(os.path.join({out!r}, os.path.basename(sys.argv[0]) + ".json"), "w") as f:
    json.dump({{"argv": sys.argv, "files": files}}, f)
"""


@pytest.fixture(scope="module")
def launch_api(ros, tmp_path_factory):
    """The real launch / launch_ros / ament_index_python modules, or skip."""
    extra = [p for p in os.environ.get("GS_LAUNCH_PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = extra
    added = []
    stub = sys.modules.get("ament_index_python")  # the stand-in's stub where none is installed
    if stub is not None and getattr(stub, "__file__", None) is None:
        del sys.modules["ament_index_python"]
    try:
        importlib.import_module("ament_index_python.packages")
        # launch_ros.actions imports the lifecycle/composition service modules at import time; only
        # LifecycleNode / ComposableNodeContainer use them (not our launch files)
        for name in (
            "lifecycle_msgs",
            "lifecycle_msgs.msg",
            "lifecycle_msgs.srv",
            "composition_interfaces",
            "composition_interfaces.srv",
        ):
            try:
                importlib.import_module(name)
            except ImportError:
                sys.modules[name] = mock.MagicMock(name=name)
                added.append(name)
        launch = importlib.import_module("launch")
        launch_ros = importlib.import_module("launch_ros")
        importlib.import_module("launch_ros.actions")
    except ImportError as exc:
        for name in added:
            sys.modules.pop(name, None)
        for p in extra:
            sys.path.remove(p)
        if stub is not None:
            sys.modules["ament_index_python"] = stub
        pytest.skip(f"ROS 2 launch / launch_ros / ament_index_python not importable ({exc})")
    yield launch, launch_ros
    for name in list(sys.modules):
        if name.split(".")[0] in ("launch", "launch_ros", "ament_index_python") or name in added:
            del sys.modules[name]
    for p in extra:
        sys.path.remove(p)
    if stub is not None:
        sys.modules["ament_index_python"] = stub


def _ros2_launch(launch_api, tmp_path, monkeypatch, arguments: dict[str, str], push_ns: str = ""):
    """full.launch.py through launch's LaunchService, as ``ros2 launch gs_mapping full.launch.py``
    with ``arguments`` (inside ``GroupAction([PushRosNamespace(push_ns), include])`` when given).
    The package's install space is a fake ament prefix whose executables record their command line.
    Returns (LaunchService.run()'s status, {executable: {"argv", "files"}})."""
    launch, _ = launch_api
    from launch.actions import GroupAction, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import PushRosNamespace

    prefix, out = tmp_path / "install", tmp_path / "argv"
    share = prefix / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    out.mkdir()
    for pkg, exes in (
        ("gs_mapping", ("hd_map_node", "mapper_node", "map_receiver_node")),
        ("rviz2", ("rviz2",)),
    ):
        (share / "ament_index" / "resource_index" / "packages" / pkg).write_text("")
        (prefix / "lib" / pkg).mkdir(parents=True)
        for exe in exes:
            p = prefix / "lib" / pkg / exe
            p.write_text(_FAKE_EXE.format(python=sys.executable, out=str(out)))
            p.chmod(p.stat().st_mode | stat.S_IXUSR)
    shutil.copytree(REPO / "config", share / "gs_mapping" / "config")
    shutil.copytree(REPO / "launch", share / "gs_mapping" / "launch")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # launch_ros' params files, the RViz copy
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "gs_mapping" / "launch" / "full.launch.py")),
        launch_arguments=list(arguments.items()),
    )
    entities = [GroupAction([PushRosNamespace(push_ns), include])] if push_ns else [include]
    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription(entities))
    rc = service.run()
    return rc, {f.stem: json.loads(f.read_text()) for f in out.glob("*.json")}


def _rviz_topics(rviz_argv: list[str]) -> set[str]:
    cfg = yaml.safe_load(Path(rviz_argv[rviz_argv.index("-d") + 1]).read_text())
    return {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}


def _fqn_of(argv: list[str]) -> str:
    rules = dict(a.split(":=", 1) for i, a in enumerate(argv) if i and argv[i - 1] == "-r")
    return rules["__ns"].rstrip("/") + "/" + rules["__node"]


def test_under_namespace_argument_rviz_shows_the_namespaced_topics(launch_api, tmp_path, monkeypatch):
    """The case the suite checks with launch_support alone, here through the real launch: each node's
    namespace as launch_ros hands it to the process, and RViz's topics of our nodes under it."""
    rc, ran = _ros2_launch(launch_api, tmp_path, monkeypatch, {"namespace": "robot1"})
    assert rc == 0 and set(ran) == {"hd_map_node", "mapper_node", "map_receiver_node", "rviz2"}
    assert _fqn_of(ran["mapper_node"]["argv"]) == "/robot1/mapper_node"
    topics = _rviz_topics(ran["rviz2"]["argv"])
    assert {"/robot1/hd_map_node/lanes", "/robot1/map_receiver_node/map_cloud"} <= topics, topics


def test_under_push_ros_namespace_rviz_shows_the_namespaced_topics(launch_api, tmp_path, monkeypatch):
    """Multi-robot launch files namespace an included launch file with ``GroupAction(
    [PushRosNamespace('robot1'), IncludeLaunchDescription(...)])`` (launch_ros sets the
    ``ros_namespace`` launch configuration; Node prefixes it: node.py, prefix_namespace). The nodes
    then run in /robot1; README: under a namespace 'the launch file hands RViz a copy with the
    namespaced topics'."""
    rc, ran = _ros2_launch(launch_api, tmp_path, monkeypatch, {}, push_ns="robot1")
    assert rc == 0
    assert _fqn_of(ran["hd_map_node"]["argv"]) == "/robot1/hd_map_node"  # launch_ros did its part
    topics = _rviz_topics(ran["rviz2"]["argv"])
    assert {"/robot1/hd_map_node/lanes", "/robot1/map_receiver_node/map_cloud"} <= topics, topics


def test_a_params_file_that_does_not_exist_starts_no_node(launch_api, tmp_path, monkeypatch):
    """launch_ros (node.py, _perform_substitutions) skips a parameter file path that is not a file
    with a warning. A typo in ``params_file:=`` then runs the mapper on RealSense topic names with
    ``device: auto`` - the user's file silently unused. README: errors on bad input name the file
    and stop; ``gs-mapping run --config missing.yaml`` does."""
    rc, ran = _ros2_launch(
        launch_api, tmp_path, monkeypatch, {"params_file": str(tmp_path / "my_robot.yaml"), "rviz": "false"}
    )
    assert rc != 0 or not ran, sorted(ran)


def test_what_ros2_launch_hands_each_node_builds_it_with_the_given_arguments(
    ros, launch_api, tmp_path, monkeypatch
):
    """The command lines launch_ros wrote (full.yaml, its own params files from the launch
    arguments, ``-r __node/__ns``) given to rclpy's init and to create_node: each node is built with
    device:= and use_sim_time:= applied and the params file's other values kept."""
    rclpy, _ = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import create_node

    params = tmp_path / "mine.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    mapper: {max_gaussians: 5000}\n"
        "    map_receiver_node: {min_opacity: 0.2}\n"
    )
    rc, ran = _ros2_launch(
        launch_api,
        tmp_path,
        monkeypatch,
        {
            "params_file": str(params),
            "device": "cpu",
            "use_sim_time": "true",
            "namespace": "r2",
            "rviz": "false",
        },
    )
    assert rc == 0
    for cls in (MapperNode, MapReceiverNode):
        argv = ran[cls.name]["argv"]
        context = rclpy.Context()
        rclpy.init(args=argv, context=context)
        node, obj = create_node(cls, context)
        try:
            assert node.get_fully_qualified_name() == f"/r2/{cls.name}"
            assert node.get_parameter("use_sim_time").value is True
            if cls is MapperNode:
                assert node.get_parameter("mapper.device").value == "cpu"
                assert obj.mapper.cfg.max_gaussians == 5000
            else:
                assert obj.cfg.min_opacity == 0.2
        finally:
            _close(context, node, obj)


def test_given_launch_arguments_win_over_a_params_file_whose_node_block_comes_first(
    ros, launch_api, tmp_path, monkeypatch
):
    """A params file with the node's own block before a ``/**`` block that sets the same
    parameters (rcl keeps each node key where it first appeared; rclpy applies the entries in that
    order, so ``/**`` comes last). device:= and use_sim_time:= given must still win: the launch
    files hand them on in a params file of their own under a key no user file writes
    (launch_support.override_key), which rcl appends as the last entry. (A parameters=[{…}] dict,
    which launch_ros keys by the node's full name, merged into the file's first entry.)"""
    rclpy, _ = ros
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import create_node

    params = tmp_path / "mine.yaml"
    params.write_text(
        "/r2/mapper_node:\n  ros__parameters:\n    mapper: {max_gaussians: 5000}\n"
        "/**:\n  ros__parameters:\n    use_sim_time: false\n    mapper: {device: auto}\n"
    )
    args = {"params_file": str(params), "device": "cpu", "use_sim_time": "true", "namespace": "r2"}
    rc, ran = _ros2_launch(launch_api, tmp_path, monkeypatch, {**args, "rviz": "false"})
    assert rc == 0
    context = rclpy.Context()
    rclpy.init(args=ran["mapper_node"]["argv"], context=context)
    node, obj = create_node(MapperNode, context)
    try:
        assert node.get_parameter("mapper.device").value == "cpu"
        assert node.get_parameter("use_sim_time").value is True
        assert obj.mapper.cfg.max_gaussians == 5000
    finally:
        _close(context, node, obj)
