"""LiDAR returns the camera cannot see are not its depth (``cloud_to_depth``'s visibility rule,
``mapping/lidar_visibility.py``), checked against things outside the rule: hand ray casts of small
scenes (a thin pole before a wall, flat ground, a LiDAR looking away) and the procedural world's own
ground truth: its LiDAR sits 0.8 m behind and 0.35 m above the front camera, each return is checked
by casting the camera's ray to it against the world's analytic primitives (hidden: the ray meets
something nearer by more than the tolerance), and the depth image against the world's rendered
depth of that camera."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.mapping.depth_registration import cloud_to_depth
from gs_mapping.mapping.lidar_visibility import HIDDEN_ABS_M, HIDDEN_REL, hidden_returns

# optical axes (x right, y down, z forward) in a body frame (x forward, y left, z up): columns
R_BODY_OPT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
W, H, F = 1280, 720, 1000.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1.0]])


def _T_cam_lidar(lidar_xyz) -> np.ndarray:
    """The camera at the body origin, the LiDAR (axes parallel to the body's) at ``lidar_xyz``."""
    T = np.eye(4)
    T[:3, :3] = R_BODY_OPT.T
    T[:3, 3] = R_BODY_OPT.T @ np.asarray(lidar_xyz, float)
    return T


def _rays(el_deg, az_deg) -> np.ndarray:
    """Unit ray directions (body axes) of a spinning LiDAR's rings ``el_deg`` x columns ``az_deg``."""
    el, az = np.meshgrid(np.radians(el_deg), np.radians(az_deg), indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)


def _first_hit(o, d, pole=None, wall_x=None, ground_z=None) -> np.ndarray:
    """Hand ray cast (body frame): distance along unit rays ``d`` from ``o`` to the first of a vertical
    pole ``(x, y, radius)``, the wall plane x = ``wall_x``, the ground z = ``ground_z``; inf: none."""
    t = np.full(len(d), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        if wall_x is not None:
            tw = (wall_x - o[0]) / d[:, 0]
            t = np.where(tw > 0, np.minimum(t, tw), t)
        if ground_z is not None:
            tg = (ground_z - o[2]) / d[:, 2]
            t = np.where(tg > 0, np.minimum(t, tg), t)
        if pole is not None:
            ox, oy = o[0] - pole[0], o[1] - pole[1]
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = ox * d[:, 0] + oy * d[:, 1]
            disc = b * b - a * (ox * ox + oy * oy - pole[2] ** 2)
            tp = (-b - np.sqrt(np.maximum(disc, 0))) / a
            t = np.where((disc >= 0) & (tp > 0), np.minimum(t, tp), t)
    return t


def _truth(P_body, z_cam, camera_hit):
    """Per return (body frame, camera at the origin): hidden (the camera's ray meets something nearer by
    more than the rule's tolerance, in z-depth) and visible (nothing nearer on it)."""
    dist = np.linalg.norm(P_body, axis=1)
    gap = (dist - camera_hit) * z_cam / dist  # how far behind the camera's first hit, in z
    return gap > np.maximum(HIDDEN_ABS_M, HIDDEN_REL * z_cam), gap < 1e-6


def _in_image(q, w=W, h=H, k=K):
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(k[0, 0] * q[:, 0] / q[:, 2] + k[0, 2])
        v = np.rint(k[1, 1] * q[:, 1] / q[:, 2] + k[1, 2])
    return (q[:, 2] > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h), u, v


def _pole_scene(lidar_xyz, ring_deg=0.5, col_deg=0.1, half_fov=30.0, pole=True, noise=0.0):
    """A pole (radius 0.1 m) 6 m ahead before a wall 9 m ahead over ground 1.5 m below the camera,
    seen by a LiDAR at ``lidar_xyz`` (body frame, camera at the origin) over +-``half_fov`` degrees,
    ranges with Gaussian ``noise`` (m): the returns in the LiDAR's frame, in the body frame,
    T_cam_lidar, the returns in the camera frame and the scene."""
    L = np.asarray(lidar_xyz, float)
    scene = dict(pole=(6.0, 0.0, 0.1) if pole else None, wall_x=9.0, ground_z=-1.5)
    d = _rays(np.arange(-20.0, 6.0, ring_deg), np.arange(-half_fov, half_fov, col_deg))
    t = _first_hit(L, d, **scene)
    P = L + d * (t + np.random.default_rng(7).normal(0.0, noise, len(t)) if noise else t)[:, None]
    T = _T_cam_lidar(L)
    return P - L, P, T, P @ R_BODY_OPT, scene


def test_a_thin_pole_keeps_its_returns_and_hides_the_wall_strip_behind_it():
    """A LiDAR 0.4 m right of and 0.3 m above the camera sees the wall on both sides of a pole (0.2 m
    wide at 6 m, 20 columns of returns): where the camera's ray to a wall return meets the pole first
    (hand ray cast), the return is not depth; every pole return stays, and so do the wall and ground
    returns the camera sees but for those at the pole's edges, within half the beams' spacing (measured:
    2 of 30 598)."""
    cloud, P, T, q, scene = _pole_scene((0.0, -0.4, 0.3))
    inside, u, v = _in_image(q)
    hidden, visible = _truth(
        P, q[:, 2], _first_hit(np.zeros(3), P / np.linalg.norm(P, axis=1)[:, None], **scene)
    )
    hidden &= inside
    visible &= inside
    on_pole = inside & (np.hypot(P[:, 0] - 6.0, P[:, 1]) < 0.1 + 1e-6)
    assert hidden.sum() > 300 and on_pole.sum() > 300  # the scene is what it says
    got = hidden_returns(cloud, T, K, (W, H))
    assert not (hidden & ~got).any(), f"{int((hidden & ~got).sum())} of {int(hidden.sum())} hidden kept"
    assert not got[on_pole].any()
    lost = visible & got
    assert lost.sum() <= 0.001 * visible.sum(), f"{int(lost.sum())} of {int(visible.sum())} visible lost"
    # the depth image: no pixel holds a hidden return's depth, every pole return's pixel is the pole's
    depth = cloud_to_depth(cloud, T, K, (W, H))
    ui, vi = u.astype(int), v.astype(int)
    assert not np.isclose(depth[vi[hidden], ui[hidden]], q[hidden, 2], atol=1e-4).any()
    assert (depth[vi[on_pole], ui[on_pole]] <= q[on_pole, 2] + 1e-4).all()
    assert (depth[vi[on_pole], ui[on_pole]] > 0).all()


@pytest.mark.parametrize("spacing_deg", [(0.5, 0.1), (0.05, 0.05)], ids=["lidar", "finer-than-pixels"])
def test_from_the_cameras_own_origin_nothing_is_hidden(spacing_deg):
    """The same pole, wall and ground seen by a LiDAR at the camera's origin, or by a depth camera
    whose /points are finer than the colour camera's pixels: every return lies on its own pixel's ray
    with nothing in front of it, so none is hidden, whatever depth steps the cloud holds."""
    cloud, P, T, q, _ = _pole_scene((0.0, 0.0, 0.0), *spacing_deg, half_fov=8.0)
    assert len(cloud) > 5000
    assert not hidden_returns(cloud, T, K, (W, H)).any()


def test_noisy_returns_of_a_wall_and_ground_all_stay():
    """A wall and ground (a concave corner: nothing can hide anything) from a LiDAR above the camera,
    ranges with 1.5 cm of Gaussian noise (a VLP-16 is specified to +-3 cm): a return behind its
    neighbours' triangles by noise alone is no hidden return; all but 0.1 % stay."""
    cloud, P, T, q, _ = _pole_scene((0.0, -0.4, 0.3), pole=False, noise=0.015)
    inside, _, _ = _in_image(q)
    got = hidden_returns(cloud, T, K, (W, H))
    assert inside.sum() > 20000 and got[inside].sum() <= 0.001 * inside.sum(), int(got.sum())


@pytest.mark.parametrize(
    "camera_height, lidar_xyz, ring_deg",
    [(1.55, (-0.8, 0.0, 0.35), 0.1), (1.55, (-0.8, 0.0, 0.35), 2.0), (0.4, (0.0, 0.0, 1.6), 1.0)],
    ids=["world-rig-dense", "world-rig-16-rings", "low-camera-high-lidar"],
)
def test_grazing_ground_from_a_lidar_above_keeps_every_return(camera_height, lidar_xyz, ring_deg):
    """Flat ground out to 150 m under a camera and a LiDAR above it (the world's rig: 0.35 m above
    and 0.8 m behind; a small robot's: a camera 0.4 m up, a LiDAR on a mast 1.6 m above it), dense or
    sparse rings over 0.1 deg columns: a plane cannot hide itself, so every return in the image stays,
    the far rows at grazing angles too, and each lands on its own pixel with its own depth (nearest
    per pixel)."""
    L = np.array(lidar_xyz)
    d = _rays(np.arange(-24.0, 0.0, ring_deg), np.arange(-40.0, 40.0, 0.1))
    t = _first_hit(L, d, ground_z=-camera_height)
    d, t = d[t < 150], t[t < 150]
    cloud = d * t[:, None]
    T = _T_cam_lidar(L)
    q = (cloud + L) @ R_BODY_OPT
    inside, u, v = _in_image(q)
    assert inside.sum() > 2000 and q[inside, 2].max() > 50
    assert not hidden_returns(cloud, T, K, (W, H))[inside].any()
    depth = cloud_to_depth(cloud, T, K, (W, H))
    want = np.full((H, W), np.inf)
    np.minimum.at(want, (v[inside].astype(int), u[inside].astype(int)), q[inside, 2])
    want[~np.isfinite(want)] = 0
    np.testing.assert_allclose(depth, want, rtol=1e-6)


def test_a_cloud_with_no_returns_in_front_of_the_camera():
    """A LiDAR looking backwards (every return behind the camera), an empty cloud and one of two
    points: an empty depth image, nothing taken as hidden, no error."""
    L = np.array([0.0, 0.0, 0.3])
    d = _rays(np.arange(-15.0, 16.0, 2.0), np.arange(150.0, 210.0, 0.2))
    cloud = d * _first_hit(L, d, wall_x=-5.0)[:, None]
    T = _T_cam_lidar(L)
    assert len(cloud) > 4000
    assert not hidden_returns(cloud, T, K, (W, H)).any()
    assert not cloud_to_depth(cloud, T, K, (W, H)).any()
    assert not cloud_to_depth(np.zeros((0, 3)), T, K, (W, H)).any()
    two = np.array([[5.0, 0.0, 0.0], [6.0, 0.1, 0.0]])
    assert (cloud_to_depth(two, T, K, (W, H)) > 0).sum() == 2


# -- the procedural world: its LiDAR against its front camera -------------------------------------------
@pytest.fixture(scope="module")
def drive():
    from gs_mapping.world.trajectory import Drive

    return Drive.make(3, 40, size=(640, 360))


def _world_truth(world, camera, T_map_lidar, scan):
    """Per return (LiDAR frame): in the image, hidden and visible from ``camera`` by casting the
    camera's ray to it against the world's analytic ground and primitives (their own intersection
    functions, culled by their screen rectangles); the returns in the camera frame and their pixels."""
    from gs_mapping.world import render as R

    P = scan @ T_map_lidar[:3, :3].T + T_map_lidar[:3, 3]
    q = P @ camera.T_cam_map[:3, :3].T + camera.T_cam_map[:3, 3]
    inside, u, v = _in_image(q, camera.width, camera.height, camera.K)
    o = camera.T_map_cam[:3, 3]
    d = (P - o) / np.linalg.norm(P - o, axis=1)[:, None]
    t = R.hit_ground(o, d)
    ob = world.objects
    b, c, e = ob.boxes, ob.cylinders, ob.ellipsoids
    for kind, i, r0, r1, c0, c1 in R.camera_regions(
        ob, camera.T_cam_map, camera.K, camera.width, camera.height, 200.0
    ):
        s = np.flatnonzero(inside & (u >= c0 - 1) & (u <= c1) & (v >= r0 - 1) & (v <= r1))
        if kind == R.BOX:
            th = R.hit_box(o, d[s], b.cx[i], b.cy[i], b.z0[i], b.z1[i], b.hx[i], b.hy[i], b.yaw[i])
        elif kind == R.CYL:
            th = R.hit_cylinder(o, d[s], c.cx[i], c.cy[i], c.r[i], c.z0[i], c.z1[i])
        else:
            th = R.hit_ellipsoid(o, d[s], e.cx[i], e.cy[i], e.cz[i], e.r[i], e.rz[i])
        t[s] = np.minimum(t[s], th)
    hidden, visible = _truth(P - o, q[:, 2], t)
    return hidden & inside, visible & inside, inside, q, u, v


@pytest.mark.parametrize(
    "beams, columns, fov",
    [(16, 1800, (-15.0, 15.0)), (128, 1024, (-22.5, 22.5))],
    ids=["vlp16", "os128"],
)
def test_the_worlds_lidar_loses_what_its_front_camera_cannot_see(drive, beams, columns, fov):
    """Three frames of the world's drive past lamps, trees and buildings: of the returns the camera
    cannot see (its ray meets a pole, a trunk, a crown or a facade first) at least 85 % are dropped
    (measured: 89 % of a 16-ring's, 93 % of a 128-ring's at 640x360; the rest lie where an object's
    edge falls between two beams, or on objects narrower than the beams' spacing), of those it sees at
    most 0.4 % (measured 0.1 %, beside objects' edges). The depth image against the world's rendered
    depth: its pixels behind the camera's true surface by more than the tolerance drop to a quarter
    or less of what nearest-per-pixel alone left (measured: a seventh, a tenth)."""
    from gs_mapping.world.rig import lidar_transform

    world, cam0 = drive.world, drive.cameras[0]
    hidden = visible = dropped_hidden = dropped_visible = bad = bad_plain = 0
    for index in (0, 26, 39):
        T_base = drive.pose(index)
        camera = cam0.with_pose(T_base @ cam0.T_map_cam)
        T_map_lidar = T_base @ lidar_transform()
        scan = world.lidar(T_map_lidar, beams=beams, columns=columns, fov=fov)[:, :3].astype(np.float64)
        is_hidden, is_visible, inside, q, u, v = _world_truth(world, camera, T_map_lidar, scan)
        T = camera.T_cam_map @ T_map_lidar
        got = hidden_returns(scan, T, camera.K, (camera.width, camera.height))
        hidden += int(is_hidden.sum())
        visible += int(is_visible.sum())
        dropped_hidden += int((is_hidden & got).sum())
        dropped_visible += int((is_visible & got).sum())
        _, truth = world.render(camera)
        depth = cloud_to_depth(scan, T, camera.K, (camera.width, camera.height))
        plain = np.full(depth.shape, np.inf)  # nearest return per pixel, by hand
        np.minimum.at(plain, (v[inside].astype(int), u[inside].astype(int)), q[inside, 2])
        tol = np.maximum(HIDDEN_ABS_M, HIDDEN_REL * np.nan_to_num(truth, nan=np.inf))
        bad += int(((depth > 0) & (depth > truth + tol)).sum())
        bad_plain += int((np.isfinite(plain) & (plain > truth + tol)).sum())
    assert hidden > 150 and visible > 10000  # the drive holds occluders
    assert dropped_hidden >= 0.85 * hidden, f"{dropped_hidden} of {hidden} hidden returns dropped"
    assert dropped_visible <= 0.004 * visible, f"{dropped_visible} of {visible} visible returns dropped"
    assert bad_plain > 100 and bad <= bad_plain / 4, (bad, bad_plain)


def _nearest_per_pixel(q) -> np.ndarray:
    """The depth image before the rule (by hand): the nearest return of each pixel, 0 where none."""
    inside, u, v = _in_image(q)
    want = np.full((H, W), np.inf)
    np.minimum.at(want, (v[inside].astype(int), u[inside].astype(int)), q[inside, 2])
    want[~np.isfinite(want)] = 0
    return want


def test_a_cloud_in_a_world_frame_keeps_every_return_and_says_so_once(caplog):
    """The pole scene published in an odometry frame 40 m from the camera (FAST-LIO's camera_init,
    LIO-SAM's odom): the cloud's origin is not the sensor, so the rule would triangulate about the
    wrong point; it is not applied (the nearest return of each pixel wins, by hand), and one warning
    names the frame. In the LiDAR's own frame the hidden returns still go."""
    cloud, P, T, q, _ = _pole_scene((0.0, -0.4, 0.3))
    T_cam_odom = T.copy()
    T_cam_odom[:3, 3] = R_BODY_OPT.T @ np.array([-30.0, 25.0, 1.0])  # the odom origin, body frame
    in_odom = P - [-30.0, 25.0, 1.0]
    with caplog.at_level("WARNING"):
        for _ in range(2):
            depth = cloud_to_depth(in_odom, T_cam_odom, K, (W, H), frame="camera_init_h3")
    np.testing.assert_allclose(depth, _nearest_per_pixel(q), rtol=1e-6)
    said = [r.getMessage() for r in caplog.records if "camera_init_h3" in r.getMessage()]
    assert len(said) == 1 and "world frame" in said[0], said
    assert (cloud_to_depth(cloud, T, K, (W, H)) != _nearest_per_pixel(q)).sum() > 100


@pytest.mark.parametrize("twin", ["exact", "float32"])
def test_two_returns_on_each_ray_hide_what_one_does(twin):
    """Every return given twice (dual-return mode with one target per ray, the same scan appended
    again, float32 copies ~1e-7 rad off their ray): each copy of a return the camera cannot see
    (hand ray cast) is still hidden, and the visible ones stay but for 0.1 %."""
    cloud, P, T, q, scene = _pole_scene((0.0, -0.4, 0.3))
    inside, _, _ = _in_image(q)
    hidden, visible = _truth(
        P, q[:, 2], _first_hit(np.zeros(3), P / np.linalg.norm(P, axis=1)[:, None], **scene)
    )
    hidden &= inside
    visible &= inside
    again = cloud if twin == "exact" else cloud.astype(np.float32).astype(np.float64)
    got = hidden_returns(np.concatenate([cloud, again]), T, K, (W, H))
    assert hidden.sum() > 300
    for half in (got[: len(cloud)], got[len(cloud) :]):
        assert not (hidden & ~half).any(), f"{int((hidden & ~half).sum())} of {int(hidden.sum())} kept"
        assert (visible & half).sum() <= 0.001 * visible.sum(), int((visible & half).sum())


def test_a_farther_return_on_a_ray_is_tested_against_the_nearest_ones_surface():
    """Dual return's last returns: the rays that hit the pole also reach the wall behind it. The
    surface is the first hits' (pole, wall, ground), so the camera, beside the LiDAR, loses the wall
    returns its ray to meets the pole first (hand ray cast), but for those within half the beams'
    spacing of the pole's edge, and keeps all the others."""
    cloud, P, T, q, scene = _pole_scene((0.0, -0.4, 0.3))
    L = np.array([0.0, -0.4, 0.3])
    on_pole = np.hypot(P[:, 0] - 6.0, P[:, 1]) < 0.1 + 1e-6
    d = cloud[on_pole] / np.linalg.norm(cloud[on_pole], axis=1)[:, None]
    last = d * _first_hit(L, d, wall_x=9.0, ground_z=-1.5)[:, None]  # the wall behind, past the pole
    Pl = last + L
    ql = Pl @ R_BODY_OPT
    hidden, visible = _truth(
        Pl, ql[:, 2], _first_hit(np.zeros(3), Pl / np.linalg.norm(Pl, axis=1)[:, None], **scene)
    )
    inside, _, _ = _in_image(ql)
    assert (hidden & inside).sum() > 100 and (visible & inside).sum() > 50
    got = hidden_returns(np.concatenate([cloud, last]), T, K, (W, H))[len(cloud) :]
    assert got[hidden & inside].mean() >= 0.95  # (measured 99.4 %: 2 kept at the pole's edges)
    assert not got[visible & inside].any()


def test_a_return_just_in_front_of_the_camera_plane_is_dropped_without_a_warning():
    """Returns a hair in front of the camera plane (z = 2 um: far outside the image, past what an
    integer pixel index holds) beside ordinary ones: no RuntimeWarning, no pixel for them, the
    ordinary returns' image unchanged."""
    cloud, P, T, q, _ = _pole_scene((0.0, -0.4, 0.3))
    edge_cam = np.array([[3e13, 1.0, 2e-6], [-5e13, -2.0, 3e-6], [1.0, 4e13, 1.5e-6]])  # camera frame
    edge = (edge_cam - T[:3, 3]) @ T[:3, :3]  # into the LiDAR's frame
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        depth = cloud_to_depth(np.concatenate([cloud, edge]), T, K, (W, H))
    np.testing.assert_array_equal(depth, cloud_to_depth(cloud, T, K, (W, H)))
