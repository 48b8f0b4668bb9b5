"""Launch files, RViz config and config/full.yaml name only nodes, parameters and topics that exist.

rclpy/launch cannot run here, so the launch files are checked as Python ASTs: every Node action
names an executable that setup.py installs, every parameter override names a declared parameter,
and every topic RViz shows is one our nodes publish (or the world/bag inputs).
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


def test_receiver_defaults_listen_to_the_mappers_topics():
    from gs_mapping.nodes.map_receiver_node import MapReceiverNodeConfig

    cfg = MapReceiverNodeConfig()
    assert cfg.delta_topic == resolve_topic("~/map_delta", "mapper_node")
    assert cfg.snapshot_topic == resolve_topic("~/map_snapshot", "mapper_node")


def test_node_config_dataclasses_have_defaults():
    for n in NODES:
        for c in node_class(n).sections.values():
            c()  # every field has a default
            assert dataclasses.is_dataclass(c)


def test_full_yaml_holds_the_defaults_of_every_node_section():
    """config/full.yaml is the defaults file: each node section equals its dataclass defaults."""
    for n in NODES:
        cls = node_class(n)
        loaded = cls.load_config(REPO / "config" / "full.yaml")
        for section, cfg_cls in cls.sections.items():
            assert section in read_parameters(REPO / "config" / "full.yaml"), f"no {section} section"
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
