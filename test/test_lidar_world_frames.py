"""A cloud published in a world frame (FAST-LIO's ``camera_init``, LIO-SAM's ``odom``, a room's
``map``) has no sensor at its origin, so the hidden-return rule, which triangulates about the cloud
frame's origin, must not run on it, however near that origin lies to the camera (the first metres
of a drive). TF tells it: the camera moves in that frame (``tf.is_world_frame``). Checked on hand
trees and through ``frames.depth_in_color`` against the nearest return of each pixel, by hand."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import test_outside_lidar_visibility as lv

from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.tf import MapPoses, TFBuffer, is_world_frame

S = 10**9


def _tree(*edges) -> TFBuffer:
    """Static edges at the identity; moving ones (on /tf) with two samples 1 m apart: they move."""
    tf = TFBuffer()
    for parent, child, static in edges:
        tf.add(TransformStamped(parent, child, 0, Transform()), static=static)
        if not static:
            tf.add(TransformStamped(parent, child, S, Transform(np.array([1.0, 0.0, 0.0]))))
    return tf


def test_a_world_frame_is_one_the_camera_moves_in():
    """By hand: FAST-LIO (camera_init -> body moving, the camera under body; a static child of
    camera_init), a LiDAR that is the camera's parent on the rig, a LiDAR beside the camera on
    base_link, a LiDAR on a spinning joint, a gimbal camera, LIO-SAM's map -> odom moving, a tree
    rooted at the robot with its world frame moving under it (MRS), fixed extrinsics sent on /tf,
    unknown and unconnected frames."""
    fast_lio = _tree(("camera_init", "body", False), ("body", "camera", True), ("camera_init", "cloud", True))
    assert is_world_frame(fast_lio, "camera_init", "camera")
    assert is_world_frame(fast_lio, "/camera_init", "/camera")
    assert is_world_frame(fast_lio, "cloud", "camera")  # (fixed in camera_init)
    assert not is_world_frame(fast_lio, "body", "camera")  # (the rig: static only)
    assert not is_world_frame(fast_lio, "camera", "camera")
    assert not is_world_frame(fast_lio, "nowhere", "camera") and not is_world_frame(fast_lio, "body", "x")
    lidar_parent = _tree(("odom", "lidar", False), ("lidar", "camera", True))
    assert not is_world_frame(lidar_parent, "lidar", "camera")
    assert is_world_frame(lidar_parent, "odom", "camera")
    rig = (("base_link", "lidar", True), ("base_link", "camera", True), ("base_link", "spinner", False))
    beside = _tree(("map", "odom", False), ("odom", "base_link", False), *rig)
    assert not is_world_frame(beside, "lidar", "camera")
    assert not is_world_frame(beside, "spinner", "camera")  # (a sensor on its own moving joint)
    assert is_world_frame(beside, "odom", "camera") and is_world_frame(beside, "map", "camera")
    gimbal = _tree(
        ("odom", "base", False), ("base", "pan", False), ("pan", "camera", True), ("base", "lidar", True)
    )
    assert not is_world_frame(gimbal, "lidar", "camera") and is_world_frame(gimbal, "odom", "camera")
    mrs = _tree(("fcu", "world_origin", False), ("fcu", "os_sensor", True), ("fcu", "camera", True))
    assert is_world_frame(mrs, "world_origin", "camera") and not is_world_frame(mrs, "os_sensor", "camera")
    two_trees = _tree(("odom", "camera", False), ("elsewhere", "lidar", True))
    assert not is_world_frame(two_trees, "lidar", "camera")
    resent = TFBuffer()  # a fixed extrinsic re-sent on /tf (realsense-ros' tf_publish_rate): no motion
    for k in range(3):
        resent.add(TransformStamped("odom", "base", k * S, Transform(np.array([k * 1.0, 0.0, 0.0]))))
        resent.add(TransformStamped("base", "camera", k * S, Transform(np.array([0.1, 0.0, 0.0]))))
    resent.add(TransformStamped("base", "lidar", 0, Transform()), static=True)
    assert not is_world_frame(resent, "lidar", "camera") and is_world_frame(resent, "odom", "camera")


def _fast_lio_poses(origin_behind_m: float) -> tuple[MapPoses, np.ndarray]:
    """``camera_init -> body`` (moving: two samples) with the body ``origin_behind_m`` ahead of the
    world origin at the stamp, ``body -> camera`` (the optical axes) and ``body -> lidar`` static
    (the pole scene's rig); T_map_camera where ``map`` is absent (MapPoses anchors at the camera)."""
    tf = TFBuffer(cache_time_s=0)
    q = np.array([0.0, 0.0, 0.0, 1.0])
    for k in range(2):
        at = Transform(np.array([origin_behind_m + 0.5 * k, 0.0, 0.0]), q)
        tf.add(TransformStamped("camera_init", "body", k * S, at))
    optical = np.eye(4)
    optical[:3, :3] = lv.R_BODY_OPT
    tf.add(TransformStamped("body", "camera", 0, Transform.from_matrix(optical)), static=True)
    lidar = np.eye(4)
    lidar[:3, 3] = [0.0, -0.4, 0.3]
    tf.add(TransformStamped("body", "lidar", 0, Transform.from_matrix(lidar)), static=True)
    poses = MapPoses(tf, "map")
    return poses, poses.lookup("camera", 0)


@pytest.mark.parametrize("origin_behind_m", [0.0, 3.0, 8.0])
def test_a_cloud_in_a_world_frame_near_the_camera_keeps_every_return(origin_behind_m, caplog):
    """The pole scene (lv._pole_scene: a LiDAR 0.4 m right of and 0.3 m above the camera sees wall
    behind a pole that the camera does not) published in ``camera_init`` whose origin lies 0–8 m
    behind the camera: every return stays (the nearest of each pixel, by hand), one warning names
    the frame. Published in the LiDAR's own frame on the same TF, the hidden returns go."""
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics

    cloud, P_body, _, q, _ = lv._pole_scene((0.0, -0.4, 0.3))
    poses, T_map_cam = _fast_lio_poses(origin_behind_m)
    color = CameraIntrinsics(lv.W, lv.H, lv.K, frame_id="camera")
    in_world = P_body + [origin_behind_m, 0.0, 0.0]  # (camera_init's axes are the body's here)
    frame = f"camera_init_{origin_behind_m:g}"
    poses.tf.add(TransformStamped("camera_init", frame, 0, Transform()), static=True)
    caplog.set_level(logging.WARNING, logger="gs_mapping.mapping.depth_registration")
    for _ in range(2):
        depth = depth_in_color(in_world, frame, 0, color, T_map_cam, poses, cloud=True, color_stamp=0)
    np.testing.assert_allclose(depth, lv._nearest_per_pixel(q), rtol=1e-6, atol=1e-6)
    said = [r.getMessage() for r in caplog.records if repr(frame) in r.getMessage()]
    assert len(said) == 1 and "world frame" in said[0] and "moves in it" in said[0], said
    own = depth_in_color(cloud, "lidar", 0, color, T_map_cam, poses, cloud=True, color_stamp=0)
    assert (own != lv._nearest_per_pixel(q)).sum() > 100
