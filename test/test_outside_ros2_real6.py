"""Outside review (sixth pass) of issue 20 (ROS 2 for real): the package as colcon installs it, its
package.xml as REP 149's schema reads it, and parameter precedence as rcl + rclpy's C layer decide it.

New angles, not in test_rclpy_runtime.py / test_ros_packaging.py / test_launch_config.py /
test_outside_ros2_nodes.py / test_outside_ros2_qos.py / test_outside_ros2_real3.py .. real5.py:

- ``colcon build`` of an ament_python package runs setuptools itself (colcon-core's
  task/python/build.py: ``setup.py egg_info … build … install --record … --install-scripts <from
  setup.cfg> --single-version-externally-managed install_data``). Nothing in the suite ran
  setup.py/setup.cfg: here the REAL setuptools of the venv installs a copy of the package into
  tmp_path, and what ``ros2 run`` / ``ros2 launch`` / ament_index_python look for is checked in
  that tree.
- ``package.xml`` against REP 149's format-3 schema (ros-infrastructure/rep, xsd/package_format3.xsd
  and package_common.xsd), ported below rule for rule (lxml/xmlschema are not in the venv).
- Several parameter sources of one node (``ros2 launch`` hands a node its params file, then one
  file per launch-argument dict; ``ros2 run … --ros-args --params-file F -p x:=v``): rcl merges them
  all into ONE rcl_params_t whose node entries keep the order in which each key first appeared
  (ros2/rcl humble, rcl/src/rcl/arguments.c: every ``--params-file`` and ``-p`` go into
  ``args_impl->parameter_overrides``; ``-p`` under node name ``/**``, _rcl_parse_param_rule;
  rcl_yaml_param_parser/src/parse.c ``find_node``: an existing key is reused, a new one appended),
  and rclpy applies the matching entries in that order, a later entry overwriting an earlier one
  (ros2/rclpy humble and jazzy, src/rclpy/node.cpp ``_populate_node_parameters_from_rcl_params``).
  launch_ros (humble and jazzy, actions/node.py ``_create_params_file_from_dict``) keys a
  parameter dict by the node's full name when name and namespace are given, as our launch files
  give them. Ported below and compared with test/rclpy_standin.py (which every rclpy test uses)
  and with the launch files' promise "device:= overrides the params file when given".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(os.environ.get("GS_MAPPING_REPO", Path(__file__).resolve().parents[1]))
PACKAGE = "gs_mapping"


# ------------------------------------------------------------------------------------------------
# colcon's ament_python install, done by the real setuptools


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A copy of the package installed as ``colcon build`` installs an ament_python package
    (colcon-ros delegates to colcon-core's colcon_core/task/python/build.py): ``setup.py egg_info
    --egg-base <build> build --build-base <build>/build install --record <build>/install.log
    --install-scripts <setup.cfg [install] install-scripts|install_scripts, read by colcon with
    ConfigParser and passed on the command line because setuptools ignores it in a venv>
    --single-version-externally-managed install_data``, run in the package directory; the
    install base is given here as ``--prefix`` (colcon-core now sets it through a sitecustomize
    prefix override). Returns (install prefix, site-packages)."""
    import importlib.util

    # (a Python 3.12 venv has none unless installed; looked up, not imported: importing setuptools
    # here fails its own distutils check once another test loaded distutils (pip's distlib) into
    # this process, and setup.py runs in a child anyway)
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here")
    from configparser import ConfigParser

    tmp = tmp_path_factory.mktemp("colcon")
    src = tmp / "src" / PACKAGE
    src.mkdir(parents=True)
    for name in ("setup.py", "setup.cfg", "package.xml", "pyproject.toml"):
        shutil.copy2(REPO / name, src / name)
    for name in ("resource", "launch", "config", "src"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = tmp / "build" / PACKAGE
    build.mkdir(parents=True)
    prefix = tmp / "install" / PACKAGE
    cfg = ConfigParser()
    cfg.optionxform = str
    cfg.read(src / "setup.cfg")
    scripts = cfg.get("install", "install-scripts", fallback=None) or cfg.get(
        "install", "install_scripts", fallback=None
    )
    cmd = [sys.executable, "setup.py", "egg_info", "--egg-base", str(build)]
    cmd += ["build", "--build-base", str(build / "build")]
    cmd += ["install", "--prefix", str(prefix), "--record", str(build / "install.log")]
    cmd += ["--install-scripts", scripts] if scripts else []
    cmd += ["--single-version-externally-managed", "install_data"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    purelib = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    return prefix, purelib


def _ament_prefix(package: str, ament_prefix_path: list[Path]) -> Path:
    """ament_index_python.packages.get_package_prefix (ros2/ament_index, humble): the first prefix
    of AMENT_PREFIX_PATH holding share/ament_index/resource_index/packages/<package>."""
    for p in ament_prefix_path:
        if (p / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return p
    raise LookupError(f"package {package!r} not found")


def ast_walk(path: Path) -> list[dict]:
    """Keyword constants of each launch_ros ``Node(...)`` call of a launch file."""
    import ast

    calls = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Node":
            calls.append({k.arg: k.value.value for k in n.keywords if isinstance(k.value, ast.Constant)})
    return calls


def test_colcon_install_is_found_by_ament_index_and_holds_the_share_files(installed):
    """What ``ros2 launch gs_mapping full.launch.py`` needs from the install: ament_index_python
    finds the package by its marker (share/ament_index/resource_index/packages/gs_mapping, from
    resource/), and get_package_share_directory (prefix/share/<pkg>) holds package.xml, every
    launch file of launch/, and the config files the launch files name (full.yaml, the RViz
    config). Checked in the tree the real setuptools wrote, not in setup.py's text."""
    prefix, _ = installed
    assert _ament_prefix(PACKAGE, [prefix.parent / "other", prefix]) == prefix
    share = prefix / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    for launch_file in sorted((REPO / "launch").glob("*.launch.py")):
        assert (share / "launch" / launch_file.name).is_file(), launch_file.name
    # what the launch files open under share/ (os.path.join(share, "config", ...))
    named = set()
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        named |= set(re.findall(r'"config",\s*"([^"]+)"', launch_file.read_text()))
    assert named >= {"full.yaml", "gs_mapping.rviz"}, named
    for name in named:
        assert (share / "config" / name).is_file(), name


def test_every_executable_a_launch_file_names_is_where_ros2_run_looks(installed):
    """launch_ros' ExecutableInPackage and ``ros2 run`` (ros2pkg get_executable_paths) run
    <prefix>/lib/<package>/<executable>, an executable file. Every ``Node(package="gs_mapping",
    executable=…)`` of the launch files must be there after the install (setup.cfg's
    install_scripts=$base/lib/gs_mapping, passed on by colcon, is what puts them there; without
    it they go to bin/)."""
    prefix, _ = installed
    lib = prefix / "lib" / PACKAGE
    wanted = {
        call["executable"]
        for f in (REPO / "launch").glob("*.launch.py")
        for call in ast_walk(f)
        if call.get("package") == PACKAGE
    }
    assert wanted >= {"hd_map_node", "mapper_node", "map_receiver_node", "map_server_node"}
    for exe in sorted(wanted):
        path = lib / exe
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing or not executable"
    assert not (prefix / "bin" / "mapper_node").exists()


def test_the_installed_scripts_resolve_to_the_rclpy_entry_points(installed):
    """The console script colcon installs finds its entry point through importlib.metadata
    (setuptools' script template: distribution(<name>).entry_points) in the installed egg-info:
    run in a fresh interpreter that sees only the install (as ``source install/setup.bash`` puts it
    on PYTHONPATH), each node's entry point loads to the rclpy runtime's main function and the
    shipped HD-map checkpoints are installed as package data (hd_map_node's default model)."""
    prefix, purelib = installed
    script = (prefix / "lib" / PACKAGE / "mapper_node").read_text()
    assert "console_scripts" in script and "mapper_node" in script
    code = (
        "import importlib.metadata as m, sys\n"
        "eps = {e.name: e for e in m.distribution('gs_mapping').entry_points if e.group == 'console_scripts'}\n"
        "for n in ('hd_map_node', 'mapper_node', 'map_receiver_node', 'map_server_node'):\n"
        "    f = eps[n].load()\n"
        "    print(n, f.__module__, f.__name__, sys.modules[f.__module__].__file__)\n"
        "import gsmap_hd, pathlib\n"
        "print('assets', sorted(p.name for p in (pathlib.Path(gsmap_hd.__file__).parent / 'assets').iterdir()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(purelib), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    for n in ("hd_map_node", "mapper_node", "map_receiver_node", "map_server_node"):
        module, func, file = lines[n].split(" ")
        assert module == "gs_mapping.runtime.rclpy_runtime" and func == f"main_{n}"
        assert Path(file).resolve().is_relative_to(purelib.resolve()), file
    shipped = sorted(p.name for p in (REPO / "src" / "gsmap_hd" / "assets").iterdir())
    assert lines["assets"] == str(shipped)


def test_launch_support_imports_with_the_standard_library_only(installed):
    """``ros2 launch`` runs in /usr/bin/python3 (the ros2 script's interpreter), not in the
    docs' venv: the launch files' import of gs_mapping.nodes.launch_support must not pull a
    package that only the venv has (rosbags, torch, …) or even numpy/yaml. Run in an isolated
    interpreter (-I -S: no site-packages at all) that sees only the install."""
    _, purelib = installed
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import gs_mapping.nodes.launch_support\n"
        "print(sorted({k.split('.')[0] for k in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-B", "-I", "-S", "-c", code, str(purelib)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['gs_mapping']"


# ------------------------------------------------------------------------------------------------
# package.xml against REP 149's format-3 schema

# xsd/package_format3.xsd: <xs:sequence> of the package element (min, max occurrences); the
# dependency <xs:choice> is one slot
_DEPS = {
    "build_depend",
    "build_export_depend",
    "buildtool_depend",
    "buildtool_export_depend",
    "exec_depend",
    "depend",
    "doc_depend",
    "test_depend",
    "conflict",
    "replace",
}
_SEQUENCE = [
    ({"name"}, 1, 1),
    ({"version"}, 1, 1),
    ({"description"}, 1, 1),
    ({"maintainer"}, 1, None),
    ({"license"}, 1, None),
    ({"url"}, 0, None),
    ({"author"}, 0, None),
    (_DEPS, 0, None),
    ({"group_depend"}, 0, None),
    ({"member_of_group"}, 0, None),
    ({"export"}, 0, 1),
]
_NAME = r"[a-z](_?[a-z0-9]+)*"  # package_format3.xsd
_VERSION = r"(0|[1-9][0-9]*)(.(0|[1-9][0-9]*)){2}"  # package_common.xsd VersionType
_EMAIL = r"[-a-zA-Z0-9_%+]+(\.[-a-zA-Z0-9_%+]+)*@[-a-zA-Z0-9%]+(\.[-a-zA-Z0-9%]+)*\.[a-zA-Z]{2,}"
_DEP_CONDITION = r"[$A-Za-z0-9_\s<>!=()-]*"


def _rep149_errors(root: ET.Element) -> list[str]:
    errors = []
    if root.tag != "package" or root.get("format") != "3":
        errors.append(f'root <{root.tag} format={root.get("format")!r}>: expected <package format="3">')
    children = [c for c in root if isinstance(c.tag, str)]
    i = 0
    for names, lo, hi in _SEQUENCE:
        n = 0
        while i < len(children) and children[i].tag in names:
            n += 1
            i += 1
        if n < lo or (hi is not None and n > hi):
            errors.append(f"{sorted(names)}: {n} elements, the schema allows {lo}..{hi or 'unbounded'}")
    if i < len(children):
        errors.append(f"<{children[i].tag}> at position {i + 1} is out of the schema's order or unknown")
    for c in children:
        text = " ".join((c.text or "").split())  # xs:token
        if c.tag == "name" and not re.fullmatch(_NAME, text):
            errors.append(f"name {text!r}")
        if c.tag == "version" and not re.fullmatch(_VERSION, text):
            errors.append(f"version {text!r}")
        if c.tag == "maintainer" and not re.fullmatch(_EMAIL, c.get("email") or ""):
            errors.append(f"maintainer email {c.get('email')!r}")
        if c.tag == "author" and c.get("email") is not None and not re.fullmatch(_EMAIL, c.get("email")):
            errors.append(f"author email {c.get('email')!r}")
        if c.tag in _DEPS:
            if not text:
                errors.append(f"<{c.tag}> is empty")
            cond = c.get("condition")
            if cond is not None and not re.fullmatch(_DEP_CONDITION, cond):
                errors.append(f"<{c.tag} condition={cond!r}>")
            if len(c):
                errors.append(f"<{c.tag}> has child elements (simple content only)")
    return errors


def test_the_rep149_port_as_written():
    """The port above on what the schema itself refuses: a dependency before the license, a
    second <version>, a package name with a capital or a double underscore, a maintainer
    without an email, format="2"."""
    ok = (
        '<package format="3"><name>a_b</name><version>1.0.0</version><description>d</description>'
        '<maintainer email="a@b.org">m</maintainer><license>MIT</license>'
        "<exec_depend>rclpy</exec_depend><export><build_type>ament_python</build_type></export></package>"
    )
    assert _rep149_errors(ET.fromstring(ok)) == []
    bad = [
        ok.replace(
            "<license>MIT</license><exec_depend>rclpy</exec_depend>",
            "<exec_depend>rclpy</exec_depend><license>MIT</license>",
        ),
        ok.replace("<version>1.0.0</version>", "<version>1.0.0</version><version>1.0.1</version>"),
        ok.replace("<name>a_b</name>", "<name>A_b</name>"),
        ok.replace("<name>a_b</name>", "<name>a__b</name>"),
        ok.replace(' email="a@b.org"', ""),
        ok.replace('format="3"', 'format="2"'),
        ok.replace("<version>1.0.0</version>", "<version>1.0</version>"),
    ]
    for text in bad:
        assert _rep149_errors(ET.fromstring(text)), text


def test_package_xml_is_valid_against_rep149_format3():
    """rosdep, bloom, colcon-ros and the buildfarm read package.xml by REP 149; its own
    <?xml-model?> line names package_format3.xsd. Element order, cardinality, name/version/email
    patterns, dependency content, as that schema has them."""
    root = ET.parse(REPO / "package.xml").getroot()
    assert _rep149_errors(root) == []


def test_package_xml_setup_py_and_the_module_say_the_same_name_and_version():
    """colcon-ros builds an ament_python package by its package.xml (name, version) but installs
    what setup.py says (the egg-info's name and version, the ament index marker
    resource/<name>); ``ros2 pkg xml`` / bloom read package.xml, ``pip show`` and
    importlib.metadata the egg-info: the three must agree."""
    root = ET.parse(REPO / "package.xml").getroot()
    name, version = root.findtext("name").strip(), root.findtext("version").strip()
    setup_text = (REPO / "setup.py").read_text()
    assert re.search(r'PACKAGE\s*=\s*"([^"]+)"', setup_text).group(1) == name
    assert re.search(r'version\s*=\s*"([^"]+)"', setup_text).group(1) == version
    assert (REPO / "resource" / name).is_file()
    import gs_mapping

    assert gs_mapping.__version__ == version


# ------------------------------------------------------------------------------------------------
# parameter precedence: rcl's merged rcl_params_t, applied by rclpy in entry order


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def rcl_rclpy_overrides(args: list[str], fqn: str) -> dict:
    """The parameter overrides rclpy gives node ``fqn`` for a ``--ros-args`` command line:

    rcl (arguments.c) parses every ``--params-file`` and ``-p`` into one rcl_params_t, in
    command-line order; a node key found again is the same entry (parse.c find_node: strcmp on the
    key as written), a new key is appended; ``-p name:=value`` goes to node ``/**`` (``-p
    node:name:=value`` to node ``node``, the rule's optional node-name prefix); a parameter set
    again in an entry is overwritten there (find_parameter). rclpy (node.cpp) then walks the entries
    in order, keeps those whose key (a leading '/' added, '/*' -> '(/\\w+)') matches ``fqn``, and
    writes their parameters into one dict, later entries overwriting earlier ones. Plain YAML
    values only (the files below hold nothing rcl would type differently from PyYAML)."""
    entries: dict[str, dict] = {}  # insertion order = rcl_params_t node order
    it = iter(args)
    for a in it:
        if a == "--params-file":
            for doc in yaml.safe_load_all(Path(next(it)).read_text()):
                for key, block in doc.items():
                    params: dict = {}
                    _flatten("", block["ros__parameters"], params)
                    entries.setdefault(key, {}).update(params)
        elif a in ("-p", "--param"):  # [node_name:]param_name:=value (_rcl_parse_param_rule)
            rule, _, value = next(it).partition(":=")
            node, _, name = rule.rpartition(":")
            entries.setdefault(node or "/**", {})[name] = yaml.safe_load(value)
    out: dict = {}
    for key, params in entries.items():
        key = key if key.startswith("/") else "/" + key
        if re.fullmatch(key.replace("/*", r"(/\w+)"), fqn):
            out.update(params)
    return out


def _launch_ros_dict_file(tmp_path: Path, fqn: str, params: dict, n: int) -> str:
    """launch_ros actions/node.py _create_params_file_from_dict: a dict of ``parameters=[…]``
    becomes a YAML file keyed by the node's full name (name and namespace given, as in our
    launch files), passed as the next ``--params-file``."""
    f = tmp_path / f"launch_params_{n}.yaml"
    f.write_text(yaml.dump({fqn: {"ros__parameters": params}}, default_flow_style=False))
    return str(f)


# a user's params file: the node's own block first, then shared defaults keyed /** (as
# `gs-mapping params` prints them); rclpy applies the /** entry last
_NODE_THEN_DEFAULTS = """\
/hd_map_node:
  ros__parameters:
    hd_map_node:
      camera_topics: [/front/image_raw]
/**:
  ros__parameters:
    hd_map_node:
      device: auto
      score_threshold: 0.3
"""

# the common layout: shared settings in /**, the node's own block after it
_DEFAULTS_THEN_NODE = """\
/**:
  ros__parameters:
    use_sim_time: false
/map_receiver_node:
  ros__parameters:
    map_receiver_node:
      min_opacity: 0.25
"""


def test_the_rcl_rclpy_port_as_written(tmp_path):
    """The port on cases that follow directly from the code cited above: a later file overwrites an
    earlier one for the same key; ``-p`` overrides a ``/**`` file; a node key applies to that
    node only; a node-keyed entry that came first is overwritten by a /** entry that came
    later (rclpy applies entries in rcl's order; the node key gives no precedence)."""
    a = tmp_path / "a.yaml"
    a.write_text("/**:\n  ros__parameters:\n    x: 1\n    y: 1\n")
    b = tmp_path / "b.yaml"
    b.write_text("/**:\n  ros__parameters:\n    x: 2\n/other:\n  ros__parameters:\n    y: 9\n")
    assert rcl_rclpy_overrides(["--params-file", str(a), "--params-file", str(b)], "/n") == {"x": 2, "y": 1}
    assert rcl_rclpy_overrides(["--params-file", str(a), "-p", "y:=5"], "/n") == {"x": 1, "y": 5}
    c = tmp_path / "c.yaml"
    c.write_text("/n:\n  ros__parameters:\n    x: 3\n/**:\n  ros__parameters:\n    x: 4\n")
    assert rcl_rclpy_overrides(["--params-file", str(c)], "/n") == {"x": 4}
    assert rcl_rclpy_overrides(["--params-file", str(c)], "/ns/n") == {"x": 4}
    assert rcl_rclpy_overrides(["-p", "n:x:=7", "-p", "m:x:=8"], "/n") == {"x": 7}


@pytest.mark.parametrize(
    "case",
    ["node_then_defaults_and_launch_dict", "defaults_then_node_and_minus_p", "minus_p_with_node_prefix"],
)
def test_the_standin_reads_several_parameter_sources_as_rcl_and_rclpy_do(tmp_path, case):
    """test/rclpy_standin.py stands in for rcl's argument and YAML handling in every rclpy test
    (test_rclpy_runtime, test_outside_ros2_*): its node_parameters says 'in order, later wins'
    per FILE and puts ``-p`` after all files. Real rcl + rclpy order by node entry (module
    docstring), so the two disagree on (1) what ``ros2 launch … device:=cuda`` hands hd_map_node
    when the params file has the node's block before a /** block, (2) ``ros2 run …
    --params-file F -p map_receiver_node.min_opacity:=0.9`` when F has /** before the node's
    block, (3) ``-p map_receiver_node:map_receiver_node.min_opacity:=0.9`` (rcl's node-name
    prefix of a parameter rule), which the stand-in takes as a parameter named
    'map_receiver_node:map_receiver_node.min_opacity'. The rclpy tests then check behaviour
    ROS 2 does not have."""
    import rclpy_standin

    if case == "node_then_defaults_and_launch_dict":
        f = tmp_path / "mine.yaml"
        f.write_text(_NODE_THEN_DEFAULTS)
        fqn = "/hd_map_node"
        args = ["--params-file", str(f)]
        args += ["--params-file", _launch_ros_dict_file(tmp_path, fqn, {"hd_map_node.device": "cuda"}, 1)]
    elif case == "defaults_then_node_and_minus_p":
        f = tmp_path / "mine.yaml"
        f.write_text(_DEFAULTS_THEN_NODE)
        fqn = "/map_receiver_node"
        args = ["--params-file", str(f), "-p", "map_receiver_node.min_opacity:=0.9"]
    else:
        fqn = "/map_receiver_node"
        args = ["-p", "map_receiver_node:map_receiver_node.min_opacity:=0.9"]
    parsed = rclpy_standin.parse_ros_args(["--ros-args", *args])
    # (fixed: parse_ros_args keeps files and -p rules in one list, in command-line order)
    standin = rclpy_standin.node_parameters(parsed["params"], fqn)
    assert standin == rcl_rclpy_overrides(args, fqn)


def test_a_given_device_argument_reaches_hd_map_node_whatever_the_params_file_layout(tmp_path):
    """README / docs/ros2_install.md: '`device:=` and `use_sim_time:=` override the params file
    only when given'. hd_map_node.launch.py / full.launch.py pass [params_file,
    given_overrides({'hd_map_node.device': device}), …]; launch_ros writes the dict keyed
    '/hd_map_node' (name and namespace given) as the next --params-file. With a params file
    that holds the node's own block and then the defaults under /** (as `gs-mapping params`
    prints them), rcl reuses the file's '/hd_map_node' entry for the override and rclpy applies
    the later /** entry over it: the node runs on 'auto'. (A fix: key the launch override by a
    name no params file uses, e.g. write it as its own file under '/**/hd_map_node', so rcl appends
    it as the last entry.)"""
    from gs_mapping.nodes.launch_support import override_params_files

    user = tmp_path / "mine.yaml"
    user.write_text(_NODE_THEN_DEFAULTS)
    # (fixed: the launch files pass the given arguments as override_params_files' own file; the
    # launch_ros dict file keyed by the node's name is what they passed before, and what a user
    # file's key would merge into)
    for fqn in ("/hd_map_node", "/robot1/hd_map_node"):
        args = ["--params-file", str(user)]
        for f in override_params_files(
            "hd_map_node", {"hd_map_node.device": "cuda", "use_sim_time": ""}, str(tmp_path)
        ):
            args += ["--params-file", f]
        got = rcl_rclpy_overrides(args, fqn)
        assert got["hd_map_node.device"] == "cuda", fqn
        # the rest of the user's file stands
        assert got["hd_map_node.score_threshold"] == 0.3 and "use_sim_time" not in got
