"""Mutation survivors of a random-lines pass over the lines changed in the last sessions (seed 7205):
each test was watched failing on the mutant it names (file:line in its docstring) and passing on
the code as it is.

Each test compares the project with something outside it: the CameraInfo messages of a bag as the
rosbags library reads them, the sensor_msgs/Image rule ``len(data) == step * height``, launch_ros'
documented namespace rule and parameter handling (the launch files run with launch, launch_ros and
ament_index_python stood in by recorders: none is in the venv), rcl_yaml_param_parser's rule for
arrays (one type per array; YAML ``true`` is a bool, not an integer), the mcap library's reader and
writer, the kernel's table of open file descriptors, the PLY layout plyfile reads and writes, the
codec's own receiver (MapStore) following the fleet server, and hand counts."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# hd-predict on a rig of several cameras: each camera's own CameraInfo


@pytest.fixture(scope="module")
def surround_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("s31") / "surround"
    write_bag(Drive.make(3, 3, "surround", (128, 64)), out, progress=False)
    return out


def test_hd_predict_gives_the_model_each_cameras_own_camera_info(surround_bag, tmp_path, monkeypatch):
    """(predict_bag.py:167) The model gets, for camera i, the CameraInfo logged on camera i's
    ``camera_info`` topic: its frame_id and K as the rosbags library reads them from the bag. (A
    rig's cameras differ in intrinsics and frames; one camera's CameraInfo given for all would
    project every other camera's pixels with the wrong K.)"""
    from rosbags.highlevel import AnyReader

    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import predict_bag

    want = {}
    with AnyReader([Path(surround_bag)]) as r:
        for con, _, raw in r.messages([c for c in r.connections if c.topic.endswith("camera_info")]):
            m = r.deserialize(raw, con.msgtype)
            want[con.topic.rsplit("/", 1)[0]] = (m.header.frame_id, np.asarray(m.k, float).reshape(3, 3))
    assert len({f for f, _ in want.values()}) == 6  # six cameras, six optical frames

    seen = []
    real = Predictor.predict

    def spy(self, ims, cis, Ts, *a, **k):
        seen.append(list(cis))
        return real(self, ims, cis, Ts, *a, **k)

    monkeypatch.setattr(Predictor, "predict", spy)
    summary = predict_bag(surround_bag, tmp_path / "p.json", progress=False)
    assert summary["frames"] == len(seen) > 0
    cams = summary["cameras"]
    for cis in seen:
        for cam, ci in zip(cams, cis, strict=True):
            frame_id, K = want[cam.rsplit("/", 1)[0]]
            assert ci.frame_id == frame_id, (cam, ci.frame_id)
            np.testing.assert_allclose(np.asarray(ci.K, float), K)


FRONT = "/cameras/front/image_raw"


def _front_bag(surround_bag, out, bad):
    """The surround bag's front camera alone; its images numbered in ``bad`` have their pixel data
    cut to half (a truncated write): sensor_msgs/Image says ``data`` holds ``step * height`` bytes,
    so these cannot be decoded."""
    from gs_mapping.bag import BagReader, BagWriter

    keep = [FRONT, "/cameras/front/camera_info", "/tf", "/tf_static", "/ground_truth/lanes_json"]
    i = 0
    with BagReader(surround_bag) as r, BagWriter(out) as w:
        for t in keep:
            w.add_topic(t, r.topic(t).type, latched=t == "/tf_static")
        for topic, t, m in r.messages(keep):
            if topic == FRONT:
                assert len(m.data) == m.step * m.height
                if i in bad:
                    m.data = m.data[: len(m.data) // 2]
                i += 1
            w.write(topic, t, m)
    assert i == 3
    return out


def test_hd_predict_counts_every_undecodable_image(surround_bag, tmp_path):
    """(predict_bag.py:222) Of the front camera's 3 images, 2 are cut short (hand count): the one
    whole image is predicted and the summary counts 2 undecodable images on that topic, not 1."""
    from gsmap_hd.predict_bag import predict_bag

    bag = _front_bag(surround_bag, tmp_path / "two_bad", bad={0, 2})
    summary = predict_bag(bag, tmp_path / "p.json", cameras=[FRONT], progress=False)
    assert summary["frames"] == 1
    assert summary["undecodable"] == {f"{FRONT} (image)": 2}, summary["undecodable"]


def test_hd_predict_with_no_decodable_image_names_the_camera_topic(surround_bag, tmp_path):
    """(predict_bag.py:258) Every image of the camera cut short: no frame is predicted, and the error
    says why: 3 messages (hand count) could not be decoded, on the camera's topic by name (the
    user's next step is to look at that topic)."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.predict_bag import predict_bag

    bag = _front_bag(surround_bag, tmp_path / "all_bad", bad={0, 1, 2})
    with pytest.raises(HDInputError) as exc:
        predict_bag(bag, tmp_path / "p.json", cameras=[FRONT], progress=False)
    msg = str(exc.value)
    assert "3 message(s) could not be decoded" in msg and FRONT in msg, msg


def _rewritten(surround_bag, out, keep, drop=lambda topic, i: False, late=()):
    """A copy of ``keep`` topics; ``drop(topic, i)``: leave out that topic's i-th message; topics in
    ``late``: only their first message, logged after everything else."""
    from gs_mapping.bag import BagReader, BagWriter

    seen: dict[str, int] = {}
    rows, last = [], 0
    with BagReader(surround_bag) as r, BagWriter(out) as w:
        for t in keep:
            w.add_topic(t, r.topic(t).type, latched=t == "/tf_static")
        for topic, t, m in r.messages(keep):
            i = seen[topic] = seen.get(topic, -1) + 1
            last = max(last, t)
            if drop(topic, i) or (topic in late and i > 0):
                continue
            rows.append((t, topic, m))
        rows = [(last + 1 if topic in late else t, topic, m) for t, topic, m in rows]
        for t, topic, m in sorted(rows, key=lambda row: row[0]):
            w.write(topic, t, m)
    return out


def test_hd_predict_counts_frames_dropped_while_waiting_for_a_camera_info(
    surround_bag, tmp_path, monkeypatch
):
    """(predict_bag.py:147, 233-235) The front camera's CameraInfo logged once, after its 3 images
    (a driver that publishes it late); room for one waiting frame (MAX_WAITING = 1): frames 1 and 2
    wait in turn and are dropped, frame 3 is predicted when the CameraInfo comes. By hand: 1 frame,
    2 skipped — the summary says so, not 0 or 3 skipped."""
    from gsmap_hd import predict_bag as pb

    keep = [FRONT, "/cameras/front/camera_info", "/tf", "/tf_static"]
    bag = _rewritten(surround_bag, tmp_path / "late_info", keep, late={"/cameras/front/camera_info"})
    monkeypatch.setattr(pb, "MAX_WAITING", 1)
    summary = pb.predict_bag(bag, tmp_path / "p.json", cameras=[FRONT], progress=False)
    assert (summary["frames"], summary["skipped_frames"]) == (1, 2), summary


def test_hd_predict_warns_of_a_single_image_without_a_partner(surround_bag, tmp_path, caplog):
    """(predict_bag.py:245) Two cameras, the second's second image lost: the first camera's second
    image has no partner within --sync-slop (hand count: 1). The summary counts it and a warning
    says so — one lost image is said as much as many."""
    import logging

    from gsmap_hd.predict_bag import predict_bag

    left = "/cameras/front_left/image_raw"
    keep = [FRONT, "/cameras/front/camera_info", left, "/cameras/front_left/camera_info", "/tf", "/tf_static"]
    bag = _rewritten(
        surround_bag, tmp_path / "one_lost", keep, drop=lambda topic, i: topic == left and i == 1
    )
    with caplog.at_level(logging.WARNING):
        summary = predict_bag(bag, tmp_path / "p.json", cameras=[FRONT, left], progress=False)
    assert (summary["frames"], summary["unmatched_images"]) == (2, 1), summary
    assert any("1 image(s) without a partner" in r.getMessage() for r in caplog.records), caplog.text


# ------------------------------------------------------------------------------------------------
# the launch files' own logic (launch, launch_ros and ament_index_python stood in: not in the venv;
# test_outside_ros2_real3 runs them under the real ones where those import)


class _NodeRecorder:
    """launch_ros.actions.Node stood in: the keyword arguments the launch file gives it."""

    made: list = []

    def __init__(self, **kw):
        self.kw = kw
        _NodeRecorder.made.append(kw)


class _LaunchContext:
    """launch.LaunchContext's part the launch files use: its launch configurations."""

    def __init__(self, **configs):
        self.launch_configurations = dict(configs)


class _LaunchConfiguration:
    """launch.substitutions.LaunchConfiguration: perform() reads the context's configuration."""

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _load_launch_file(name, share, monkeypatch):
    """The launch file as ``ros2 launch`` imports it, with launch, launch_ros and
    ament_index_python stood in (none is in the project's venv): Node records its arguments."""
    mods = {
        n: types.ModuleType(n)
        for n in (
            "launch",
            "launch.actions",
            "launch.event_handlers",
            "launch.substitutions",
            "launch_ros",
            "launch_ros.actions",
            "ament_index_python",
            "ament_index_python.packages",
        )
    }
    mods["launch"].LaunchDescription = lambda entities: list(entities)
    mods["launch.actions"].DeclareLaunchArgument = lambda *a, **k: ("arg", a, k)
    mods["launch.actions"].OpaqueFunction = lambda function: ("opaque", function)
    mods["launch.actions"].RegisterEventHandler = lambda handler: ("handler", handler)
    mods["launch.event_handlers"].OnShutdown = lambda on_shutdown: ("on_shutdown", on_shutdown)
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = _NodeRecorder
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share)
    for mod_name, mod in mods.items():
        monkeypatch.setitem(sys.modules, mod_name, mod)
    spec = importlib.util.spec_from_file_location(f"s31_{name.replace('.', '_')}", REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _NodeRecorder.made = []
    return module


def _context(**configs):
    return _LaunchContext(**configs)


def test_full_launch_under_a_pushed_namespace_gives_rviz_the_namespaced_topics(tmp_path, monkeypatch):
    """(full.launch.py:69) launch_ros' PushRosNamespace('robot1') sets the ``ros_namespace`` launch
    configuration to '/robot1' and every Node of the included file runs under it (launch_ros
    prefix_namespace). The RViz config full.launch.py writes must then name /robot1/… topics; the
    launch file's own logic given that configuration, with no namespace:= of its own."""
    import shutil

    import yaml

    share = tmp_path / "share"
    shutil.copytree(REPO / "config", share / "config")
    mod = _load_launch_file("full.launch.py", share, monkeypatch)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    (tmp_path / "run").mkdir(mode=0o700)  # (the user's runtime folder exists: XDG spec)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    ctx = _context(
        params_file=str(share / "config" / "full.yaml"),
        use_sim_time="",
        device="",
        namespace="",
        rviz="true",
        ros_namespace="/robot1",
    )
    actions = mod._actions(ctx)
    rviz = [kw for kw in _NodeRecorder.made if kw["executable"] == "rviz2"]
    assert len(rviz) == 1
    argv = rviz[0]["arguments"]
    written = Path(argv[argv.index("-d") + 1])
    cfg = yaml.safe_load(written.read_text())
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert {"/robot1/hd_map_node/lanes", "/robot1/map_receiver_node/map_cloud"} <= topics, topics
    # one file per namespace in the user's runtime folder, replaced by the next launch: nothing
    # to remove at shutdown (real launch runs no shutdown handler on SIGTERM) and nothing piles up
    assert written.parent == tmp_path / "run" / "gs_mapping"
    assert not [a for a in actions if isinstance(a, tuple) and a[0] == "handler"]
    mod._actions(ctx)
    assert list(written.parent.iterdir()) == [written] and not list(tmp_path.glob("gs_mapping_rviz_*"))


def test_map_receiver_launch_refuses_a_missing_params_file_and_overrides_only_what_is_given(
    tmp_path, monkeypatch
):
    """(map_receiver_node.launch.py:26-27) As full.launch.py: a params_file:= that is no file starts
    nothing (launch_ros would only warn and run on built-in defaults), and use_sim_time overrides
    the file only when given (its declared default '' means 'the params file's value'), as a bool
    (rcl's parameter type for use_sim_time), never as the string the launch argument holds."""
    params = tmp_path / "mine.yaml"
    params.write_text("/**:\n  ros__parameters:\n    map_receiver_node: {min_opacity: 0.2}\n")
    mod = _load_launch_file("map_receiver_node.launch.py", tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="my_robot.yaml"):
        mod._actions(_context(params_file=str(tmp_path / "my_robot.yaml"), use_sim_time="", namespace=""))
    assert _NodeRecorder.made == []

    # (the given arguments come as a params file of their own after the user's, read here as rcl
    # reads it: launch_support.override_params_files)
    from gs_mapping.config_file import read_parameters

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    mod._actions(_context(params_file=str(params), use_sim_time="", namespace=""))
    (kw,) = _NodeRecorder.made
    assert [str(p) for p in kw["parameters"]] == [str(params)]

    _NodeRecorder.made = []
    mod._actions(_context(params_file=str(params), use_sim_time="true", namespace=""))
    (kw,) = _NodeRecorder.made
    first, *overrides = [str(p) for p in kw["parameters"]]
    assert first == str(params)
    values = [read_parameters(p, "/map_receiver_node")["use_sim_time"] for p in overrides]
    assert values == [True], kw["parameters"]


# ------------------------------------------------------------------------------------------------
# a cut recording's repaired copy: its disk full when the copy's summary is written


def _cut_mcap(path: Path, n: int = 5) -> Path:
    """An MCAP of ``n`` std_msgs/String messages written by the mcap library itself, then cut in
    its summary (``ros2 bag record`` killed): every message is whole."""
    from mcap.writer import Writer

    with path.open("wb") as f:
        w = Writer(f)
        w.start("ros2", "test")
        sid = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        cid = w.register_channel("/chatter", "cdr", sid)
        for i in range(n):
            w.add_message(
                cid, log_time=i * 1000, data=b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", publish_time=i * 1000
            )
        w.finish()
    os.truncate(path, path.stat().st_size - 30)
    return path


def test_a_full_disk_when_the_repaired_copy_is_finished_is_named_not_ignored(tmp_path, monkeypatch):
    """(bag_repair.py:201) The repaired copy of a cut recording is written whole or not at all: with
    room, its 5 messages are rebuilt (the mcap library's own reader reads them back); when the disk
    fills as the copy's summary and footer are written (``Writer.finish`` raising ENOSPC, as
    write(2) does), a BagError says the copy cannot be written — not a half-written copy read on as
    if it were whole."""
    import errno

    from mcap.reader import make_reader
    from mcap.writer import Writer

    from gs_mapping.bag_repair import _rebuild_mcap
    from gs_mapping.errors import BagError

    src = _cut_mcap(tmp_path / "cut.mcap")
    n, _ = _rebuild_mcap(src, tmp_path / "copy.mcap")
    with (tmp_path / "copy.mcap").open("rb") as f:
        assert n == 5 == sum(1 for _ in make_reader(f).iter_messages())

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Writer, "finish", full)
    with pytest.raises(BagError, match="cannot be written"):
        _rebuild_mcap(src, tmp_path / "copy2.mcap")


# ------------------------------------------------------------------------------------------------
# rescue files: nothing left open


def _fds_under(folder: Path) -> dict[str, str]:
    """This process' descriptors open on ``folder`` or anything in it (/proc/self/fd)."""
    folder, found = Path(os.path.realpath(folder)), {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # (closed since the listing: the listing's own descriptor, another thread's)
            continue
        if target == str(folder) or target.startswith(f"{folder}/"):
            found[fd] = target
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_rescue_file_leaves_no_file_descriptor_open(tmp_path, monkeypatch):
    """(output_files.py:455) rescue_file makes a new empty file of a unique name and leaves nothing
    open: the kernel's table of this process' descriptors (/proc/self/fd) is as before, after many
    calls (a node saving again and again on a full disk must not run out of descriptors)."""
    import tempfile

    from gs_mapping.output_files import rescue_file

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    paths = [rescue_file("node-map-", ".ply") for _ in range(20)]
    # (the descriptors on tmp_path, not their count: the cyclic GC closing a file an earlier test
    # left in a cycle, or another thread, may change the count between two listings)
    assert _fds_under(tmp_path) == {}
    assert len(set(paths)) == 20
    assert all(p.parent == tmp_path and p.name.startswith("node-map-") and p.suffix == ".ply" for p in paths)
    assert all(p.stat().st_size == 0 for p in paths)


# ------------------------------------------------------------------------------------------------
# parameter files: arrays rcl refuses


def _params_file(tmp_path, line: str) -> Path:
    f = tmp_path / "params.yaml"
    f.write_text(f"/**:\n  ros__parameters:\n    mapper_node:\n{line}\n")
    return f


@pytest.mark.parametrize(
    "line, kind",
    [
        pytest.param("      flags: [true, 1]", "bool", id="bool-then-integer"),
        pytest.param("      flags: [1, false]", "integer", id="integer-then-bool"),
        pytest.param("      names: [1, [2, 3]]", "list", id="nested-list"),
        pytest.param("      names: [a, {b: 1}]", "dict", id="mapping-item"),
    ],
)
def test_parameter_arrays_rcl_refuses_are_a_config_error_naming_the_file(tmp_path, line, kind):
    """(config_file.py:139-168) rcl_yaml_param_parser (parse.c): the first item of a sequence fixes
    its type (YAML ``true``/``false`` are BOOL, ``1`` an INTEGER: a bool beside an integer is 'Sequence
    should be of same type'), and a sequence or mapping inside a sequence is refused. The CLI reads
    the same files, so it refuses them too: a ConfigError (the CLI's one-line error) naming the file
    and, for an item of no array type, that item's kind."""
    from gs_mapping.config_file import read_parameters
    from gs_mapping.errors import ConfigError

    f = _params_file(tmp_path, line)
    with pytest.raises(ConfigError, match=str(f)) as exc:
        read_parameters(f)
    if kind in ("list", "dict"):
        assert f"not {kind}" in str(exc.value), str(exc.value)


def test_parameter_arrays_of_one_type_read_as_rcl_reads_them(tmp_path):
    """The counterpart (rcl: BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY): arrays of one
    type are read, typed as YAML 1.2 core types them."""
    from gs_mapping.config_file import read_parameters

    f = tmp_path / "ok.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    n:\n      a: [true, false]\n      b: [1, -2]\n"
        "      c: [1.5, -2.0]\n      d: [ab, cd]\n"
    )
    got = read_parameters(f)["n"]
    assert got == {"a": [True, False], "b": [1, -2], "c": [1.5, -2.0], "d": ["ab", "cd"]}
    assert [type(v) for v in got["a"] + got["b"] + got["c"]] == [bool, bool, int, int, float, float]


# ------------------------------------------------------------------------------------------------
# PLY: the map's levels, and the layout reference readers expect


def _small_map(n=6, levels=None):
    from synthetic_maps import synthetic_map

    g = synthetic_map(n, 0, seed=3)
    if levels is not None:
        g.levels = np.asarray(levels, np.uint8)
    return g


def test_a_map_whose_levels_are_partly_zero_keeps_every_level_in_its_ply(tmp_path):
    """(ply.py:112) Levels of detail written in the ``gs_mapping`` element whenever any Gaussian has a
    level above 0: plyfile (an independent PLY reader) reads the vertex element first (the reference
    3DGS layout), then the levels row by row as given — 0 included — and load_ply gives them back."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.ply import load_ply, save_ply

    levels = [0, 1, 0, 2, 0, 3]
    g = _small_map(6, levels)
    save_ply(g, tmp_path / "m.ply", keep_ids=True)
    ply = plyfile.PlyData.read(str(tmp_path / "m.ply"))
    assert [e.name for e in ply.elements] == ["vertex", "gs_mapping"]
    assert ply["vertex"].count == 6
    assert ply["gs_mapping"]["level"].tolist() == levels
    assert load_ply(tmp_path / "m.ply").levels.tolist() == levels


def test_an_id_element_with_fewer_rows_than_gaussians_is_refused(tmp_path):
    """(ply.py:522) The ``gs_mapping`` element holds one row per Gaussian; a file whose element has
    fewer rows (written by hand with plyfile: 4 Gaussians, 3 id rows) is refused in one line, not
    read with ids shifted or missing."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply, save_ply

    g = _small_map(4, [1, 1, 2, 2])
    save_ply(g, tmp_path / "m.ply", keep_ids=True)
    ply = plyfile.PlyData.read(str(tmp_path / "m.ply"))
    rows = ply["gs_mapping"].data
    short = plyfile.PlyElement.describe(rows[:3], "gs_mapping")
    plyfile.PlyData([ply["vertex"], short], text=False).write(str(tmp_path / "short.ply"))
    with pytest.raises(MapError, match="3 rows for 4 Gaussians") as exc:
        load_ply(tmp_path / "short.ply")
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------------
# ~/save: the path as a shell gives it, and an empty file


def test_save_map_expands_a_home_relative_path(tmp_path, monkeypatch):
    """(map_saving.py:29) A path sent on ~/save as ``~/maps.ply`` is the user's home directory's
    file (os.path.expanduser, as the shell and ROS tools read it), not a directory named '~' made
    under the node's working directory."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.nodes.map_saving import save_map

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    save_map(_small_map(5), "~/maps.ply")
    assert plyfile.PlyData.read(os.path.expanduser("~/maps.ply"))["vertex"].count == 5
    assert list(cwd.iterdir()) == []


def test_save_map_replaces_an_empty_file(tmp_path):
    """(map_saving.py:39) An empty file at the save path holds nothing to lose (``touch map.ply``
    before the node starts): it is replaced by the map, which plyfile reads whole; a file that is not
    a PLY is still refused."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.map_saving import save_map

    target = tmp_path / "map.ply"
    target.write_bytes(b"")
    save_map(_small_map(5), str(target))
    assert plyfile.PlyData.read(str(target))["vertex"].count == 5
    other = tmp_path / "params.yaml"
    other.write_text("/**: {}\n")
    with pytest.raises(GsMappingError, match="not a PLY"):
        save_map(_small_map(5), str(other))
    assert other.read_text() == "/**: {}\n"


# ------------------------------------------------------------------------------------------------
# hd-train --resume: the metrics log cut back to the checkpoint's step


def test_resume_keeps_every_record_up_to_the_checkpoint_step_and_only_those(tmp_path):
    """(train.py:218-221) A run killed after step 4, resumed from its checkpoint at step 3: the JSON
    lines log keeps the records of steps 1..3 (the last line of the file included), drops step 4
    (logged again by the resumed run) and a line cut mid-write; each kept line is the one written,
    as the standard library's json reads it."""
    import json

    from gsmap_hd.train import _trim_metrics

    log = tmp_path / "metrics.jsonl"
    lines = [
        json.dumps({"step": 1, "loss": 2.0}),
        json.dumps({"step": 2, "loss": 1.5}),
        json.dumps({"step": 4, "loss": 1.0}),
        '{"step": 4, "lo',
        json.dumps({"step": 3, "eval": {"mAP": 0.25}}),
    ]
    log.write_text("\n".join(lines) + "\n")
    _trim_metrics(log, 3)
    kept = log.read_text().splitlines()
    assert kept == [lines[0], lines[1], lines[4]]
    assert [json.loads(x)["step"] for x in kept] == [1, 2, 3]
    _trim_metrics(tmp_path / "none.jsonl", 3)  # a run that logged nothing yet: nothing made
    assert not (tmp_path / "none.jsonl").exists()


def test_hd_predict_names_a_missing_checkpoint_as_the_users_or_as_the_shipped_one(
    surround_bag, tmp_path, monkeypatch
):
    """(predict_bag.py:104, 123) A --checkpoint the user gave that is not there: a CheckpointError
    naming that file, without advice about a shipped model the user did not ask for. No checkpoint
    given and the shipped one missing (an install without the models): a CheckpointError naming
    it and saying what to pass (--checkpoint), not whatever loading a missing file raises."""
    from gsmap_hd import predict_bag as pb
    from gsmap_hd.errors import CheckpointError

    mine = tmp_path / "my_model.pt"
    with pytest.raises(CheckpointError, match="my_model.pt") as exc:
        pb.predict_bag(
            surround_bag, tmp_path / "a.json", checkpoint=str(mine), cameras=[FRONT], progress=False
        )
    assert "shipped" not in str(exc.value), str(exc.value)

    gone = tmp_path / "models" / "hd_front.pt"
    monkeypatch.setattr(pb, "shipped_checkpoint", lambda n: gone)
    with pytest.raises(CheckpointError, match="--checkpoint") as exc:
        pb.predict_bag(surround_bag, tmp_path / "b.json", cameras=[FRONT], progress=False)
    assert str(gone) in str(exc.value)
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


# ------------------------------------------------------------------------------------------------
# the fleet server's restart: receivers a few deltas behind catch up by deltas


def test_a_receiver_that_missed_the_last_deltas_catches_up_by_the_ones_republished_at_start(tmp_path):
    """(map_server_node.py:258-259, 431) docs/fleet.md: at start the server publishes its last
    ``republish_on_start`` global deltas again and moves its sequence on to the wall clock by an
    empty delta. A receiver (the codec's own MapStore) that missed the last 2 deltas before the
    server died, with republish_on_start = 3, is back on the server's map and sequence by deltas
    alone: every republished delta after the ones it holds applies, and the snapshot published at
    start is a duplicate to it, not a full resend decoded (stats: 1 snapshot, the first)."""
    from test_outside_fleet import _send, _server, _stream

    from gs_map_share.receiver import MapStore
    from gs_mapping.runtime.replay import ReplayBus

    store = tmp_path / "fleet.sqlite3"
    rx, listening, published = MapStore(), [True], []

    def follow(m):
        published.append(bytes(m.data))
        if listening[0]:
            rx.receive(bytes(m.data))

    def bus_followed() -> ReplayBus:
        bus = ReplayBus()
        for topic in ("/map_server_node/map_snapshot", "/map_server_node/map_delta"):
            bus.subscribe(topic, follow)
        return bus

    stream, _ = _stream(1, 6, seed=5, origin=(0.0, 0.0, 0.0), first_seq=100)
    bus = bus_followed()
    server = _server(bus, store, global_period_s=0.0, snapshot_period_s=0.0)
    for k, c in enumerate(stream):
        listening[0] = k < len(stream) - 2  # the last two global deltas lost to this receiver
        _send(bus, "vehicle1", c)
    final_seq, final_map = server.merge.global_seq, server.merge.global_map
    assert rx.seq != final_seq  # (it is behind)
    server.close()

    listening[0] = True
    published.clear()
    bus = bus_followed()
    server = _server(bus, store, global_period_s=0.0, snapshot_period_s=0.0, republish_on_start=3)
    bus.advance(bus.now_ns + 1000)
    assert server.merge.global_map.equals(final_map) and server.merge.global_seq > final_seq
    assert rx.seq == server.merge.global_seq and rx.state.equals(server.merge.global_map), rx.last_error
    assert rx.stats["snapshot"] == 1, dict(rx.stats)
    deltas = [d for d in published if d[24:32] != bytes(8)]  # base_seq 0 is a snapshot (docs/format.md)
    assert len(deltas) == 3, len(deltas)
    # chained: each republished delta's base is the previous one's sequence, the last is the new one
    seqs = [(int.from_bytes(d[16:24], "little"), int.from_bytes(d[24:32], "little")) for d in deltas]
    assert all(b == s_prev for (s_prev, _), (_, b) in zip(seqs, seqs[1:], strict=False)), seqs
    assert seqs[-2][0] == final_seq and seqs[-1][0] == server.merge.global_seq, seqs
    # and the store, with that empty delta in its log, starts a server again on the same map
    # (its log replayed delta by delta: each on the sequence before it)
    moved_seq = server.merge.global_seq
    server.close()
    again = _server(ReplayBus(), store, global_period_s=0.0, snapshot_period_s=0.0)
    assert again.merge.global_map.equals(final_map) and again.merge.global_seq > moved_seq
    again.close()
