"""Outside review of issues 16, 20 and 21 (real robot recordings; ROS 2 for real; nothing lost): sensors,
drivers and TF trees that change *during* a run, as on a real robot. A localisation node
(AMCL, slam_toolbox in localisation mode, robot_localization's second EKF) that starts late and only
then publishes ``map -> odom``; robot_state_publisher given a new ``robot_description`` at run time
(ROS 2's robot_state_publisher republishes ``/tf_static`` when the parameter changes), which moves a
camera under another link or turns its fixed joint into a moving one; a driver restarted with
binning switched on; a driver update that switches depth from 16UC1 millimetres to 32FC1 metres; a
camera frame renamed by a restarted driver; a camera that disappears for a minute and comes back;
a driver restarted at another resolution while camera_info_manager still serves the old
calibration file.

Expected values come from outside the project: tf2 itself (ros2/geometry2,
``tf2/src/buffer_core.cpp`` ``BufferCore::setTransformImpl``: a transform whose child already has a
cache with another parent is inserted, not refused -- a static one replaces the stored transform,
parent included (``StaticCache::insertData``: ``storage_ = new_data``), and a static sample for a
frame that had dynamic ones, or the reverse, re-allocates the frame's cache: "Overwrite
TimeCacheInterface type with a current input"); image_geometry's binning rule (cx' = cx / binning);
REP 117/118 (16UC1 is millimetres, 32FC1 metres); and poses composed by hand from the transforms
the bag holds (the robot drives 0.02 m a frame along x, its camera 0.1 m ahead of and 0.2 m above
``base_link``; ``map -> odom`` is 5 m along x once localisation starts). Frames are built with the
same rosbags typestore the suite's robot-input tests use (test_hostile_robot_inputs).

Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("cv2")  # (test_hostile_robot_inputs, whose rosbags-only builders we use, needs it)
pytest.importorskip("torch")  # (the mapper runs)

import test_hostile_robot_inputs as rb  # noqa: E402

T = rb.T
OPT = "camera_color_optical_frame"
COLOR = "/camera/color/image_raw"
DEPTH = "/camera/aligned_depth_to_color/image_raw"
INFO = "/camera/color/camera_info"
TOPICS = {COLOR: rb.IMG, DEPTH: rb.IMG, INFO: rb.CINFO, "/tf": rb.TFM, "/tf_static": rb.TFM}
MAP_X = 5.0  # map -> odom, once localisation runs
MOUNT = (0.1, 0.0, 0.2)  # base_link -> camera_link


# -- a recording whose sensors and TF change part-way -------------------------------------------------
def _drive(n=8, enc_of=None, frame_of=None, stamp_of=None, map_from=None):
    """(log time, topic, message) of an n-frame drive: colour + registered depth (a wall 1.5 m ahead)
    + CameraInfo per frame (CameraInfo logged 2 µs after its image, stamped as it), odometry on /tf
    around every frame, the camera mount on /tf_static. ``map_from``: ``map -> odom`` is published
    from that stamp on (a localisation node starting late)."""
    enc_of = enc_of or (lambda i: "16UC1")
    frame_of = frame_of or (lambda i: OPT)
    stamp_of = stamp_of or (lambda i: rb.T0 + i * rb.DT)
    msgs = []
    for k, f in enumerate(sorted({frame_of(i) for i in range(n)})):
        mount = [
            rb._tf(rb.T0, "base_link", "camera_link", MOUNT),
            rb._tf(rb.T0, "camera_link", f, q=rb.OPT_Q),
        ]
        msgs.append((rb.T0 - 10 - k, "/tf_static", T[rb.TFM](transforms=mount)))
    stamps = [stamp_of(i) for i in range(n)]
    tf_stamps = sorted({stamps[0] - rb.DT, stamps[-1] + rb.DT, *stamps, *(s + rb.DT // 2 for s in stamps)})
    for ns in tf_stamps:
        tfs = [rb._tf(ns, "odom", "base_link", (0.02 * (ns - rb.T0) / rb.DT, 0, 0))]
        if map_from is not None and ns >= map_from:
            tfs.append(rb._tf(ns, "map", "odom", (MAP_X, 0, 0)))
        msgs.append((ns, "/tf", T[rb.TFM](transforms=tfs)))
    for i in range(n):
        ns, fid, enc = stamps[i], frame_of(i), enc_of(i)
        rgb, _ = rb._scene(i)
        if enc == "16UC1":
            depth = np.full((rb.H, rb.W), 1500, np.uint16)
        else:
            depth = np.full((rb.H, rb.W), 1.5, np.float32)
        msgs.append((ns, COLOR, rb._image(ns, fid, rgb, "rgb8")))
        msgs.append((ns + 1000, DEPTH, rb._image(ns, fid, depth, enc)))
        msgs.append((ns + 2000, INFO, rb._info(ns, fid)))
    return msgs


def _camera_x(i: float, map_x: float = 0.0) -> float:
    """Hand-composed x of the camera in the map: map -> odom, odom -> base_link, the mount."""
    return map_x + 0.02 * i + MOUNT[0]


CFG = (
    "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      max_gaussians: 20000\n"
    "      seeding: {stride: 8}\n      optim: {iterations: 1, first_iterations: 2, refine_iterations: 0}\n"
    f"      keyframe: {{max_gap: 1}}\n      topics: {{color: {COLOR}, depth: {DEPTH}, camera_info: {INFO}}}\n"
)


def _node(tmp_path):
    """mapper_node on the replay runtime's bus, with a spy on the frames it hands its mapper."""
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    f = tmp_path / "mapper.yaml"
    f.write_text(CFG)
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(f)))
    frames = []
    add = node.mapper.add_frame

    def spy(frame):
        frames.append(frame)
        return add(frame)

    node.mapper.add_frame = spy
    return bus, node, frames


def _feed(bus, msgs):
    for logged, topic, msg in sorted(msgs, key=lambda m: m[0]):
        bus.inject(topic, msg, logged)


def _bag_frames(tmp_path, msgs, name="bag"):
    """What `gs-mapping map` reads from the same messages written as a rosbag2."""
    return rb._frames(rb._write(tmp_path / name, TOPICS, msgs))


def _half(msg):
    """The image binned 2x2 (every other pixel), as a driver restarted with binning sends it."""
    m = copy.deepcopy(msg)
    bpp = m.step // m.width
    a = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, bpp)[::2, ::2]
    m.height, m.width, m.step = a.shape[0], a.shape[1], a.shape[1] * bpp
    m.data = np.ascontiguousarray(a).reshape(-1)
    return m


# -- a localisation node that starts late ---------------------------------------------------------------
LATE = rb.T0 + 4 * rb.DT - rb.DT // 4  # map -> odom from just before frame 4


def test_live_mapper_maps_in_tf_map_once_a_late_localisation_publishes_map_to_odom(tmp_path, caplog):
    """A robot starts with odometry only; AMCL (or slam_toolbox localising) starts after four frames
    and publishes ``map -> odom``. mapper_node anchored its map to the first frame's pose (said once,
    as documented for a tree *without* a map frame); its deltas and snapshots say frame ``map``, the
    receiver's cloud is published in ``map``, and hd_map_node fuses its lanes in TF's ``map``. So once
    TF has ``map``, what the node calls the map must be TF's map: each frame's pose must be tf2's
    ``map <- camera`` (composed by hand from the bag's transforms), and every Gaussian -- the ones
    seeded before localisation too -- must lie on the wall 1.5 m ahead of the camera in that frame
    (one map, not two torn apart by the anchor change)."""
    bus, node, frames = _node(tmp_path)
    with caplog.at_level(logging.WARNING):
        _feed(bus, _drive(map_from=LATE))
    assert len(frames) == 8
    after = [f for f in frames if f.stamp_ns >= LATE]
    got = [round(float(f.camera.T_map_cam[0, 3]), 3) for f in after]
    assert got == [round(_camera_x(i, MAP_X), 3) for i in range(4, 8)]
    x = node.mapper.gmap.means[:, 0]
    lo, hi = _camera_x(0, MAP_X) + 1.5 - 0.1, _camera_x(7, MAP_X) + 1.5 + 0.1
    assert len(x) and ((x > lo) & (x < hi)).all(), (float(x.min()), float(x.max()), lo, hi)


def test_map_keeps_the_frames_before_a_late_localisation_as_the_live_node_does(tmp_path):
    """The same drive as a rosbag2 through `gs-mapping map`'s reader: the bag has odometry for every
    frame (8 colour/depth pairs, each with ``odom -> base_link`` around its stamp), and mapper_node
    on the same messages maps all 8. `map` reads TF whole, sees a ``map`` frame, and drops frames 0-3
    as "extrapolation ... before the first sample" of ``map -> odom``: half of the recording lost,
    and `map` and `replay` of one bag build maps of different frames. Nothing in the README says a
    late localisation costs the frames before it."""
    msgs = _drive(map_from=LATE)
    frames = _bag_frames(tmp_path, msgs)
    assert len(frames) == 8
    # (README's rule: frames before it are posed through the localisation's first fix, +5 m)
    np.testing.assert_allclose(
        [f.camera.T_map_cam[0, 3] for f in frames], [_camera_x(i, MAP_X) for i in range(8)], atol=1e-6
    )


# -- robot_state_publisher given a new robot_description at run time -----------------------------------
def _remounted(kind: str):
    """The drive with the camera re-mounted before frame 4 by a new URDF: ``reparent`` puts
    camera_link under a new head_link (1 m above base_link, camera 0.3 m ahead of it), republished on
    /tf_static; ``moving`` turns the camera joint into a pan joint, so camera_link comes on /tf (at
    0.3, 0, 1.0 from base_link) from then on."""
    msgs = _drive(map_from=rb.T0 - 10 * rb.DT)  # (map from the start: map == odom + 5 m)
    at = rb.T0 + 4 * rb.DT - rb.DT // 4
    if kind == "reparent":
        tfs = [
            rb._tf(at, "base_link", "head_link", (0, 0, 1.0)),
            rb._tf(at, "head_link", "camera_link", (0.3, 0, 0)),
        ]
        msgs.append((at, "/tf_static", T[rb.TFM](transforms=tfs)))
    else:
        for ns in range(at, rb.T0 + 9 * rb.DT, rb.DT // 2):
            msgs.append(
                (ns + 1, "/tf", T[rb.TFM](transforms=[rb._tf(ns, "base_link", "camera_link", (0.3, 0, 1.0))]))
            )
    return msgs, at


@pytest.mark.parametrize("path", ["node", "bag"])
@pytest.mark.parametrize("kind", ["reparent", "moving"])
def test_a_camera_remounted_by_a_new_robot_description_poses_later_frames_as_tf2_does(tmp_path, kind, path):
    """ROS 2's robot_state_publisher republishes /tf_static when its ``robot_description`` parameter
    changes (a camera moved onto a new mast or pan unit). tf2's BufferCore::setTransformImpl inserts a
    transform whatever parent the child had before: a static one replaces the stored value, parent
    and all, and a static/dynamic change re-allocates the frame's cache. So frames after the change
    are posed through the new mount: camera 0.3 m ahead of and 1.0 m above base_link (by hand), and
    the ones before through the old (0.1, 0, 0.2). The suite's TFBuffer refuses both as errors (on
    purpose, tf.py's docstring says, but nowhere a user reads) and maps the later frames with the
    old mount."""
    msgs, at = _remounted(kind)
    if path == "node":
        bus, _node_, frames = _node(tmp_path)
        _feed(bus, msgs)
    else:
        frames = _bag_frames(tmp_path, msgs)
    got = {
        round((f.stamp_ns - rb.T0) / rb.DT): np.round(f.camera.T_map_cam[:3, 3], 3).tolist() for f in frames
    }
    want_before = {i: [round(MAP_X + 0.02 * i + 0.1, 3), 0.0, 0.2] for i in range(4)}
    want_after = {i: [round(MAP_X + 0.02 * i + 0.3, 3), 0.0, 1.0] for i in range(4, 8)}
    assert {i: got.get(i) for i in range(4)} == want_before
    assert {i: got.get(i) for i in range(4, 8)} == want_after


# -- a driver restarted with binning, with --calibrate-color's fitted colour camera ---------------------
def test_calibrated_colour_camera_shift_scales_with_a_binned_camera(tmp_path):
    """`map --calibrate-color` fits the colour camera to the first frames (focal scale, principal
    point shift in pixels, offset) and applies it to every later frame's camera. A driver restarted
    with 2x2 binning sends half-size images whose CameraInfo is the binned camera (image_geometry:
    fx' = fx / 2, cx' = cx / 2; the suite reads it so, checked first). The colour camera of the binned
    images is the calibrated colour camera binned alike: its principal point is (cx + dcx) / 2, not
    cx / 2 + dcx -- a fitted +4 px shift at full size is +2 px binned."""
    from gs_mapping.mapping.calibration import ColorCalibration

    msgs = []
    for logged, topic, m in _drive():
        i = round((logged - rb.T0) / rb.DT) if topic in (COLOR, DEPTH, INFO) else -1
        if i >= 4 and topic in (COLOR, DEPTH):
            m = _half(m)
        elif i >= 4 and topic == INFO:
            m = copy.deepcopy(m)
            m.binning_x = m.binning_y = 2
        msgs.append((logged, topic, m))
    frames = _bag_frames(tmp_path, msgs)
    full, binned = frames[0].camera, frames[-1].camera
    assert (binned.width, binned.height) == (rb.W // 2, rb.H // 2)
    np.testing.assert_allclose(binned.K[:2], full.K[:2] / 2)  # image_geometry's binning rule
    # (fitted on the full-size frames: the calibration records their focal lengths, as
    # estimate_color_calibration does)
    calib = ColorCalibration(focal_scale=1.1, dcx=4.0, dcy=-2.0, ref_focal=(full.K[0, 0], full.K[1, 1]))
    want = calib.color_camera(full).K.copy()
    want[:2] /= 2  # the calibrated colour camera, binned
    np.testing.assert_allclose(calib.color_camera(binned).K, want)


# -- changes the suite follows (guards: no other test feeds them mid-run) -------------------------------
@pytest.mark.parametrize("path", ["node", "bag"])
def test_depth_that_switches_from_16uc1_millimetres_to_32fc1_metres_stays_in_metres(tmp_path, path):
    """A driver update part-way (realsense-ros 16UC1 -> a 32FC1 depth_image_proc chain): REP 118 says
    16UC1 is millimetres and 32FC1 metres, so the wall is 1.5 m in every frame, before and after, and
    no frame is rejected for its depth."""
    msgs = _drive(enc_of=lambda i: "16UC1" if i < 4 else "32FC1")
    if path == "node":
        bus, node, frames = _node(tmp_path)
        _feed(bus, msgs)
        assert not node.diag.summary()["rejected"] and node.mapper.stats.skipped_invalid_depth == 0
    else:
        frames = _bag_frames(tmp_path, msgs)
    assert len(frames) == 8
    for f in frames:
        np.testing.assert_allclose(f.depth, 1.5, rtol=1e-6)


@pytest.mark.parametrize("path", ["node", "bag"])
def test_a_camera_frame_renamed_by_a_restarted_driver_is_looked_up_by_its_new_name(tmp_path, path):
    """A driver restarted with another ``camera_name`` stamps its images and CameraInfo with a new
    optical frame (its own static transform published with it). Each frame is looked up by the name
    it carries: the frame ids are the messages', and the poses the hand-composed ones (the camera
    0.02 m further each frame, wherever it is named), none lost."""
    new = "camera_optical_frame"
    msgs = _drive(frame_of=lambda i: OPT if i < 4 else new, map_from=rb.T0 - 10 * rb.DT)
    if path == "node":
        bus, node, frames = _node(tmp_path)
        _feed(bus, msgs)
        assert not node.diag.summary()["rejected"]
    else:
        frames = _bag_frames(tmp_path, msgs)
    assert [f.camera.frame_id for f in frames] == [OPT] * 4 + [new] * 4
    np.testing.assert_allclose(
        [f.camera.T_map_cam[0, 3] for f in frames], [_camera_x(i, MAP_X) for i in range(8)], atol=1e-6
    )


def test_a_camera_back_after_a_minute_away_is_mapped_where_odometry_puts_it(tmp_path, caplog):
    """The camera's USB link drops for 60 s while odometry goes on (the robot drives on); the driver
    comes back. mapper_node must map the frames after the gap (TF cache is 30 s: the frames' own
    samples are fresh) at the poses odometry gives, by hand 60 s x 0.2 m/s further, and say the
    silence on the console a bounded number of times (not once per TF message of the minute)."""
    gap = 60 * 10**9

    def stamp(i):
        return rb.T0 + i * rb.DT + (gap if i >= 4 else 0)

    msgs = _drive(stamp_of=stamp, map_from=rb.T0 - 10 * rb.DT)
    for ns in range(rb.T0 + 4 * rb.DT, rb.T0 + gap + 4 * rb.DT, rb.DT):  # odometry through the gap
        tfs = [
            rb._tf(ns, "odom", "base_link", (0.02 * (ns - rb.T0) / rb.DT, 0, 0)),
            rb._tf(ns, "map", "odom", (MAP_X, 0, 0)),
        ]
        msgs.append((ns + 3, "/tf", T[rb.TFM](transforms=tfs)))
    bus, node, frames = _node(tmp_path)
    with caplog.at_level(logging.WARNING):
        _feed(bus, msgs)
    assert len(frames) == 8 and not node.diag.summary()["rejected"]
    want = [_camera_x(i + (gap / rb.DT if i >= 4 else 0), MAP_X) for i in range(8)]
    np.testing.assert_allclose([f.camera.T_map_cam[0, 3] for f in frames], want, atol=1e-6)
    waiting = [r for r in caplog.records if "waiting for" in r.getMessage()]
    assert 1 <= len(waiting) <= 5, [r.getMessage() for r in waiting]


@pytest.mark.parametrize("path", ["node", "bag"])
def test_a_driver_restarted_at_half_size_with_the_old_calibration_file_is_said_once(tmp_path, caplog, path):
    """The driver restarts at half resolution but camera_info_manager still serves the calibration
    file of the full size (its CameraInfo says the old width and height): no frame after it can be
    mapped with that K. They are refused -- all 8 of them, counted -- and said once on the console,
    not a line a frame."""
    msgs = []
    for logged, topic, m in _drive(n=12):
        i = round((logged - rb.T0) / rb.DT) if topic in (COLOR, DEPTH) else -1
        msgs.append((logged, topic, _half(m) if i >= 4 else m))
    with caplog.at_level(logging.WARNING):
        if path == "node":
            bus, node, frames = _node(tmp_path)
            _feed(bus, msgs)
            assert sum(node.diag.summary()["rejected"].values()) == 8
        else:
            frames = _bag_frames(tmp_path, msgs)
    assert len(frames) == 4
    said = [
        r.getMessage() for r in caplog.records if "16x12" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(said) == 1, said


# -- real frames: the RealSense kitchen recording, its driver restarted with binning and 32FC1 ---------
N_REAL, SWITCH = 6, 3


def _png_depth_mm(msg) -> np.ndarray:
    """compressedDepth as image_transport writes it: a 12-byte ConfigHeader, then a 16-bit PNG of
    millimetres; decoded here with Pillow alone."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(bytes(msg.data[12:]))), dtype=np.uint16)


@pytest.fixture(scope="module")
def restarted_kitchen(shared_data, tmp_path_factory):
    """The first 6 frames of ../shared/data/realsense_kitchen_rgbd as a driver restarted after frame 3
    with 2x2 binning and depth as 32FC1 metres would record them: colour decoded by Pillow (rgb8),
    depth by Pillow from compressedDepth; from frame 3 both images take every other pixel and the
    CameraInfo says binning 2 (K, width, height of the sensor, as drivers and image_geometry have it).
    Read with rosbags' AnyReader, written with rosbags' Writer. Returns (bag, messages in log
    order, {stamp: (full-size depth mm, K)})."""
    import io

    from PIL import Image
    from rosbags.highlevel import AnyReader

    src = {"/camera/camera/color/image_raw/compressed": COLOR,
           "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth": DEPTH,
           "/camera/camera/color/camera_info": INFO}  # fmt: skip
    msgs, truth, count = [], {}, {COLOR: 0, DEPTH: 0, INFO: 0}
    with AnyReader([shared_data / "realsense_kitchen_rgbd"]) as r:
        conns = [c for c in r.connections if c.topic in src or c.topic in ("/tf", "/tf_static")]
        for c, logged, raw in r.messages(connections=conns):
            m = r.deserialize(raw, c.msgtype)
            if c.topic in ("/tf", "/tf_static"):
                msgs.append((logged, c.topic, m))
                continue
            topic = src[c.topic]
            i = count[topic]
            count[topic] += 1
            if i >= N_REAL:
                continue
            ns = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            fid = m.header.frame_id
            s = 2 if i >= SWITCH else 1
            if topic == COLOR:
                rgb = np.asarray(Image.open(io.BytesIO(bytes(m.data))).convert("RGB"))
                out = rb._image(ns, fid, rgb[::s, ::s], "rgb8")
            elif topic == DEPTH:
                mm = _png_depth_mm(m)
                truth.setdefault(ns, {})["mm"] = mm
                d = mm[::s, ::s]
                out = rb._image(ns, fid, d if s == 1 else np.where(d > 0, d / 1000.0, np.nan).astype(np.float32), "16UC1" if s == 1 else "32FC1")  # fmt: skip
            else:
                truth.setdefault(ns, {})["K"] = np.array(m.k, float).reshape(3, 3)
                out = copy.deepcopy(m)
                out.binning_x = out.binning_y = s if s > 1 else 0
            msgs.append((logged, topic, out))
    bag = rb._write(tmp_path_factory.mktemp("real") / "restarted", TOPICS, msgs)
    return bag, msgs, truth


@pytest.mark.parametrize("path", ["node", "bag"])
def test_real_frames_after_a_binning_and_units_restart_backproject_where_image_geometry_puts_them(
    restarted_kitchen, tmp_path, path
):
    """After the restart each frame must be made with its own CameraInfo and its depth in metres:
    every pixel (u, v) of a binned frame back-projects (camera frame) to the point the full-size
    frame's pixel (2u, 2v) gives with the sensor's K and the millimetres Pillow decodes / 1000 --
    x = (2u - cx) / fx * z, image_geometry's binning rule -- and frames before it the same without
    binning. A frame made with the previous CameraInfo, or read as millimetres, lands elsewhere
    (by 2x, or 1000x). Node path: mapper_node on the replay bus (its mapper not run: only the frames
    it makes are looked at); bag path: what `map` reads."""
    bag, msgs, truth = restarted_kitchen
    if path == "node":
        bus, node, _ = _node(tmp_path)
        frames = []
        node.mapper.add_frame = lambda f: frames.append(f) or _no_keyframe()
        _feed(bus, msgs)
    else:
        from gs_mapping.mapping.frames import read_frames
        from gs_mapping.mapping.mapper_config import TopicsConfig

        frames = list(read_frames(bag, TopicsConfig(color=COLOR, depth=DEPTH, camera_info=INFO)))
    assert len(frames) == N_REAL
    for k, f in enumerate(frames):
        s = 2 if k >= SWITCH else 1
        mm, K = truth[f.stamp_ns]["mm"], truth[f.stamp_ns]["K"]
        z = mm[::s, ::s] / 1000.0
        v, u = np.mgrid[0 : z.shape[0], 0 : z.shape[1]] * s
        want = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
        T = np.linalg.inv(f.camera.T_map_cam)
        got = f.camera.backproject(f.depth) @ T[:3, :3].T + T[:3, 3]
        ok = mm[::s, ::s] > 0
        assert f.depth.shape == z.shape and ok.mean() > 0.5
        np.testing.assert_allclose(got[ok], want[ok], atol=2e-5, err_msg=f"frame {k}")


def _no_keyframe():
    from gs_mapping.mapping.keyframes import KeyframeDecision

    return KeyframeDecision(False, "not mapped here")
