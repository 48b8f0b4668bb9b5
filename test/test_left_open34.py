"""Session 34: the items session 33 noticed and left (note33.md, "Noticed, left alone").

- ``gs-mapping world --rate 1e-300`` was refused as "world length must be in (0, 50000] m" naming no
  option; every numeric option of ``world`` now names itself when refused.
- ``world_sample`` with a patch not centred on the vehicle (x −45…30 m) gave ground truth over the
  symmetric window (to +45 m): now exactly the patch.
- ``hd-train`` left ``.NAME.hd-train.lock`` behind after every run; took any existing folder as
  ``--out`` (a bag's).
- Topic choice paired a ZED's right colour image with the registered depth of its left camera (one
  namespace): the frame ids of the bag's first messages now say which camera a registered depth is of.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import map_args
from hostile_cases import one_error_line

from gs_mapping.cli import main

# ---------------------------------------------------------------------------------------------------
# world: each numeric option refused by its name


WORLD_REFUSALS = [
    ("--rate", ["1e-300"]),  # (a drive longer than any world)
    ("--rate", ["5e-324"]),  # (its length overflows)
    ("--rate", ["0.0001"]),
    ("--rate", ["nan"]),
    ("--rate", ["inf"]),
    ("--rate", ["0"]),
    ("--rate", ["-10"]),
    ("--rate", ["1e300"]),
    ("--speed", ["nan"]),
    ("--speed", ["inf"]),
    ("--speed", ["0"]),
    ("--speed", ["-1"]),
    ("--speed", ["1e300"]),
    ("--frames", ["0"]),
    ("--frames", ["-3"]),
    ("--frames", ["99999999999999999999"]),
    ("--bev-range", ["nan", "15"]),
    ("--bev-range", ["30", "inf"]),
    ("--bev-range", ["0", "15"]),
    ("--bev-range", ["30", "-15"]),
    ("--supersample", ["0"]),
    ("--supersample", ["-1"]),
    ("--supersample", ["99999999999999999999"]),
    ("--workers", ["-1"]),
    ("--size", ["0x0"]),
    ("--size", ["99999999999999999999x10"]),
    ("--seed", ["-1"]),
    ("--seed", ["nan"]),
    ("--seed", ["1e300"]),
]


@pytest.mark.parametrize(("option", "values"), WORLD_REFUSALS, ids=lambda v: str(v))
def test_world_refuses_each_numeric_option_naming_it(tmp_path, capsys, option, values):
    """One line, exit 2, naming the option; nothing written. ``--rate 1e-300`` (with the default 100
    frames at 8 m/s: an 8e300 m drive) said only "world length must be in (0, 50000] m"."""
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "2", "--size", "32x24", "--no-progress"]
    try:
        rc = main([*argv, option, *values])
    except SystemExit as exc:  # (argparse's own refusals)
        rc = exc.code
    assert rc == 2
    one_error_line(capsys, option)
    assert not out.exists()


def test_a_slow_rate_is_refused_where_the_drive_is_longer_than_a_world(tmp_path, capsys):
    """The bound is the world's (50 km of road, the margins included): 0.0016 Hz for 2 frames at
    8 m/s is 5,000 m + 100 m of margins, made; 0.00015 Hz is 53,333 m + 100 m, refused by --rate."""
    from gs_mapping.world.trajectory import route_length
    from gs_mapping.world.world import MAX_LENGTH

    assert route_length(2, 0.0016, 8.0) == pytest.approx(5_100.0)
    assert route_length(2, 0.00015, 8.0) == pytest.approx(8.0 / 0.00015 + 100.0)
    assert route_length(2, 0.00015, 8.0) > MAX_LENGTH == 50_000.0
    assert math.isinf(route_length(2, 5e-324, 8.0))
    argv = ["world", "--out", str(tmp_path / "b"), "--frames", "2", "--size", "32x24", "--no-progress"]
    assert main([*argv, "--rate", "0.00015"]) == 2
    said = one_error_line(capsys, "--rate", "0.00015", "--frames 2", "--speed 8.0", "50000 m")
    assert "world length" not in said
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------
# world_sample: the ground truth of a patch not centred on the vehicle


def test_clip_elements_cuts_a_lane_at_an_asymmetric_patchs_edges():
    """By hand: a straight divider 2 m left of the vehicle from x = −60 to 60 m is, in the patch
    x −45…30, y −15…15, the piece from (−45, 2) to (30, 2); a crossing from x 25 to 35 is its part
    up to x = 30 (5 x 4 m); a divider wholly at x 35…60 is none. The half-size form is unchanged."""
    from gs_mapping.world.roads import BOUNDARY, DIVIDER, PED_CROSSING, MapElement, clip_elements

    lane = MapElement(DIVIDER, np.array([[-60.0, 2.0], [0.0, 2.0], [60.0, 2.0]]))
    ring = np.array([[25.0, -2.0], [35.0, -2.0], [35.0, 2.0], [25.0, 2.0], [25.0, -2.0]])
    crossing = MapElement(PED_CROSSING, ring)
    ahead = MapElement(BOUNDARY, np.array([[35.0, 5.0], [60.0, 5.0]]))
    out = clip_elements([lane, crossing, ahead], np.eye(4), (-45.0, 30.0), (-15.0, 15.0))
    assert [e.cls for e in out] == [DIVIDER, PED_CROSSING]
    np.testing.assert_allclose(out[0].pts[[0, -1]], [[-45.0, 2.0], [30.0, 2.0]])
    assert set(out[0].pts[:, 0]) <= {-45.0, 0.0, 30.0}
    xs, ys = out[1].pts[:, 0], out[1].pts[:, 1]
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (25.0, 30.0, -2.0, 2.0)
    sym = clip_elements([lane], np.eye(4), 45.0, 15.0)
    np.testing.assert_allclose(sym[0].pts[[0, -1]], [[-45.0, 2.0], [45.0, 2.0]])


def test_world_sample_ground_truth_covers_exactly_an_asymmetric_patch():
    """x −45…30 m: the lanes went on to +45 m (the symmetric window holding the patch). Now they are
    the world's global map in the frame's base_link (the drive's true pose) clipped to the patch with
    shapely (pieces that meet end to end merged, as MapTR's GT does); a lane crosses the far edge (cut at x = 30) and the near one
    (the road runs 52 m behind frame 3)."""
    pytest.importorskip("torch")  # (gsmap_hd's data module imports it)
    import shapely
    from shapely.geometry import LineString, Polygon, box

    from gs_mapping.world.roads import MIN_CLIPPED_AREA, MIN_CLIPPED_LENGTH, PED_CROSSING
    from gsmap_hd.world_data import _drive, world_sample

    patch = box(-45.0, -15.0, 30.0, 15.0)
    s = world_sample(7, 3, "front", (64, 32), x_range=(-45.0, 30.0), y_range=(-15.0, 15.0))
    drive = _drive(7 * 100_003, "front", (64, 32))  # (the same world and poses, whatever its GT range)
    T_base_map = np.linalg.inv(drive.pose(3))
    want = []
    for el in drive.world.map_elements():
        pts = el.pts @ T_base_map[:2, :2].T + T_base_map[:2, 3]
        if el.cls == PED_CROSSING:
            g = Polygon(pts).intersection(patch)
            parts = [
                p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and p.area >= MIN_CLIPPED_AREA
            ]
        else:
            g = shapely.line_merge(LineString(pts).intersection(patch))  # (MapTR's linemerge)
            parts = [
                p
                for p in getattr(g, "geoms", [g])
                if p.geom_type == "LineString" and p.length >= MIN_CLIPPED_LENGTH
            ]
        want += [(el.cls, p) for p in parts]
    assert len(s.elements) == len(want)
    for (cls, pts), (wcls, wgeom) in zip(s.elements, want, strict=True):
        assert cls == wcls
        got = Polygon(pts) if cls == PED_CROSSING else LineString(pts)
        assert got.hausdorff_distance(wgeom) < 1e-6
        assert got.length == pytest.approx(wgeom.length)
    xs = np.concatenate([pts[:, 0] for _, pts in s.elements])
    assert xs.max() == pytest.approx(30.0) and xs.min() == pytest.approx(-45.0)


# ---------------------------------------------------------------------------------------------------
# hd-train: its lock goes when the run ends (still keeping a second run out); a folder of other things


TRAIN = ["--frames", "1", "--batch-size", "1", "--eval-every", "0", "--threads", "1", "--no-progress"]
RUN_FILES = {"config.json", "last.pt", "metrics.jsonl", "model.pt"}


def _tree(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    from pathlib import Path

    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()
    }


def test_hd_train_leaves_no_lock_file_after_a_run_nor_after_one_that_fails(tmp_path):
    """``.run.hd-train.lock`` (beside the folder) stayed after every run. After a finished run, a
    resumed one and one whose training frames cannot be read (a disk error mid-run, after the lock
    was taken), the parent holds the run folder only and the folder the run's four files only."""
    import argparse

    pytest.importorskip("torch")
    from gs_mapping.cli import hd_train
    from gsmap_hd.train import train

    out = tmp_path / "run"
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert main(["hd-train", "--out", str(out), *TRAIN, "--steps", "2", "--resume"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {p.name for p in out.iterdir()} == RUN_FILES

    class Unreadable:  # (a data set whose frames give a disk error)
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise OSError(5, "Input/output error")

    parser = argparse.ArgumentParser()
    hd_train.add_arguments(parser)
    cfg = hd_train.build_config(parser.parse_args(["--out", str(out), *TRAIN, "--steps", "3"]))
    with pytest.raises(OSError):
        train(cfg, out, progress=False, resume=True, source=Unreadable())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {p.name for p in out.iterdir()} == RUN_FILES


def test_hd_train_keeps_a_second_run_out_and_a_ctrl_c_removes_its_lock(tmp_path, capsys):
    """A real hd-train running (stopped mid-run with SIGSTOP so that it cannot end first): a second
    one on the same --out, and one through a symlink to it, are refused in one line naming the run;
    nothing of the first is touched. Ctrl-C (SIGINT) then ends the first, and its lock goes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    out, lock = tmp_path / "run", tmp_path / ".run.hd-train.lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "gs_mapping", "hd-train", "--out", str(out), *TRAIN, "--steps", "100000"]
    # (SIGINT as a terminal's foreground job has it: a suite run as a background job starts its
    # children with SIGINT ignored, which the CLI keeps, as POSIX programs do)
    first = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while not (lock.exists() and (out / "config.json").exists()):
            if first.poll() is not None or time.monotonic() > deadline:
                first.kill()  # (before reading its output: a run that goes on would never end it)
                pytest.fail(f"no run with its lock: {first.communicate()}")
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)
        before = _tree(out)
        (tmp_path / "latest").symlink_to("run")
        for name in (out, tmp_path / "latest"):
            assert main(["hd-train", "--out", str(name), *TRAIN, "--steps", "1", "--overwrite"]) == 2
            one_error_line(capsys, "another hd-train", str(out))
        assert _tree(out) == before and lock.exists()
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.wait()
    assert first.returncode != 0 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run"]
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_a_lock_taken_on_a_file_its_run_removed_is_taken_again(tmp_path, monkeypatch):
    """The lock file now goes at a run's end, so a run starting just then may open the old file,
    flock it once the old run lets go, and hold a lock on a file no name leads to, while a third run
    locks a new file at that name: two runs on one folder. That order is made here (the first run
    ends, and a third starts, between the second's open and its flock: os.open wrapped for the lock
    file's name, the lock code itself run as it is): the second must be refused by the third's
    lock."""
    import os

    pytest.importorskip("torch")
    from gs_mapping.errors import GsMappingError
    from gsmap_hd.train import _lock_path, _lock_run, _unlock_run

    out = tmp_path / "run"
    out.mkdir()
    path = _lock_path(out, True)
    first = _lock_run(out, True)
    real_open, third = os.open, []

    def open_then_the_first_run_ends(name, *args, **kw):
        fd = real_open(name, *args, **kw)
        if str(name) == str(path) and not third:
            _unlock_run(first, path)  # (the first run ends: its file removed, its lock let go)
            third.append(None)
            third[0] = _lock_run(out, True)  # (a third run starts: a new file at the name)
        return fd

    monkeypatch.setattr(os, "open", open_then_the_first_run_ends)
    try:
        with pytest.raises(GsMappingError, match="another hd-train"):
            os.close(_lock_run(out, True))
    finally:
        monkeypatch.undo()
        if third and third[0] is not None:
            _unlock_run(third[0], path)
    assert third and not path.exists()


def test_hd_train_refuses_a_folder_holding_other_things_and_touches_nothing(shared_data, tmp_path, capsys):
    """``hd-train --out`` a bag's folder (a copy of the real kitchen bag): the run's files went in
    beside the bag's, and --overwrite's start-over swapped the whole folder. Refused in one line
    naming the folder and what it holds, with or without --resume / --overwrite; every byte as it
    was, nothing added beside it either. An empty folder, a new one and a run's own folder (with a
    user's notes beside the run: kept) still train."""
    import shutil

    pytest.importorskip("torch")
    bag = tmp_path / "kitchen"
    shutil.copytree(shared_data / "realsense_kitchen_rgbd", bag)
    before, names = _tree(bag), sorted(p.name for p in bag.iterdir())
    for more in ([], ["--resume"], ["--overwrite"]):
        assert main(["hd-train", "--out", str(bag), *TRAIN, "--steps", "1", *more]) == 2
        one_error_line(capsys, str(bag), names[0], "other files", "--out")
        assert _tree(bag) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kitchen"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["hd-train", "--out", str(empty), *TRAIN, "--steps", "1"]) == 0
    (empty / "notes.txt").write_text("my notes")
    assert main(["hd-train", "--out", str(empty), *TRAIN, "--steps", "1", "--overwrite"]) == 0
    assert {p.name for p in empty.iterdir()} == RUN_FILES | {"notes.txt"}
    assert (empty / "notes.txt").read_text() == "my notes"


# ---------------------------------------------------------------------------------------------------
# topic choice: a registered depth pairs with the colour camera of its frame, not of its namespace

ZED = "/zed/zed_node"
LEFT, RIGHT = "zed_left_camera_optical_frame", "zed_right_camera_optical_frame"
ZED_LEFT, ZED_RIGHT = ZED + "/left/image_rect_color/compressed", ZED + "/right/image_rect_color/compressed"
ZED_DEPTH, ZED_DEPTH_INFO = ZED + "/depth/depth_registered/compressedDepth", ZED + "/depth/camera_info"
RS = "/camera/camera"


def _zed_bag(shared_data, out, depth_frame: str = LEFT):
    """The real RealSense kitchen bag's first 3 frames laid out as a ZED records them: its colour as
    the left and as the right camera (CameraInfos and images in the left and right optical frames),
    its aligned depth as ``depth/depth_registered`` in ``depth_frame`` (the left camera's, as the
    ZED wrapper registers it) with ``depth/camera_info``; TF as recorded."""
    import dataclasses

    from gs_mapping.bag import BagReader, BagWriter

    def framed(m, frame):
        return dataclasses.replace(m, header=dataclasses.replace(m.header, frame_id=frame))

    where = {  # RealSense topic: [(ZED topic, frame)]
        RS + "/color/image_raw/compressed": [(ZED_LEFT, LEFT), (ZED_RIGHT, RIGHT)],
        RS + "/color/camera_info": [(ZED + "/left/camera_info", LEFT), (ZED + "/right/camera_info", RIGHT)],
        RS + "/aligned_depth_to_color/image_raw/compressedDepth": [(ZED_DEPTH, depth_frame)],
        RS + "/aligned_depth_to_color/camera_info": [(ZED_DEPTH_INFO, depth_frame)],
    }
    with BagReader(shared_data / "realsense_kitchen_rgbd") as r:
        types = {t.name: t.type for t in r.topics}
        rows, count = [], {}
        for topic, t, m in r.messages(list(types)):
            count[topic] = count.get(topic, 0) + 1
            if topic in where and count[topic] <= 3:
                rows += [(t, name, framed(m, frame)) for name, frame in where[topic]]
            elif topic.startswith("/tf"):
                rows.append((t, topic, m))
    with BagWriter(out) as w:
        for topic, typ in types.items():
            if topic.startswith("/tf"):
                w.add_topic(topic, typ, latched=topic == "/tf_static")
            for name, _ in where.get(topic, []):
                w.add_topic(name, typ)
        for t, topic, m in sorted(rows, key=lambda row: row[0]):
            w.write(topic, t, m)
    return out


@pytest.fixture(scope="module")
def zed_bag(shared_data, tmp_path_factory):
    pytest.importorskip("rosbags.rosbag2")
    return _zed_bag(shared_data, tmp_path_factory.mktemp("zed") / "zed")


def _chosen(bag, **named) -> tuple[str, str, str, str]:
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    cfg = MapperConfig()
    choose_topics(bag, cfg, map_args(**named))
    t = cfg.topics
    return t.color, t.depth, t.camera_info, t.depth_camera_info


def test_a_zeds_right_colour_with_its_left_registered_depth_is_refused(zed_bag, tmp_path):
    """``map --color-topic …/right/image_rect_color`` on a ZED bag: the depth found (and the depth
    named) is ``depth/depth_registered``, whose header and CameraInfo say the left camera's frame; one
    namespace holds all three, so it was mapped as the right camera's without a word. Now exit 2, one
    line naming both topics and both frames, nothing written."""
    import subprocess
    import sys

    for more in ([], ["--depth-topic", ZED_DEPTH]):
        r = subprocess.run(
            [sys.executable, "-m", "gs_mapping", "map", str(zed_bag), "--out", str(tmp_path / "o")]
            + ["--color-topic", ZED_RIGHT, *more],
            capture_output=True,
            text=True,
            timeout=300,  # (refused before any mapping: seconds)
        )
        assert r.returncode == 2, r.stderr
        err = r.stderr.strip()
        assert "\n" not in err and all(s in err for s in (ZED_DEPTH, ZED_RIGHT, LEFT, RIGHT)), err
        assert not (tmp_path / "o").exists()


def test_a_zed_bags_registered_depth_pairs_with_the_colour_of_its_frame(shared_data, zed_bag, tmp_path):
    """Nothing named: the left colour and its registered depth (as before). The depth named alone:
    the colour camera in its frame: left, and right in a bag whose depth is registered to the right
    camera. The right colour with the depth's own CameraInfo named: placed through TF, allowed."""
    left_info, right_info = ZED + "/left/camera_info", ZED + "/right/camera_info"
    assert _chosen(zed_bag) == (ZED_LEFT, ZED_DEPTH, left_info, "")
    assert _chosen(zed_bag, depth_topic=ZED_DEPTH) == (ZED_LEFT, ZED_DEPTH, left_info, "")
    assert _chosen(zed_bag, color_topic=ZED_RIGHT, depth_info_topic=ZED_DEPTH_INFO) == (
        ZED_RIGHT,
        ZED_DEPTH,
        right_info,
        ZED_DEPTH_INFO,
    )
    right = _zed_bag(shared_data, tmp_path / "right", depth_frame=RIGHT)
    assert _chosen(right, depth_topic=ZED_DEPTH) == (ZED_RIGHT, ZED_DEPTH, right_info, "")
    assert _chosen(right, color_topic=ZED_RIGHT) == (ZED_RIGHT, ZED_DEPTH, right_info, "")


def test_the_real_bags_topics_are_chosen_as_before(shared_data):
    """The frame check reads the real bags' first messages and changes nothing there (colour and
    registered or own-frame depth in camera_color_optical_frame)."""
    pytest.importorskip("rosbags.rosbag2")
    assert _chosen(shared_data / "realsense_kitchen_rgbd") == (
        RS + "/color/image_raw/compressed",
        RS + "/aligned_depth_to_color/image_raw/compressedDepth",
        RS + "/color/camera_info",
        "",
    )
    assert _chosen(shared_data / "7scenes_kitchen_rgbd") == (
        "/camera/color/image_raw",
        "/camera/depth/image_rect_raw",
        "/camera/color/camera_info",
        "",
    )
