"""Deskewing LiDAR clouds by their points' own times (mapping/deskew.py), against hand geometry.

A robot drives an arc (3 m/s, turning 0.8 rad/s) past a slanted wall; its LiDAR, mounted turned
90 deg on the roof, measures each point of a 100 ms scan at its own time. The world points are made
by hand from the camera: pixel (u, v) at depth ``_depth_truth`` in the colour camera at the colour
stamp, moved into the LiDAR's frame by the robot's pose (the arc's formula, not TF) when that point
was measured. Placed by its own time, every point must land back on its pixel at its depth; posed
at the cloud's stamp (deskewing off) they miss by up to ~0.3 m. Each driver's per-point time is
written as the driver writes it (read in its source: ouster-ros ``t`` uint32 ns after the stamp,
the scan's first column; velodyne ``time`` float32 s, the stamp its last packet's by default;
Hesai and RoboSense ``timestamp`` float64 absolute s, the stamp the first point's; livox_ros_driver2
``timestamp`` float64 absolute ns, the stamp the first point's), in the layouts
test_outside_recordings9 holds for each driver.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402
import test_outside_recordings9 as r9  # noqa: E402

T0, DT, W, H, FX, CX, CY = rb.T0, rb.DT, rb.W, rb.H, rb.FX, rb.K[2], rb.K[5]
TOPIC = "/lidar/points"
SPEED, YAW_RATE = 3.0, 0.8  # m/s along the robot's x, rad/s about z (a left turn)
LIDAR_AT, LIDAR_YAW = (0.3, 0.0, 0.5), 90.0  # base_link -> lidar
TF_STEP = 5_000_000  # odometry at 200 Hz
SCAN_NS = 100_000_000  # one turn at 10 Hz


# -- the robot, by hand -----------------------------------------------------------------------------
def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _T(R, t):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R, t
    return out


def _base(ns, still=(None, None)):
    """T_map_base_link at ``ns``: an arc from the origin at T0 (x forward, turning left); the robot
    stands still before ``still[0]`` and after ``still[1]`` (ns; None: it never does)."""
    lo, hi = still
    ns = max(ns, lo) if lo is not None else ns
    ns = min(ns, hi) if hi is not None else ns
    th = YAW_RATE * (ns - T0) / 1e9
    r = SPEED / YAW_RATE
    return _T(_rz(th), [r * np.sin(th), r * (1 - np.cos(th)), 0.0])


BASE_LIDAR = _T(_rz(np.radians(LIDAR_YAW)), LIDAR_AT)
# camera_link at CAM, the optical frame's axes in it: x right = -y, y down = -z, z forward = x
BASE_CAM = _T(np.eye(3), r9.CAM) @ _T(np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]), [0, 0, 0])


def _depth_truth():
    """The camera's depth of the slanted wall at each colour stamp: 2 m, farther to the right/down."""
    v, u = np.mgrid[0:H, 0:W]
    return 2.0 + 0.02 * u + 0.01 * v


def _points(color_ns, taus, still=(None, None), base_lidar=BASE_LIDAR):
    """(H, W, 3) points in the LiDAR's frame (mounted at ``base_lidar``): pixel (u, v)'s world point
    (at the wall's depth in the camera at ``color_ns``) as the LiDAR saw it at ``taus[v, u]`` (ns)."""
    z = _depth_truth()
    v, u = np.mgrid[0:H, 0:W]
    cam = np.stack([(u - CX) / FX * z, (v - CY) / FX * z, z], -1)
    T_map_cam = _base(color_ns, still) @ BASE_CAM
    world = cam @ T_map_cam[:3, :3].T + T_map_cam[:3, 3]
    out = np.empty_like(world)
    for tau in np.unique(taus):
        m = taus == tau
        T_lidar_map = np.linalg.inv(_base(int(tau), still) @ base_lidar)
        out[m] = world[m] @ T_lidar_map[:3, :3].T + T_lidar_map[:3, 3]
    return out


def _project(p_lidar, pose_ns, color_ns):
    """The camera's nearest-point depth image of LiDAR points posed at ``pose_ns`` (hand pinhole)."""
    T = np.linalg.inv(_base(color_ns) @ BASE_CAM) @ _base(pose_ns) @ BASE_LIDAR
    q = p_lidar.reshape(-1, 3).astype(np.float32).astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    u = np.rint(FX * q[:, 0] / q[:, 2] + CX).astype(int)
    v = np.rint(FX * q[:, 1] / q[:, 2] + CY).astype(int)
    ok = (q[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    out = np.full((H, W), np.inf)
    np.minimum.at(out, (v[ok], u[ok]), q[ok, 2])
    out[np.isinf(out)] = 0.0
    return out


# -- each driver's scan ----------------------------------------------------------------------------
def _layout(spec, step):
    return r9._layout(spec, step)


GENERIC_OFFSET = _layout([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("offset_time", 12, "u4")], 16)
GENERIC_TIME = _layout([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("time", 16, "f8")], 24)
XYZI = _layout([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "f4")], 16)

# kind: (layout, time field, header stamp - colour stamp, first point's time - header stamp) (ns)
DRIVERS = {
    "ouster": (r9.OUSTER, "t", -10_000_000, 0),  # the stamp is the scan's first column
    "velodyne": (r9.VELODYNE, "time", 15_000_000, -SCAN_NS),  # ... its last packet (the default)
    "hesai": (r9.HESAI, "timestamp", -5_000_000, 0),  # frame_start_timestamp
    "robosense": (r9.ROBOSENSE, "timestamp", 5_000_000, 0),  # ts_first_point: true (the default)
    "livox": (r9.LIVOX, "timestamp", 0, 0),  # base_time, the first point's
    "offset_time": (GENERIC_OFFSET, "offset_time", -15_000_000, 0),
    "time_f8": (GENERIC_TIME, "time", 10_000_000, -SCAN_NS // 2),  # seconds either side of the stamp
}


def _encode(kind, taus, stamp):
    """Each point's time ``taus`` (ns) as ``kind``'s driver writes it, for a cloud stamped ``stamp``."""
    rel = taus - stamp
    if kind in ("ouster", "offset_time"):
        return rel.astype(np.uint32)  # ns after the stamp
    if kind == "velodyne":
        return (rel / 1e9).astype(np.float32)  # s since the stamp
    if kind in ("hesai", "robosense"):
        return (taus // 10**9).astype(np.float64) + (taus % 10**9) / 1e9  # absolute s
    if kind == "livox":
        return taus.astype(np.float64)  # absolute ns
    return rel / 1e9  # generic float64 s since the stamp


def _scan_times(stamp, first):
    """(H, W) ns: a spinning LiDAR's columns 100/32 ms apart from ``stamp + first``, its beams in a
    column 20 us apart."""
    v, u = np.mgrid[0:H, 0:W]
    return stamp + first + u.astype(np.int64) * (SCAN_NS // W) + v.astype(np.int64) * 20_000


def _tf_msgs(start, end, still=(None, None)):
    """/tf every TF_STEP from ``start`` to ``end`` (ns): map -> odom, odom -> base_link (the arc)."""
    out = []
    for ns in range(start, end + 1, TF_STEP):
        T = _base(ns, still)
        th = np.arctan2(T[1, 0], T[0, 0])
        q = (0.0, 0.0, float(np.sin(th / 2)), float(np.cos(th / 2)))
        tfs = [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", T[:3, 3], q)]
        out.append((ns, "/tf", rb.T[rb.TFM](transforms=tfs)))
    return out


def _bag(path, cloud, tf_range=(T0 - 300_000_000, T0 + 3 * DT + 300_000_000), still=(None, None), mount=(LIDAR_AT, LIDAR_YAW)):  # fmt: skip
    """robot_bag's 4 frames (camera at cam_optical) with ``cloud(color_ns)`` -> PointCloud2 on TOPIC,
    the LiDAR mounted at ``mount`` (position, yaw in degrees), dense /tf over ``tf_range``."""
    _, q = r9._rot("z", mount[1])
    return rb.robot_bag(
        path, depth=lambda ns, _f, _d: cloud(ns), depth_topic=TOPIC, depth_type=rb.PC2, cfid="cam_optical",
        tf_static=r9._static(("base_link", "lidar", mount[0], q)), tf_dyn=lambda ns, i: [],
        extra_msgs=_tf_msgs(*tf_range, still),
    )  # fmt: skip


def _driver_cloud(kind, nan_every=0):
    """``kind``'s cloud for a colour stamp: the wall as that driver measures and stamps it. Every
    ``nan_every``-th point has a NaN time (measured at the stamp, where such a point is placed)."""
    dtype, field, stamp_shift, first = DRIVERS[kind]

    def cloud(color_ns):
        stamp = color_ns + stamp_shift
        taus = _scan_times(stamp, first)
        nan = np.zeros((H, W), bool)
        if nan_every:
            nan.reshape(-1)[::nan_every] = True
            taus = np.where(nan, stamp, taus)
        t = _encode(kind, taus, stamp)
        if nan_every:
            t = np.where(nan, np.nan, t)
        return r9._cloud(stamp, "lidar", dtype, _points(color_ns, taus), {field: t})

    return cloud


def _frames(bag, deskew=True, **topics):
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig

    t = TopicsConfig(color="/camera/color/image_raw", camera_info="/camera/color/camera_info", **topics)
    return list(read_frames(bag, t, cloud_topic=TOPIC, deskew=deskew))


def _assert_on_the_wall(frames, atol=5e-3):
    """Every pixel holds its own point at the wall's depth (half a 1.5625 ms bucket of motion: under
    3 mm here)."""
    assert len(frames) == 4
    want = _depth_truth()
    for f in frames:
        assert (f.depth > 0).all(), f"frame {f.index}: {int((f.depth == 0).sum())} pixels lost their point"
        np.testing.assert_allclose(f.depth, want, atol=atol, err_msg=f"frame {f.index}")


# -- the bag path --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_each_drivers_points_land_where_they_were_measured_from_a_moving_turning_robot(kind, tmp_path):
    """Each driver's time field (type, unit, reference) read as that driver writes it: a unit or
    reference misread (ns as s, absolute as relative, the stamp taken as the scan's start when it
    is its end) places the points up to 0.3 m off and off their pixels."""
    frames = _frames(_bag(tmp_path / "b", _driver_cloud(kind)))
    _assert_on_the_wall(frames)


def test_points_with_no_time_are_posed_at_the_stamp(tmp_path):
    """velodyne's float32 ``time`` NaN on every third point: those are placed by the pose at the
    cloud's stamp (here they were measured then), the others by their own times."""
    frames = _frames(_bag(tmp_path / "b", _driver_cloud("velodyne", nan_every=3)))
    _assert_on_the_wall(frames)


def test_no_return_zeros_are_still_dropped_not_moved(tmp_path):
    """Ouster's x = y = z = 0 for no return (every fourth column here), with ``t`` set as the driver
    sets it: no measurement, left at the LiDAR's origin for cloud_to_depth to drop. Moved by the
    sensor's motion they would be points ~0.8 m before the camera, the LiDAR 0.8 m ahead of it (as
    in test_outside_recordings9's zero test), covering the wall's pixels or the empty ones."""
    mount = ((r9.CAM[0] + 0.8, 0.0, r9.CAM[2]), 0.0)
    base_lidar = _T(np.eye(3), mount[0])
    gone = np.zeros((H, W), bool)
    gone[:, ::4] = True

    def cloud(color_ns):
        stamp = color_ns + DRIVERS["ouster"][2]
        taus = _scan_times(stamp, 0)
        pts = np.where(gone[..., None], 0.0, _points(color_ns, taus, base_lidar=base_lidar))
        return r9._cloud(stamp, "lidar", r9.OUSTER, pts, {"t": _encode("ouster", taus, stamp)}, dense=True)

    frames = _frames(_bag(tmp_path / "b", cloud, mount=mount))
    assert len(frames) == 4
    for f in frames:
        assert not f.depth[gone].any(), f"frame {f.index}: {f.depth[gone][f.depth[gone] > 0]}"
        np.testing.assert_allclose(f.depth[~gone], _depth_truth()[~gone], atol=5e-3)


def test_switch_off_and_clouds_without_times_give_the_clouds_posed_at_their_stamps(tmp_path):
    """``mapper.deskew`` false restores the pose at the header stamp, as the mapper did before:
    the depth is byte for byte that of the same points in a cloud with no time field (deskewing on),
    and both are the hand projection of the points posed at the stamp, which misses the wall."""
    timed = _bag(tmp_path / "timed", _driver_cloud("ouster"))

    def untimed(color_ns):
        stamp = color_ns + DRIVERS["ouster"][2]
        return r9._cloud(stamp, "lidar", XYZI, _points(color_ns, _scan_times(stamp, 0)))

    off = _frames(timed, deskew=False)
    plain = _frames(_bag(tmp_path / "plain", untimed))
    assert len(off) == len(plain) == 4
    for a, b in zip(off, plain, strict=True):
        assert a.depth.tobytes() == b.depth.tobytes()
        stamp = a.stamp_ns + DRIVERS["ouster"][2]
        want = _project(_points(a.stamp_ns, _scan_times(stamp, 0)), stamp, a.stamp_ns)
        np.testing.assert_allclose(a.depth, want, atol=1e-4)
        assert np.abs(a.depth - _depth_truth())[a.depth > 0].max() > 0.1  # (the skew deskewing removes)


def test_times_outside_tf_are_clamped_with_one_warning(tmp_path, caplog):
    """TF from 20 ms before the first colour image to 20 ms after the last, 10 ms tolerance; the
    scans reach 50 ms either side of their stamps: the first scan starts and the last ends where TF
    has no pose. Both are kept, their points posed at the nearest time TF has (the robot stood still
    there, so that is where they were: the wall), one warning naming the cloud topic."""
    start, end = T0 - 20_000_000, T0 + 3 * DT + 20_000_000
    still = (start, end)

    def cloud(color_ns):
        taus = _scan_times(color_ns, -SCAN_NS // 2)
        return r9._cloud(color_ns, "lidar", GENERIC_TIME, _points(color_ns, taus, still), {"time": _encode("time_f8", taus, color_ns)})  # fmt: skip

    bag = _bag(tmp_path / "b", cloud, tf_range=(start, end), still=still)
    with caplog.at_level(logging.WARNING):
        frames = _frames(bag, tf_tolerance_s=0.01)
    _assert_on_the_wall(frames)
    said = [r.getMessage() for r in caplog.records if "outside TF" in r.getMessage()]
    assert len(said) == 1 and TOPIC in said[0], said


@pytest.mark.parametrize("deskew", [True, False])
def test_map_command_deskews_unless_its_parameter_file_says_deskew_false(deskew, tmp_path, monkeypatch):
    """`gs-mapping map --cloud-topic` (the bag path the mapper is fed by): the depth of each frame
    given to the mapper is the wall with ``mapper.deskew`` true (the default), the clouds posed at
    their stamps (the hand projection) with ``deskew: false`` in --config's file."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main
    from gs_mapping.mapping.mapper import IncrementalMapper

    bag = _bag(tmp_path / "b", _driver_cloud("ouster"))
    params = tmp_path / "params.yaml"
    params.write_text(  # (few optimiser iterations: what is checked is the depth fed to the mapper)
        "/**:\n  ros__parameters:\n    mapper:\n      optim: {iterations: 1, first_iterations: 1, "
        f"refine_iterations: 0}}\n      deskew: {str(deskew).lower()}\n"
    )
    fed = []
    add = IncrementalMapper.add_frame
    monkeypatch.setattr(IncrementalMapper, "add_frame", lambda m, f: fed.append(f) or add(m, f))
    args = ["map", str(bag), "--out", str(tmp_path / "out"), "--cloud-topic", TOPIC, "--device", "cpu"]
    assert main([*args, "--holdout-every", "0", "--config", str(params), "--no-progress"]) == 0
    if deskew:
        _assert_on_the_wall(fed)
        return
    assert len(fed) == 4
    for f in fed:
        stamp = f.stamp_ns + DRIVERS["ouster"][2]
        want = _project(_points(f.stamp_ns, _scan_times(stamp, 0)), stamp, f.stamp_ns)
        np.testing.assert_allclose(f.depth, want, atol=1e-4)


# -- the live path (mapper_node) -----------------------------------------------------------------------
def _node(deskew=True):
    """mapper_node on the replay bus, LiDAR on TOPIC, robot_bag's camera on the default topics, the
    static transforms sent; its frames' depth images are kept in ``node.depths``."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, transforms_to_tf_message
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper"].deskew = deskew
    cfg["mapper"].optim.iterations = cfg["mapper"].optim.first_iterations = 1  # (the depth is checked)
    cfg["mapper_node"].cloud_topic = TOPIC
    node = MapperNode(bus.context("mapper_node"), cfg)
    node.depths = []
    add = node.mapper.add_frame
    node.mapper.add_frame = lambda frame: node.depths.append(frame.depth.copy()) or add(frame)
    t = cfg["mapper"].topics
    K = np.array(rb.K).reshape(3, 3)
    bus.inject(t.camera_info, intrinsics_to_camera_info(CameraIntrinsics(W, H, K, frame_id="cam_optical"), bus.factory, stamp_ns=T0), T0 - DT)  # fmt: skip
    static = [
        TransformStamped("base_link", "cam_optical", T0, Transform.from_matrix(BASE_CAM)),
        TransformStamped("base_link", "lidar", T0, Transform.from_matrix(BASE_LIDAR)),
    ]
    bus.inject(t.tf_static, transforms_to_tf_message(static, bus.factory), T0 - DT)
    return bus, node, t


def _send_tf(bus, t, start, end):
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message

    for ns in range(start, end + 1, TF_STEP):
        tfs = [
            TransformStamped("map", "odom", ns, Transform()),
            TransformStamped("odom", "base_link", ns, Transform.from_matrix(_base(ns))),
        ]
        bus.inject(t.tf, transforms_to_tf_message(tfs, bus.factory), ns)


def _send_frame(bus, t):
    from gs_mapping.messages import array_to_pointcloud2, numpy_to_image

    stamp = T0 + DRIVERS["ouster"][2]
    taus = _scan_times(stamp, 0)
    rec = np.zeros((H, W), r9.OUSTER)
    for k, c in enumerate("xyz"):
        rec[c] = _points(T0, taus)[..., k]
    rec["t"] = _encode("ouster", taus, stamp)
    bus.inject(t.color, numpy_to_image(rb._scene(0)[0], "rgb8", T0, "cam_optical", bus.factory), T0)
    bus.inject(TOPIC, array_to_pointcloud2(rec, stamp, "lidar", factory=bus.factory), T0)


def test_mapper_node_waits_for_the_tf_after_the_scan_and_deskews():
    """Live: TF has reached the colour stamp (+20 ms) but not the scan's end (+90 ms): the node
    waits for it (tf_wait_s), as for a colour pose, then places each point by its time."""
    pytest.importorskip("torch")
    bus, node, t = _node()
    _send_tf(bus, t, T0 - 300_000_000, T0 + 20_000_000)
    _send_frame(bus, t)
    assert node.depths == [] and node.diag.values.get("frames_waiting_for_tf") == 1
    _send_tf(bus, t, T0 + 25_000_000, T0 + 200_000_000)
    assert len(node.depths) == 1
    np.testing.assert_allclose(node.depths[0], _depth_truth(), atol=5e-3)


def test_mapper_node_with_deskew_off_poses_the_cloud_at_its_stamp():
    """``mapper.deskew: false`` on the node: the frame is made at once, the cloud posed at its
    stamp (the hand projection), as before deskewing existed."""
    pytest.importorskip("torch")
    bus, node, t = _node(deskew=False)
    _send_tf(bus, t, T0 - 300_000_000, T0 + 20_000_000)
    _send_frame(bus, t)
    assert len(node.depths) == 1
    stamp = T0 + DRIVERS["ouster"][2]
    want = _project(_points(T0, _scan_times(stamp, 0)), stamp, T0)
    np.testing.assert_allclose(node.depths[0], want, atol=1e-4)


# -- the pieces, by hand ---------------------------------------------------------------------------
def test_deskew_buckets_a_full_ouster_scan_into_at_most_64_lookups():
    """A 128 x 1024 scan (131072 points, 100 ms, 5 to 36 m away): TF is asked at most 64 times, and
    each point is within half a bucket's motion (100/64/2 ms at 3 m/s, and 0.8 rad/s at its distance
    from the robot's axis: 2 mm near, 2 cm at 36 m) of where it was, where the scan moved them 0.3 m
    and more."""
    from gs_mapping.mapping.deskew import MAX_BUCKETS, Deskew

    rng = np.random.default_rng(3)
    n = 128 * 1024
    dt = np.repeat(np.arange(1024) * (SCAN_NS / 1024), 128) / 1e9
    world = np.column_stack([rng.uniform(5, 30, n), rng.uniform(-20, 20, n), rng.uniform(-2, 5, n)])
    asked = []

    def pose_at(ns):
        asked.append(ns)
        return _base(ns) @ BASE_LIDAR

    taus = T0 + np.rint(dt * 1e9).astype(np.int64)
    p = np.empty_like(world)
    for tau in np.unique(taus):  # each point in the LiDAR's frame when it was measured
        m = taus == tau
        T = np.linalg.inv(pose_at(int(tau)))
        p[m] = world[m] @ T[:3, :3].T + T[:3, 3]
    asked.clear()
    T_ref = _base(T0) @ BASE_LIDAR
    out = Deskew(TOPIC)(p, dt, T0, T_ref, pose_at)
    assert len(asked) <= MAX_BUCKETS
    want = world @ np.linalg.inv(T_ref)[:3, :3].T + np.linalg.inv(T_ref)[:3, 3]
    err = np.linalg.norm(out - want, axis=1)
    half = SCAN_NS / MAX_BUCKETS / 2 / 1e9
    bound = half * (SPEED + YAW_RATE * (np.linalg.norm(p, axis=1) + np.linalg.norm(LIDAR_AT)))
    assert (err <= bound).all(), float((err / bound).max())
    assert np.linalg.norm(p - want, axis=1).max() > 0.3  # (what was skewed)


@pytest.mark.parametrize(
    "values, stamp_ns, want",
    [
        (np.array([0, 50_000_000], np.uint32), T0, [0.0, 0.05]),  # ouster t: ns after the stamp
        (np.array([-0.1, 0.0], np.float32), T0, [-0.1, 0.0]),  # velodyne time: s since the stamp
        (np.array([1.7e9, 1.7e9 + 0.08]), T0, [0.0, 0.08]),  # Hesai, RoboSense: absolute s
        (np.array([1.7e18, 1.7e18 + 8e7]), T0, [0.0, 0.08]),  # Livox: absolute ns
        (np.array([12.3, 12.35]), 12_300_000_000, [0.0, 0.05]),  # absolute s on a simulator's clock
        (np.array([0.0, 0.05]), 12_300_000_000, [0.0, 0.05]),  # relative s on a simulator's clock
        (np.array([0.0, np.nan]), T0, [0.0, np.nan]),  # no time: NaN
    ],
)
def test_time_fields_read_as_seconds_since_the_stamp(values, stamp_ns, want):
    """messages/pointcloud2.py's rule, by hand: integers are ns after the stamp, float32 seconds
    after it, float64 whichever of relative s, absolute s, absolute ns is nearest the stamp."""
    from gs_mapping.messages.pointcloud2 import seconds_since_stamp

    np.testing.assert_allclose(seconds_since_stamp(values, stamp_ns), want, atol=1e-6)
