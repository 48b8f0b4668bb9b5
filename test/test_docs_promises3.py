"""Guards, third pass, that what the docs promise is what the code does, for this session's changes.

test_docs_promises.py and test_docs_promises2.py covered README's command table, docs/world.md,
format.md, ros2_install.md, architecture.md, fleet.md's region queries and full.yaml's comments.
This file takes what changed since: parameter files as rcl/rclpy read them (node keys ``/ns/name``,
``/*``, ``/**``, nested namespaces, dotted names, rcl's typing; README "Parameters",
ros2_install.md), ``hd_map_node.tf_wait_s`` (README "Live input", full.yaml), the region JSON form of
docs/hd_model.md (a part with holes, an empty region) through ``hd-eval``, the bounds the ``--help``
of ``hd-eval --indent``, ``play --rate`` and ``router``/``run --duration`` state, tf2's frame-id rule,
temp names beside a long output (README "Nothing already good is lost"), the receiver bound of
docs/fleet.md, the fusion figures of README / hd_model.md against bench/results, and ``make test``'s
Humble run (README "Layout"). Each test reads the doc's own text where practical and compares the
code with it, a hand-built input with a hand-computed answer, or tf2's / rclpy's rule. None needs
torch (the file runs in the Humble venv too)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
from test_docs_promises import _table
from test_docs_promises2 import _flat

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HD_MD = (ROOT / "docs" / "hd_model.md").read_text()
FLEET_MD = (ROOT / "docs" / "fleet.md").read_text()
INSTALL_MD = (ROOT / "docs" / "ros2_install.md").read_text()
FULL_YAML = (ROOT / "config" / "full.yaml").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def _cli(*argv) -> int:
    from gs_mapping.cli import main

    return main([str(a) for a in argv])


def _one_line_error(capsys, rc: int, *names: str) -> str:
    """README: bad input is one error line naming the argument, exit status 2."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, err
    return err


# ------------------------------------------------------------------------------------------------
# Parameter files, as rcl and rclpy read them


_PARAMS = """\
/**:
  ros__parameters:
    map_receiver_node:
      publish_rate_hz: 2
/car1/map_receiver_node:
  ros__parameters:
    map_receiver_node.min_opacity: 5e-4
/*/map_receiver_node:
  ros__parameters:
    map_receiver_node:
      max_pending: 7
/car2:
  map_receiver_node:
    ros__parameters:
      map_receiver_node:
        max_pending: 9
other_node:
  ros__parameters:
    map_receiver_node:
      max_pending: 11
"""


@pytest.mark.parametrize(
    "namespace, want",
    [
        # rclpy's rule: /** any tokens, /* one, a key without '/' is '/name', later keys win
        ("", {"publish_rate_hz": 2.0, "min_opacity": 0.05, "max_pending": 256}),
        ("car1", {"publish_rate_hz": 2.0, "min_opacity": 5e-4, "max_pending": 7}),
        ("car2", {"publish_rate_hz": 2.0, "min_opacity": 0.05, "max_pending": 9}),
    ],
)
def test_parameter_file_keys_apply_to_the_node_they_name(tmp_path, namespace, want):
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode

    # README: config/full.yaml is keyed /** and is the file the CLI reads; a float parameter
    # accepts an integer (ros2_install.md: `publish_rate_hz: 2`)
    assert (
        "(keyed `/**:`)" in _flat(README)
        and "A float parameter accepts an integer (`publish_rate_hz: 2`)" in INSTALL_MD
    )
    path = tmp_path / "p.yaml"
    path.write_text(_PARAMS)
    cfg = MapReceiverNode.load_config(str(path), namespace=namespace)["map_receiver_node"]
    got = {k: getattr(cfg, k) for k in want}
    assert got == pytest.approx(want)
    assert type(cfg.publish_rate_hz) is float  # an integer taken as the double the parameter is
    # 5e-4: a double for rcl (YAML 1.1's resolver in PyYAML reads it as the string '5e-4')
    assert type(cfg.min_opacity) is float


def test_full_yaml_is_keyed_double_star_and_read_under_any_namespace():
    # the defaults file applies to every node, whatever its namespace (launch's namespace:=robot1)
    from gs_mapping.config_file import read_parameters

    assert FULL_YAML.splitlines()[5] == "/**:"
    whole = read_parameters(ROOT / "config" / "full.yaml")
    for fqn in ("/mapper_node", "/robot1/mapper_node", "/a/b/c/mapper_node"):
        assert read_parameters(ROOT / "config" / "full.yaml", fqn) == whole


# ------------------------------------------------------------------------------------------------
# hd_map_node.tf_wait_s (README "Live input")


def test_hd_map_node_tf_wait_s_is_declared_with_full_yaml_value_and_comment():
    from gs_mapping.config_file import describe
    from gs_mapping.nodes.hd_map_node import HDMapNodeConfig

    flat = _flat(README)
    assert "`hd_map_node`'s lanes wait for their map pose the same way (`hd_map_node.tf_wait_s`)" in flat
    assert "(`mapper_node.tf_wait_s`, 0.5 s, as tf2's message filter does)" in flat
    d = describe(HDMapNodeConfig)["tf_wait_s"]
    lines = FULL_YAML.splitlines()
    start = lines.index("    hd_map_node:")
    i = next(k for k in range(start, len(lines)) if lines[k].strip().startswith("tf_wait_s:"))
    assert float(lines[i].split(":")[1]) == d["default"] == 0.5  # "the same way": 0.5 s as the mapper's
    comment = lines[i - 1].strip().lstrip("# ")
    lo, hi = d["range"]
    assert comment == f"{d['description']} [{lo}, {hi}]"
    assert "as tf2's message filter does" in comment and "0: no wait" in comment


# ------------------------------------------------------------------------------------------------
# docs/hd_model.md: the region JSON form, through hd-eval


def _eval(tmp_path, capsys, results, gts, *opts) -> dict:
    path = tmp_path / f"e{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps({"results": results, "GTs": gts}))
    capsys.readouterr()
    assert _cli("hd-eval", path, *opts) == 0
    return json.loads(capsys.readouterr().out)


_SQUARE = [[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0], [-10.0, -10.0]]
_HOLE = [[-2.0, -2.0], [2.0, -2.0], [2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0]]


def test_region_with_a_hole_clips_the_gt_out_of_the_hole(tmp_path, capsys):
    flat = _flat(HD_MD)
    assert "`[ring, hole, …]` for a part with holes" in flat
    assert "`hd-eval` (`--region file`, default, clips the GT of such frames the same way" in flat
    # a divider across the hole: clipped it is two pieces, x in [-8, -2] and [2, 8] (hand-computed)
    gt = {"vectors": [{"pts": [[-8.0, 0.0], [8.0, 0.0]], "type": 0}]}
    pieces = [[[-8.0, 0.0], [-2.0, 0.0]], [[2.0, 0.0], [8.0, 0.0]]]
    pred = {
        "vectors": [
            {"pts": p, "type": 0, "confidence_level": s} for p, s in zip(pieces, (0.9, 0.8), strict=True)
        ],
        "region": [[_SQUARE, _HOLE]],
    }
    out = _eval(tmp_path, capsys, [pred], [gt])
    assert out["region_clipped_frames"] == 1
    assert out["chamfer"]["num_gts"][0] == 2  # the hole cut the GT line in two
    assert out["chamfer"]["class_ap"][0] == pytest.approx(1.0)  # the pieces are exactly the clipped GT
    # --region none: scored as written, the one GT line against two halves
    raw = _eval(tmp_path, capsys, [pred], [gt], "--region", "none")
    assert raw["chamfer"]["num_gts"][0] == 1 and raw["chamfer"]["class_ap"][0] < 0.5


def test_empty_region_clips_to_nothing_as_a_frame_without_vectors(tmp_path, capsys):
    assert "`[]` where the cameras see no ground" in _flat(HD_MD)
    assert "an empty region to nothing" in _flat(HD_MD)
    gt = {"vectors": [{"pts": [[-8.0, 0.0], [8.0, 0.0]], "type": 2}]}
    pred = {"vectors": [{"pts": [[-8.0, 0.0], [8.0, 0.0]], "type": 2, "confidence_level": 0.9}], "region": []}
    out = _eval(tmp_path, capsys, [pred], [gt])
    # the reference: the same frame with its vectors removed by hand
    ref = _eval(tmp_path, capsys, [{"vectors": []}], [{"vectors": []}])
    assert out["region_clipped_frames"] == 1
    out.pop("region_clipped_frames"), ref.pop("region_clipped_frames")
    assert out == ref


def test_region_written_by_region_coords_is_the_documented_form():
    shapely = pytest.importorskip("shapely.geometry")
    from gsmap_hd.region import Region

    with_hole = Region("x", shapely.Polygon(_SQUARE, [_HOLE])).coords()
    assert len(with_hole) == 1 and len(with_hole[0]) == 2  # one part: [ring, hole]
    assert with_hole[0][0][0] == [-10.0, -10.0] and with_hole[0][1][0] == [-2.0, -2.0]
    plain = Region("x", shapely.Polygon(_SQUARE)).coords()
    assert plain == [_SQUARE]  # one ring [[x, y], ...] per part
    assert Region("x", shapely.Polygon()).coords() == []


# ------------------------------------------------------------------------------------------------
# Numeric options: the bounds their --help states


def _help(cmd: str) -> str:
    from gs_mapping.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return _flat(sub.choices[cmd].format_help())


@pytest.mark.parametrize("indent", [0, 3, 16])
def test_hd_eval_indent_prints_json_indented_by_that_many_spaces(tmp_path, capsys, indent):
    assert "--indent INDENT indent the printed JSON by 0..16 spaces" in _help("hd-eval")
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"results": [{"vectors": []}], "GTs": [{"vectors": []}]}))
    capsys.readouterr()
    assert _cli("hd-eval", path, "--indent", indent) == 0
    out = capsys.readouterr().out.rstrip("\n")
    assert out == json.dumps(json.loads(out), indent=indent)  # json's own layout at that indent


@pytest.mark.parametrize("indent", ["-1", "17"])
def test_hd_eval_indent_outside_its_range_is_one_line(tmp_path, capsys, indent):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"results": [], "GTs": []}))
    _one_line_error(capsys, _cli("hd-eval", path, "--indent", indent), "--indent")


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf", "0.0009", "1001"])
def test_play_rate_must_be_a_speed_factor(tmp_path, capsys, rate):
    # "playback speed factor": zero, negative or NaN would wait for ever or never; refused first,
    # before the bag is opened and before any transport starts
    assert "--rate RATE playback speed factor (default 1.0)" in _help("play")
    _one_line_error(capsys, _cli("play", tmp_path / "no_bag", "--rate", rate), "--rate")


@pytest.mark.parametrize("cmd", [["router"], ["run", "map_receiver_node"]])
@pytest.mark.parametrize("duration", ["0", "-1", "nan"])
def test_duration_must_be_seconds_above_zero(capsys, cmd, duration):
    # "stop after this many seconds": refused before the router / node starts (no port opened)
    assert "--duration DURATION stop after this many seconds" in _help(cmd[0])
    _one_line_error(capsys, _cli(*cmd, "--duration", duration), "--duration")


@pytest.mark.parametrize("frame", ["/map", ""])
def test_encode_frame_id_follows_tf2(tmp_path, capsys, frame):
    # tf2's BufferCore::validateFrameId refuses an empty frame id and one starting with '/'
    from test_docs_promises import _write_ply

    ply = tmp_path / "s.ply"
    _write_ply(ply, n=20)
    rc = _cli("encode", ply, tmp_path / "o.gsd", "--frame-id", frame)
    _one_line_error(capsys, rc, "--frame-id")
    assert not (tmp_path / "o.gsd").exists()


# ------------------------------------------------------------------------------------------------
# README "Nothing already good is lost": the temp file beside a long output name


def test_output_named_at_the_file_name_limit_is_written_and_no_temp_is_left(tmp_path, capsys):
    from test_docs_promises import _write_ply

    assert "every output is written to a temp file (or directory) beside it" in _flat(README)
    ply = tmp_path / "s.ply"
    _write_ply(ply, n=20)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    name = "a" * 251 + ".gsd"  # 255 bytes: NAME_MAX; a temp name "beside" it must stay legal
    assert _cli("encode", ply, out_dir / name) == 0, capsys.readouterr().err
    assert [p.name for p in out_dir.iterdir()] == [name]
    # the same scene encoded under a short name: the same bytes (the long name changed nothing)
    assert _cli("encode", ply, tmp_path / "ref.gsd") == 0
    assert (out_dir / name).read_bytes() == (tmp_path / "ref.gsd").read_bytes()


# ------------------------------------------------------------------------------------------------
# docs/fleet.md: the receiver's bound, and the server's warning


def test_fleet_md_receiver_bound_is_the_receivers_default_and_the_servers_threshold():
    from gs_map_share.receiver import DEFAULT_MAX_GAUSSIANS
    from gs_mapping.config_file import describe
    from gs_mapping.nodes.map_receiver_node import MapReceiverNodeConfig

    flat = _flat(FLEET_MD)
    assert "a receiver following a large fleet needs `map_receiver_node.max_gaussians` above" in flat
    assert "the server says once when the global map outgrows that parameter's default" in flat
    default = describe(MapReceiverNodeConfig)["max_gaussians"]["default"]
    lines = FULL_YAML.splitlines()
    start = lines.index("    map_receiver_node:")
    yaml_value = next(
        int(ln.split(":")[1]) for ln in lines[start:] if ln.strip().startswith("max_gaussians:")
    )
    # the server warns above the receiver module's constant: it must be the node parameter's default
    assert DEFAULT_MAX_GAUSSIANS == default == yaml_value
    src = (ROOT / "src" / "gs_mapping" / "nodes" / "map_server_node.py").read_text()
    assert "n > DEFAULT_MAX_GAUSSIANS and not self._said_beyond_receivers" in src


# ------------------------------------------------------------------------------------------------
# README / hd_model.md: the fusion figures this session changed, against bench/results


def test_fusion_figures_are_bench_results_hd_md():
    row = next(r for r in _table(README, "| what | figure | script |") if "lane map fused over 48" in r[0])
    pairs = re.findall(r"([\d.]+) vs ([\d.]+)", row[1])
    hd = (ROOT / "bench" / "results" / "hd.md").read_text()
    got = {(m, f) for m, f in re.findall(r"\| \d+ \| 48 \| ([\d.]+) \| ([\d.]+) \|", hd)}
    assert set(pairs) == got
    # hd_model.md's table, 48-frame column (the bold figure) of each drive
    for seed, (m, f) in zip(("424242", "31337"), pairs, strict=True):
        assert re.search(rf"\| {seed} map \|.*\*\*{m}\*\*", HD_MD)
        assert re.search(rf"\| {seed} frames \|.*\| {f} \|", HD_MD)
    assert "(31337: 0.641 → 0.646" in _flat(HD_MD)


# ------------------------------------------------------------------------------------------------
# README "Layout": `make test` and its Humble run


def _make_var(name: str) -> str:
    m = re.search(rf"^{name} [:?]?= (.*?)(?<!\\)$", MAKEFILE, re.S | re.M)
    return m.group(1).replace("\\\n", " ")


def test_make_test_runs_lint_suite_numpy1_then_humble_as_readme_says():
    flat = _flat(README)
    assert (
        "`make test` runs `make lint`, the test suite, then the core/message/node/codec tests again" in flat
    )
    assert "then every test file that needs no torch under ROS 2 Humble's Python" in flat
    recipe = re.search(r"^test: (.*?)\n\n", MAKEFILE, re.S | re.M).group(0)
    assert recipe.startswith("test: lint")
    order = [recipe.index(s) for s in ("-m pytest", "test-numpy1", "test-humble")]
    assert order == sorted(order)


def test_humble_venv_pins_the_versions_readme_names():
    m = re.search(
        r"CPython (\d+\.\d+) with numpy ([\d.]+) and scipy ([\d.]+) \(`(\.venv-\w+)`, `([\w.-]+)`",
        _flat(README),
    )
    py, numpy, scipy, venv, req = m.groups()
    pins = (ROOT / req).read_text()
    assert f"numpy=={numpy}\n" in pins and f"scipy=={scipy}\n" in pins
    assert not re.search(r"^torch", pins, re.M)  # "needs no torch": the venv has none
    assert _make_var("VENVH") == venv
    assert f"sys.version_info[:2] == ({py.replace('.', ', ')})" in MAKEFILE


def test_make_test_humble_without_python_310_says_so_and_passes():
    # README: "skipped with a line where no Python 3.10 is found"
    assert "skipped with a line where no Python 3.10 is found: pyenv's, else `python3.10`" in _flat(README)
    py310 = _make_var("PY310")
    assert py310.index(".pyenv/versions/3.10") < py310.index(" python3.10;")  # pyenv's first
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "test-humble", "PY310="],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode == 127 or "No such file" in out.stderr and "make" in out.stderr:
        pytest.skip("make not installed")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1 and "skipped" in out.stdout


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _module_path(mod: str) -> Path | None:
    for base in (ROOT / "src", ROOT / "test"):
        p = base.joinpath(*mod.split("."))
        if p.with_suffix(".py").is_file():
            return p.with_suffix(".py")
        if (p / "__init__.py").is_file():
            return p / "__init__.py"
    return None


def _loads_torch(mod: str, seen: set[str]) -> bool:
    """Whether importing ``mod`` imports torch through module-level imports (ours followed)."""
    if mod.split(".")[0] == "torch":
        return True
    if mod in seen:
        return False
    seen.add(mod)
    path = _module_path(mod)
    if path is None:
        return False
    parents = [".".join(mod.split(".")[:k]) for k in range(1, mod.count(".") + 1)]
    return any(_loads_torch(m, seen) for m in [*parents, *_top_level_imports(path)])


def test_humble_test_files_need_no_torch_at_import():
    need = set(re.findall(r"test_\w+\.py", _make_var("HUMBLE_NEED_TORCH")))
    for name in need:  # a name for a file that is not there would silently run nothing
        assert (ROOT / "test" / name).is_file(), name
    humble = sorted(p for p in (ROOT / "test").glob("test_*.py") if p.name not in need)
    assert Path(__file__) in humble  # this file too: none of its tests needs torch
    loading = [p.name for p in humble if _loads_torch(p.stem, set())]
    assert loading == []


# ------------------------------------------------------------------------------------------------
# encode's hint: the metre presets are coarse for a scene in other units (README: `--relative`
# "scales the lattice to the scene (trained scenes in arbitrary units)")


@pytest.mark.parametrize(
    "scale, relative, hinted", [(1.0, False, False), (0.05, False, True), (0.05, True, False)]
)
def test_encode_names_relative_for_a_scene_a_few_steps_wide(tmp_path, caplog, scale, relative, hinted):
    import logging

    import numpy as np
    from test_docs_promises import _write_ply

    assert "`--relative` scales the lattice to the scene (trained scenes in arbitrary units)" in _flat(README)
    ply = tmp_path / "s.ply"
    a = _write_ply(ply, n=200)
    # the scene at `scale`: positions uniform in ±2 m (4 m = 4,000 steps of quality 2's 1 mm) or
    # ±0.1 units (200 steps of 1 mm: its Gaussians would share lattice points)
    data = np.frombuffer(ply.read_bytes()[-a.nbytes :], "<f4").reshape(a.shape).copy()
    data[:, 0:3] *= scale
    ply.write_bytes(ply.read_bytes()[: -a.nbytes] + data.tobytes())
    with caplog.at_level(logging.WARNING):
        assert _cli("encode", ply, tmp_path / "o.gsd", *(["--relative"] if relative else [])) == 0
    said = [r.getMessage() for r in caplog.records if "--relative" in r.getMessage()]
    assert bool(said) == hinted, said


# ------------------------------------------------------------------------------------------------
# docs/hd_model.md: "a 6 × 24 m crossing driven past, perfect views: IoU 0.58 → 0.94"


def test_hd_model_md_crossing_iou_figure_is_what_the_lane_map_gives():
    pytest.importorskip("torch")  # (test_outside_hd_map's drive loads the HD model's modules)
    shapely = pytest.importorskip("shapely.geometry")
    import numpy as np
    import test_outside_hd_map as drive

    fig = re.search(r"a 6 × 24 m crossing driven past, perfect views: IoU ([\d.]+) → ([\d.]+)", _flat(HD_MD))
    assert fig, "figure not found"
    # the crossing of test_outside_hd_map: 6 m along the road, 24 m across it, views every 2 m
    ring = np.array([[80.0, -12], [86, -12], [86, 12], [80, 12], [80, -12]])
    m = drive._drive([(1, ring)], [drive._pose(x, 0.0, 0.0) for x in np.arange(0, 120, 2)])
    (lane,) = m.published()
    got, truth = shapely.Polygon(lane.points), shapely.Polygon(ring)
    iou = got.intersection(truth).area / got.union(truth).area
    assert round(iou, 2) == float(fig.group(2))


# ------------------------------------------------------------------------------------------------
# README "Live input": the nodes start their stamps over "at a frame more than 5 s back, or at the
# second frame in a row not after the last one taken"


def test_stamps_start_over_by_readmes_two_rules():
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.replay import ReplayBus

    m = re.search(
        r"start their stamps over: at a frame more than (\d+) s back, or at the second frame in a row not after",
        _flat(README),
    )
    limit_ns = int(m.group(1)) * 10**9
    last = 100 * 10**9

    def node():
        return MapReceiverNode(
            ReplayBus().context("map_receiver_node", ""), MapReceiverNode.load_config(None)
        )

    # more than 5 s back: at once; 5 s back or less: a late message, alone
    assert node().time_went_back(last - limit_ns - 1, last) is True
    assert node().time_went_back(last - limit_ns, last) is False
    # the second frame in a row not after the last one (a bag shorter than 5 s, looping)
    rx = node()
    assert [rx.time_went_back(last - 10**8, last), rx.time_went_back(last - 9 * 10**7, last)] == [False, True]
    # a frame after the last one between them breaks the row
    rx = node()
    assert [rx.time_went_back(s, last) for s in (last - 1, last + 1, last - 1)] == [False, False, False]


# ------------------------------------------------------------------------------------------------
# config_file.read_parameters: "merged in file order as rclpy does". rcl_yaml_param_parser keeps ONE
# entry per node name, at the place of its first occurrence (parse.c find_node returns the existing
# index; a later value of the same parameter overwrites it: "Overwriting, deallocate original"), and
# rclpy (Iron and later: node.cpp _populate_node_parameters_from_rcl_params, regex per entry) applies
# the matching entries in that index order. A node key written twice (flat, then nested) with a
# /** entry between them therefore gives the /** value under ROS, and the second entry's here.


def test_a_node_key_written_twice_takes_its_first_place_as_rcl_does(tmp_path):
    from gs_mapping.config_file import read_parameters

    path = tmp_path / "p.yaml"
    path.write_text(
        "/car1/map_receiver_node:\n  ros__parameters:\n    map_receiver_node: {max_pending: 1}\n"
        "/**:\n  ros__parameters:\n    map_receiver_node: {max_pending: 2}\n"
        "/car1:\n  map_receiver_node:\n    ros__parameters:\n      map_receiver_node: {max_pending: 3}\n"
    )
    # rcl: entries ['/car1/map_receiver_node' {max_pending: 3}, '/**' {max_pending: 2}]; rclpy
    # updates the node's parameters entry by entry: 3, then 2
    got = read_parameters(path, "/car1/map_receiver_node")["map_receiver_node"]["max_pending"]
    assert got == 2
