"""Outside review of issue 5 (the incremental 3DGS mapper): the map it actually builds from the two
real RGB-D recordings in ../shared/data, judged against things computed here from the same
recordings without the suite: the bags read with rosbags (its own CDR), colour and compressedDepth
decoded with OpenCV, the CameraInfo's K, the TF poses composed with quaternion maths written here
(REP-103 optical frame, Hamilton quaternions as tf2's Matrix3x3 reads them), the depth images' own
back-projected points (OpenCV's pinhole model: pixel (u, v) at u = col, v = row), a KD-tree from
SciPy, and a forward warp of the nearest mapped frame into a held-out view (z-buffered, no
learning) as the baseline a held-out render should not fall far below.

The maps are short stretches (the CPU mapper costs seconds per keyframe) with a cheap optimiser;
what is checked is geometry and conventions (where the Gaussians are, which poses the held-out
renders use, which frames and pixels the held-out figures are over), not the quality goals of the
Measured table. Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags.highlevel")
cKDTree = pytest.importorskip("scipy.spatial").cKDTree
PlyData = pytest.importorskip("plyfile").PlyData

KITCHEN = "7scenes_kitchen_rgbd"
REALSENSE = "realsense_kitchen_rgbd"


# -- the recordings, read without the suite ---------------------------------------------------------
def _quat_matrix(x, y, z, w):
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _transform(ts) -> np.ndarray:
    T = np.eye(4)
    q, t = ts.transform.rotation, ts.transform.translation
    T[:3, :3] = _quat_matrix(q.x, q.y, q.z, q.w)
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def _read_recording(path):
    """Frames (stamp, rgb in [0, 1], depth in metres with NaN where invalid, T_map_optical) and K.
    The recordings stamp each /tf sample at its image's stamp, so the pose is that sample's."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    static, moving, rgb, depth, K = {}, {}, {}, {}, None
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
        for c, _, raw in r.messages():
            m = r.deserialize(raw, c.msgtype)
            if c.topic in ("/tf", "/tf_static"):
                for ts in m.transforms:
                    edge = (ts.header.frame_id, _transform(ts))
                    if c.topic == "/tf_static":
                        static[ts.child_frame_id] = edge
                    else:
                        s = ts.header.stamp.sec * 10**9 + ts.header.stamp.nanosec
                        moving.setdefault(ts.child_frame_id, {})[s] = edge
                continue
            s = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            if c.msgtype.endswith("CameraInfo"):
                if "depth" not in c.topic:
                    K = np.array(m.k, float).reshape(3, 3)
            elif c.msgtype.endswith("CompressedImage"):
                data = np.frombuffer(bytes(m.data), np.uint8)
                if "compressedDepth" in m.format:  # image_transport: 12-byte header, then a 16-bit PNG
                    depth[s] = cv2.imdecode(data[12:], cv2.IMREAD_UNCHANGED)
                else:
                    rgb[s] = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
            elif m.encoding == "rgb8":
                rgb[s] = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3)
            elif m.encoding == "16UC1":
                depth[s] = np.frombuffer(bytes(m.data), "<u2").reshape(m.height, m.width)

    def pose(frame, s):
        T = np.eye(4)
        while frame != "map":
            frame, E = static[frame] if frame in static else moving[frame][s]
            T = E @ T
        return T

    frames = []
    for s in sorted(set(rgb) & set(depth)):
        d = depth[s].astype(np.float64)
        d[(d == 0) | (d == 65535)] = np.nan
        frames.append(
            {
                "stamp": s,
                "rgb": rgb[s] / 255.0,
                "depth": d / 1000.0,
                "T": pose("camera_color_optical_frame", s),
            }
        )
    return frames, K


def _backproject(depth, K, T, stride=1):
    h, w = depth.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = depth[v, u]
    ok = np.isfinite(z) & (z > 0.1)
    u, v, z = u[ok], v[ok], z[ok]
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    return pc @ T[:3, :3].T + T[:3, 3]


def _project(points, K, T):
    """Map-frame points → (u, v, z) in the camera at ``T`` (OpenCV pinhole, pixel centres at integers)."""
    Tcw = np.linalg.inv(T)
    pc = points @ Tcw[:3, :3].T + Tcw[:3, 3]
    z = pc[:, 2]
    return K[0, 0] * pc[:, 0] / z + K[0, 2], K[1, 1] * pc[:, 1] / z + K[1, 2], z


def _forward_warp(src, K, T_dst, h, w):
    """The source frame's colour moved into the destination view by its own depth: each pixel to its
    nearest destination pixel, the nearest surface winning (z-buffer). → image, covered mask."""
    ok = np.isfinite(src["depth"]) & (src["depth"] > 0.1)
    pts = _backproject(src["depth"], K, src["T"])
    col = src["rgb"][ok]
    u, v, z = _project(pts, K, T_dst)
    u, v = np.round(u).astype(int), np.round(v).astype(int)
    keep = (z > 0.1) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z, col = u[keep], v[keep], z[keep], col[keep]
    far_first = np.argsort(-z)
    img, covered = np.zeros((h, w, 3)), np.zeros((h, w), bool)
    img[v[far_first], u[far_first]] = col[far_first]
    covered[v, u] = True
    return img, covered


def _psnr(a, b, mask=None):
    err = (np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2
    if mask is not None:
        err = err[mask]
    return -10.0 * math.log10(float(np.mean(err)))


def _ply_vertices(path):
    v = PlyData.read(str(path))["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float64)
    opacity = 1.0 / (1.0 + np.exp(-v["opacity"].astype(np.float64)))
    scale = np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], -1).astype(np.float64))
    return xyz, opacity, scale


# -- the suite's mapper, run once per recording ---------------------------------------------------------
FAST = (
    "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n"
    "      seeding: {{stride: {stride}}}\n"
    "      optim: {{iterations: {it}, first_iterations: {first}, refine_iterations: {refine}, "
    "render_scale: {scale}}}\n"
)


def _map(bag, out, tmp, *, frames, holdout, stride, it, first, refine, scale=1.0, extra=()):
    from gs_mapping.cli import main

    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(FAST.format(stride=stride, it=it, first=first, refine=refine, scale=scale))
    argv = ["map", str(bag), "--out", str(out), "--device", "cpu", "--holdout-every", str(holdout)]
    argv += ["--config", str(cfg), "--max-frames", str(frames), "--no-progress", *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def recordings(shared_data):
    return {name: _read_recording(shared_data / name) for name in (KITCHEN, REALSENSE)}


@pytest.fixture(scope="module")
def short_maps(shared_data, tmp_path_factory):
    """Each recording's first 10 frames mapped (frames 4 and 9 held out), 3 iterations a keyframe
    (the 640x480 one optimised at half resolution; evaluation is at full resolution)."""
    tmp = tmp_path_factory.mktemp("maps")
    runs = {}
    for name, stride, scale in ((KITCHEN, 4, 1.0), (REALSENSE, 8, 0.5)):
        out = tmp / name
        m = _map(
            shared_data / name,
            out,
            tmp,
            frames=10,
            holdout=5,
            stride=stride,
            it=3,
            first=8,
            refine=0,
            scale=scale,
        )
        runs[name] = (out, m)
    return runs


# -- the seeds: exactly the depth images' own rays ------------------------------------------------------
@pytest.mark.parametrize("name, stride", [(KITCHEN, 4), (REALSENSE, 8)])
def test_seeded_gaussians_sit_on_their_pixels_rays_at_the_measured_depth(
    shared_data, recordings, tmp_path, name, stride
):
    """With no optimisation at all (0 iterations, no refinement, nothing held out), the map of the
    first two frames is its seeds: each must be a depth pixel of one of the frames, lifted with the
    CameraInfo's K and the TF pose at that frame's stamp. Projected back into that frame with the
    pinhole model here, a seed lands on a pixel centre of the seeding grid (integer u and v, multiples
    of ``stride``, no half-pixel shift) at the depth the image measured there (no depth-scale or
    unit error, no frame convention error: an x/y swap or a pose inverted lands elsewhere)."""
    frames, K = recordings[name]
    out = tmp_path / "seeds"
    _map(shared_data / name, out, tmp_path, frames=2, holdout=0, stride=stride, it=0, first=0, refine=0)
    xyz, _, _ = _ply_vertices(out / "map.ply")
    assert len(xyz) > 500
    on_a_ray = np.zeros(len(xyz), bool)
    has_depth = np.zeros(len(xyz), bool)
    at_depth = np.zeros(len(xyz), bool)
    for f in frames[:2]:
        u, v, z = _project(xyz, K, f["T"])
        ui, vi = np.round(u).astype(int), np.round(v).astype(int)
        h, w = f["depth"].shape
        grid = (np.abs(u - ui) < 0.02) & (np.abs(v - vi) < 0.02) & (ui % stride == 0) & (vi % stride == 0)
        grid &= (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        d = np.full(len(xyz), np.nan)
        d[grid] = f["depth"][vi[grid], ui[grid]]
        on_a_ray |= grid
        has_depth |= np.isfinite(d)
        at_depth |= np.isfinite(d) & (np.abs(z - d) < 1e-4 + 1e-5 * np.nan_to_num(d))
    assert on_a_ray.mean() > 0.99, f"{on_a_ray.mean():.3f} of the seeds on a grid pixel's ray"
    # seeds on a pixel without depth fill a hole at a neighbour's depth (seeding.fill_holes_px, documented)
    assert has_depth.mean() > 0.7
    assert at_depth[has_depth].mean() > 0.99, f"{at_depth[has_depth].mean():.3f} at the depth measured there"


# -- the optimised map against the depth images' points ------------------------------------------------
@pytest.mark.parametrize("name", [KITCHEN, REALSENSE])
def test_opaque_gaussians_lie_on_the_recorded_surface_without_offset(recordings, short_maps, name):
    """The opaque Gaussians (opacity > 0.5) of the short map against every mapped frame's own
    back-projected depth points: the median distance from a centre to the nearest depth point is of
    the order of the sensor's depth noise (≤ 1.5 cm, not decimetres), the mean offset vector (centre −
    nearest point) is below 5 mm in every axis (a half-pixel shift, a depth scale of a few per cent or
    the colour camera's CameraInfo used for unregistered depth each make a systematic one), and the
    map covers the surface: half the depth points lie within 3 seed spacings of an opaque centre.
    The held-out frames' points are not used, and none of the map lies where no frame measured."""
    frames, K = recordings[name]
    out, m = short_maps[name]
    xyz, opacity, _ = _ply_vertices(out / "map.ply")
    opaque = xyz[opacity > 0.5]
    assert len(opaque) > 0.3 * len(xyz)
    mapped = [f for i, f in enumerate(frames[:10]) if i % 5 != 4]
    pts = np.concatenate([_backproject(f["depth"], K, f["T"]) for f in mapped])
    dist, nearest = cKDTree(pts).query(opaque)
    assert np.median(dist) < 0.015, f"median {np.median(dist) * 100:.1f} cm from the depth points"
    assert np.percentile(dist, 95) < 0.10
    offset = (opaque - pts[nearest]).mean(0)
    assert np.all(np.abs(offset) < 0.005), f"systematic offset {offset.round(4)} m"
    spacing = (8 if name == REALSENSE else 4) * float(np.nanmedian(frames[0]["depth"])) / K[0, 0]
    back, _ = cKDTree(opaque).query(pts[::5])
    assert np.median(back) < 3 * spacing, (np.median(back), spacing)


@pytest.mark.parametrize("name", [KITCHEN, REALSENSE])
def test_rendered_depth_has_the_measured_scale_in_every_frame(recordings, short_maps, name):
    """The saved map rendered (the suite's public ``load_ply`` + ``render``) at each of the 10
    frames' TF poses, mapped and held out alike: where it is opaque and the frame measured depth, the
    median ratio rendered / measured depth is 1 within 5 % (a millimetre/metre or 16UC1 scale slip,
    or a depth image resampled to another size, breaks it by far more), and it does not drift along
    the stretch (a pose drift or a per-frame scale would). (The short map's depth sat about 2.5 %
    in front of the measurement while coarse discs replaced their seeds: see the test below.)"""
    from gs_mapping.camera import Camera
    from gs_mapping.ply import load_ply
    from gs_mapping.render import render

    frames, K = recordings[name]
    out, _ = short_maps[name]
    g = load_ply(out / "map.ply")
    h, w = frames[0]["depth"].shape
    ratios = []
    for f in frames[:10]:
        _, depth, alpha = render(g, Camera(K, w, h, f["T"]), backend="cpu").numpy()
        ok = np.isfinite(f["depth"]) & (alpha > 0.5)
        assert ok.mean() > 0.5
        ratios.append(float(np.median(depth[ok] / f["depth"][ok])))
    assert np.all(np.abs(np.array(ratios) - 1) < 0.05), np.round(ratios, 4)
    assert max(ratios) - min(ratios) < 0.01, np.round(ratios, 4)


def _seeded_frame_render(shared_data, recordings, tmp_path, levels_yaml=""):
    """Map only the kitchen's first frame, no optimisation; render the saved map at that frame."""
    from gs_mapping.camera import Camera
    from gs_mapping.cli import main
    from gs_mapping.ply import load_ply
    from gs_mapping.render import render

    frames, K = recordings[KITCHEN]
    f = frames[0]
    h, w = f["depth"].shape
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(FAST.format(stride=4, it=0, first=0, refine=0, scale=1.0) + levels_yaml)
    out = tmp_path / "seeded"
    argv = ["map", str(shared_data / KITCHEN), "--out", str(out), "--device", "cpu", "--holdout-every", "0"]
    assert main(argv + ["--config", str(cfg), "--max-frames", "1", "--no-progress"]) == 0
    color, depth, alpha = render(load_ply(out / "map.ply"), Camera(K, w, h, f["T"]), backend="cpu").numpy()
    ok = np.isfinite(f["depth"]) & (alpha > 0.5)
    ratio = float(np.median(depth[ok] / f["depth"][ok]))
    l1 = float(np.mean(np.abs(depth[ok] - f["depth"][ok])))
    return ratio, l1, _psnr(color, f["rgb"])


def test_seeds_without_levels_explain_the_frame_they_were_seeded_from(shared_data, recordings, tmp_path):
    """The control for the test below: with ``levels.count: 1`` (no coarse discs) the seeds of one
    frame (every 4th pixel lifted at its measured depth), rendered back at that frame's TF pose,
    give its depth: median ratio within 1 % of the measurement, mean |error| under 5 cm (the
    issue's held-out goal), colour better than 21 dB."""
    ratio, l1, psnr = _seeded_frame_render(shared_data, recordings, tmp_path, "      levels: {count: 1}\n")
    assert abs(ratio - 1) < 0.01 and l1 < 0.05 and psnr > 21.0, (ratio, l1, psnr)


def test_seeds_with_default_levels_explain_the_frame_they_were_seeded_from(shared_data, recordings, tmp_path):
    """The same with the default configuration (4 levels, ``coarse_scale`` > 0): the issue says new
    Gaussians are seeded where the map does not explain a frame, so that afterwards it does; the
    levels are for sending coarse parts first, and the whole map (all levels) is what is rendered and
    evaluated. Measured from the real kitchen frame: without levels median ratio 0.992, mean |error|
    3.2 cm, 22.7 dB; with the default levels 0.954, 12.5 cm, 19.7 dB, because ``coarse_discs``
    (levels.py) turns each coarse seed into a disc of in-plane sigma ``coarse_scale`` x voxel edge
    (0.5 x 0.3 m = 0.15 m at level 0, 7.5 cm at level 1) whose one
    mean depth the rasteriser uses across the whole footprint and which, sorted by that depth at
    opacity 0.7, covers the fine seeds behind it. Over a short stretch (10 frames, 3 iterations a
    keyframe) it stays: held-out PSNR 22.8 vs 24.5 dB and depth L1 8.4 vs 3.5 cm without levels, the
    rendered depth 2.5 % in front in every frame; the whole bag's 800 refinement iterations hide
    most of it (README: 25.15 vs 25.30 dB), a live mapper_node never runs them. Fixed: a coarse
    seed keeps its shape and an extra, fainter and smaller disc takes its coarse level (0.991,
    3.5 cm, 22.7 dB here)."""
    ratio, l1, psnr = _seeded_frame_render(shared_data, recordings, tmp_path)
    assert abs(ratio - 1) < 0.01 and l1 < 0.05 and psnr > 21.0, (ratio, l1, psnr)


# -- held-out views: the right frames, the saved map, the TF pose; against a warp baseline ---------------
@pytest.mark.parametrize("name", [KITCHEN, REALSENSE])
def test_heldout_figures_are_the_saved_map_rendered_at_the_heldout_frames_tf_poses(
    recordings, short_maps, name
):
    """``metrics.json``'s held-out views must be exactly every 5th frame of the recording (indices 4
    and 9 of the first 10, by their header stamps as read here), and each view's PSNR, depth L1 and
    coverage must be what the *saved* map.ply scores when rendered at that frame's TF pose composed
    here (so the evaluation used the recorded pose and the map the user gets, not a working copy):
    PSNR over all pixels against the decoded image, depth L1 over pixels with measured depth, and the
    mean of the views is the reported figure."""
    from gs_mapping.camera import Camera
    from gs_mapping.ply import load_ply
    from gs_mapping.render import render

    frames, K = recordings[name]
    out, m = short_maps[name]
    h = m["heldout"]
    assert h["views"] == 2 and [v["index"] for v in h["per_view"]] == [4, 9]
    assert [v["stamp_ns"] for v in h["per_view"]] == [frames[4]["stamp"], frames[9]["stamp"]]
    g = load_ply(out / "map.ply")
    H, W = frames[0]["depth"].shape
    for view in h["per_view"]:
        f = frames[view["index"]]
        color, depth, alpha = render(g, Camera(K, W, H, f["T"]), backend="cpu").numpy()
        assert _psnr(color, f["rgb"]) == pytest.approx(view["psnr"], abs=0.05)
        ok = np.isfinite(f["depth"]) & (f["depth"] >= 0.1)
        assert float(np.mean(np.abs(depth[ok] - f["depth"][ok]))) == pytest.approx(
            view["depth_l1_m"], abs=2e-3
        )
        assert float(np.mean(alpha > 0.5)) == pytest.approx(view["coverage"], abs=0.01)
    assert h["psnr"] == pytest.approx(np.mean([v["psnr"] for v in h["per_view"]]), abs=1e-6)


@pytest.mark.parametrize("name", [KITCHEN, REALSENSE])
def test_heldout_render_is_aligned_with_the_image_and_not_far_below_a_forward_warp(
    recordings, short_maps, name
):
    """A no-learning baseline for each held-out view: the nearest mapped frame's colour forward-warped
    by its own depth into the held-out pose (z-buffered). On the pixels the warp covers, the map's
    render must not be far below it (within 10 dB: a short map with 3 iterations a keyframe is several dB
    below a warp from a frame 33 ms away; a pose or convention error costs far more), and must beat the
    held-out image's own mean colour by 6 dB. The render must line up with the real image: OpenCV's
    phase correlation finds a shift below 2 px at 320x240 (4 at 640x480; 7-Scenes' colour is
    registered to depth only approximately, about a pixel at 320x240)."""
    from gs_mapping.camera import Camera
    from gs_mapping.ply import load_ply
    from gs_mapping.render import render

    frames, K = recordings[name]
    out, m = short_maps[name]
    g = load_ply(out / "map.ply")
    H, W = frames[0]["depth"].shape
    window = cv2.createHanningWindow((W, H), cv2.CV_32F)
    for view in m["heldout"]["per_view"]:
        i = view["index"]
        f = frames[i]
        src = frames[i - 1]  # (i + 1 is mapped too; the earlier is the one the map has optimised longer)
        warp, covered = _forward_warp(src, K, f["T"], H, W)  # (no suite code)
        assert covered.mean() > 0.6
        color, _, _ = render(g, Camera(K, W, H, f["T"]), backend="cpu").numpy()
        ours, baseline = _psnr(color, f["rgb"], covered), _psnr(warp, f["rgb"], covered)
        flat = _psnr(np.broadcast_to(f["rgb"].reshape(-1, 3).mean(0), f["rgb"].shape), f["rgb"], covered)
        assert ours > baseline - 10.0, (i, ours, baseline)
        assert ours > flat + 6.0, (i, ours, flat)
        gray = [cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY) for x in (f["rgb"], color)]
        (dx, dy), _ = cv2.phaseCorrelate(gray[0], gray[1], window)
        assert math.hypot(dx, dy) < 2.0 * W / 320, (i, dx, dy)
