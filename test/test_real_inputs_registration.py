"""Depth not registered to colour: reprojected into the colour camera through TF, occlusions handled.

The real test: the RealSense-layout kitchen frames' registered depth is moved into a depth camera 4 cm
to the side (own K, own frame, a static TF edge; test/real_layouts.py, an independent warp), then the
product registers it back through TF and is compared with the registered depth of the same frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.mapping.depth_registration import cloud_to_depth, register_depth

K = np.array([[200.0, 0, 79.5], [0, 200.0, 59.5], [0, 0, 1]])
W, H = 160, 120


def _scene_depth(cam_x: float) -> np.ndarray:
    """Analytic z-depth of a camera at (cam_x, 0, 0) looking down +z: a wall at z = 3 m and a
    0.4 m wide board at z = 1 m spanning x in [-0.2, 0.2] (all rows)."""
    u = np.arange(W)
    x_at_1 = cam_x + (u - K[0, 2]) / K[0, 0] * 1.0
    row = np.where(np.abs(x_at_1) <= 0.2, 1.0, 3.0)
    return np.tile(row, (H, 1)).astype(np.float32)


def test_occlusion_nearest_wins_and_disocclusion_stays_empty():
    baseline = 0.1
    depth_cam = _scene_depth(baseline)  # the depth camera sits 10 cm right of colour
    T_color_depth = np.eye(4)
    T_color_depth[0, 3] = baseline
    out = register_depth(depth_cam, K, T_color_depth, K, (W, H))
    truth = _scene_depth(0.0)
    fg = truth == 1.0
    got = out > 0
    # the board is never replaced by the wall behind it (z-buffer), and where both are seen they agree
    assert np.allclose(out[fg & got], 1.0, atol=1e-4)
    assert np.allclose(out[~fg & got], 3.0, atol=1e-4)
    # wall the depth camera could not see (hidden behind the board from its viewpoint) stays empty,
    # everything else is filled: no cracks on the planes
    assert fg[got].sum() == fg.sum()
    hidden = ~fg & ~got
    # beyond the colour camera's left border the depth camera (10 cm right) sees no wall: 200*0.1/3 px
    edge = int(np.ceil(baseline * K[0, 0] / 3.0))
    assert hidden[:, :edge].all() and not got[:, :edge].any()
    # behind the board's edge: a band of 200*0.1*(1/1 - 1/3) = 13.3 px the depth camera cannot see
    cols = np.flatnonzero(hidden[0, edge + 1 :]) + edge + 1
    assert cols.max() - cols.min() + 1 == len(cols) and 12 <= len(cols) <= 15, cols
    assert fg[0, cols.max() + 1] or fg[0, cols.min() - 1]  # right beside the board
    assert (hidden == hidden[0]).all()  # the same in every row


def test_coarser_depth_camera_leaves_no_cracks():
    depth_half = np.full((H // 2, W // 2), 2.0, np.float32)
    K_half = K.copy()
    K_half[:2] /= 2
    K_half[0, 2], K_half[1, 2] = (W // 2 - 1) / 2, (H // 2 - 1) / 2
    out = register_depth(depth_half, K_half, np.eye(4), K, (W, H))
    assert (out[1:-1, 1:-1] == 2.0).all()


def test_cloud_to_depth_nearest_point_per_pixel():
    pts = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [0.001, 0.0, 5.0], [0.0, 0.0, -1.0]])
    T = np.eye(4)
    T[2, 3] = 0.5  # the cloud's frame sits 0.5 m in front of the camera
    d = cloud_to_depth(pts, T, K, (W, H))
    v, u = int(round(K[1, 2])), int(round(K[0, 2]))
    assert np.isclose(d[v, u], 1.5)  # nearest of the three on that ray, moved by T
    assert (d > 0).sum() == 1  # the point behind the camera is dropped


def test_unregistered_kitchen_depth_registers_back(shared_data, tmp_path):
    import real_layouts as R

    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    src = shared_data / R.REALSENSE
    bag, registered = R.write_unregistered_layout(src, tmp_path / "unregistered", max_frames=2)
    with BagReader(bag) as b:
        found = discover({t.name: t.type for t in b.topics})
    assert found.depth == "/camera/camera/depth/image_rect_raw"
    assert found.depth_camera_info == "/camera/camera/depth/camera_info"
    topics = TopicsConfig(
        color=found.color,
        depth=found.depth,
        camera_info=found.camera_info,
        depth_camera_info=found.depth_camera_info,
    )
    stats = FrameStats()
    frames = list(read_frames(bag, topics, stats))
    assert len(frames) == len(registered) == 2 and stats.skipped == 0
    for frame, truth in zip(frames, registered, strict=True):
        both = (frame.depth > 0) & (truth > 0)
        err = np.abs(frame.depth[both] - truth[both])
        coverage = both.sum() / (truth > 0).sum()
        # two nearest-pixel resamplings: exact on surfaces, off by a pixel at depth edges
        assert coverage > 0.93, coverage
        assert np.median(err) < 0.002, np.median(err)
        assert np.mean(err > 0.05) < 0.03, np.mean(err > 0.05)
    # the depth camera really is elsewhere: taken as registered, the same images are far off
    raw = np.nan_to_num(_first_unregistered_depth(bag), nan=0.0)
    both = (raw > 0) & (registered[0] > 0)
    assert np.median(np.abs(raw[both] - registered[0][both])) > 0.01


def _first_unregistered_depth(bag):
    from gs_mapping.bag import BagReader
    from gs_mapping.messages.camera_image import depth_to_metres

    with BagReader(bag) as b:
        for _t, _s, msg in b.messages(["/camera/camera/depth/image_rect_raw"]):
            return depth_to_metres(msg)


@pytest.fixture(autouse=True, scope="module")
def _test_dir_on_path():
    import sys
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    yield
    sys.path.remove(here)
