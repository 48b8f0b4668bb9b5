"""Hostile outside review (host1) of two features merged today.

1. mapper_node moving a map anchored to its first frame's pose into TF's ``map`` once a late
   localisation's ``map -> odom`` arrives (tf.MapPoses / lookup_in_map / held_back, mapper.move_map,
   TorchGaussians.move, render.sh.sh_rotation), and the lane node posing frames before that first
   fix through it.
2. Long runs: progress lines where stderr is no terminal, the ``.NAME.tmp-*`` sweep held off by an
   flock.

Expected values come from outside the code under test: poses composed by hand with scipy's
rotations from the transforms the drive publishes (the drives and their hand-composed poses are
test_outside_late_localisation's: 0.02 m a frame along odom's x, a camera 0.1 m ahead of and 0.2 m
above ``base_link`` looking at a wall 1.5 m ahead, ``map -> odom`` a 30° turn and a shift), the wall
itself (every Gaussian on it in TF's map), a PLY written here, gs_map_share's fleet merge and
receiver fed the node's containers, scipy's rotations and the SH colour seen along a direction,
tqdm (the reference progress library), the kernel's own file system, and the CLI run as a child.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

SRC = Path(__file__).resolve().parents[1] / "src"


def _L():
    """test_outside_late_localisation: its drive, node harness and hand-composed poses."""
    import test_outside_late_localisation as L

    return L


def _on_the_wall(means: np.ndarray) -> np.ndarray:
    """Rows of map-frame points on the drive's wall: 1.5 m ahead of the cameras (0.1 m ahead of
    base_link, the robot drives at most 0.14 m), in odom's coordinates of TF's map (by hand)."""
    L = _L()
    F_inv = np.linalg.inv(L._T(*L.FIX))
    p = means @ F_inv[:3, :3].T + F_inv[:3, 3]
    ahead = 0.1 + 1.5
    return (p[:, 0] > ahead - 0.1) & (p[:, 0] < ahead + 0.14 + 0.1) & (np.abs(p[:, 2] - 0.2) < 0.8)


def _mapper(tmp_path: Path, extra_yaml: str = ""):
    """mapper_node (the late-localisation test's config, plus ``extra_yaml``) on the replay bus;
    the frames it maps and the transforms it moves its map by, seen around the real methods."""
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    f = tmp_path / "mapper.yaml"
    f.write_text(_L().CFG + extra_yaml)
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(f)))
    frames: list = []
    moves: list = []
    add, move = node.mapper.add_frame, node.mapper.move_map

    def add_spy(frame):
        frames.append(frame)
        return add(frame)

    def move_spy(T):
        moves.append(np.array(T))
        return move(T)

    node.mapper.add_frame, node.mapper.move_map = add_spy, move_spy
    return bus, node, frames, moves


def _feed(bus, msgs) -> None:
    for logged, topic, msg in msgs:
        bus.inject(topic, msg, logged)


# -- 1. the live map moved into TF's map: bugs ------------------------------------------------------


def test_a_failure_while_the_move_is_sent_leaves_the_map_moved_once(tmp_path):
    """The move's delta fails to go out (rclpy's publish raises RCLError, a RuntimeError, once the
    context is shut down by a Ctrl-C; any exception a callback raises is contained by the node,
    README's "a bad frame never kills a node"). The map was moved once: every Gaussian must lie on
    the wall in TF's map (by hand), whatever happened to that one delta."""
    pytest.importorskip("torch")
    L = _L()
    bus, node, frames, moves = _mapper(tmp_path)
    publish = node.pub_delta.publish
    failed = []

    def publish_once_failing(msg):
        if moves and not failed:  # (the delta sent at the move)
            failed.append(True)
            raise RuntimeError("Failed to publish: publisher's context is invalid")
        return publish(msg)

    node.pub_delta.publish = publish_once_failing
    _feed(bus, L._drive())
    assert failed and len(frames) >= 6
    on = _on_the_wall(node.mapper.gmap.means)
    assert on.all(), f"{int((~on).sum())} of {len(on)} Gaussians off the wall; moves: {len(moves)}"


def _amcl_drive(n: int = 8):
    """The drive with odometry between the frames' stamps (a quarter period after each half), fast
    (0.5 m a frame), and a localisation that future-dates its ``map -> odom`` as nav2's AMCL does
    (stamped transform_tolerance ahead of when it is sent): the first fix is sent 0.01 s after frame
    3, stamped 0.5 s later, then with every odometry message. Returns (messages, T_odom_cam(ns))."""
    L = _L()
    rb = L._robot_inputs()
    T0, DT = L.T0, L.DT
    speed, ahead, first_sent = 0.5, 5 * DT, T0 + 3 * DT + DT // 10

    def odom_cam(ns):
        return L._T((speed * (ns - T0) / DT, 0, 0)) @ L._T(L.MOUNT) @ L._T(q=L.OPT_Q)

    tfm = rb.T[rb.TFM]
    mount = [rb._tf(T0, "base_link", "camera_link", L.MOUNT), rb._tf(T0, "camera_link", L.OPT, q=L.OPT_Q)]
    msgs = [(T0 - 10, "/tf_static", tfm(transforms=mount))]
    for k in range(-2, 2 * n + 1):
        ns = T0 + k * DT // 2 + DT // 4
        tfs = [rb._tf(ns, "odom", "base_link", (speed * (ns - T0) / DT, 0, 0))]
        if ns >= first_sent:
            tfs.append(rb._tf(ns + ahead, "map", "odom", *L.FIX))
        msgs.append((ns, "/tf", tfm(transforms=tfs)))
    first = rb._tf(first_sent + ahead, "map", "odom", *L.FIX)
    msgs.append((first_sent, "/tf", tfm(transforms=[first])))
    for i in range(n):
        ns = T0 + i * DT
        rgb, _ = rb._scene(i)
        msgs.append((ns, L.COLOR, rb._image(ns, L.OPT, rgb, "rgb8")))
        depth = np.full((rb.H, rb.W), 1500, np.uint16)
        msgs.append((ns + 1000, L.DEPTH, rb._image(ns, L.OPT, depth, "16UC1")))
        msgs.append((ns + 2000, L.INFO, rb._info(ns, L.OPT)))
    return sorted(msgs, key=lambda m: m[0]), odom_cam


def test_frames_before_a_future_dated_first_fix_wait_for_their_odometry(tmp_path):
    """README: while a frame may wait, a pose past the last TF sample waits for the next (tf2's
    rule), and a frame before a late localisation's first sample is posed through that fix. Frames
    3-7 come after the fix was sent but before its (future) stamp: each must be the fix composed
    with the odometry interpolated at its stamp, by hand (odometry samples 25 ms either side)."""
    pytest.importorskip("torch")
    L = _L()
    msgs, odom_cam = _amcl_drive()
    bus, node, frames, moves = _mapper(tmp_path)
    _feed(bus, msgs)
    assert len(frames) == 8 and len(moves) == 1
    F = L._T(*L.FIX)
    for f in frames[3:]:
        np.testing.assert_allclose(f.camera.T_map_cam, F @ odom_cam(f.stamp_ns), atol=1e-6)


def test_a_resumed_map_stays_in_tf_map_when_the_localisation_starts_late(tmp_path):
    """Yesterday's map, saved in TF's ``map`` (five Gaussians 20 m behind the drive, never in view),
    is loaded at start (``load_path``); today's localisation starts before frame 4. MapPoses moves
    "what it built in the anchor's frame" into TF's map: the loaded Gaussians were not built there,
    and the saved map must hold them where the PLY had them; today's Gaussians lie on the wall."""
    pytest.importorskip("torch")
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.ply import load_ply, save_ply

    L = _L()
    n = 5
    ids = np.arange(1, n + 1, dtype=np.uint64)
    yesterday = np.c_[np.full(n, -20.0), np.linspace(-2.0, 2.0, n), np.full(n, 1.0)]
    g = GaussianMap(
        3,
        2.0,
        means=yesterday,
        quats=np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)),
        log_scales=np.full((n, 3), np.log(0.1)),
        opacity_logits=np.full(n, 3.0),
        sh=np.zeros((n, 16, 3)),
        ids=ids,
    )
    save_ply(g, tmp_path / "yesterday.ply", keep_ids=True)
    extra = f"    mapper_node:\n      load_path: {tmp_path / 'yesterday.ply'}\n      save_path: {tmp_path / 'today.ply'}\n"
    bus, node, frames, moves = _mapper(tmp_path, extra)
    _feed(bus, L._drive())
    node.close()
    today = load_ply(tmp_path / "today.ply")
    assert len(frames) == 8 and len(moves) == 1 and len(today) > n
    rows = today.rows_of(ids)
    others = np.setdiff1d(np.arange(len(today)), rows)
    assert _on_the_wall(today.means[others]).all()
    np.testing.assert_allclose(today.means[rows], yesterday, atol=1e-5)


def test_hd_map_node_fuses_the_lanes_of_every_frame_before_a_late_first_fix(tmp_path, monkeypatch):
    """The world's 4-frame drive (10 Hz) with its localisation starting 0.25 s after the first frame
    (frames 0-2 before it): README's promise taken literally, every frame's lanes are fused into the
    lane map in ``map``, as many as for the same drive with ``map`` from its start (the reference)."""
    pytest.importorskip("torch")
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import replay_bag
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd.lane_map import LaneMap

    world = tmp_path / "world"
    write_bag(Drive.make(3, 4, "front", (256, 144)), world, progress=False)
    _L()._late_world_bag(world, tmp_path / "late", 250_000_000)
    fused: list[list[int]] = []
    update = LaneMap.update

    def spy(self, observations, region=None):
        fused[-1].append(len(observations))
        return update(self, observations, region)

    monkeypatch.setattr(LaneMap, "update", spy)

    def run(bag, out):
        cfg = HDMapNode.load_config(None)
        cfg["hd_map_node"].device, cfg["hd_map_node"].score_threshold = "cpu", 0.0
        fused.append([])
        _, (node,) = replay_bag(bag, out, [HDMapNode], [cfg])
        return node

    run(world, tmp_path / "ref")
    node = run(tmp_path / "late", tmp_path / "out")
    ref, late = fused
    assert len(ref) == 4 and all(ref)
    assert "lane_map_no_map_pose" not in node.diag.dropped, dict(node.diag.dropped)
    assert late == ref


# -- 1. the live map moved into TF's map: what held ------------------------------------------------


def test_a_bag_loop_after_the_move_maps_the_second_pass_in_tf_map_without_moving_again(tmp_path):
    """``ros2 bag play --loop --clock``: after the move the clock goes back, TF's moving transforms
    are forgotten, and the second pass's frames come before its own first fix again. They are
    posed in TF's map through that fix (by hand), the map is not moved a second time, and every
    Gaussian stays on the wall."""
    pytest.importorskip("torch")
    L = _L()
    bus, node, frames, moves = _mapper(tmp_path)
    msgs = L._drive()
    _feed(bus, msgs)
    assert len(frames) == 8 and len(moves) == 1
    bus.now_ns = L.T0 - 3 * L.DT  # the bag's /clock starts over
    _feed(bus, msgs)
    assert node.tf.time_jumps == 1 and len(moves) == 1
    second = frames[8:]
    assert len(second) >= 6
    for f in second:
        i = (f.stamp_ns - L.T0) // L.DT
        np.testing.assert_allclose(f.camera.T_map_cam, L._T(*L.FIX) @ L._odom_cam(i), atol=1e-6)
    assert _on_the_wall(node.mapper.gmap.means).all()


def test_a_map_frame_not_above_odom_keeps_the_anchor_until_it_is(tmp_path, caplog):
    """A launch file's static ``world -> map`` comes before frame 2 (``map`` known, not above odom),
    the localisation's ``map -> odom`` before frame 4. The anchor stays (said once) and frames 2-3 are
    mapped in it, not dropped; then the map moves once, by the first fix composed with frame 0's
    pose in odom (by hand), and every Gaussian lies on the wall in TF's map."""
    pytest.importorskip("torch")
    L = _L()
    rb = L._robot_inputs()
    world_map = rb.T[rb.TFM](transforms=[rb._tf(L.T0, "world", "map", (100.0, 0.0, 0.0))])
    msgs = sorted([*L._drive(), (L.T0 + 2 * L.DT - L.DT // 4, "/tf_static", world_map)], key=lambda m: m[0])
    bus, node, frames, moves = _mapper(tmp_path)
    with caplog.at_level(logging.WARNING):
        _feed(bus, msgs)
    assert len(frames) == 8 and len(moves) == 1
    np.testing.assert_allclose(moves[0], L._T(*L.FIX) @ L._odom_cam(0), atol=1e-9)
    for i in (2, 3):
        want = np.linalg.inv(L._odom_cam(0)) @ L._odom_cam(i)
        np.testing.assert_allclose(frames[i].camera.T_map_cam, want, atol=1e-6)
    said = [r.getMessage() for r in caplog.records if "does not reach odom" in r.getMessage()]
    assert len(said) == 1
    assert _on_the_wall(node.mapper.gmap.means).all()


def test_the_fleet_server_holds_the_vehicles_moved_map(tmp_path):
    """gs_map_share's fleet merge (map_server_node's) fed the node's snapshot and deltas, and a
    follower of the fleet's global map fed its snapshot and global deltas: the vehicle's map is the
    node's as the codec quantises it, the incrementally merged global map is the merge of the
    vehicles' maps from scratch (old tiles vacated by the move), the follower holds it, and every
    Gaussian of it lies on the wall in TF's map."""
    pytest.importorskip("torch")
    from gs_map_share.merge import FleetMerge
    from gs_map_share.quantize import QuantParams, dequantize, to_qmap
    from gs_map_share.receiver import MapStore

    L = _L()
    params = QuantParams.from_quality(3)  # (mapper_node.quality's default)
    fleet = FleetMerge(params, global_map_id=1000, sh_degree=3)
    follower = MapStore()
    follower.receive(fleet.snapshot())
    statuses = []

    def offer(msg):
        ingest = fleet.offer(bytes(msg.data))
        statuses.append(ingest.status)
        if ingest.global_delta is not None:
            follower.receive(ingest.global_delta)

    bus, node, frames, moves = _mapper(tmp_path)
    for topic in ("/mapper_node/map_snapshot", "/mapper_node/map_delta"):
        bus.subscribe(topic, offer)
    _feed(bus, L._drive())
    assert len(moves) == 1 and "rejected" not in statuses and statuses.count("applied") >= 2
    assert fleet.vehicles[1].state.equals(to_qmap(node.mapper.gmap, params))
    assert fleet.global_map.equals(fleet.reference_merge())
    held, want = follower.gaussian_map(), dequantize(fleet.global_map, params)
    assert len(held) == len(node.mapper.gmap) > 0
    np.testing.assert_array_equal(held.ids, want.ids)
    np.testing.assert_array_equal(held.means, want.means)
    assert _on_the_wall(held.means).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_a_half_turn_moves_means_rotations_and_colour_as_scipy_says(degree):
    """A localisation whose first fix turns the map by 180° (the quaternion's w = 0: a rotation
    formula's edge case), about z and about a slanted axis, and a 2.5 rad turn about that axis, each
    with a 1 km shift: TorchGaussians.move gives each mean
    R p + t and each rotation R · R_q (scipy's matrices), and each Gaussian's colour along R d is
    the colour it showed along d (render.sh.sh_to_color, the renderer's own SH)."""
    torch = pytest.importorskip("torch")
    from gs_mapping.mapping.params import TorchGaussians
    from gs_mapping.render.sh import sh_to_color

    rng = np.random.default_rng(degree)
    n, k = 20, (degree + 1) ** 2
    quats = Rotation.random(n, random_state=degree).as_quat()
    slanted = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    # (a half turn is its own inverse: the 2.5 rad turn tells R from Rᵀ)
    for rotvec in ([0.0, 0.0, np.pi], np.pi * slanted, 2.5 * slanted):
        R = Rotation.from_rotvec(rotvec).as_matrix()
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, (1234.5, -678.25, 3.0)
        p = TorchGaussians(degree)
        means, sh = rng.uniform(-5, 5, (n, 3)), rng.normal(0, 0.4, (n, k, 3))
        p.append(
            means=means, quats=quats, log_scales=np.full((n, 3), -2.0), opacity_logits=np.zeros(n), sh=sh
        )
        p.move(T)
        np.testing.assert_allclose(p.numpy("means"), means @ R.T + T[:3, 3], atol=2e-3)  # (float32 at 1 km)
        got = Rotation.from_quat(p.numpy("quats")).as_matrix()
        np.testing.assert_allclose(got, R @ Rotation.from_quat(quats).as_matrix(), atol=1e-5)
        d = torch.as_tensor(rng.normal(size=(n, 3)))
        seen = sh_to_color(degree, d, torch.as_tensor(sh))
        turned = sh_to_color(degree, d @ torch.as_tensor(R).T, p.sh.detach().double())
        torch.testing.assert_close(turned, seen, atol=1e-5, rtol=0)


# -- 2. progress lines: bugs --------------------------------------------------------------------------


def test_progress_lines_iterate_what_tqdm_iterates():
    """progress() promises what tqdm(iterable, ...) gives; off a terminal that is ProgressLines. It
    must yield the items tqdm yields, for a numpy array as for a list."""
    from tqdm import tqdm

    from gs_mapping.progress import ProgressLines

    for items in ([1, 2, 3], np.arange(4)):
        assert list(ProgressLines(items, interval_s=1e9)) == list(tqdm(items, disable=True))


def test_a_rate_just_under_a_thousand_is_a_plain_number(capsys):
    """1000 messages in 1.0003 s (our clock): the line's rate is a plain decimal, as the module's
    example ('0.322 frame/s') and every other rate, within 0.5 % of 1000 / 1.0003 (by hand)."""
    from gs_mapping.progress import ProgressLines

    now = [0.0]
    bar = ProgressLines(total=2000, desc="replay", unit="msg", interval_s=0, clock=lambda: now[0])
    now[0] = 1.0003
    bar.update(1000)
    line = capsys.readouterr().err.strip()
    rate = re.search(r", (\S+) msg/s", line)
    assert rate, line
    assert re.fullmatch(r"\d+(\.\d+)?", rate[1]), line
    assert abs(float(rate[1]) - 1000 / 1.0003) < 0.005 * 1000


# -- 2. what held --------------------------------------------------------------------------------------


def test_a_sweep_in_the_instant_before_a_writer_locks_its_folder_costs_the_writer_nothing(
    tmp_path, monkeypatch, caplog
):
    """Another run's sweep takes a writer's brand-new temp folder in the instant between mkdtemp and
    the writer's flock (the race the sweep's docstring names): the sweeper removes it, the writer
    notices (its folder is gone) and takes another, and the output is installed whole, with no temp
    folder left beside it (the directory listed by the kernel)."""
    from gs_mapping import output_files

    out = tmp_path / "out"
    real_flock = fcntl.flock
    swept = []

    def flock(fd, op):
        if op == fcntl.LOCK_EX and not swept:  # (the writer's blocking lock on its new folder)
            swept.append(sorted(p.name for p in tmp_path.iterdir()))
            output_files.sweep_stale_temps(out)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with caplog.at_level(logging.WARNING), output_files.output_directory(out) as tmp:
        (tmp / "map.ply").write_bytes(b"ply\n")
    assert swept and len(swept[0]) == 1 and swept[0][0].startswith(".out.tmp-")
    assert any("removed" in r.getMessage() and swept[0][0] in r.getMessage() for r in caplog.records)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert (out / "map.ply").read_bytes() == b"ply\n"


@pytest.mark.parametrize("stderr", ["/dev/full", "closed"])
def test_progress_lines_to_a_full_or_closed_stderr_cost_no_run(tmp_path, stderr):
    """``gs-mapping world`` with a line at each tenth (interval 0), its stderr a full disk
    (/dev/full: every write fails with ENOSPC) or closed (``2>&-``): the run ends 0 and its bag holds
    every frame (read back by the bag reader)."""
    pytest.importorskip("torch")
    from gs_mapping.bag import BagReader

    bag = tmp_path / "drive"
    argv = [
        sys.executable,
        "-m",
        "gs_mapping",
        "world",
        "--out",
        str(bag),
        "--frames",
        "10",
        "--size",
        "64x36",
    ]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]), GS_MAPPING_PROGRESS_INTERVAL="0"
    )
    if stderr == "closed":
        argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", *argv]
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, timeout=300)
    else:
        with open("/dev/full", "w") as full:
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=full, timeout=300)
    assert p.returncode == 0
    with BagReader(bag) as b:
        assert b.topic("/cameras/front/image_raw").count == 10
