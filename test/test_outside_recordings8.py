"""Outside review of issue 16 (real robot recordings), eighth pass: recordings as the common camera
drivers write them, checked against each driver's own source (fetched and read for this review):

- Azure Kinect (microsoft/Azure_Kinect_ROS_Driver, ``k4a_ros_device.cpp``,
  ``k4a_calibration_transform_data.cpp``): colour ``/rgb/image_raw`` in ``bgra8``, registered depth
  ``/depth_to_rgb/image_raw`` in the *raw* (distorted) colour camera, ``32FC1`` metres where
  ``depth_unit`` says so, CameraInfo ``rational_polynomial`` with 8 coefficients and P = [K | 0];
  ``/rgb_to_depth/image_raw`` (colour in the depth camera) beside it;
- RealSense (IntelRealSense/realsense-ros 4.x, ``base_realsense_node.cpp``): ``aligned_depth_to_color``
  is librealsense's ``rs2::align`` output, in the raw colour image (CameraInfo ``plumb_bob`` with the
  colour's 5 coefficients, P = [K | 0]); a robot that also runs image_proc records its
  ``color/image_rect_color`` beside ``color/image_raw``;
- ZED (stereolabs/zed-ros2-wrapper, CHANGELOG v5.1.0 and ``zed_camera_component_video_depth.cpp``):
  since v5.1 the images are ``~/rgb/color/rect/image``, ``~/rgb/color/raw/image``,
  ``~/left/color/rect/image``, ``~/rgb/gray/rect/image``…; ``~/depth/depth_registered`` is registered
  to the rectified left (= rgb) image, as before;
- Orbbec (orbbec/OrbbecSDK_ROS2, ``ob_camera_node.cpp``: ``stream_name_[INFRA1] = "left_ir"``,
  ``stream_name_[INFRA2] = "right_ir"``): the Gemini 330 series' infrared pair on
  ``/camera/left_ir/image_raw`` and ``/camera/right_ir/image_raw``, each with its ``camera_info``.

Bags are written with the ``rosbags`` writer; expected pixels come from OpenCV
(``cv2.initUndistortRectifyMap`` / ``cv2.remap`` / ``cv2.cvtColor``, what image_proc and cv_bridge run)
and hand-built scenes. Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402

T, TS = rb.T, rb.TS
IMG, CIMG, CINFO, TFM = rb.IMG, rb.CIMG, rb.CINFO, rb.TFM
T0, DT = rb.T0, rb.DT
W, H = 160, 120
KM = np.array([[110.0, 0.0, 79.5], [0.0, 110.0, 59.5], [0.0, 0.0, 1.0]])
RED, GREEN = (220, 30, 30), (30, 200, 40)
# a 28 x 24 px box at 1.0 m in the image's top-left corner, where a lens moves pixels most, before
# a wall at 2.0 m: (v0, v1, u0, u1) in the pinhole image
BOX = (6, 30, 6, 34)


# -- messages (rosbags only) -------------------------------------------------------------------------------
def _info(ns, fid, model, d, k=KM, p=None):
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    kk = np.asarray(k, float)
    pp = np.zeros((3, 4))
    pp[:, :3] = kk if p is None else p
    return T[CINFO](
        header=rb._hdr(ns, fid), height=H, width=W, distortion_model=model, d=np.asarray(d, float),
        k=kk.reshape(-1), r=np.eye(3).reshape(-1), p=pp.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


def _pinhole_scene():
    """The truth, in the pinhole camera K: colour (H, W, 3) uint8 and depth (H, W) metres."""
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = GREEN
    depth = np.full((H, W), 2.0, np.float32)
    v0, v1, u0, u1 = BOX
    rgb[v0:v1, u0:u1] = RED
    depth[v0:v1, u0:u1] = 1.0
    return rgb, depth


def _raw_from_pinhole(img, d):
    """What the distorted camera (K, d) records of the pinhole truth: each raw pixel's ray found by
    OpenCV's undistortPoints, the truth read at its nearest pinhole pixel (edge pixels beyond)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
    und = cv2.undistortPointsIter(
        pts, KM, np.asarray(d, float), None, KM, (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    ).reshape(H, W, 2)
    uu = np.clip(np.rint(und[..., 0]), 0, W - 1).astype(int)
    vv = np.clip(np.rint(und[..., 1]), 0, H - 1).astype(int)
    return img[vv, uu]


def _image_proc_rect(raw_rgb, d):
    """image_proc's rectify node on the raw colour (P = K): cv2.initUndistortRectifyMap + remap."""
    mx, my = cv2.initUndistortRectifyMap(KM, np.asarray(d, float), None, KM, (W, H), cv2.CV_32FC1)
    return cv2.remap(raw_rgb, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def _static_tf(parent, child, xyz=(0.0, 0.0, 0.0), q=(0.0, 0.0, 0.0, 1.0)):
    return (T0 - 1, "/tf_static", T[TFM](transforms=[rb._tf(T0 - 1, parent, child, xyz, q)]))


def _read(bag, **names):
    """The frames ``map`` reads from ``bag``: its topics discovered as ``map`` discovers them (or
    ``names`` given as its options would be), then ``read_frames``."""
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    with BagReader(bag) as b:
        f = discover({t.name: t.type for t in b.topics}, **names)
    topics = TopicsConfig(
        color=f.color, depth=f.depth, camera_info=f.camera_info, depth_camera_info=f.depth_camera_info
    )
    return f, list(read_frames(bag, topics))


def _box_agreement(frame) -> float:
    """Of the pixels whose colour is the box's (red, 2 px in from its edge), the share whose depth is
    the box's 1.0 m: 1 where colour and depth are one image, less where the depth is displaced."""
    rgb = np.rint(frame.rgb * 255).astype(np.uint8)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 100)
    red = cv2.erode(red.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert red.sum() > 100, "the box must be in the colour image"
    return float(np.mean(np.abs(frame.depth[red] - 1.0) < 0.05))


# -- Azure Kinect: bgra8 colour, rational_polynomial, depth_to_rgb 32FC1 in the raw colour image ---------
KINECT_D = (0.45, -2.6, 0.0006, -0.0004, 1.5, 0.33, -2.4, 1.45)  # k1 k2 p1 p2 k3 k4 k5 k6 (a K4A colour lens)
KINECT_Q = (-0.5, 0.5, -0.5, 0.5)  # camera_base (x forward) -> rgb_camera_link (z forward, optical)


def _kinect_bag(path, n=2):
    rgb, depth = _pinhole_scene()
    raw_rgb = _raw_from_pinhole(rgb, KINECT_D)
    raw_depth = _raw_from_pinhole(depth, KINECT_D).astype(np.float32)
    raw_depth[-3:, :] = np.nan  # invalid pixels, as K4A marks them after the 0.001 scale (0 -> 0; NaN here)
    bgra = np.concatenate([raw_rgb[..., ::-1], np.full((H, W, 1), 255, np.uint8)], -1)
    topics = {
        "/rgb/image_raw": IMG, "/rgb/camera_info": CINFO, "/depth_to_rgb/image_raw": IMG,
        "/depth_to_rgb/camera_info": CINFO, "/rgb_to_depth/image_raw": IMG, "/rgb_to_depth/camera_info": CINFO,
        "/depth/image_raw": IMG, "/depth/camera_info": CINFO, "/tf_static": TFM,
    }  # fmt: skip
    msgs = [
        _static_tf("map", "camera_base", (1.0, 2.0, 0.5)),
        _static_tf("camera_base", "rgb_camera_link", (0.0, -0.032, 0.0), KINECT_Q),
        _static_tf("camera_base", "depth_camera_link", (0.0, 0.0, 0.0), KINECT_Q),
    ]
    for i in range(n):
        ns = T0 + i * DT
        info = _info(ns, "rgb_camera_link", "rational_polynomial", KINECT_D)
        msgs += [
            (ns, "/rgb/image_raw", rb._image(ns, "rgb_camera_link", bgra, "bgra8")),
            (ns, "/rgb/camera_info", info),
            (ns + 1000, "/depth_to_rgb/image_raw", rb._image(ns, "rgb_camera_link", raw_depth, "32FC1")),
            (ns + 1000, "/depth_to_rgb/camera_info", info),
            (ns + 1000, "/rgb_to_depth/image_raw", rb._image(ns, "depth_camera_link", bgra, "bgra8")),
            (ns + 1000, "/rgb_to_depth/camera_info", _info(ns, "depth_camera_link", "rational_polynomial", KINECT_D)),
            (ns + 1000, "/depth/image_raw", rb._image(ns, "depth_camera_link", raw_depth, "32FC1")),
            (ns + 1000, "/depth/camera_info", _info(ns, "depth_camera_link", "rational_polynomial", KINECT_D)),
        ]  # fmt: skip
    return rb._write(path, topics, msgs), bgra, raw_depth


def test_azure_kinect_recording_maps_bgra8_rational_polynomial_colour_with_its_registered_depth(tmp_path):
    """Azure Kinect's driver publishes colour as ``bgra8`` (``k4a_ros_device.cpp``: cv_bridge
    ``BGRA8``), CameraInfo ``rational_polynomial`` with (k1, k2, p1, p2, k3, k4, k5, k6), and
    ``depth_to_rgb`` (k4a's depth transformed into the raw colour camera) in 32FC1 metres; its frames
    are ``rgb_camera_link`` (optical axes, no ``_optical_frame`` in the name). The frame ``map``
    reads must be: colour = OpenCV's BGRA→RGB then undistortion (initUndistortRectifyMap + bilinear
    remap: what image_proc does); depth = the raw depth read at the nearest raw pixel of the same map
    (so the box's colour and its 1.0 m depth stay one image); NaN (K4A's invalid) stays invalid; pose = the hand-composed static chain;
    K = the CameraInfo's. And ``/rgb_to_depth`` (colour in the depth camera) is not taken as depth.
    Not covered elsewhere: the rectifier is checked by itself (test_camera_rectify), not on a Kinect
    recording through topic discovery and the bag reader."""
    bag, bgra, raw_depth = _kinect_bag(tmp_path / "k4a")
    found, frames = _read(bag)
    assert (found.color, found.depth, found.depth_camera_info) == (
        "/rgb/image_raw",
        "/depth_to_rgb/image_raw",
        "",
    )
    assert len(frames) == 2
    mx, my = cv2.initUndistortRectifyMap(KM, np.array(KINECT_D), None, KM, (W, H), cv2.CV_32FC1)
    want_rgb = cv2.remap(
        cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
    near = raw_depth[np.clip(np.rint(my), 0, H - 1).astype(int), np.clip(np.rint(mx), 0, W - 1).astype(int)]
    want_depth = np.nan_to_num(near, nan=0.0)
    R = rb._quat_matrix(KINECT_Q)
    T_map_cam = np.eye(4)
    T_map_cam[:3, :3] = R
    T_map_cam[:3, 3] = np.array([1.0, 2.0, 0.5]) + np.array([0.0, -0.032, 0.0])
    for f in frames:
        got = np.rint(f.rgb * 255)
        err = np.abs(got - want_rgb)[inside]
        # (OpenCV's remap reads at 1/32 px: across the box's 190-level edges that is up to 6 levels)
        assert err.max() <= 6.01 and err.mean() < 0.1
        assert np.allclose(f.depth[inside], want_depth[inside], atol=1e-6)
        assert np.allclose(f.camera.K, KM) and np.allclose(f.camera.T_map_cam, T_map_cam, atol=1e-9)
        assert _box_agreement(f) > 0.98


# -- Azure Kinect without depth_to_rgb: depth in its own distorted camera, tilted 6 degrees --------------
KD = np.array([[100.0, 0.0, 80.5], [0.0, 100.0, 58.0], [0.0, 0.0, 1.0]])  # a wider depth camera
KINECT_DEPTH_D = (0.35, -0.12, 0.0002, 0.0001, -0.01, 0.68, -0.05, -0.03)  # rational_polynomial
PATCH = (-0.40, -0.15, -0.30, -0.08)  # x0, x1, y0, y1 of a square at z = 1.0 m in the rgb optical frame


def _rot_x(deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _quat(R):
    from scipy.spatial.transform import Rotation

    return tuple(Rotation.from_matrix(R).as_quat())  # x, y, z, w


def _rays(K, d, w, h):
    """Each raw pixel's ray (x, y, 1) in its camera, by OpenCV's undistortPoints."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    xy = cv2.undistortPointsIter(pts, K, np.asarray(d, float), None, None, crit).reshape(h, w, 2)
    return np.concatenate([xy, np.ones((h, w, 1))], -1)


def _hit(o, dirs):
    """Depth along each ray's own z (the ray has z = 1 in its camera) to the scene, given in the rgb
    optical frame: the square at z = 1 (PATCH), else the wall at z = 2. o: origin, dirs (h, w, 3)."""
    x0, x1, y0, y1 = PATCH
    s1 = (1.0 - o[2]) / dirs[..., 2]
    p = o + s1[..., None] * dirs
    on = (p[..., 0] >= x0) & (p[..., 0] <= x1) & (p[..., 1] >= y0) & (p[..., 1] <= y1)
    return np.where(on, s1, (2.0 - o[2]) / dirs[..., 2]), on


def test_azure_kinect_unregistered_depth_from_its_tilted_distorted_camera_lands_on_the_colour(tmp_path):
    """Azure Kinect without ``depth_to_rgb``: ``/depth/image_raw`` (16UC1 mm) in ``depth_camera_link``
    with its own ``rational_polynomial`` CameraInfo, the depth camera tilted 6 degrees down against the
    colour camera (the driver's ``getDepthToBaseRotationCorrection``) and 32 mm beside it, both on
    ``/tf_static`` from ``camera_base``. The scene (a square at 1.0 m before a wall at 2.0 m, in the
    colour camera's frame) is ray-cast here through each camera's raw pixels (OpenCV's
    undistortPoints for both lenses, the hand-composed transforms): in the frame ``map`` reads, the
    square's red pixels must carry its 1.0 m depth. Not covered elsewhere: unregistered depth is tested
    with pinhole cameras only (the kitchen frames), distortion on registered depth only."""
    pytest.importorskip("scipy")
    R_opt = rb._quat_matrix(KINECT_Q)
    t_rgb, t_depth = np.array([0.0, -0.032, 0.0]), np.array([0.0, 0.0, 0.0018])
    R_depth = R_opt @ _rot_x(-6.0)  # base <- depth optical
    # the depth camera in the rgb optical frame
    R_cd = R_opt.T @ R_depth
    o_d = R_opt.T @ (t_depth - t_rgb)
    colour_hit = _hit(np.zeros(3), _rays(KM, KINECT_D, W, H))[1]
    raw = np.empty((H, W, 4), np.uint8)
    raw[:] = (*GREEN[::-1], 255)
    raw[colour_hit] = (*RED[::-1], 255)  # bgra8
    dirs = _rays(KD, KINECT_DEPTH_D, W, H) @ R_cd.T
    s, _ = _hit(o_d, dirs)
    mm = np.rint(s * 1000).astype(np.uint16)
    topics = {"/rgb/image_raw": IMG, "/rgb/camera_info": CINFO, "/depth/image_raw": IMG,
              "/depth/camera_info": CINFO, "/tf_static": TFM}  # fmt: skip
    msgs = [
        _static_tf("map", "camera_base", (0.0, 0.0, 1.0)),
        _static_tf("camera_base", "rgb_camera_link", t_rgb, KINECT_Q),
        _static_tf("camera_base", "depth_camera_link", t_depth, _quat(R_depth)),
    ]
    for i in range(2):
        ns = T0 + i * DT
        msgs += [
            (ns, "/rgb/image_raw", rb._image(ns, "rgb_camera_link", raw, "bgra8")),
            (ns, "/rgb/camera_info", _info(ns, "rgb_camera_link", "rational_polynomial", KINECT_D)),
            (ns + 1000, "/depth/image_raw", rb._image(ns, "depth_camera_link", mm, "16UC1")),
            (ns + 1000, "/depth/camera_info", _info(ns, "depth_camera_link", "rational_polynomial", KINECT_DEPTH_D, k=KD)),
        ]  # fmt: skip
    bag = rb._write(tmp_path / "k4a_unreg", topics, msgs)
    found, frames = _read(bag)
    assert (found.depth, found.depth_camera_info) == ("/depth/image_raw", "/depth/camera_info")
    assert len(frames) == 2
    for f in frames:
        assert _box_agreement(f) > 0.95


# -- image_proc's image_rect_color beside image_raw; registered depth made in the raw image -------------
RS_D = (-0.28, 0.08, 0.0005, -0.0003, -0.01)  # plumb_bob k1 k2 p1 p2 k3 (a wide colour lens)
RS = "/camera/camera"


# (colour image_raw, colour CameraInfo, registered depth, its CameraInfo, optical frame) of two drivers
# whose registered depth is made in the raw colour image: realsense-ros 4.x (rs2::align) and Azure Kinect
# (k4a_transformation_depth_image_to_color_camera); image_proc adds ``image_rect_color`` beside image_raw
LAYOUTS = {
    "realsense": (f"{RS}/color/image_raw", f"{RS}/color/camera_info", f"{RS}/aligned_depth_to_color/image_raw",
                  f"{RS}/aligned_depth_to_color/camera_info", "camera_color_optical_frame"),
    "azure_kinect": ("/rgb/image_raw", "/rgb/camera_info", "/depth_to_rgb/image_raw",
                     "/depth_to_rgb/camera_info", "rgb_camera_link"),
}  # fmt: skip


def _image_proc_bag(path, layout="realsense", n=2):
    color, info_topic, depth, depth_info, fid = LAYOUTS[layout]
    rect = color.rsplit("/", 1)[0] + "/image_rect_color"
    rgb, depth_m = _pinhole_scene()
    raw_rgb = _raw_from_pinhole(rgb, RS_D)
    raw_mm = (_raw_from_pinhole(depth_m, RS_D) * 1000).astype(np.uint16)  # registered in the raw colour image
    rect_rgb = _image_proc_rect(raw_rgb, RS_D)
    topics = {color: IMG, rect: IMG, info_topic: CINFO, depth: IMG, depth_info: CINFO, "/tf_static": TFM}
    msgs = [
        _static_tf("map", "camera_link", (0.0, 0.0, 0.3)),
        _static_tf("camera_link", fid, (0.0, 0.015, 0.0), rb.OPT_Q),
    ]
    for i in range(n):
        ns = T0 + i * DT
        info = _info(ns, fid, "plumb_bob", RS_D)
        msgs += [
            (ns, color, rb._image(ns, fid, raw_rgb, "rgb8")),
            (ns + 500, rect, rb._image(ns, fid, rect_rgb, "rgb8")),
            (ns, info_topic, info),
            (ns + 1000, depth, rb._image(ns, fid, raw_mm, "16UC1")),
            (ns + 1000, depth_info, info),
        ]
    return rb._write(path, topics, msgs)


def test_realsense_raw_colour_with_aligned_depth_keeps_the_box_colour_and_depth_together(tmp_path):
    """Control for the next test: the same recording read with ``--color-topic .../image_raw``
    (the camera the aligned depth was made in) gives frames whose red box has the box's depth:
    colour and aligned depth undistorted by one map, as realsense-ros' CameraInfo says."""
    bag = _image_proc_bag(tmp_path / "rs")
    _, frames = _read(bag, color=f"{RS}/color/image_raw")
    assert len(frames) == 2
    for f in frames:
        assert _box_agreement(f) > 0.98


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_with_image_proc_running_the_registered_depth_is_mapped_where_its_colour_is(layout, tmp_path):
    """A robot that runs image_proc records ``…/image_rect_color`` beside the driver's
    ``…/image_raw``. Both drivers' registered depth is made in the RAW colour camera:
    realsense-ros' ``aligned_depth_to_color/image_raw`` is rs2::align's output, Azure Kinect's
    ``depth_to_rgb/image_raw`` k4a's depth-to-colour transformation, each with the colour's CameraInfo
    (the lens's d, P = [K | 0]); neither is in image_proc's rectified image. With no topic options
    ``map`` picks ``image_rect_color`` (the ZED rule "registered depth is registered to the rectified
    image", ``topics._colour_score``) and then takes the raw-image depth as it is
    (``frames.depth_in_color``: no rectifier for a rectified colour), so the box's depth lands where
    the lens put it in the raw image, not where its colour is in the rectified one; nothing is said.
    Expected: whichever colour topic is chosen, the red box's pixels carry the box's 1.0 m depth (as
    in the control above; measured now: under half of them)."""
    bag = _image_proc_bag(tmp_path / layout, layout)
    found, frames = _read(bag)
    assert found.depth == LAYOUTS[layout][2]
    assert len(frames) == 2
    for f in frames:
        assert _box_agreement(f) > 0.98


# -- ZED wrapper v5.1+ topic names ----------------------------------------------------------------------
def _zed(*streams):
    """A ZED v5.1+ recording's topics: ``~/<sensor>/<color|gray>/<rect|raw>/image`` with both CameraInfo
    publishers (``…/camera_info`` and ``…/image/camera_info``), image_transport's ``/compressed``, and
    the depth map with its ``compressedDepth``."""
    z, t = "/zed/zed_node/", {}
    for s in ("rgb/color/rect", *streams):
        t |= {f"{z}{s}/image": IMG, f"{z}{s}/camera_info": CINFO, f"{z}{s}/image/camera_info": CINFO,
              f"{z}{s}/image/compressed": CIMG}  # fmt: skip
    t |= {f"{z}depth/depth_registered": IMG, f"{z}depth/camera_info": CINFO,
          f"{z}depth/depth_registered/camera_info": CINFO, f"{z}depth/depth_registered/compressedDepth": CIMG,
          f"{z}point_cloud/cloud_registered": "sensor_msgs/msg/PointCloud2", "/tf": TFM, "/tf_static": TFM}  # fmt: skip
    return t


def test_zed_v51_default_topics_are_found():
    """ZED wrapper v5.1's default configuration (``common_stereo.yaml``: ``publish_rgb: true``, raw,
    left/right and gray off) records ``~/rgb/color/rect/image`` and ``~/depth/depth_registered``:
    ``map`` must find that pair with no topic option, as it does the older names
    (test_hostile_robot_inputs covers only the pre-5.1 ``rgb/image_rect_color``)."""
    from gs_mapping.topics import discover

    f = discover(_zed())
    assert (f.color, f.depth, f.camera_info, f.depth_camera_info) == (
        "/zed/zed_node/rgb/color/rect/image",
        "/zed/zed_node/depth/depth_registered",
        "/zed/zed_node/rgb/color/rect/camera_info",
        "",
    )


@pytest.mark.parametrize(
    "streams",
    [("rgb/color/raw",), ("left/color/rect", "right/color/rect"), ("rgb/gray/rect",)],
    ids=["publish_raw", "publish_left_right", "publish_gray"],
)
def test_zed_v51_with_more_streams_still_finds_the_rectified_rgb_its_depth_is_registered_to(streams):
    """stereolabs' CHANGELOG v5.1.0 renamed ``~/rgb/image_rect_color`` → ``~/rgb/color/rect/image``,
    ``~/rgb_raw/image_raw_color`` → ``~/rgb/color/raw/image``, ``~/left/image_rect_color`` →
    ``~/left/color/rect/image``, ``~/rgb_gray/image_rect_gray`` → ``~/rgb/gray/rect/image``. With the
    old names ``map`` picks the rectified rgb image (the one ``depth_registered`` is registered to;
    test_hostile_robot_inputs.test_discovery_zed_default_topics); with the new ones, enabling
    ``video.publish_raw``, ``publish_left_right`` or ``publish_gray`` makes it refuse the recording
    as ambiguous: its scoring looks for ``image_rect`` / ``image_raw`` in the last name and for grey in
    it, and the word ``color`` now appears in left/right's names too."""
    from gs_mapping.topics import discover

    f = discover(_zed(*streams))
    assert (f.color, f.depth) == (
        "/zed/zed_node/rgb/color/rect/image",
        "/zed/zed_node/depth/depth_registered",
    )


# -- Orbbec Gemini 330: left_ir / right_ir are infrared, not colour cameras --------------------------------
def _bag_of(types: dict[str, str]):
    return SimpleNamespace(topics=[SimpleNamespace(name=n, type=t, count=5) for n, t in types.items()])


def _orbbec_gemini330_types():
    c = "/camera/"
    t = {}
    for s in ("color", "depth", "left_ir", "right_ir"):
        t |= {f"{c}{s}/image_raw": IMG, f"{c}{s}/camera_info": CINFO}
    t |= {f"{c}color/image_raw/compressed": CIMG, f"{c}depth/points": "sensor_msgs/msg/PointCloud2",
          f"{c}gyro_accel/sample": "sensor_msgs/msg/Imu", "/tf": TFM, "/tf_static": TFM}  # fmt: skip
    return t


def test_orbbec_gemini330_map_takes_the_colour_camera_and_its_depth():
    """OrbbecSDK_ROS2 names its streams ``color``, ``depth``, ``ir``, ``left_ir``, ``right_ir``
    (``ob_camera_node.cpp``), each ``/camera/<stream>/image_raw`` + ``camera_info``; depth without
    ``depth_registration`` is in its own camera (``camera_depth_optical_frame``), so it is registered
    through its CameraInfo. Not in the suite's layouts."""
    from gs_mapping.topics import discover

    f = discover(_orbbec_gemini330_types())
    assert (f.color, f.depth, f.depth_camera_info) == (
        "/camera/color/image_raw",
        "/camera/depth/image_raw",
        "/camera/depth/camera_info",
    )


def test_hd_predict_takes_orbbecs_colour_camera_not_its_infrared_pair():
    """``hd-predict`` with no ``--cameras`` takes every colour camera (``find_cameras``: "not depth,
    infrared, stereo or the like"). A Gemini 330 recording with its IR pair enabled (as visual SLAM
    setups run it) has one colour camera; its ``left_ir`` / ``right_ir`` are the infrared stereo
    pair (``stream_name_[INFRA1] = "left_ir"``), which the rule names for RealSense (``infra1``) and
    Kinect (``/ir/``) but not here: three "cameras" go to the model (and the 3-camera count picks
    the checkpoint)."""
    from gsmap_hd.predict_bag import find_cameras

    assert find_cameras(_bag_of(_orbbec_gemini330_types())) == ["/camera/color/image_raw"]


def test_invisible_light_cameras_are_one_rule_and_a_word_holding_ir_is_not_one():
    """The class of the Orbbec bug: infrared, near-infrared and thermal streams (``infra1``,
    ``/ir/``, ``left_ir``, ``ir_left``, ``nir``, ``thermal``) are neither colour nor depth, for
    ``map``'s discovery and ``hd-predict`` alike; a camera whose name only holds the letters
    (``stair_cam``, ``mirror``) still is one."""
    from gs_mapping.topics import colour_candidates, depth_candidates
    from gsmap_hd.predict_bag import find_cameras

    types = {}
    for s in ("stair_cam", "mirror", "cam/infra1", "cam/ir", "cam/left_ir", "cam/ir_left", "nir", "thermal"):
        types |= {f"/{s}/image_raw": IMG, f"/{s}/camera_info": CINFO, f"/{s}/depth/image_raw": IMG}
    want = ["/mirror/image_raw", "/stair_cam/image_raw"]
    assert colour_candidates(types) == want
    assert find_cameras(_bag_of(types)) == want
    assert depth_candidates(types) == ["/mirror/depth/image_raw", "/stair_cam/depth/image_raw"]


@pytest.mark.parametrize(
    ("topic", "rectified"),
    [
        ("/zed/zed_node/rgb/color/rect/image", True),
        ("/zed/zed_node/rgb/color/rect/image/compressed", True),
        ("/zed/zed_node/rgb/color/raw/image", False),
        ("/zed/zed_node/rgb/image_rect_color", True),
        ("/camera/color/image_raw", False),
        ("/direct/image_raw", False),
    ],
)
def test_zed_v51_rect_images_are_taken_as_rectified(topic, rectified):
    """ZED 5.1+ names the rectified image by a ``rect`` level, not ``image_rect*``: its CameraInfo
    is then P's pinhole camera (``rectify.for_images_on``), as for the older names."""
    from gs_mapping.messages import CameraIntrinsics
    from gs_mapping.rectify import for_images_on
    from gs_mapping.topics import is_rectified

    assert is_rectified(topic) is rectified
    P = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])
    intr = CameraIntrinsics(K=KM, width=W, height=H, D=np.array(RS_D), distortion_model="plumb_bob", P=P)
    got = for_images_on(intr, topic)
    assert np.allclose(got.K, P if rectified else KM) and (not np.any(got.D)) is rectified
