"""Lens distortion, binning and regions of interest in CameraInfo, against OpenCV and image_geometry's
rules: a raw image from a distorted camera is made pinhole before it is mapped (it was mapped as if
pinhole: walls bent by 0.1 m at k1 = −0.3), and binned or cropped images get the K of what was sent."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gs_mapping.errors import MessageError
from gs_mapping.messages import camera_info_to_intrinsics, intrinsics_to_camera_info
from gs_mapping.messages.camera_info import CameraIntrinsics
from gs_mapping.rectify import Rectifier, rectifier_for

W, H = 320, 240
K = np.array([[260.0, 0.0, 161.5], [0.0, 255.0, 118.2], [0.0, 0.0, 1.0]])
CASES = {
    "plumb_bob": [-0.3, 0.12, 0.001, -0.002, -0.02],
    "rational_polynomial": [0.4, -0.1, 0.0005, 0.001, 0.02, 0.6, -0.05, 0.03],
    "equidistant": [0.05, -0.02, 0.01, -0.004],
}


def _texture(h=H, w=W) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w].astype(float)  # smooth: OpenCV's 1/32 weights stay within 2 levels
    chans = [np.sin(u / 9) * np.cos(v / 7), np.cos(u / 13 + v / 11), np.sin((u - v) / 10)]
    return np.rint(127.5 + 120 * np.stack(chans, -1)).astype(np.uint8)


@pytest.mark.parametrize("model", sorted(CASES))
def test_rectification_maps_equal_opencvs(model):
    """Where each pinhole pixel is read in the raw image: OpenCV's undistortion maps with the new
    camera = K (cv2.undistort's), and cv2.fisheye's for the equidistant model."""
    d = np.array(CASES[model])
    r = Rectifier(W, H, K, model, d)
    if model == "equidistant":
        mx, my = cv2.fisheye.initUndistortRectifyMap(K, d[:4], np.eye(3), K, (W, H), cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(K, d, None, K, (W, H), cv2.CV_32FC1)
    us, vs = r.source
    assert np.abs(us - mx).max() < 1e-3 and np.abs(vs - my).max() < 1e-3


@pytest.mark.parametrize("model", sorted(CASES))
def test_rectified_images_equal_opencvs(model):
    """Colour bilinear (as cv2.remap's linear interpolation, which rounds its weights to 1/32: within
    2 levels), depth by the nearest pixel with no depth invented between two surfaces."""
    d = np.array(CASES[model])
    intr = CameraIntrinsics(W, H, K, d, model)
    r = rectifier_for(intr)
    rgb = _texture()
    if model == "equidistant":
        mx, my = cv2.fisheye.initUndistortRectifyMap(K, d, np.eye(3), K, (W, H), cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(K, d, None, K, (W, H), cv2.CV_32FC1)
    theirs = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ours = r.color(rgb)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
    depth = np.where(np.arange(W)[None, :] < W // 2, 1.0, 3.0).astype(np.float32) * np.ones(
        (H, 1), np.float32
    )
    out = r.depth(depth)
    assert set(np.unique(out)) <= {0.0, 1.0, 3.0}  # no depth between the two surfaces
    inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
    near = depth[np.clip(np.rint(my), 0, H - 1).astype(int), np.clip(np.rint(mx), 0, W - 1).astype(int)]
    assert np.array_equal(out[inside], near[inside]) and not out[~inside].any()


def test_undistorted_and_unknown_models():
    """d all zero: no resampling; an unknown model with a non-zero d, or more coefficients than the
    model has, is one error naming the field (the frame is skipped, said), not a silently bent map."""
    assert rectifier_for(CameraIntrinsics(W, H, K, np.zeros(5))) is None
    assert rectifier_for(CameraIntrinsics(W, H, K, np.zeros(0), "whatever")) is None
    with pytest.raises(MessageError, match="distortion_model: 'kannala' with non-zero d"):
        CameraIntrinsics(W, H, K, [0.1, 0, 0, 0], "kannala")
    with pytest.raises(MessageError, match=r"\.d: equidistant takes 4 coefficients"):
        CameraIntrinsics(W, H, K, [0.1, 0, 0, 0, 0.2], "equidistant")
    with pytest.raises(MessageError, match="non-finite distortion"):
        CameraIntrinsics(W, H, K, [np.nan, 0, 0, 0, 0])


def _info(**kw):
    msg = intrinsics_to_camera_info(CameraIntrinsics(640, 480, [[500, 0, 319.5], [0, 505, 241.0], [0, 0, 1]]))
    for k, v in kw.items():
        if k == "roi":
            msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = v
        else:
            setattr(msg, k, v)
    return msg


def test_binning_and_roi_give_the_published_images_camera():
    """CameraInfo's size, K and P are the full sensor's; binning divides and a region of interest
    crops them (CameraInfo.msg; image_geometry: cx' = (cx − x_offset) / binning_x). A 2× binned
    image of a 640x480 camera is 320x240 with half the focal length; it was refused as 'colour
    image is 320x240 but its CameraInfo says 640x480'."""
    binned = camera_info_to_intrinsics(_info(binning_x=2, binning_y=2))
    assert (binned.width, binned.height) == (320, 240)
    assert np.allclose(binned.K, [[250, 0, 159.75], [0, 252.5, 120.5], [0, 0, 1]])
    assert np.allclose(binned.rectified().K, binned.K)  # P = [K | 0] binned alike
    crop = camera_info_to_intrinsics(_info(roi=(100, 40, 200, 120)))
    assert (crop.width, crop.height) == (200, 120)
    assert np.allclose(crop.K, [[500, 0, 219.5], [0, 505, 201.0], [0, 0, 1]])
    both = camera_info_to_intrinsics(_info(roi=(100, 40, 200, 120), binning_x=4, binning_y=2))
    assert (both.width, both.height) == (50, 60)
    assert np.allclose(both.K, [[125, 0, 54.875], [0, 252.5, 100.5], [0, 0, 1]])
    plain = camera_info_to_intrinsics(_info(binning_x=1, binning_y=0))
    assert (plain.width, plain.height) == (640, 480) and plain.K[0, 2] == 319.5
    with pytest.raises(MessageError, match="roi: 600x120 at \\(100, 40\\) is not inside"):
        camera_info_to_intrinsics(_info(roi=(100, 40, 600, 120)))


def test_rectified_topics_take_p_and_raw_topics_are_undistorted(tmp_path):
    """image_proc publishes ``image_rect`` with the raw camera's CameraInfo (d non-zero, P the
    rectified camera): its images are pinhole with P's K and must not be undistorted again; an
    ``image_raw`` is undistorted with K and d. Through make_frame, the mapper's frame builder."""
    from gs_mapping.mapping.frames import depth_in_color, make_frame
    from gs_mapping.rectify import for_images_on

    d = np.array(CASES["plumb_bob"])
    raw = CameraIntrinsics(W, H, K, d, "plumb_bob", "cam", 0, P=K * [[0.9], [0.9], [1]])
    rgb = _texture()
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, : W // 3] = 1.0
    rect = for_images_on(raw, "/cam/image_rect_color/compressed")
    assert not rect.D.any() and np.allclose(rect.K, raw.P)
    f = make_frame(rgb, depth_in_color(depth, "cam", 0, rect, np.eye(4), None), rect, np.eye(4), 0, "cam")
    assert np.array_equal(f.rgb, rgb.astype(np.float32) / 255) and np.allclose(f.camera.K, raw.P)
    assert np.array_equal(f.depth, depth)
    same = for_images_on(raw, "/cam/image_raw")
    assert same is raw
    f = make_frame(rgb, depth_in_color(depth, "cam", 0, same, np.eye(4), None), same, np.eye(4), 0, "cam")
    mx, my = cv2.initUndistortRectifyMap(K, d, None, K, (W, H), cv2.CV_32FC1)
    theirs = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(f.rgb * 255 - theirs).max() <= 2.01
    inside = (mx >= 0) & (mx <= W - 1)
    near = depth[np.clip(np.rint(my), 0, H - 1).astype(int), np.clip(np.rint(mx), 0, W - 1).astype(int)]
    assert np.array_equal(f.depth[inside], near[inside])
