"""gsmap_hd.nuscenes on a tiny dataset written in nuScenes' own on-disk format (v1.0-mini-like tables
+ a map expansion file), read through the real devkit classes (NuScenes, NuScenesMap).

Sample A: ego at global (100, 200), heading +90° (north). base_link (x forward, y left) is then
global (100 - y, 200 + x), so the map below is written in global coordinates by hand with its
base_link values in the comments. Sample B: another pose (yaw 30°), checked through the transform.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("nuscenes", reason="nuscenes-devkit not installed")
from shapely.geometry import Polygon  # noqa: E402

from gs_mapping.geometry import matrix_to_quat  # noqa: E402
from gsmap_hd import nuscenes as nu  # noqa: E402

LOCATION = "singapore-onenorth"


def wxyz_yaw(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def wxyz_matrix(R) -> list[float]:
    x, y, z, w = matrix_to_quat(np.asarray(R, np.float64))
    return [float(w), float(x), float(y), float(z)]


# optical camera (x right, y down, z forward) in the ego frame (x forward, y left, z up)
R_EGO_OPT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
POSE_B = (350.0, 420.0, math.radians(30.0))


def g(x_local: float, y_local: float) -> tuple[float, float]:
    """base_link of sample A → global."""
    return 100.0 - y_local, 200.0 + x_local


def g_b(x_local: float, y_local: float) -> tuple[float, float]:
    """base_link of sample B → global."""
    tx, ty, yaw = POSE_B
    c, s = math.cos(yaw), math.sin(yaw)
    return tx + c * x_local - s * y_local, ty + s * x_local + c * y_local


class MapBuilder:
    def __init__(self) -> None:
        self.node, self.line, self.polygon = [], [], []
        self.layers = {
            k: []
            for k in (
                "drivable_area",
                "road_segment",
                "road_block",
                "lane",
                "ped_crossing",
                "walkway",
                "stop_line",
                "carpark_area",
                "road_divider",
                "lane_divider",
                "traffic_light",
                "lane_connector",
            )
        }

    def _nodes(self, pts) -> list[str]:
        toks = []
        for x, y in pts:
            t = f"n{len(self.node)}"
            self.node.append({"token": t, "x": float(x), "y": float(y)})
            toks.append(t)
        return toks

    def add_line(self, layer: str, pts) -> None:
        lt = f"l{len(self.line)}"
        self.line.append({"token": lt, "node_tokens": self._nodes(pts)})
        rec = {"token": f"{layer}{len(self.layers[layer])}", "line_token": lt}
        rec.update({"road_segment_token": ""} if layer == "road_divider" else {"lane_divider_segments": []})
        self.layers[layer].append(rec)

    def add_polygon(self, layer: str, ext, holes=()) -> None:
        pt = f"p{len(self.polygon)}"
        self.polygon.append(
            {
                "token": pt,
                "exterior_node_tokens": self._nodes(ext),
                "holes": [{"node_tokens": self._nodes(h)} for h in holes],
            }
        )
        rec = {"token": f"{layer}{len(self.layers[layer])}", "polygon_token": pt}
        if layer == "lane":
            rec.update(
                lane_type="CAR",
                from_edge_line_token="",
                to_edge_line_token="",
                left_lane_divider_segments=[],
                right_lane_divider_segments=[],
            )
        elif layer == "road_segment":
            rec.update(is_intersection=False, drivable_area_token="")
        elif layer == "ped_crossing":
            rec.update(road_segment_token="")
        self.layers[layer].append(rec)

    def json(self) -> dict:
        return {
            "version": "1.3",
            "canvas_edge": [2000.0, 2000.0],
            "node": self.node,
            "line": self.line,
            "polygon": self.polygon,
            "arcline_path_3": {},
            "connectivity": {},
            **self.layers,
        }


def rect(x0, x1, y0, y1, to=g):
    return [to(x0, y0), to(x1, y0), to(x1, y1), to(x0, y1)]


def build_map() -> dict:
    m = MapBuilder()
    # sample A
    m.add_line("lane_divider", [g(-40, 5), g(40, 5)])  # → (-30, 5)..(30, 5)
    m.add_line("road_divider", [g(0, -10), g(0, -20), g(5, -20), g(5, -10)])  # leaves and re-enters
    m.add_line("lane_divider", [g(200, 0), g(210, 0)])  # far away: not in the patch
    m.add_polygon("ped_crossing", rect(10, 14, -6, 6))  # overlaps the next: merged
    m.add_polygon("ped_crossing", rect(13, 16, -2, 2))
    m.add_polygon("ped_crossing", rect(28, 34, -3, 3))  # cut by the front edge x = 30
    # road x ∈ [-50, 50], y ∈ [-8, 8] with an island; a lane below it: union y ∈ [-12, 8]
    m.add_polygon("road_segment", rect(-50, 50, -8, 8), holes=[rect(-20, -16, 0, 3)])
    m.add_polygon("lane", rect(-50, 50, -12, -8))
    # sample B (its own patch, far from A's)
    m.add_line("lane_divider", [g_b(-10, 2), g_b(20, 2)])
    m.add_polygon("ped_crossing", rect(5, 9, -4, 4, to=g_b))
    return m.json()


def write_dataset(root) -> None:
    (root / "maps" / "expansion").mkdir(parents=True)
    (root / "maps" / "expansion" / f"{LOCATION}.json").write_text(json.dumps(build_map()))
    from PIL import Image

    Image.new("L", (8, 8)).save(root / "maps" / "mask0.png")
    tables = {k: [] for k in ("category", "attribute", "visibility", "instance", "sample_annotation")}
    tables["log"] = [
        {
            "token": "log0",
            "logfile": "tiny",
            "vehicle": "n015",
            "date_captured": "2018-07-24",
            "location": LOCATION,
        }
    ]
    tables["map"] = [
        {"token": "map0", "log_tokens": ["log0"], "category": "semantic_prior", "filename": "maps/mask0.png"}
    ]
    tables["sensor"] = [
        {"token": "s_lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
        {"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"},
    ]
    tables["calibrated_sensor"] = [
        {
            "token": "cs_lidar",
            "sensor_token": "s_lidar",
            "translation": [0.9, 0.0, 1.8],
            "rotation": wxyz_yaw(-math.pi / 2),
            "camera_intrinsic": [],
        },  # nuScenes' LiDAR: x right, y fwd
        {
            "token": "cs_cam",
            "sensor_token": "s_cam",
            "translation": [1.5, 0.0, 1.5],
            "rotation": wxyz_matrix(R_EGO_OPT),
            "camera_intrinsic": [[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]],
        },
    ]
    t0 = 1_532_402_927_647_951
    poses = {
        "ep_a_lidar": ((100.0, 200.0), math.pi / 2, t0),
        "ep_a_cam": ((100.0, 200.5), math.pi / 2, t0 + 12_000),  # 0.5 m further at the shutter
        "ep_b_lidar": (POSE_B[:2], POSE_B[2], t0 + 500_000),
        "ep_b_cam": (POSE_B[:2], POSE_B[2], t0 + 500_000),
    }
    tables["ego_pose"] = [
        {"token": k, "timestamp": t, "rotation": wxyz_yaw(yaw), "translation": [xy[0], xy[1], 0.0]}
        for k, (xy, yaw, t) in poses.items()
    ]
    tables["scene"] = [
        {
            "token": "sc0",
            "log_token": "log0",
            "nbr_samples": 2,
            "first_sample_token": "sm_a",
            "last_sample_token": "sm_b",
            "name": "scene-0061",
            "description": "tiny",
        }
    ]
    tables["sample"] = [
        {"token": "sm_a", "timestamp": t0, "prev": "", "next": "sm_b", "scene_token": "sc0"},
        {"token": "sm_b", "timestamp": t0 + 500_000, "prev": "sm_a", "next": "", "scene_token": "sc0"},
    ]
    sd = []
    for s in ("a", "b"):
        for sensor, cs, fmt, size in (
            ("lidar", "cs_lidar", "pcd", (0, 0)),
            ("cam", "cs_cam", "jpg", (160, 90)),
        ):
            sd.append(
                {
                    "token": f"sd_{s}_{sensor}",
                    "sample_token": f"sm_{s}",
                    "ego_pose_token": f"ep_{s}_{sensor}",
                    "calibrated_sensor_token": cs,
                    "timestamp": poses[f"ep_{s}_{sensor}"][2],
                    "fileformat": fmt,
                    "is_key_frame": True,
                    "height": size[1],
                    "width": size[0],
                    "filename": f"samples/{sensor}/{s}.{fmt}",
                    "prev": "",
                    "next": "",
                }
            )
    tables["sample_data"] = sd
    (root / "samples" / "cam").mkdir(parents=True)
    Image.new("RGB", (160, 90), (90, 90, 90)).save(root / "samples" / "cam" / "a.jpg")  # b's is missing
    (root / "v1.0-mini").mkdir()
    for name, rows in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes")
    write_dataset(root)
    return root


@pytest.fixture(scope="module")
def frames(dataroot):
    return list(nu.NuScenesMapGT(dataroot, "v1.0-mini").frames())


def by_class(fr, c):
    return [p for k, p in fr.elements if k == c]


def same_polyline(a, b, tol=1e-6) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and (np.allclose(a, b, atol=tol) or np.allclose(a, b[::-1], atol=tol))


def test_samples_in_scene_order_with_poses(frames):
    assert [f.sample_token for f in frames] == ["sm_a", "sm_b"]
    a = frames[0]
    assert a.location == LOCATION and a.scene_name == "scene-0061"
    np.testing.assert_allclose(a.T_global_ego[:3, 3], [100, 200, 0])
    np.testing.assert_allclose(a.T_global_ego[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # facing north
    np.testing.assert_allclose(a.T_ego_lidar[:3, 3], [0.9, 0.0, 1.8])
    np.testing.assert_allclose(a.T_ego_lidar[:3, :3] @ [0, 1, 0], [1, 0, 0], atol=1e-12)  # lidar y = fwd
    np.testing.assert_allclose(a.T_global_ref, a.T_global_ego, atol=1e-12)  # flat ego: ref = ego pose


def test_dividers_clipped_in_base_link(frames):
    divs = by_class(frames[0], nu.DIVIDER)
    assert len(divs) == 3  # the long line, the two pieces of the U; the far line is absent
    expected = [[(-30, 5), (30, 5)], [(0, -10), (0, -15)], [(5, -15), (5, -10)]]
    for e in expected:
        assert sum(same_polyline(d, e) for d in divs) == 1, (e, divs)


def test_crossings_merged_clipped_and_closed(frames):
    peds = by_class(frames[0], nu.PED_CROSSING)
    assert len(peds) == 2
    for p in peds:
        assert np.allclose(p[0], p[-1])  # closed ring
        assert Polygon(p).exterior.is_ccw is False  # exteriors clockwise, as MapTR
    areas = sorted(Polygon(p).area for p in peds)
    assert areas == pytest.approx([2 * 6, 4 * 12 + 2 * 4])  # cut at x = 30; union of the overlap pair
    cut = min(peds, key=lambda p: Polygon(p).area)
    assert Polygon(cut).bounds == pytest.approx((28, -3, 30, 3))
    merged = max(peds, key=lambda p: Polygon(p).area)
    assert Polygon(merged).bounds == pytest.approx((10, -6, 16, 6))
    assert len(merged) == 9  # 8 corners + closure


def test_boundaries_from_road_and_lane_union(frames):
    bnds = by_class(frames[0], nu.BOUNDARY)
    assert len(bnds) == 3
    m = 30 - nu.PATCH_MARGIN
    # the union's outer edges, cut 0.2 m inside the patch ends (the clip edges are not boundaries)
    for y in (8.0, -12.0):
        assert sum(same_polyline(b, [(-m, y), (m, y)]) for b in bnds) == 1, (y, bnds)
    island = [b for b in bnds if len(b) == 5]
    assert len(island) == 1 and np.allclose(island[0][0], island[0][-1])
    assert Polygon(island[0]).bounds == pytest.approx((-20, 0, -16, 3))
    assert Polygon(island[0]).exterior.is_ccw  # holes counter-clockwise


def test_second_pose_through_the_transform(frames):
    b = frames[1]
    divs, peds = by_class(b, nu.DIVIDER), by_class(b, nu.PED_CROSSING)
    assert len(divs) == 1 and same_polyline(divs[0], [(-10, 2), (20, 2)])
    assert len(peds) == 1 and Polygon(peds[0]).bounds == pytest.approx((5, -4, 9, 4))
    # sample A's road is ~250 m away: nothing else
    assert len(b.elements) == 2


def test_camera_relative_to_the_patch_frame(frames):
    cam = frames[0].cameras["CAM_FRONT"]
    assert (cam.width, cam.height) == (160, 90) and cam.filename.endswith("samples/cam/a.jpg")
    np.testing.assert_allclose(cam.K[0], [1266.4, 0.0, 816.3])
    np.testing.assert_allclose(cam.T_ref_cam[:3, :3], R_EGO_OPT, atol=1e-12)
    # the image's ego pose is 0.5 m ahead of the sweep's
    np.testing.assert_allclose(cam.T_ref_cam[:3, 3], [2.0, 0.0, 1.5], atol=1e-9)
    assert "LIDAR_TOP" not in frames[0].cameras


def test_lidar_origin_is_maptr_patch(dataroot):
    fr = nu.NuScenesMapGT(dataroot, "v1.0-mini", origin="lidar").frame("sm_a", cameras=False)
    np.testing.assert_allclose(fr.T_global_ref[:3, 3], [100, 200.9, 1.8], atol=1e-12)
    divs = by_class(fr, nu.DIVIDER)
    # the patch moved 0.9 m forward: x_lidar = x_ego - 0.9, clipped at ±30 again
    assert any(same_polyline(d, [(-30, 5), (30, 5)]) for d in divs)
    assert any(same_polyline(d, [(-0.9, -10), (-0.9, -15)]) for d in divs)
    cut = min(by_class(fr, nu.PED_CROSSING), key=lambda p: Polygon(p).area)
    assert Polygon(cut).bounds == pytest.approx((27.1, -3, 30, 3))


def test_eval_document_scores_itself_perfectly(frames):
    from gsmap_hd.eval_io import parse_submission
    from gsmap_hd.metrics import evaluate

    doc = nu.gt_document(frames)
    assert doc["GTs"][0]["sample_token"] == "sm_a"
    results = [
        {"sample_token": f["sample_token"], "vectors": [dict(v, confidence_level=0.9) for v in f["vectors"]]}
        for f in doc["GTs"]
    ]
    parse_submission({"results": results, "GTs": doc["GTs"]}, "nuscenes")  # valid hd-eval input
    out = evaluate(results, doc["GTs"], frame="rep103")
    assert out["chamfer"]["mAP"] == pytest.approx(1.0)


def test_bad_input_named(tmp_path, dataroot):
    with pytest.raises(nu.NuScenesError, match="v1.0-trainval"):
        nu.NuScenesMapGT(dataroot, "v1.0-trainval")
    with pytest.raises(nu.NuScenesError, match="origin"):
        nu.NuScenesMapGT(dataroot, "v1.0-mini", origin="cam")
    gt = nu.NuScenesMapGT(dataroot, "v1.0-mini")
    with pytest.raises(nu.NuScenesError, match="scene-9999"):
        gt.sample_tokens(["scene-9999"])
    with pytest.raises(nu.NuScenesError, match="nope"):
        gt.frame("nope")
    with pytest.raises(nu.NuScenesError, match="boston-seaport"):
        gt.map_for("boston-seaport")
    with pytest.raises(nu.NuScenesError, match="non-finite"):
        nu.pose_matrix([0, float("nan"), 0], [1, 0, 0, 0])


@settings(max_examples=25, deadline=None)
@given(dx=st.floats(-40, 40), dy=st.floats(-40, 40), yaw=st.floats(-math.pi, math.pi))
def test_any_pose_elements_inside_patch(extractor, dx, dy, yaw):
    T = nu.planar(np.eye(4), yaw)
    T[:2, 3] = [100.0 + dx, 200.0 + dy]
    m = 1e-6
    for c, p in extractor.elements(T):
        assert p.ndim == 2 and p.shape[1] == 2 and len(p) >= 2 and np.all(np.isfinite(p))
        lim = 30 - nu.PATCH_MARGIN if c == nu.BOUNDARY else 30
        assert np.all(np.abs(p[:, 0]) <= lim + m)
        assert np.all(np.abs(p[:, 1]) <= lim - 15 + m)
        if c == nu.PED_CROSSING:
            assert np.allclose(p[0], p[-1]) and len(p) >= 4


@pytest.fixture(scope="module")
def extractor(dataroot):
    return nu.NuScenesMapGT(dataroot, "v1.0-mini").map_for(LOCATION)


def test_to_sample_feeds_the_model(frames):
    from gsmap_hd.data import collate
    from gsmap_hd.model_config import ModelConfig

    s = frames[0].to_sample()
    assert s.images.shape == (1, 90, 160, 3) and s.images.dtype == np.uint8
    np.testing.assert_allclose(s.T_ego_cam[0], frames[0].cameras["CAM_FRONT"].T_ref_cam)
    assert len(s.elements) == len(frames[0].elements)
    im, K, T, targets = collate([s], ModelConfig(), None)
    assert im.shape == (1, 1, 3, 128, 256) and targets is None
    with pytest.raises(nu.NuScenesError, match="b.jpg"):
        frames[1].to_sample()
    with pytest.raises(nu.NuScenesError, match="CAM_BACK"):
        frames[0].to_sample(("CAM_BACK",))


def test_missing_devkit_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nuscenes.nuscenes", None)
    with pytest.raises(nu.NuScenesError, match="nuscenes-devkit"):
        nu._devkit()


def test_hd_train_reads_nuscenes_samples(dataroot, tmp_path):
    """`hd-train --data nuscenes`: samples of an official split, the rig's cameras, GT in base_link."""
    import dataclasses

    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.train import train

    src = nu.NuScenesSamples(dataroot, "v1.0-mini", "mini_train", "front")
    assert len(src) == 2 and src[0].images.shape == (1, 90, 160, 3) and src[0].elements
    with pytest.raises(nu.NuScenesError, match="mini_val"):
        nu.NuScenesSamples(dataroot, "v1.0-mini", "mini_val", "front")
    cfg = dataclasses.replace(
        TrainConfig(),
        data="nuscenes",
        nuscenes_root=str(dataroot),
        nuscenes_version="v1.0-mini",
        nuscenes_train_split="mini_train",
        nuscenes_eval_split="mini_train",
        steps=1,
        batch_size=1,
        train_frames=1,
        eval_every=0,
    )
    last = train(cfg, tmp_path / "run", progress=False)
    assert last["step"] == 1 and np.isfinite(last["loss"])
