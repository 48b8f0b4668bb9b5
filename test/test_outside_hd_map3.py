"""Outside review of issue 18 (GSMap), third round: hd-predict, hd-eval and the checkpoint loader on
inputs real recordings and real files have that the suite did not try — a multi-camera rig whose
cameras are not hardware-triggered (stamps a few milliseconds apart), a six-camera bag run with the
default checkpoint, a /tf_static logged just after the first image, one truncated JPEG in a
drive, the README's "a camera's own
frame as --base-frame", a checkpoint damaged on disk or in transfer, and hd-predict's own output
scored by hd-eval with its default options.

Each test compares the project with an independent reference: the approximate-time grouping that
hd_map_node (message_filters' rule) applies to the same bag, the node's choice of the shipped model
for a rig, tf2's rule that a static transform holds at every time, Pillow's decoding of the JPEGs, a numpy pinhole projection of
the ground, Python's zipfile CRC-32 check of the checkpoint's zip archive, and a line IoU
rasterised by hand with OpenCV. Tests marked xfail(strict) document bugs found by this review."""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import zipfile

import numpy as np
import pytest

CAMS = ["front", "front_left", "front_right", "back_left", "back_right", "back"]
IMAGE_TOPICS = [f"/cameras/{c}/image_raw" for c in CAMS]


# ------------------------------------------------------------------------------------------------
# fixtures: a small six-camera world drive and rewritten copies of it


@pytest.fixture(scope="module")
def surround_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd3") / "surround"
    write_bag(Drive.make(3, 3, "surround", (128, 64)), out, progress=False)
    return out


def _rewrite(src, out, keep=None, stamp_offset_ns=None, log_time=None):
    """Copy a bag's topics ``keep`` (default: all but depth); ``stamp_offset_ns(topic)``: ns added to
    the header stamp of that topic's messages; ``log_time(topic, t)``: a new log time."""
    from gs_mapping.bag import BagReader, BagWriter

    with BagReader(src) as r:
        keep = keep or [t.name for t in r.topics if "depth" not in t.name]
        types = {t: r.topic(t).type for t in keep}
        rows = []
        for topic, t, m in r.messages(keep):
            dt = stamp_offset_ns(topic) if stamp_offset_ns else 0
            if dt:
                st = m.header.stamp
                m.header.stamp = dataclasses.replace(st, nanosec=st.nanosec + dt)
            rows.append((log_time(topic, t) if log_time else t, topic, m))
    rows.sort(key=lambda r: r[0])
    with BagWriter(out) as w:
        for t in keep:
            w.add_topic(t, types[t], latched=t == "/tf_static")
        for t, topic, m in rows:
            w.write(topic, t, m)
    return out


def _camera_offset(topic: str) -> int:
    """Free-running cameras: camera i's stamps 3·i ms after the front camera's (15 ms spread, inside
    hd_map_node's default sync_slop_s of 20 ms)."""
    for i, c in enumerate(CAMS):
        if topic.startswith(f"/cameras/{c}/"):
            return 3_000_000 * i
    return 0


@pytest.fixture(scope="module")
def unsynced_bag(surround_bag, tmp_path_factory):
    return _rewrite(surround_bag, tmp_path_factory.mktemp("hd3") / "unsynced", stamp_offset_ns=_camera_offset)


def _hd_predict(bag, out, *extra):
    from gs_mapping.cli import main

    return main(["hd-predict", str(bag), "--out", str(out), "--no-progress", *extra])


def _node_on(bag, cams):
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = list(cams)
    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), cfg)
    with BagReader(bag) as b:
        bus.run(b, progress=False)
    return node, bus


# ------------------------------------------------------------------------------------------------
# a rig of free-running cameras: stamps a few milliseconds apart


def test_the_node_groups_free_running_cameras_a_few_ms_apart(unsynced_bag):
    # the yardstick of the xfail below: hd_map_node groups the six cameras as message_filters'
    # ApproximateTime does (spread 15 ms <= sync_slop_s 20 ms): every frame of the bag is predicted
    node, bus = _node_on(unsynced_bag, IMAGE_TOPICS)
    assert bus.published["/hd_map_node/lanes_json"] == 3
    assert not node.diag.dropped and not node.diag.rejected


def test_hd_predict_groups_free_running_cameras_as_the_node_does(unsynced_bag, tmp_path, capsys):
    # real surround rigs are rarely hardware-triggered (nuScenes' six cameras fire up to ~40 ms
    # apart); the node predicts each of these frames, hd-predict must too
    out = tmp_path / "pred.json"
    rc = _hd_predict(unsynced_bag, out, "--cameras", *IMAGE_TOPICS)
    captured = capsys.readouterr()
    assert rc == 0, captured.err.strip().splitlines()[-1:]
    doc = json.loads(out.read_text())
    assert len(doc["results"]) == 3
    assert json.loads(captured.out.strip().splitlines()[-1])["unmatched_images"] == 0
    # each frame at its first camera's stamp (the front one, 0-15 ms before the others), as the
    # node stamps its lanes
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader

    with BagReader(unsynced_bag) as b:
        front = sorted(M.header_fields(m)[0] for _, _, m in b.messages([IMAGE_TOPICS[0]]))
    assert [r["stamp_ns"] for r in doc["results"]] == front
    # past the slop (15 ms spread, 10 ms allowed): no frame, one line saying why
    assert _hd_predict(unsynced_bag, tmp_path / "no.json", "--sync-slop", "0.01", "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "within 0.01 s" in err, err
    assert doc["frame"] == "rep103"  # its points' convention, which hd-eval reads


# ------------------------------------------------------------------------------------------------
# a six-camera bag with the default checkpoint


def test_hd_predict_on_six_cameras_runs_the_model_the_node_runs(surround_bag, tmp_path, capsys):
    # the node (hd_map_node.checkpoint empty) picks the shipped model for its rig: the surround one
    # for several cameras. docs/hd_model.md measured the front model on the six cameras at Chamfer
    # mAP 0.025 against the surround model's 0.382: the same bag must not score 15x worse through
    # hd-predict than through the node
    node, _ = _node_on(surround_bag, IMAGE_TOPICS)
    out = tmp_path / "pred.json"
    assert _hd_predict(surround_bag, out) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(summary["cameras"]) == sorted(IMAGE_TOPICS)
    assert summary["checkpoint"] == str(node._model_path)
    assert summary["region"] == node.predictor.region_name == "patch"


# ------------------------------------------------------------------------------------------------
# TF as recordings have it: /tf_static logged just after the first image


def test_hd_predict_survives_a_static_transform_logged_after_the_first_image(surround_bag, tmp_path, capsys):
    # `ros2 bag record` started with the camera driver, robot_state_publisher 5 ms later: the first
    # image is logged before /tf_static. tf2 (and hd_map_node's buffer) holds a static transform at
    # every stamp, so the frame can be predicted once it arrives; at the least the frame is skipped
    # and the rest predicted — not exit 2 with the whole drive lost
    from gs_mapping.bag import BagReader

    with BagReader(surround_bag) as r:
        first = min(t for tp, t, _ in r.messages(["/cameras/front/image_raw"]))
    keep = ["/cameras/front/image_raw", "/cameras/front/camera_info", "/tf", "/tf_static"]
    keep.append("/ground_truth/lanes_json")
    bag = _rewrite(
        surround_bag,
        tmp_path / "late_tf_static",
        keep=keep,
        log_time=lambda tp, t: first + 5_000_000 if tp == "/tf_static" else t,
    )
    out = tmp_path / "pred.json"
    rc = _hd_predict(bag, out)
    err = capsys.readouterr().err.strip()
    assert rc == 0, err.splitlines()[-1:]
    assert len(json.loads(out.read_text())["results"]) >= 2


# ------------------------------------------------------------------------------------------------
# one damaged JPEG in a drive


@pytest.fixture(scope="module")
def one_bad_jpeg_bag(surround_bag, tmp_path_factory):
    """The front camera as JPEG CompressedImage (as image_transport records it); its second image's
    data cut to a third (a dropped packet, a truncated write)."""
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.messages import stamp_to_ns
    from gs_mapping.messages.camera_image import color_to_rgb
    from gs_mapping.messages.compressed_image import numpy_to_compressed_image

    out = tmp_path_factory.mktemp("hd3") / "one_bad_jpeg"
    raw, comp = "/cameras/front/image_raw", "/cameras/front/image_raw/compressed"
    keep = [raw, "/cameras/front/camera_info", "/tf", "/tf_static", "/ground_truth/lanes_json"]
    datas = []
    with BagReader(surround_bag) as r, BagWriter(out) as w:
        for t in keep[1:]:
            w.add_topic(t, r.topic(t).type, latched=t == "/tf_static")
        w.add_topic(comp, "sensor_msgs/msg/CompressedImage")
        for topic, t, m in r.messages(keep):
            if topic != raw:
                w.write(topic, t, m)
                continue
            c = numpy_to_compressed_image(
                color_to_rgb(m), "jpeg", stamp_to_ns(m.header.stamp), m.header.frame_id
            )
            if len(datas) == 1:
                c.data = c.data[: len(c.data) // 3]
            datas.append(bytes(c.data))
            w.write(comp, t, c)
    return out, datas


def test_hd_predict_skips_one_damaged_jpeg_and_keeps_the_other_frames(one_bad_jpeg_bag, tmp_path, capsys):
    # independent: Pillow decodes the first and third JPEG and refuses the second. hd-predict's
    # --strict is documented as "an undecodable message is an error (default: skipped)", and
    # hd_map_node rejects such a frame and goes on: the two good frames must be predicted
    import io

    Image = pytest.importorskip("PIL.Image")
    bag, datas = one_bad_jpeg_bag
    ok = []
    for d in datas:
        try:
            Image.open(io.BytesIO(d)).load()
            ok.append(True)
        except OSError:
            ok.append(False)
    assert ok == [True, False, True]
    out = tmp_path / "pred.json"
    rc = _hd_predict(bag, out)
    err = capsys.readouterr().err.strip()
    assert rc == 0, err.splitlines()[-1:]
    assert len(json.loads(out.read_text())["results"]) == 2


# ------------------------------------------------------------------------------------------------
# README: "a camera's own frame as --base-frame needs no TF"


def _ground_seen_by_identity_camera(K, w, h):
    """Ground points (z = 0 of the base frame) seen by a camera whose frame IS the base frame (numpy
    pinhole): a point on z = 0 has optical depth 0, so none is in front of the camera."""
    xs, ys = np.meshgrid(np.linspace(-30, 30, 61), np.linspace(-15, 15, 31))
    p = np.c_[xs.ravel(), ys.ravel(), np.zeros(xs.size)]
    uvw = (K @ p.T).T
    with np.errstate(all="ignore"):
        u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    return (p[:, 2] > 0) & (u > -0.5) & (u < w - 0.5) & (v > -0.5) & (v < h - 0.5)


def test_hd_predict_in_the_cameras_own_frame_is_not_silently_empty(surround_bag, tmp_path, capsys, caplog):
    # the model's ground is z = 0 of the base frame; an optical frame (REP-103: z forward, y down)
    # has the camera's own axis in that plane, so the numpy pinhole sees no ground at all
    K = np.array([[100.0, 0, 63.5], [0, 100, 31.5], [0, 0, 1]])
    assert not _ground_seen_by_identity_camera(K, 128, 64).any()
    out = tmp_path / "pred.json"
    cam = "/cameras/front/image_raw"
    with caplog.at_level(logging.WARNING):
        rc = _hd_predict(surround_bag, out, "--cameras", cam, "--base-frame", "front_optical_frame")
    err = capsys.readouterr().err.strip()
    if rc == 2:  # refused in one line naming the frame: fine
        assert err.count("\n") == 0 and "front_optical_frame" in err
        return
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if any("front_optical_frame" in m for m in said):  # a warning that the frame sees no ground: fine
        return
    # otherwise the file holds lanes (today: every frame "vectors": [], "region": [])
    frames = json.loads(out.read_text())["results"]
    assert any(fr["vectors"] for fr in frames), [fr["region"] for fr in frames]


# ------------------------------------------------------------------------------------------------
# a checkpoint damaged on disk or in transfer


def _damage_largest_member(src, dst, nbytes=64):
    """Copy a torch zip checkpoint with ``nbytes`` in the middle of its largest stored member set to
    zero (finite values: the non-finite check cannot see it). Returns that member's name."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    start -= start % 2  # whole float16 values
    assert any(data[start : start + nbytes])
    data[start : start + nbytes] = bytes(nbytes)
    dst.write_bytes(bytes(data))
    return info.filename


def test_a_checkpoint_damaged_in_its_weights_is_refused(tmp_path):
    # docs/hd_model.md: a corrupt file raises CheckpointError. A zeroed block in a tensor's bytes
    # (a bad sector, a truncated-then-padded copy, a flaky transfer) keeps every weight finite, but
    # the zip archive's own CRC-32 says the member is damaged: Python's zipfile sees it
    import torch

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.errors import CheckpointError
    from gsmap_hd.predict_bag import SHIPPED

    bad = tmp_path / "damaged.pt"
    member = _damage_largest_member(SHIPPED, bad)
    with zipfile.ZipFile(SHIPPED) as z:
        assert z.testzip() is None  # the shipped file is whole
    with zipfile.ZipFile(bad) as z:
        assert z.testzip() == member  # independent: the archive's CRC names the damaged member
    try:
        damaged, _, _ = load_model(bad)
    except CheckpointError:
        return
    good, _, _ = load_model(SHIPPED)
    changed = [k for k, v in good.state_dict().items() if not torch.equal(v, damaged.state_dict()[k])]
    raise AssertionError(f"damaged checkpoint loaded silently; weights changed: {changed}")


# ------------------------------------------------------------------------------------------------
# hd-predict's file scored by hd-eval as the user runs it


def _line_mask(pts_rep103):
    """A line as MapVR rasterises it (cv2.polylines, thickness 1) on its 480 x 240 window of
    0.125 m pixels, MapTR frame (x right +-15 m, y forward +-30 m); input in base_link."""
    cv2 = pytest.importorskip("cv2")
    p = np.asarray(pts_rep103, float)
    x, y = -p[:, 1], p[:, 0]  # REP-103 -> MapTR
    uv = np.c_[(x + 15) / 0.125, (30 - y) / 0.125]
    m = np.zeros((480, 240), np.uint8)
    cv2.polylines(m, [np.round(uv).astype(np.int32).reshape(-1, 1, 2)], False, 1, 1)
    return m.astype(bool)


def test_hd_eval_scores_hd_predicts_file_in_the_frame_it_was_written_in(tmp_path, capsys):
    # a frame as hd-predict writes it (base_link points, the front frustum region): one divider
    # straight ahead from 6 to 29 m, predicted right up to 15 m and then veering 2.5 m to the left.
    # Hand rasterisation (MapVR's thickness-1 cv2 line on the 0.125 m window): IoU < 0.5, the
    # highest line threshold, so raster AP (mean over thresholds 0.25..0.5) cannot be 1. Read as MapTR's frame (hd-eval's default),
    # x beyond 15 m falls outside the window and the prediction scores AP 1
    from gs_mapping.cli import main
    from gsmap_hd.region import rig_region

    gt = [[6.0, 0.0], [15.0, 0.0], [29.0, 0.0]]
    pred = [[6.0, 0.0], [15.0, 0.0], [29.0, 2.5]]
    a, b = _line_mask(gt), _line_mask(pred)
    assert (a & b).sum() / (a | b).sum() < 0.5
    region = rig_region("frustum", "front", (-30, 30), (-15, 15), (128, 256)).coords()
    doc = {  # as hd-predict writes it: its frame said in the file
        "frame": "rep103",
        "region": "frustum",
        "results": [
            {"stamp_ns": 1, "vectors": [{"pts": pred, "type": 0, "confidence_level": 0.9}], "region": region}
        ],
        "GTs": [{"vectors": [{"pts": gt, "type": 0}]}],
    }
    f = tmp_path / "pred.json"
    f.write_text(json.dumps(doc))
    assert main(["hd-eval", str(f), "--frame", "rep103"]) == 0
    stated = json.loads(capsys.readouterr().out)
    assert stated["raster"]["divider_ap"] < 0.5  # the file's own frame: the wrong half counts
    assert main(["hd-eval", str(f)]) == 0  # as a user runs it on hd-predict's output
    default = json.loads(capsys.readouterr().out)
    assert default["raster"]["divider_ap"] == pytest.approx(stated["raster"]["divider_ap"])
