"""Guards, second pass, that what the docs promise is what the code does, checked from outside.

test_docs_promises.py covered README's command table, docs/world.md and docs/format.md. This file
takes docs/ros2_install.md (packages, launch arguments, runtime parameters, the numba figure),
docs/architecture.md (the layer list against pyproject's import-linter contract, the rule on
function-level imports, the device row), docs/fleet.md (region requests and answers), the comments
of config/full.yaml (what a parameter does, run on the real component) and README's "Measured"
table (each figure is in a file under bench/results/). Every test reads the doc's own text and
compares it with the code run on a tiny input or with an independent reading of the source (AST,
TOML). Where the doc and the code disagree the test is ``xfail(strict=True)`` with the reason."""

from __future__ import annotations

import ast
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_docs_promises import _table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL_MD = (ROOT / "docs" / "ros2_install.md").read_text()
ARCH_MD = (ROOT / "docs" / "architecture.md").read_text()
FLEET_MD = (ROOT / "docs" / "fleet.md").read_text()
FULL_YAML = (ROOT / "config" / "full.yaml").read_text()
RESULTS = ROOT / "bench" / "results"


def _flat(text: str) -> str:
    """Markdown prose with line breaks folded, so a sentence can be matched across wrapped lines."""
    return re.sub(r"\s+", " ", text)


def _yaml_comment(key_path: str) -> str:
    """The comment line right above ``key:`` in config/full.yaml (the parameter's documented meaning)."""
    lines = FULL_YAML.splitlines()
    section, key = key_path.rsplit(".", 1)
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{section.split('.')[-1]}:")
    i = next(k for k in range(start, len(lines)) if lines[k].strip().startswith(f"{key}:"))
    return lines[i - 1].strip().lstrip("# ")


# ------------------------------------------------------------------------------------------------
# docs/ros2_install.md


def test_install_md_apt_and_pip_packages_are_package_xml_and_requirements_ros():
    # the two lists of "Two kinds of dependencies" against the files they name
    package_xml = (ROOT / "package.xml").read_text()
    keys = set(re.findall(r"<exec_depend>([^<]+)</exec_depend>", package_xml))
    apt = re.search(r"packages the distro ships: (.*?)\.\n", INSTALL_MD, re.S).group(1)
    names = re.findall(r"`(-?[\w-]+)`", apt)
    want = {"python3-" + n.lstrip("-").removeprefix("python3-") for n in names}
    assert want == {k for k in keys if k.startswith("python3-")}
    for ros_pkg in ("rclpy", "launch", "launch_ros", "ros2launch", "rosbag2_storage_mcap", "rviz2"):
        assert ros_pkg in keys
    req = (ROOT / "requirements-ros.txt").read_text()
    pip_names = {re.split(r"[<>=;\s]", line)[0].lower() for line in req.splitlines() if line[:1].isalpha()}
    for doc_name, pip_name in (
        ("rosbags", "rosbags"),
        ("constriction", "constriction"),
        ("cyclonedds", "cyclonedds"),
        ("eclipse-zenoh", "eclipse-zenoh"),
        ("xxhash", "xxhash"),
        ("crc32c", "crc32c"),
        ("the zstd backport", "backports.zstd"),
    ):
        assert doc_name in _flat(INSTALL_MD)
        assert pip_name in pip_names
    # "Its ranges admit the distro's numpy, scipy": Humble's 1.21.5 / 1.8.0 from the doc's table
    assert "numpy>=1.21.5" in req and "scipy>=1.8.0" in req


def test_install_md_runtime_parameters_are_the_nodes_runtime_parameters():
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.nodes.map_server_node import MapServerNode
    from gs_mapping.nodes.mapper_node import MapperNode

    para = re.search(r"Parameters that a running node applies.*?All others", INSTALL_MD, re.S).group(0)
    documented = set(re.findall(r"`(\w+\.\w+)`", para))
    code = set().union(
        *(c.runtime_parameters for c in (HDMapNode, MapperNode, MapReceiverNode, MapServerNode))
    )
    assert documented == code


def test_install_md_launch_arguments_are_full_launch_py_declarations():
    # parsed as an AST: launch / launch_ros are not installed here
    tree = ast.parse((ROOT / "launch" / "full.launch.py").read_text())
    declared = {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument"
    }
    para = re.search(r"Launch arguments: (.*?)\n\n", INSTALL_MD, re.S).group(1)
    documented = set(re.findall(r"`(\w+):=", para))
    assert documented == declared == {"params_file", "device", "use_sim_time", "namespace", "rviz"}


def test_launch_given_overrides_only_when_given_as_install_md_says():
    from gs_mapping.nodes.launch_support import given_overrides

    assert "override the params file only when given" in _flat(INSTALL_MD)
    assert given_overrides({"use_sim_time": "", "mapper.device": ""}) == {}
    assert given_overrides({"use_sim_time": "true", "mapper.device": "cpu"}) == {
        "use_sim_time": True,
        "mapper.device": "cpu",
    }


def _numba_speedups_in_readme() -> list[float]:
    row = next(r for r in _table(README, "| what | figure | script |") if "GS_MAP_SHARE_NUMBA=0" in r[0])
    pairs = re.findall(r"decode SH\d ([\d.]+) vs ([\d.]+) M/s|SH\d ([\d.]+) vs ([\d.]+) M/s; encode", row[1])
    ratios = []
    for p in pairs:
        a, b = (p[0], p[1]) if p[0] else (p[2], p[3])
        ratios.append(float(a) / float(b))
    return ratios


def test_readme_numba_decode_figures_are_in_bench_results_codec_speed():
    row = next(r for r in _table(README, "| what | figure | script |") if "GS_MAP_SHARE_NUMBA=0" in r[0])
    speed = (RESULTS / "codec_speed.md").read_text()
    for fig in re.findall(r"decode SH3 ([\d.]+) vs ([\d.]+)", row[1])[0]:
        assert fig in speed
    assert len(_numba_speedups_in_readme()) == 2


def test_install_md_numba_decode_speedup_matches_the_measured_one():
    lo, hi = map(float, re.search(r"decoding a map is ([\d.]+)–([\d.]+)×", _flat(INSTALL_MD)).groups())
    for ratio in _numba_speedups_in_readme():
        assert lo <= round(ratio, 1) <= hi, ratio


# ------------------------------------------------------------------------------------------------
# docs/architecture.md


def _contract() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the numpy-1 venv may be older)
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]


def _contract_layers() -> list[set[str]]:
    cfg = _contract()
    return [set(re.split(r"\s*[:|]\s*", layer.strip())) for layer in cfg["layers"]]


def test_architecture_md_application_and_middle_layers_are_the_contracts():
    layers = _contract_layers()
    assert layers[0] == {"gs_mapping.cli", "gs_mapping.demo"}
    assert layers[1] == {"gs_mapping.runtime"} and layers[2] == {"gs_mapping.nodes"}
    assert layers[3] == {"gs_map_share", "gsmap_hd"}
    # "independent: neither imports the other" is the contract's `|` (not `:`)
    cfg = _contract()
    assert "|" in cfg["layers"][3] and ":" not in cfg["layers"][3]
    assert "independent: neither imports the other" in _flat(ARCH_MD)


def test_architecture_md_core_layer_lists_every_core_module_of_the_contract():
    block = ARCH_MD[ARCH_MD.index(" core ") : ARCH_MD.index("```", ARCH_MD.index(" core "))]
    block = re.sub(r"\([^)]*\)", "", block.split("gs_mapping:", 1)[1])
    documented = {"gs_mapping." + w.strip() for w in _flat(block).split(",")}
    assert documented == _contract_layers()[4]


def test_every_gs_mapping_module_is_in_some_layer_of_the_contract():
    # a module outside every layer would escape the one-way rule architecture.md promises
    listed = set().union(*_contract_layers())
    pkg = ROOT / "src" / "gs_mapping"
    mods = {
        "gs_mapping." + (p.stem if p.is_file() else p.name)
        for p in pkg.iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists()
    }
    assert mods <= listed, sorted(mods - listed)


def _printed_by_a_fresh_python(code: str, timeout: int) -> str:
    """What ``python -c code`` prints in a fresh interpreter that sees only the project's src/ (so
    what the code imports is all that is loaded)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_cli_builds_every_commands_options_without_the_heavy_dependencies():
    """architecture.md: imports inside functions defer the heavy or optional dependencies so that
    `gs-mapping --help` builds every command's options without loading any of them (it once said
    function-level imports were only for those, while 41 standard-library ones stood in functions)."""
    flat = _flat(ARCH_MD)
    assert "Imports inside functions defer what a command may not need" in flat
    assert "`gs-mapping --help` builds every command's options without loading" in flat
    heavy = ("torch", "cyclonedds", "zenoh", "rclpy", "onnxruntime")
    code = (
        "import sys; from gs_mapping.cli import build_parser; build_parser().format_help(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    assert _printed_by_a_fresh_python(code, timeout=120) == "[]"


def test_mapper_device_accepts_cuda_index_as_architecture_md_says():
    from gs_mapping.errors import ConfigError
    from gs_mapping.mapping.mapper_config import MapperConfig

    row = next(r for r in _table(ARCH_MD, "| concern |") if r[0].startswith("device choice"))
    assert "`cuda[:N]`" in row[0] and "mapper" in row[2]
    try:
        MapperConfig(device="cuda:1")  # a config only: no device is touched here
    except ConfigError as exc:
        pytest.fail(f"mapper config refuses cuda:1: {exc}")


def test_import_gs_map_share_loads_neither_torch_nor_constriction():
    assert "`import gs_map_share` still loads neither torch nor constriction" in _flat(ARCH_MD)
    code = "import sys, gs_map_share; print(sorted(m for m in ('torch', 'constriction') if m in sys.modules))"
    assert _printed_by_a_fresh_python(code, timeout=60) == "[]"


# ------------------------------------------------------------------------------------------------
# config/full.yaml comments, run on the component


def _still_camera():
    from gs_mapping.camera import Camera

    return Camera(K=[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], width=64, height=48)


@pytest.mark.parametrize("max_gap", [1, 2, 4])
def test_keyframe_max_gap_is_frames_without_a_keyframe(max_gap):
    from gs_mapping.mapping.keyframes import KeyframeSelector
    from gs_mapping.mapping.mapper_config import KeyframeConfig

    assert _yaml_comment("keyframe.max_gap").startswith(
        "A frame this many mapping frames after the last keyframe is one in any case (1 = every frame"
    )
    sel = KeyframeSelector(KeyframeConfig(max_gap=max_gap))
    cam, depth = _still_camera(), np.full((48, 64), 2.0)  # a camera that never moves: only the gap decides
    flags = [sel.decide(cam, depth).is_keyframe for _ in range(12)]
    keys = [i for i, f in enumerate(flags) if f]
    assert keys[0] == 0
    # the documented rule: keyframes max_gap frames apart (it once said max_gap frames *without* one)
    assert {b - a for a, b in zip(keys, keys[1:], strict=False)} == {max_gap}


def test_keyframe_max_gap_zero_never_forces():
    from gs_mapping.mapping.keyframes import KeyframeSelector
    from gs_mapping.mapping.mapper_config import KeyframeConfig

    assert "0 = never force)" in _yaml_comment("keyframe.max_gap")
    sel = KeyframeSelector(KeyframeConfig(max_gap=0))
    cam, depth = _still_camera(), np.full((48, 64), 2.0)
    assert [sel.decide(cam, depth).is_keyframe for _ in range(6)] == [True] + [False] * 5


def test_holdout_every_one_is_refused_although_its_range_admits_it():
    # full.yaml says [0, 100000]; 1 would hold out every frame: refused with a reason (not a crash)
    from gs_mapping.errors import ConfigError
    from gs_mapping.mapping.mapper_config import MapperConfig

    assert _yaml_comment("mapper.holdout_every").endswith("[0, 100000]")
    with pytest.raises(ConfigError, match="holdout_every"):
        MapperConfig(holdout_every=1)


# ------------------------------------------------------------------------------------------------
# docs/fleet.md: region requests and answers


def test_region_request_bounds_are_fleet_md():
    from gs_map_share.region import RegionError, RegionRequest

    flat = _flat(FLEET_MD)
    assert "Request (UTF-8 JSON, ≤ 4 kB)" in flat and "`max_bytes` (≥ 1024, capped at" in flat
    ok = {"x": 1.0, "y": 2.0, "z": 0.0, "radius_m": 10.0, "max_bytes": 10**9, "id": "a"}
    r = RegionRequest.from_bytes(json.dumps(ok).encode(), 100.0, 4096)
    assert r.max_bytes == 4096  # capped at max_region_bytes
    bad = [
        {**ok, "radius_m": 0},  # 0 < R
        {**ok, "radius_m": 100.5},  # R ≤ max_region_radius_m
        {**ok, "max_level": 256},  # 0..255
        {**ok, "max_bytes": 1023},  # ≥ 1024
        {**ok, "colour": 1},  # unknown field
        {**ok, "x": float("nan")},  # non-finite
    ]
    for req in bad:
        with pytest.raises(RegionError):
            RegionRequest.from_bytes(json.dumps(req).encode(), 100.0, 4096)
    with pytest.raises(RegionError):  # > 4 kB
        RegionRequest.from_bytes(json.dumps({**ok, "id": "x" * 5000}).encode(), 100.0, 4096)


def test_region_answer_layout_and_fields_are_fleet_md():
    from gs_map_share.quantize import QMap, QuantParams
    from gs_map_share.region import RegionRequest, answer

    flat = _flat(FLEET_MD)
    fields = re.search(r"JSON `\{([^}]*)\}`, then one ordinary snapshot", flat).group(1)
    documented = {f.strip() for f in fields.split(",")}
    params = QuantParams.from_quality(3)
    out = answer(RegionRequest(0.0, 0.0), QMap.empty(0), params, map_id=7, seq=5, tile_seq={}).to_bytes()
    # "GSRQ", u16 version 1, u32 JSON length, JSON
    assert out[:4] == b"GSRQ"
    version, n = struct.unpack_from("<HI", out, 4)
    assert version == 1
    assert set(json.loads(out[10 : 10 + n])) == documented


def test_region_module_docstring_answer_fields_are_the_code():
    import gs_map_share.region as region
    from gs_map_share.region import RegionAnswer

    doc = _flat(region.__doc__)
    part = doc[doc.index("the JSON (") : doc.index("), then one ordinary snapshot")]
    named = set(re.findall(r"``(\w+)``", part))
    assert named <= set(RegionAnswer.__dataclass_fields__) - {"container"}


def test_region_since_seq_beyond_the_map_is_an_error():
    from gs_map_share.quantize import QMap, QuantParams
    from gs_map_share.region import RegionError, RegionRequest, answer

    assert "beyond the map's sequence: an error" in _flat(FLEET_MD)
    with pytest.raises(RegionError):
        answer(
            RegionRequest(0.0, 0.0, since_seq=6),
            QMap.empty(0),
            QuantParams.from_quality(3),
            map_id=7,
            seq=5,
            tile_seq={},
        )


# ------------------------------------------------------------------------------------------------
# README "Measured": every figure has its source under bench/results/


def test_readme_measured_scripts_exist():
    for row in _table(README, "| what | figure | script |"):
        script = row[-1].strip("`").split()[0]
        if script.startswith("bench/"):
            assert (ROOT / script).is_file(), script


def test_readme_surround_intermediate_figures_have_a_source():
    row = next(r for r in _table(README, "| what | figure | script |") if "surround model" in r[0])
    found = re.search(
        r"after the first 800 steps: ([\d.]+) / ([\d.]+), `(bench/results/[^`]+)` as of commit (\w+)", row[1]
    )
    assert found, row[1]  # the figures name where they were measured: an older version of a result file
    *figs, path, commit = found.groups()
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, text=True)
    if old.returncode:  # a shallow clone without that commit
        pytest.skip(f"commit {commit} is not in this clone")
    for fig in figs:
        assert fig in old.stdout, fig


def test_readme_fleet_figures_are_bench_results_fleet_md():
    row = next(r for r in _table(README, "| what | figure | script |") if r[0].startswith("fleet:"))
    fleet = (RESULTS / "fleet.md").read_text() + (RESULTS / "fleet.json").read_text()
    for fig in re.findall(r"\d+", row[1].split("(")[0]):
        assert fig in fleet, fig
