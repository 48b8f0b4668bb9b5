"""Guards from mutation testing (session 34 draw, seed 2312051, over the lines added since bcd1ea5
in sync.py, the nodes, frames.py, bag_repair.py, bag.py, zstd_frames.py, tf.py and gsmap_hd's
train / predict_bag / nuscenes): each test here fails on a mutant that the suite let live, and
compares the project with something outside it:

- message_filters' ``Cache.getElemBeforeTime`` (ros2/message_filters, "the newest element before
  or at the given time"), the rule a CameraInfo published at another rate or with other stamps is
  picked by, worked by hand;
- image_transport's CameraSubscriber / CameraPublisher: an image and the CameraInfo of the same
  camera carry the same ``header.frame_id`` and stamp, so each image of a multi-camera frame goes
  with its own camera's CameraInfo;
- Linux rename(2) / renameat2(RENAME_NOREPLACE) (EEXIST when the target exists), flock(2), and
  the file system itself (what a failed attempt or a killed reader leaves in ``$TMPDIR``);
- rcl's own test tables (``rcl/test/rcl/test_validate_topic_name.cpp``) and rcl_expand_topic_name's
  substitution rule, rcl's namespace rules (rmw_validate_namespace);
- hand computations: a moving camera's registered depth, numpy.linspace's sample indices, the
  driving world's rig (world.rig: K from the field of view, the mount transforms).

Known bugs are ``xfail(strict=True)`` whose reason names the bug.
"""

from __future__ import annotations

import pytest

MS = 1_000_000


# ------------------------------------------------------------------------------------------------
# a CameraInfo by stamp: message_filters' Cache.getElemBeforeTime, by hand


def _history(stamps):
    from gs_mapping.sync import CameraInfoHistory

    h = CameraInfoHistory()
    for s in stamps:
        h.add(s, f"info@{s}")
    return h


@pytest.mark.parametrize(
    ("stamp", "want"),
    [
        (25 * MS, 20 * MS),  # between two: the one before (not the next, not the newest)
        (21 * MS, 20 * MS),
        (39 * MS, 30 * MS),
        (45 * MS, 40 * MS),  # after them all: the newest
        (20 * MS, 20 * MS),  # the exact stamp
        (5 * MS, 10 * MS),  # before them all: the first (the class's documented rule)
    ],
)
def test_a_camera_info_of_other_stamps_is_the_newest_at_or_before_the_image(stamp, want):
    """A driver publishing CameraInfo at its own rate (10 ms steps here, never on an image's stamp):
    the image takes the newest CameraInfo at or before its stamp, message_filters' Cache rule
    (``getElemBeforeTime``: 'the newest element before or at the given time'), which sync.info_at
    and CameraInfoHistory.for_image document. Worked by hand on four CameraInfos at 10, 20, 30,
    40 ms; asked with and without ``final`` (no exact stamp was ever seen, so nothing waits)."""
    from gs_mapping.sync import info_at

    stamps = [10 * MS, 20 * MS, 30 * MS, 40 * MS]
    assert info_at([(s, f"info@{s}") for s in stamps], stamp) == f"info@{want}"
    for final in (False, True):
        assert _history(stamps).for_image(stamp, final) == f"info@{want}"


def test_a_camera_info_history_prefers_the_exact_stamp_then_the_one_before():
    """image_transport pairs an image with the CameraInfo of its stamp; a camera that changed zoom
    at 30 ms sends the new CameraInfo with that stamp. An image at 30 ms takes it; once the camera
    has shown that it stamps its CameraInfos as its images, an image at 35 ms with no CameraInfo
    yet waits (None), and, ``final``, takes the one at 30 ms (the newest at or before it), never
    an older one."""
    h = _history([10 * MS, 20 * MS, 30 * MS])
    assert h.for_image(30 * MS) == f"info@{30 * MS}"
    assert h.for_image(35 * MS) is None  # its own may still come
    assert h.for_image(35 * MS, final=True) == f"info@{30 * MS}"
    assert h.for_image(25 * MS, final=True) == f"info@{20 * MS}"


# ------------------------------------------------------------------------------------------------
# a repaired copy's folder: a failed rename leaves nothing in $TMPDIR


def test_a_copy_folder_whose_name_is_taken_leaves_nothing_behind(tmp_path, monkeypatch):
    """bag_repair makes a repaired copy's folder under another prefix, locks it, then renames it to
    ``gs_mapping_bag_*`` with renameat2(RENAME_NOREPLACE) (a plain rename(2) where that is
    missing). When the name is taken by a folder that holds something, Linux refuses both:
    renameat2 with EEXIST, rename(2) with ENOTEMPTY/EEXIST (man 2 rename). The reader then gets
    that OSError, and the half-made folder and its lock must go with it (every read of a cut
    recording that hit it would otherwise leave a folder in $TMPDIR, and an open descriptor).
    Checked on the file system and in /proc/self/fd, not through the module's bookkeeping."""
    import os
    import tempfile

    from gs_mapping import bag_repair

    suffix = "taken1234"
    taken = tmp_path / f"gs_mapping_bag_{suffix}"
    taken.mkdir()
    (taken / "someone_elses.db3").write_bytes(b"x")

    def fixed_mkdtemp(prefix="", dir=None, **_):  # (the random part made known)
        p = os.path.join(dir, prefix + suffix)
        os.mkdir(p)
        return p

    monkeypatch.setattr(tempfile, "mkdtemp", fixed_mkdtemp)
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        bag_repair._locked_folder(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [taken.name], f"left in $TMPDIR: {left}"
    assert (taken / "someone_elses.db3").read_bytes() == b"x"
    leaked = set(os.listdir("/proc/self/fd")) - fds
    assert not leaked, f"descriptors left open: {leaked}"


# ------------------------------------------------------------------------------------------------
# registered depth of a moving camera: seen from where the colour camera was at its own stamp


@pytest.mark.parametrize(("depth_ms", "want_m"), [(0, 1.9), (200, 2.1)])
def test_registered_depth_stamped_before_or_after_colour_is_moved_to_the_colour_pose(depth_ms, want_m):
    """librealsense's aligned depth keeps the depth frame's stamp, which may be before or after the
    colour image's (free-running sensors). A camera driving 1 m/s along its optical axis towards a
    wall 2 m away (fronto-parallel): the depth image taken 100 ms before the colour image says
    2.0 m, and the colour camera, 10 cm nearer by then, sees the wall at 1.9 m (by hand: a point
    (X, Y, 2) of the earlier camera is (X, Y, 1.9) in the later one, same pixel ray scaled, so
    every interior pixel is 1.9); a depth image 100 ms after it says 2.0 m from 10 cm further on:
    2.1 m. Either side of the colour stamp must be moved, not only one."""
    import numpy as np

    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.tf import MapPoses, TFBuffer

    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    color = CameraIntrinsics(32, 24, K, frame_id="cam")
    tf = TFBuffer(cache_time_s=None)
    q = np.array([0.0, 0.0, 0.0, 1.0])
    for ms in range(0, 201, 50):  # 1 m/s along z (the optical axis)
        tf.add(TransformStamped("map", "cam", ms * MS, Transform(np.array([0.0, 0.0, ms / 1000]), q)))
    poses = MapPoses(tf, "map")
    color_ns = 100 * MS
    T_map_color = poses.lookup("cam", color_ns)
    depth = np.full((24, 32), 2.0, np.float32)
    out = depth_in_color(depth, "cam", depth_ms * MS, color, T_map_color, poses, color_stamp=color_ns)
    inner = out[6:18, 8:24]
    assert (inner > 0).all()
    np.testing.assert_allclose(inner, want_m, atol=1e-4)


def _flock_free(path) -> bool:
    """Whether an exclusive flock(2) on ``path`` can be taken now (flock locks belong to an open
    file description: a second open() in this process conflicts as another process would)."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_the_tmpdir_cleaner_removes_only_unlocked_copies_and_spares_a_reader_s(tmp_path):
    """Repaired copies live in $TMPDIR as ``gs_mapping_bag_*`` holding a ``.in-use`` file that the
    reader flocks for as long as the copy is open. By flock(2)'s rules: a copy whose reader was
    SIGKILLed has a free lock (the kernel dropped it with the process) and must be removed; a
    folder made by _locked_folder (a live reader's) must hold its lock from the start, so the
    cleaner of another process spares it; a folder of another name is not ours. The cleaner opens
    each lock file: none of those descriptors may stay open."""
    import os

    from gs_mapping import bag_repair

    killed = tmp_path / "gs_mapping_bag_killedrun"
    killed.mkdir()
    (killed / ".in-use").write_bytes(b"")
    (killed / "copy.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\0" * 100)
    other = tmp_path / "someone_else"
    other.mkdir()
    (other / ".in-use").write_bytes(b"")

    live, lock = bag_repair._locked_folder(tmp_path)
    try:
        assert live.name.startswith("gs_mapping_bag_") and live.is_dir()
        assert not _flock_free(live / ".in-use"), "a live reader's copy is not locked"
        fds = set(os.listdir("/proc/self/fd"))
        bag_repair._remove_abandoned_copies(tmp_path)
        leaked = set(os.listdir("/proc/self/fd")) - fds
        assert not leaked, f"descriptors left open by the cleaner: {leaked}"
        assert not killed.exists(), "the killed reader's copy is still in $TMPDIR"
        assert live.is_dir() and (live / ".in-use").exists(), "a live reader's copy was removed"
        assert other.is_dir()
    finally:
        bag_repair.release_copy(live, lock)
    assert not live.exists()


# ------------------------------------------------------------------------------------------------
# hd_map_node, six cameras: each image with its own camera's CameraInfo


def test_each_camera_s_image_goes_to_the_model_with_its_own_camera_info(tmp_path):
    """image_transport's CameraSubscriber pairs an image with the CameraInfo of the same camera
    (same namespace, same stamp). The driving world's surround rig has six cameras, the back one
    with a 110° lens (its K differs from the 70° cameras'). Fed through the real HDMapNode, every
    image the model gets must come with the K of the camera whose mount (base ← camera, from TF)
    it comes with: checked against the rig's own definition (world.rig: K from the horizontal
    field of view, the mount transform), not against the node's bookkeeping."""
    import numpy as np

    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gs_mapping.world.rig import RIGS, rig_cameras

    W, H = 256, 128
    out = tmp_path / "surround"
    write_bag(Drive.make(3, 2, "surround", (W, H)), out, progress=False)
    with BagReader(out) as bag:
        msgs = list(bag.messages())
    rig = rig_cameras("surround", W, H)
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = [f"/cameras/{n}/image_raw" for n in reversed(RIGS["surround"])]
    bus = ReplayBus()
    hd = HDMapNode(bus.context("hd_map_node"), cfg)
    seen = []

    def spy(images, intrinsics, extrinsics, *a, **k):
        seen.append((list(intrinsics), [np.asarray(T) for T in extrinsics]))
        return []  # (the model's output is not what is checked: the CPU time is saved)

    hd.predictor.predict = spy
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    assert seen, "no frame reached the model"
    for intrinsics, extrinsics in seen:
        assert len(intrinsics) == len(extrinsics) == 6
        for K_got, T in zip(intrinsics, extrinsics, strict=True):
            (cam,) = [c for c in rig if np.allclose(c.T_map_cam, T, atol=1e-5)]
            np.testing.assert_allclose(K_got.K, cam.K, rtol=1e-6, err_msg=cam.frame_id)


# ------------------------------------------------------------------------------------------------
# map_server_node.vehicles: rcl's namespace rules, and the error names what it refused


@pytest.mark.parametrize(
    ("vehicles", "named"),
    [
        (["/vehicle1", "truck-7"], "'truck-7'"),  # '-': rmw_validate_namespace refuses it
        (["/vehicle1", "/2fast"], "'/2fast'"),  # a token starting with a digit
        (["vehicle1", "/vehicle2", "/vehicle1"], "'vehicle1' and '/vehicle1'"),  # one namespace
    ],
)
def test_map_server_vehicles_refuses_what_rcl_refuses_and_names_it(vehicles, named):
    """rcl takes a node namespace as ``/`` or tokens of letters, digits and ``_`` (not a digit
    first) after ``/`` (rmw_validate_namespace), and makes a relative one absolute (``vehicle1``
    is ``/vehicle1``: rcl_node_init prepends the ``/``). A fleet list naming a namespace no node
    can have, or one namespace twice, is refused with one line that names the entry (README:
    'errors on bad input print one line naming the file, topic, frame or field')."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.map_server_node import _check_distinct_namespaces

    with pytest.raises(ConfigError) as exc:
        _check_distinct_namespaces(vehicles)
    assert named in str(exc.value) and "\n" not in str(exc.value)


def test_map_server_vehicles_takes_every_namespace_rcl_takes():
    """The same rules' accepting side: absolute, relative, nested, underscores and digits after
    the first character, the root namespace: no error."""
    from gs_mapping.nodes.map_server_node import _check_distinct_namespaces

    _check_distinct_namespaces(["/vehicle1", "vehicle2", "/fleet/truck_7", "/_x9"])


# ------------------------------------------------------------------------------------------------
# RecordingPairer: pairs leave as they are decided (a recording is not held whole)


def test_recording_pairer_hands_out_pairs_while_reading_not_at_the_end():
    """A 10 s recording at 30 Hz, each depth image 1 ms after its colour image and logged right
    after it (300 pairs). By hand, colour k and depth k are mutual nearest partners within the
    20 ms slop as soon as both streams hold a message past k's slop (33 ms later): frame k is
    decidable when frame k+1 has been read. The pairer holds decoded images (memory): a pair must
    leave while reading, at most a few frames behind, and what waits stays bounded (the class's
    ``keep`` is 60 on one stream), never the whole recording until finish()."""
    from gs_mapping.sync import RecordingPairer

    pairer = RecordingPairer(20 * MS)
    early, most_waiting = [], 0
    for k in range(300):
        s = 5_000 * MS + k * 33 * MS
        early += pairer.add(0, s, f"c{k}")
        early += pairer.add(1, s + MS, f"d{k}")
        most_waiting = max(most_waiting, pairer.pending())
    late = pairer.finish()
    assert sorted(early + late) == sorted((f"c{k}", f"d{k}") for k in range(300))
    assert pairer.dropped == 0
    assert len(early) >= 295, f"only {len(early)} of 300 pairs left before finish()"
    assert most_waiting <= 8, f"{most_waiting} messages waited at once"


# ------------------------------------------------------------------------------------------------
# hd_map_node: a camera that zooms takes the CameraInfo of each image's stamp


def test_hd_map_node_gives_each_image_the_camera_info_of_its_own_stamp_across_a_zoom(tmp_path):
    """image_transport's CameraPublisher stamps an image and its CameraInfo alike, and a camera
    that zooms changes both at one stamp; CameraSubscriber pairs them by that stamp. The driving
    world's front camera (one frame every 100 ms) zooms 1.25x from its third frame on (the
    CameraInfo of that stamp and after say so; each is logged just after its image, as a driver
    publishes; the node's diagnostics timer fires between an image and its CameraInfo, well
    within ``tf_wait_s``). Every frame the model gets must come with the K of its own stamp: by
    hand, the first two with the rig's K, the rest with fx, fy × 1.25."""
    import dataclasses

    import numpy as np

    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gs_mapping.world.rig import rig_cameras

    W, H = 256, 128
    out = tmp_path / "front"
    write_bag(Drive.make(3, 4, "front", (W, H), rate_hz=10.0), out, progress=False)
    with BagReader(out) as bag:
        msgs = list(bag.messages())
    (cam,) = rig_cameras("front", W, H)
    image_stamps = sorted(
        {M.stamp_to_ns(m.header.stamp) for t, _, m in msgs if t == "/cameras/front/image_raw"}
    )
    zoom_from = image_stamps[2]
    zoomed_K = cam.K.copy()
    zoomed_K[0, 0] *= 1.25
    zoomed_K[1, 1] *= 1.25
    fed = []
    for topic, t, msg in msgs:
        if topic == "/cameras/front/camera_info":
            continue
        fed.append((topic, t, msg))
        if topic == "/cameras/front/image_raw":  # its CameraInfo just after it, same stamp
            s = M.stamp_to_ns(msg.header.stamp)
            intr = M.CameraIntrinsics.from_camera(cam, s)
            if s >= zoom_from:
                intr = dataclasses.replace(intr, K=zoomed_K)
            fed.append(("/cameras/front/camera_info", t, M.intrinsics_to_camera_info(intr)))
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    bus = ReplayBus()
    hd = HDMapNode(bus.context("hd_map_node"), cfg)
    seen = []

    def spy(images, intrinsics, extrinsics, *a, **k):
        seen.append(intrinsics[0].K.copy())
        return []  # (the model's output is not what is checked: the CPU time is saved)

    hd.predictor.predict = spy
    for topic, t, msg in fed:
        bus.inject(topic, msg, t)
        if topic == "/cameras/front/image_raw":
            hd.on_diagnostics_timer()  # (its 1 Hz timer may fire between an image and its CameraInfo)
    hd.on_diagnostics_timer()
    assert len(seen) == len(image_stamps)
    for k, K in enumerate(seen):
        want = zoomed_K if image_stamps[k] >= zoom_from else cam.K
        np.testing.assert_allclose(K, want, rtol=1e-6, err_msg=f"frame {k}")


def test_hd_predict_pairs_images_and_camera_infos_by_header_stamp_not_log_time(tmp_path, monkeypatch):
    """``ros2 bag record`` logs each message at its receive time, some ms after its header stamp;
    image_transport pairs an image with the CameraInfo of its header stamp. The front camera
    zooms 1.25x from its third frame; every message logged 30 ms after its stamp, each CameraInfo
    just after its image. hd-predict must give the model, for every frame, the K of the
    CameraInfo with that frame's header stamp (by hand: the rig's K, then fx, fy × 1.25)."""
    import dataclasses

    import numpy as np

    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gs_mapping.world.rig import rig_cameras
    from gsmap_hd import infer
    from gsmap_hd.predict_bag import predict_bag

    W, H = 256, 128
    src = tmp_path / "front"
    write_bag(Drive.make(3, 4, "front", (W, H), rate_hz=10.0), src, progress=False)
    (cam,) = rig_cameras("front", W, H)
    zoomed_K = cam.K.copy()
    zoomed_K[0, 0] *= 1.25
    zoomed_K[1, 1] *= 1.25
    rec = tmp_path / "recorded"
    with BagReader(src) as r, BagWriter(rec) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        msgs = list(r.messages())
        image_stamps = sorted(
            M.stamp_to_ns(m.header.stamp) for t, _, m in msgs if t == "/cameras/front/image_raw"
        )
        zoom_from = image_stamps[2]
        for topic, stamp, msg in sorted(msgs, key=lambda m: (m[1], m[0].endswith("camera_info"))):
            if topic == "/cameras/front/camera_info":
                s = M.stamp_to_ns(msg.header.stamp)
                intr = M.CameraIntrinsics.from_camera(cam, s)
                if s >= zoom_from:
                    intr = dataclasses.replace(intr, K=zoomed_K)
                msg = M.intrinsics_to_camera_info(intr)
            w.write(topic, stamp + 30 * MS, msg)
    seen, first = [], []
    real = infer.Predictor.predict

    def spy(self, images, intrinsics, *a, **k):  # (the model runs once: its output is not checked)
        seen.append(intrinsics[0].K.copy())
        if not first:
            first.append(real(self, images, intrinsics, *a, **k))
        return first[0]

    monkeypatch.setattr(infer.Predictor, "predict", spy)
    summary = predict_bag(rec, tmp_path / "p.json", progress=False, cameras=["/cameras/front/image_raw"])
    assert summary["frames"] == len(image_stamps) == len(seen)
    for k, K in enumerate(seen):
        want = zoomed_K if image_stamps[k] >= zoom_from else cam.K
        np.testing.assert_allclose(K, want, rtol=1e-6, err_msg=f"frame {k}")


# ------------------------------------------------------------------------------------------------
# mapper_node, depth camera with its own CameraInfo: the one of the depth image's stamp


def test_mapper_takes_the_depth_camera_info_of_the_depth_image_s_stamp():
    """An unregistered depth camera (mapper.topics.depth_camera_info set) whose CameraInfo changes
    at 200 ms (a depth mode switch: another K). image_transport pairs an image with the CameraInfo
    of its stamp, so the depth image of 100 ms goes with the first K and the one of 200 ms with
    the second, by hand; the colour camera's CameraInfo (one K) plays no part."""
    import numpy as np

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper"].topics.depth_camera_info = "/camera/depth/camera_info"
    node = MapperNode(bus.context("mapper_node"), cfg)
    Kc = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    K1 = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    K2 = np.array([[25.0, 0, 16], [0, 25.0, 12], [0, 0, 1]])

    def info(K, frame, ms):
        return intrinsics_to_camera_info(
            CameraIntrinsics(32, 24, K, frame_id=frame), bus.factory, stamp_ns=ms * MS
        )

    color = {ms: info(Kc, "color", ms) for ms in (100, 200)}
    depth = {100: info(K1, "depth", 100), 200: info(K2, "depth", 200)}
    for ms in (100, 200):
        node.on_camera_info(color[ms])
        node.on_depth_camera_info(depth[ms])
    for ms, K in ((100, K1), (200, K2)):
        for final in (False, True):
            c, d, waiting = node._infos((color[ms].header,), (depth[ms].header,), final)
            assert waiting == ""
            np.testing.assert_allclose(c.K, Kc)
            np.testing.assert_allclose(d.K, K, err_msg=f"depth image at {ms} ms")


# ------------------------------------------------------------------------------------------------
# nuScenes: n samples evenly spaced over a split, and the line that says so


def test_evenly_spaced_samples_are_numpy_s_linspace_and_the_log_counts_them(caplog):
    """hd-train's nuScenes subset takes ``n`` samples evenly spaced over the split (its scenes are
    in order). By hand, 4 of 10 samples: numpy.linspace(0, 9, 4) = 0, 3, 6, 9; the log line tells
    the user '4 of its 10 samples'. Asking for as many or more than there are takes all of them,
    in order, and says nothing."""
    import logging

    from gsmap_hd.nuscenes import EvenlySpaced

    source = [f"s{i}" for i in range(10)]
    with caplog.at_level(logging.INFO, logger="gsmap_hd.nuscenes"):
        sub = EvenlySpaced(source, 4, "val")
    assert [sub[i] for i in range(len(sub))] == ["s0", "s3", "s6", "s9"]
    (line,) = [r.getMessage() for r in caplog.records if "evenly spaced" in r.getMessage()]
    assert "4 of its 10 samples" in line and "val" in line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gsmap_hd.nuscenes"):
        every = EvenlySpaced(source, 12, "val")
    assert [every[i] for i in range(len(every))] == source
    assert not [r for r in caplog.records if "evenly spaced" in r.getMessage()]


# ------------------------------------------------------------------------------------------------
# topic names: rcl's own validation table


_RCL_INVALID = [  # rcl/test/rcl/test_validate_topic_name.cpp, various_invalid_topics
    "123abc", "123", " ", "foo bar", "/~", "~foo", "foo~", "foo~/bar", "foo/~bar", "foo/~/bar",
    "foo/", "", "foo/123bar", "foo/bar}/baz", "foo/{bar", "{$}", "{{bar}_baz}", "foo/{bar/baz}",
    "{1foo}",
]  # fmt: skip
_RCL_VALID = [  # the same file's various_valid_topics (substitutions: the ones rcl expands)
    "foo", "abc123", "_foo", "Foo", "BAR", "~", "foo/bar", "~/foo", "{node}_bar", "foo/{node}/bar",
    "foo/_bar", "foo_/bar", "foo_", "/foo", "/bar/baz", "/_private/thing",
    "/public_namespace/_private/thing",
]  # fmt: skip


@pytest.mark.parametrize("name", _RCL_INVALID)
def test_a_topic_name_rcl_s_table_refuses_is_a_config_error(name):
    """rcl's own test table of rcl_validate_topic_name: every name it lists as invalid (a token
    starting with a digit, a space, a misplaced '~', a trailing '/', unmatched or bad braces) is
    refused by rclpy's create_publisher/create_subscription; context.check_topic_name promises
    the same refusal (a ConfigError naming the topic) on every runtime."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import check_topic_name

    with pytest.raises(ConfigError, match="not a ROS 2 topic name"):
        check_topic_name(name)


@pytest.mark.parametrize("name", _RCL_VALID)
def test_a_topic_name_rcl_s_table_takes_is_taken(name):
    """The valid side of the same table: no error."""
    from gs_mapping.nodes.context import check_topic_name

    check_topic_name(name)


@pytest.mark.parametrize(
    ("name", "ns", "want"),
    [
        ("{namespace}/chatter", "/my_ns", "/my_ns/chatter"),
        ("{namespace}/chatter", "/", None),  # rcl: '{namespace}' is '/' at the root: '//chatter'
        ("{namespace}/chatter", "", None),
        ("/foo/{namespace}/bar", "/", None),  # '/foo///bar'
    ],
)
def test_the_namespace_substitution_expands_as_rcl_s_ns_does(name, ns, want):
    """rcl_expand_topic_name treats ``{namespace}`` exactly as ``{ns}``: both are replaced by the
    node's namespace verbatim, ``/`` in the root namespace, and the expanded name is then
    validated (rmw_validate_full_topic_name refuses '//'). In a namespace the name resolves under
    it; at the root it holds '//' and is refused, as test_outside_session22c checks for ``{ns}``."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import resolve_topic

    if want is None:
        with pytest.raises(ConfigError):
            resolve_topic(name, "my_node", ns)
    else:
        assert resolve_topic(name, "my_node", ns) == want
