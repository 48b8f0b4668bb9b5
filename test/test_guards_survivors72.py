"""Review of session 37's guards from outside: the CLI's check for a command's option before the
command, the SOG count check, split recordings read without metadata.yaml, a bad CameraInfo said
once. Each test pins a behaviour a mutant of those lines changed while the existing tests passed;
inputs are the real CLI (as a subprocess) and the real kitchen bag / playbot SOG."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

PUT_AFTER = "is an option of the command {c}: put it after the command, as in gs-mapping {c} {o} …"


def _cli(argv, cwd):
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and list(cwd.iterdir()) == []
    return r.stderr


@pytest.mark.parametrize(
    "argv, said",
    [
        # a command's name as the value of a command's option given before the command (was:
        # "unrecognized arguments: --out", the value taken for the command)
        (["--out", "info", "map", "B"], "--out " + PUT_AFTER.format(c="map", o="--out")),
        (["-v", "--config", "info", "map", "B"], "--config " + PUT_AFTER.format(c="map", o="--config")),
        # an option that takes a value given none before the command: still named as the command's
        (["--out", "map", "B", "--out", "o"], "--out " + PUT_AFTER.format(c="map", o="--out")),
        # ``--`` before the command: argparse's own line, no KeyError traceback
        (["--", "info", "B"], "argument COMMAND: invalid choice: '--'"),
        # gs-mapping's own options (an abbreviation too) are not called unrecognized: the stray
        # word after them is the error, as without them
        (["--verb", "x", "info", "B"], "argument COMMAND: invalid choice: 'x'"),
        (["-v", "x", "info", "B"], "argument COMMAND: invalid choice: 'x'"),
    ],
)
def test_options_and_words_before_the_command_are_named_as_they_are(argv, said, tmp_path):
    err = _cli(argv, tmp_path)
    assert err.startswith(f"gs-mapping: error: {said}"), err


def test_a_command_name_as_an_options_value_after_the_command_is_that_value(tmp_path):
    """``gs-mapping info --json map`` reads a bag named ``map`` (none here): the command's own error."""
    err = _cli(["info", "--json", "map"], tmp_path)
    assert err.startswith("gs-mapping info: error: map: no such bag"), err


# -- SOG: a real Gaussian at the bound of the quaternion check ------------------------------------


def _last_gaussian_at_the_bound(path):
    """The playbot's last Gaussian (index 499 999) rotated by ±(½, ½, ½, ½): its three stored
    components at their largest (each ½, 8-bit 218: squares 1.512·255², past 3/2 by rounding)."""
    from PIL import Image

    q = np.asarray(Image.open(path).convert("RGBA")).copy()
    q.reshape(-1, 4)[499_999] = (218, 218, 218, 255)
    Image.fromarray(q).save(path, "WEBP", lossless=True)


def test_a_gaussian_whose_quaternion_is_at_the_bound_is_counted(tmp_path, caplog):
    from test_outside_formats36 import PLAYBOT, _hostile_sog

    if not (PLAYBOT / "meta.json").is_file():
        pytest.skip("no playbot SOG here")
    from gs_mapping.splat_formats import load_splats

    d = _hostile_sog(tmp_path, "bound", images={"quats.webp": _last_gaussian_at_the_bound})
    with caplog.at_level(logging.WARNING):
        g = load_splats(d)
        want = load_splats(PLAYBOT)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len(g) == len(want) == 500_000
    assert np.array_equal(g.means, want.means) and np.array_equal(g.quats[:-1], want.quats[:-1])
    last = g.quats[-1] / np.linalg.norm(g.quats[-1])
    assert np.allclose(np.abs(last), 0.5, atol=0.01), last


# -- split recordings without metadata.yaml -------------------------------------------------------

pytest.importorskip("rosbags.rosbag2")

from test_real_inputs_bags37 import SOURCE, _killed_split_recording  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def source(shared_data):
    """(connections, [(topic, log time, cdr)]) of the real bag, as rosbags reads it."""
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        conns = [(c.topic, c.msgtype) for c in r.connections]
        msgs = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    return conns, msgs


def _said(caplog, part):
    return [r.getMessage() for r in caplog.records if part in r.getMessage()]


def test_one_split_file_alone_in_its_folder_is_read_as_a_bag_file(source, tmp_path, caplog):
    """``rec_0.mcap`` alone (the rest not copied yet): read as that one file, not as a split
    recording to reindex, and nothing said of other split files."""
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    for f in bag.iterdir():
        if f.name != "rec_0.db3":
            f.unlink()
    caplog.set_level("INFO")
    with BagReader(bag) as b:
        got = [t for _topic, t, _ in b.raw_messages()]
    assert got == [m[1] for m in source[1][:84]]
    assert _said(caplog, "no metadata.yaml") == [] and _said(caplog, "split files") == []


def test_a_file_of_a_one_file_bag_given_alone_says_nothing_of_splits(shared_data, caplog):
    caplog.set_level("INFO")
    assert main(["info", str(next(SOURCE.glob("*.mcap")))]) == 0
    assert _said(caplog, "split files") == []


def test_a_file_given_alone_counts_only_its_own_recordings_splits(source, tmp_path, caplog):
    """Beside ``rec_0.db3`` another recording's splits (``other_0``, ``other_1``) and, in a folder
    whose metadata.yaml lists three splits, an unlisted file: neither is "one of several"."""
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    for f in list(bag.iterdir()):
        if f.name != "rec_0.db3":
            f.rename(bag / f.name.replace("rec_", "other_"))
    caplog.set_level("INFO")
    assert main(["info", str(bag / "rec_0.db3")]) == 0
    assert _said(caplog, "split files") == []

    from gs_mapping.bag_repair import write_metadata

    listed = _killed_split_recording(tmp_path / "listed", source, 3, "SQLITE3")
    assert write_metadata(listed, listed) == 3
    shutil.copy(next(SOURCE.glob("*.mcap")), listed / "copy.mcap")
    caplog.clear()
    assert main(["info", str(listed / "copy.mcap")]) == 0
    assert _said(caplog, "split files") == []
    assert main(["info", str(listed / "rec_1.db3")]) == 0  # (and a listed one is: the check is live)
    assert len(_said(caplog, "one of 3 split files")) == 1


def test_a_ros1_bag_beside_a_one_file_recording_leaves_it_readable(source, tmp_path, capsys):
    """A folder without metadata.yaml holding one .mcap and the ROS 1 .bag it was converted from."""
    folder = tmp_path / "drive"
    folder.mkdir()
    (folder / "drive.mcap").symlink_to(next(SOURCE.glob("*.mcap")))
    (folder / "drive.bag").write_bytes(b"#ROSBAG V2.0\n")
    assert main(["info", str(folder)]) == 0
    assert f"messages: {len(source[1])}\n" in capsys.readouterr().out


def test_an_empty_last_split_is_read_as_no_messages(source, tmp_path, capsys):
    """A recorder killed just after it opened its next split leaves a file of no messages: the
    recording is read whole, its times those of the messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(tmp_path / "empty", version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        for topic, msgtype in source[0]:
            w.add_connection(topic, msgtype, typestore=ts)
    next((tmp_path / "empty").glob("*.db3")).rename(bag / "rec_3.db3")
    msgs = source[1]
    assert main(["info", str(bag)]) == 0
    out = capsys.readouterr().out
    assert f"messages: {len(msgs)}\n" in out
    assert f"start:    {msgs[0][1]} ns" in out and f"end:      {msgs[-1][1]} ns" in out


def test_splits_cut_between_messages_of_one_log_time_are_one_recording(source, tmp_path, capsys):
    """The real bag logs a frame's five messages at one time; a split between two of them (as
    a size limit cuts) is no overlap."""
    msgs = source[1]
    cut = next(i for i in range(1, len(msgs)) if msgs[i][1] == msgs[i - 1][1])
    bag = _killed_split_recording(tmp_path / "rec", (source[0], msgs[:cut]), 1, "SQLITE3")
    rest = _killed_split_recording(tmp_path / "rest", (source[0], msgs[cut:]), 1, "SQLITE3")
    (rest / "rec_0.db3").rename(bag / "rec_1.db3")
    assert main(["info", str(bag)]) == 0
    assert f"messages: {len(msgs)}\n" in capsys.readouterr().out


def test_one_bad_camera_info_is_one_line_without_a_total(source, tmp_path, caplog):
    """One CameraInfo of the real bag's 50 with K zeroed: its one warning, no "1 of 50" total."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.mapping.frames import load_camera_infos

    ts = get_typestore(Stores.ROS2_HUMBLE)
    conns, msgs = source
    topic = "/camera/camera/color/camera_info"
    first = next(i for i, m in enumerate(msgs) if m[0] == topic)
    bag = tmp_path / "one_bad"
    with Writer(bag, version=8) as w:
        cs = {t: w.add_connection(t, mt, typestore=ts) for t, mt in conns}
        for i, (t_, stamp, data) in enumerate(msgs):
            if i == first:
                m = ts.deserialize_cdr(data, "sensor_msgs/msg/CameraInfo")
                m.k = np.zeros(9)
                data = ts.serialize_cdr(m, "sensor_msgs/msg/CameraInfo")
            w.write(cs[t_], stamp, data)
    caplog.set_level("DEBUG")
    with BagReader(bag) as b:
        got = load_camera_infos(b, topic)
    assert len(got) == 49
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith(f"{topic}: bad CameraInfo ignored: "), warned


def test_a_split_missing_from_the_folder_is_said_and_the_rest_read(source, tmp_path, caplog, capsys):
    """``rec_1`` of three not copied: the other two are read (as reindex would list them), and the
    missing part of the drive is said once, naming its number; a whole numbering says nothing."""
    whole = _killed_split_recording(tmp_path / "whole", source, 3, "SQLITE3")
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    (bag / "rec_1.db3").unlink()
    caplog.set_level("INFO")
    assert main(["info", str(whole)]) == 0
    assert _said(caplog, "no split file numbered") == []
    with BagReader(bag) as b:
        got = [t for _topic, t, _ in b.raw_messages()]
    msgs = source[1]
    assert got == [m[1] for m in msgs[:84] + msgs[168:]]
    assert _said(caplog, "no split file numbered") == [
        f"{bag}: no split file numbered 1 among its 2: that part of the recording is missing (not copied?); "
        "read without it"
    ]


def _apple_double(path):
    """What macOS writes beside a file copied to FAT/exFAT or a share: ``._<name>``, an AppleDouble
    header (magic 0x00051607, version 2) and its attributes, 4096 bytes."""
    head = bytes.fromhex("00051607") + bytes.fromhex("00020000") + b"Mac OS X        " + b"\0\2"
    path.with_name("._" + path.name).write_bytes(head + b"\0" * (4096 - len(head)))


def test_macos_appledouble_files_beside_the_storage_are_no_storage(source, tmp_path, capsys):
    """A split recording and a one-file folder, without metadata.yaml, copied from a Mac to an
    exFAT stick: a ``._`` file beside each storage file. Read as without them (were: "not named as
    one recording's split files", "2 .mcap/.db3 files")."""
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "MCAP")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(SOURCE.glob("*.mcap")), one / "drive.mcap")
    for f in [*bag.iterdir(), one / "drive.mcap"]:
        _apple_double(f)
    for folder in (bag, one):
        assert main(["info", str(folder)]) == 0
        assert f"messages: {len(source[1])}\n" in capsys.readouterr().out
