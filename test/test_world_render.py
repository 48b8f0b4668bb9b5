"""The procedural world's geometry, renderer and LiDAR, checked against independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, Polygon
from shapely.ops import unary_union
from shapely.prepared import prep

from gs_mapping.world import BOUNDARY, DIVIDER, PED_CROSSING, Drive, World, WorldError
from gs_mapping.world import render as R
from gs_mapping.world.ground import SHADOW
from gs_mapping.world.rig import lidar_transform, rig_cameras
from gs_mapping.world.roads import PAINT_WHITE, PAINT_YELLOW
from gs_mapping.world.scene import LAMP_HEAD


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=5, length=160.0)


# ------------------------------------------------------------------- independent signed distances
def near(prims, lo, hi):
    """Indices of primitives whose corner box meets the box [lo, hi] (speeds up the reference)."""
    if not len(prims):
        return []
    c = prims.corners()
    ok = np.all((c.max(1) >= lo - 0.01) & (c.min(1) <= hi + 0.01), axis=1)
    return np.flatnonzero(ok)


def sdf_all(world: World, p: np.ndarray, lo=None, hi=None) -> np.ndarray:
    """Signed distance of (N, 3) map points to the nearest surface (ground plane + every primitive
    meeting the box [lo, hi], by default the points' own bounding box)."""
    b, c, e = world.objects.boxes, world.objects.cylinders, world.objects.ellipsoids
    lo = p.min(0) if lo is None else lo
    hi = p.max(0) if hi is None else hi
    best = p[:, 2].copy()  # ground plane z = 0
    for i in near(b, lo, hi):
        cs, sn = np.cos(b.yaw[i]), np.sin(b.yaw[i])
        dx, dy = p[:, 0] - b.cx[i], p[:, 1] - b.cy[i]
        local = np.stack([cs * dx + sn * dy, -sn * dx + cs * dy, p[:, 2] - (b.z0[i] + b.z1[i]) / 2], 1)
        q = np.abs(local) - np.array([b.hx[i], b.hy[i], (b.z1[i] - b.z0[i]) / 2])
        d = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
        best = np.minimum(best, d)
    for i in near(c, lo, hi):
        radial = np.hypot(p[:, 0] - c.cx[i], p[:, 1] - c.cy[i]) - c.r[i]
        vert = np.abs(p[:, 2] - (c.z0[i] + c.z1[i]) / 2) - (c.z1[i] - c.z0[i]) / 2
        q = np.stack([radial, vert], 1)
        d = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
        best = np.minimum(best, d)
    for i in near(e, lo, hi):
        s = np.array([e.r[i], e.r[i], e.rz[i]])
        k = np.linalg.norm((p - [e.cx[i], e.cy[i], e.cz[i]]) / s, axis=1)
        best = np.minimum(best, (k - 1) * min(e.r[i], e.rz[i]))  # zero exactly on the surface
    return best


def paint_like(rgb: np.ndarray) -> np.ndarray:
    """White or yellow road paint, in sun or shadow: red and green well above asphalt's (sunlit asphalt
    ≤ 85; paint in shadow ≥ 140 red, yellow ≥ 110 green)."""
    rgb = np.asarray(rgb, int)
    return (rgb[..., 0] > 110) & (rgb[..., 1] > 98)


def assert_on_surfaces_and_free_before(world, origin, pts, tol=3e-3):
    d = sdf_all(world, pts)
    assert np.all(np.abs(d) < tol), f"{np.sum(np.abs(d) >= tol)} of {len(d)} points off every surface"
    # nothing is crossed before the hit: samples along each ray stay outside all solids
    lo, hi = np.minimum(pts.min(0), origin), np.maximum(pts.max(0), origin)
    dist = np.linalg.norm(pts - origin, axis=1)
    for f in np.linspace(0.02, 0.98, 40):
        q = origin + f * (pts - origin)
        assert np.all(sdf_all(world, q, lo, hi) > -tol - 1e-4 * dist), (
            f"a surface lies before the hit (f={f:.2f})"
        )


def test_generation_is_deterministic_and_seed_dependent():
    a, b, c = World.generate(3, 120.0), World.generate(3, 120.0), World.generate(4, 120.0)
    assert np.array_equal(a.objects.boxes.cx, b.objects.boxes.cx)
    assert all(np.array_equal(x.pts, y.pts) for x, y in zip(a.map_elements(), b.map_elements(), strict=False))
    assert not (
        len(a.objects.boxes) == len(c.objects.boxes) and np.allclose(a.objects.boxes.cx, c.objects.boxes.cx)
    )


def test_map_elements_are_valid(world):
    els = world.map_elements()
    classes = {e.cls for e in els}
    assert {DIVIDER, PED_CROSSING, BOUNDARY} <= classes
    for e in els:
        assert e.pts.ndim == 2 and e.pts.shape[1] == 2 and len(e.pts) >= 2 and np.all(np.isfinite(e.pts))
        if e.cls == PED_CROSSING:
            assert e.closed and len(e.pts) == 5
    # dividers lie on the road, boundaries on the curb line: labels there are asphalt/paint
    div = np.concatenate([e.pts for e in els if e.cls == DIVIDER])
    assert np.all(world.net.drivable.buffer(0.01).contains(Point(p)) for p in div)


def test_ground_labels_match_paint_polygons(world):
    """The label raster agrees with the paint polygons away from their edges (one texel = 4 cm)."""
    rng = np.random.default_rng(0)
    all_paint = prep(unary_union([s.polygon for s in world.net.paint]).buffer(0.06))
    pts, expect = [], []
    for s in world.net.paint[::3]:  # points on each stroke's centreline and 0.45 m beside it
        line = LineString(s.centreline)
        for a in rng.uniform(0.05, 0.95, 10) * line.length:
            p = np.asarray(line.interpolate(a).coords[0])
            q = np.asarray(line.interpolate(min(a + 0.05, line.length)).coords[0]) - np.asarray(
                line.interpolate(max(a - 0.05, 0)).coords[0]
            )
            n = np.array([-q[1], q[0]]) / np.linalg.norm(q)
            pts.append(p)
            expect.append(True)
            for side in (-1, 1):
                beside = p + side * 0.45 * n
                if not all_paint.contains(Point(beside)):
                    pts.append(beside)
                    expect.append(False)
    pts, expect = np.array(pts), np.array(expect)
    labels = world.ground_label(pts)
    is_paint = (labels == PAINT_WHITE) | (labels == PAINT_YELLOW)
    assert expect.sum() > 100 and (~expect).sum() > 100
    assert np.array_equal(is_paint, expect), pts[is_paint != expect][:5]


def test_ground_texels_take_the_shape_their_centre_lies_in():
    """A texel is a shape's when its centre lies in the shape (shapely's ``contains_xy`` at the
    centres), not when the shape's outline touches it: a concave shape with a hole, a thin rotated
    stripe, shapes running past the tile's edges, a multipolygon, and a sliver under a texel."""
    from shapely import affinity
    from shapely.geometry import MultiPolygon, box

    from gs_mapping.world.ground import RES, TILE, N, _mask

    rng = np.random.default_rng(3)
    x0, y0 = 2 * TILE, -TILE
    window = box(x0 - RES, y0 - RES, x0 + TILE + RES, y0 + TILE + RES)
    star = Polygon(
        [
            (x0 + 12.8 + r * np.cos(a), y0 + 12.8 + r * np.sin(a))
            for a, r in zip(
                np.linspace(0, 2 * np.pi, 23, endpoint=False), rng.uniform(3, 11, 23), strict=True
            )
        ],
        [[(x0 + 12.8 + 1.7 * np.cos(a), y0 + 12.8 + 1.7 * np.sin(a)) for a in np.linspace(0, 6.2, 9)]],
    )
    stripe = affinity.rotate(box(x0 + 3.0, y0 + 5.0, x0 + 3.5, y0 + 9.0), 31.7)
    past = Polygon(
        [(x0 - 5.013, y0 + 1.11), (x0 + 30.2, y0 + 3.07), (x0 + 30.2, y0 + 4.31), (x0 - 5.013, y0 + 6.2)]
    )
    multi = MultiPolygon(
        [
            box(x0 + 20.013, y0 + 20.011, x0 + 20.517, y0 + 24.0),
            box(x0 + 21.31, y0 + 22.0, x0 + 25.7, y0 + 22.15),
        ]
    )
    sliver = box(x0 + 7.001, y0 + 7.001, x0 + 7.011, y0 + 7.011)  # between texel centres: no texel
    xs, ys = x0 + (np.arange(N) + 0.5) * RES, y0 + (np.arange(N) + 0.5) * RES
    for shape in (star, stripe, past, multi, sliver):
        want = shapely.contains_xy(shape, xs[None, :], ys[:, None])
        got = _mask(shape, window, x0, y0)
        assert np.array_equal(got, want), (shape.geom_type, int((got != want).sum()))
    assert not _mask(sliver, window, x0, y0).any() and _mask(star, window, x0, y0).sum() > 10_000


def test_elements_in_ego_are_clipped_and_consistent(world):
    drive = Drive(world, 20)
    T = drive.pose(10)
    ego = world.elements_in_ego(T, (30.0, 15.0))
    assert ego, "no ground truth around the vehicle"
    for e in ego:
        assert np.all(np.abs(e.pts[:, 0]) <= 30.0 + 1e-6) and np.all(np.abs(e.pts[:, 1]) <= 15.0 + 1e-6)
        if e.cls == PED_CROSSING:
            assert e.closed
    # back to the map frame, every ego point lies on a world element
    geoms = [LineString(e.pts) for e in world.map_elements()]
    for e in ego:
        m = e.pts @ T[:2, :2].T + T[:2, 3]
        for p in m[:: max(1, len(m) // 5)]:
            assert min(g.distance(Point(p)) for g in geoms) < 0.05 or e.cls == PED_CROSSING
    small = world.elements_in_ego(T, (10.0, 5.0))
    assert all(np.all(np.abs(e.pts) <= [10 + 1e-6, 5 + 1e-6]) for e in small)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(st.floats(0.05, 0.95), st.floats(-3.0, 3.0), st.floats(-0.6, 0.6), st.floats(1.0, 8.0))
def test_depth_is_distance_to_rendered_surface(world, along, lateral, yaw, height):
    """Any pose (extrapolated views too): every depth pixel, back-projected, lies on a surface and
    no solid is crossed on the way."""
    pts, _ = world.route
    i = int(along * (len(pts) - 1))
    d = np.gradient(pts, axis=0)[i]
    h = np.arctan2(d[1], d[0]) + yaw
    base = np.eye(4)
    base[:2, :2] = [[np.cos(h), -np.sin(h)], [np.sin(h), np.cos(h)]]
    base[:2, 3] = pts[i] + lateral * np.array([-np.sin(h), np.cos(h)])
    cam = rig_cameras("front", 96, 64)[0]
    T = base @ cam.T_map_cam
    T[2, 3] = height
    assume(sdf_all(world, T[None, :3, 3], T[:3, 3] - 30, T[:3, 3] + 30)[0] > 0.1)  # not inside a tree crown
    camera = cam.with_pose(T)
    rgb, depth = world.render(camera)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    valid = np.isfinite(depth)
    assert valid.mean() > 0.3
    assert np.all(depth[valid] > 0)
    p = camera.backproject(np.where(valid, depth, 0).astype(np.float64))[valid]
    assert_on_surfaces_and_free_before(world, T[:3, 3], p[::3])


def test_sky_has_no_depth_and_is_bright(world):
    cam = rig_cameras("front", 64, 48)[0]
    e = np.deg2rad(60.0)  # looking 60° above the horizon
    fwd, right = np.array([np.cos(e), 0, np.sin(e)]), np.array([0.0, -1.0, 0.0])
    T = np.eye(4)
    T[:3, :3] = np.stack([right, np.cross(fwd, right), fwd], 1)
    T[:3, 3] = [0, 0, 1.5]
    rgb, depth = world.render(cam.with_pose(T))
    assert np.isnan(depth[:10]).all()
    assert (rgb[:10].astype(int).mean(axis=(0, 1)) > [90, 120, 180]).all()  # blue sky


def test_lidar_points_lie_on_surfaces(world):
    drive = Drive(world, 20)
    T = drive.pose(5) @ lidar_transform()
    pts = world.lidar(T, beams=16, columns=360)
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 1000
    assert np.all((pts[:, 3] >= 0) & (pts[:, 3] <= 1))
    rng = np.linalg.norm(pts[:, :3], axis=1)
    assert rng.max() <= 100.0 + 1e-3
    p_map = pts[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    assert_on_surfaces_and_free_before(world, T[:3, 3], p_map[::7], tol=5e-3)
    # every column of the lowest beam hits the ground near the sensor (open sky above only)
    low = world.lidar(T, beams=1, columns=64, fov=(-30.0, -30.0))
    assert len(low) == 64


def test_lidar_sees_the_same_geometry_as_a_tilted_sensor(world):
    """Culling by azimuth must not drop hits for a sensor that is not level."""
    drive = Drive(world, 20)
    T = drive.pose(8) @ lidar_transform()
    tilt = np.array(
        [[np.cos(0.3), 0, np.sin(0.3), 0], [0, 1, 0, 0], [-np.sin(0.3), 0, np.cos(0.3), 0], [0, 0, 0, 1]]
    )
    Tt = T @ tilt
    pts = world.lidar(Tt, beams=8, columns=256)
    p_map = pts[:, :3].astype(np.float64) @ Tt[:3, :3].T + Tt[:3, 3]
    assert_on_surfaces_and_free_before(world, Tt[:3, 3], p_map[::5], tol=5e-3)


def test_building_in_front_hides_paint(world):
    """Occlusion: a box between the camera and painted lines replaces them, in colour and depth."""
    drive = Drive(world, 30)
    cam = rig_cameras("front", 160, 90)[0]
    # find a frame whose front view shows paint
    for k in range(0, 30, 3):
        T = drive.pose(k) @ cam.T_map_cam
        camera = cam.with_pose(T)
        rgb, depth = world.render(camera)
        p = camera.backproject(np.nan_to_num(depth, nan=0.0).astype(np.float64))
        labels = world.ground_label(p[..., :2].reshape(-1, 2)).reshape(depth.shape)
        paint = (
            ((labels == PAINT_WHITE) | (labels == PAINT_YELLOW))
            & np.isfinite(depth)
            & (np.abs(p[..., 2]) < 1e-3)
        )
        if (paint & (depth > 7.0)).sum() > 30:
            break
    else:
        pytest.skip("no paint in view")
    assert paint_like(rgb[paint]).mean() > 0.9
    # a 2 m-deep, 3 m-tall wall across the view at 5 m in front of the camera
    base = drive.pose(k)
    centre = base[:2, 3] + base[:2, 0] * (cam.T_map_cam[0, 3] + 6.0)
    yaw = np.arctan2(base[1, 0], base[0, 0])
    occluded = world.with_objects(
        world.objects.add_box(centre[0], centre[1], 0.0, 30.0, 1.0, 30.0, yaw, LAMP_HEAD, (200, 40, 40))
    )  # plain, no windows
    rgb2, depth2 = occluded.render(camera)
    behind = paint & (depth > 7.0)
    assert np.all(depth2[behind] < 6.0) and np.all(depth2[behind] > 4.0)
    assert not paint_like(rgb2[behind]).any()  # red facade or dark window, never paint
    front = paint & (depth < 4.5)  # paint in front of the wall stays as it was
    assert np.array_equal(rgb2[front], rgb[front]) and np.array_equal(depth2[front], depth[front])
    # the original world is unchanged
    rgb3, _ = world.render(camera)
    assert np.array_equal(rgb3, rgb)


def test_ground_shadows_are_where_the_sun_is_blocked(world):
    """Texels flagged as shadow see an object towards the sun; sunlit texels see open sky."""
    rng = np.random.default_rng(1)
    b = world.objects.boxes
    pts = []
    for i in rng.choice(len(b), 5, replace=False):  # around some buildings, shadows and sun alike
        pts.append(np.c_[b.cx[i] + rng.uniform(-25, 25, 50), b.cy[i] + rng.uniform(-25, 25, 50)])
    pts = np.concatenate(pts)
    pts = pts[sdf_all(world, np.c_[pts, np.full(len(pts), 0.5)]) > 0.05]  # not inside an object
    flag = (world.ground.lookup(pts) & SHADOW) != 0
    for dx, dy in ((0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)):  # away from shadow edges
        same = ((world.ground.lookup(pts + [dx, dy]) & SHADOW) != 0) == flag
        pts, flag = pts[same], flag[same]
    assert flag.sum() > 20 and (~flag).sum() > 20
    sun = world.sun.astype(np.float32)[None, None]
    blocked = []
    for x, y in pts:  # the whole ray towards the sun, against every primitive whose box it may meet
        top = np.array([x, y, 0.0]) + world.sun * (40.0 / world.sun[2])  # objects are < 40 m tall
        lo, hi = np.minimum(top, [x, y, 0]), np.maximum(top, [x, y, 0])
        regions = [
            (k, int(i), 0, 1, 0, 1)
            for k, prims in ((R.BOX, b), (R.CYL, world.objects.cylinders), (R.ELL, world.objects.ellipsoids))
            for i in near(prims, lo, hi)
        ]
        blocked.append(R.cast(world.objects, np.array([x, y, 1e-3]), sun, regions, 1e4).kind[0, 0] != R.NONE)
    blocked = np.array(blocked)
    assert np.array_equal(blocked, flag), f"{np.sum(blocked != flag)} of {len(flag)} texels disagree"


@pytest.mark.parametrize("seed", range(6))
def test_route_stays_on_the_road_and_is_smooth(seed):
    drive = Drive.make(seed, 150, rate_hz=5.0, size=(32, 24))
    world = drive.world
    road = prep(world.net.drivable.buffer(-1.0))  # the vehicle (2 m wide) stays inside the curbs
    poses = np.array([drive.pose(i) for i in range(len(drive))])
    assert all(road.contains(Point(p)) for p in poses[:, :2, 3])
    assert np.allclose(poses[:, 2, 3], 0) and np.allclose(poses[:, 2, 2], 1)  # level, on the ground
    step = np.linalg.norm(np.diff(poses[:, :2, 3], axis=0), axis=1)
    assert np.allclose(step, 8.0 / 5.0, rtol=0.05)  # constant speed
    yaw = np.unwrap(np.arctan2(poses[:, 1, 0], poses[:, 0, 0]))
    rate = np.diff(yaw) * 5.0
    assert np.abs(rate).max() < 0.3  # curvature ≤ 1/45 m⁻¹ (+ lane changes)
    assert np.abs(np.diff(rate)).max() < 0.06  # no heading jerks (a kink reads ≥ 0.3)
    # no object on the road or sidewalk (lamps and trees stand beside the curb)
    o = world.objects
    xy = np.concatenate(
        [np.c_[o.boxes.cx, o.boxes.cy][o.boxes.z0 == 0], np.c_[o.cylinders.cx, o.cylinders.cy]]
    )
    assert not any(world.net.drivable.contains(Point(p)) for p in xy)


def test_bad_parameters_raise():
    with pytest.raises(WorldError):
        World.generate(0, length=-5)
    w = World.generate(1, 100.0)
    with pytest.raises(WorldError):
        Drive(w, 0)
    with pytest.raises(WorldError):
        Drive(w, 100_000)  # route too short
    with pytest.raises(WorldError):
        w.lidar(np.eye(4), beams=0)


def test_rendering_in_bands_gives_the_same_pixels(world, monkeypatch):
    from gs_mapping.world import world as world_module

    drive = Drive(world, 10, size=(120, 70))
    cam = drive.cameras[0].with_pose(drive.pose(4) @ drive.cameras[0].T_map_cam)
    rgb, depth = world.render(cam)
    monkeypatch.setattr(world_module, "BAND_RAYS", 120 * 9)  # 8 bands, the last one partial
    rgb2, depth2 = world.render(cam)
    assert np.array_equal(rgb, rgb2) and np.array_equal(depth, depth2, equal_nan=True)


def test_supersampling_smooths_colour_and_keeps_exact_depth(world):
    drive = Drive(world, 10, size=(120, 70))
    cam = drive.cameras[0].with_pose(drive.pose(4) @ drive.cameras[0].T_map_cam)
    rgb1, depth1 = world.render(cam)
    rgb2, depth2 = world.render(cam, supersample=2)
    rgb3, depth3 = world.render(cam, supersample=3)
    assert np.array_equal(depth1, depth2, equal_nan=True) and np.array_equal(depth1, depth3, equal_nan=True)
    diff = np.abs(rgb3.astype(int) - rgb1.astype(int))
    assert diff.mean() < 12  # the same picture …

    # … with fewer hard steps between neighbouring pixels (anti-aliased edges)
    def steps(img):
        return np.abs(np.diff(img.astype(int), axis=1)).sum()

    assert steps(rgb3) < steps(rgb1)
    with pytest.raises(WorldError):
        world.render(cam, supersample=0)
