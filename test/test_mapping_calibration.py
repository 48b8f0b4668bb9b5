"""Colour-camera self-calibration recovers a known colour/depth camera mismatch (driving world)."""

from __future__ import annotations

import numpy as np

from gs_mapping.mapping import Frame
from gs_mapping.mapping.calibration import ColorCalibration, estimate_color_calibration, photometric_cost


def _mismatched_frames(scale=0.88, n=10):
    """Depth from the rig camera, colour from a camera with focal × ``scale`` at the same pose."""
    from gs_mapping.world import Drive

    drive = Drive.make(3, n, "front", (128, 72), rate_hz=5.0)
    cam = drive.cameras[0]
    frames = []
    for i in range(n):
        depth_cam = cam.with_pose(drive.pose(i) @ cam.T_map_cam)
        color_cam = ColorCalibration(focal_scale=scale).color_camera(depth_cam)
        rgb, _ = drive.world.render(color_cam)
        _, depth = drive.world.render(depth_cam)
        depth = np.where(np.isfinite(depth) & (depth < 40), depth, 0).astype(np.float32)
        frames.append(Frame(rgb.astype(np.float32) / 255, depth, depth_cam, drive.stamp_ns(i), i))
    return frames


def test_calibration_recovers_focal_scale_and_registers_depth():
    frames = _mismatched_frames()
    cal = estimate_color_calibration(frames, max_pairs=3)
    assert abs(cal.focal_scale - 0.88) < 0.02, cal
    assert cal.cost_after < 0.7 * cal.cost_before
    pairs = [(0, 5), (2, 7)]
    assert photometric_cost(frames, pairs, cal) < photometric_cost(frames, pairs, ColorCalibration())
    reg = cal.register(frames[0])
    assert reg.camera.K[0, 0] == frames[0].camera.K[0, 0] * cal.focal_scale
    # registered depth lies in the middle of the wider colour view; its border has none
    assert (reg.depth > 0).mean() > 0.3 and not np.any(reg.depth[:, 0] > 0)
