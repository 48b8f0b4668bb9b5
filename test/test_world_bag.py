"""The world's rosbag2: determinism, ground truth vs pixels through the bag's own TF and CameraInfo,
topic layout, and the ``gs-mapping world`` command's handling of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon

from gs_mapping import messages as M
from gs_mapping.bag import BagReader
from gs_mapping.cli import main
from gs_mapping.tf import TFBuffer
from gs_mapping.world import DIVIDER, PED_CROSSING, Drive
from gs_mapping.world.record import write_bag
from gs_mapping.world.roads import PAINT_WHITE, PAINT_YELLOW


def paint_like(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, int)
    return (rgb[..., 0] > 110) & (rgb[..., 1] > 98)


def bag_bytes(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_gives_byte_identical_bags(tmp_path):
    kw = dict(frames=3, rig="surround", size=(64, 48), lidar=True)
    # same bag name in different directories (the storage file name is recorded inside the bag)
    a, b, c = tmp_path / "1" / "bag", tmp_path / "2" / "bag", tmp_path / "3" / "bag"
    write_bag(Drive.make(11, **kw), a, progress=False)
    write_bag(Drive.make(11, **kw), b, progress=False, workers=2)  # forked renderers: same bytes
    write_bag(Drive.make(12, **kw), c, progress=False)
    ba, bb, bc = bag_bytes(a), bag_bytes(b), bag_bytes(c)
    assert set(ba) == {"metadata.yaml", "bag.mcap"}
    assert ba == bb
    assert ba["bag.mcap"] != bc["bag.mcap"]
    # JPEG images too
    d, e = tmp_path / "4" / "bag", tmp_path / "5" / "bag"
    write_bag(Drive.make(11, frames=2, size=(64, 48)), d, progress=False, compressed=True)
    write_bag(Drive.make(11, frames=2, size=(64, 48)), e, progress=False, compressed=True)
    assert bag_bytes(d) == bag_bytes(e)


def read_frames(path):
    """Everything a consumer sees in the bag: TF buffer, CameraInfo, images, depth, lanes JSON."""
    tf = TFBuffer(cache_time_s=None)
    frames: dict[int, dict] = {}
    with BagReader(path) as bag:
        for topic, stamp, msg in bag.messages():
            if topic in ("/tf", "/tf_static"):
                tf.add_message(msg, static=topic == "/tf_static")
            elif topic == "/cameras/front/camera_info":
                frames.setdefault(stamp, {})["info"] = M.camera_info_to_intrinsics(msg)
            elif topic == "/cameras/front/image_raw":
                frames.setdefault(stamp, {})["rgb"] = M.image_to_rgb(msg)
            elif topic == "/cameras/front/depth":
                frames.setdefault(stamp, {})["depth"] = M.image_to_numpy(msg)
            elif topic == "/ground_truth/lanes_json":
                frames.setdefault(stamp, {})["gt"] = M.string_message_to_json(msg)
            elif topic == "/ground_truth/lanes":
                frames.setdefault(stamp, {})["markers"] = msg
    return tf, frames


def sample_polyline(pts: np.ndarray, step: float) -> np.ndarray:
    line = LineString(pts)
    return np.array([line.interpolate(a).coords[0] for a in np.arange(0, line.length, step)])


@pytest.fixture(scope="module")
def front_bag(tmp_path_factory):
    # seed 9: 4 then 2 lanes (dashed and centre dividers) and a 4-way junction with crossings,
    # driven at 2 Hz so that 24 frames cover 90 m
    drive = Drive.make(9, 24, rig="front", size=(480, 270), rate_hz=2.0)
    path = tmp_path_factory.mktemp("world") / "bag"
    summary = write_bag(drive, path, progress=False)
    return drive, path, summary


def test_projected_ground_truth_lands_on_paint(front_bag):
    """Dividers and crossings from /ground_truth/lanes_json, projected with the bag's /tf, /tf_static
    and CameraInfo, fall on paint-coloured pixels where paint is visible, and beside them is asphalt."""
    drive, path, _ = front_bag
    tf, frames = read_frames(path)
    world = drive.world
    on_hits = on_total = off_hits = off_total = 0
    crossings_seen = 0
    for stamp, fr in sorted(frames.items()):
        info, rgb, depth, gt = fr["info"], fr["rgb"], fr["depth"], fr["gt"]
        assert gt["frame_id"] == "base_link" and gt["stamp_ns"] == stamp
        T_map_base = tf.lookup("map", "base_link", stamp).matrix()
        T_base_cam = tf.lookup("base_link", info.frame_id, stamp).matrix()
        cam = info.camera(T_map_base @ T_base_cam)
        on, off = [], []
        for v in gt["vectors"]:
            pts = np.asarray(v["pts"], np.float64)
            if v["type"] == DIVIDER:
                s = sample_polyline(pts, 0.1)
                on.append(s)
                d = np.gradient(s, axis=0)
                n = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
                off.extend([s + 0.7 * n, s - 0.7 * n])
            elif v["type"] == PED_CROSSING:
                crossings_seen += 1
                poly = Polygon(pts)
                x0, y0, x1, y1 = poly.bounds
                g = np.stack(np.meshgrid(np.arange(x0, x1, 0.1), np.arange(y0, y1, 0.1)), -1).reshape(-1, 2)
                on.append(g[[poly.contains(Point(p)) for p in g]])
        if not on:
            continue
        for group, want_paint in (
            (np.concatenate(on), True),
            (np.concatenate(off) if off else np.zeros((0, 2)), False),
        ):
            if not len(group):
                continue
            p_base = np.concatenate([group, np.zeros((len(group), 1))], 1)
            p_map = p_base @ T_map_base[:3, :3].T + T_map_base[:3, 3]
            # which samples are on paint (dashes have gaps; crossings have stripes) per the world
            labels = world.ground_label(p_map[:, :2])
            is_paint = (labels == PAINT_WHITE) | (labels == PAINT_YELLOW)
            # stay clear of paint edges: all four neighbours 6 cm away have the same label class
            for dx, dy in ((0.06, 0), (-0.06, 0), (0, 0.06), (0, -0.06)):
                lab = world.ground_label(p_map[:, :2] + [dx, dy])
                is_paint_n = (lab == PAINT_WHITE) | (lab == PAINT_YELLOW)
                keep = is_paint_n == is_paint
                p_map, is_paint = p_map[keep], is_paint[keep]
            sel = is_paint if want_paint else ~is_paint
            uv, z = cam.project(p_map[sel])
            u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
            ok = (z > 0.5) & (z < 25) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
            u, v, z = u[ok], v[ok], z[ok]
            visible = np.abs(depth[v, u] - z) < 0.03 * z  # not hidden behind a tree or pole
            # the pixel's whole footprint on the ground has the sample's class: far off, a pixel
            # spans more than a stripe across the line of sight (a cross road's zebra stripes)
            ray = cam.T_map_cam[:3, :3] @ np.linalg.inv(cam.K)
            for du, dv in ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)):
                d = np.stack([u + du, v + dv, np.ones(len(u))], 1) @ ray.T
                down = d[:, 2] < 0
                corner = (
                    cam.T_map_cam[:2, 3]
                    - cam.T_map_cam[2, 3] / np.where(down, d[:, 2], -1)[:, None] * d[:, :2]
                )
                lab = world.ground_label(corner)
                visible &= down & (((lab == PAINT_WHITE) | (lab == PAINT_YELLOW)) == want_paint)
            if not want_paint:  # "beside a divider" may meet other paint or the curb: skip those
                lab = world.ground_label(p_map[sel][ok][:, :2])
                visible &= lab == 1  # ASPHALT
            hits = paint_like(rgb[v[visible], u[visible]])
            if want_paint:
                on_hits += int(hits.sum())
                on_total += int(visible.sum())
            else:
                off_hits += int(hits.sum())
                off_total += int(visible.sum())
    assert crossings_seen > 0, "the drive never shows a pedestrian crossing"
    assert on_total > 2000 and off_total > 2000, (on_total, off_total)
    assert on_hits / on_total >= 0.95, f"only {on_hits}/{on_total} projected paint samples are paint-coloured"
    assert off_hits / off_total <= 0.02, f"{off_hits}/{off_total} asphalt samples are paint-coloured"


def test_topics_frames_and_ground_truth_messages(front_bag):
    drive, path, summary = front_bag
    with BagReader(path) as bag:
        topics = {t.name: t for t in bag.topics}
        assert topics["/tf_static"].latched and topics["/ground_truth/map_json"].latched
        assert topics["/cameras/front/image_raw"].type == "sensor_msgs/msg/Image"
        assert topics["/cameras/front/depth"].count == 24
        assert "/lidar/points" not in topics
        for topic, stamp, msg in bag.messages(["/cameras/front/depth", "/cameras/front/image_raw"]):
            assert msg.header.frame_id == "front_optical_frame"
            assert msg.encoding == ("32FC1" if topic.endswith("depth") else "rgb8")
            assert stamp == M.stamp_to_ns(msg.header.stamp)
        n = 0
        for _, _stamp, msg in bag.messages(["/ground_truth/lanes"]):
            polylines = M.marker_array_to_polylines(msg)
            assert msg.markers[0].action == M.DELETEALL
            assert {m.ns for m in msg.markers[1:]} <= {"divider", "ped_crossing", "boundary"}
            assert all(m.header.frame_id == "base_link" for m in msg.markers)
            n += len(polylines)
        assert n > 0
        ((_, _, mj),) = list(bag.messages(["/ground_truth/map_json"]))
        world_gt = json.loads(mj.data)
        assert world_gt["frame_id"] == "map" and world_gt["seed"] == 9
        assert len(world_gt["vectors"]) == len(drive.world.map_elements())
    # the lanes JSON equals the world API's clipped elements
    _, frames = read_frames(path)
    stamp = sorted(frames)[5]
    ref = drive.world.elements_in_ego(drive.pose(5), (30.0, 15.0))
    got = frames[stamp]["gt"]["vectors"]
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=False):
        assert g["type"] == r.cls and np.allclose(g["pts"], r.pts, atol=1e-4)
        if g["type"] == PED_CROSSING:
            assert g["pts"][0] == g["pts"][-1]
        assert np.all(np.abs(np.asarray(g["pts"])) <= [30 + 1e-3, 15 + 1e-3])


def test_surround_compressed_lidar_bag(tmp_path):
    drive = Drive.make(2, 2, rig="surround", size=(96, 64), lidar=True)
    path = tmp_path / "s"
    summary = write_bag(drive, path, compressed=True, progress=False)
    assert summary["cameras"] == ["front", "front_left", "front_right", "back", "back_left", "back_right"]
    tf = TFBuffer(cache_time_s=None)
    with BagReader(path) as bag:
        names = {t.name for t in bag.topics}
        for cam in summary["cameras"]:
            assert {
                f"/cameras/{cam}/image_raw/compressed",
                f"/cameras/{cam}/camera_info",
                f"/cameras/{cam}/depth",
            } <= names
        for topic, stamp, msg in bag.messages():
            if topic in ("/tf", "/tf_static"):
                tf.add_message(msg, static=topic == "/tf_static")
            elif topic == "/cameras/back/image_raw/compressed":
                img = M.compressed_image_to_numpy(msg)
                assert img.shape == (64, 96, 3)
            elif topic == "/lidar/points":
                assert msg.header.frame_id == "lidar_link"
                arr = M.pointcloud2_to_array(msg)
                assert arr.dtype.names == ("x", "y", "z", "intensity") and len(arr) > 1000
                # the points lie on the ground or above it, through the bag's own TF
                T = tf.lookup("map", "lidar_link", stamp).matrix()
                xyz = np.stack([arr["x"], arr["y"], arr["z"]], 1).astype(np.float64)
                assert (xyz @ T[:3, :3].T + T[:3, 3])[:, 2].min() > -1e-3
    # every camera's static transform equals the rig's extrinsic
    for cam in drive.cameras:
        assert np.allclose(tf.lookup("base_link", cam.frame_id, None).matrix(), cam.T_map_cam, atol=1e-9)


# ---------------------------------------------------------------------------------------- the CLI
def run_cli(capsys, *argv):
    rc = main(["world", *argv])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--frames", "0"], "--frames"),
        (["--frames", "-3"], "--frames"),
        (["--rig", "octopus"], "unknown rig"),
        (["--size", "8x8"], "too small"),
        (["--size", "100000x50000"], "too large"),
        (["--size", "big"], "WxH"),
        (["--rate", "0"], "--rate"),
        (["--speed", "nan"], "--speed"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "bag"
    rc, err = run_cli(capsys, "--out", str(out), "--no-progress", *argv)
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("gs-mapping world: error:") and words in err
    assert not out.exists()


def test_cli_refuses_existing_output_and_writes_when_asked(tmp_path, capsys):
    out = tmp_path / "bag"
    rc = main(["world", "--out", str(out), "--frames", "2", "--size", "64x48", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0 and (out / "metadata.yaml").exists()
    assert "wrote" in printed and "/cameras/front/image_raw: 2" in printed
    before = bag_bytes(out)
    rc, err = run_cli(capsys, "--out", str(out), "--frames", "2", "--size", "64x48", "--no-progress")
    assert rc == 2 and len(err.splitlines()) == 1 and "exists" in err
    assert bag_bytes(out) == before  # untouched
    plain = tmp_path / "file.txt"
    plain.write_text("keep me")
    rc, err = run_cli(capsys, "--out", str(plain), "--frames", "1", "--size", "64x48", "--no-progress")
    assert rc == 2 and plain.read_text() == "keep me"
    rc = main(
        [
            "world",
            "--out",
            str(out),
            "--frames",
            "3",
            "--size",
            "64x48",
            "--no-progress",
            "--overwrite",
            "--seed",
            "4",
        ]
    )
    assert rc == 0 and bag_bytes(out) != before


def test_forked_render_workers_take_the_default_sigterm_not_the_clis():
    """`world` renders in a fork pool whose workers inherited the CLI's SIGTERM handler: the pool's
    terminate() at the end made them raise inside its queue lock (tracebacks on a good run, and
    now and then a parent waiting on that lock for ever). Each worker must end on SIGTERM as a
    process does by default and leave Ctrl-C and SIGHUP (sent to the whole group) to the parent."""
    import signal

    from gs_mapping.cli import _on_signal
    from gs_mapping.world.record import frames

    class Probe:  # a drive whose frames report the worker's signal handlers
        def __len__(self):
            return 3

        def frame(self, index):
            return (
                signal.getsignal(signal.SIGTERM),
                signal.getsignal(signal.SIGHUP),
                signal.getsignal(signal.SIGINT),
            )

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        seen = list(frames(Probe(), workers=2))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert seen == [(signal.SIG_DFL, signal.SIG_IGN, signal.SIG_IGN)] * 3
