"""Nodes against hostile input and faults: nothing already good is lost, a bad message or a failed
save never stops a node, a frame whose TF is still in flight waits for it (tf2's message filter)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import KITCHEN_TOPIC_FIELDS
from hostile_fs import read_only_dir

from gs_mapping.bag import BagReader
from gs_mapping.messages import string_message
from gs_mapping.nodes.map_receiver_node import MapReceiverNode
from gs_mapping.nodes.mapper_node import MapperNode
from gs_mapping.ply import load_ply, save_ply
from gs_mapping.runtime.replay import ReplayBus

NODES_YAML = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      max_gaussians: 20000
      seeding: {{stride: 8}}
      optim: {{iterations: 1, first_iterations: 2}}
      keyframe: {{max_gap: 4}}
      topics: {{tf_tolerance_s: {tol}, {kitchen}}}
    mapper_node:
      snapshot_period_s: 0.5
      diagnostics_period_s: 0.5
      tf_wait_s: {wait}
      save_path: "{save}"
    map_receiver_node:
      save_path: "{save}"
"""


def _config(tmp_path, wait=0.5, tol=0.0, save=""):
    p = tmp_path / f"nodes-{wait}-{tol}.yaml"
    p.write_text(NODES_YAML.format(wait=wait, tol=tol, save=save, kitchen=KITCHEN_TOPIC_FIELDS))
    return str(p)


def _kitchen(kitchen_bag, frames):
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})[:frames]
    return [m for m in msgs if m[1] <= color_stamps[-1]]


def _run_tf_late(kitchen_bag, cfg, frames=10):
    """Every /tf message delivered after the images of its stamp (it was still in its reader)."""
    msgs = _kitchen(kitchen_bag, frames)
    order = {"/tf_static": 0, "/camera/color/camera_info": 0, "/tf": 2}  # images: 1
    msgs.sort(key=lambda m: (m[1], order.get(m[0], 1)))
    first_tf = next(m for m in msgs if m[0] == "/tf")  # the map frame is known from the start
    msgs.remove(first_tf)
    msgs.insert(0, (first_tf[0], first_tf[1] - 10**8, first_tf[2]))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(cfg))
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    return node


@pytest.mark.shared_data
def test_frame_waits_for_its_transform_in_flight(kitchen_bag, tmp_path):
    waited = _run_tf_late(kitchen_bag, _config(tmp_path, wait=0.5))
    d = waited.diag.summary()
    assert d["dropped"].get("frames_no_pose", 0) == 0, d["dropped"]
    assert waited.mapper.stats.frames == 10  # every frame used
    # without the wait (the old behaviour) the same input loses frames to "extrapolation"
    eager = _run_tf_late(kitchen_bag, _config(tmp_path, wait=0.0))
    assert eager.diag.summary()["dropped"].get("frames_no_pose", 0) >= 9
    assert eager.mapper.stats.frames < waited.mapper.stats.frames


@pytest.mark.shared_data
def test_transform_that_never_comes_drops_the_frame_after_the_wait(kitchen_bag, tmp_path):
    msgs = [m for m in _kitchen(kitchen_bag, 6) if m[0] != "/tf" or m[1] < 1700000000100000000]
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path, wait=0.2)))
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    bus.advance(msgs[-1][1] + 2 * 10**9)  # node time passes (diagnostics timer): the wait ends
    d = node.diag.summary()
    lost = d["dropped"].get("frames_no_pose", 0) + d["dropped"].get("frames_superseded", 0)
    assert node.mapper.stats.frames + lost == 6
    assert d["dropped"].get("frames_no_pose", 0) >= 1
    assert d.get("frames_waiting_for_tf", 0) == 0


@pytest.mark.shared_data
def test_frame_before_its_camera_info_waits_for_it(kitchen_bag, tmp_path):
    """image_transport's CameraPublisher sends the image, then its CameraInfo of the same stamp: the
    first pair came before any CameraInfo and was rejected ('no CameraInfo received yet'). The newest
    such pair now waits for it; without any CameraInfo, frames wait (one, the newest) and say so."""
    msgs = _kitchen(kitchen_bag, 4)
    order = {"/tf_static": 0, "/tf": 0, "/camera/color/camera_info": 2}  # images: 1
    msgs.sort(key=lambda m: (m[1], order.get(m[0], 1)))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path)))
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    d = node.diag.summary()
    assert node.mapper.stats.frames == 4 and not d["rejected"] and not d["dropped"], d
    bus = ReplayBus()
    blind = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path)))
    for topic, stamp, msg in msgs:
        if topic != "/camera/color/camera_info":
            bus.inject(topic, msg, stamp)
    d = blind.diag.summary()
    assert blind.mapper.stats.frames == 0 and d["dropped"] == {"frames": 3}, d
    assert any("camera_info" in w for w in blind.waiting_for())


def _mapper_with_map(kitchen_bag, cfg, keyframes=1):
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(cfg))
    last = 0
    for topic, stamp, msg in _kitchen(kitchen_bag, 12):
        bus.inject(topic, msg, stamp)
        last = stamp
        if node.mapper.stats.keyframes >= keyframes:
            break
    return bus, node, last


def test_save_before_first_keyframe_and_to_bad_places_keeps_running(tmp_path):
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path)))
    good = tmp_path / "good.ply"
    from synthetic_maps import synthetic_map

    save_ply(synthetic_map(50, 0), good)
    before = good.read_bytes()
    bus.inject("/mapper_node/save", string_message(str(good), bus.factory), 1)  # empty map: refused
    assert good.read_bytes() == before
    d = node.diag.summary()
    assert d["rejected"].get("~/save", 0) == 1 and "empty" in d["last_error"]
    (tmp_path / "adir").mkdir()
    bus.inject("/mapper_node/save", string_message(str(tmp_path / "adir"), bus.factory), 2)
    assert node.diag.summary()["rejected"]["~/save"] == 2
    node.close()  # no save_path: nothing to do, no error


@pytest.mark.shared_data
def test_save_to_read_only_or_directory_says_why_and_keeps_the_map(kitchen_bag, tmp_path):
    bus, node, t = _mapper_with_map(kitchen_bag, _config(tmp_path, tol=0.05))
    n = len(node.mapper.gmap)
    assert n > 0
    with read_only_dir(tmp_path, {"old.ply": b"previous"}) as ro:
        bus.inject("/mapper_node/save", string_message(str(ro / "old.ply"), bus.factory), t + 1)
        assert (ro / "old.ply").read_bytes() == b"previous"
    bus.inject("/mapper_node/save", string_message(str(tmp_path), bus.factory), t + 2)
    d = node.diag.summary()
    assert d["rejected"]["~/save"] == 2 and "is a directory" in d["last_error"]
    assert len(node.mapper.gmap) == n  # the map is still there, and saves where it can
    bus.inject("/mapper_node/save", string_message(str(tmp_path / "ok.ply"), bus.factory), t + 3)
    assert len(load_ply(tmp_path / "ok.ply")) == n


@pytest.mark.shared_data
def test_failed_final_save_leaves_previous_file_and_says_where_the_map_is(
    kitchen_bag, tmp_path, caplog, monkeypatch
):
    rescue_dir = (
        tmp_path / "system-temp"
    )  # the rescue goes to the system's temp directory: not /tmp in a test
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    with read_only_dir(tmp_path, {"map.ply": b"previous"}) as ro:
        target = ro / "map.ply"
        bus, node, t = _mapper_with_map(kitchen_bag, _config(tmp_path, tol=0.05, save=target))
        receiver = MapReceiverNode(
            bus.context("map_receiver_node"),
            MapReceiverNode.load_config(_config(tmp_path, tol=0.05, save=target)),
        )
        bus.advance(t + 10**9)  # the snapshot timer: the receiver gets the map
        assert receiver.store.ready
        with caplog.at_level(logging.INFO):
            node.close()  # must not raise
            receiver.close()
        assert target.read_bytes() == b"previous"
    rescued = [
        r.getMessage().split("saved to ")[1].split(" instead")[0]
        for r in caplog.records
        if "instead" in r.getMessage()
    ]
    assert len(rescued) == 2, [r.getMessage() for r in caplog.records]
    assert all(Path(r).parent == rescue_dir for r in rescued)
    assert len(load_ply(rescued[0])) == len(node.mapper.gmap)
    assert np.array_equal(np.sort(load_ply(rescued[1]).ids), np.sort(receiver.store.gaussian_map().ids))


def _world_drive(tmp_path):
    """A 4-frame world drive: (the Drive, the bag's messages, a mapper_node config on its topics)."""
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    drive = Drive.make(5, 4, "front", (128, 72))
    write_bag(drive, tmp_path / "world", progress=False)
    with BagReader(tmp_path / "world") as bag:
        msgs = list(bag.messages())
    cfg = MapperNode.load_config(_config(tmp_path))
    t = cfg["mapper"].topics
    t.color, t.depth, t.camera_info = (
        "/cameras/front/image_raw",
        "/cameras/front/depth",
        "/cameras/front/camera_info",
    )
    return drive, msgs, cfg


def test_tf_served_after_the_images_does_not_freeze_the_pose(tmp_path):
    """rclpy's executor serves subscriptions in creation order, so a frame whose messages wait
    together (a bag player's burst, a busy node) reaches mapper_node as colour, depth, camera_info,
    then /tf. With only /tf_static known the node anchored the map to the static tree's root
    (base_link), which moves with the car: every later pose was the first one, 40 m from the truth,
    with one warning. The frame now waits for its moving transform; the poses follow the world's."""
    drive, msgs, cfg = _world_drive(tmp_path)
    t = cfg["mapper"].topics
    rank = {"/tf_static": 0, t.color: 1, t.depth: 2, t.camera_info: 3, "/tf": 4}  # the executor's order
    msgs = sorted((m for m in msgs if m[0] in rank), key=lambda m: (m[0] != "/tf_static", m[1], rank[m[0]]))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), cfg)
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    assert node.poses.anchor is None and node.mapper.stats.frames == 4
    cam = drive.cameras[0]  # its T_map_cam is the extrinsic T_base_cam
    for i in range(4):
        np.testing.assert_allclose(
            node.poses.lookup(cam.frame_id, drive.stamp_ns(i)), drive.pose(i) @ cam.T_map_cam, atol=1e-5
        )


def test_a_node_waiting_for_a_topic_says_so_on_the_console(tmp_path, caplog):
    """The README's first launch with another camera's topics mapped nothing and said so only in
    /diagnostics. A node that waits for an input now logs what, when it changes and every 30 s."""
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path)))
    with caplog.at_level(logging.WARNING):
        bus.advance(10**9)
        bus.advance(2 * 10**9)
    said = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(said) == 1 and "colour on /camera/color/image_raw" in said[0], said
    assert "camera_info on /camera/color/camera_info" in node.diag.values["waiting_for"]
    with caplog.at_level(logging.WARNING):
        bus.advance(40 * 10**9)
    assert sum("waiting for" in r.getMessage() for r in caplog.records) == 2


def test_receiver_min_opacity_set_at_run_time_shows_at_once(tmp_path):
    """``ros2 param set /map_receiver_node map_receiver_node.min_opacity 0.9`` answered success but
    the cloud, published on change only, kept the old cut until the map changed (never, once the
    mapper stopped). It is republished with the new cut, counted against the map's own opacities."""
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.messages import bytes_to_uint8_multiarray

    bus = ReplayBus()
    rx = MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(None))
    clouds: list = []
    bus.subscribe("/map_receiver_node/map_cloud", clouds.append)

    def tick(t):  # node time passes, and what the timers published is delivered
        bus.inject("/tick", None, t)

    data, _ = encode_map(synthetic_map(400, 0, seed=3))
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), 10**9)
    tick(2 * 10**9)
    op = decode_map(data).opacities()
    assert clouds and clouds[-1].width * clouds[-1].height == int((op >= 0.05).sum())
    n = len(clouds)
    tick(4 * 10**9)
    assert len(clouds) == n  # no change, no new cloud
    rx.parameters_changed("map_receiver_node", {"min_opacity": 0.9})
    tick(5 * 10**9)
    assert len(clouds) == n + 1 and clouds[-1].width * clouds[-1].height == int((op >= 0.9).sum()) < len(op)
    edge = float(np.sort(op)[len(op) // 2])  # a Gaussian exactly at the cut stays ("fainter than")
    rx.parameters_changed("map_receiver_node", {"min_opacity": edge})
    tick(6 * 10**9)
    assert clouds[-1].width * clouds[-1].height == int((op >= edge).sum()) > int((op > edge).sum())


def _shifted(msg, seconds: int):
    """A copy of a message with every header stamp ``seconds`` later (a TFMessage's too)."""
    import copy

    out = copy.deepcopy(msg)
    for h in [t.header for t in out.transforms] if hasattr(out, "transforms") else [out.header]:
        h.stamp.sec += seconds
    return out


def test_a_bag_played_in_a_loop_is_mapped_again_after_time_goes_back(tmp_path):
    """``ros2 bag play --loop``: stamps and TF go back to the bag's start. Every later frame was
    dropped as 'not after the previous frame's', and TF pruned the new samples as they came (older
    than its 30 s cache). Now the node starts its stamps over, TF forgets its moving transforms
    (as tf2_ros on a backward jump; static ones stay), and the second pass is mapped at the world's
    poses."""
    drive, msgs, cfg = _world_drive(tmp_path)
    t = cfg["mapper"].topics
    used = {t.color, t.depth, t.camera_info, "/tf", "/tf_static"}
    msgs = [m for m in msgs if m[0] in used]
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), cfg)
    for topic, stamp, msg in msgs:  # the first pass, 60 s into the recording
        bus.inject(topic, msg if topic == "/tf_static" else _shifted(msg, 60), stamp + 60 * 10**9)
    assert node.mapper.stats.frames == 4
    for topic, stamp, msg in msgs:  # the loop: the bag's own stamps again
        if topic != "/tf_static":
            bus.inject(topic, msg, stamp + 61 * 10**9)  # (the bus's clock only goes forward)
    d = node.diag.summary()
    assert node.mapper.stats.frames == 8 and "frames" not in d["dropped"], d
    assert node.tf.time_jumps == 1 and d["time_jumps"] == 1
    cam = drive.cameras[0]
    np.testing.assert_allclose(
        node.poses.lookup(cam.frame_id, drive.stamp_ns(3)), drive.pose(3) @ cam.T_map_cam, atol=1e-5
    )


@pytest.mark.shared_data
def test_a_map_not_saved_at_shutdown_is_said(kitchen_bag, tmp_path, caplog):
    """With the default empty save_path, shutdown threw the map away without a word."""
    _bus, node, _ = _mapper_with_map(kitchen_bag, _config(tmp_path, tol=0.05))
    with caplog.at_level(logging.INFO):
        node.close()
    assert (
        f"map of {len(node.mapper.gmap)} Gaussians not saved: mapper_node.save_path is empty" in caplog.text
    )


@pytest.mark.shared_data
def test_time_the_node_spends_mapping_is_not_counted_as_waiting_for_tf(kitchen_bag, tmp_path):
    """tf2's listener reads TF on its own thread while a node works; ours reads it between callbacks.
    A mapper slower than the camera (seconds a frame on a CPU or a Jetson) made the frame queued
    behind the one being mapped 'wait' for its TF the whole mapping time, and dropped it as
    frames_no_pose the moment the mapping ended, its TF still unread in the reader (live_load at 3x:
    half the frames). Each /tf is delivered after the images of the next frame, and each mapping
    takes 2 s of node time, four times tf_wait_s: no frame may be lost for its pose."""
    msgs = _kitchen(kitchen_bag, 8)
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})
    later = dict(zip(color_stamps, color_stamps[1:] + [color_stamps[-1] + 1], strict=True))
    order = {"/tf_static": 0, "/camera/color/camera_info": 0, "/tf": 2}  # images: 1
    keyed = [((later.get(s, s) if t == "/tf" else s), order.get(t, 1), (t, s, m)) for t, s, m in msgs]
    keyed.sort(key=lambda k: k[:2])
    first_tf = min((k for k in keyed if k[2][0] == "/tf"), key=lambda k: k[2][1])
    keyed.remove(first_tf)  # the map frame is known from the start
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path, wait=0.5)))
    add_frame = node.mapper.add_frame

    def slow_add_frame(frame):
        bus.now_ns += 2 * 10**9  # the node's clock runs on while it maps
        return add_frame(frame)

    node.mapper.add_frame = slow_add_frame
    t, s, m = first_tf[2]
    bus.inject(t, m, s - 10**8)
    for _, _, (topic, stamp, msg) in keyed:
        bus.inject(topic, msg, stamp)
    node.close()
    d = node.diag.summary()
    assert d["dropped"].get("frames_no_pose", 0) == 0, d["dropped"]
    assert node.mapper.stats.frames + d["dropped"].get("frames_superseded", 0) == 8, d


@pytest.mark.shared_data
def test_frames_read_in_bursts_before_their_camera_info_and_tf_all_wait_for_them(kitchen_bag, tmp_path):
    """A runtime that hands a node every queued message of one reader before the next reader's
    (our DDS runtime after a busy callback: all images, then the CameraInfos, then /tf) gives the
    node a second frame while the first still waits for its CameraInfo. The first then takes the
    CameraInfo there is, but its TF, still unread, may still come: it must wait for it as any frame
    does, not be dropped as frames_no_pose (live_load at 1x lost most frames so). Bursts of two
    frames; each frame's CameraInfo and /tf come after both frames' images (a CameraInfo and a /tf
    came before, as for a node that runs)."""
    msgs = _kitchen(kitchen_bag, 8)
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})
    burst = {s: i // 2 for i, s in enumerate(color_stamps)}
    first = [
        min((m for m in msgs if m[0] == t), key=lambda m: m[1]) for t in ("/tf", "/camera/color/camera_info")
    ]
    for m in first:  # the map frame and the camera are known from the start (a node already running)
        msgs.remove(m)
    order = {"/camera/color/camera_info": 2, "/tf": 3, "/tf_static": 0}  # images: 1

    def key(m):
        b = burst.get(min((s for s in color_stamps if s >= m[1]), default=color_stamps[-1]))
        return (b, order.get(m[0], 1), m[1])

    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path, wait=0.5)))
    for topic, stamp, msg in first:
        bus.inject(topic, msg, stamp - 10**8)
    for topic, stamp, msg in sorted(msgs, key=key):
        bus.inject(topic, msg, stamp)
    node.close()
    d = node.diag.summary()
    assert not d["dropped"] and not d["rejected"], (d, node.diag.last_error)
    assert node.mapper.stats.frames == 8, {k: v for k, v in d.items() if k != "inputs"}


@pytest.mark.shared_data
def test_a_frame_queued_behind_frames_waiting_for_tf_gets_the_camera_info_of_its_stamp(kitchen_bag, tmp_path):
    """A zoom lens: each CameraInfo says another focal length, and image_transport pairs an image
    with the CameraInfo of its stamp. Here each frame's CameraInfo and /tf come after the next
    frame's images (/tf first), so frames queue for TF, and their TF comes before their own
    CameraInfo: each frame mapped
    must still carry the fx of its own stamp's CameraInfo (a frame behind others took the previous
    one), and none may be lost."""
    import copy

    from gs_mapping.messages import stamp_to_ns

    msgs = _kitchen(kitchen_bag, 8)
    color_stamps = sorted({s for t, s, _ in msgs if t == "/camera/color/image_raw"})
    later = dict(zip(color_stamps, color_stamps[1:] + [color_stamps[-1] + 1], strict=True))
    fx_of = {}
    for i, (topic, stamp, msg) in enumerate(msgs):
        if topic == "/camera/color/camera_info":
            msg = copy.deepcopy(msg)
            msg.k[0] += 7.0 * len(fx_of)  # 0, +7, +14, ... px
            fx_of[stamp_to_ns(msg.header.stamp)] = float(msg.k[0])
            msgs[i] = (topic, stamp, msg)
    first = [
        min((m for m in msgs if m[0] == t), key=lambda m: m[1]) for t in ("/tf", "/camera/color/camera_info")
    ]
    for m in first:  # the map frame and the camera are known from the start (a node already running)
        msgs.remove(m)
    late = {"/tf", "/camera/color/camera_info"}
    order = {"/tf": 2, "/camera/color/camera_info": 3, "/tf_static": 0}  # images: 1
    msgs.sort(key=lambda m: ((later.get(m[1], m[1]) if m[0] in late else m[1]), order.get(m[0], 1)))
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(_config(tmp_path, wait=0.5)))
    used = []
    add = node.mapper.add_frame

    def recording(frame):
        used.append((frame.stamp_ns, float(frame.camera.K[0, 0])))
        return add(frame)

    node.mapper.add_frame = recording
    for topic, stamp, msg in first:
        bus.inject(topic, msg, stamp - 10**8)
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    node.close()
    d = node.diag.summary()
    assert not d["dropped"] and not d["rejected"], (d, node.diag.last_error)
    assert len(used) == 8
    for stamp, fx in used:
        assert fx == pytest.approx(fx_of[stamp]), (stamp, fx, fx_of)
