"""What a rig covers (gsmap_hd.region) and clipping to it: the frustum footprint agrees with projecting
ground points through the real camera model; clipping follows MapTR's rules; hd-eval scores a front
camera only where it sees; the mirror augmentation keeps images, calibration and GT consistent."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from shapely.geometry import Point

from gs_mapping.world.rig import rig_cameras
from gsmap_hd.augment import mirror
from gsmap_hd.data import Sample
from gsmap_hd.region import clip_element, make_region, rig_region

X, Y = (-30.0, 30.0), (-15.0, 15.0)


def _sees(cam, pts):
    """Ground points (z = 0, base_link) that project inside the image in front of the camera."""
    p = np.c_[pts, np.zeros(len(pts)), np.ones(len(pts))]
    pc = (np.linalg.inv(cam.T_map_cam) @ p.T).T[:, :3]
    uvw = (cam.K @ pc.T).T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    return (pc[:, 2] > 0) & (u > -0.5) & (u < cam.width - 0.5) & (v > -0.5) & (v < cam.height - 0.5)


@pytest.mark.parametrize("rig", ["front", "surround"])
def test_frustum_is_the_ground_the_cameras_project_onto(rig):
    cams = rig_cameras(rig, 256, 128)
    region = make_region("frustum", X, Y, [(c.K, c.T_map_cam, c.width, c.height) for c in cams])
    g = np.stack(np.meshgrid(np.linspace(-29.9, 29.9, 121), np.linspace(-14.9, 14.9, 61)), -1).reshape(-1, 2)
    seen = np.zeros(len(g), bool)
    for c in cams:
        seen |= _sees(c, g)
    border = region.polygon.boundary
    far = np.array([border.distance(Point(p)) > 0.05 for p in g])  # away from the edges
    inside = np.array([region.polygon.contains(Point(p)) for p in g])
    assert (inside[far] == seen[far]).all()
    assert seen.sum() > 100


def test_front_frustum_starts_ahead_and_the_surround_rig_covers_almost_all():
    front = rig_region("auto", "front", X, Y, (128, 256))
    assert front.name == "frustum" and front.polygon.bounds[0] > 4.0 and 400 < front.area < 700
    assert rig_region("auto", "surround", X, Y, (128, 256)).name == "patch"
    assert rig_region("frustum", "surround", X, Y, (128, 256)).area > 0.9 * 1800
    assert rig_region("forward_half", "front", X, Y, (128, 256)).area == pytest.approx(900)


def test_clipping_follows_maptr_rules():
    half = make_region("forward_half", X, Y)
    # a polyline leaving and re-entering the region is split into one element per piece inside
    zig = np.array([[5.0, 0], [-5, 0], [-5, 5], [10, 5]])
    pieces = clip_element(zig, False, half)
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces[0], [[5, 0], [0, 0]])
    np.testing.assert_allclose(pieces[1], [[0, 5], [10, 5]])
    # a crossing straddling the border: the part inside, one closed ring
    ring = np.array([[-2.0, -1], [2, -1], [2, 1], [-2, 1], [-2, -1]])
    (r,) = clip_element(ring, True, half)
    assert np.allclose(r[0], r[-1]) and r[:, 0].min() == pytest.approx(0.0)
    area = 0.5 * abs(np.dot(r[:-1, 0], r[1:, 1]) - np.dot(r[1:, 0], r[:-1, 1]))
    assert area == pytest.approx(4.0)
    assert clip_element(np.array([[-10.0, 0], [-3, 0]]), False, half) == []
    # a prediction that crosses itself keeps its vertices and order (no re-noding at the crossing)
    loop = np.array([[5.0, 0], [15, 0], [15, 4], [10, -3], [8, 6]])
    (same,) = clip_element(loop, False, half)
    np.testing.assert_allclose(same, loop)
    (cut,) = clip_element(np.vstack([loop, [[-4.0, 6]]]), False, half)
    np.testing.assert_allclose(cut, np.vstack([loop, [[0.0, 6]]]))
    # a predicted crossing that crosses itself (a bow-tie) is kept as predicted inside the region,
    # and cut lobe by lobe (both kept) where it leaves it
    bow = np.array([[4.0, -1], [8, 1], [8, -1], [4, 1], [4, -1]])
    (kept,) = clip_element(bow, True, half)
    np.testing.assert_allclose(kept, bow)
    lobes = clip_element(bow - [6.0, 0], True, half)
    assert sum(_area(r) for r in lobes) == pytest.approx(2.0)
    # a closed line cut by the border: one piece through its start point
    ring = np.array([[5.0, -2], [5, 2], [-5, 2], [-5, -2], [5, -2]])
    (piece,) = clip_element(ring, False, half)
    np.testing.assert_allclose(piece, [[0, -2], [5, -2], [5, 2], [0, 2]])


def test_hd_eval_scores_a_front_camera_where_it_sees(tmp_path):
    """A perfect forward prediction and a GT element behind the car: with the region in the file the
    element behind is not held against the camera (mAP 1); scored as written it is."""
    front = rig_region("auto", "front", X, Y, (128, 256))
    ahead = [[10.0, -1.5], [25.0, -1.5]]
    behind = [[-25.0, 3.0], [-5.0, 3.0]]
    doc = {
        "results": [
            {"vectors": [{"pts": ahead, "type": 0, "confidence_level": 0.9}], "region": front.coords()}
        ],
        "GTs": [{"vectors": [{"pts": ahead, "type": 0}, {"pts": behind, "type": 0}]}],
    }
    f = tmp_path / "e.json"
    f.write_text(json.dumps(doc))

    def ev(*a):
        r = subprocess.run(
            [sys.executable, "-m", "gs_mapping", "hd-eval", str(f), "--frame", "rep103", "--no-raster", *a],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    honest, written = ev(), ev("--region", "none")
    assert honest["region_clipped_frames"] == 1 and honest["chamfer"]["class_ap"][0] == pytest.approx(1.0)
    assert written["chamfer"]["class_ap"][0] == pytest.approx(0.5)
    doc["results"][0]["region"] = [[[0, 0], [1, "x"]]]
    f.write_text(json.dumps(doc))
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "hd-eval", str(f)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "results[0].region" in r.stderr


@pytest.mark.parametrize("rig", ["front", "surround"])
def test_mirror_keeps_images_calibration_and_gt_consistent(rig):
    """A ground point's pixel in the mirrored frame is the mirrored pixel of the mirrored point."""
    cams = rig_cameras(rig, 64, 32)
    rng = np.random.default_rng(0)
    ims = rng.integers(0, 255, (len(cams), 32, 64, 3), dtype=np.uint8)
    s = Sample(
        ims,
        np.stack([c.K for c in cams]),
        np.stack([c.T_map_cam for c in cams]),
        [(0, np.array([[3.0, 1.0], [9, 2]]))],
    )
    m = mirror(s)
    pts = rng.uniform([-25, -12], [25, 12], (200, 2))
    for i in range(len(cams)):
        R = m.T_ego_cam[i][:3, :3]
        assert np.allclose(R @ R.T, np.eye(3)) and np.linalg.det(R) > 0
        for p in pts:
            a = _project(s.K[i], s.T_ego_cam[i], p)
            b = _project(m.K[i], m.T_ego_cam[i], p * [1, -1])
            if a is not None:
                assert b is not None and np.allclose(b, [63 - a[0], a[1]], atol=1e-6)
    np.testing.assert_array_equal(m.images[:, :, ::-1], s.images)
    np.testing.assert_allclose(m.elements[0][1], [[3.0, -1.0], [9, -2]])


def _area(r):
    return 0.5 * abs(np.dot(r[:-1, 0], r[1:, 1]) - np.dot(r[1:, 0], r[:-1, 1]))


def _project(K, T, p):
    pc = np.linalg.inv(T) @ np.array([p[0], p[1], 0.0, 1.0])
    if pc[2] <= 0:
        return None
    uvw = K @ pc[:3]
    return uvw[:2] / uvw[2]
