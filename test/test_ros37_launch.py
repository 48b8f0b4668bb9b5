"""Every launch file in launch/ through the real ``launch`` / ``launch_ros`` (humble branch), as
``ros2 launch gs_mapping <file> …`` runs it, then each node built by rclpy (Humble's Python over
test/rclpy_standin.py) from the command line launch_ros wrote for it.

test_outside_ros2_real3.py does this for full.launch.py; the four one-node launch files
(hd_map_node, mapper_node, map_receiver_node, map_server_node) had only been read as ASTs
(test_launch_config.py). Here each is run with its defaults and with every argument it declares
given (namespace, use_sim_time, device), and a node takes what the user asked for.

Where launch, launch_ros and ament_index_python do not import (they are not on PyPI: a ROS 2
install, or checkouts named in ``$GS_LAUNCH_PYTHONPATH``, as test_outside_ros2_real3.py says) the
tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import stat
import sys
import tempfile

import pytest

if importlib.util.find_spec("rclpy") is None:  # (the numpy-1.26 venv: no rclpy-intellisense)
    pytest.skip("rclpy's Python package (rclpy-intellisense) is not installed", allow_module_level=True)

import test_outside_ros2_real3 as real3  # noqa: E402

# the real launch modules (or skip) and rclpy over the stand-in, as the full.launch.py tests have them
ros, launch_api = real3.ros, real3.launch_api
_FAKE_EXE, REPO, _fqn_of = real3._FAKE_EXE, real3.REPO, real3._fqn_of

ONE_NODE = ("hd_map_node", "mapper_node", "map_receiver_node", "map_server_node")
# the arguments each one-node launch file declares beyond params_file and namespace
GIVEN = {
    "hd_map_node": {"use_sim_time": "true", "device": "cpu"},
    "mapper_node": {"use_sim_time": "true", "device": "cpu"},
    "map_receiver_node": {"use_sim_time": "true"},
    "map_server_node": {"use_sim_time": "true"},
}
DEVICE = {"hd_map_node": "hd_map_node.device", "mapper_node": "mapper.device"}


def _launch(launch_api, tmp_path, monkeypatch, file: str, arguments: dict[str, str]):
    """``ros2 launch gs_mapping <file>`` with ``arguments``: the package's install space a fake
    ament prefix whose executables record their command line. (LaunchService.run()'s status,
    {executable: {"argv", "files"}})."""
    launch, _ = launch_api
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    prefix, out = tmp_path / "install", tmp_path / "argv"
    share = prefix / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (share / "ament_index" / "resource_index" / "packages" / "gs_mapping").write_text("")
    (prefix / "lib" / "gs_mapping").mkdir(parents=True)
    out.mkdir()
    for exe in ONE_NODE:
        p = prefix / "lib" / "gs_mapping" / exe
        p.write_text(_FAKE_EXE.format(python=sys.executable, out=str(out)))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    shutil.copytree(REPO / "config", share / "gs_mapping" / "config")
    shutil.copytree(REPO / "launch", share / "gs_mapping" / "launch")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # launch_ros' params files
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "gs_mapping" / "launch" / file)),
        launch_arguments=list(arguments.items()),
    )
    service = launch.LaunchService()
    service.include_launch_description(launch.LaunchDescription([include]))
    rc = service.run()
    return rc, {f.stem: json.loads(f.read_text()) for f in out.glob("*.json")}


def _built(rclpy, name: str, argv: list[str]):
    """The node ``name`` as its entry point builds it from ``argv`` (rclpy.init, then create_node)."""
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import create_node

    if name in ("hd_map_node", "mapper_node"):  # (the Humble venv has no torch)
        pytest.importorskip("torch")
    context = rclpy.Context()
    rclpy.init(args=argv, context=context)
    node, obj = create_node(node_class(name), context)
    return context, node, obj


@pytest.mark.parametrize("name", ONE_NODE)
@pytest.mark.parametrize("given", [False, True], ids=["defaults", "every-argument"])
def test_each_one_node_launch_file_starts_its_node_as_asked(
    ros, launch_api, tmp_path, monkeypatch, name, given
):
    rclpy, _ = ros
    from gs_mapping.runtime.rclpy_runtime import close_node

    monkeypatch.chdir(tmp_path)  # (map_server_node's store_path in full.yaml is relative)
    arguments = {"namespace": "r3", **GIVEN[name]} if given else {}
    rc, ran = _launch(launch_api, tmp_path, monkeypatch, f"{name}.launch.py", arguments)
    assert rc == 0 and set(ran) == {name}, (rc, sorted(ran))
    argv = ran[name]["argv"]
    assert _fqn_of(argv) == (f"/r3/{name}" if given else f"/{name}")
    context, node, obj = _built(rclpy, name, argv)
    try:
        assert node.get_fully_qualified_name() == (f"/r3/{name}" if given else f"/{name}")
        assert node.get_parameter("use_sim_time").value is given  # (full.yaml: false)
        if name in DEVICE:
            # (full.yaml's hd_map_node.device is auto, mapper.device auto)
            assert node.get_parameter(DEVICE[name]).value == ("cpu" if given else "auto")
    finally:
        context.try_shutdown()
        close_node(node, obj)


@pytest.mark.parametrize("name", ONE_NODE)
def test_a_use_sim_time_that_is_no_boolean_starts_nothing(launch_api, tmp_path, monkeypatch, name):
    """``use_sim_time:=ture``: launch stops with the argument named (launch_support.given_overrides),
    no node started on the params file's value."""
    rc, ran = _launch(launch_api, tmp_path, monkeypatch, f"{name}.launch.py", {"use_sim_time": "ture"})
    assert rc != 0 and not ran, (rc, sorted(ran))
