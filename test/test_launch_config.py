"""Launch files, RViz config and config/full.yaml name only nodes, parameters and topics that exist.

ROS 2's `launch`/`launch_ros` are not on PyPI, so here the launch files are checked as Python ASTs:
every Node action names an executable that setup.py installs, every parameter override names a
declared parameter, every topic RViz shows is one our nodes publish (or the world/bag inputs); what
the launch files compute from their arguments (gs_mapping.nodes.launch_support) is tested directly.
They were run through the real `launch` (jazzy branch) by hand: README, "What was tested where".
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from gs_mapping.config_file import describe, read_parameters
from gs_mapping.nodes.context import resolve_topic
from gs_mapping.nodes.registry import NODES, node_class

REPO = Path(__file__).resolve().parents[1]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))


def _console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "=" in node.value
            and ":" in node.value
        ):
            names.add(node.value.split("=")[0].strip())
    return names


def _declared(node_name: str) -> set[str]:
    cls = node_class(node_name)
    return {f"{section}.{p}" for section, c in cls.sections.items() for p in describe(c)}


def _node_calls(path: Path) -> list[dict]:
    """Keyword arguments (constants and dict keys) of each launch_ros Node(...) call."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            kw = {k.arg: k.value for k in node.keywords}
            entry = {k: v.value for k, v in kw.items() if isinstance(v, ast.Constant)}
            params = set()
            for sub in ast.walk(kw.get("parameters", ast.List(elts=[]))):
                if isinstance(sub, ast.Dict):
                    params |= {k.value for k in sub.keys if isinstance(k, ast.Constant)}
            entry["param_keys"] = params
            calls.append(entry)
    return calls


def test_there_is_a_launch_file_per_node_and_a_full_one():
    names = {p.name for p in LAUNCH}
    assert "full.launch.py" in names
    assert {f"{n}.launch.py" for n in NODES} <= names


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_files_name_real_executables_and_parameters(path):
    scripts = _console_scripts()
    for call in _node_calls(path):
        if call.get("package") == "rviz2":
            continue
        assert call["package"] == "gs_mapping"
        exe = call["executable"]
        assert exe in NODES and exe in scripts, f"{path.name}: executable {exe} not installed"
        unknown = call["param_keys"] - _declared(exe) - {"use_sim_time"}
        assert not unknown, f"{path.name}: {exe} has no parameter {sorted(unknown)}"


def test_launch_arguments_are_the_documented_ones():
    tree = ast.parse((REPO / "launch" / "full.launch.py").read_text())
    declared = {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "DeclareLaunchArgument"
    }
    assert declared == {"params_file", "use_sim_time", "device", "namespace", "rviz"}


def test_full_yaml_only_holds_declared_parameters():
    params = read_parameters(REPO / "config" / "full.yaml")
    known_sections = {s for n in NODES for s in node_class(n).sections}
    for section, values in params.items():
        if section not in known_sections:
            continue  # CLI-only sections (e.g. codec) are checked by their own loaders
        declared = {p for n in NODES for p in _declared(n) if p.startswith(section + ".")}
        flat = {f"{section}.{k}" for k in _flatten(values)}
        assert flat <= declared, f"config/full.yaml: undeclared {sorted(flat - declared)}"
    for n in NODES:  # and the file loads into every node's config
        node_class(n).load_config(REPO / "config" / "full.yaml")


def _flatten(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def test_rviz_config_shows_topics_that_exist():
    cfg = yaml.safe_load((REPO / "config" / "gs_mapping.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    published = {
        resolve_topic("~/lanes", "hd_map_node"),
        resolve_topic("~/map_cloud", "map_receiver_node"),
    }
    from gs_mapping.world.record import TOPIC_LANES, camera_topics

    inputs = {camera_topics("front")["image"], TOPIC_LANES}
    assert topics <= published | inputs, topics - published - inputs
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


@pytest.mark.parametrize("namespace", ["", "robot1", "/fleet/robot1"])
def test_receiver_defaults_listen_to_the_mappers_topics_in_any_namespace(namespace):
    """Issue 20 #6: the receiver's topics are relative, so under namespace:=robot1 they still name
    the mapper's (which publishes ~/map_delta, i.e. /robot1/mapper_node/map_delta)."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNodeConfig

    for cfg in (
        MapReceiverNodeConfig(),
        node_class("map_receiver_node").load_config(REPO / "config" / "full.yaml")["map_receiver_node"],
    ):
        got = resolve_topic(cfg.delta_topic, "map_receiver_node", namespace)
        assert got == resolve_topic("~/map_delta", "mapper_node", namespace)
        got = resolve_topic(cfg.snapshot_topic, "map_receiver_node", namespace)
        assert got == resolve_topic("~/map_snapshot", "mapper_node", namespace)


def test_namespaced_rviz_configs_are_one_file_per_namespace_in_the_users_folder(tmp_path, monkeypatch):
    """A launch killed by SIGTERM runs no shutdown handler (ros2/launch cancels its run), so the
    namespaced RViz config is not a temporary to remove: one file per namespace in the user's runtime
    folder ($XDG_RUNTIME_DIR, else $ROS_HOME), replaced at each launch, so nothing piles up; two
    namespaces never share a file ('.' is in no ROS name)."""
    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    cfg = tmp_path / "in.rviz"
    cfg.write_text("Value: /map_receiver_node/map_cloud\n")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    first = rviz_config_for_namespace(cfg, "/a/b_c")
    assert Path(first).parent == tmp_path / "ros" / "gs_mapping"
    assert rviz_config_for_namespace(cfg, "/a/b_c") == first  # (replaced, not a second file)
    other = rviz_config_for_namespace(cfg, "a_b/c")
    assert other != first and Path(other).read_text() == "Value: /a_b/c/map_receiver_node/map_cloud\n"
    assert sorted(p.name for p in (tmp_path / "ros" / "gs_mapping").iterdir()) == sorted(
        Path(x).name for x in (first, other)
    )
    (tmp_path / "run").mkdir(mode=0o700)  # (the user's runtime folder exists: XDG spec)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert Path(rviz_config_for_namespace(cfg, "robot1")).parent == tmp_path / "run" / "gs_mapping"
    assert (tmp_path / "run" / "gs_mapping").stat().st_mode & 0o777 == 0o700


def test_rviz_follows_the_namespace():
    """Issue 20 #6: under namespace:=robot1 RViz gets a config whose topics of our nodes are the
    namespaced ones; inputs (camera, ground truth) stay absolute as the bag publishes them."""
    from gs_mapping.nodes.launch_support import namespaced_rviz_config, rviz_config_for_namespace

    text = (REPO / "config" / "gs_mapping.rviz").read_text()
    assert rviz_config_for_namespace(REPO / "config" / "gs_mapping.rviz", "", "/nonexistent") == str(
        REPO / "config" / "gs_mapping.rviz"
    )
    cfg = yaml.safe_load(namespaced_rviz_config(text, "robot1"))
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    from gs_mapping.world.record import TOPIC_LANES, camera_topics

    assert topics == {
        resolve_topic("~/lanes", "hd_map_node", "robot1"),
        resolve_topic("~/map_cloud", "map_receiver_node", "robot1"),
        camera_topics("front")["image"],
        TOPIC_LANES,
    }


def test_launch_arguments_override_the_params_file_only_when_given():
    """Issue 20 #7: device:= and use_sim_time:= default to empty = not given; only given ones become
    parameter overrides (the params file's mapper.device / hd_map_node.device stand otherwise)."""
    from gs_mapping.nodes.launch_support import given_overrides

    assert given_overrides({"mapper.device": "", "use_sim_time": ""}) == {}
    assert given_overrides({"mapper.device": "cuda", "use_sim_time": "true"}) == {
        "mapper.device": "cuda",
        "use_sim_time": True,
    }
    with pytest.raises(ValueError, match="use_sim_time"):
        given_overrides({"use_sim_time": "maybe"})
    for path in LAUNCH:
        tree = ast.parse(path.read_text())
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "DeclareLaunchArgument":
                name = n.args[0].value
                default = {k.arg: k.value for k in n.keywords}.get("default_value")
                if name in ("device", "use_sim_time"):
                    assert isinstance(default, ast.Constant) and default.value == "", (path.name, name)
            if isinstance(n, ast.Dict) and any(
                isinstance(k, ast.Constant)
                and k.value in ("use_sim_time", "mapper.device", "hd_map_node.device")
                for k in n.keys
            ):  # every such override dict is filtered by given_overrides(...), in its own params
                # file (override_params_files): a dict in parameters=[…] is keyed by the node's name
                # and can be applied before the user's /** entry (launch_support.override_key)
                parent = next(c for c in ast.walk(tree) if isinstance(c, ast.Call) and n in c.args)
                assert getattr(parent.func, "id", None) == "override_params_files", (
                    path.name,
                    ast.unparse(n),
                )


def test_given_launch_arguments_become_a_params_file_applied_after_the_users(tmp_path):
    """override_params_files: nothing given, no file; given ones in a params file that rcl reads
    (read here with config_file, the suite's reading of rcl's rules) under a key that matches the
    node in any namespace and that no user file writes, so rcl appends it as the last entry."""
    from gs_mapping.config_file import node_key_matches, parameter_entries
    from gs_mapping.nodes.launch_support import override_key, override_params_files

    assert (
        override_params_files("mapper_node", {"mapper.device": "", "use_sim_time": ""}, str(tmp_path)) == []
    )
    assert list(tmp_path.iterdir()) == []
    (path,) = override_params_files(
        "mapper_node", {"mapper.device": " cuda ", "use_sim_time": "on"}, str(tmp_path)
    )
    assert parameter_entries(path) == [
        (override_key("mapper_node"), {"mapper": {"device": "cuda"}, "use_sim_time": True})
    ]
    for fqn in ("/mapper_node", "/r2/mapper_node", "/a/b/mapper_node"):
        assert node_key_matches(override_key("mapper_node"), fqn)
    assert not node_key_matches(override_key("mapper_node"), "/hd_map_node")
    with pytest.raises(ValueError, match="use_sim_time"):
        override_params_files("mapper_node", {"use_sim_time": "maybe"}, str(tmp_path))


def test_node_config_dataclasses_have_defaults():
    for n in NODES:
        for c in node_class(n).sections.values():
            c()  # every field has a default
            assert dataclasses.is_dataclass(c)


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def test_full_yaml_holds_the_defaults_of_every_node_section():
    """config/full.yaml is the defaults file: each node section equals its dataclass defaults and
    names every parameter (a missing one fell back to its default unnoticed: tf_wait_s was not there)."""
    for n in NODES:
        cls = node_class(n)
        loaded = cls.load_config(REPO / "config" / "full.yaml")
        for section, cfg_cls in cls.sections.items():
            assert section in read_parameters(REPO / "config" / "full.yaml"), f"no {section} section"
            named = _leaves(read_parameters(REPO / "config" / "full.yaml")[section])
            assert named == set(describe(cfg_cls)), (
                f"config/full.yaml: {section} misses {set(describe(cfg_cls)) - named}"
            )
            assert loaded[section] == cfg_cls(), (
                f"config/full.yaml: {section} differs from the code's defaults"
            )


def test_every_parameter_has_a_description_and_numbers_a_range():
    for n in NODES:
        for section, c in node_class(n).sections.items():
            for name, info in describe(c).items():
                assert info["description"], f"{section}.{name} has no description"
                d = info["default"]
                if isinstance(d, (int, float)) and not isinstance(d, bool):
                    assert info["range"] is not None, f"{section}.{name} has no range"
