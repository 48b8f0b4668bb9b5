"""Hostile outside review (host4) of three features merged on 2026-12-06, each checked against a
thing outside the code: hand ray casts, hand-built TF trees of real stacks, scipy's Slerp, the old
function, hand medians.

* 9e0b0c6 ``tf.is_world_frame``: a cloud in a frame the camera moves in (TF) skips the LiDAR
  hidden-return rule. Real trees (Autoware, LIO-SAM, a URDF with the camera under the LiDAR, a
  LiDAR or camera extrinsic on /tf, /tf_static logged late, leading '/', a gimbal, the MRS UAV
  System's tree rooted at the robot) through
  ``frames.depth_in_color``, the bag path's and mapper_node's one rule, against the pole scene of
  test_outside_lidar_visibility: which returns the camera cannot see is a hand ray cast there.
* 471c744 deskew between TF lookups at bucket edges, against TF's own samples interpolated by
  scipy (linear translation, ``Slerp``) and by hand.
* f55d8b8 ``quantize._cell_median`` keyed by ``code * 16 + cell``, against the function it replaced
  (6705048, copied below) and hand medians.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import test_outside_lidar_visibility as lv
from scipy.spatial.transform import Rotation, Slerp

from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.tf import MapPoses, TFBuffer

S = 10**9
LIDAR = (0.0, -0.4, 0.3)  # the pole scene's LiDAR: 0.4 m right of and 0.3 m above the camera


# ---------------------------------------------------------------------------------------------
# 9e0b0c6: world frames told by TF
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _scene():
    """The pole scene (a 0.2 m pole 6 m ahead of a wall, ground below; body axes x forward, camera
    at the body origin): the cloud in the LiDAR's frame, in the body frame, the returns in the
    camera's optical frame, and which of them the camera cannot see (hand ray cast from the
    camera: something nearer on its ray), those in the image only."""
    cloud, P, _, q, scene = lv._pole_scene(LIDAR)
    inside, _, _ = lv._in_image(q)
    rays = P / np.linalg.norm(P, axis=1)[:, None]
    hidden, _ = lv._truth(P, q[:, 2], lv._first_hit(np.zeros(3), rays, **scene))
    return cloud, P, q, hidden & inside


def _M(xyz=(0.0, 0.0, 0.0), R=None) -> Transform:
    m = np.eye(4)
    m[:3, 3] = xyz
    if R is not None:
        m[:3, :3] = R
    return Transform.from_matrix(m)


def _tree(edges, since_ns=None) -> TFBuffer:
    """A bag's TF read whole: ``(parent, child, xyz, R, kind)`` with kind ``static`` (/tf_static),
    ``tf`` (the same value on /tf at 10 Hz for 2 s, after its /tf_static one as realsense-ros
    sends it with ``tf_publish_rate`` > 0), ``odom`` (/tf, moving: x grows 0.5 m a second) or
    ``inverse-odom`` (/tf, the inverse of an ``odom`` motion: a tree rooted at the robot)."""
    tf = TFBuffer(cache_time_s=0)
    for parent, child, xyz, R, kind in edges:
        if kind in ("static", "tf"):
            tf.add(TransformStamped(parent, child, 0, _M(xyz, R)), static=True, since_ns=since_ns)
        if kind == "tf":
            for k in range(21):
                tf.add(TransformStamped(parent, child, k * S // 10, _M(xyz, R)))
        if kind in ("odom", "inverse-odom"):
            for k in range(3):
                m = _M(np.add(xyz, (0.5 * k, 0.0, 0.0)), R).matrix()
                m = np.linalg.inv(m) if kind == "inverse-odom" else m
                tf.add(TransformStamped(parent, child, k * S, Transform.from_matrix(m)))
    return tf


def _depth(tf, cloud_frame, points, camera, map_frame="map", logged_ns=None) -> np.ndarray:
    """``frames.depth_in_color`` of a cloud stamped at 1 s, with the colour image at 1 s."""
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics

    poses = MapPoses(tf, map_frame)
    T_map_cam = poses.lookup(camera, S, logged_ns=logged_ns)
    color = CameraIntrinsics(lv.W, lv.H, lv.K, frame_id=camera)
    return depth_in_color(
        points, cloud_frame, S, color, T_map_cam, poses, cloud=True, color_stamp=S, logged_ns=logged_ns
    )


def _hidden_kept(depth) -> int:
    """How many returns the camera cannot see (hand ray cast) are in the depth image."""
    _, _, q, hidden = _scene()
    _, u, v = lv._in_image(q)
    got = depth[v[hidden].astype(int), u[hidden].astype(int)]
    return int(np.isclose(got, q[hidden, 2], atol=1e-4).sum())


def _assert_sensor_frame(depth):
    """The rule ran: no return the camera cannot see (hand ray cast) is depth."""
    assert _scene()[3].sum() > 300  # (the scene hides what it says)
    assert _hidden_kept(depth) == 0, f"{_hidden_kept(depth)} returns the camera cannot see kept"


def _assert_world_frame(depth):
    """The rule did not run: the nearest return of each pixel, by hand."""
    np.testing.assert_allclose(depth, lv._nearest_per_pixel(_scene()[2]), rtol=1e-6, atol=1e-6)


OPT = lv.R_BODY_OPT  # optical axes in the body frame


def _autoware(slash: str = ""):
    """Autoware's tree: ``map -> base_link`` (/tf, the EKF), the sensor kit, ``velodyne_top`` and
    ``camera0/camera_optical_link`` from robot_state_publisher (/tf_static)."""
    kit = (0.9, 0.0, 2.0)
    return _tree(
        [
            (f"{slash}map", f"{slash}base_link", (0.0, 0.0, 0.0), None, "odom"),
            ("base_link", "sensor_kit_base_link", kit, None, "static"),
            ("sensor_kit_base_link", "camera0/camera_link", (0.1, 0.0, 0.0), None, "static"),
            ("camera0/camera_link", "camera0/camera_optical_link", (0, 0, 0), OPT, "static"),
            ("sensor_kit_base_link", "velodyne_top_base_link", np.add((0.1, 0, 0), LIDAR), None, "static"),
            ("velodyne_top_base_link", "velodyne_top", (0.0, 0.0, 0.0), None, "static"),
        ]
    ), np.add(kit, (0.1 + 0.5, 0.0, 0.0))  # (the camera's origin in map at 1 s)


@pytest.mark.parametrize("slash", ["", "/"], ids=["plain", "leading-slash"])
def test_autoware_velodyne_top_is_the_sensor_and_map_is_a_world_frame(slash):
    """Autoware (map / base_link / sensor_kit_base_link / velodyne_top): a cloud in velodyne_top
    loses the returns the camera cannot see; the same returns published in ``map`` (1.5 m from the
    camera: the first metres of a drive) keep every one. Frame ids with a leading '/' (a ROS 1
    bag) mean the same frames."""
    cloud, P, _, _ = _scene()
    tf, cam_in_map = _autoware(slash)
    camera = f"{slash}camera0/camera_optical_link"
    _assert_sensor_frame(_depth(tf, f"{slash}velodyne_top", cloud, camera))
    _assert_world_frame(_depth(tf, f"{slash}map", P + cam_in_map, camera))


def test_lio_sam_odom_and_map_are_world_frames_its_lidar_link_is_not():
    """LIO-SAM: ``map -> odom`` an identity it re-sends on /tf with every IMU odometry (its
    TransformFusion's tfMap2Odom), ``odom -> base_link`` moving, LiDAR and camera on base_link
    (/tf_static). cloud_registered in ``odom`` and a map cloud in ``map`` keep every return; the
    deskewed scan in ``lidar_link`` loses the hidden ones."""
    cloud, P, _, _ = _scene()
    tf = _tree(
        [
            ("map", "odom", (0.0, 0.0, 0.0), None, "tf"),
            ("odom", "base_link", (0.0, 0.0, 0.0), None, "odom"),
            ("base_link", "lidar_link", LIDAR, None, "static"),
            ("base_link", "camera_link", (0.0, 0.0, 0.0), None, "static"),
            ("camera_link", "camera_optical", (0, 0, 0), OPT, "static"),
        ]
    )
    _assert_sensor_frame(_depth(tf, "lidar_link", cloud, "camera_optical"))
    _assert_world_frame(_depth(tf, "odom", P + (0.5, 0.0, 0.0), "camera_optical"))
    _assert_world_frame(_depth(tf, "map", P + (0.5, 0.0, 0.0), "camera_optical"))


@pytest.mark.parametrize(
    "lidar_kind, camera_under_lidar",
    [("static", True), ("tf", False)],
    ids=["urdf-camera-under-lidar", "lidar-extrinsic-on-tf"],
)
def test_a_lidar_rigid_on_the_rig_is_the_sensor(lidar_kind, camera_under_lidar):
    """A URDF with the camera mounted under the LiDAR (``lidar -> camera_link``, static), and a
    LiDAR whose extrinsic a calibration node sends on /tf (constant): either way the cloud's frame
    is the sensor's, and what the camera cannot see goes."""
    cloud, _, _, _ = _scene()
    edges = [("odom", "base_link", (0.0, 0.0, 0.0), None, "odom")]
    if camera_under_lidar:
        edges += [
            ("base_link", "lidar", LIDAR, None, lidar_kind),
            ("lidar", "camera_link", np.negative(LIDAR), None, "static"),
        ]
    else:
        edges += [
            ("base_link", "lidar", LIDAR, None, lidar_kind),
            ("base_link", "camera_link", (0.0, 0.0, 0.0), None, "static"),
        ]
    edges.append(("camera_link", "camera_optical", (0, 0, 0), OPT, "static"))
    _assert_sensor_frame(_depth(_tree(edges), "lidar", cloud, "camera_optical"))


def test_a_bags_tf_static_logged_after_its_first_clouds_still_tells_the_sensor():
    """/tf_static logged 5 s after the cloud (the static publisher started late; the bag read
    whole, its frames posed with their log time): the rig is still static, the rule still runs."""
    cloud, _, _, _ = _scene()
    tf = _tree(
        [
            ("base_link", "lidar", LIDAR, None, "static"),
            ("base_link", "camera_link", (0.0, 0.0, 0.0), None, "static"),
            ("camera_link", "camera_optical", (0, 0, 0), OPT, "static"),
        ],
        since_ns=6 * S,
    )
    for k in range(3):
        tf.add(TransformStamped("odom", "base_link", k * S, _M((0.5 * k, 0.0, 0.0))))
    _assert_sensor_frame(_depth(tf, "lidar", cloud, "camera_optical", logged_ns=1 * S))


@pytest.mark.parametrize("where", ["realsense-tf_publish_rate", "ros1-lidar-to-camera-on-tf"])
def test_a_camera_whose_fixed_extrinsic_is_on_tf_still_has_its_lidar_as_the_sensor(where):
    """realsense-ros (tfs.cpp ``publishDynamicTransforms``) re-sends its /tf_static transforms on
    /tf at ``tf_publish_rate`` Hz when set (its examples/launch_params_from_file sets 1.0); ROS 1
    bags carry ``tf/static_transform_publisher``'s transforms on /tf. Neither moves the camera on
    the rig: the cloud in the LiDAR's frame must lose the returns the camera cannot see, as it
    did before 9e0b0c6 (323 of 510 were kept until the rule read motion from the values)."""
    cloud, _, _, _ = _scene()
    if where == "realsense-tf_publish_rate":
        edges = [
            ("odom", "base_link", (0.0, 0.0, 0.0), None, "odom"),
            ("base_link", "lidar", LIDAR, None, "static"),
            ("base_link", "camera_link", (0.0, 0.0, 0.0), None, "static"),
            ("camera_link", "camera_color_optical_frame", (0, 0, 0), OPT, "tf"),
        ]
    else:
        edges = [
            ("odom", "lidar", LIDAR, None, "odom"),
            ("lidar", "camera_link", np.negative(LIDAR), None, "tf"),
            ("camera_link", "camera_color_optical_frame", (0, 0, 0), OPT, "static"),
        ]
    _assert_sensor_frame(_depth(_tree(edges), "lidar", cloud, "camera_color_optical_frame"))


def test_a_gimbal_camera_over_a_lidar_on_the_body_still_has_the_lidar_as_the_sensor():
    """A drone's gimbal camera (``base_link -> gimbal`` on /tf, the gimbal's joint) and a LiDAR
    fixed on the body, the body moving in odom: the LiDAR's frame is the sensor's. The gimbal is
    at rest here, so the geometry is the pole scene's: the hidden returns must go."""
    cloud, _, _, _ = _scene()
    edges = [
        ("odom", "base_link", (0.0, 0.0, 0.0), None, "odom"),
        ("base_link", "lidar", LIDAR, None, "static"),
        ("base_link", "gimbal", (0.0, 0.0, 0.0), None, "tf"),
        ("gimbal", "camera_link", (0.0, 0.0, 0.0), None, "static"),
        ("camera_link", "camera_optical", (0, 0, 0), OPT, "static"),
    ]
    _assert_sensor_frame(_depth(_tree(edges), "lidar", cloud, "camera_optical"))


def test_a_world_frame_of_a_tree_rooted_at_the_robot_keeps_every_return():
    """The MRS UAV System roots its TF tree at ``uav1/fcu`` (the body) and publishes its
    world/odometry frames as children of it (docs 'Frames of reference': 'having the
    <uav_name>/fcu coordinate frame as the root node of the tree'). A cloud registered in
    ``uav1/world_origin`` 3 m from the camera (just after take-off) is a world frame: the camera
    moves in it; every return stays, as FAST-LIO's camera_init keeps them."""
    _, P, _, _ = _scene()
    tf = _tree(
        [
            ("uav1/fcu", "uav1/world_origin", (2.5, 0.0, 1.0), None, "inverse-odom"),
            ("uav1/fcu", "uav1/os_sensor", LIDAR, None, "static"),
            ("uav1/fcu", "uav1/rgbd/color_optical", (0, 0, 0), OPT, "static"),
        ]
    )
    in_world = P + (3.0, 0.0, 1.0)  # (the body is 2.5 + 0.5 m along x and 1 m up at 1 s)
    _assert_world_frame(
        _depth(tf, "uav1/world_origin", in_world, "uav1/rgbd/color_optical", "uav1/world_origin")
    )


# ---------------------------------------------------------------------------------------------
# 471c744: deskew between TF lookups at bucket edges
# ---------------------------------------------------------------------------------------------

T0 = 1_700_000_000 * S
# base_link -> lidar (static): a roof LiDAR, turned 0.3 rad in yaw and tilted a little
LEVER = Transform(np.array([0.4, 0.1, 1.2]), Rotation.from_euler("xyz", [0.02, -0.05, 0.3]).as_quat())


def _odom_samples(hz: float, t0: float, t1: float):
    """A car's ``odom -> base_link`` samples on /tf: 10 m/s on a 10 m radius, nodding in pitch."""
    t = np.arange(round(t0 * hz), round(t1 * hz) + 1) / hz
    yaw, pitch = 1.0 * t, 0.05 * np.sin(6.0 * t)
    xyz = np.column_stack([10 * np.sin(yaw), 10 * (1 - np.cos(yaw)), 0.1 * np.sin(3.0 * t)])
    return t, xyz, Rotation.from_euler("ZY", np.column_stack([yaw, pitch]))


def _tf_of(t, xyz, rot, tolerance_s=0.05) -> TFBuffer:
    tf = TFBuffer(cache_time_s=0, extrapolation_tolerance_s=tolerance_s)
    for ti, p, q in zip(t, xyz, rot.as_quat(), strict=True):
        tf.add(TransformStamped("odom", "base_link", T0 + int(round(ti * S)), Transform(p, q)))
    tf.add(TransformStamped("base_link", "lidar", 0, LEVER), static=True)
    return tf


def _scipy_pose(t_samples, xyz, rot, t):
    """T_odom_lidar at times ``t`` (N,) (N, 4, 4): TF's samples interpolated by scipy (translation
    linear, rotation Slerp), the static lever arm after; times outside take the nearest sample."""
    tc = np.clip(t, t_samples[0], t_samples[-1])
    out = np.tile(np.eye(4), (len(t), 1, 1))
    out[:, :3, :3] = Slerp(t_samples, rot)(tc).as_matrix()
    out[:, :3, 3] = np.column_stack([np.interp(tc, t_samples, xyz[:, j]) for j in range(3)])
    return out @ LEVER.matrix()


def _skewed_scan(poses, rng, n):
    """World points (N, 3) 3-40 m around, and each in the LiDAR's frame at its own pose."""
    d = rng.normal(size=(n, 3))
    world = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(3.0, 40.0, n)[:, None] + poses[:, :3, 3]
    inv = np.linalg.inv(poses)
    return world, np.einsum("nij,nj->ni", inv[:, :3, :3], world) + inv[:, :3, 3]


def _deskew(tf, p, dt, stamp_s, tf_span_s=None):
    from gs_mapping.mapping.deskew import Deskew

    stamp = T0 + int(round(stamp_s * S))
    T_stamp = tf.lookup("odom", "lidar", stamp).matrix()
    pose_at = lambda ns: tf.lookup("odom", "lidar", ns).matrix()  # noqa: E731
    return Deskew("/points")(p, dt, stamp, T_stamp, pose_at, tf_span_s=tf_span_s)


@pytest.mark.parametrize(
    "name, hz, span, stamp_at_end, dtype, within_m",
    [
        # lookups 1.6 ms apart; where one spans a TF sample, TF's own path turns there by the
        # change of its rates between samples 50 ms apart: (1.8 rad/s^2 x 41 m + 10 m/s^2) x
        # 0.05 s x 0.0016 s / 4 = 1.7 mm at most
        ("ouster-10Hz-odom-20Hz", 20.0, 0.1, False, np.float64, 2e-3),
        ("stamp-at-scan-end", 20.0, 0.1, True, np.float64, 2e-3),
        ("float32-points-and-times", 20.0, 0.1, False, np.float32, 2e-3),
        # lookups 32 ms apart: a smooth motion departs from its interpolation between them by up
        # to (angular acceleration x range + acceleration) x width^2 / 8 = (1.8 x 41 + 10) x
        # 0.032^2 / 8 = 1.06 cm (the pitch's 1.8 rad/s^2, the turn's 10 m/s^2)
        ("livox-2s-odom-50Hz", 50.0, 2.0, False, np.float64, 1.5e-2),
    ],
)
def test_deskewed_points_land_where_tf_interpolated_by_scipy_puts_them(
    name, hz, span, stamp_at_end, dtype, within_m
):
    """A 128 x 512 scan (times in column order) or a 2 s Livox cloud (random times), posed by TF
    samples sparser than the deskew's buckets (20 Hz odometry: 50 ms apart, buckets 1.6 ms): each
    point lands where TF's own samples, interpolated by scipy, put it (within what TF's path
    departs from the interpolation between lookups, by hand below), with the stamp at the scan's
    start or its end (negative times), float32 points and times too."""
    rng = np.random.default_rng(3)
    stamp_s = 10.0
    t_s, xyz, rot = _odom_samples(hz, stamp_s - 3.0, stamp_s + 3.0)
    tf = _tf_of(t_s, xyz, rot)
    if span < 1.0:
        dt = np.repeat(np.arange(512) / 512 * span, 128)
    else:
        dt = np.sort(rng.uniform(0.0, span, 60_000))
    dt = dt - span if stamp_at_end else dt
    world, p = _skewed_scan(_scipy_pose(t_s, xyz, rot, stamp_s + dt), rng, len(dt))
    p, dt = p.astype(dtype), dt.astype(dtype)
    out = _deskew(tf, p, dt, stamp_s)
    T_stamp = _scipy_pose(t_s, xyz, rot, np.array([stamp_s]))[0]
    want = (world - T_stamp[:3, 3]) @ T_stamp[:3, :3]  # T_stamp^-1 @ world
    if dtype == np.float32:  # (what float32 itself moved: the times and points as given)
        moved = _scipy_pose(t_s, xyz, rot, stamp_s + dt.astype(np.float64))
        world = np.einsum("nij,nj->ni", moved[:, :3, :3], p.astype(np.float64)) + moved[:, :3, 3]
        want = (world - T_stamp[:3, 3]) @ T_stamp[:3, :3]
    err = np.linalg.norm(out - want, axis=1)
    assert err.max() < within_m, (name, float(err.max()))
    assert np.linalg.norm(p - want, axis=1).max() > 0.5  # (the motion skewed the scan)


def test_one_time_for_every_point_and_the_points_left_as_measured():
    """Every point measured 30 ms after the stamp: each is moved by exactly TF's motion over those
    30 ms (scipy), one pose for all. Points with a NaN or infinite time, one 5 s off (no scan's), and
    Ouster's zeros (no return) stay as they were, bit for bit."""
    rng = np.random.default_rng(5)
    t_s, xyz, rot = _odom_samples(20.0, 7.0, 13.0)
    tf = _tf_of(t_s, xyz, rot)
    n = 5000
    p = rng.normal(size=(n, 3)) * 10
    dt = np.full(n, 0.03)
    left = np.zeros(n, bool)
    left[::7] = True
    dt[::7] = np.array([np.nan, np.inf, -np.inf, 5.0] * n)[: left.sum()]
    p[3::7] = 0.0
    dt[3::7] = 0.03
    left[3::7] = True
    out = _deskew(tf, p, dt, 10.0)
    T_s, T_t = _scipy_pose(t_s, xyz, rot, np.array([10.0, 10.03]))
    move = np.linalg.inv(T_s) @ T_t
    # (0.1 mm: TF's slerp takes a normalised lerp for samples under 3.6 degrees apart, a few um off
    # scipy's Slerp at 40 m)
    np.testing.assert_allclose(out[~left], p[~left] @ move[:3, :3].T + move[:3, 3], rtol=0, atol=1e-4)
    assert np.array_equal(out[left], p[left])


@pytest.mark.parametrize("turn_deg", [90.0, 179.0, 179.99])
def test_a_turn_of_nearly_half_a_circle_within_one_bucket_is_followed_on_its_arc(turn_deg):
    """Not a vehicle's motion (179° in a millisecond), but the interpolation's edge: a scan of
    1 ms (one bucket, TF asked at its two edges) turning ``turn_deg`` at a constant rate about a
    tilted axis while moving straight: each point is where the rotation by its fraction of the
    turn puts it, by hand (scipy's rotation vector), within 1e-9 m."""
    from gs_mapping.mapping.deskew import Deskew

    axis = np.array([0.3, -0.2, 0.93])
    axis /= np.linalg.norm(axis)
    rate = np.radians(turn_deg) / 1e-3  # rad/s

    def pose_s(t):  # (seconds: at 3 rad a millisecond, a nanosecond's rounding is 30 um at 10 m)
        m = np.eye(4)
        m[:3, :3] = Rotation.from_rotvec(axis * rate * t).as_matrix()
        m[:3, 3] = [2.0 * t, -1.0 * t, 0.5 * t]
        return m

    def pose(ns):
        return pose_s((ns - T0) / 1e9)

    rng = np.random.default_rng(9)
    dt = np.sort(rng.uniform(0.0, 1e-3, 2000))
    dt[0], dt[-1] = 0.0, 1e-3
    world = rng.normal(size=(2000, 3)) * 8
    inv = np.linalg.inv(np.array([pose_s(t) for t in dt]))
    p = np.einsum("nij,nj->ni", inv[:, :3, :3], world) + inv[:, :3, 3]
    asked = []
    out = Deskew("/spin")(p, dt, T0, np.eye(4), lambda ns: asked.append(ns) or pose(ns))
    assert asked == [T0, T0 + 10**6]  # (the bucket's two edges)
    np.testing.assert_allclose(out, world, rtol=0, atol=1e-9)


def test_a_cloud_running_past_the_end_of_tf_takes_its_own_pose_then_tfs_last():
    """A 2 s Livox cloud (random times) whose odometry (100 Hz, default 0.05 s tolerance) ends 1 s
    into it: the last cloud of a bag, or a live node that stopped waiting for TF. The README: 'a
    time TF does not reach takes its nearest pose'. Points TF reaches must land within 5 mm of
    their place (the feature's own 2 mm claim, loosened), those after it at TF's last pose."""
    rng = np.random.default_rng(13)
    stamp_s = 10.0
    t_s, xyz, rot = _odom_samples(100.0, stamp_s - 1.0, stamp_s + 1.0)
    tf = _tf_of(t_s, xyz, rot)
    dt = np.sort(rng.uniform(0.0, 2.0, 40_000))
    truth = _scipy_pose(t_s, xyz, rot, stamp_s + dt)  # (times past TF: its last sample)
    world, p = _skewed_scan(truth, rng, len(dt))
    from gs_mapping.mapping.frames import _tf_span_s

    # the span TF holds, as depth_in_color finds it for the deskew, against its samples by hand
    span = _tf_span_s(tf, "odom", "lidar", T0 + int(round(stamp_s * S)), None)
    np.testing.assert_allclose(span, (t_s[0] - stamp_s, t_s[-1] - stamp_s), atol=1e-9)
    out = _deskew(tf, p, dt, stamp_s, span)
    T_stamp = _scipy_pose(t_s, xyz, rot, np.array([stamp_s]))[0]
    want = (world - T_stamp[:3, 3]) @ T_stamp[:3, :3]
    err = np.linalg.norm(out - want, axis=1)
    reached = stamp_s + dt <= t_s[-1]
    assert err[reached].max() < 5e-3, float(err[reached].max())
    assert err[~reached].max() < 5e-3, float(err[~reached].max())


# ---------------------------------------------------------------------------------------------
# f55d8b8: quantize._cell_median keyed by code * 16 + cell
# ---------------------------------------------------------------------------------------------


def _old_cell_median(codes, cells) -> float:
    """quantize._cell_median as it was at 6705048 (unique rows of (code, cell)), word for word."""
    key, count = np.unique(
        np.stack([np.asarray(codes, np.int64), np.asarray(cells, np.int64)], 1), axis=0, return_counts=True
    )
    width = key[:, 1].astype(np.float64)
    lo = key[:, 0] - width / 2
    half = count.sum() / 2
    a, b = float(lo.min()), float((lo + width).max())
    for _ in range(64):
        m = 0.5 * (a + b)
        if (count * np.clip((m - lo) / width, 0.0, 1.0)).sum() < half:
            a = m
        else:
            b = m
    return round(0.5 * (a + b) * (1 << 20)) / (1 << 20)


def test_cell_median_by_hand():
    """Medians of values spread evenly over each code's cell, by hand: three 0s and one 10 (cells
    1): mass 3 on [-0.5, 0.5] reaches 2 at 1/6; one faint code -8 (cell 8: [-12, -4]) and one 5:
    half the mass is reached at -4 and stays to 4.5, the lowest such point; one code alone is
    its own median whatever its cell; codes at the int32 ends of a 1e-6 scale step."""
    from gs_map_share.quantize import _cell_median

    assert _cell_median(np.array([0, 0, 0, 10]), np.ones(4, np.int64)) == round((1 / 6) * 2**20) / 2**20
    assert _cell_median(np.array([-8, 5]), np.array([8, 1])) == -4.0
    for code in (-30_000_000, -7, 0, 12_000_000):
        for cell in (1, 8):
            assert _cell_median(np.array([code * cell]), np.array([cell])) == code * cell


def _codes_at_the_extremes(rng):
    """Scale codes as relative_to derives them (attribute_lattices, the largest axis) from
    log-scales at and past the clamps (-30, 12), opacities half faint, under several params."""
    from gs_map_share.quantize import QuantParams, attribute_lattices, faint_rows

    n = 3000
    logs = np.concatenate(
        [
            rng.choice([-30.0, -40.0, 12.0, 50.0, -29.9999], size=(n // 3, 3)),
            rng.normal(-4, 3, (n - n // 3, 3)),
        ]
    )
    op = rng.normal(0.0, 4.0, n)
    dc = rng.normal(0, 1, (n, 3))
    for params in (
        QuantParams(scale_step=1e-6, faint_factor=8).with_faint(0.3, 8),
        QuantParams.from_quality(0),
        QuantParams(scale_step=1e6),
        QuantParams(scale_step=1 / 7, faint_factor=3).with_faint(0.5, 3),
    ):
        o, codes, _ = attribute_lattices(op, logs, dc, params)
        faint = faint_rows(o, params)
        cell = np.where(faint, params.faint_factor, 1) if faint is not None else np.ones(n, np.int64)
        yield params, codes.max(axis=1), cell


def test_cell_median_equals_the_function_it_replaced_at_the_extremes():
    """The 1-D key must give the old function's median bit for bit: codes at the int32 ends
    (scale step 1e-6: +-3e7), faint factor 8, a 1e6 step (every code 0), negative codes, random
    subsets of each, and one row."""
    from gs_map_share.quantize import _cell_median

    rng = np.random.default_rng(17)
    for params, codes, cell in _codes_at_the_extremes(rng):
        assert np.abs(codes).max() <= 2**31
        for sel in (slice(None), rng.random(len(codes)) < 0.1, slice(0, 1), codes < 0):
            if not len(codes[sel]):
                continue
            assert _cell_median(codes[sel], cell[sel]) == _old_cell_median(codes[sel], cell[sel]), params


def test_relative_to_on_guitar_derives_the_old_step(shared_data):
    """On a trained scene (guitar.ply) at every quality: the scale-relative position step is the
    preset's step times the median size from the old function, over REFERENCE_SIZE; an empty map
    keeps the preset, one Gaussian gives its own size."""
    from gs_map_share.quantize import REFERENCE_SIZE, QuantParams, attribute_lattices, faint_rows
    from gs_mapping.ply import load_ply

    g = load_ply(shared_data / "splats" / "guitar.ply")
    for quality in range(6):
        p = QuantParams.from_quality(quality)
        op, codes, _ = attribute_lattices(g.opacity_logits, g.log_scales, g.sh[:, 0, :], p)
        faint = faint_rows(op, p)
        cell = np.where(faint, p.faint_factor, 1) if faint is not None else np.ones(len(op), np.int64)
        size = float(np.exp(_old_cell_median(codes.max(axis=1), cell) * p.scale_step))
        assert p.relative_to(g).pos_step == p.pos_step * size / REFERENCE_SIZE, quality
    p = QuantParams.from_quality(2)
    assert p.relative_to(g.subset(np.arange(0))) == p
    one = g.subset(np.arange(1))
    code = int(np.rint(np.clip(one.log_scales.max(), -30, 12) / p.scale_step))
    faint = faint_rows(attribute_lattices(one.opacity_logits, one.log_scales, one.sh[:, 0, :], p)[0], p)
    if faint is not None and faint[0]:
        f = p.faint_factor
        code = int(np.rint(np.clip(one.log_scales.max(), -30, 12) / (f * p.scale_step))) * f
    want = p.pos_step * float(np.exp(code * p.scale_step)) / REFERENCE_SIZE
    assert p.relative_to(one).pos_step == pytest.approx(want, rel=1e-12)
