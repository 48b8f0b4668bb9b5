"""Every declared parameter of every node, fed a bad value: refused where the config is built.

Table-driven over what the nodes declare (``describe`` of each node's sections), so a new parameter
is covered as it is added: a wrong-typed value, a value out of each end of its declared range, and
for the parameters whose values have rules beyond type and range (device names, topic names, tf2
frame ids, enumerations) a value that breaks the rule. A string parameter with no such rule is
listed in ANY_STRING with the reason, so that one is never left out without a word.

Through (a) ``gs-mapping run <node> --config`` (the path ``replay``, ``map`` and the other runtimes
share): exit 2, one line naming the parameter, nothing on stdout (no "ready"), nothing written; (b)
rclpy's own Python code over the test stand-in: ``ros2 run`` with the file (``--params-file``, what
launch passes) exits 2 with one line naming it, and a ``ros2 param set`` of the same value on a
running node is refused, the old value kept, every parameter read-only or runtime alike.
"""

from __future__ import annotations

import pytest
import yaml

from gs_mapping.config_file import describe, unflatten
from gs_mapping.errors import GsMappingError
from gs_mapping.nodes.registry import NODES, node_class

BAD_TOPIC = "bad topic"  # (a space: rcl_validate_topic_name refuses it)

# parameter -> values breaking a rule no type or range states (each with the other parameters
# needed to reach it)
SEMANTIC: dict[str, list] = {
    "hd_map_node.device": ["tpu", "cuda:x", "gpu"],
    "hd_map_node.backend": ["tensorrt"],
    "hd_map_node.onnx_model": [("", {"hd_map_node.backend": "onnx"})],
    "hd_map_node.camera_topics": [[f"/c{i}/image_raw" for i in range(7)], [BAD_TOPIC], ["/cam/theora"]],
    "hd_map_node.base_frame": ["", "/base_link"],
    "hd_map_node.map_frame": ["", "/map"],
    "mapper.device": ["tpu"],
    "mapper.backend": ["vulkan"],
    "mapper.topics.color": [BAD_TOPIC, "/camera/color/image_raw/theora"],
    "mapper.topics.depth": [BAD_TOPIC, "/camera/depth/image_raw/theora"],
    "mapper.topics.camera_info": [BAD_TOPIC, ""],
    "mapper.topics.depth_camera_info": [BAD_TOPIC],
    # (a registered depth has no CameraInfo of its own)
    "mapper.topics.depth_registered": [(True, {"mapper.topics.depth_camera_info": "/cam/depth/camera_info"})],
    "mapper.topics.tf": [BAD_TOPIC, "/tf/"],
    "mapper.topics.tf_static": [BAD_TOPIC],
    "mapper.topics.map_frame": ["", "/map"],
    "mapper_node.cloud_type": ["sensor_msgs/msg/Image"],
    "mapper_node.cloud_topic": [BAD_TOPIC],
    "mapper_node.save_path": ["{tmp}"],  # an existing folder
    "map_receiver_node.delta_topic": [BAD_TOPIC],
    "map_receiver_node.snapshot_topic": [BAD_TOPIC],
    "map_receiver_node.save_path": ["{tmp}"],
    "map_server_node.vehicles": [["bad ns"], ["vehicle1", "/vehicle1"]],
    "map_server_node.delta_topic": [BAD_TOPIC, "/mapper_node/map_delta"],  # absolute: one for all
    "map_server_node.snapshot_topic": [BAD_TOPIC],
    "map_server_node.frame_id": ["", "/map"],
    "map_server_node.region_key": ["fleet/*", "/fleet"],
    "map_server_node.store_path": ["", ":memory:"],
}

# string parameters any string of is a value: what they name is looked for when the node starts
ANY_STRING = {
    "hd_map_node.checkpoint": "a checkpoint file, loaded at start (not found: one line, exit 2)",
    "hd_map_node.onnx_providers": "onnxruntime's providers here, asked at start",
    "mapper_node.load_path": "a PLY file, read at start",
}


def _wrong_type(default):
    if isinstance(default, bool):
        return "maybe"
    if isinstance(default, (int, float)):
        return "many"
    if isinstance(default, str):
        return 7
    if isinstance(default, (list, tuple)):
        return [1, 2] if all(isinstance(v, str) for v in default) else ["a", "b"]
    raise AssertionError(f"no wrong-typed value for {default!r}")


def _out_of_range(default, lo_hi):
    if lo_hi is None or isinstance(default, bool):
        return []
    lo, hi = lo_hi
    step = 1 if isinstance(default, int) else abs(hi) + 1.0
    return [type(default)(lo - step), type(default)(hi + step)]


def _parameters() -> list[tuple[str, str, dict]]:
    """(node, dotted parameter, describe()'s entry) of every parameter every node declares."""
    out = []
    for node in NODES:
        for section, cls in node_class(node).sections.items():
            out += [(node, f"{section}.{k}", v) for k, v in describe(cls).items()]
    return out


def _cases() -> list:
    cases = []
    for node, name, info in _parameters():
        values = [_wrong_type(info["default"]), *_out_of_range(info["default"], info["range"])]
        values += SEMANTIC.get(name, [])
        for v in values:
            value, extra = v if isinstance(v, tuple) else (v, {})
            cases.append(pytest.param(node, name, value, extra, id=f"{name}={value!r}"[:80]))
    return cases


CASES = _cases()


def test_every_string_parameter_has_a_rule_or_a_reason():
    """A string parameter is either checked (SEMANTIC) or says why any string is a value."""
    for _, name, info in _parameters():
        d = info["default"]
        if isinstance(d, str) or (isinstance(d, (list, tuple)) and all(isinstance(x, str) for x in d)):
            assert name in SEMANTIC or name in ANY_STRING, name
    assert not (set(SEMANTIC) | set(ANY_STRING)) - {n for _, n, _ in _parameters()}


def _bad_file(tmp_path, node: str, name: str, value, extra: dict):
    """A parameter file with the bad value, plus where the node would write (all under tmp_path)."""
    value = str(tmp_path) if value == "{tmp}" else value
    writes = {
        "mapper_node": {"mapper_node.save_path": str(tmp_path / "map.ply")},
        "map_receiver_node": {"map_receiver_node.save_path": str(tmp_path / "rx.ply")},
        "map_server_node": {"map_server_node.store_path": str(tmp_path / "fleet.sqlite3")},
    }.get(node, {})
    params = unflatten({**writes, **extra, name: value})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def _names_it(line: str, name: str) -> bool:
    return name in line.replace(": ", ".")  # ("mapper: device must be …" names mapper.device)


@pytest.mark.parametrize("node,name,value,extra", CASES)
def test_a_bad_value_in_the_config_file_stops_gs_mapping_run(tmp_path, capsys, node, name, value, extra):
    from gs_mapping.cli import main

    path = _bad_file(tmp_path, node, name, value, extra)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(GsMappingError) as refused:  # as the file is read, before any node starts
        node_class(node).load_config(str(path))
    assert _names_it(str(refused.value), name), (name, value, refused.value)
    assert main(["run", node, "--config", str(path), "--duration", "5"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and _names_it(lines[0], name), (name, value, err)
    assert "ready" not in out and sorted(tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


# (ros2 run: every case costs a whole rclpy init; one value per parameter, plus the rule cases)
ROS_CASES = [
    c
    for i, c in enumerate(CASES)
    if c.values[1] in SEMANTIC or i == 0 or CASES[i - 1].values[1] != c.values[1]
]


@pytest.mark.parametrize("node,name,value,extra", ROS_CASES)
def test_a_bad_value_in_the_params_file_stops_ros2_run(ros, tmp_path, capsys, node, name, value, extra):
    from rclpy.exceptions import ParameterException
    from rclpy.node import Node

    from gs_mapping.runtime.rclpy_runtime import declare_section, run_node

    path = _bad_file(tmp_path, node, name, value, extra)
    before = sorted(tmp_path.iterdir())
    args = ["node", "--ros-args", "--params-file", str(path)]
    # first (a value let through would start the node): refused as the parameters are declared, before the node object (its endpoints) exists
    context = ros.Context()
    ros.init(args=args, context=context)
    rnode = Node(node, context=context)
    try:
        with pytest.raises((GsMappingError, ParameterException)):
            for section, cls in node_class(node).sections.items():
                declare_section(rnode, section, cls, node_class(node).runtime_parameters)
    finally:
        rnode.destroy_node()
        context.try_shutdown()
    assert run_node(node_class(node), args, ros.Context()) == 2  # (a value let through would spin)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and _names_it(lines[0], name), (name, value, lines)
    assert sorted(tmp_path.iterdir()) == before


def _started(ros, node: str, tmp_path):
    """``node`` running under rclpy (the stand-in) with a quick, loadable config."""
    from gs_mapping.runtime.rclpy_runtime import create_node

    quick = {
        "hd_map_node": {"hd_map_node.device": "cpu"},
        "mapper_node": {"mapper.device": "cpu", "mapper_node.save_path": str(tmp_path / "map.ply")},
        "map_receiver_node": {"map_receiver_node.save_path": str(tmp_path / "rx.ply")},
        "map_server_node": {"map_server_node.store_path": str(tmp_path / "fleet.sqlite3")},
    }[node]
    if node in ("hd_map_node", "mapper_node"):
        pytest.importorskip("torch")
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": unflatten(quick)}}))
    context = ros.Context()
    ros.init(args=["node", "--ros-args", "--params-file", str(path)], context=context)
    return context, create_node(node_class(node), context)


@pytest.mark.parametrize("node", sorted(NODES))
def test_ros2_param_set_of_a_bad_value_is_refused_and_the_old_value_kept(ros, tmp_path, node):
    """Each case of the table as a ``ros2 param set`` (rclpy's set_parameters, what its service
    calls): refused in one line naming the parameter (runtime ones by our check, read-only ones by
    rclpy), the value rclpy and the node hold unchanged."""
    from rclpy.parameter import Parameter

    from gs_mapping.runtime.rclpy_runtime import close_node

    context, (rnode, obj) = _started(ros, node, tmp_path)
    try:
        for case in CASES:
            n, name, value, _ = case.values
            if n != node or isinstance(value, list) and not value:
                continue
            value = str(tmp_path) if value == "{tmp}" else value
            section, _, field = name.partition(".")
            held = _field(obj.config[section], field)
            before = rnode.get_parameter(name).value
            (result,) = rnode.set_parameters([Parameter(name, value=value)])
            assert not result.successful, (name, value)
            assert len(result.reason.strip().splitlines()) == 1, result.reason
            # (rclpy's own type refusal names no parameter: the reply answers the one set)
            rclpy_type = result.reason.startswith("Wrong parameter type")
            assert rclpy_type or _names_it(result.reason, name), (name, result.reason)
            assert rnode.get_parameter(name).value == before, name
            assert _field(obj.config[section], field) == held, name
    finally:
        context.try_shutdown()
        close_node(rnode, obj)


def _field(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return list(cfg) if isinstance(cfg, (list, tuple)) else cfg


def test_descriptions_say_what_the_rules_accept():
    """The ROS-facing description (ParameterDescriptor) states the values a rule accepts."""
    desc = {n: i["description"] for _, n, i in _parameters()}
    for name in ("hd_map_node.device", "mapper.device"):
        assert all(w in desc[name] for w in ("auto", "cpu", "cuda:N")), desc[name]
    for name in ("hd_map_node.base_frame", "hd_map_node.map_frame", "mapper.topics.map_frame"):
        assert "no leading '/'" in desc[name], desc[name]
    assert "1 to 6 cameras" in desc["hd_map_node.camera_topics"]
    assert "torch" in desc["hd_map_node.backend"] and "onnx" in desc["hd_map_node.backend"]
    assert "not :memory:" in desc["map_server_node.store_path"]


def test_a_usable_value_of_each_rule_still_loads(tmp_path):
    """The rules refuse the bad values, not the good ones beside them (cuda:1, a relative topic)."""
    good = {
        "hd_map_node": {"hd_map_node.device": "cuda:1", "hd_map_node.camera_topics": ["cam/image_raw"]},
        "mapper_node": {
            "mapper.device": "cuda:0",
            "mapper.topics.depth_camera_info": "",
            "mapper.topics.depth_registered": True,  # (with auto or '' beside it: no CameraInfo named)
        },
        "map_server_node": {"map_server_node.store_path": str(tmp_path / "f.sqlite3")},
    }
    for node, params in good.items():
        path = tmp_path / f"{node}.yaml"
        path.write_text(yaml.safe_dump({"/**": {"ros__parameters": unflatten(params)}}))
        cfg = node_class(node).load_config(str(path))
        for name, value in params.items():
            section, _, field = name.partition(".")
            assert _field(cfg[section], field) == value
