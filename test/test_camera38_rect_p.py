"""The rectified camera (``image_rect*`` topics) of the real RealSense kitchen bag's colour
CameraInfo: P's left 3x3 where it is a pinhole K (the message's own P), else K, by the rule of
:func:`gs_mapping.messages.camera_info.pinhole_k_problem`: a P written transposed (cx, cy in its last
row) or with no fy is no camera to project by. Expected values are the message's own k and p."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.messages import camera_info_to_intrinsics  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"
INFO = "/camera/camera/color/camera_info"


@pytest.fixture(scope="module")
def info(shared_data):
    with BagReader(SOURCE) as b:
        return next(m for _, _, m in b.messages([INFO]))


def _with_p(msg, left):
    m = copy.deepcopy(msg)
    p = np.asarray(m.p, np.float64).reshape(3, 4).copy()
    p[:, :3] = left
    m.p = p.reshape(-1)
    return m


def test_the_real_p_is_the_rectified_camera(info):
    p = np.asarray(info.p, np.float64).reshape(3, 4)
    assert p[0, 0] > 0 and not np.array_equal(p[:, :3], np.zeros((3, 3)))  # (a real P to take)
    assert np.array_equal(camera_info_to_intrinsics(info).rectified().K, p[:, :3])


@pytest.mark.parametrize("what", ["transposed", "no_fy"])
def test_a_p_that_is_no_pinhole_k_gives_k(info, what):
    p = np.asarray(info.p, np.float64).reshape(3, 4)[:, :3]
    left = p.T.copy() if what == "transposed" else p * [[1], [0], [1]]
    k = np.asarray(info.k, np.float64).reshape(3, 3)
    assert np.array_equal(camera_info_to_intrinsics(_with_p(info, left)).rectified().K, k)
