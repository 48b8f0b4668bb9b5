"""Mutation survey of session 34's new code (say_once, topic choice by header frame ids, ``world
--rate``'s route length, world_sample's asymmetric patch, hd-train's lock and --out checks): each test
here fails on a mutant that the earlier tests let through, and passes on the code.

- the warn-once memory remembers exactly ``LIMIT`` warnings (``>`` for ``>=``, a tiny LIMIT);
- a cut-short sqlite bag's write-ahead-log warning is given;
- topic choice: frame ids with a leading slash are the same frame; a colour camera whose images carry
  no frame is placed by its CameraInfo; a frame unknown on either side refuses nothing; the first
  message decides; a colour with no CameraInfo in the bag and no frame is passed over, not an error;
  a depth registered to no colour camera's frame is refused naming both frames;
- ``world`` at its route-length bound (exactly 50 km) is allowed; ``--rate 5e-324`` on the real
  command line is one line (no numpy overflow warning);
- the ground truth of a patch asymmetric in y (−5…20 m) is the patch, by shapely;
- hd-train: a folder holding only what a killed run leaves inside it (its lock, a staging folder)
  trains; a killed run's lock beside the folder does not stop the next run, which removes it.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from conftest import map_args

from gs_mapping.cli import main

# ---------------------------------------------------------------------------------------------------
# say_once: LIMIT warnings remembered, the next one starts the memory again


def test_the_memory_holds_exactly_limit_warnings(caplog) -> None:
    """LIMIT distinct warnings, then each again: none said twice (a memory of 2 said them all
    again); one more distinct warning starts the memory again, so the first is said again (a memory
    of LIMIT + 1 still held it)."""
    from gs_mapping import say_once as memory
    from gs_mapping.say_once import LIMIT, say_once

    log = logging.getLogger("test_guards_survivors63")
    memory.forget()
    with caplog.at_level("WARNING"):  # (a hundred distinct cases met over and over: each said once)
        assert sum(say_once(log, f"frame {i % 100}") for i in range(1000)) == 100
    memory.forget()
    caplog.clear()
    with caplog.at_level("WARNING"):
        said = [say_once(log, f"case {i}") for i in range(LIMIT)]
        again = [say_once(log, f"case {i}") for i in range(LIMIT)]
        assert all(said) and not any(again)
        assert say_once(log, f"case {LIMIT}")
        assert say_once(log, "case 0")
    assert len(caplog.messages) == LIMIT + 2
    memory.forget()


# ---------------------------------------------------------------------------------------------------
# topic choice by header frame ids: ZED-layout bags from the real kitchen recording

ZED = "/zed/zed_node"
LEFT, RIGHT = "zed_left_camera_optical_frame", "zed_right_camera_optical_frame"
ZED_LEFT, ZED_RIGHT = ZED + "/left/image_rect_color/compressed", ZED + "/right/image_rect_color/compressed"
LEFT_INFO, RIGHT_INFO = ZED + "/left/camera_info", ZED + "/right/camera_info"
ZED_DEPTH = ZED + "/depth/depth_registered/compressedDepth"
RIGHT_RECT_INFO = ZED + "/right/rect/camera_info"
RS = "/camera/camera"


def _zed_like(shared_data, out, frames: dict[str, list[str]], drop=(), bad=(), rename=None):
    """The real RealSense kitchen bag's first 3 frames laid out as a ZED records them (colour as the
    left and right cameras, aligned depth as ``depth/depth_registered`` with no CameraInfo of its
    own); ``frames``: per ZED topic, the frame id of each of its 3 messages; ``drop``: topics left
    out; ``bad``: topics whose messages are bytes that do not deserialise; ``rename``: topics
    recorded under another name."""
    from gs_mapping.bag import BagReader, BagWriter

    where = {  # RealSense topic: [ZED topics]
        RS + "/color/image_raw/compressed": [ZED_LEFT, ZED_RIGHT],
        RS + "/color/camera_info": [LEFT_INFO, RIGHT_INFO],
        RS + "/aligned_depth_to_color/image_raw/compressedDepth": [ZED_DEPTH],
    }
    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        types = {t.name: t.type for t in r.topics}
        rows, count = [], {}
        for topic, t, m in r.messages(list(types)):
            n = count[topic] = count.get(topic, 0) + 1
            if topic in where and n <= 3:
                for name in where[topic]:
                    if name not in drop:
                        header = dataclasses.replace(m.header, frame_id=frames[name][n - 1])
                        rows.append((t, name, dataclasses.replace(m, header=header)))
            elif topic.startswith("/tf"):
                rows.append((t, topic, m))
    rename = rename or {}
    with BagWriter(out) as w:
        for topic, typ in types.items():
            if topic.startswith("/tf"):
                w.add_topic(topic, typ, latched=topic == "/tf_static")
            for name in where.get(topic, []):
                if name not in drop:
                    w.add_topic(rename.get(name, name), typ)
        for t, topic, m in sorted(rows, key=lambda row: row[0]):
            topic = rename.get(topic, topic)
            if topic in bad:
                w.write_raw(topic, t, b"\x00\x01\x00\x00\xff\xff")  # (no CDR message: skipped on reading)
            else:
                w.write(topic, t, m)
    return out


def _frames(depth, left=LEFT, right=RIGHT, left_info=LEFT, right_info=RIGHT):
    def three(v):
        return v if isinstance(v, list) else [v] * 3

    return {
        ZED_DEPTH: three(depth),
        ZED_LEFT: three(left),
        ZED_RIGHT: three(right),
        LEFT_INFO: three(left_info),
        RIGHT_INFO: three(right_info),
    }


def _chosen(bag, **named):
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    cfg = MapperConfig()
    choose_topics(bag, cfg, map_args(**named))
    return cfg.topics.color, cfg.topics.depth, cfg.topics.camera_info


def _refused(bag, *needles, **named):
    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        _chosen(bag, **named)
    said = str(exc.value)
    assert "\n" not in said and all(s in said for s in needles), said


@pytest.fixture(scope="module")
def zed_bags(shared_data, tmp_path_factory):
    pytest.importorskip("rosbags.rosbag2")
    root = tmp_path_factory.mktemp("zed63")
    layouts = {
        # ROS 1 style frame ids on the depth ("/zed_left…"): tf2 strips the slash; one frame
        "slash": (_frames("/" + LEFT), (), ()),
        # the right images carry no frame; their CameraInfo names the right camera's
        "right_images_unframed": (_frames(LEFT, right=""), (), ()),
        # the depth's first message has no frame (later ones do: the first decides)
        "depth_first_unframed": (_frames(["", LEFT, LEFT]), (), ()),
        # the depth's first message is in the left frame, later ones in none (the first decides)
        "depth_first_framed": (_frames([LEFT, "", ""]), (), ()),
        # the right camera's images and CameraInfo carry no frame
        "right_unframed": (_frames(LEFT, right="", right_info=""), (), ()),
        # depth registered to the right camera; the left images carry no frame, no left CameraInfo
        "left_without_info": (_frames(RIGHT, left=""), (LEFT_INFO,), ()),
        # the depth in a frame no colour camera has
        "depth_elsewhere": (_frames("zed_imu_link"), (), ()),
        # every depth message undecodable: its frame is unknown
        "depth_unreadable": (_frames(LEFT), (), (ZED_DEPTH,)),
        # the right images in the right frame, their CameraInfo (wrongly) in the left one
        "right_info_says_left": (_frames(LEFT, right_info=LEFT), (), ()),
        # the right images unframed, their CameraInfo under a name of its own (named by the user)
        "right_info_renamed": (_frames(LEFT, right=""), (), (), {RIGHT_INFO: RIGHT_RECT_INFO}),
        # the depth's frame unknown, and the right camera's too
        "depth_and_right_unframed": (_frames("", right="", right_info=""), (), ()),
        # every right image undecodable, its CameraInfo in the right frame
        "right_images_unreadable": (_frames(LEFT), (), (ZED_RIGHT,)),
    }
    return {name: _zed_like(shared_data, root / name, *layout) for name, layout in layouts.items()}


def test_a_leading_slash_names_the_same_frame(zed_bags):
    """``/zed_left_camera_optical_frame`` (a ROS 1 bridge's) is the left camera's frame: the left
    colour with it is allowed, and the depth named alone takes the left colour; the right is still
    refused, naming the frame without its slash."""
    bag = zed_bags["slash"]
    assert _chosen(bag) == (ZED_LEFT, ZED_DEPTH, LEFT_INFO)
    assert _chosen(bag, depth_topic=ZED_DEPTH) == (ZED_LEFT, ZED_DEPTH, LEFT_INFO)
    _refused(bag, ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT)


@pytest.mark.parametrize("layout", ["right_images_unframed", "right_images_unreadable"])
def test_a_colour_whose_images_say_no_frame_is_placed_by_its_camera_info(zed_bags, layout):
    """The right images carry no frame (or none of them reads); the right CameraInfo says the right
    camera's frame: the left-registered depth beside the right colour is still refused."""
    _refused(zed_bags[layout], ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT)


@pytest.mark.parametrize("layout", ["depth_first_unframed", "right_unframed", "depth_unreadable"])
def test_a_frame_unknown_on_either_side_refuses_nothing(zed_bags, layout):
    """The depth's first message has no frame (or no depth message reads), or the right camera's
    images and CameraInfo have none: nothing is known to differ, so the right colour is taken as
    named (as before frames were read)."""
    assert _chosen(zed_bags[layout], color_topic=ZED_RIGHT) == (ZED_RIGHT, ZED_DEPTH, RIGHT_INFO)


def test_the_named_camera_info_places_a_colour_whose_images_say_no_frame(zed_bags):
    """The right images unframed, their CameraInfo recorded as ``right/rect/camera_info`` and named
    with --camera-info-topic: that CameraInfo's frame (the right camera's) is the colour's, and the
    left-registered depth beside it is refused (not 'unknown' for want of ``right/camera_info``)."""
    bag = zed_bags["right_info_renamed"]
    _refused(bag, ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT, camera_info_topic=RIGHT_RECT_INFO)


def test_a_colours_images_frame_comes_before_its_camera_infos(zed_bags):
    """The right images say the right frame, their CameraInfo the left: the images' frame is the
    colour's (the right colour beside the left-registered depth refused)."""
    _refused(zed_bags["right_info_says_left"], ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT)


def test_a_depth_of_unknown_frame_named_alone_is_not_paired_by_unknown_frames(zed_bags):
    """The depth's frame unknown, the right camera's too: nothing is known, so the choice is the
    namespace's, the same as with no frames read at all (the left colour), not the right colour for
    having no frame either."""
    from gs_mapping.bag import BagReader
    from gs_mapping.topics import discover

    bag = zed_bags["depth_and_right_unframed"]
    with BagReader(bag) as r:
        types = {t.name: t.type for t in r.topics}
    without_frames = discover(types, depth=ZED_DEPTH)
    assert without_frames.color == ZED_LEFT
    assert _chosen(bag, depth_topic=ZED_DEPTH) == (ZED_LEFT, ZED_DEPTH, LEFT_INFO)


def test_the_depths_first_message_decides_its_frame(zed_bags):
    """Left in its first message, none in the later ones: the left frame (the right colour
    refused)."""
    _refused(zed_bags["depth_first_framed"], ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT)


def test_a_colour_with_no_frame_and_no_camera_info_is_passed_over(zed_bags):
    """Depth registered to the right camera, named alone; the left images carry no frame and the
    bag holds no left CameraInfo (asking for it is a 'no topic' error, which means: unknown): the
    right colour, the one in the depth's frame."""
    assert _chosen(zed_bags["left_without_info"], depth_topic=ZED_DEPTH) == (ZED_RIGHT, ZED_DEPTH, RIGHT_INFO)


def test_a_depth_in_no_colour_cameras_frame_is_refused_naming_both_frames(zed_bags):
    """The depth named alone in a frame no colour has: the namespace's choice stands and is refused
    in one line naming the depth's frame and the colour's (not 'no colour')."""
    _refused(zed_bags["depth_elsewhere"], ZED_DEPTH, "zed_imu_link", "frame", depth_topic=ZED_DEPTH)


# ---------------------------------------------------------------------------------------------------
# world: the route-length bound, and its refusal on the real command line


def test_world_allows_a_route_of_exactly_the_longest_world(tmp_path, capsys):
    """4991 frames at 1 Hz and 10 m/s: 49,900 m + 100 m of margins = 50,000 m, the longest world,
    allowed: the next check (a bad --bev-range) is the one that refuses. One more frame is
    refused by --rate."""
    from gs_mapping.world.trajectory import route_length
    from gs_mapping.world.world import MAX_LENGTH

    assert route_length(4991, 1.0, 10.0) == MAX_LENGTH == 10.0 * 4990 + 40.0 + 40.0 + 20.0
    argv = ["world", "--out", str(tmp_path / "b"), "--rate", "1", "--speed", "10", "--no-progress"]
    assert main([*argv, "--frames", "4991", "--bev-range", "0", "15"]) == 2
    said = capsys.readouterr().err
    assert "--bev-range" in said and "--rate" not in said, said
    assert main([*argv, "--frames", "4992", "--bev-range", "0", "15"]) == 2
    assert "--rate" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_an_overflowing_rate_is_one_line_on_the_command_line(tmp_path):
    """``gs-mapping world --rate 5e-324``: the route length overflows to inf; the refusal is the
    whole of stderr (no numpy RuntimeWarning lines before it)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "gs_mapping", "world", "--out", str(tmp_path / "b"), "--rate", "5e-324"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--rate" in lines[0], r.stderr
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------
# the ground truth of a patch asymmetric in y


def _shapely_clip(elements, T_base_map, patch_xy):
    """Each world element in base_link clipped to the patch by shapely: (class, geometry) pieces
    (a line's pieces that meet end to end merged: MapTR's linemerge, the clip's split of a ring)."""
    import shapely
    from shapely.geometry import LineString, Polygon, box

    from gs_mapping.world.roads import MIN_CLIPPED_AREA, MIN_CLIPPED_LENGTH, PED_CROSSING

    (x0, x1), (y0, y1) = patch_xy
    patch = box(x0, y0, x1, y1)
    want = []
    for el in elements:
        pts = el.pts @ T_base_map[:2, :2].T + T_base_map[:2, 3]
        if el.cls == PED_CROSSING:
            g = Polygon(pts).intersection(patch)
            parts = [
                p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and p.area >= MIN_CLIPPED_AREA
            ]
        else:
            g = shapely.line_merge(LineString(pts).intersection(patch))
            parts = [
                p
                for p in getattr(g, "geoms", [g])
                if p.geom_type == "LineString" and p.length >= MIN_CLIPPED_LENGTH
            ]
        want += [(el.cls, p) for p in parts]
    return want


def _same_pieces(got, want):
    from shapely.geometry import LineString, Polygon

    from gs_mapping.world.roads import PED_CROSSING

    assert sorted(c for c, _ in got) == sorted(c for c, _ in want)
    total = {}
    for cls, g in want:
        total[cls] = total.get(cls, 0.0) + g.length
    for cls, pts in got:
        g = Polygon(pts) if cls == PED_CROSSING else LineString(pts)
        total[cls] -= g.length
        assert any(wc == cls and g.hausdorff_distance(w) < 1e-6 for wc, w in want)
    assert all(abs(v) < 1e-6 for v in total.values()), total


def test_clip_elements_on_a_real_world_cuts_at_an_asymmetric_y_patch():
    """A generated world's map (lanes from y −5.5 to 11.7 m about the vehicle), in the vehicle's
    frame at real drive poses, clipped to x −45…30, y −2…8 (a patch asymmetric in y too): the same
    pieces as shapely's intersection, nothing beyond y −2 and 8, and lanes wholly left of y = 2
    kept."""
    from gs_mapping.world import Drive
    from gs_mapping.world.roads import clip_elements

    drive = Drive.make(5, 12, rig="front", size=(32, 24), rate_hz=2.0)
    patch, left_of_2 = ((-45.0, 30.0), (-2.0, 8.0)), 0
    for index in (0, 6, 11):
        T_base_map = np.linalg.inv(drive.pose(index))
        got = [(e.cls, e.pts) for e in clip_elements(drive.world.map_elements(), T_base_map, *patch)]
        want = _shapely_clip(drive.world.map_elements(), T_base_map, patch)
        _same_pieces(got, want)
        ys = np.concatenate([p[:, 1] for _, p in got])
        assert ys.min() >= -2.0 - 1e-9 and ys.max() <= 8.0 + 1e-9
        left_of_2 += sum(p[:, 1].min() > 2.0 for _, p in got)
    assert left_of_2


def test_world_sample_ground_truth_of_a_patch_asymmetric_in_y():
    """world_sample with y −5…20: every GT piece is shapely's clip of the world to that patch (not
    to y −20…20, the symmetric window holding it)."""
    pytest.importorskip("torch")
    from shapely.geometry import LineString, Polygon

    from gs_mapping.world.roads import PED_CROSSING
    from gsmap_hd.world_data import _drive, world_sample

    patch = ((-45.0, 30.0), (-5.0, 20.0))
    s = world_sample(5, 2, "front", (64, 32), x_range=patch[0], y_range=patch[1])
    drive = _drive(5 * 100_003, "front", (64, 32))
    want = _shapely_clip(drive.world.map_elements(), np.linalg.inv(drive.pose(2)), patch)
    got = [(cls, pts) for cls, pts in s.elements]
    assert got, "the patch holds lanes"
    for cls, pts in got:
        g = Polygon(pts) if cls == PED_CROSSING else LineString(pts)
        assert -5.0 - 1e-6 <= g.bounds[1] and g.bounds[3] <= 20.0 + 1e-6, g.bounds
    _same_pieces(got, want)


# ---------------------------------------------------------------------------------------------------
# hd-train: what a killed run leaves


TRAIN = ["--frames", "1", "--batch-size", "1", "--eval-every", "0", "--threads", "1", "--no-progress"]
RUN_FILES = {"config.json", "last.pt", "metrics.jsonl", "model.pt"}


@pytest.mark.parametrize("left", [".hd-train.lock", ".hd-train-k1ll3d"])
def test_a_folder_holding_only_a_killed_runs_own_leftovers_trains(tmp_path, left):
    """A run kept inside its folder (a mount point's) and SIGKILLed before its first checkpoint
    leaves its lock file or its staging folder there: that folder is hd-train's, not "other
    files", and the next run trains into it."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    out.mkdir()
    if left.endswith(".lock"):
        (out / left).touch()
    else:
        (out / left).mkdir()
        (out / left / "config.json").write_text("{}")
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1"]) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}


def test_a_sigkilled_runs_lock_does_not_stop_the_next_run(tmp_path):
    """A real hd-train SIGKILLed mid-run leaves ``.run.hd-train.lock`` (no handler runs): the lock
    the kernel held went with the process, so the next run (--overwrite) takes it, trains, and
    removes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    out, lock = tmp_path / "run", tmp_path / ".run.hd-train.lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "gs_mapping", "hd-train", "--out", str(out), *TRAIN, "--steps", "100000"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (lock.exists() and (out / "config.json").exists()):
            if first.poll() is not None or time.monotonic() > deadline:
                first.kill()  # (before reading its output: a run that goes on would never end it)
                pytest.fail(f"no run with its lock: {first.communicate()}")
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert lock.exists()
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {p.name for p in out.iterdir()} == RUN_FILES


# ---------------------------------------------------------------------------------------------------
# a cut-short sqlite3 bag's warning


def test_a_killed_sqlite_bags_write_ahead_log_is_said_once(tmp_path, caplog):
    """A sqlite3 bag whose recorder (WAL mode) was killed with 27 rows, half of them still in its
    -wal: opened twice (as ``map`` does), it says once that it read the log folded into a copy, with
    the count sqlite3 itself gives (the log included)."""
    import sqlite3

    from test_outside_recordings2 import _killed_wal_bag

    from gs_mapping import say_once as memory
    from gs_mapping.bag import BagReader

    bag = _killed_wal_bag(tmp_path)
    con = sqlite3.connect(f"file:{bag / 'rec.db3'}?mode=ro", uri=True)
    rows = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    con.close()
    memory.forget()
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        for _ in range(2):
            with BagReader(bag) as r:
                assert sum(1 for _ in r.messages()) == rows
    said = [m for m in caplog.messages if "write-ahead log" in m]
    assert len(said) == 1 and f"({rows} messages)" in said[0], caplog.messages


def test_a_finished_run_lets_go_of_its_lock_in_a_long_lived_process(tmp_path):
    """train() called in a process that lives on (a node, a notebook): after the run no descriptor
    is left open (the lock's would hold the flock of a removed file for the process's life), and
    the same process trains the folder again."""
    import os

    pytest.importorskip("torch")
    out = tmp_path / "run"
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1"]) == 0
    if fds is not None:
        left = {
            os.readlink(f"/proc/self/fd/{n}")
            for n in set(os.listdir("/proc/self/fd")) - fds
            if os.path.exists(f"/proc/self/fd/{n}")
        }
        assert not any("hd-train.lock" in t for t in left), left
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "2", "--resume"]) == 0


def test_a_lock_whose_file_went_with_no_new_run_is_taken_on_a_new_file(tmp_path, monkeypatch):
    """A run starting as the previous one ends opens the old lock file, which the ending run then
    removes before the starter's flock (made here by wrapping os.open for the lock's name, the lock
    code run as it is; no third run this time). The starter must end up holding the file the name
    leads to, so that a run after it is kept out; a lock on the removed file keeps nobody out."""
    import os

    pytest.importorskip("torch")
    from gs_mapping.errors import GsMappingError
    from gsmap_hd.train import _lock_path, _lock_run, _unlock_run

    out = tmp_path / "run"
    out.mkdir()
    path = _lock_path(out, True)
    first = _lock_run(out, True)
    real_open, ended = os.open, []

    def open_then_the_first_run_ends(name, *args, **kw):
        fd = real_open(name, *args, **kw)
        if str(name) == str(path) and not ended:
            ended.append(True)
            _unlock_run(first, path)  # (its file removed, its lock let go: nothing at the name)
        return fd

    monkeypatch.setattr(os, "open", open_then_the_first_run_ends)
    second = _lock_run(out, True)
    monkeypatch.undo()
    try:
        assert ended and path.exists()
        assert (os.fstat(second).st_ino, os.fstat(second).st_dev) == (path.stat().st_ino, path.stat().st_dev)
        if os.path.isdir("/proc/self/fd"):  # (the removed file's descriptor closed, not left open)
            names = []
            for n in os.listdir("/proc/self/fd"):
                try:
                    names.append(os.readlink(f"/proc/self/fd/{n}"))
                except OSError:  # (the descriptor listdir itself used)
                    pass
            assert not [n for n in names if "hd-train.lock" in n and "(deleted)" in n], names
        with pytest.raises(GsMappingError, match="another hd-train"):
            os.close(_lock_run(out, True))
    finally:
        _unlock_run(second, path)
    assert not path.exists()


def test_a_world_frame_is_said_once_whatever_its_distance(caplog):
    """A cloud in a world frame ('odom') as the car drives off: 40 m, 41 m, 60 m from the camera on
    successive frames. The warning names the distance, yet is said once for the frame (not once
    a metre); another world frame ('map') is said too."""
    from gs_mapping import say_once as memory
    from gs_mapping.mapping.depth_registration import cloud_to_depth

    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    cloud = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 6.0]])
    memory.forget()
    with caplog.at_level(logging.WARNING):
        for frame, x in (("odom", 40.0), ("odom", 41.0), ("odom", 60.0), ("map", 45.0)):
            T = np.eye(4)
            T[0, 3] = x
            cloud_to_depth(cloud, T, K, (64, 48), frame=frame)
    said = [m for m in caplog.messages if "is a world frame" in m]
    assert len(said) == 2 and "'odom'" in said[0] and "'map'" in said[1], said
    memory.forget()


@pytest.mark.parametrize("count", [3, 5])
def test_the_refusal_of_a_folder_of_other_files_names_three_and_counts_the_rest(tmp_path, capsys, count):
    """Three other files: all three named, no "and 0 more"; five: the first three (sorted) named
    and "and 2 more". Nothing written."""
    pytest.importorskip("torch")
    out = tmp_path / "photos"
    out.mkdir()
    names = [f"img{i}.jpg" for i in range(count)]
    for n in names:
        (out / n).write_bytes(b"\xff\xd8")
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(n in err for n in names[:3]), err
    assert not any(n in err for n in names[3:]), err
    assert ("and 2 more" in err) if count == 5 else ("more" not in err), err
    assert sorted(p.name for p in out.iterdir()) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_a_slow_drive_gets_a_world_as_long_as_its_route():
    """1 Hz at 10 m/s for 60 frames: 590 m of route, in a world made for it (route_length). Every
    step between poses is 10 m of road (the chord of a 10 m arc: 9.5 to 10 m), to the last frame:
    a world made too short would end the drive early or stall it."""
    from gs_mapping.world import Drive

    drive = Drive.make(2, 60, rig="front", size=(32, 24), rate_hz=1.0, speed=10.0)
    xy = np.array([drive.pose(i)[:2, 3] for i in range(60)])
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert steps.min() > 9.5 and steps.max() < 10.0 + 1e-6, (steps.min(), steps.max())


def test_an_undecodable_record_met_by_topic_choice_and_by_mapping_is_said_once(zed_bags, caplog):
    """``map`` reads a bag twice: topic choice reads a topic's first message for its frame (here the
    right colour, refused beside the left's depth), then the mapper reads the topic from the start. Each reader skips the same undecodable first record; the
    warning naming it is said once a process (``say_once``), the skipped messages still counted by
    each reader."""
    from gs_mapping.bag import BagReader

    bag = zed_bags["right_images_unreadable"]
    with caplog.at_level("WARNING"):
        _refused(bag, ZED_RIGHT, LEFT, RIGHT, color_topic=ZED_RIGHT)  # (its images were read)
        with BagReader(bag) as r:
            assert list(r.messages([ZED_RIGHT])) == []
            assert sum(r.bad_messages.values()) == 3  # (all three right images skipped, counted)
    said = [m for m in caplog.messages if "only counted" in m]
    assert len(said) == 1 and ZED_RIGHT in said[0], caplog.messages
