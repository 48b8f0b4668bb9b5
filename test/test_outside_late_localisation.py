"""A localisation that starts late (AMCL, slam_toolbox localising: ``map -> odom`` from some time on,
odometry before it): the live mapper moves what it built in its first frame's pose into TF's ``map``
once, and the lane nodes pose the frames before the first fix through it.

Expected values come from outside the suite: poses composed by hand with scipy's rotations from the
transforms the drive publishes (the robot drives 0.02 m a frame along odom's x, its camera 0.1 m ahead
of and 0.2 m above ``base_link``, looking at a wall 1.5 m ahead; ``map -> odom`` a turn about z and a
shift); the renderer (a scene and the camera moved together render the same image; SH colour seen
along a direction); autograd (the gradients the Adam moments average); gs_map_share's own receiver
fed the node's deltas; and, for the lane nodes, the same drive with ``map`` from its start."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

OPT = "camera_color_optical_frame"
COLOR = "/camera/color/image_raw"
DEPTH = "/camera/aligned_depth_to_color/image_raw"
INFO = "/camera/color/camera_info"
MOUNT = (0.1, 0.0, 0.2)  # base_link -> camera_link
OPT_Q = (-0.5, 0.5, -0.5, 0.5)  # camera_link (x forward) -> *_optical_frame (z forward), REP-103
T0, DT = 1_700_000_000_000_000_000, 100_000_000  # the drive's first stamp, frame period
LATE = T0 + 4 * DT - DT // 4  # map -> odom from just before frame 4
JUMP = T0 + 6 * DT - DT // 4  # the localisation corrects itself just before frame 6
FIX = ((5.0, 1.0, 0.0), Rotation.from_euler("z", 30, degrees=True).as_quat())  # map -> odom
FIX2 = ((5.3, 1.2, 0.0), Rotation.from_euler("z", 34, degrees=True).as_quat())  # after the jump


def _T(xyz=(0.0, 0.0, 0.0), q=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(q).as_matrix()
    m[:3, 3] = xyz
    return m


def _odom_cam(i: float) -> np.ndarray:
    """Hand-composed T_odom_camera at frame i: odometry, the mount, the optical rotation."""
    return _T((0.02 * i, 0, 0)) @ _T(MOUNT) @ _T(q=OPT_Q)


def _fix_at(stamp: int, fixes) -> np.ndarray:
    """T_map_odom the localisation holds at ``stamp``: the fix in force then; before the first, the
    first (README: a frame before it is posed through it)."""
    now = [f for since, *f in fixes if since <= stamp]
    return _T(*(now[-1] if now else fixes[0][1:]))


def _stamp(i: int) -> int:
    return T0 + i * DT


def _robot_inputs():
    """test_hostile_robot_inputs' rosbags-only message builders (it needs rosbags and cv2)."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    import test_hostile_robot_inputs as rb

    return rb


def _drive(n=8, fixes=((LATE, *FIX),)):
    """(log time, topic, message) of an n-frame drive: colour + registered depth (a wall 1.5 m
    ahead) + CameraInfo per frame, odometry on /tf every half frame, the mount on /tf_static, and
    ``map -> odom`` (``fixes``: (from stamp, xyz, q), the newest in force) once the first starts."""
    rb = _robot_inputs()
    tf_msg = rb.T[rb.TFM]
    mount = [rb._tf(T0, "base_link", "camera_link", MOUNT), rb._tf(T0, "camera_link", OPT, q=OPT_Q)]
    msgs = [(T0 - 10, "/tf_static", tf_msg(transforms=mount))]
    for k in range(-2, 2 * n + 1):
        ns = T0 + k * DT // 2
        tfs = [rb._tf(ns, "odom", "base_link", (0.02 * (ns - T0) / DT, 0, 0))]
        now = [f for since, *f in fixes if since <= ns]
        if now:
            tfs.append(rb._tf(ns, "map", "odom", *now[-1]))
        msgs.append((ns, "/tf", tf_msg(transforms=tfs)))
    for i in range(n):
        ns = _stamp(i)
        rgb, _ = rb._scene(i)
        msgs.append((ns, COLOR, rb._image(ns, OPT, rgb, "rgb8")))
        msgs.append((ns + 1000, DEPTH, rb._image(ns, OPT, np.full((rb.H, rb.W), 1500, np.uint16), "16UC1")))
        msgs.append((ns + 2000, INFO, rb._info(ns, OPT)))
    return sorted(msgs, key=lambda m: m[0])


CFG = (
    "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      sh_degree: 3\n"
    "      seeding: {stride: 8}\n      optim: {iterations: 2, first_iterations: 2, refine_iterations: 0}\n"
    "      virtual_views: {enabled: true, offsets_m: [-0.3, 0.3], every: 2}\n"
    f"      keyframe: {{max_gap: 1}}\n      topics: {{color: {COLOR}, depth: {DEPTH}, camera_info: {INFO}}}\n"
)


class _Node:
    """mapper_node on the replay runtime's bus; the frames it maps, and each move of its map with
    the mapper's state just before and just after (spies around the real methods)."""

    def __init__(self, tmp_path):
        from gs_mapping.nodes.mapper_node import MapperNode
        from gs_mapping.runtime.replay import ReplayBus

        f = tmp_path / "mapper.yaml"
        f.write_text(CFG)
        self.bus = ReplayBus()
        self.node = MapperNode(self.bus.context("mapper_node"), MapperNode.load_config(str(f)))
        self.frames, self.moves = [], []
        mapper = self.node.mapper
        add, move = mapper.add_frame, mapper.move_map

        def add_spy(frame):
            self.frames.append(frame)
            return add(frame)

        def move_spy(T_new_old):
            before = self._state()
            move(T_new_old)
            self.moves.append((np.array(T_new_old), before, self._state()))

        mapper.add_frame, mapper.move_map = add_spy, move_spy

    def _state(self) -> dict:
        m = self.node.mapper
        return {
            "gmap": m.gmap.copy(),
            "views": [v.camera.T_map_cam.copy() for v in m.history],
            "virtual": [v.camera.T_map_cam.copy() for vs in m.virtual for v in vs],
            "selector": m.selector._last_pose.copy(),
            "selector_points": m.selector._last_points.copy(),
            "render": m.render(self.camera(np.eye(4))) if len(m.gmap) else None,
            "render_map": m.render(self.camera(_fix_at(LATE, [(LATE, *FIX)]) @ _odom_cam(0))),
        }

    @staticmethod
    def camera(T_map_cam):
        from gs_mapping.camera import Camera

        rb = _robot_inputs()
        return Camera(np.array(rb.K).reshape(3, 3), rb.W, rb.H, T_map_cam, OPT)

    def feed(self, msgs):
        for logged, topic, msg in msgs:
            self.bus.inject(topic, msg, logged)


def test_a_late_localisation_moves_the_live_map_into_tf_map_once_by_its_first_fix(tmp_path, caplog):
    """Frames 0-3 are mapped in frame 0's pose (no ``map`` yet); ``map -> odom`` (a 30° turn and a
    shift) starts before frame 4. The node moves its map once, by T_map_anchor = first fix @
    T_odom_camera(frame 0), composed here by hand: the Gaussians (positions, and the render: frame 0's
    view of the map before equals the view from frame 0's pose in TF's map after, SH degree 3), the
    kept keyframe views, the virtual views and the keyframe selector's last pose. Every later pose is
    tf2's ``map <- camera``, and every Gaussian lies on the wall 1.5 m ahead of the cameras in TF's
    map. Said once on the console, naming the move."""
    pytest.importorskip("torch")
    run = _Node(tmp_path)
    with caplog.at_level(logging.WARNING):
        run.feed(_drive())
    assert len(run.frames) == 8 and len(run.moves) == 1
    T_map_anchor = _T(*FIX) @ _odom_cam(0)
    T, before, after = run.moves[0]
    np.testing.assert_allclose(T, T_map_anchor, atol=1e-9)
    # the Gaussians: moved rigidly, and frame 0's view of them the same from its pose in TF's map
    g0, g1 = before["gmap"], after["gmap"]
    assert len(g0) and np.array_equal(g0.ids, g1.ids)
    np.testing.assert_allclose(g1.means, g0.means @ T_map_anchor[:3, :3].T + T_map_anchor[:3, 3], atol=2e-5)
    for a, b in zip(before["render"], after["render_map"], strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)
    # the kept views (keyframes 0-3), the virtual ones, the selector: in TF's map
    want = [_T(*FIX) @ _odom_cam(i) for i in range(4)]
    np.testing.assert_allclose(np.array(after["views"]), np.array(want), atol=1e-9)
    np.testing.assert_allclose(after["selector"], want[3], atol=1e-9)
    wall = after["selector_points"] @ np.linalg.inv(_T(*FIX))[:3, :3].T + np.linalg.inv(_T(*FIX))[:3, 3]
    np.testing.assert_allclose(wall[:, 0], 0.1 + 3 * 0.02 + 1.5, atol=1e-6)  # (frame 3's depth points)
    assert after["virtual"]
    for v0, v1 in zip(before["virtual"], after["virtual"], strict=True):
        np.testing.assert_allclose(v1, T_map_anchor @ v0, atol=1e-9)
    # poses: the anchor's before the fix, tf2's map <- camera after it
    for i, f in enumerate(run.frames):
        hand = np.linalg.inv(_odom_cam(0)) @ _odom_cam(i) if i < 4 else _T(*FIX) @ _odom_cam(i)
        np.testing.assert_allclose(f.camera.T_map_cam, hand, atol=1e-6)
    # every Gaussian on the wall 1.5 m ahead of the cameras, in odom's coordinates of TF's map
    p = run.node.mapper.gmap.means @ np.linalg.inv(_T(*FIX))[:3, :3].T + np.linalg.inv(_T(*FIX))[:3, 3]
    ahead = 0.1 + 1.5
    assert ((p[:, 0] > ahead - 0.1) & (p[:, 0] < ahead + 0.14 + 0.1)).all(), (p[:, 0].min(), p[:, 0].max())
    assert (np.abs(p[:, 2] - 0.2) < 0.8).all()
    said = [r.getMessage() for r in caplog.records if "gained frame 'map'" in r.getMessage()]
    assert len(said) == 1 and "moved into 'map'" in said[0]


def test_a_receiver_fed_the_nodes_deltas_ends_with_the_moved_map(tmp_path):
    """gs_map_share's receiver (MapStore) on the node's snapshot and delta topics. The delta sent at
    the move brings it to the moved map (before frame 4 is optimised into it); right after frame 4
    and at the end it holds the mapper's map as the codec quantises it (same ids, every field, bit
    for bit; the header's checksum checked by the receiver itself), its Gaussians on the wall in
    TF's map."""
    pytest.importorskip("torch")
    from gs_map_share.quantize import dequantize, to_qmap
    from gs_map_share.receiver import APPLIED, MapStore

    def quantised(gmap):
        return dequantize(to_qmap(gmap, store.params), store.params, gmap.tile_size)

    run = _Node(tmp_path)
    store, held = MapStore(), []  # held: the receiver's map after each delta applied

    def receive(msg):
        if store.receive(bytes(msg.data)) == APPLIED:
            held.append(store.gaussian_map())

    for topic in ("/mapper_node/map_snapshot", "/mapper_node/map_delta"):
        run.bus.subscribe(topic, receive)
    msgs = _drive()
    cut = _stamp(4) + 5000  # frame 4, the first posed in TF's map, made and sent
    for part in ([m for m in msgs if m[0] <= cut], [m for m in msgs if m[0] > cut]):
        run.feed(part)
        gmap = run.node.mapper.gmap
        got = store.gaussian_map()
        assert len(run.moves) == 1 and len(got) == len(gmap) > 0
        np.testing.assert_array_equal(got.ids, gmap.ids)
        want = quantised(gmap)
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "levels"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert np.abs(got.means - gmap.means).max() <= 2 * store.params.pos_step
        p = got.means @ np.linalg.inv(_T(*FIX))[:3, :3].T + np.linalg.inv(_T(*FIX))[:3, 3]
        assert ((p[:, 0] > 1.5) & (p[:, 0] < 1.85)).all()
    moved = quantised(run.moves[0][2]["gmap"])
    assert sum(h.equals(moved) for h in held) == 1
    assert store.stats["rejected"] == 0


def test_a_second_fix_moves_the_poses_not_the_map(tmp_path, caplog):
    """AMCL corrects ``map -> odom`` again before frame 6 (34°, shifted): that is localisation
    correcting odometry. The map moved once (at the first fix), never again; frames 6-7 are posed
    by the new fix as tf2 composes them, frames 4-5 by the first."""
    pytest.importorskip("torch")
    run = _Node(tmp_path)
    fixes = ((LATE, *FIX), (JUMP, *FIX2))
    with caplog.at_level(logging.WARNING):
        run.feed(_drive(fixes=fixes))
    assert len(run.frames) == 8 and len(run.moves) == 1
    np.testing.assert_allclose(run.moves[0][0], _T(*FIX) @ _odom_cam(0), atol=1e-9)
    for i in range(4, 8):
        want = _fix_at(_stamp(i), fixes) @ _odom_cam(i)
        np.testing.assert_allclose(run.frames[i].camera.T_map_cam, want, atol=1e-6)
    assert not np.allclose(_T(*FIX), _T(*FIX2), atol=0.1)
    said = [r.getMessage() for r in caplog.records if "moved into 'map'" in r.getMessage()]
    assert len(said) == 1


# -- the move itself: rotated SH, Adam's moments ---------------------------------------------------
def _random_gaussians(sh_degree: int, n: int = 60, seed: int = 0):
    """n Gaussians 1-3 m in front of a camera at the origin (optical frame: z forward), anisotropic,
    with strong view-dependent colour."""
    from gs_mapping.mapping.params import TorchGaussians

    rng = np.random.default_rng(seed)
    p = TorchGaussians(sh_degree)
    sh = rng.normal(0, 0.4, (n, (sh_degree + 1) ** 2, 3))
    p.append(
        means=np.c_[rng.uniform(-0.8, 0.8, (n, 2)), rng.uniform(1.0, 3.0, n)],
        quats=Rotation.random(n, random_state=seed).as_quat(),
        log_scales=np.log(rng.uniform(0.03, 0.2, (n, 3))),
        opacity_logits=rng.uniform(-1, 2, n),
        sh=sh,
    )
    return p


def _render(params, T_map_cam, sh_degree):
    """The CPU renderer's view of ``params`` from a 64x48 camera at ``T_map_cam``."""
    import torch

    from gs_mapping.render import rasterize

    K = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    return rasterize(
        *params.activated(),
        torch.as_tensor(np.linalg.inv(T_map_cam), dtype=torch.float32),
        torch.as_tensor(K, dtype=torch.float32),
        64,
        48,
        sh_degree=sh_degree,
        backend="cpu",
    )


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_rotation_shows_the_same_colour_along_the_turned_direction(degree):
    """A Gaussian's colour seen along d, from its coefficients, equals the colour of its turned
    coefficients seen along R d (gsplat's basis: render.sh.sh_to_color), for random rotations."""
    torch = pytest.importorskip("torch")
    from gs_mapping.render.sh import sh_rotation, sh_to_color

    rng = np.random.default_rng(degree)
    for R in Rotation.random(5, random_state=degree).as_matrix():
        c = torch.as_tensor(rng.normal(0, 0.5, ((degree + 1) ** 2, 3)))
        d = torch.as_tensor(rng.normal(size=(200, 3)))
        M = torch.as_tensor(sh_rotation(degree, R))
        seen = sh_to_color(degree, d, c.expand(200, -1, -1))
        turned = sh_to_color(degree, d @ torch.as_tensor(R).T, (M @ c).expand(200, -1, -1))
        torch.testing.assert_close(turned, seen, atol=1e-12, rtol=0)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_a_moved_scene_renders_from_the_moved_camera_as_it_did(degree):
    """TorchGaussians.move(T): the scene rendered from a camera equals the moved scene rendered from
    the camera moved by T (colour with SH, depth, alpha), for a turn about a slanted axis and a shift."""
    torch = pytest.importorskip("torch")

    T = _T((3.0, -2.0, 0.5), Rotation.from_rotvec([0.4, -0.9, 1.3]).as_quat())
    cam = _T((0.1, -0.05, 0.0), Rotation.from_euler("xy", [3, -4], degrees=True).as_quat())
    p = _random_gaussians(degree)
    with torch.no_grad():
        before = _render(p, cam, degree)
        p.move(T)
        after = _render(p, T @ cam, degree)
    assert float(before.alpha.max()) > 0.5
    for a, b in ((before.color, after.color), (before.depth, after.depth), (before.alpha, after.alpha)):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=0)
    if degree:  # (the view-dependent part matters: the colour differs with the SH left unturned)
        q = _random_gaussians(degree)
        q.move(T)
        with torch.no_grad():
            q.sh[:, 1:] = _random_gaussians(degree).sh[:, 1:]
            assert (_render(q, T @ cam, degree).color - before.color).abs().max() > 0.02


def test_adams_moments_move_with_the_gaussians():
    """RowAdam's first moment is the running mean of the gradients, and a gradient of the moved scene
    is the old one turned (checked by autograd: the moved scene's gradient at the start equals the
    recorded one turned). So after the move the first moment is the running mean of the turned
    recorded gradients, computed here by hand; the second is per coordinate, and each is at least
    the running mean of the turned gradients' squares, so no step after the move is larger than
    the true moment allows."""
    torch = pytest.importorskip("torch")
    from gs_mapping.geometry import quat_multiply
    from gs_mapping.mapping.params import RowAdam
    from gs_mapping.render.sh import sh_rotation

    degree, names = 2, ("means", "quats", "sh")
    T = _T((3.0, -2.0, 0.5), Rotation.from_rotvec([0.4, -0.9, 1.3]).as_quat())
    R = T[:3, :3]
    cams = [_T((0.05 * k, 0.0, 0.0)) for k in range(3)]
    targets = [torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(k)) for k in range(3)]

    def loss(params, k, T_world):
        return ((_render(params, T_world @ cams[k], degree).color - targets[k]) ** 2).mean()

    moved = _random_gaussians(degree, seed=3)  # the same scene moved before any step
    moved.move(T)
    loss(moved, 0, T).backward()
    p = _random_gaussians(degree, seed=3)
    opt = RowAdam(p, {"means": 1e-3, "quats": 1e-3, "sh": 1e-3})
    recorded = []
    for k in range(3):
        opt.zero_grad()
        loss(p, k, np.eye(4)).backward()
        recorded.append({n: getattr(p, n).grad.clone() for n in names})
        opt.step()
    p.move(T)
    rows = p.adam_t == 3  # (rows every view saw: their running means are the plain ones)
    assert float(rows.float().mean()) > 0.8
    turn = {
        "means": R,
        "quats": quat_multiply(Rotation.from_matrix(R).as_quat(), np.eye(4)).T,  # q_R (x) q as a matrix
        "sh": sh_rotation(degree, R),
    }
    for n in names:
        M = torch.as_tensor(turn[n])

        def turned(g, M=M):
            return torch.einsum("kj,nj...->nk...", M, g.double())

        first = turned(recorded[0][n])
        scale = float(first.abs().max())
        assert scale > 0
        torch.testing.assert_close(first.float(), getattr(moved, n).grad, atol=1e-4 * scale, rtol=1e-3)
        m_hand = v_hand = torch.zeros_like(first)
        for g in recorded:
            m_hand = opt.b1 * m_hand + (1 - opt.b1) * turned(g[n])
            v_hand = opt.b2 * v_hand + (1 - opt.b2) * turned(g[n]) ** 2
        torch.testing.assert_close(p.adam_m[n][rows].double(), m_hand[rows], atol=1e-6 * scale, rtol=1e-4)
        assert bool((p.adam_v[n][rows].double() >= v_hand[rows] * (1 - 1e-4)).all()), n
        assert not torch.allclose(p.adam_v[n][rows].double(), v_hand[rows])  # (a bound, not the truth)


# -- the lane nodes: frames before the first fix are posed through it ------------------------------
def _late_world_bag(src, out, after_first_ns: int) -> int:
    """The world's drive (``/tf``: map -> base_link a frame) with its localisation starting late:
    each sample split into odom -> base_link (the drive seen from an odom FIX away from map) and,
    from ``after_first_ns`` past the first frame on, map -> odom (FIX); the first fix on a message of
    its own, logged at its stamp. Returns the first frame's stamp."""
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.messages import stamp_to_ns

    F = _T(*FIX)

    def put(tr, parent, child, m):
        tr.header.frame_id, tr.child_frame_id = parent, child
        v, r = tr.transform.translation, tr.transform.rotation
        v.x, v.y, v.z = (float(a) for a in m[:3, 3])
        r.x, r.y, r.z, r.w = (float(a) for a in Rotation.from_matrix(m[:3, :3]).as_quat())
        return tr

    with BagReader(src) as r, BagWriter(out) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        msgs = list(r.messages())
        tfs = [m for m in msgs if m[0] == "/tf"]
        first = stamp_to_ns(tfs[0][2].transforms[0].header.stamp)
        fix_ns = first + after_first_ns
        out_msgs = []
        for topic, logged, msg in msgs:
            if topic == "/tf":
                msg = copy.deepcopy(msg)
                (tr,) = msg.transforms
                v, q = tr.transform.translation, tr.transform.rotation
                T_map_base = _T((v.x, v.y, v.z), (q.x, q.y, q.z, q.w))
                fix = copy.deepcopy(tr)
                put(tr, "odom", "base_link", np.linalg.inv(F) @ T_map_base)
                if stamp_to_ns(tr.header.stamp) >= fix_ns:
                    msg.transforms = [tr, put(fix, "map", "odom", F)]
            out_msgs.append((topic, logged, msg))
        alone = copy.deepcopy(tfs[0][2])
        put(alone.transforms[0], "map", "odom", F)
        alone.transforms[0].header.stamp.sec, alone.transforms[0].header.stamp.nanosec = divmod(fix_ns, 10**9)
        out_msgs.append(("/tf", fix_ns, alone))
        for topic, logged, msg in sorted(out_msgs, key=lambda m: m[1]):
            w.write(topic, logged, msg)
    return first


def test_hd_map_node_fuses_the_frame_before_a_late_first_fix_through_it(tmp_path, monkeypatch):
    """hd_map_node fusing lanes in ``map``: frame 0 comes before ``map`` exists and waits for its
    pose; the first ``map -> odom`` comes 60 ms after it (beyond TF's 50 ms tolerance). Posed
    through that first fix (README's rule, as the mapper), it is fused, not dropped: every frame's
    lanes go into the lane map in ``map`` as for the same drive with ``map`` from the start, and as
    many lane containers are sent."""
    pytest.importorskip("torch")
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import replay_bag
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd.lane_map import LaneMap

    world = tmp_path / "world"
    write_bag(Drive.make(3, 4, "front", (256, 144)), world, progress=False)
    _late_world_bag(world, tmp_path / "late", 60_000_000)
    fused = []  # the lanes of each frame as the node hands them to its lane map, in map
    update = LaneMap.update

    def spy(self, observations, region=None):
        fused[-1].append([(o.cls, o.score, np.array(o.points)) for o in observations])
        return update(self, observations, region)

    monkeypatch.setattr(LaneMap, "update", spy)

    def run(bag, out):
        cfg = HDMapNode.load_config(None)
        cfg["hd_map_node"].device, cfg["hd_map_node"].score_threshold = "cpu", 0.0
        fused.append([])
        _, (node,) = replay_bag(bag, out, [HDMapNode], [cfg])
        with BagReader(out) as b:
            return node, sum(1 for _ in b.messages(["/hd_map_node/lanes_delta"]))

    node, sent = run(tmp_path / "late", tmp_path / "a")
    _, sent_ref = run(world, tmp_path / "b")
    assert "lane_map_no_map_pose" not in node.diag.dropped, dict(node.diag.dropped)
    late, ref = fused
    assert sent == sent_ref == len(late) == len(ref) == 4
    for frame, frame_ref in zip(late, ref, strict=True):
        assert frame_ref and [e[:2] for e in frame] == [e[:2] for e in frame_ref]
        for (_, _, pts), (_, _, want) in zip(frame, frame_ref, strict=True):
            np.testing.assert_allclose(pts, want, atol=1e-9)


def test_hd_predict_cuts_the_gt_of_a_frame_before_a_late_first_fix_through_it(tmp_path):
    """hd-predict cuts each frame's GT from the world's whole map at the frame's pose in ``map``. A
    frame before the first ``map -> odom`` (60 ms before it, beyond TF's tolerance) is posed through
    that fix, so its GT is the one cut for the same drive with ``map`` from the start, not the
    shorter one recorded with the frame."""
    pytest.importorskip("torch")
    import json

    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd.predict_bag import predict_bag

    world = tmp_path / "world"
    write_bag(Drive.make(2026, 2, "front", (256, 128), rate_hz=2.0), world, progress=False)
    _late_world_bag(world, tmp_path / "late", 60_000_000)
    docs = []
    for bag in (tmp_path / "late", world):
        predict_bag(bag, tmp_path / f"{bag.name}.json", progress=False)
        docs.append(json.loads((tmp_path / f"{bag.name}.json").read_text()))
    late, ref = docs
    assert [r["stamp_ns"] for r in late["results"]] == [r["stamp_ns"] for r in ref["results"]]
    assert late["GTs"] == ref["GTs"] and ref["GTs"][0]["vectors"]
    recorded = _recorded_gt(world, ref["results"][0]["stamp_ns"])
    assert recorded != ref["GTs"][0]["vectors"]  # (the cut is not what the frame recorded)


def _recorded_gt(bag, stamp):
    """The per-frame GT recorded with the frame at ``stamp`` (what hd-predict keeps when it cannot
    pose the frame in ``map``)."""
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import string_message_to_json
    from gsmap_hd.predict_bag import GT_TOPIC

    with BagReader(bag) as b:
        for _, _, m in b.messages([GT_TOPIC]):
            doc = string_message_to_json(m)
            if doc["stamp_ns"] == stamp:
                return doc["vectors"]
    raise AssertionError(f"no {GT_TOPIC} at {stamp}")
