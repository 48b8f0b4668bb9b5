"""Outside review of issue 16 (real robot recordings), seventh pass: what the suite makes of a
recording whose clocks, TF or topics are not the tidy ones: one camera image stamped far in the
future (a driver's hardware clock glitch, a PTP slave that jumps for one frame), a robot's
namespaced TF (``/robot1/tf``) read by `map` but not by `info` or `hd-predict`, and hidden from `map`
by a global ``/tf`` recorded without a message (``ros2 bag record -a`` keeps every advertised
topic), a camera's TF tree not connected to the robot's moving odometry (``odom -> base_footprint``
beside a URDF rooted at ``base_link``), one bad transform of an unrelated frame (a ROS 1 node's unset
quaternion, all zeros), an image_transport raw topic advertised but empty beside the compressed one
that was published, a whole MCAP that holds no message, and a camera that changes resolution
mid-drive.

Expected values come from outside the component: rosbags' own reading of the same bag (topics,
message counts, the transforms and CameraInfos as it deserialises them); tf2's rule for a bad
transform (``tf2/src/buffer_core.cpp``, ``BufferCore::setTransformImpl``: a transform with a NaN or a
quaternion of |q|² off 1 by more than 0.01 is logged and refused, ``return false``; the buffer and
every other transform stay as they were); the rule ``sync.RecordingPairer`` documents for a finished
recording ("each with its mutually nearest partner within slop_ns, each message used once"),
computed here by brute force over the whole recording; and hand-computed poses (the robot drives
0.02 m a frame along x, its camera 0.1 m ahead of the base). Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("cv2")  # (test_hostile_robot_inputs, whose rosbags-only builders we use, needs it)

import test_hostile_robot_inputs as rb  # noqa: E402

T0, DT, MS = rb.T0, rb.DT, 1_000_000
HOUR = 3600 * 10**9
OPTICAL = "camera_color_optical_frame"


# -- outside references ---------------------------------------------------------------------------
def _mutual_nearest(a: list[int], b: list[int], slop_ns: int) -> list[tuple[int, int]]:
    """The documented pairing of a finished recording, by brute force over all of it: repeatedly
    pair every (colour i, depth j) that are each other's nearest among the messages still unpaired
    and within ``slop_ns``, until nothing changes. Returns sorted (i, j)."""
    free_a, free_b, out = set(range(len(a))), set(range(len(b))), []
    changed = True
    while changed:
        changed = False
        for i in sorted(free_a):
            if not free_b:
                break
            j = min(free_b, key=lambda k: (abs(a[i] - b[k]), k))
            if min(free_a, key=lambda k: (abs(a[k] - b[j]), k)) == i and abs(a[i] - b[j]) <= slop_ns:
                out.append((i, j))
                free_a.discard(i)
                free_b.discard(j)
                changed = True
    return sorted(out)


def _rosbags_reading(bag) -> tuple[dict[str, int], dict[str, list]]:
    """rosbags' own reading: ({topic: message count}, {topic: [deserialised messages]})."""
    from rosbags.highlevel import AnyReader

    counts: dict[str, int] = {}
    msgs: dict[str, list] = {}
    with AnyReader([bag]) as r:
        for c in r.connections:
            counts[c.topic] = counts.get(c.topic, 0)
        for c, _t, raw in r.messages():
            counts[c.topic] += 1
            msgs.setdefault(c.topic, []).append(r.deserialize(raw, c.msgtype))
    return counts, msgs


def _hd_predict(capsys, bag, out, *extra):
    """`gs-mapping hd-predict` in-process: (exit status, its JSON summary or None, last stderr line)."""
    import json

    from gs_mapping.cli import main

    rc = main(
        ["hd-predict", str(bag), "--out", str(out), "--base-frame", "base_link", "--no-progress", *extra]
    )
    cap = capsys.readouterr()
    lines = [x for x in cap.err.strip().splitlines() if x.strip()]
    summary = json.loads(cap.out.strip().splitlines()[-1]) if rc == 0 and cap.out.strip() else None
    return rc, summary, (lines[-1] if lines else "")


# -- a camera image stamped far in the future ------------------------------------------------------
def test_one_colour_image_stamped_an_hour_ahead_costs_that_frame_only(tmp_path):
    """A 30-frame drive (10 Hz) whose colour image 5 carries a header stamp one hour ahead (a
    camera's hardware clock glitch for one frame; the image is logged in its place). By the pairing
    rule the suite documents (mutual nearest within the 20 ms slop, computed here by brute force)
    29 frames pair: every one but the glitched image, whose depth has no partner. `map` gets 5:
    the images after the glitch are taken for a new take (they step back by more than
    ``STEP_BACK_NS`` from the newest stamp) and wait aside for depth to step back too, which never
    happens; at the end they are dropped (``sync.py``, ``RecordingPairer.add``). The warning then
    says the nearest two stamps are '0.000 s apart'."""
    glitch = 5

    def color(ns, fid, rgb):
        return rb._image(ns + (HOUR if ns == T0 + glitch * DT else 0), fid, rgb, "rgb8")

    bag = rb.robot_bag(tmp_path / "b", n=30, color=color)
    colour = [T0 + i * DT + (HOUR if i == glitch else 0) for i in range(30)]
    depth = [T0 + i * DT for i in range(30)]  # (robot_bag stamps depth as its colour)
    expected = [colour[i] for i, _ in _mutual_nearest(colour, depth, 20 * MS)]
    assert len(expected) == 29  # the reference: only the glitched image is left out
    frames = rb._frames(bag)
    assert [f.stamp_ns for f in frames] == expected
    # and each is posed where the robot was (0.02 m a frame, camera 0.1 m ahead): hand computation
    xs = [float(f.camera.T_map_cam[0, 3]) for f in frames]
    assert xs == pytest.approx([0.1 + 0.02 * i for i in range(30) if i != glitch], abs=1e-6)


def _pairer_pairs(colour: list[int], depth: list[int], slop_ns: int) -> list[tuple[int, int]]:
    """RecordingPairer fed as ``map`` feeds it: log order (each depth 1 µs after its colour)."""
    from gs_mapping.sync import RecordingPairer

    p = RecordingPairer(slop_ns)
    out = []
    for i in range(max(len(colour), len(depth))):
        if i < len(colour):
            out += p.add(0, colour[i], i)
        if i < len(depth):
            out += p.add(1, depth[i], i)
    return sorted(out + p.finish())


_BASE = [10**18 + i * 100 * MS for i in range(100)]  # 100 frames at 10 Hz


def _shift(stamps: list[int], where, by: int) -> list[int]:
    return [s + (by if where(i) else 0) for i, s in enumerate(stamps)]


@pytest.mark.parametrize(
    "colour,depth",
    [
        (_shift(_BASE, lambda i: i == 10, HOUR), _BASE),  # a colour image an hour ahead
        (_shift(_BASE, lambda i: i == 10, 5_000 * MS), _BASE),  # 5 s ahead (a PTP servo step)
        (_BASE, _shift(_BASE, lambda i: i == 90, HOUR)),  # a depth image near the end
    ],
    ids=["colour+1h", "colour+5s", "depth+1h-late"],
)
def test_recording_pairer_forward_glitch_pairs_as_the_documented_rule(colour, depth):
    """``RecordingPairer``'s docstring: "each with its mutually nearest partner within slop_ns, each
    message used once". Against that rule evaluated by brute force over the whole recording (99
    pairs: all but the glitched message's). A stamp far *back* is already handled as a glitch
    (test_outside_session22b); one far *ahead* is not."""
    depth = [s + 2 * MS for s in depth]
    assert _pairer_pairs(colour, depth, 20 * MS) == _mutual_nearest(colour, depth, 20 * MS)


def test_recording_pairer_keeps_every_pair_when_both_clocks_jump_forward():
    """The robot's clock set by chrony/NTP mid-recording: both streams' stamps jump three hours
    forward from frame 50 on (each depth image still 2 ms after its colour). Nothing steps back, so
    the brute-force rule pairs all 100; so must the pairer (guards the forward jump, the mirror of
    test_outside_session22's step back)."""
    colour = _shift(_BASE, lambda i: i >= 50, 3 * HOUR)
    depth = [s + 2 * MS for s in colour]
    ref = _mutual_nearest(colour, depth, 20 * MS)
    assert len(ref) == 100
    assert _pairer_pairs(colour, depth, 20 * MS) == ref


# -- a robot's namespaced TF beside an empty global /tf ------------------------------------------------
def _namespaced_bag(path, empty_global_tf: bool):
    """A robot's recording with everything under ``/robot1`` (Clearpath's and Nav2's multi-robot
    layouts), its TF on ``/robot1/tf`` and ``/robot1/tf_static``; optionally also a global ``/tf``
    recorded with no message (``ros2 bag record -a`` records every advertised topic: here one a
    node advertised and never published on)."""
    T = rb.T
    topics = {
        "/robot1/camera/color/image_raw": rb.IMG,
        "/robot1/camera/aligned_depth_to_color/image_raw": rb.IMG,
        "/robot1/camera/color/camera_info": rb.CINFO,
        "/robot1/tf": rb.TFM,
        "/robot1/tf_static": rb.TFM,
    }
    if empty_global_tf:
        topics["/tf"] = rb.TFM
    mount = [
        rb._tf(T0, "base_link", "camera_link", (0.1, 0, 0.2)),
        rb._tf(T0, "camera_link", OPTICAL, q=rb.OPT_Q),
    ]
    msgs = [(T0 - 1, "/robot1/tf_static", T[rb.TFM](transforms=mount))]
    for i in range(-1, 5):
        ns = T0 + i * DT
        moving = [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.02 * i, 0, 0))]
        msgs.append((ns, "/robot1/tf", T[rb.TFM](transforms=moving)))
    for i in range(4):
        ns = T0 + i * DT
        rgb, d = rb._scene(i)
        msgs.append((ns, "/robot1/camera/color/image_raw", rb._image(ns, OPTICAL, rgb, "rgb8")))
        mm = (d * 1000).astype(np.uint16)
        msgs.append((ns + 1000, "/robot1/camera/aligned_depth_to_color/image_raw", rb._image(ns, OPTICAL, mm, "16UC1")))  # fmt: skip
        msgs.append((ns, "/robot1/camera/color/camera_info", rb._info(ns, OPTICAL)))
    return rb._write(path, topics, msgs)


def test_an_empty_global_tf_does_not_hide_the_robots_namespaced_tf(tmp_path):
    """rosbags reads the bag as: ``/tf`` 0 messages, ``/robot1/tf`` 6, ``/robot1/tf_static`` 1.
    The same bag without the empty ``/tf`` maps with the robot's poses (session 22's fix); with it,
    `map` reads the empty ``/tf`` and nothing else, and every frame is 'no TF for frame'. The
    topic-discovery rule the suite applies to images (a topic without messages is not chosen over
    one with them, ``topics._published``) is not applied to TF. Hand computation: camera x =
    0.1 + 0.02 i."""
    bag = _namespaced_bag(tmp_path / "b", empty_global_tf=True)
    counts, _ = _rosbags_reading(bag)
    assert counts["/tf"] == 0 and counts["/robot1/tf"] == 6 and counts["/robot1/tf_static"] == 1
    frames = rb._frames(bag)
    xs = [float(f.camera.T_map_cam[0, 3]) for f in frames]
    assert xs == pytest.approx([0.1 + 0.02 * i for i in range(4)], abs=1e-6)


def test_info_shows_the_tf_tree_map_reads_from_a_robots_namespaced_tf(tmp_path):
    """`gs-mapping info` is how a user checks a bag's TF tree before mapping it (README: "topics,
    types, counts, time span and TF tree"). For a bag whose TF is on ``/robot1/tf`` and
    ``/robot1/tf_static``, `map` poses every frame from those topics, yet `info` reports no
    transform at all. Expected: the edges rosbags deserialises from the bag's TFMessage topics
    (child -> parent), or at least a line naming ``/robot1/tf``."""
    from gs_mapping.cli.info import format_text, summarize

    bag = _namespaced_bag(tmp_path / "b", empty_global_tf=False)
    _, msgs = _rosbags_reading(bag)
    edges = {
        str(t.child_frame_id): str(t.header.frame_id)
        for topic in ("/robot1/tf", "/robot1/tf_static")
        for m in msgs[topic]
        for t in m.transforms
    }
    assert edges == {"odom": "map", "base_link": "odom", "camera_link": "base_link", OPTICAL: "camera_link"}
    assert len(rb._frames(bag)) == 4  # (map reads that TF)
    info = summarize(bag)
    text = format_text(info)
    assert info["tf_frames"] == edges or "/robot1/tf" in text.split("TF tree")[-1], text


# -- the camera's TF tree apart from the robot's moving one -----------------------------------------
def test_camera_tree_not_connected_to_the_moving_odometry_is_named_not_mapped_as_a_fixed_camera(
    tmp_path, capsys, caplog, fast_yaml
):
    """The most common TF mismatch on a real robot: the base controller publishes ``odom ->
    base_footprint`` (diff_drive_controller's ``base_frame_id``) while the URDF's root, and so
    ``robot_state_publisher``'s static mount, is ``base_link -> camera_link -> optical``; nothing
    joins ``base_footprint`` and ``base_link``. The robot drives 0.2 m a frame (1 m in all). tf2
    answers a lookup ``odom <- camera_color_optical_frame`` with "not part of the same tree: Tf has
    two or more unconnected trees"; mapper_node (live) refuses a static-only tree and waits for the
    moving transform (``tf.MapPoses``: "only static transforms reach ..."). `map` anchors on the
    camera's static tree and maps 6 frames at one pose, saying only that the map frame is the first
    frame's pose (tree root base_link). ``tf.MapPoses``' rule "a static-only tree [in a bag] is a
    camera that does not move" is right for a tripod, but here the bag's own TF has a moving tree
    beside it. Expected: an error or a warning that names the moving tree the camera is not
    connected to (``odom`` / ``base_footprint``)."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bag = rb.robot_bag(
        tmp_path / "b", n=6, tf_dyn=lambda ns, i: [rb._tf(ns, "odom", "base_footprint", (0.2 * i, 0, 0))]
    )
    _, msgs = _rosbags_reading(bag)
    moving = {(str(t.header.frame_id), str(t.child_frame_id)) for m in msgs["/tf"] for t in m.transforms}
    static = {
        (str(t.header.frame_id), str(t.child_frame_id)) for m in msgs["/tf_static"] for t in m.transforms
    }
    assert moving == {("odom", "base_footprint")}
    assert static == {("base_link", "camera_link"), ("camera_link", OPTICAL)}  # (two unconnected trees)
    import logging

    with caplog.at_level(logging.INFO):
        rc, last, err = rb._map(capsys, bag, tmp_path / "o", fast_yaml)
    said = err + caplog.text
    assert rc != 0 or "base_footprint" in said or "odom" in said, said


# -- hd-predict on what real robots record ---------------------------------------------------------------
def test_hd_predict_reads_the_robots_namespaced_tf_as_map_does(tmp_path, capsys):
    """The same namespaced recording: rosbags reads ``base_link -> camera_link -> optical`` on
    ``/robot1/tf_static``; `map` poses every frame from it. hd-predict needs only that static mount
    (``--base-frame base_link``) and reports 'frame ... never appeared in /tf or /tf_static (known
    frames: none ...)'. Expected: the 4 frames, or an error naming ``/robot1/tf``."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bag = _namespaced_bag(tmp_path / "b", empty_global_tf=False)
    rc, summary, last = _hd_predict(
        capsys, bag, tmp_path / "hd.json", "--cameras", "/robot1/camera/color/image_raw"
    )
    assert (rc == 0 and summary["frames"] == 4) or "/robot1/tf" in last, last


def test_hd_predict_skips_a_bad_transform_of_another_frame_as_tf2_does(tmp_path, capsys):
    """A ROS 1 node that never set its transform's rotation publishes (0, 0, 0, 0) (ROS 1 message
    fields default to zero; rosbags-convert keeps it): here ``base_link -> imu_link`` once on /tf.
    tf2 (``BufferCore::setTransformImpl``) logs it and refuses that one transform ("TF_DENORMALIZED_
    QUATERNION" / "ignoring transform"), leaving the buffer as it was, so the camera's transforms
    are all there. `map` does the same ('bad transform message ignored'). hd-predict exits 2 on
    it, for a frame it never looks up (``gsmap_hd/predict_bag.py``, the ``/tf`` branch of the message
    loop)."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bad = rb.T[rb.TFM](transforms=[rb._tf(T0, "base_link", "imu_link", q=(0.0, 0.0, 0.0, 0.0))])
    bag = rb.robot_bag(tmp_path / "b", n=4, extra_msgs=[(T0 + 5, "/tf", bad)])
    _, msgs = _rosbags_reading(bag)
    (imu,) = [t for m in msgs["/tf"] for t in m.transforms if t.child_frame_id == "imu_link"]
    q = imu.transform.rotation
    assert (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 0.0)
    rc, summary, last = _hd_predict(capsys, bag, tmp_path / "hd.json")
    assert rc == 0, last
    assert summary["frames"] == 4


def test_hd_predict_error_for_a_missing_base_frame_does_not_blame_valid_camera_infos(tmp_path, capsys):
    """``--base-frame base_footprint`` on a robot whose TF has no such frame (a common mistake: the
    README names ``base_footprint``). The bag's 4 CameraInfos are valid (rosbags reads K with fx =
    30, the camera's size 32x24), each logged with its image. The one error line must name the TF
    problem; it also says 'no valid /camera/color/camera_info message before the bag ended', which
    is false: ``why_waiting['info']`` is set when the first image is read before its CameraInfo
    and never cleared once the CameraInfo arrives (``gsmap_hd/predict_bag.py``, ``inputs``)."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bag = rb.robot_bag(tmp_path / "b", n=4)
    _, msgs = _rosbags_reading(bag)
    infos = msgs["/camera/color/camera_info"]
    assert len(infos) == 4 and all(
        float(m.k[0]) == rb.FX and (m.width, m.height) == (rb.W, rb.H) for m in infos
    )
    from gs_mapping.cli import main

    rc = main(["hd-predict", str(bag), "--out", str(tmp_path / "hd.json"), "--base-frame", "base_footprint", "--no-progress"])  # fmt: skip
    last = [x for x in capsys.readouterr().err.strip().splitlines() if x.strip()][-1]
    assert rc == 2 and "base_footprint" in last, last
    assert "camera_info" not in last, last


def test_hd_predict_takes_the_published_transport_not_an_empty_raw_topic(tmp_path, capsys):
    """A bag recorded with ``-a`` from a camera publishing only its ``/compressed`` transport: the
    raw ``image_raw`` was advertised and recorded with no message (rosbags: count 0). `map` picks
    the compressed topic (``topics.discover(empty=…)``, tested in test_hostile_robot_inputs);
    hd-predict picks the empty raw one and predicts nothing. Expected: the 4 frames, on
    ``/camera/color/image_raw/compressed``."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bag = rb.robot_bag(
        tmp_path / "b",
        n=4,
        color=lambda ns, fid, rgb: rb._compressed(ns, fid, "rgb8; jpeg compressed bgr8", rb._jpeg(rgb)),
        color_topic="/camera/color/image_raw/compressed",
        color_type=rb.CIMG,
        extra_topics={"/camera/color/image_raw": rb.IMG},
    )
    counts, _ = _rosbags_reading(bag)
    assert counts["/camera/color/image_raw"] == 0 and counts["/camera/color/image_raw/compressed"] == 4
    rc, summary, last = _hd_predict(capsys, bag, tmp_path / "hd.json")
    assert rc == 0, last
    assert summary["cameras"] == ["/camera/color/image_raw/compressed"] and summary["frames"] == 4


# -- a whole MCAP that holds no message --------------------------------------------------------------
def test_info_of_a_whole_mcap_without_messages_lists_its_topics_as_rosbags_and_mcap_read_it(
    tmp_path, monkeypatch
):
    """``rosbags-convert --dst-storage mcap --include-topic T`` where T carried no message (or a
    rosbags-based recorder stopped before any message) writes a whole MCAP: header, one chunk with
    the Schema and Channel records only, DataEnd, summary (Statistics: message_count 0) and footer.
    The mcap library reads its summary and rosbags opens it (4 connections, 0 messages); the same
    recording in sqlite3 storage is listed by `info` with its topics at count 0. The suite refuses
    the MCAP as 'cut short before its first whole message (nothing to read)': the chunk index with
    no message-index offsets (a chunk without messages has none) is taken for a file written
    without message indexes, which is then 'repaired' into nothing (``bag_repair.py``,
    ``_mcap_unindexed``, then ``_rebuild_mcap``)."""
    import tempfile

    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    from gs_mapping.cli.info import summarize

    (tmp_path / "tmpdir").mkdir()  # (where the suite puts a repaired copy: this test's own)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmpdir"))
    topics = {"/camera/color/image_raw": rb.IMG, "/camera/color/camera_info": rb.CINFO, "/tf": rb.TFM}
    bag = rb._write(tmp_path / "empty", topics, [], storage="MCAP")
    (f,) = bag.glob("*.mcap")
    with f.open("rb") as fh:
        summary = make_reader(fh).get_summary()
    assert summary is not None and summary.statistics.message_count == 0
    assert f.read_bytes().endswith(b"\x89MCAP0\r\n")  # (closed: the footer's magic is there)
    with AnyReader([bag]) as r:
        assert r.message_count == 0 and sorted(c.topic for c in r.connections) == sorted(topics)
    info = summarize(bag)
    assert info["message_count"] == 0
    assert {t["name"]: t["count"] for t in info["topics"]} == dict.fromkeys(topics, 0)


# -- a camera that changes resolution mid-drive ------------------------------------------------------
def _resolution_change_bag(path):
    """6 frames; from frame 3 on the camera streams at twice the size (a driver re-configured mid-
    drive: ``ros2 param set /camera rgb_camera.profile``), its CameraInfo (K doubled) with each image,
    logged 2 µs after it, depth registered to colour at the colour's size."""
    T = rb.T
    topics = {
        "/camera/color/image_raw": rb.IMG,
        "/camera/aligned_depth_to_color/image_raw": rb.IMG,
        "/camera/color/camera_info": rb.CINFO,
        "/tf": rb.TFM,
        "/tf_static": rb.TFM,
    }
    mount = [
        rb._tf(T0, "base_link", "camera_link", (0.1, 0, 0.2)),
        rb._tf(T0, "camera_link", OPTICAL, q=rb.OPT_Q),
    ]
    msgs = [(T0 - 1, "/tf_static", T[rb.TFM](transforms=mount))]
    for i in range(-1, 7):
        ns = T0 + i * DT
        moving = [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.02 * i, 0, 0))]
        msgs.append((ns, "/tf", T[rb.TFM](transforms=moving)))
    for i in range(6):
        ns, s = T0 + i * DT, 1 if i < 3 else 2
        w, h, fx = rb.W * s, rb.H * s, rb.FX * s
        k = [fx, 0.0, (w - 1) / 2, 0.0, fx, (h - 1) / 2, 0.0, 0.0, 1.0]
        rgb = np.full((h, w, 3), (20 * i, 120, 200), np.uint8)
        msgs.append((ns, "/camera/color/image_raw", rb._image(ns, OPTICAL, rgb, "rgb8")))
        msgs.append((ns + 1000, "/camera/aligned_depth_to_color/image_raw", rb._image(ns, OPTICAL, np.full((h, w), 1500, np.uint16), "16UC1")))  # fmt: skip
        msgs.append((ns + 2000, "/camera/color/camera_info", rb._info(ns, OPTICAL, k, w, h)))
    return rb._write(path, topics, msgs)


def test_camera_that_changes_resolution_mid_drive_maps_each_frame_with_its_own_camera_info(
    tmp_path, capsys, fast_yaml
):
    """Each frame must carry the CameraInfo of its own stamp, as rosbags reads it (size and K), and
    the image at that size; and `map` must take frames of both sizes in one map (keyframes of
    two cameras) without an error. Guards a path no test took: every other bag has one size."""
    pytest.importorskip("torch")  # (the mapper or the HD model runs)
    bag = _resolution_change_bag(tmp_path / "b")
    _, msgs = _rosbags_reading(bag)
    ref = [
        (int(m.width), int(m.height), float(m.k[0]), float(m.k[2])) for m in msgs["/camera/color/camera_info"]
    ]
    frames = rb._frames(bag)
    got = [
        (f.camera.width, f.camera.height, float(f.camera.K[0, 0]), float(f.camera.K[0, 2])) for f in frames
    ]
    assert got == ref
    assert [f.rgb.shape[:2] for f in frames] == [(h, w) for w, h, _, _ in ref]
    assert all(np.allclose(f.depth, 1.5) for f in frames)
    import json

    rc, last, _ = rb._map(capsys, bag, tmp_path / "o", fast_yaml)
    assert rc == 0, last
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["frames"] == 6 and metrics["skipped"] == 0, metrics


@pytest.fixture(scope="module")
def fast_yaml(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    p.write_text(rb.FAST)
    return p
