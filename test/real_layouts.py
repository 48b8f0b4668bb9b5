"""Test material: other recording layouts of the SAME real frames as ../shared/data/realsense_kitchen_rgbd.

- :func:`write_raw_layout`: the frames decoded and written as raw ``Image`` messages (rgb8 colour,
  16UC1 depth) on the 7-Scenes bag's topic names and TF (``map → base_link → camera``), 640x480:
  what the mapper read before it understood compressed inputs. The decoded pixels are the
  compressed bag's own, so a mapping run sees the same frames whichever layout it reads.
- :func:`write_unregistered_layout`: the registered depth reprojected into a depth camera offset
  from the colour camera (its own frame, CameraInfo and K): depth as RealSense records it without
  ``align_depth``. The reprojection here is written independently of
  ``gs_mapping.mapping.depth_registration`` (a plain per-point loop over sorted depths, nearest
  pixel), so registering it back with the product code and comparing with the real registered depth
  tests the product against the recording, not against itself.

Used by test/test_real_inputs_*.py and bench/real_inputs.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REALSENSE = "realsense_kitchen_rgbd"
RS_COLOR = "/camera/camera/color/image_raw/compressed"
RS_DEPTH = "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth"
RS_INFO = "/camera/camera/color/camera_info"


def _copy_tf(reader, writer):
    for name in ("/tf_static", "/tf"):
        info = reader.topic(name)
        writer.add_topic(name, info.type, latched=info.latched)
    for topic, stamp, msg in reader.messages(["/tf_static", "/tf"]):
        writer.write(topic, stamp, msg)


def write_raw_layout(src: Path, dst: Path, max_frames: int | None = None) -> Path:
    """The realsense bag's frames as raw Images: /camera/color/image_raw (rgb8),
    /camera/depth/image_rect_raw (16UC1 mm), /camera/color/camera_info, the same TF."""
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.messages.compressed_depth import compressed_depth_to_numpy

    counts = {"c": 0, "d": 0}
    with BagReader(src) as r, BagWriter(dst) as w:
        _copy_tf(r, w)
        w.add_topic("/camera/color/image_raw", M.IMAGE)
        w.add_topic("/camera/depth/image_rect_raw", M.IMAGE)
        w.add_topic("/camera/color/camera_info", M.CAMERA_INFO)
        for topic, stamp, msg in r.messages([RS_COLOR, RS_DEPTH, RS_INFO]):
            key = "c" if topic == RS_COLOR else "d" if topic == RS_DEPTH else None
            if key and max_frames is not None and counts[key] >= max_frames:
                continue
            s, fid = M.header_fields(msg)
            if topic == RS_COLOR:
                # Pillow decodes the JPEG bytes: the same pixels the mapper decodes from the source bag
                rgb = M.compressed_image_to_numpy(msg)
                w.write("/camera/color/image_raw", stamp, M.numpy_to_image(rgb, "rgb8", s, fid))
            elif topic == RS_DEPTH:
                mm = compressed_depth_to_numpy(msg)
                w.write("/camera/depth/image_rect_raw", stamp, M.numpy_to_image(mm, "16UC1", s, fid))
            else:
                w.write("/camera/color/camera_info", stamp, msg)
            if key:
                counts[key] += 1
    return dst


def forward_warp(depth_m: np.ndarray, K_src, T_dst_src, K_dst, size) -> np.ndarray:
    """Independent reference reprojection: every valid source pixel's 3D point → the nearest
    destination pixel; nearest depth wins (points written far to near). 0 = no depth."""
    w, h = size
    vs, us = np.nonzero(depth_m > 0)
    z = depth_m[vs, us].astype(np.float64)
    pts = np.empty((len(z), 3))
    pts[:, 0] = (us - K_src[0][2]) * z / K_src[0][0]
    pts[:, 1] = (vs - K_src[1][2]) * z / K_src[1][1]
    pts[:, 2] = z
    R, t = np.asarray(T_dst_src)[:3, :3], np.asarray(T_dst_src)[:3, 3]
    q = pts @ R.T + t
    out = np.zeros((h, w), np.float32)
    order = np.argsort(-q[:, 2])  # far first, so nearer points overwrite them
    for i in order:
        x, y, zz = q[i]
        if zz <= 0:
            continue
        u = int(round(K_dst[0][0] * x / zz + K_dst[0][2]))
        v = int(round(K_dst[1][1] * y / zz + K_dst[1][2]))
        if 0 <= u < w and 0 <= v < h:
            out[v, u] = zz
    return out


# The simulated depth camera: 4 cm to the left of colour (x points right in the optical frame),
# 5 mm down, a slight yaw, its own focal length and principal point, same size.
DEPTH_OFFSET_M = (-0.04, 0.005, 0.0)
DEPTH_YAW_RAD = 0.01
DEPTH_K = ((570.0, 0.0, 316.0), (0.0, 570.0, 243.0), (0.0, 0.0, 1.0))
DEPTH_FRAME = "camera_depth_optical_frame"


def depth_extrinsics() -> np.ndarray:
    """T_color_depth: points in the depth optical frame → the colour optical frame."""
    c, s = np.cos(DEPTH_YAW_RAD), np.sin(DEPTH_YAW_RAD)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = DEPTH_OFFSET_M
    return T


def write_unregistered_layout(src: Path, dst: Path, max_frames: int = 3) -> tuple[Path, list]:
    """Colour as in ``src``; depth reprojected into the offset depth camera (16UC1
    ``/camera/camera/depth/image_rect_raw`` in ``camera_depth_optical_frame`` with its own
    ``/camera/camera/depth/camera_info``); ``/tf_static`` gains colour → depth. Returns the bag and
    the real registered depths (metres, 0 invalid) of the frames written."""
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages.camera_image import depth_to_metres

    T_color_depth = depth_extrinsics()
    T_depth_color = np.linalg.inv(T_color_depth)
    registered = []
    n = n_color = 0
    with BagReader(src) as r, BagWriter(dst) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        w.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        for _t, stamp, msg in r.messages(["/tf"]):
            w.write("/tf", stamp, msg)
        statics = []
        color_frame = None
        for _t, _s, msg in r.messages(["/tf_static"]):
            statics += list(M.tf_message_to_transforms(msg))
        for _t, _s, msg in r.messages([RS_INFO]):
            color_frame = str(msg.header.frame_id)
            K_color = np.asarray(msg.k, np.float64).reshape(3, 3)
            break
        statics.append(
            TransformStamped(color_frame, DEPTH_FRAME, r.start_ns, Transform.from_matrix(T_color_depth))
        )
        w.write("/tf_static", r.start_ns, M.transforms_to_tf_message(statics))
        w.add_topic(RS_COLOR, M.COMPRESSED_IMAGE)
        w.add_topic(RS_INFO, M.CAMERA_INFO)
        w.add_topic("/camera/camera/depth/image_rect_raw", M.IMAGE)
        w.add_topic("/camera/camera/depth/camera_info", M.CAMERA_INFO)
        depth_info = None
        for topic, stamp, msg in r.messages([RS_COLOR, RS_DEPTH, RS_INFO]):
            if topic == RS_DEPTH:
                if n >= max_frames:
                    continue
                s, _fid = M.header_fields(msg)
                d = np.nan_to_num(depth_to_metres(msg), nan=0.0)
                registered.append(d)
                warped = forward_warp(d, K_color, T_depth_color, DEPTH_K, (d.shape[1], d.shape[0]))
                mm = np.rint(warped * 1000).astype(np.uint16)
                w.write(
                    "/camera/camera/depth/image_rect_raw",
                    stamp,
                    M.numpy_to_image(mm, "16UC1", s, DEPTH_FRAME),
                )
                depth_info = M.intrinsics_to_camera_info(
                    M.CameraIntrinsics(d.shape[1], d.shape[0], np.asarray(DEPTH_K), frame_id=DEPTH_FRAME),
                    stamp_ns=s,
                )
                w.write("/camera/camera/depth/camera_info", stamp, depth_info)
                n += 1
            elif topic != RS_COLOR or n_color < max_frames:
                w.write(topic, stamp, msg)
                n_color += topic == RS_COLOR
    return dst, registered


def write_subset(src: Path, dst: Path, max_frames: int) -> Path:
    """The bag as recorded (every topic, compressed as it is), cut after ``max_frames`` colour images."""
    from gs_mapping.bag import BagReader, BagWriter

    with BagReader(src) as r, BagWriter(dst) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        end = None
        for n, (_t, stamp, _m) in enumerate(r.messages([RS_COLOR])):
            if n == max_frames - 1:
                end = stamp
                break
        for topic, stamp, msg in r.messages([t.name for t in r.topics]):
            if end is None or stamp <= end:
                w.write(topic, stamp, msg)
    return dst
