"""Outside review of issue 16 (real robot recordings), fourth pass: what the mapper makes of a
recording's poses, pairs and depth, against tf2's, message_filters' and librealsense's rules and a
hand computation. Robot TF trees whose edges run at different rates (``map -> odom`` at 2 Hz,
``odom -> base_link`` at 10 Hz, a pitched camera mount, a quaternion off unit length as drivers
publish it), TF that reaches a live node a moment after the image, a depth topic the recorder logs
half a second behind colour, registered depth stamped apart from colour on a moving robot, a depth
camera much coarser than colour, and the real RealSense-layout kitchen frames with their TF thinned
to 5 Hz.

Expected values come from outside the component: tf2's lookup rules as ``tf2/src/cache.cpp`` and
``buffer_core.cpp`` (ros2/geometry2) state them (per edge: exact sample, else linear translation and
slerp between the two samples around the stamp, nothing outside them, static edges at every time;
compose up the tree), written here with SciPy's ``Rotation``/``Slerp``; tf2_ros's MessageFilter,
which holds a message until its transform can be looked up (never extrapolating into the future);
message_filters' ApproximateTime (``src/message_filters/__init__.py``: a message is paired with the
queued one of the other topic whose header stamp is nearest, within slop) over a finished
recording, where every colour image has a depth of the same header stamp; librealsense's
``align_images`` (each depth pixel fills the whole box between its corners' projections in the
other camera, however large); OpenCV's PNG decoder for compressedDepth; and hand-computed geometry
(a robot driving at 1 m/s towards a wall). Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import bisect

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
Slerp = pytest.importorskip("scipy.spatial.transform").Slerp

import test_hostile_robot_inputs as rb  # noqa: E402  (its rosbags-only bag builders)

MS = 1_000_000
T0 = rb.T0
COLOR, DEPTH, INFO = (
    "/camera/color/image_raw",
    "/camera/aligned_depth_to_color/image_raw",
    "/camera/color/camera_info",
)
TOPICS = {COLOR: rb.IMG, DEPTH: rb.IMG, INFO: rb.CINFO, "/tf": rb.TFM, "/tf_static": rb.TFM}
NODE_TOPICS = f"      topics: {{color: {COLOR}, depth: {DEPTH}, camera_info: {INFO}}}\n"


# -- tf2's lookup, written from geometry2's cache.cpp / buffer_core.cpp with SciPy's rotations ----------
class Tf2:
    """``T_target_source`` at a stamp as tf2's BufferCore gives it. Per edge (TimeCache::findClosest,
    getData): a sample at the stamp is used as is; between two samples translation is interpolated
    linearly and rotation slerped (shortest way); a stamp before the first or after the last sample is
    an extrapolation error (None here); a static edge (StaticCache) holds at every time. The chain is
    composed up to the common root. Quaternions are normalised by SciPy, as tf2's Matrix3x3 does."""

    def __init__(self):
        self.edges: dict[str, tuple[str, bool, dict]] = {}

    def add(self, msg, static: bool):
        for ts in msg.transforms:
            parent, child = ts.header.frame_id.lstrip("/"), ts.child_frame_id.lstrip("/")
            stamp = ts.header.stamp.sec * 10**9 + ts.header.stamp.nanosec
            tr, q = ts.transform.translation, ts.transform.rotation
            sample = (np.array([tr.x, tr.y, tr.z]), np.array([q.x, q.y, q.z, q.w]))
            entry = self.edges.setdefault(child, (parent, static, {}))
            if static:
                entry[2].clear()
            entry[2][0 if static else stamp] = sample

    def _edge(self, child: str, stamp: int):
        parent, static, samples = self.edges[child]
        if static:
            t, q = next(iter(samples.values()))
            return parent, t, Rotation.from_quat(q)
        s = sorted(samples)
        if stamp in samples:
            t, q = samples[stamp]
            return parent, t, Rotation.from_quat(q)
        if stamp < s[0] or stamp > s[-1]:
            return parent, None, None
        i = bisect.bisect_right(s, stamp)
        (t0, q0), (t1, q1) = samples[s[i - 1]], samples[s[i]]
        a = (stamp - s[i - 1]) / (s[i] - s[i - 1])
        return parent, (1 - a) * t0 + a * t1, Slerp([0.0, 1.0], Rotation.from_quat([q0, q1]))([a])[0]

    def _to_root(self, frame: str, stamp: int):
        T = np.eye(4)
        while frame in self.edges:
            frame, t, r = self._edge(frame, stamp)
            if t is None:
                return None, frame
            E = np.eye(4)
            E[:3, :3], E[:3, 3] = r.as_matrix(), t
            T = E @ T
        return T, frame

    def lookup(self, target: str, source: str, stamp: int):
        (Ts, root_s), (Tt, root_t) = self._to_root(source, stamp), self._to_root(target, stamp)
        if Ts is None or Tt is None:
            return None  # tf2: extrapolation error
        assert root_s == root_t
        return np.linalg.inv(Tt) @ Ts


def _tfm(*transforms):
    return rb.T[rb.TFM](transforms=list(transforms))


def _quat_z(yaw, norm=1.0):
    return tuple(norm * np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]))


def _wall_depth(z=1.5):
    return np.full((rb.H, rb.W), int(round(z * 1000)), np.uint16)


def _spy_frames(monkeypatch):
    """Every frame mapper_node hands the mapper: (colour stamp, T_map_cam)."""
    from gs_mapping.mapping.mapper import IncrementalMapper

    seen, add = [], IncrementalMapper.add_frame

    def spy(self, frame):
        seen.append((frame.stamp_ns, frame.camera.T_map_cam.copy()))
        return add(self, frame)

    monkeypatch.setattr(IncrementalMapper, "add_frame", spy)
    return seen


# -- poses through a robot TF tree with edges at different rates ---------------------------------------
def test_poses_through_a_chain_of_edges_at_different_rates_are_tf2s_and_points_land_on_the_wall(tmp_path):
    """A robot TF tree as a real robot records it: ``map -> odom`` at 2 Hz (a localiser's slow
    corrections, with a yaw), ``odom -> base_link`` at 10 Hz while the robot turns at 0.5 rad/s (its
    quaternion 0.4 % off unit length, which tf2 takes), a camera mount pitched 10° down on
    /tf_static and the REP-103 optical rotation; images at 30 Hz, 7 ms off the TF stamps, two of
    them 0.2 s past the last transform. Each frame's T_map_cam must be tf2's (each edge interpolated
    at the image stamp, then composed), the two late frames refused as tf2 refuses them, and the
    back-projected depth (a wall 1.5 m ahead of the camera) must be where K and that pose put it."""
    tf2 = Tf2()
    static = _tfm(
        rb._tf(T0, "base_link", "camera_link", (0.2, 0.0, 0.5), tuple(Rotation.from_euler("y", 10, degrees=True).as_quat())),
        rb._tf(T0, "camera_link", "cam_optical", q=rb.OPT_Q),
    )  # fmt: skip
    msgs = [(T0 - 1, "/tf_static", static)]
    tf2.add(static, True)
    for k in range(0, 4):  # map -> odom, 2 Hz
        ns = T0 + k * 500 * MS
        m = _tfm(rb._tf(ns, "map", "odom", (0.3 + 0.02 * k, -0.1 * k, 0.0), _quat_z(0.4 + 0.05 * k)))
        msgs.append((ns, "/tf", m))
        tf2.add(m, False)
    for k in range(0, 16):  # odom -> base_link, 10 Hz, turning
        ns = T0 + k * 100 * MS
        yaw = 0.05 * k
        m = _tfm(
            rb._tf(ns, "odom", "base_link", (np.sin(yaw) * 2, 2 - 2 * np.cos(yaw), 0.0), _quat_z(yaw, 1.004))
        )
        msgs.append((ns, "/tf", m))
        tf2.add(m, False)
    stamps = [T0 + 7 * MS + k * 33_333_333 for k in range(0, 45, 4)] + [T0 + 1700 * MS, T0 + 1733 * MS]
    for i, ns in enumerate(stamps):
        rgb, _ = rb._scene(i)
        msgs += [(ns + 5 * MS, COLOR, rb._image(ns, "cam_optical", rgb, "rgb8")),
                 (ns + 6 * MS, DEPTH, rb._image(ns, "cam_optical", _wall_depth(1.5), "16UC1")),
                 (ns + 5 * MS, INFO, rb._info(ns, "cam_optical"))]  # fmt: skip
    bag = rb._write(tmp_path / "b", TOPICS, msgs)

    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig

    stats = FrameStats()
    frames = list(read_frames(bag, TopicsConfig(color=COLOR, depth=DEPTH, camera_info=INFO), stats))
    want = {s: tf2.lookup("map", "cam_optical", s) for s in stamps}
    assert [f.stamp_ns for f in frames] == [s for s in stamps if want[s] is not None]
    assert stats.no_pose == 2  # the two frames past the TF data
    K = np.array(rb.K).reshape(3, 3)
    v, u = np.mgrid[0 : rb.H, 0 : rb.W]
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1) * 1.5
    for f in frames:
        T = want[f.stamp_ns]
        assert np.allclose(f.camera.T_map_cam, T, atol=1e-9), f.stamp_ns
        points = f.camera.backproject(f.depth)
        assert np.allclose(points, ray @ T[:3, :3].T + T[:3, 3], atol=1e-6)


# -- a live node: TF a moment after the image -----------------------------------------------------------
def _late_tf_bag(path, offset_ms, n=6, speed=1.0):
    """odom -> base_link at 10 Hz, the robot driving at ``speed`` m/s; images ``offset_ms`` after each
    transform, logged 5 ms after their stamp, so the next transform reaches the node after the image."""
    tf2 = Tf2()
    static = _tfm(rb._tf(T0, "base_link", "cam", q=rb.OPT_Q))
    msgs = [(T0 - 1, "/tf_static", static)]
    tf2.add(static, True)
    for k in range(-1, n + 2):
        ns = T0 + k * 100 * MS
        m = _tfm(rb._tf(ns, "map", "base_link", (speed * k * 0.1, 0.0, 0.0)))
        msgs.append((ns + MS, "/tf", m))
        tf2.add(m, False)
    stamps = [T0 + k * 100 * MS + offset_ms * MS for k in range(n)]
    for i, ns in enumerate(stamps):
        rgb, _ = rb._scene(i)
        msgs += [(ns + 5 * MS, COLOR, rb._image(ns, "cam", rgb, "rgb8")),
                 (ns + 5 * MS, DEPTH, rb._image(ns, "cam", _wall_depth(), "16UC1")),
                 (ns + 5 * MS, INFO, rb._info(ns, "cam"))]  # fmt: skip
    return rb._write(path, TOPICS, msgs), tf2, stamps


@pytest.mark.parametrize(
    "offset_ms",
    [
        70,
        40,
    ],
)
def test_live_mapper_waits_for_the_transform_after_the_image_and_interpolates(
    offset_ms, monkeypatch, tmp_path
):
    """tf2 never extrapolates into the future (cache.cpp: ``target_time > latest_time`` is an
    ExtrapolationException), and tf2_ros's MessageFilter holds an image until its transform can be
    looked up; mapper_node says it does the same (``tf_wait_s``: "as tf2's message filter does").
    A robot at 1 m/s with odometry at 10 Hz and a camera stamped 40 or 70 ms after each odometry
    sample, replayed in log order (the image reaches the node before the next odometry): each
    frame's pose must be the one interpolated at its stamp, as `gs-mapping map` on the same bag
    gives it. At 70 ms the node waited and interpolated; at 40 ms (inside tf_tolerance_s = 0.05 s)
    it took the older sample as it was: every frame placed 4 cm behind where it was, silently."""
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import replay_bag

    bag, tf2, stamps = _late_tf_bag(tmp_path / "b", offset_ms)
    seen = _spy_frames(monkeypatch)
    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(rb.FAST + NODE_TOPICS)
    mapper = node_class("mapper_node")
    replay_bag(bag, tmp_path / "out", [mapper], [mapper.load_config(str(cfg))])
    assert [s for s, _ in seen] == stamps
    got = [round(float(T[0, 3]), 4) for _, T in seen]
    want = [round(float(tf2.lookup("map", "cam", s)[0, 3]), 4) for s in stamps]
    assert got == want


# -- pairing over a finished recording --------------------------------------------------------------------
def test_map_pairs_every_frame_of_a_recording_whose_depth_is_logged_half_a_second_late(tmp_path):
    """rosbag2 logs the time the recorder *received* a message: a depth stream compressed on a busy
    robot, or recorded on another machine over Wi-Fi and merged, lands 0.5 s behind its colour in
    the file. Read with rosbags here, every one of the 20 colour images has a depth image with the
    same header stamp (message_filters' ApproximateTime pairs them at slop 0; hd-predict reading the
    same kind of recording keeps a second of images for this). `map` must make 20 frames; it makes
    10, and its warning says the two topics' nearest stamps are "0.000 s apart"."""
    from rosbags.highlevel import AnyReader

    dt = 33_333_333
    msgs = [(T0 - 1, "/tf_static", _tfm(rb._tf(T0, "base_link", "cam", q=rb.OPT_Q)))]
    for k in range(-1, 22):
        ns = T0 + k * dt
        msgs.append((ns + MS, "/tf", _tfm(rb._tf(ns, "map", "base_link", (0.01 * k, 0.0, 0.0)))))
    for k in range(20):
        ns = T0 + k * dt
        rgb, _ = rb._scene(k)
        msgs += [(ns + 5 * MS, COLOR, rb._image(ns, "cam", rgb, "rgb8")),
                 (ns + 500 * MS, DEPTH, rb._image(ns, "cam", _wall_depth(), "16UC1")),
                 (ns + 5 * MS, INFO, rb._info(ns, "cam"))]  # fmt: skip
    bag = rb._write(tmp_path / "b", TOPICS, msgs)
    with AnyReader([bag]) as r:  # the reference: header stamps as rosbags reads them
        by_topic: dict[str, set] = {COLOR: set(), DEPTH: set()}
        for c, _t, raw in r.messages([c for c in r.connections if c.topic in by_topic]):
            s = r.deserialize(raw, c.msgtype).header.stamp
            by_topic[c.topic].add(s.sec * 10**9 + s.nanosec)
    assert len(by_topic[COLOR] & by_topic[DEPTH]) == 20
    frames = rb._frames(bag)
    assert sorted(f.stamp_ns for f in frames) == sorted(by_topic[COLOR])


def test_one_dropped_colour_frame_at_60hz_does_not_shift_every_later_pair(tmp_path):
    """A RealSense at 60 Hz (colour and depth stamped alike, depth logged 2 ms after its colour)
    drops colour frame 3, as a USB camera under load does. Each remaining colour image has a depth of
    exactly its stamp in the recording (the depth images carry their frame number in millimetres
    here, so the pair is visible). message_filters' C++ ApproximateTime (``approximate_time.hpp``,
    the policy depth_image_proc and rtabmap use) keeps a candidate until a later message proves no
    better set can come, so it pairs every frame with its own depth and drops depth 3. `map` reads a
    finished recording and pairs colour 4 with depth 3, colour 5 with depth 4, … to the end of the
    bag: the map is built from colour and geometry one frame apart, silently."""
    dt = 16_666_667
    msgs = [(T0 - 1, "/tf_static", _tfm(rb._tf(T0, "map", "cam", q=rb.OPT_Q)))]
    for k in range(12):
        ns = T0 + k * dt
        rgb, _ = rb._scene(k)
        if k != 3:
            msgs.append((ns + 3 * MS, COLOR, rb._image(ns, "cam", rgb, "rgb8")))
        msgs += [(ns + 5 * MS, DEPTH, rb._image(ns, "cam", np.full((rb.H, rb.W), 1000 + 10 * k, np.uint16), "16UC1")),
                 (ns + 3 * MS, INFO, rb._info(ns, "cam"))]  # fmt: skip
    frames = rb._frames(rb._write(tmp_path / "b", TOPICS, msgs))
    pairs = [(round((f.stamp_ns - T0) / dt), int(round((float(f.depth[0, 0]) - 1.0) / 0.01))) for f in frames]
    assert pairs == [(k, k) for k in range(12) if k != 3]


# -- a robot that records its TF under its namespace --------------------------------------------------------
def test_map_of_a_bag_whose_tf_is_namespaced_uses_it_or_names_it(tmp_path, capsys):
    """Multi-robot setups and Clearpath's ROS 2 robots remap TF into the robot's namespace
    (``/a200_0000/tf``, ``/a200_0000/tf_static``; Nav2's multi-robot launch does the same), so a
    recording holds ``/robot1/tf`` of type tf2_msgs/msg/TFMessage and no ``/tf``. With no topic
    options `map` finds the cameras by type; rosbags reads the TF right there. The frames must be
    mapped with that TF, or the one error line must name the TF topic the bag does have: it says
    "known frames: none"."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    src, bag = rb.robot_bag(tmp_path / "src"), tmp_path / "ns"
    rename = {"/tf": "/robot1/tf", "/tf_static": "/robot1/tf_static"}
    with AnyReader([src]) as r, Writer(bag, version=8) as w:
        conns = {c.topic: w.add_connection(rename.get(c.topic, c.topic), c.msgtype, typestore=rb.TS) for c in r.connections}  # fmt: skip
        for c, t, raw in r.messages():
            w.write(conns[c.topic], t, raw)
        assert sum(c.msgtype == rb.TFM for c in r.connections) == 2
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(rb.FAST)
    rc, last, _ = rb._map(capsys, bag, tmp_path / "out", cfg)
    assert rc == 0 or "/robot1/tf" in last, last


# -- registered depth stamped apart from colour -----------------------------------------------------------
def test_registered_depth_stamped_after_colour_is_placed_at_its_own_stamp_like_unregistered(tmp_path):
    """librealsense's align block keeps the depth frame's timestamp on the aligned image, and colour
    and depth are exposed apart (not hardware-synchronised): aligned depth 15 ms after its colour
    is within the default slop. The robot drives at 1 m/s towards a wall; at the depth's stamp the
    wall is 1.5 m ahead, so at the colour's stamp (the pose the frame is mapped at) it is 1.515 m
    ahead, by hand. The suite moves unregistered depth by TF between the two stamps and gets
    1.515; the same measurement delivered registered must give the same geometry, not 1.5."""

    def depth(ns, fid, _d):
        return rb._image(ns + 15 * MS, fid, _wall_depth(1.5), "16UC1")

    def dyn(ns, i):
        return [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.1 * i, 0.0, 0.0))]

    mount = [
        rb._tf(T0, "base_link", "camera_link", (0.1, 0, 0.2)),
        rb._tf(T0, "camera_link", "cam_color", q=rb.OPT_Q),
    ]
    unreg = rb.robot_bag(
        tmp_path / "unregistered", cfid="cam_color", dfid="cam_depth", depth=depth, tf_dyn=dyn,
        depth_topic="/camera/depth/image_rect_raw", extra_topics={"/camera/depth/camera_info": rb.CINFO},
        extra_msgs=[(T0 + i * rb.DT, "/camera/depth/camera_info", rb._info(T0 + i * rb.DT, "cam_depth")) for i in range(4)],
        tf_static=[[*mount, rb._tf(T0, "camera_link", "cam_depth", q=rb.OPT_Q)]],
    )  # fmt: skip
    reg = rb.robot_bag(tmp_path / "registered", cfid="cam_color", depth=depth, tf_dyn=dyn, tf_static=[mount])
    for bag in (unreg, reg):
        frames = rb._frames(bag)
        assert len(frames) == 4, bag.name
        for f in frames:
            d = f.depth[f.depth > 0]
            assert d.size > 0.9 * f.depth.size and np.allclose(d, 1.515, atol=1e-4), (
                bag.name,
                float(d.mean()),
            )


# -- a depth camera much coarser than colour ---------------------------------------------------------------
def test_depth_camera_six_times_coarser_than_colour_covers_the_colour_image():
    """RealSense D435 streams as users configure them to save bandwidth: depth 480x270 (87° wide, fx
    ≈ 253) and colour 1920x1080 (69° wide, fx ≈ 1385), here both divided by 5 (96x54 and 384x216):
    one depth pixel spans ~5.5 colour pixels. librealsense's ``align_images`` fills every colour
    pixel in the box between the projections of a depth pixel's two corners, however large it is,
    so a wall 2 m ahead (depth camera 1.5 cm aside, wider than colour) covers the whole colour
    image at 2 m. The module's docstring promises the same ("equal or coarser depth leaves no
    cracks")."""
    from gs_mapping.mapping.depth_registration import register_depth

    wd, hd, wc, hc = 96, 54, 384, 216
    fxd, fxc = 253.0 / 5, 1385.0 / 5
    Kd = np.array([[fxd, 0, (wd - 1) / 2], [0, fxd, (hd - 1) / 2], [0, 0, 1]])
    Kc = np.array([[fxc, 0, (wc - 1) / 2], [0, fxc, (hc - 1) / 2], [0, 0, 1]])
    T_color_depth = np.eye(4)
    T_color_depth[0, 3] = 0.015
    out = register_depth(np.full((hd, wd), 2.0), Kd, T_color_depth, Kc, (wc, hc))
    assert np.allclose(out[out > 0], 2.0)
    assert (out > 0).mean() > 0.99, f"{(out > 0).mean():.2f} of the colour image has depth"


# -- the real kitchen frames, TF thinned to 5 Hz -------------------------------------------------------------
def test_real_realsense_frames_with_tf_at_5hz_are_posed_and_back_projected_as_tf2_and_opencv_say(
    shared_data, tmp_path
):
    """The real RealSense-layout kitchen recording (JPEG colour, compressedDepth PNG, real camera
    trajectory on ``odom -> base_link``, a static chain to the optical frame) rewritten with its
    /tf thinned to every third sample (5 Hz against 15 Hz images, as a robot whose odometry is
    slower than its camera). Each frame must be posed as tf2 interpolates the real trajectory at the
    image stamp (frames past the last transform refused), and its back-projected points must be the
    compressedDepth PNG as OpenCV decodes it, lifted with the CameraInfo's K and that pose."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    src, out = shared_data / "realsense_kitchen_rgbd", tmp_path / "tf_5hz"
    tf2, depth_ref, K, n_tf = Tf2(), {}, None, 0
    with AnyReader([src]) as r, Writer(out, version=8) as w:
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=rb.TS) for c in r.connections}
        for c, t, raw in r.messages():
            msg = r.deserialize(raw, c.msgtype)
            if c.topic == "/tf":
                n_tf += 1
                if (n_tf - 1) % 3:
                    continue
            if c.topic in ("/tf", "/tf_static"):
                tf2.add(msg, c.topic == "/tf_static")
            elif c.topic.endswith("compressedDepth"):
                s = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                png = cv2.imdecode(np.frombuffer(bytes(msg.data[12:]), np.uint8), cv2.IMREAD_UNCHANGED)
                depth_ref[s] = png.astype(np.float64) / 1000.0
            elif c.topic == "/camera/camera/color/camera_info":
                K = np.array(msg.k, float).reshape(3, 3)
            w.write(conns[c.topic], t, raw)
    frames = rb._frames(out)
    want = {s: tf2.lookup("map", "camera_color_optical_frame", s) for s in depth_ref}
    assert [f.stamp_ns for f in frames] == sorted(s for s in want if want[s] is not None)
    assert len(frames) >= 45
    h, w_ = next(iter(depth_ref.values())).shape
    v, u = np.mgrid[0:h, 0:w_]
    for f in frames[::7]:
        T, z = want[f.stamp_ns], depth_ref[f.stamp_ns]
        assert np.allclose(f.camera.T_map_cam, T, atol=1e-9)
        assert np.allclose(f.depth, z, rtol=0, atol=1e-6)  # (float32 metres)
        ray = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
        assert np.allclose(f.camera.backproject(f.depth), ray @ T[:3, :3].T + T[:3, 3], atol=1e-5)
