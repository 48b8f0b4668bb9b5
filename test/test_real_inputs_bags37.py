"""A split recording whose recorder was killed, from the real RealSense-layout kitchen bag: Humble's
``ros2 bag record -b/-d`` writes metadata.yaml only when it closes, so a robot's power cut leaves
``rec_0.mcap … rec_11.mcap`` (the last without its summary) or ``rec_0.db3 …`` and nothing listing
them. ``ros2 bag reindex`` would write the metadata; users replaying without ROS 2 have no such tool,
so the files are read as that metadata would list them: every message, in time order (``rec_2``
before ``rec_10``). Expected values are the source bag's, read by rosbags' own Reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.cli import main  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"


@pytest.fixture(scope="module")
def source(shared_data):
    """(connections, [(topic, log time, cdr)]) of the real bag, as rosbags reads it."""
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        conns = [(c.topic, c.msgtype) for c in r.connections]
        msgs = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    return conns, msgs


def _killed_split_recording(folder, source, parts, storage):
    """``parts`` storage files named as rosbag2 names its splits, no metadata.yaml; an MCAP
    recording's last file ends where its data section does (killed before the summary)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    conns, msgs = source
    ext = ".mcap" if storage == "MCAP" else ".db3"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(msgs)), parts)):
        one = folder / f"part{i}"
        with Writer(one, version=8, storage_plugin=getattr(StoragePlugin, storage)) as w:
            cs = {t: w.add_connection(t, mt, typestore=ts) for t, mt in conns}
            for k in part:
                topic, t, data = msgs[k]
                w.write(cs[topic], t, data)
        next(one.glob(f"*{ext}")).rename(folder / f"rec_{i}{ext}")
        for f in one.iterdir():
            f.unlink()
        one.rmdir()
    if (
        storage == "MCAP"
    ):  # cut before its DataEnd record (13 bytes), where its footer says the summary starts
        last = folder / f"rec_{parts - 1}.mcap"
        summary_start = struct.unpack_from("<Q", last.read_bytes()[-8 - 20 :])[0]
        with last.open("r+b") as f:
            f.truncate(summary_start - 13)
    return folder


@pytest.mark.parametrize("storage, parts", [("MCAP", 12), ("SQLITE3", 3)])
def test_killed_split_recording_reads_whole_and_in_time_order(storage, parts, source, tmp_path, capsys):
    bag = _killed_split_recording(tmp_path / "rec", source, parts, storage)
    _, msgs = source
    rc = main(["info", str(bag)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"messages: {len(msgs)}\n" in out
    assert f"start:    {msgs[0][1]} ns" in out and f"end:      {msgs[-1][1]} ns" in out
    for topic in {m[0] for m in msgs}:
        n = sum(m[0] == topic for m in msgs)
        assert any(line.startswith(topic + " ") and line.split()[-1] == str(n) for line in out.splitlines())
    with BagReader(bag) as b:
        got = [(topic, t) for topic, t, _ in b.raw_messages()]
    assert got == [(m[0], m[1]) for m in msgs]  # every message, rec_2's before rec_10's


def test_killed_split_recording_gives_the_frames_of_the_whole_bag(source, tmp_path):
    """What `map` reads of it: the source's frames, colour, depth and poses alike."""
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    bag = _killed_split_recording(tmp_path / "rec", source, 12, "MCAP")

    def frames(path):
        with BagReader(path) as b:
            f = discover({t.name: t.type for t in b.topics})
        return list(read_frames(path, TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)))

    got, want = frames(bag), frames(SOURCE)
    assert len(got) == len(want) == 50
    for a, b in zip(got, want, strict=True):
        assert a.stamp_ns == b.stamp_ns
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth, equal_nan=True)
        assert np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam)


def test_split_files_of_two_storages_without_metadata_are_refused(source, tmp_path, capsys):
    """A .db3 beside an .mcap, or two recordings of other names side by side, are no one
    recording's splits: one line, as before; a split file that does not read is named as the user's
    (never as the temporary copy's)."""
    bag = _killed_split_recording(tmp_path / "rec", source, 2, "SQLITE3")
    mcap = next(SOURCE.glob("*.mcap"))
    (bag / "rec_1.db3").unlink()
    (bag / "rec_1.mcap").symlink_to(mcap)
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("morning.mcap", "evening.mcap"):
        (runs / name).symlink_to(mcap)
    for folder in (bag, runs):
        rc = main(["info", str(folder)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and "Traceback" not in str(err)
        assert err[-1].endswith("(no metadata.yaml and 2 .mcap/.db3 files); not named as one recording's split files (<bag>_<n>): read each alone")  # fmt: skip
    bag = _killed_split_recording(tmp_path / "rec2", source, 3, "MCAP")
    (bag / "rec_3.mcap").write_bytes(b"\x00" * 64)  # (an empty one is skipped: test_real_inputs_bags_empty37)
    assert main(["info", str(bag)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"gs-mapping info: error: {bag / 'rec_3.mcap'}: one of 4 split files, unreadable: "
    )
    assert "magic" in err[-1] and "gs_mapping_bag_" not in err[-1]


def test_an_uncalibrated_camera_is_said_once_not_once_a_message(source, tmp_path, capsys, caplog):
    """A camera driver without a calibration file (usb_cam, v4l2_camera) sends CameraInfo with K and
    P all zeros, at its frame rate, for the whole drive: the real bag's 50 such messages make one
    line saying why, one total, and the refusal, not 50 lines (18,000 in ten minutes at 30 Hz)."""
    pytest.importorskip("torch")  # (`map`)
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    conns, msgs = source
    bag = tmp_path / "uncalibrated"
    with Writer(bag, version=8) as w:
        cs = {t: w.add_connection(t, mt, typestore=ts) for t, mt in conns}
        for topic, t, data in msgs:
            if topic.endswith("camera_info"):
                m = ts.deserialize_cdr(data, "sensor_msgs/msg/CameraInfo")
                m.k, m.p, m.d, m.distortion_model = np.zeros(9), np.zeros(12), np.zeros(0), ""
                data = ts.serialize_cdr(m, "sensor_msgs/msg/CameraInfo")
            w.write(cs[topic], t, data)
    caplog.set_level("WARNING")
    rc = main(["map", str(bag), "--out", str(tmp_path / "out"), "--no-progress"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "no usable frame" in last and "uncalibrated camera" in last
    lines = [r.getMessage() for r in caplog.records]
    said = [x for x in lines if "/camera/camera/color/camera_info: bad CameraInfo ignored" in x]
    assert len(said) == 1 and "k: all zeros (uncalibrated camera)" in said[0]
    assert (
        sum("/camera/camera/color/camera_info: 50 of 50 CameraInfo messages ignored" in x for x in lines) == 1
    )
    assert len(lines) < 10, lines


def test_one_split_file_given_alone_is_said_to_be_one_of_several(source, tmp_path, caplog):
    """A tab-completed ``rec/rec_0.mcap`` reads the first part of the drive: said once, naming the
    folder that reads all of it; two recordings of other names side by side are no splits."""
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "MCAP")
    caplog.set_level("WARNING")
    assert main(["info", str(bag / "rec_0.mcap")]) == 0
    said = [r.getMessage() for r in caplog.records if "split files" in r.getMessage()]
    assert said == [
        f"{bag / 'rec_0.mcap'}: one of 3 split files of {bag}; only it is read (give the folder to read them all)"
    ]
    caplog.clear()
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("morning.mcap", "evening.mcap"):
        (runs / name).symlink_to(next(SOURCE.glob("*.mcap")))
    assert main(["info", str(runs / "morning.mcap")]) == 0
    assert not [r for r in caplog.records if "split files" in r.getMessage()]


def test_a_bags_metadata_given_for_the_bag_names_its_folder(tmp_path, shared_data, capsys):
    rc = main(["info", str(SOURCE / "metadata.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [
        f"gs-mapping info: error: {SOURCE / 'metadata.yaml'}: a bag's metadata, not the bag: give its folder, {SOURCE}"
    ]


def test_a_folder_of_ros1_bags_says_how_to_convert_one_and_that_works(source, tmp_path, capsys):
    """A folder holding ROS 1 ``.bag`` files (the real bag's CameraInfo written as ROS 1 records it)
    given for the recording: one line naming them and the rosbags-convert command, which then gives
    a bag `info` reads whole."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore

    exe = Path(sys.executable).with_name("rosbags-convert")
    if not exe.exists():
        pytest.skip("rosbags-convert not installed next to this Python")
    ts1, ts2 = get_typestore(Stores.ROS1_NOETIC), get_typestore(Stores.ROS2_HUMBLE)
    t1 = ts1.types
    folder = tmp_path / "drives"
    folder.mkdir()
    info = "/camera/camera/color/camera_info"
    with Writer1(folder / "robot.bag") as w:
        c = w.add_connection(info, "sensor_msgs/msg/CameraInfo", typestore=ts1)
        for topic, t, data in source[1]:
            if topic == info:
                m = ts2.deserialize_cdr(data, "sensor_msgs/msg/CameraInfo")
                hdr = t1["std_msgs/msg/Header"](seq=0, stamp=m.header.stamp, frame_id=m.header.frame_id)
                roi = t1["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)  # fmt: skip
                m1 = t1["sensor_msgs/msg/CameraInfo"](header=hdr, height=m.height, width=m.width, distortion_model=m.distortion_model, D=m.d, K=m.k, R=m.r, P=m.p, binning_x=0, binning_y=0, roi=roi)  # fmt: skip
                w.write(c, t, ts1.serialize_ros1(m1, "sensor_msgs/msg/CameraInfo"))
    assert main(["info", str(folder)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{folder}: no rosbag2 recording, but ROS 1 bags (robot.bag); convert one first: " in last
    command = shlex.split(last.split("convert one first: ", 1)[1])
    assert command[0] == "rosbags-convert"
    subprocess.run([str(exe), *command[1:]], check=True, capture_output=True)
    assert main(["info", str(folder / "robot")]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith(info + " ") and line.split()[-1] == "50" for line in out.splitlines())
