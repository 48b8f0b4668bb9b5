"""Outside review of issue 16 (real robot recordings), ninth pass: LiDAR + camera recordings as the
common LiDAR drivers write them, checked against each driver's own PointCloud2 layout and frame
conventions (read in the drivers' sources for this review):

- Ouster (ouster-lidar/ouster-ros, ``os_point.h`` / ``point_cloud_compose.h``): ``ouster_ros::Point``
  is PCL's aligned XYZ (x, y, z at 0, 4, 8 and 4 bytes of padding), ``intensity`` f4 at 16, ``t`` u4
  at 20 (ns since the scan's stamp), ``reflectivity`` u2 at 24, ``ring`` u2 at 26, ``ambient`` u2 at
  28, ``range`` u4 at 32, ``point_step`` 48; the cloud is organized (height = beams, width =
  columns). A column with no return is written by the SDK's ``cartesianT(points, range, direction,
  offset)`` as x = y = z = 0 (ouster-ros before it passed ``quiet_NaN()`` as the invalid value,
  ros2_ouster, the ROS 1 driver: most recorded Ouster data), NaN in newer releases. The cloud is in
  ``os_sensor`` or, with ``point_cloud_frame:=os_lidar``, in ``os_lidar``, which ``/tf_static`` puts
  under ``os_sensor`` turned 180 deg about z and 36.18 mm up (OS1 ``lidar_to_sensor_transform``).
- Velodyne (ros-drivers/velodyne, ``pointcloudXYZIRT.cc``): x, y, z, intensity f4, ``ring`` u2 at 16,
  ``time`` f4 at 18 (seconds relative to the scan), ``point_step`` 22, frame ``velodyne``.
- Livox (Livox-SDK/livox_ros_driver2, ``lddc.cpp``, ``xfer_format`` 0): x, y, z, intensity f4, ``tag``
  u1 at 16, ``line`` u1 at 17, ``timestamp`` f8 at 18 (unaligned), ``point_step`` 26, frame
  ``livox_frame``; ``xfer_format`` 1 is ``livox_ros_driver2/msg/CustomMsg``, not a PointCloud2.
- Hesai (HesaiLidar_ROS_2.0, ``source_driver_ros2.hpp``): x, y, z f4, ``intensity`` u1 at 12,
  ``ring`` u2 at 13, ``timestamp`` f8 at 15 (absolute seconds; the header stamp is the first
  point's), ``point_step`` 23: nothing aligned.
- RoboSense (rslidar_sdk, ``source_pointcloud_ros.hpp``, XYZIRT): x, y, z, intensity f4, ``ring`` u2
  at 16, ``timestamp`` f8 at 18, ``point_step`` 26; the organized cloud (height = rings) has NaN
  for no return.

Bags are written with the ``rosbags`` writer (the helpers of ``test_hostile_robot_inputs``);
expected depths come from a numpy projection with hand-built rotation matrices. Known bugs are
``xfail(strict=True)``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402

T, PC2 = rb.T, rb.PC2
T0, DT, W, H, K, FX = rb.T0, rb.DT, rb.W, rb.H, rb.K, rb.FX
CAM = (0.1, 0.0, 0.2)  # base_link -> camera_link (robot_bag's camera), x forward
_CODES = {"f4": 7, "f8": 8, "u1": 2, "u2": 4, "u4": 6}


# -- clouds laid out as each driver writes them ------------------------------------------------------
def _layout(spec, point_step):
    """[(name, offset, 'f4'|...)] -> a structured little-endian dtype of itemsize point_step."""
    return np.dtype(
        {
            "names": [n for n, _, _ in spec],
            "formats": ["<" + c for _, _, c in spec],
            "offsets": [o for _, o, _ in spec],
            "itemsize": point_step,
        }
    )


OUSTER = _layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 16, "f4"), ("t", 20, "u4"),
     ("reflectivity", 24, "u2"), ("ring", 26, "u2"), ("ambient", 28, "u2"), ("range", 32, "u4")], 48,
)  # fmt: skip
VELODYNE = _layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "f4"), ("ring", 16, "u2"),
     ("time", 18, "f4")], 22,
)  # fmt: skip
LIVOX = _layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "f4"), ("tag", 16, "u1"),
     ("line", 17, "u1"), ("timestamp", 18, "f8")], 26,
)  # fmt: skip
HESAI = _layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "u1"), ("ring", 13, "u2"),
     ("timestamp", 15, "f8")], 23,
)  # fmt: skip
ROBOSENSE = _layout(
    [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "f4"), ("ring", 16, "u2"),
     ("timestamp", 18, "f8")], 26,
)  # fmt: skip


def _cloud(ns, fid, dtype, pts, extra=None, dense=False):
    """A PointCloud2 of ``pts`` (h, w, 3) in ``dtype``'s layout (organized when h > 1); ``extra``:
    {field: (h, w) values}. PointFields listed as the drivers list them, in offset order."""
    h, w = pts.shape[:2]
    rec = np.zeros((h, w), dtype)
    for k, c in enumerate("xyz"):
        rec[c] = pts[..., k]
    for name, vals in (extra or {}).items():
        rec[name] = vals
    PF = T["sensor_msgs/msg/PointField"]
    fields = [
        PF(name=n, offset=dtype.fields[n][1], datatype=_CODES[dtype.fields[n][0].str[1:]], count=1)
        for n in dtype.names
    ]
    return T[PC2](
        header=rb._hdr(ns, fid), height=h, width=w, fields=fields, is_bigendian=False,
        point_step=dtype.itemsize, row_step=dtype.itemsize * w,
        data=np.frombuffer(rec.tobytes(), np.uint8).copy(), is_dense=dense,
    )  # fmt: skip


def _rot(axis, deg):
    """A hand-written rotation matrix and its quaternion (x, y, z, w) about a principal axis."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    R = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }[axis]
    q = [0.0, 0.0, 0.0, np.cos(a / 2)]
    q["xyz".index(axis)] = np.sin(a / 2)
    return np.array(R, float), tuple(q)


def _wall(rows, cols, x=1.5):
    """(rows, cols, 3) points of a wall ``x`` metres ahead (x forward, y left, z up), 5 cm apart:
    at 1.5 m each lands on a pixel centre of robot_bag's camera (no rounding ties)."""
    yy, zz = np.meshgrid((np.arange(cols) - (cols - 1) / 2) * 0.05, ((rows - 1) / 2 - np.arange(rows)) * 0.05)
    return np.stack([np.full(yy.shape, x), yy, zz], -1)


def _expected_depth(p_cam_link):
    """Points in camera_link (x forward, y left, z up) -> the camera's nearest-point z-depth image,
    as a pinhole projection by hand (optical: x = -y, y = -z, z = x)."""
    p = p_cam_link[np.isfinite(p_cam_link).all(1)]
    z = p[:, 0]
    u = np.rint(FX * -p[:, 1] / z + K[2]).astype(int)
    v = np.rint(FX * -p[:, 2] / z + K[5]).astype(int)
    ok = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    out = np.full((H, W), np.inf)
    np.minimum.at(out, (v[ok], u[ok]), z[ok])
    out[np.isinf(out)] = 0.0
    return out


def _static(*links):
    """robot_bag's camera (base_link -> camera_link -> cam_optical) plus the LiDAR's own links, each on
    its own /tf_static message, as two broadcasters (robot_state_publisher, the driver) publish them."""
    cam = [rb._tf(T0, "base_link", "camera_link", CAM), rb._tf(T0, "camera_link", "cam_optical", q=rb.OPT_Q)]
    return [cam, [rb._tf(T0, parent, child, xyz, q) for parent, child, xyz, q in links]]


# -- Ouster's zero points for no return -------------------------------------------------------------
def test_ouster_zero_points_for_no_return_are_not_taken_as_points_at_the_sensor(tmp_path):
    """ouster-ros (before NaN), ros2_ouster and the ROS 1 driver write a beam with no return as
    x = y = z = 0 in an organized cloud (the SDK's cartesianT with range 0). Those are no
    measurement: the camera's depth must be the projection of the returns only (numpy). With the
    LiDAR 0.8 m ahead of the camera (a roof LiDAR seen from a surround rig's side or rear camera, a
    bumper LiDAR), its origin is in the camera's view and every no-return lands there at 0.8 m, in
    front of the wall at 2.3 m."""
    wall = _wall(16, 40)
    wall[:, ::3] = 0.0  # every third column no return, as a window or the sky gives
    rng = np.linalg.norm(wall, axis=-1)
    extra = {"ring": np.arange(16)[:, None] * np.ones((1, 40)), "range": np.rint(rng * 1000)}
    static = _static(("base_link", "os_sensor", (CAM[0] + 0.8, 0.0, CAM[2]), (0.0, 0.0, 0.0, 1.0)))
    bag = rb.robot_bag(
        tmp_path / "b",
        depth=lambda ns, _f, _d: _cloud(ns, "os_sensor", OUSTER, wall, extra, dense=True),
        depth_topic="/ouster/points", depth_type=PC2, cfid="cam_optical", tf_static=static,
    )  # fmt: skip
    frames = rb._frames(bag, cloud_topic="/ouster/points")
    assert len(frames) == 4
    p = wall.reshape(-1, 3).astype(np.float32).astype(np.float64)
    want = _expected_depth(p[np.linalg.norm(p, axis=1) > 0] + [0.8, 0.0, 0.0])
    for f in frames:
        bad = np.argwhere(~np.isclose(f.depth, want, atol=1e-4))
        assert not len(bad), [(tuple(b), float(f.depth[tuple(b)]), float(want[tuple(b)])) for b in bad]


# -- each driver's layout in its own frame convention -----------------------------------------------
def _driver_case(kind):
    """(frame, dtype, points in the cloud's frame (h, w, 3), extra fields, static links, points in
    camera_link): every LiDAR looks at the same wall 1.5 m ahead of camera_link."""
    truth = _wall(12, 30) + [0.0, 0.05, 0.05]  # in camera_link: 30 x 12 pixels, off-centre (no symmetry)
    if kind == "robosense":
        truth[::4, ::5] = np.nan  # rslidar_sdk: NaN for no return, organized, is_dense false
    if kind == "ouster_os_lidar":
        # ouster-ros: base_link -> os_sensor (the mount), os_sensor -> os_lidar yaw 180 deg, 36.18 mm up
        R, q = _rot("z", 180.0)
        t = np.array([0.0, 0.0, 0.03618])
        links = [
            ("base_link", "os_sensor", CAM, (0.0, 0.0, 0.0, 1.0)),
            ("os_sensor", "os_lidar", tuple(t), q),
        ]
        pts = (truth - t) @ R  # R^T (p - t), row vectors
        extra = {"t": np.arange(30)[None, :] * 3000 * np.ones((12, 1)), "ring": np.arange(12)[:, None]}
        return "os_lidar", OUSTER, pts, extra, links, truth
    if kind == "velodyne":  # mounted turned 135 deg about z, on a 0.3 m post
        R, q = _rot("z", 135.0)
        t = np.array([0.0, 0.0, 0.3])
        pts = ((truth - t) @ R).reshape(1, -1, 3)
        extra = {"ring": np.tile(np.arange(12), 30)[None, :], "time": np.linspace(0, 0.1, 360)[None, :]}
        return "velodyne", VELODYNE, pts, extra, [("camera_link", "velodyne", tuple(t), q)], truth
    if kind == "livox":  # pitched 20 deg down, 5 cm to the left
        R, q = _rot("y", 20.0)
        t = np.array([0.0, 0.05, 0.0])
        pts = ((truth - t) @ R).reshape(1, -1, 3)
        extra = {"line": np.tile(np.arange(6), 60)[None, :], "tag": 0x10, "timestamp": 1.7e9}
        return "livox_frame", LIVOX, pts, extra, [("camera_link", "livox_frame", tuple(t), q)], truth
    if kind == "hesai":  # rolled 10 deg
        R, q = _rot("x", 10.0)
        t = np.array([-0.1, 0.0, 0.1])
        pts = ((truth - t) @ R).reshape(1, -1, 3)
        extra = {
            "ring": np.tile(np.arange(12), 30)[None, :],
            "timestamp": 1.7e9 + np.linspace(0, 0.1, 360)[None, :],
        }
        return "hesai_lidar", HESAI, pts, extra, [("camera_link", "hesai_lidar", tuple(t), q)], truth
    R, q = _rot("z", -90.0)  # robosense
    t = np.array([0.0, 0.0, 0.25])
    pts = (truth - t) @ R
    extra = {"ring": np.arange(12)[:, None] * np.ones((1, 30)), "timestamp": 1.7e9}
    return "rslidar", ROBOSENSE, pts, extra, [("camera_link", "rslidar", tuple(t), q)], truth


@pytest.mark.parametrize("kind", ["ouster_os_lidar", "velodyne", "livox", "hesai", "robosense"])
def test_driver_clouds_in_their_own_frames_project_as_a_hand_computation(kind, tmp_path):
    """Each driver's exact PointField layout (padding, u1/u2 fields, unaligned f8 at 15 and 18), in its
    frame convention, rotated on its mount by /tf_static (Ouster's os_lidar: 180 deg about z under
    os_sensor): the camera's depth is the numpy projection of the same wall, whatever the layout
    and rotation (a rotation applied transposed, or a field offset ignored, moves or loses it). The
    suite's own LiDAR tests mount the cloud frame unrotated. The robot stands still: the points'
    times then move nothing (deskewing a moving robot's scans: test_outside_lidar_deskew.py)."""
    frame, dtype, pts, extra, links, truth = _driver_case(kind)
    bag = rb.robot_bag(
        tmp_path / "b",
        depth=lambda ns, _f, _d: _cloud(ns, frame, dtype, pts, extra),
        depth_topic="/lidar/points", depth_type=PC2, cfid="cam_optical", tf_static=_static(*links),
        tf_dyn=lambda ns, i: [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link")],
    )  # fmt: skip
    frames = rb._frames(bag, cloud_topic="/lidar/points")
    assert len(frames) == 4
    want = _expected_depth(truth.reshape(-1, 3))
    for f in frames:
        # every point lands on a pixel centre: the same pixels, the same depths (float32 storage)
        assert np.array_equal(f.depth > 0, want > 0), (int((f.depth > 0).sum()), int((want > 0).sum()))
        np.testing.assert_allclose(f.depth[want > 0], want[want > 0], atol=1e-4)


# -- per-point time -------------------------------------------------------------------------------------
def test_ouster_points_are_placed_where_the_robot_was_when_each_was_measured(tmp_path):
    """ouster-ros stamps a scan at its first column and gives each point ``t``, the ns since then;
    the front of a spinning LiDAR is measured about half a turn (50 ms at 10 Hz) later. Driving at
    2 m/s towards a wall, a point measured at stamp + t is where the robot was at stamp + t (TF),
    the wall 0.1 m nearer than it was at the stamp: placed by its own time (what LIO/LiDAR mappers do
    with ``t``) the camera sees the wall where it is (hand computation), not 0.1 m too near."""
    speed, wall_x = 2.0, 3.0  # m/s along map x; the wall at map x = 3 m
    cols = 40
    t_col = (40_000_000 + np.arange(cols) * 500_000).astype(np.uint32)  # 40..59.5 ms after the stamp

    def cloud(ns, _f, _d):
        i = (ns - T0) // DT
        x_base = speed * i * DT / 1e9  # TF: odom -> base_link at ns
        d = wall_x - CAM[0] - (x_base + speed * t_col / 1e9)  # distance measured at ns + t
        pts = _wall(16, cols)
        pts[..., 0] = d[None, :]
        return _cloud(ns, "os_sensor", OUSTER, pts, {"t": t_col[None, :] * np.ones((16, 1))})

    bag = rb.robot_bag(
        tmp_path / "b", depth=cloud, depth_topic="/ouster/points", depth_type=PC2, cfid="cam_optical",
        tf_static=_static(("base_link", "os_sensor", CAM, (0.0, 0.0, 0.0, 1.0))),
        tf_dyn=lambda ns, i: [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (speed * i * DT / 1e9, 0, 0))],
    )  # fmt: skip
    frames = rb._frames(bag, cloud_topic="/ouster/points")
    assert len(frames) == 4
    for i, f in enumerate(frames):
        true = wall_x - CAM[0] - speed * i * DT / 1e9  # the camera's distance to the wall at its stamp
        d = f.depth[f.depth > 0]
        assert len(d) > 50
        np.testing.assert_allclose(d, true, atol=0.01)


# -- Livox CustomMsg ----------------------------------------------------------------------------------------
def test_livox_custom_msg_cloud_is_read_not_refused(tmp_path, monkeypatch):
    """livox_ros_driver2 with ``xfer_format`` 1 (what FAST-LIO and most Livox users record) publishes
    ``livox_ros_driver2/msg/CustomMsg``: ``info`` lists it, and ``map --cloud-topic`` reads it
    (session #28; it was refused by type before): here its 20 points are too few to map, so the
    one line says so of the four colour/cloud pairs it made, not of the type (test_livox_* map
    real scenes from it)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    ts.register(get_types_from_msg(
        "uint32 offset_time\nfloat32 x\nfloat32 y\nfloat32 z\nuint8 reflectivity\nuint8 tag\nuint8 line\n",
        "livox_ros_driver2/msg/CustomPoint",
    ))  # fmt: skip
    ts.register(get_types_from_msg(
        "std_msgs/Header header\nuint64 timebase\nuint32 point_num\nuint8 lidar_id\nuint8[3] rsvd\n"
        "livox_ros_driver2/CustomPoint[] points\n",
        "livox_ros_driver2/msg/CustomMsg",
    ))  # fmt: skip
    CM, P = "livox_ros_driver2/msg/CustomMsg", ts.types["livox_ros_driver2/msg/CustomPoint"]

    def custom(ns, fid, _d):
        pts = [
            P(offset_time=k * 1000, x=1.5, y=0.01 * k, z=0.0, reflectivity=9, tag=0, line=k % 6)
            for k in range(20)
        ]
        return ts.types[CM](header=rb._hdr(ns, fid), timebase=ns, point_num=20, lidar_id=0, rsvd=np.zeros(3, np.uint8), points=pts)  # fmt: skip

    monkeypatch.setattr(rb, "TS", ts)  # robot_bag's writer serializes with this typestore
    bag = rb.robot_bag(
        tmp_path / "b", depth=custom, depth_topic="/livox/lidar", depth_type=CM, cfid="cam_optical"
    )
    exe = str(Path(sys.executable).with_name("gs-mapping"))
    info = subprocess.run([exe, "info", str(bag)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "livox_ros_driver2/msg/CustomMsg" in info.stdout, info.stderr
    pytest.importorskip("torch")  # (map needs it past reading the bag)
    r = subprocess.run(
        [exe, "map", str(bag), "--out", str(tmp_path / "o"), "--cloud-topic", "/livox/lidar", "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    err = r.stderr.strip()
    last = err.splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in err and last.startswith("gs-mapping map: error:"), err
    assert "CustomMsg" not in err and "4 colour/depth pairs" in last and "no usable frame" in last, err


# -- parallax: what the LiDAR sees and the camera does not ----------------------------------------------
def _raycast_board_and_wall(origin, elev_deg, azim_deg, board=(1.0, 0.25, 0.15), wall_x=3.0):
    """LiDAR returns (N, 3) in camera_link of rays from ``origin``: a board at x = board[0]
    (|y| <= board[1], |z| <= board[2]) before a wall at x = wall_x; a hand ray cast."""
    el, az = np.meshgrid(np.radians(elev_deg), np.radians(azim_deg), indexing="ij")
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    s_board = (board[0] - origin[0]) / d[:, 0]
    hit = origin + s_board[:, None] * d
    on_board = (np.abs(hit[:, 1]) <= board[1]) & (np.abs(hit[:, 2]) <= board[2])
    s = np.where(on_board, s_board, (wall_x - origin[0]) / d[:, 0])
    return origin + s[:, None] * d


def test_lidar_points_hidden_from_the_camera_are_not_its_depth(tmp_path):
    """A LiDAR 0.3 m above the camera (every roof LiDAR + camera rig) sees the wall 3 m away just
    below a board 1 m away, where the camera's view of the wall is hidden by the board. Its beams
    are sparser than the camera's pixels (here 4 deg apart against 1.9 deg pixels; a VLP-16's 2 deg
    against a real camera's 0.05-0.1 deg pixels is sparser still), so rows of the board's pixels
    get no board point and the per-pixel z-buffer keeps the wall's: the board's colour would be put
    3 m away. Hand ray cast: inside the
    board's silhouette (one pixel in from its edge) the camera sees only the board, 1.0 m, so no
    depth there may be the wall's. (Depth images are splatted over their footprint and do not show
    this; LiDAR-camera fusion filters such points by a visibility check.)"""
    origin = np.array([0.0, 0.0, 0.3])
    pts = _raycast_board_and_wall(origin, np.arange(-23.0, 8.0, 4.0), np.arange(-30.0, 30.01, 0.5))
    lidar = (pts - origin)[None]  # in the LiDAR frame (camera_link axes, 0.3 m up)
    bag = rb.robot_bag(
        tmp_path / "b",
        depth=lambda ns, _f, _d: _cloud(ns, "velodyne", VELODYNE, lidar),
        depth_topic="/velodyne_points", depth_type=PC2, cfid="cam_optical",
        tf_static=_static(("camera_link", "velodyne", tuple(origin), (0.0, 0.0, 0.0, 1.0))),
    )  # fmt: skip
    frames = rb._frames(bag, cloud_topic="/velodyne_points")
    assert len(frames) == 4
    # the board's silhouette in the camera, one pixel in from its edge (hand pinhole, optical axes)
    vv, uu = np.mgrid[0:H, 0:W]
    y_at_1m, z_at_1m = -(uu - K[2]) / FX, -(vv - K[5]) / FX
    inside = (np.abs(y_at_1m) <= 0.25 - 1.0 / FX) & (np.abs(z_at_1m) <= 0.15 - 1.0 / FX)
    assert inside.sum() > 80
    for f in frames:
        d = f.depth[inside]
        assert (d > 0).sum() > 10, "the board's own points must be there"
        wall = np.argwhere(inside & (f.depth > 1.5))
        assert not len(wall), (
            f"{len(wall)} of the board's {int(inside.sum())} pixels have the wall's depth: {wall[:5].tolist()}"
        )
