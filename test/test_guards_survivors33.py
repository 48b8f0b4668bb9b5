"""Mutation survivors of a random-lines pass over the lines of src/ changed since bcd1ea5 (seed
20261223, 40 lines drawn): each test was watched failing on the mutant it names (file:line in its
docstring) and passing on the code as it is.

Each test compares the project with something outside it: the descriptors Linux lists in
/proc/self/fd after a refused flock(2); image_transport's CameraSubscriber, which hands each image
the CameraInfo of its own stamp; tf2, which never extrapolates into the future (poses written out
by hand from the bag's quaternions); ``open()`` writing through a symbolic link, whose mode it
keeps; the file system after a run killed by SIGKILL, and ``os.readlink`` on a linked folder; the
mcap library's own linear scan of a recording cut short, read by two readers at once; tf2's
``/tf`` topic in a bag beside another robot's namespaced TF; the ``--out`` path a user gave;
image_proc's warning for an uncalibrated CameraInfo; docs/fleet.md's region queries across a
server restart."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import KITCHEN_TOPIC_FIELDS, KITCHEN_TOPICS_YAML

# ------------------------------------------------------------------------------------------------
# hd-train's run lock


def test_a_refused_second_hd_train_lock_closes_its_descriptor(tmp_path):
    """(train.py:242) ``hd-train`` refuses a run folder another run holds (flock(2) on a lock file
    beside it). The refused attempt opened that lock file: the descriptors the process holds, as
    Linux lists them in /proc/self/fd, are the same after the refusal as before it (a long-lived
    process retrying, as a training scheduler does, ran out of descriptors one refusal at a time)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd (Linux)")
    from gs_mapping.errors import GsMappingError
    from gsmap_hd.train import _lock_run

    out = tmp_path / "run"
    out.mkdir()  # (as train() makes it before it locks)
    held = _lock_run(out)
    try:
        # (the descriptors on the run's folder and its lock, not all of the process': the cyclic GC
        # closing a file an earlier test left in a cycle, or another thread, may change those)
        before = _fds_under(tmp_path)
        assert list(before) == [str(held)]
        for _ in range(3):
            with pytest.raises(GsMappingError, match="another hd-train"):
                _lock_run(out)
        assert _fds_under(tmp_path) == before
    finally:
        os.close(held)


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


# ------------------------------------------------------------------------------------------------
# mapper_node: each frame's own CameraInfo (image_transport's CameraSubscriber pairing)


@pytest.mark.shared_data
def test_a_frame_sent_before_its_camera_info_gets_the_camera_info_of_its_stamp(kitchen_bag, tmp_path):
    """(mapper_node.py:266) image_transport's CameraSubscriber hands a callback an image with the
    CameraInfo of the same header stamp (message_filters' exact-time pairing), and its
    CameraPublisher sends the image first, then the CameraInfo. Here every CameraInfo comes after its
    images and each says a different focal length (a zoom lens): each frame the mapper makes must
    carry the fx of the CameraInfo stamped like its image, not the previous frame's."""
    import copy

    from gs_mapping.bag import BagReader
    from gs_mapping.messages import stamp_to_ns
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      max_gaussians: 20000\n"
        "      seeding: {stride: 8}\n      optim: {iterations: 1, first_iterations: 2}\n"
        f"      {KITCHEN_TOPICS_YAML}\n    mapper_node:\n      tf_wait_s: 0.5\n"
    )
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})[:4]
    msgs = [m for m in msgs if m[1] <= color_stamps[-1]]
    fx_of = {}
    for i, (topic, stamp, msg) in enumerate(msgs):
        if topic == "/camera/color/camera_info":
            msg = copy.deepcopy(msg)
            msg.k[0] += 7.0 * len(fx_of)  # 0, +7, +14, ... px
            fx_of[stamp_to_ns(msg.header.stamp)] = float(msg.k[0])
            msgs[i] = (topic, stamp, msg)
    assert len(fx_of) >= 4 and len(set(fx_of.values())) == len(fx_of)
    order = {"/tf_static": 0, "/tf": 0, "/camera/color/camera_info": 2}  # images: 1
    msgs.sort(key=lambda m: (m[1], order.get(m[0], 1)))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(cfg)))
    used = []
    add = node.mapper.add_frame

    def recording(frame):
        used.append((frame.stamp_ns, float(frame.camera.K[0, 0])))
        return add(frame)

    node.mapper.add_frame = recording
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    assert len(used) == 4, node.diag.summary()
    for stamp, fx in used:
        assert fx == pytest.approx(fx_of[stamp]), (stamp, fx, fx_of)


# ------------------------------------------------------------------------------------------------
# output files written onto a symbolic link


def test_an_output_written_onto_a_link_to_a_private_file_stays_private(tmp_path):
    """(output_files.py:217) An output path that is a symbolic link to a file of mode 0600 (a map
    kept private, linked as ``latest.ply``): ``open(path, "w")``, the reference, writes through the
    link and the bytes stay in a 0600 file. Written safely (temp file + rename), the new file must
    keep that mode too, not the umask's default that the link itself (lstat) would give."""
    import stat

    from gs_mapping.output_files import write_bytes

    for name in ("ours", "reference"):
        target = tmp_path / f"{name}-map.ply"
        target.write_bytes(b"an earlier map")
        target.chmod(0o600)
        (tmp_path / f"{name}-latest.ply").symlink_to(target)
    with open(tmp_path / "reference-latest.ply", "wb") as f:
        f.write(b"new")
    assert stat.S_IMODE((tmp_path / "reference-latest.ply").stat().st_mode) == 0o600
    write_bytes(tmp_path / "ours-latest.ply", b"new", overwrite=True)
    assert (tmp_path / "ours-latest.ply").read_bytes() == b"new"
    assert oct(stat.S_IMODE((tmp_path / "ours-latest.ply").stat().st_mode)) == oct(0o600)


# ------------------------------------------------------------------------------------------------
# hd-train --overwrite: the staging folder of a started-over run


def _old_run(tmp_path):
    from gsmap_hd.train import RUN_FILES

    out = tmp_path / "run"
    out.mkdir()
    for n in RUN_FILES:
        (out / n).write_bytes(f"earlier run's {n}".encode())
    return out


def test_a_killed_started_over_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    """(train.py:280) ``hd-train --overwrite`` on a folder holding a run stages the new run in a
    hidden folder beside it. A run killed by SIGKILL (the OOM killer) runs no cleanup: its staging
    folder stays. The next started-over run on the same folder must remove it: after three
    "killed" runs and a fourth, the parent directory holds the run folder and one staging folder,
    not one more (a checkpoint's worth of bytes) per kill."""
    from gsmap_hd.train import _RunFiles

    out = _old_run(tmp_path)
    for _ in range(3):
        run = _RunFiles(out, True)
        assert run.staging is not None and run.staging.parent == tmp_path
        (run.staging / "last.pt").write_bytes(b"x" * 1000)  # killed here: no discard, no cleanup
    last = _RunFiles(out, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", last.staging.name])
    last.discard_staging()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_started_over_run_keeps_a_linked_folder_in_the_run_folder_a_link(tmp_path):
    """(train.py:298) A started-over run's folder takes the old folder's place holding the old
    folder's other files. One of them a symbolic link to a directory (a dataset linked into the
    run folder): afterwards it is the same link, ``os.readlink`` reading the same target, not a copy
    of the directory's tree (which would also hard-link every file of the dataset)."""
    from gsmap_hd.train import _RunFiles

    out = _old_run(tmp_path)
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "sample.bin").write_bytes(b"a sample")
    (out / "data").symlink_to(data)
    run = _RunFiles(out, True)
    (run.staging / "model.pt").write_bytes(b"the new run's model")
    run.checkpointed()
    assert (out / "data").is_symlink() and os.readlink(out / "data") == str(data)
    assert (out / "model.pt").read_bytes() == b"the new run's model"
    assert os.stat(data / "sample.bin").st_nlink == 1


def test_a_started_over_run_that_cannot_write_names_the_run_folder_not_its_staging(tmp_path, monkeypatch):
    """(train.py:219) ``hd-train --overwrite`` over an earlier run writes the new run in a hidden
    staging folder first. A full disk there (fsync(2) failing with ENOSPC, as it does on a quota'd
    or network file system) is named with the path the user gave, ``OUT/config.json``, not a hidden
    folder that is removed by the time the message is read; the earlier run is left as it was."""
    import argparse
    import errno

    pytest.importorskip("torch")
    from gs_mapping.cli import hd_train
    from gs_mapping.errors import GsMappingError
    from gsmap_hd.train import train

    out = _old_run(tmp_path)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    parser = argparse.ArgumentParser()
    hd_train.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0", "--threads", "1",
         "--steps", "2", "--seed", "1"]
    )  # fmt: skip
    cfg = hd_train.build_config(args)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(GsMappingError) as exc:
        train(cfg, out, progress=False, overwrite=True)
    msg = str(exc.value)
    assert str(out / "config.json") in msg, msg
    assert ".hd-train-" not in msg, msg
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["run"]  # (no staging folder left)


# ------------------------------------------------------------------------------------------------
# two readers of recordings cut short at once


def test_two_readers_of_cut_recordings_at_once_each_keep_their_repaired_copy(tmp_path, monkeypatch):
    """(bag_repair.py:246, :261) An MCAP as a killed recorder leaves it (no DataEnd, summary or
    footer) is read from a repaired copy in $TMPDIR, and each reader removes the copies whose
    reader was killed. Two readers open at once (``map`` and ``info`` on the same cut recording, or
    a ``replay`` of two): the second must open, and the first's copy, still being read, must not be
    taken for an abandoned one. Both read every message the mcap library's own linear scan
    (StreamReader) finds in the file."""
    import struct
    import tempfile

    StreamReader = pytest.importorskip("mcap.stream_reader").StreamReader
    rb = pytest.importorskip("test_hostile_robot_inputs")
    from gs_mapping.bag import BagReader

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    src = rb.robot_bag(tmp_path / "src", n=4, storage="MCAP")
    data = next(src.glob("*.mcap")).read_bytes()
    pos = 8
    while data[pos] != 0x0F:  # walk the records up to DataEnd: the file a killed recorder leaves
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    cut = tmp_path / "killed.mcap"
    cut.write_bytes(data[:pos])
    present = 0
    with cut.open("rb") as fh:
        try:
            for rec in StreamReader(fh).records:
                present += type(rec).__name__ == "Message"
        except Exception:  # noqa: BLE001 - the missing footer ends the scan
            pass
    assert present > 0
    with BagReader(cut) as first:
        with BagReader(cut) as second:
            assert len(list((tmp_path / "tmp").iterdir())) == 2  # a copy each
            assert sum(1 for _ in second.messages()) == present
        assert sum(1 for _ in first.messages()) == present
    assert list((tmp_path / "tmp").iterdir()) == []


def test_two_readers_whose_temp_names_end_in_an_underscore_both_open(tmp_path, monkeypatch):
    """(bag_repair.py:262) tempfile's random names are 8 of "a-z0-9_" (CPython's
    ``_RandomNameSequence.characters``), so one in 37 ends in ``_``. The repaired copy of a recording
    cut short is made under a unique temporary name and renamed to its final name "as unique": two
    readers at once whose temporary names both end in ``_`` (here given so; by chance, one pair in
    about 1400) must still both open the recording, each with its own copy."""
    import struct
    import tempfile

    rb = pytest.importorskip("test_hostile_robot_inputs")
    from gs_mapping.bag import BagReader

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    src = rb.robot_bag(tmp_path / "src", n=4, storage="MCAP")
    data = next(src.glob("*.mcap")).read_bytes()
    pos = 8
    while data[pos] != 0x0F:  # walk the records up to DataEnd: the file a killed recorder leaves
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    cut = tmp_path / "killed.mcap"
    cut.write_bytes(data[:pos])
    names = iter(["k3v9q2x_", "m7c1z0w_", "p4r8t6y_", "b2n5h1j_"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    with BagReader(cut) as first, BagReader(cut) as second:
        assert sum(1 for _ in second.messages()) == sum(1 for _ in first.messages()) > 0


# ------------------------------------------------------------------------------------------------
# mapper_node: a frame whose TF is still in flight (tf2 never extrapolates into the future)


def _matrix(tr) -> np.ndarray:
    """A geometry_msgs/Transform as a 4x4 matrix (the unit quaternion's rotation, written out)."""
    q, t = tr.rotation, tr.translation
    x, y, z, w = q.x, q.y, q.z, q.w
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = [t.x, t.y, t.z]
    return T


@pytest.mark.shared_data
@pytest.mark.parametrize("map_frame", ["map", "no_such_map"])
def test_a_frame_whose_tf_is_late_gets_the_pose_of_its_stamp_not_the_last_one(
    kitchen_bag, tmp_path, map_frame
):
    """(mapper_node.py:347, tf.py:396) tf2's message filter holds an image until TF reaches its stamp:
    tf2 never extrapolates into the future. The kitchen bag's /tf (map → base_link, one per frame,
    stamped like the images) delivered after the images of its stamp, with a TF tolerance of 0.1 s
    (three frames): each frame's pose must be map → base_link of its own stamp composed with the
    static base_link → optical frame, written out here from the messages' quaternions, not the
    previous frame's transform held on. Without the map frame the first frame's pose is the map, so
    there the poses relative to the first."""
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import stamp_to_ns
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      max_gaussians: 20000\n"
        "      seeding: {stride: 8}\n      optim: {iterations: 1, first_iterations: 2}\n"
        f"      topics: {{tf_tolerance_s: 0.1, map_frame: {map_frame}, {KITCHEN_TOPIC_FIELDS}}}\n"
        "    mapper_node:\n      tf_wait_s: 0.5\n"
    )
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})[:5]
    msgs = [m for m in msgs if m[1] <= color_stamps[-1]]
    T_map_base, T_base_cam = {}, None
    for topic, _, msg in msgs:
        for tr in msg.transforms if topic in ("/tf", "/tf_static") else ():
            if topic == "/tf":
                T_map_base[stamp_to_ns(tr.header.stamp)] = _matrix(tr.transform)
            else:
                T_base_cam = _matrix(tr.transform)
    first_tf = next(m for m in msgs if m[0] == "/tf")  # the map frame is known from the start
    msgs.remove(first_tf)
    msgs.insert(0, (first_tf[0], first_tf[1] - 10**8, first_tf[2]))
    order = {"/tf_static": 0, "/camera/color/camera_info": 0, "/tf": 2}  # images: 1
    msgs.sort(key=lambda m: (m[1], order.get(m[0], 1)))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(cfg)))
    poses = []
    add = node.mapper.add_frame

    def recording(frame):
        poses.append((frame.stamp_ns, frame.camera.T_map_cam.copy()))
        return add(frame)

    node.mapper.add_frame = recording
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    assert len(poses) == 5, node.diag.summary()
    expected = {s: T @ T_base_cam for s, T in T_map_base.items()}
    if map_frame != "map":
        T_first = np.linalg.inv(expected[poses[0][0]])
        expected = {s: T_first @ T for s, T in expected.items()}
    for stamp, T in poses:
        np.testing.assert_allclose(T, expected[stamp], atol=1e-6, err_msg=str(stamp))


# ------------------------------------------------------------------------------------------------
# a bag with /tf and no /tf_static, beside another robot's TF


def test_a_bag_with_tf_but_no_tf_static_uses_its_tf_beside_another_robots(tmp_path):
    """(frames.py:99) tf2 listens on /tf and /tf_static; a robot whose driver sends every transform
    on /tf (no static publisher: no /tf_static in the recording) recorded beside a second robot's
    namespaced ``/robot2/tf``: the bag has the topic tf2 reads, so its frames are mapped with it
    (rosbags reads 4 colour images; 4 frames), not refused as a multi-robot bag to choose from."""
    pytest.importorskip("cv2")
    pytest.importorskip("rosbags.rosbag2")
    rb = pytest.importorskip("test_hostile_robot_inputs")
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    def dyn(ns, i):
        return [
            rb._tf(ns, "map", "odom"),
            rb._tf(ns, "odom", "base_link", (0.02 * i, 0, 0)),
            rb._tf(ns, "base_link", "camera_link", (0.1, 0, 0.2)),
            rb._tf(ns, "camera_link", "camera_color_optical_frame", q=rb.OPT_Q),
        ]

    src, bag = rb.robot_bag(tmp_path / "src", tf_static=[], tf_dyn=dyn), tmp_path / "two"
    rename = {"/tf_static": "/robot2/tf"}  # (no message on it: the other robot's TF topic)
    with AnyReader([src]) as r, Writer(bag, version=8) as w:
        conns = {c.topic: w.add_connection(rename.get(c.topic, c.topic), c.msgtype, typestore=rb.TS) for c in r.connections}  # fmt: skip
        images = sum(
            1 for c in r.connections if c.topic == "/camera/color/image_raw" for _ in r.messages([c])
        )
        for c, t, raw in r.messages():
            w.write(conns[c.topic], t, raw)
    assert images == 4
    assert len(rb._frames(bag)) == images


# ------------------------------------------------------------------------------------------------
# hd-predict: an uncalibrated CameraInfo is skipped, and said


def test_hd_predict_says_which_camera_info_it_skipped_as_uncalibrated(tmp_path, caplog):
    """(predict_bag.py:263) image_proc's rectify node, given a CameraInfo with k all zero (a driver
    whose calibration file was not read), logs that the camera is uncalibrated and skips the
    message. hd-predict skips it too; the user must be told which topic, once: a warning naming
    ``/cameras/front/camera_info`` (not one per message like it), the drive still predicted."""
    import dataclasses
    import logging

    hd4 = pytest.importorskip("test_outside_hd_map4")
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    src = tmp_path / "front"
    write_bag(Drive.make(3, 4, "front", (128, 64)), src, progress=False)

    def uncalibrated_from_the_second(topic, i, m):
        if topic.endswith("camera_info") and i >= 1:
            m = dataclasses.replace(m, k=np.zeros(9), p=np.zeros(12))
        return [(topic, m, 0)]

    bad = hd4._rewrite(src, tmp_path / "bad", uncalibrated_from_the_second)
    with caplog.at_level(logging.WARNING):
        assert hd4._hd_predict(bad, tmp_path / "bad.json") == 0
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    naming = [m for m in said if "/cameras/front/camera_info" in m and "skipped" in m]
    assert len(naming) == 1, said
    assert (tmp_path / "bad.json").is_file()


# ------------------------------------------------------------------------------------------------
# map_server_node: a region client up to date when the server restarted


def test_a_region_client_up_to_date_before_a_restart_is_answered_not_sent_back_to_zero(tmp_path):
    """(map_server_node.py:489) docs/fleet.md: a region query lists the tiles whose last change is
    after ``since_seq``; since_seq beyond the map's sequence is an error, otherwise an ok answer.
    A server stopped cleanly and restarted on its store resumes the same global map and moves its
    sequence on (to the wall clock). A region client whose last answer carried the sequence the
    server stopped at holds this very map: asked since that sequence, the answer is ok and lists no
    tile (none changed), not the "another history, ask again with since_seq 0" error that makes it
    download its whole region again."""
    import random

    f4 = pytest.importorskip("test_outside_fleet4")
    from gs_map_share.region import RegionAnswer, RegionRequest
    from gs_mapping.runtime.replay import ReplayBus

    store = tmp_path / "fleet.sqlite3"
    v = f4._Vehicle(1, random.Random(1), ((0, 3 * f4.TILE), (0, 2 * f4.TILE)), 0, 1)
    bus = ReplayBus()
    server = f4._one_vehicle_server(bus, store)
    f4._send(bus, 1, v.snapshot())
    for _ in range(3):
        f4._send(bus, 1, v.step())
    client = f4._RegionClient((3.0, 2.0, 0.0), 20.0)
    client.update(server)
    assert client.seq == server.merge.global_seq > 0 and client.tiles
    before = server.merge.global_map
    server.close()
    server = f4._one_vehicle_server(ReplayBus(), store)  # restarted cleanly on its own store
    try:
        assert server.merge.global_map.equals(before) and server.merge.global_seq > client.seq
        req = RegionRequest(3.0, 2.0, 0.0, radius_m=20.0, since_seq=client.seq)
        a = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
        assert a.status == "ok", a.error
        assert list(a.tiles) == []
    finally:
        server.close()
