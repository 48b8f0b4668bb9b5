"""Deskewing a long cloud (a Livox's 2 s at ``publish_freq`` 0.5 Hz) moves each point by the motion
interpolated to its own time, not by its bucket's: checked against the exact pose of every point's
time, by hand, on a car driving a 20 m arc at 10 m/s."""

from __future__ import annotations

import numpy as np

from gs_mapping.mapping.deskew import MAX_BUCKETS, Deskew

SPEED, YAW_RATE = 10.0, 0.5  # m/s, rad/s: an arc of radius 20 m
T0 = 1_700_000_000 * 10**9


def _pose(ns: int) -> np.ndarray:
    """T_odom_lidar on the arc, ``ns`` from T0 (the LiDAR at the car's origin)."""
    t = (ns - T0) / 1e9
    a, r = YAW_RATE * t, SPEED / YAW_RATE
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:2, 3] = [r * np.sin(a), r * (1 - np.cos(a))]
    return T


def test_a_two_second_cloud_lands_within_millimetres_of_where_each_point_was():
    """60,000 points over 2 s (random times, as a Livox rosette's), 5–40 m away: each deskewed point
    lies within 2 mm of its place (the chord of the arc between lookups 32 ms apart is 0.6 mm off
    it), where a bucket's single pose left points up to ~16 cm off and the scan itself moved them by
    metres; TF is asked at most MAX_BUCKETS times."""
    rng = np.random.default_rng(11)
    n = 60_000
    dt = np.sort(rng.uniform(0.0, 2.0, n))
    rng_m, az, el = rng.uniform(5, 40, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(-0.3, 0.3, n)
    world = np.column_stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]) * rng_m[:, None]
    p = np.empty_like(world)
    for i, t in enumerate(dt):  # each point in the LiDAR's frame at its own time
        T = np.linalg.inv(_pose(T0 + int(round(t * 1e9))))
        p[i] = T[:3, :3] @ world[i] + T[:3, 3]
    asked = []

    def pose_at(ns):
        asked.append(ns)
        return _pose(ns)

    out = Deskew("/livox/lidar")(p, dt, T0, _pose(T0), pose_at)
    err = np.linalg.norm(out - world, axis=1)  # (the stamp's pose is the identity)
    assert err.max() < 2e-3, float(err.max())
    assert len(asked) <= MAX_BUCKETS
    assert np.linalg.norm(p - world, axis=1).max() > 10.0  # (what the drive skewed)
    shuffled = rng.permutation(n)  # (a rosette's or a merged cloud's times are in no order)
    again = Deskew("/livox/lidar")(p[shuffled], dt[shuffled], T0, _pose(T0), _pose)
    assert np.linalg.norm(again - world[shuffled], axis=1).max() < 2e-3


def test_a_cloud_running_past_the_end_of_tf_lands_on_the_wall_through_the_mapper_path():
    """``frames.depth_in_color`` (the bag reader's and mapper_node's path) on a 2 s cloud whose
    odometry (100 Hz) ends 1 s in, the robot standing still from then on (so TF's last pose is
    where the later points were measured): it drove at 10 m/s towards a wall 20 m ahead of where it
    was at the stamp. Every point must read the wall's 20 m in the camera at the stamp (by hand).
    Without TF's span handed to the deskew, the bucket where TF ends interpolated towards a pose
    that was not its edge's, tens of cm off."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.tf import MapPoses, TFBuffer

    w, h, f = 320, 240, 200.0
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    tf = TFBuffer(cache_time_s=0)
    t_end = 1.0
    for t in np.arange(-50, 101) / 100:  # odom -> base: x = 10 t m up to t_end, none after
        tf.add(
            TransformStamped(
                "odom", "base", T0 + int(round(t * 1e9)), Transform(np.array([SPEED * t, 0.0, 0.0]))
            )
        )
    tf.add(TransformStamped("base", "lidar", 0, Transform()), static=True)
    optical = np.eye(4)
    optical[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # (x right, y down, z ahead)
    tf.add(TransformStamped("base", "camera", 0, Transform.from_matrix(optical)), static=True)
    poses = MapPoses(tf, "map")
    T_map_cam = poses.lookup("camera", T0)
    rng = np.random.default_rng(5)
    n = 30_000
    dt = np.sort(rng.uniform(0.0, 2.0, n))
    wall = np.column_stack(
        [np.full(n, 20.0), rng.uniform(-8, 8, n), rng.uniform(-6, 6, n)]
    )  # odom, at the stamp
    x_at = SPEED * np.minimum(dt, t_end)  # where the LiDAR was when it measured each point
    p = wall - np.column_stack([x_at, np.zeros(n), np.zeros(n)])
    color = CameraIntrinsics(w, h, K, frame_id="camera")
    depth = depth_in_color(
        p,
        "lidar",
        T0,
        color,
        T_map_cam,
        poses,
        cloud=True,
        color_stamp=T0,
        point_times=dt,
        deskew=Deskew("/livox/lidar"),
    )
    got = depth[depth > 0]
    assert len(got) > 1000
    assert np.abs(got - 20.0).max() < 2e-3, float(np.abs(got - 20.0).max())
