"""What the launch files compute from their arguments, kept here so it is tested without ROS.

- :func:`given_overrides`: a launch argument overrides the params file only when the user gave it
  (an empty default means "not given"), so ``params_file:=my.yaml`` with ``mapper.device: cuda`` is
  not silently replaced by the launch file's default.
- :func:`override_params_files`: those given arguments as a params file of their own, under a node
  key no user file uses, so that they are applied after everything the user's file says.
- :func:`rviz_config_for_namespace`: RViz's display topics are absolute in ``config/gs_mapping.rviz``;
  under ``namespace:=robot1`` our nodes publish under ``/robot1/…``, so the launch file hands RViz a
  copy whose topics of our nodes carry the namespace (sensor and ground-truth topics stay as they are),
  one file per namespace in :func:`rviz_config_dir`, replaced at each launch.
- :func:`rviz_settings`: what RViz must agree on with the nodes, read from the params file as the
  nodes read it: the Fixed Frame, the view's Target Frame, the camera shown and use_sim_time (the
  copy above is also written where these differ from the shipped config).
- :func:`existing_params_file`: launch_ros only warns about a ``params_file:=`` that is no file and
  starts the nodes on their built-in defaults; the launch files stop instead, naming it.
- :func:`launch_flag`: a true/false launch argument (``rviz:=``) read as launch reads a condition.
- :func:`effective_namespace`: the namespace the nodes run in, a ``PushRosNamespace`` around the
  include (multi-robot launch files) and the ``namespace:=`` argument together.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..output_files import write_text

OUR_NODES = ("hd_map_node", "mapper_node", "map_receiver_node")
# the spellings launch_ros reads as a bool when a Node's parameter value is a substitution (its
# evaluate_parameters takes the string through yaml.safe_load: YAML 1.1 true/yes/on, false/no/off),
# in any case, and 1/0 as launch's IfCondition takes them
_BOOL = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
}


def given_overrides(values: dict[str, str]) -> dict[str, Any]:
    """``{parameter: launch argument value}`` → only the arguments given (non-empty), ``use_sim_time``
    as a bool. Raises ValueError naming a use_sim_time that is no boolean."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        value = value.strip()
        if not value:
            continue
        if name == "use_sim_time":
            if value.lower() not in _BOOL:
                raise ValueError(f"use_sim_time:={value!r}: expected true or false (or yes/no, on/off, 1/0)")
            out[name] = _BOOL[value.lower()]
        else:
            out[name] = value
    return out


def override_key(node: str) -> str:
    """The node key of the launch arguments' params file: ``node`` in any namespace. rcl
    (rcl_yaml_param_parser, find_node) keeps one entry per node key as written, at the place the
    key first appeared among all params files and ``-p`` rules, and rclpy applies a node's matching
    entries in that order, the last one winning. launch_ros keys a ``parameters=[{…}]`` dict by the
    node's full name (``/hd_map_node``): a user file holding ``/hd_map_node:`` before ``/**:`` then
    has the override merged into its first entry, under its later ``/**`` one. ``/**/**/<node>``
    (valid for rcl, matching the node as ``/**/<node>`` does) is a key no params file writes, so rcl
    appends it as the last entry."""
    return f"/**/**/{node}"


def override_params_files(node: str, values: dict[str, str], out_dir: str | None = None) -> list[str]:
    """The launch arguments given (:func:`given_overrides`) as the params file that follows the
    user's in a Node's ``parameters=[…]``: ``[path]``, keyed :func:`override_key`, or ``[]`` when
    none was given. Written as launch_ros writes its own dict files (a temporary ``launch_params_*``
    file that is kept: the node reads it after the launch file returns); values in JSON's syntax,
    which YAML reads as written (strings quoted, so rcl types them as strings)."""
    params = given_overrides(values)
    if not params:
        return []
    lines = [f"{json.dumps(override_key(node))}:", "  ros__parameters:"]
    lines += [f"    {json.dumps(name)}: {json.dumps(value)}" for name, value in params.items()]
    with tempfile.NamedTemporaryFile(
        "w", prefix="launch_params_", suffix=".yaml", dir=out_dir, delete=False
    ) as f:
        f.write("\n".join(lines) + "\n")
    return [f.name]


def launch_flag(name: str, value: str) -> bool:
    """A true/false launch argument as launch's ``evaluate_condition_expression`` (IfCondition) reads
    it: stripped, lower-cased, 'true'/'1' or 'false'/'0'; anything else a ValueError naming it (a
    typo such as ``rviz:=flase`` is an error there, never a silent false)."""
    flag = value.strip().lower()
    if flag not in ("true", "1", "false", "0"):
        raise ValueError(f"{name}:={value!r}: expected true, false, 1 or 0")
    return flag in ("true", "1")


def namespaced_rviz_config(text: str, namespace: str) -> str:
    """RViz config text with the topics of our nodes moved under ``namespace``."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if not ns:
        return text
    nodes = "|".join(OUR_NODES)
    return re.sub(rf"(Value: )(/(?:{nodes})/)", lambda m: m.group(1) + ns + m.group(2), text)


def rviz_config_dir() -> Path:
    """Where the launch files keep their namespaced RViz configs: a folder of this user's own,
    ``$XDG_RUNTIME_DIR/gs_mapping`` where that is set (per user, emptied at logout), else
    ``$ROS_HOME/gs_mapping`` (``~/.ros``, where ROS keeps its logs). Never a predictable name in a
    shared /tmp, and never a temporary folder per launch: a launch stopped by SIGTERM does not run
    its shutdown handlers (ros2/launch cancels its run), so nothing could remove that."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not (runtime and _own_writable_dir(runtime)):  # (the XDG spec: the user's own; not under sudo -E)
        runtime = ""
    base = runtime or os.environ.get("ROS_HOME") or os.path.expanduser("~/.ros")
    if base.startswith("~"):  # no HOME and no passwd entry (a container's bare uid)
        raise ConfigError("no folder for the namespaced RViz config: set HOME, ROS_HOME or XDG_RUNTIME_DIR")
    folder = Path(base) / "gs_mapping"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{folder}: cannot hold the namespaced RViz config ({exc.strerror or exc})"
        ) from None
    return folder


def _own_writable_dir(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return os.path.isdir(path) and st.st_uid == os.getuid() and os.access(path, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class RvizSettings:
    """What RViz must agree on with the nodes; None: as the shipped config has it (the nodes'
    defaults)."""

    fixed_frame: str | None = None  # Global Options > Fixed Frame: the mapper's map frame
    target_frame: str | None = None  # the Orbit view's Target Frame: hd_map_node.base_frame
    camera_topic: str | None = None  # the Camera display's topic: hd_map_node.camera_topics[0]
    use_sim_time: bool | None = None  # the mapper_node's (None: not set)


def rviz_settings(params_file: str | Path, namespace: str) -> RvizSettings:
    """:class:`RvizSettings` from the params file the nodes are started with, read by the loader
    the nodes use (``/**`` and node blocks, namespaced keys, rcl's typing); ConfigError naming the
    file for one rcl refuses. The map cloud is in the mapper's map frame (the receiver publishes
    each snapshot in its frame), the fused lanes in hd_map_node.map_frame: the Fixed Frame is the
    mapper's, as the cloud is what RViz shows most of."""
    from ..config_file import read_parameters  # (PyYAML: a dependency of launch itself)
    from ..errors import ConfigError
    from .context import resolve_topic
    from .registry import node_fqn

    mapper = read_parameters(params_file, node_fqn("mapper_node", namespace))
    hd_params = read_parameters(params_file, node_fqn("hd_map_node", namespace))
    topics = mapper.get("mapper", {}).get("topics", {})
    hd = hd_params.get("hd_map_node", {})
    cameras = hd.get("camera_topics")
    camera = cameras[0] if isinstance(cameras, list) and cameras else None
    sim = mapper.get("use_sim_time")

    def text(v: Any) -> str | None:  # (a value of the wrong type: the node itself names it)
        return v if isinstance(v, str) and v else None

    def camera_topic() -> str | None:  # (as hd_map_node resolves it; a name it refuses, it names)
        try:
            return resolve_topic(camera, "hd_map_node", namespace) if text(camera) else None
        except ConfigError:
            return None

    return RvizSettings(
        fixed_frame=text(topics.get("map_frame")),
        target_frame=text(hd.get("base_frame")),
        camera_topic=camera_topic(),
        use_sim_time=sim if isinstance(sim, bool) else None,
    )


def rviz_config_for_namespace(
    config: str | Path,
    namespace: str,
    out_dir: str | Path | None = None,
    settings: RvizSettings | None = None,
) -> str:
    """The RViz config to start RViz with: ``config`` itself where neither a namespace nor
    ``settings`` change it, else a copy in ``out_dir`` (default :func:`rviz_config_dir`) with our
    nodes' topics under the namespace and ``settings`` applied: one file per namespace, replaced at
    each launch (atomically: a launch starting beside another never hands RViz half a file), so
    launches however stopped leave at most that one small file each."""
    text = namespaced_rviz_config(Path(config).read_text(), namespace)
    if settings is not None:
        text = _rviz_with_settings(text, settings)
    if text == Path(config).read_text():
        return str(config)
    # '.' is in no ROS name: /a/b_c and /a_b/c get files of their own (gs_mapping_.rviz: the root)
    out = Path(out_dir or rviz_config_dir()) / f"gs_mapping_{namespace.strip('/').replace('/', '.')}.rviz"
    write_text(out, text, overwrite=True)
    return str(out)


def _rviz_with_settings(text: str, settings: RvizSettings) -> str:
    """RViz config text with the frames and camera of ``settings`` (``text`` itself where they are
    what it has already)."""
    import yaml  # (only here: a launch with RViz and a params file; launch itself needs PyYAML)

    cfg = yaml.safe_load(text)
    vm = cfg["Visualization Manager"]
    changes = [
        (vm["Global Options"], "Fixed Frame", settings.fixed_frame),
        (vm["Views"]["Current"], "Target Frame", settings.target_frame),
    ]
    # RViz's Image display takes a '.../compressed' topic as the base topic and that transport
    changes += [
        (d["Topic"], "Value", settings.camera_topic)
        for d in vm["Displays"]
        if d["Class"] == "rviz_default_plugins/Image"
    ]
    changed = False
    for where, key, value in changes:
        if value is not None and where.get(key) != value:
            where[key] = value
            changed = True
    return yaml.safe_dump(cfg, sort_keys=False, width=1000) if changed else text


def existing_params_file(path: str) -> str:
    """``path`` where it is a file; else ValueError naming it (``ros2 launch`` reports it, starts
    nothing)."""
    if not Path(path).is_file():
        raise ValueError(f"params_file:={path!r} is not a file (no node started on built-in defaults)")
    return path


def effective_namespace(pushed: str | None, namespace: str) -> str:
    """The namespace launch_ros gives a node: ``namespace`` under the one pushed by an enclosing
    ``PushRosNamespace`` (launch_ros' ``prefix_namespace``: an absolute ``namespace`` is taken as it
    is). '' for the root."""
    namespace = namespace.strip()
    if namespace.startswith("/") or not (pushed or "").strip("/"):
        return namespace
    base = "/" + pushed.strip("/")
    return f"{base}/{namespace}" if namespace else base
