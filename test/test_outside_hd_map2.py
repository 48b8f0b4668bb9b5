"""Outside review of issue 18 (GSMap), second round: classes of input a real user brings that the
suite did not try yet — a rig of another camera count or order than the checkpoint's, checkpoints of
another class count, a map frame at UTM-sized coordinates, a vehicle standing still for minutes, a
ground truth that lacks a whole class, and the ONNX export of the six-camera model.

Each test drives the real component and compares it with an independent reference: the camera
average the BEV lifting's docstring states (so the order of cameras cannot matter), a numpy pinhole
projection of the ground (what the cameras can see, the issue's rule for what is judged), the
issue's "one line, exit 2" for a checkpoint of another config, the same drive fused at the origin,
and hand-computed APs from the metrics' docstring. Tests marked xfail(strict) document bugs found by
this review."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gsmap_hd.lane_map import LaneMap, region_in_map, to_frame
from gsmap_hd.region import clip_element, rig_region

W, H = 256, 128  # the shipped models' input size (width, height)


@pytest.fixture(scope="module")
def surround_frame():
    """One rendered frame of the world's six-camera rig (images, K, T_base_cam)."""
    from gsmap_hd.world_data import world_sample

    return world_sample(1, 5, "surround", (W, H))


@pytest.fixture(scope="module")
def surround():
    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import shipped_checkpoint

    return Predictor.from_checkpoint(shipped_checkpoint(6), score_threshold=0.0)


def _inputs(s, cams):
    return (
        [s.images[i] for i in cams],
        [{"K": s.K[i], "width": W, "height": H} for i in cams],
        [s.T_ego_cam[i] for i in cams],
    )


def _same_elements(a, b, xy_tol):
    assert len(a) == len(b) > 0
    assert [e.cls for e in a] == [e.cls for e in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) < 1e-4
    for x, y in zip(a, b, strict=True):
        assert x.points.shape == y.points.shape
        assert np.abs(x.points - y.points).max() < xy_tol


# ------------------------------------------------------------------------------------------------
# camera rigs: another order, another count


PERM = [3, 0, 5, 1, 4, 2]


def test_cameras_in_another_order_give_the_same_prediction(surround, surround_frame):
    # bev.lift averages each BEV cell's samples over the cameras that see it: a driver that lists
    # its cameras in another order than the training rig must get the same lanes
    a = surround.predict(*_inputs(surround_frame, range(6)))
    ra = surround.last_regions[0].polygon
    b = surround.predict(*_inputs(surround_frame, PERM))
    _same_elements(a, b, 1e-5)
    assert surround.last_regions[0].polygon.symmetric_difference(ra).area < 1e-6


def test_onnx_export_of_the_six_camera_model_equals_torch_with_cameras_reordered(
    surround, surround_frame, tmp_path
):
    # the "outputs equal torch's within 1e-4": the surround model, its six cameras in
    # another order on the onnxruntime side (the deformable attention and the lift exported)
    pytest.importorskip("onnxruntime")
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.infer import Predictor
    from gsmap_hd.onnx_export import export_onnx
    from gsmap_hd.predict_bag import shipped_checkpoint

    model, cfg, _ = load_model(shipped_checkpoint(6))
    onnx = Predictor.from_onnx(export_onnx(model, cfg, tmp_path / "surround.onnx"), score_threshold=0.0)
    a = surround.predict(*_inputs(surround_frame, range(6)))
    b = onnx.predict(*_inputs(surround_frame, PERM))
    _same_elements(a, b, 2e-3)  # metres: float32 on a 60 m patch (test_hd_onnx's bound)


@pytest.mark.parametrize("factor", [2, 3])
def test_cameras_of_mixed_resolutions_give_the_rig_at_one_resolution(surround, surround_frame, factor):
    # a real rig mixes sensors (a 1080p front, 720p sides): two cameras here give each pixel as a
    # factor x factor block, with the ROS pixel-centre rule for their K (fx' = f fx, cx' = f cx +
    # (f - 1)/2). Each input pixel's centre ray lands inside its block, so the model must see the
    # very same inputs and predict the very same lanes
    ims, infos, Ts = _inputs(surround_frame, range(6))
    a = surround.predict(ims, infos, Ts)
    for i in (1, 4):
        ims[i] = np.repeat(np.repeat(ims[i], factor, 0), factor, 1)
        K = infos[i]["K"].copy()
        K[:2, :2] *= factor
        K[:2, 2] = factor * K[:2, 2] + (factor - 1) / 2
        infos[i] = {"K": K, "width": W * factor, "height": H * factor}
    b = surround.predict(ims, infos, Ts)
    _same_elements(a, b, 1e-5)


@pytest.mark.parametrize("form", ["dict", "CameraIntrinsics"])
def test_a_fisheye_camera_is_made_pinhole_as_opencv_does(form):
    # an equidistant (Kannala-Brandt) camera as ROS drivers publish it: the raw image the model is
    # given must be OpenCV's cv2.fisheye undistortion to the same K (the pinhole its lifting assumes)
    cv2 = pytest.importorskip("cv2")
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import SHIPPED

    p = Predictor.from_checkpoint(SHIPPED)
    w, h = 640, 320
    v, u = np.mgrid[0:h, 0:w].astype(float)
    chans = [np.sin(u / 9) * np.cos(v / 7), np.cos(u / 13 + v / 11), np.sin((u - v) / 10)]
    tex = np.rint(127.5 + 120 * np.stack(chans, -1)).astype(np.uint8)
    K = np.array([[260.0, 0, 319.5], [0, 260, 159.5], [0, 0, 1]])
    D = np.array([0.08, -0.03, 0.01, -0.002])
    # the raw fisheye picture of the pinhole texture: each raw pixel reads where its ray lands
    src = cv2.fisheye.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), K, D, P=K)
    src = src.reshape(h, w, 2).astype(np.float32)
    raw = cv2.remap(tex, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rect = cv2.fisheye.undistortImage(raw, K, D, Knew=K)
    if form == "dict":
        info = {"K": K, "width": w, "height": h, "d": D.tolist(), "distortion_model": "equidistant"}
    else:
        info = CameraIntrinsics(w, h, K, D, "equidistant")
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical frame looking forward
    T[:3, 3] = [1.5, 0, 1.5]
    pin = {"K": K, "width": w, "height": h}
    got, _, _ = p.model_inputs([raw], [info], [T])
    want, _, _ = p.model_inputs([rect], [pin], [T])
    as_is, _, _ = p.model_inputs([raw], [pin], [T])
    assert float((got - want).abs().mean()) < 0.005  # (the raw image taken as pinhole: 0.27)
    assert float((as_is - want).abs().mean()) > 0.1


def _seen_by_any(pts, s, cams, px=2.0):
    """Ground points (z = 0, base_link) that project into some camera's image (numpy pinhole), with
    ``px`` pixels of slack for points the clipping put on a frustum's edge."""
    p = np.c_[pts, np.zeros(len(pts)), np.ones(len(pts))]
    seen = np.zeros(len(pts), bool)
    for i in cams:
        pc = (np.linalg.inv(s.T_ego_cam[i]) @ p.T).T[:, :3]
        uvw = (s.K[i] @ pc.T).T
        with np.errstate(all="ignore"):
            u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        seen |= (pc[:, 2] > 0.2) & (u > -0.5 - px) & (u < W - 0.5 + px) & (v > -0.5 - px) & (v < H - 0.5 + px)
    return seen


def test_the_frustum_region_keeps_the_surround_model_where_front_cameras_see(surround_frame):
    # the yardstick of the xfail below is reachable: asked for region 'frustum' (Python API only;
    # neither hd_map_node nor hd-predict exposes it), every published point projects into a camera
    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import shipped_checkpoint

    p = Predictor.from_checkpoint(shipped_checkpoint(3), score_threshold=0.0, region="frustum")
    els = p.predict(*_inputs(surround_frame, [0, 1, 2]))
    assert els
    for e in els:
        assert _seen_by_any(e.points, surround_frame, [0, 1, 2]).all()


def test_a_rig_of_front_cameras_on_the_surround_model_is_judged_where_it_sees(surround_frame):
    # issue 18: "a prediction can only be judged on what its cameras can see". hd_map_node and
    # hd-predict load the surround model for any rig of more than one camera; a user's rig of three
    # forward cameras (the world rig's front, front-left, front-right) sees nothing behind the car
    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import shipped_checkpoint

    p = Predictor.from_checkpoint(shipped_checkpoint(3), score_threshold=0.3)  # the node's default
    front = [0, 1, 2]
    els = p.predict(*_inputs(surround_frame, front))
    assert els  # (today: two boundaries from x = -29 m to +30 m)
    for e in els:
        assert _seen_by_any(e.points, surround_frame, front).all(), (e.cls, e.points[:, 0].min())


@pytest.fixture(scope="module")
def surround_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd2") / "surround"
    write_bag(Drive.make(3, 8, "surround", (128, 64)), out, progress=False)
    return out


def test_a_camera_that_stops_publishing_shows_in_diagnostics(surround_bag, caplog):
    # a USB camera that resets mid-drive: the other five keep publishing, every frame needs all six,
    # so no lane is published any more. ROS diagnostics convention (and this suite's: the status is
    # "inputs rejected or dropped" at WARN, mapper_node reports its unpaired messages): say so
    from test_outside_session20b import _run_with_a_dead_camera

    node, dead, _, _ = _run_with_a_dead_camera(surround_bag, caplog)  # (it dies after its second image)
    cams = sorted(node.cameras)
    assert len(cams) == 6 and dead == cams[0]
    assert node.ctx.bus.published["/hd_map_node/lanes_json"] == 2  # 6 frames of 8 were lost
    assert node.diag.level() != 0
    # what a user reads: the other cameras' images went unmatched, and which camera fell silent
    assert node.diag.dropped["images_unmatched"] > 0
    assert f"image on {dead} (silent for" in node.diag.values["waiting_for"]
    assert all(c not in node.diag.values["waiting_for"] for c in cams[1:])


# ------------------------------------------------------------------------------------------------
# checkpoints of another config: one line, exit 2


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    from gs_mapping.cli import main

    out = tmp_path_factory.mktemp("hd2") / "world"
    args = ["world", "--out", str(out), "--frames", "2", "--size", f"{W}x{H}", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    return out


def _checkpoint(tmp_path, **model):
    import torch

    from gsmap_hd import checkpoint
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig, TrainConfig

    torch.manual_seed(0)
    classes = model.pop("num_classes", None)
    mc = ModelConfig(**model)
    if classes is not None:  # a checkpoint another build wrote (ours refuses such a config)
        object.__setattr__(mc, "num_classes", classes)
    cfg = TrainConfig(model=mc)
    return checkpoint.save(
        tmp_path / "other.pt", GSMapModel(cfg.model).eval(), cfg, step=1, weights_only=True
    )


@pytest.mark.parametrize("classes", [2, 4])
def test_hd_predict_refuses_a_checkpoint_of_another_class_count_in_one_line(
    small_bag, tmp_path, capsys, classes
):
    from gs_mapping.cli import main

    ckpt = _checkpoint(tmp_path, num_classes=classes)
    out = tmp_path / "pred.json"
    rc = main(["hd-predict", str(small_bag), "--out", str(out), "--checkpoint", str(ckpt), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "class" in err


def test_a_checkpoint_of_another_image_size_is_run_at_its_own_size(small_bag, tmp_path, capsys):
    # the other half of the brief's "other config": image size is not a reason to refuse — the
    # Predictor brings the bag's images to the checkpoint's size; the output is valid hd-eval input
    import json

    from gs_mapping.cli import main
    from gsmap_hd.eval_io import load_submission

    ckpt = _checkpoint(tmp_path, image_size=(64, 160))
    out = tmp_path / "pred.json"
    rc = main(["hd-predict", str(small_bag), "--out", str(out), "--checkpoint", str(ckpt), "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 2
    results, gts = load_submission(out)
    assert len(results) == len(gts) == 2
    assert all(v.cls in (0, 1, 2) for fr in results for v in fr)


# ------------------------------------------------------------------------------------------------
# the lane map: a map frame far from the origin, a vehicle standing still


FRONT = rig_region("frustum", "front", (-30, 30), (-15, 15), (H, W))


@dataclass
class _E:
    cls: int
    score: float
    points: np.ndarray


def _pose(x, y, yaw=0.0):
    T = np.eye(4)
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[:2, 3] = [x, y]
    return T


def _fuse(lanes, poses, noise=0.0, seed=0):
    """Per-frame predictions (GT clipped to the front frustum, plus noise) fused in the map frame."""
    rng = np.random.default_rng(seed)
    m = LaneMap()
    for T in poses:
        els = []
        for cls, pts in lanes:
            for piece in clip_element(to_frame(pts, np.linalg.inv(T)), cls == 1, FRONT):
                els.append(_E(cls, 0.8, to_frame(piece + rng.normal(0, noise, piece.shape), T)))
        m.update(els, region_in_map(FRONT, T))
    return m


def _straight(offset=(0.0, 0.0)):
    xs = np.arange(0, 201, 1.0)
    o = np.asarray(offset)
    return [(0, np.c_[xs, 0 * xs] + o), (0, np.c_[xs, 0 * xs + 3.5] + o), (2, np.c_[xs, 0 * xs + 7.0] + o)]


UTM = np.array([512345.678, 5412345.678])  # an easting / northing in metres


def test_a_map_frame_at_utm_coordinates_fuses_as_at_the_origin():
    # a map frame anchored at a UTM origin: float32 would lose ~0.5 m there; the fused map must be
    # the one of the same drive at the origin, shifted (same ids, same confidences, same shape)
    poses = [_pose(x, 1.75) for x in np.arange(0, 100, 4)]
    at0 = _fuse(_straight(), poses, noise=0.1)
    far = _fuse(_straight(UTM), [_pose(T[0, 3] + UTM[0], T[1, 3] + UTM[1]) for T in poses], noise=0.1)
    a, b = at0.published(), far.published()
    assert [t.id for t in a] == [t.id for t in b] and len(a) == 3
    for x, y in zip(a, b, strict=True):
        assert x.points.shape == y.points.shape
        assert np.abs(x.points - (y.points - UTM)).max() < 1e-6
        assert x.confidence == pytest.approx(y.confidence, abs=1e-9)


def test_the_nodes_map_pose_at_utm_coordinates_keeps_millimetres():
    # hd_map_node puts each frame's lanes into map with TF's map <- base_link at the image stamp: a
    # static map <- odom at a UTM origin and odom <- base_link interpolated between two samples must
    # give the composition numpy computes (linear translation, yaw interpolated), not float32's 0.5 m
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.tf import TFBuffer

    b = TFBuffer(cache_time_s=30.0)
    b.add(TransformStamped("map", "odom", 0, Transform.from_matrix(_pose(*UTM, 0.3))), static=True)
    b.add(TransformStamped("odom", "base_link", 1_000_000_000, Transform.from_matrix(_pose(10.0, 2.0, 0.1))))
    b.add(TransformStamped("odom", "base_link", 1_100_000_000, Transform.from_matrix(_pose(10.8, 2.1, 0.12))))
    got = b.lookup("map", "base_link", 1_050_000_000).matrix()
    want = _pose(*UTM, 0.3) @ _pose(10.4, 2.05, 0.11)
    assert np.abs(got[:3, 3] - want[:3, 3]).max() < 1e-6
    assert np.abs(got[:3, :3] - want[:3, :3]).max() < 1e-9


@pytest.mark.parametrize("step", [0.01, 0.001])
def test_lane_deltas_at_utm_coordinates_keep_the_lattice_step(step):
    # ~/lanes_delta quantises map-frame points to lane_step_m: at UTM 5.4e6 m and a 1 mm step the
    # lattice index is 5.4e9 (beyond int32); the decoded lanes must be within step/2 of the sent ones
    from gs_map_share.lanes import Lane, decode_lanes, encode_lanes, quantize_lanes

    pts = UTM + np.c_[np.arange(0, 30.0), np.sin(np.arange(30) / 5)]
    lanes = [Lane(1, 0, 0.8, pts), Lane(7, 2, 0.6, pts + [0.0, 3.5])]
    old = quantize_lanes(lanes, step)
    _, got = decode_lanes(encode_lanes(None, old, map_id=2, seq=1, base_seq=0, step=step), None)
    moved = [Lane(1, 0, 0.8, pts + 0.0237), lanes[1]]
    new = quantize_lanes(moved, step)
    _, got2 = decode_lanes(encode_lanes(old, new, map_id=2, seq=2, base_seq=1, step=step), got)
    for sent, back in ((lanes, got.to_lanes(step)), (moved, got2.to_lanes(step))):
        for a, b in zip(sent, back, strict=True):
            assert np.abs(a.points - b.points).max() <= step / 2 + 1e-9


def test_standing_still_for_minutes_keeps_one_lane_each_where_it_is():
    # a car waiting at a light: 200 frames (20 s at the node's 10 Hz; minutes at lower rates) of the
    # same view with detector noise: one track per lane, its id kept, on the lane, confidence capped
    # by the detector's own (the docstring's "never past the model's own mean confidence")
    lanes = _straight()[:2]
    T = _pose(40.0, 1.75)
    m = _fuse(lanes, [T] * 200, noise=0.15, seed=3)
    pub = m.published()
    assert len(m.tracks) == len(pub) == 2
    assert [t.id for t in pub] == [1, 2]
    for (_, gt), t in zip(lanes, sorted(pub, key=lambda t: t.points[:, 1].mean()), strict=True):
        assert np.abs(t.points[:, 1] - gt[0, 1]).max() < 0.3  # on its lane (y = const)
        assert t.confidence <= 0.8 + 1e-12
        # the lane's seen part: what the frustum covers of it, not grown by the noise frame by frame
        seen = [p for p in clip_element(to_frame(gt, np.linalg.inv(T)), False, FRONT)]
        assert t.length() == pytest.approx(
            sum(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in seen), abs=1.5
        )


# ------------------------------------------------------------------------------------------------
# hd-eval: a ground truth without one class


L1 = [[-5.0, -20.0], [-5.0, 0.0], [-5.0, 20.0]]
L2 = [[5.0, -20.0], [5.0, 0.0], [5.0, 20.0]]
RING = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]]


@pytest.mark.parametrize("phantom_crossing", [False, True])
def test_hd_eval_ground_truth_without_crossings(phantom_crossing):
    # metrics docstring: Chamfer mAP averages all three classes, a class without GT counting 0; the
    # raster per-class AP of a class without GT is -1 (absent) and its mAP the mean of the defined
    # ones. Perfect divider and boundary predictions: Chamfer 2/3, raster 1, whatever is predicted
    # for the absent class
    from gsmap_hd.metrics import evaluate

    gts = [{"vectors": [{"pts": L1, "type": 0}, {"pts": L2, "type": 2}]}]
    vecs = [
        {"pts": L1, "type": 0, "confidence_level": 0.9},
        {"pts": L2, "type": 2, "confidence_level": 0.8},
    ]
    if phantom_crossing:
        vecs.append({"pts": RING, "type": 1, "confidence_level": 0.95})
    out = evaluate([{"vectors": vecs}], gts)
    assert out["chamfer"]["class_ap"] == pytest.approx([1.0, 0.0, 1.0])
    assert out["chamfer"]["mAP"] == pytest.approx(2 / 3)
    assert out["raster"]["ped_ap"] == -1.0
    assert out["raster"]["mAP"] == pytest.approx(1.0)
    assert out["raster"]["divider_ap"] == pytest.approx(1.0) and out["raster"][
        "boundary_ap"
    ] == pytest.approx(1.0)
