"""Outside review of issue 18 (GSMap), fourth round: hd_map_node's outputs as the ROS tools that read
them see them, on inputs a robot really gives — /diagnostics as rqt_robot_monitor and
diagnostic_aggregator show it (a healthy camera faster than max_rate_hz, a start-up race of the
static transforms, the only camera of the default one-camera rig that stops), a camera whose stamps
jitter around the node's rate limit, a lane map after kilometres of road, and the fused lanes drawn
by RViz when the vehicle does not drive at z = 0 of its map.

Each test compares the node with an independent reference: ros/diagnostics' own diagnostic_updater
(``FrequencyStatus.run``: the frequency is the events in a window that ends now, no event in the
window is ERROR "No events recorded.", a frequency within its bounds is OK "Desired frequency met";
``TimeStampStatus``: "an error condition will only be reported during a single diagnostic report
unless it persists. Tallies of errors are also maintained"), a hand count of the frames a 10 Hz
camera sends, the 100 ms a 10 Hz camera leaves per frame, and a hand-made transform (the ground
under base_link, through T_map_base, as RViz 2's marker display places a LINE_STRIP's points: no
frame_locked, the transform at header.stamp applied to x, y and z). Tests marked xfail(strict)
document bugs found by this review."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

W, H = 256, 128  # the shipped models' input size (width, height)
FRONT_IMAGE = "/cameras/front/image_raw"


# ------------------------------------------------------------------------------------------------
# fixtures: small one-camera world drives, the real HDMapNode on the replay bus


def _drive(tmp_path_factory, name, frames, rate_hz):
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd4") / name
    write_bag(Drive.make(3, frames, "front", (W, H), rate_hz=rate_hz), out, progress=False)
    with BagReader(out) as bag:
        return list(bag.messages())


@pytest.fixture(scope="module")
def front10(tmp_path_factory):
    return _drive(tmp_path_factory, "front10", 12, 10.0)


def _run(msgs, **node):
    """The real HDMapNode (config ``node`` over the defaults, CPU) fed ``msgs`` (topic, stamp, msg) in
    their order on the replay bus (its timers fire on the bag clock); returns the node and what it
    published on ~/lanes_json, ~/lanes and /diagnostics."""
    from gs_mapping.messages import string_message_to_json
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    for k, v in node.items():
        setattr(cfg["hd_map_node"], k, v)
    bus = ReplayBus()
    hd = HDMapNode(bus.context("hd_map_node"), cfg)
    out = {"docs": [], "markers": [], "diagnostics": []}
    bus.subscribe("/hd_map_node/lanes_json", lambda m: out["docs"].append(string_message_to_json(m)))
    bus.subscribe("/hd_map_node/lanes", lambda m: out["markers"].append(m))
    bus.subscribe("/diagnostics", lambda m: out["diagnostics"].append(m))
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    return hd, out


def _status(diag_array):
    """(level as int, message, {key: value}) of our node's one DiagnosticStatus."""
    (s,) = diag_array.status
    level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
    return level, s.message, {kv.key: kv.value for kv in s.values}


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus


# ------------------------------------------------------------------------------------------------
# /diagnostics as rqt_robot_monitor shows it


@pytest.fixture(scope="module")
def dead_sole_camera(tmp_path_factory):
    """The default rig (one camera) at 2 Hz: the camera (image and camera_info) dies after its 4th
    frame, /tf goes on for 5 s more (the localisation is alive, the vehicle drives on)."""
    msgs = _drive(tmp_path_factory, "front2hz", 14, 2.0)
    images = sorted(s for t, s, _ in msgs if t == FRONT_IMAGE)
    cut = images[3]
    fed = [m for m in msgs if not (m[0].startswith("/cameras/") and m[1] > cut)]
    hd, out = _run(fed)
    assert len(out["docs"]) == 4  # (the four frames before it died were predicted)
    return hd, out, (fed[-1][1] - cut) / 1e9


def test_a_camera_silent_for_seconds_is_not_reported_at_its_old_rate(dead_sole_camera):
    """diagnostic_updater's FrequencyStatus (ros/diagnostics, the tool every ROS driver reports rates
    with) computes the rate as the events in a window that ends at the report: after 5 s without an
    image, a 1 s report shows 0 Hz. Ours still says 2.000 Hz, the rate of the last images, 5 s
    after the camera died; an operator reading rqt_robot_monitor sees a camera at full rate."""
    hd, out, silent_s = dead_sole_camera
    assert silent_s >= 4.5
    _, _, values = _status(out["diagnostics"][-1])
    rate = float(values[f"input {FRONT_IMAGE} rate_hz"])
    assert rate < 0.5, f"a camera silent for {silent_s:.1f} s reported at {rate} Hz"


def test_the_only_camera_stopping_is_not_reported_ok(dead_sole_camera):
    """The default config has one camera. It dies while /tf goes on (so this is no paused bag): no
    lane is published any more. FrequencyStatus reports a window with no event as ERROR "No events
    recorded."; at the least the status must not stay OK with an empty waiting_for, which is what
    rqt_robot_monitor and diagnostic_aggregator show as a healthy node."""
    hd, out, silent_s = dead_sole_camera
    level, message, values = _status(out["diagnostics"][-1])
    assert level != OK or FRONT_IMAGE in values.get("waiting_for", ""), (level, message)


def test_a_node_that_never_got_its_camera_is_not_reported_ok(front10):
    """A wrong camera topic name (the commonest start-up mistake): /tf and /tf_static arrive, no image
    ever does. The node says so in waiting_for (tested by the suite), but the level rqt_robot_monitor
    colours the row by and diagnostic_aggregator rolls up stays OK "OK". diagnostic_updater's
    FrequencyStatus reports a window without events as ERROR "No events recorded."; a node that
    cannot produce anything is at least WARN."""
    hd, out = _run([m for m in front10 if not m[0].startswith("/cameras/")], diagnostics_period_s=0.25)
    assert not out["docs"] and len(out["diagnostics"]) >= 3
    level, message, values = _status(out["diagnostics"][-1])
    assert f"image on {FRONT_IMAGE}" in values.get("waiting_for", "")  # (what the suite checks)
    assert level != OK, (level, message)


def test_a_healthy_camera_faster_than_max_rate_hz_is_not_a_warning(tmp_path_factory):
    """A RealSense streams 30 fps by default; hd_map_node takes max_rate_hz (10) of them, as its
    parameter says ("frames faster than this are skipped"). That is the node doing what it was told,
    every frame is predicted at the rate asked for: diagnostic_updater's FrequencyStatus calls a rate
    within its bounds OK "Desired frequency met". Ours is WARN "inputs rejected or dropped" at every
    report, so rqt_robot_monitor and the aggregator flag a healthy node forever."""
    msgs = _drive(tmp_path_factory, "front30", 15, 30.0)
    hd, out = _run(msgs, diagnostics_period_s=0.1)
    assert len(out["docs"]) == 5  # 15 frames at 30 Hz, one in three taken: 10 Hz, as configured
    assert not hd.diag.rejected and set(hd.diag.dropped) <= {"frames_rate_limited"}
    levels = [_status(d)[0] for d in out["diagnostics"]]
    assert levels and levels[-1] == OK, [(_status(d)[0], _status(d)[1]) for d in out["diagnostics"]]


def test_one_frame_dropped_at_start_up_does_not_keep_the_node_warn(front10):
    """A launch file starts the camera driver before robot_state_publisher: the first image comes
    before /tf_static, that frame cannot be placed and is dropped (rightly). Every later frame is
    fine. diagnostic_updater's TimeStampStatus: "an error condition will only be reported during a
    single diagnostic report unless it persists. Tallies of errors are also maintained" — the
    tally stays in the values, the level goes back to OK. Ours stays WARN, with that start-up frame
    as last_error, for the rest of the drive."""
    static = [m for m in front10 if m[0] == "/tf_static"]
    rest = [m for m in front10 if m[0] != "/tf_static"]
    i = next(k for k, m in enumerate(rest) if m[0] == FRONT_IMAGE)
    late = [*rest[: i + 1], (static[0][0], rest[i][1], static[0][2]), *rest[i + 1 :]]
    hd, out = _run(late, diagnostics_period_s=0.25)
    assert dict(hd.diag.dropped) == {"frames_no_tf": 1} and not hd.diag.rejected
    assert len(out["docs"]) == 11  # every later frame predicted
    level, message, values = _status(out["diagnostics"][-1])
    assert values.get("dropped frames_no_tf") == "1"  # (the tally: kept, as it should be)
    assert level == OK, (level, message, values.get("last_error"))


# ------------------------------------------------------------------------------------------------
# a camera at the rate limit


def _jittered(msgs, seed=0, sigma_ns=1_000_000):
    """``msgs`` with each image's header stamp (and its arrival) moved by a normal jitter of
    ``sigma_ns`` (a driver stamping at frame arrival; real 10 Hz cameras show ~1 ms)."""
    from gs_mapping.messages import stamp_to_ns

    rng = np.random.default_rng(seed)
    out = []
    for topic, stamp, msg in msgs:
        if topic == FRONT_IMAGE:
            t = stamp_to_ns(msg.header.stamp) + int(rng.normal(0.0, sigma_ns))
            st = dataclasses.replace(msg.header.stamp, sec=t // 10**9, nanosec=t % 10**9)
            msg = dataclasses.replace(msg, header=dataclasses.replace(msg.header, stamp=st))
            stamp = t
        out.append((topic, stamp, msg))
    return sorted(out, key=lambda m: m[1])


def test_a_10hz_camera_with_stamp_jitter_is_not_halved_by_max_rate_hz_10(front10):
    """The default max_rate_hz is 10, the rate of the world's and of many automotive cameras. Real
    drivers stamp frames with a jitter of about a millisecond, so about every other interval is a
    little under 100 ms. Hand count: 12 frames at 10 Hz are 12 frames no faster than 10 Hz; every one
    must be predicted. The rule `stamp - last_taken < 1 / max_rate_hz` drops each frame that came
    99.x ms after the previous one, about half of them."""
    from gs_mapping.messages import stamp_to_ns

    exact = [stamp_to_ns(m.header.stamp) for t, _, m in front10 if t == FRONT_IMAGE]
    assert len(exact) == 12 and set(np.diff(exact)) == {100_000_000}  # (these are all taken: test_guards)
    hd, out = _run(_jittered(front10))
    assert len(out["docs"]) == 12, dict(hd.diag.dropped)


# ------------------------------------------------------------------------------------------------
# the lane map after kilometres of road


@dataclasses.dataclass
class _E:
    cls: int
    score: float
    points: np.ndarray


def _pose(x):
    T = np.eye(4)
    T[0, 3] = x
    return T


def _fusion_seconds(behind_m):
    """Median seconds of LaneMap.update for a frame of a straight five-line road (3 dividers, 2
    boundaries, perfect predictions in the surround patch) when ``behind_m`` metres of those lines
    are already in the map, confirmed, as that many metres of driving leave them."""
    from gsmap_hd.lane_map import LaneMap, Track, region_in_map, to_frame
    from gsmap_hd.region import clip_element, rig_region

    patch = rig_region("patch", "surround", (-30.0, 30.0), (-15.0, 15.0), (128, 256))
    xs = np.arange(-50.0, behind_m + 60.0, 1.0)
    lanes = [(0, 0.0), (0, 3.5), (0, -3.5), (2, 7.0), (2, -7.0)]
    lanes = [(cls, np.c_[xs, 0 * xs + y]) for cls, y in lanes]
    m = LaneMap()
    for cls, pts in lanes:
        p = pts[pts[:, 0] <= behind_m].copy()
        n = len(p)
        t = Track(m.next_id, cls, p, np.full(n, 8.0), False, hits=50, score_sum=40.0)
        t.seen, t.covered, t.now = np.full(n, 10.0), np.full(n, 10.0), np.zeros(n)
        m.tracks[t.id] = t
        m.next_id += 1
    times = []
    for x in (behind_m - 8.0, behind_m - 4.0, behind_m):
        T = _pose(x)
        els = [
            _E(cls, 0.8, to_frame(piece, T))
            for cls, pts in lanes
            for piece in clip_element(to_frame(pts, np.linalg.inv(T)), False, patch)
        ]
        t0 = time.process_time()  # (CPU time: a loaded machine's waits are not the fusion's cost)
        m.update(els, region_in_map(patch, T))
        times.append(time.process_time() - t0)
    assert len(m.published()) == len(lanes)  # (one track per line: the reference map holds)
    return float(np.median(times))


def test_a_frames_fusion_does_not_grow_with_the_road_already_mapped():
    """A frame only sees the 60 m patch around the car, so fusing it should cost about the same after
    100 m or after 1 km of road (a 10 Hz camera leaves 100 ms a frame, and the node runs for hours).
    Measured here on 2 cores: ~0.05 s at 100 m, ~1.2 s at 1 km, ~9 s at 3 km — after a 1 km drive the
    node can no longer fuse at 1 Hz. The cost is lane_map.py's _merge_tracks: line_overlap(other.points,
    t.points) for every other track of the class, no bounding-box test, and project() builds
    (m, n, 2) arrays of two whole tracks (at 5 km: 400 MB temporaries a pair)."""
    near = min(_fusion_seconds(100.0) for _ in range(2))
    far = min(_fusion_seconds(1000.0) for _ in range(2))
    assert far < 4 * near + 0.05, f"fusion {near * 1e3:.0f} ms at 100 m, {far * 1e3:.0f} ms at 1 km"


# ------------------------------------------------------------------------------------------------
# the fused lanes as RViz draws them


def _raised(msgs, dz):
    """``msgs`` with map → base_link raised by ``dz`` metres (a road at altitude: a map anchored to a
    GNSS datum, odometry's z after a climb)."""
    out = []
    for topic, stamp, msg in msgs:
        if topic == "/tf":
            tfs = []
            for tr in msg.transforms:
                if tr.header.frame_id.lstrip("/") == "map":
                    v = tr.transform.translation
                    v = dataclasses.replace(v, z=v.z + dz)
                    tr = dataclasses.replace(tr, transform=dataclasses.replace(tr.transform, translation=v))
                tfs.append(tr)
            msg = dataclasses.replace(msg, transforms=tfs)
        out.append((topic, stamp, msg))
    return out


def test_fused_lanes_are_drawn_on_the_road_the_car_drives_on(front10):
    """RViz 2's marker display (rviz_default_plugins marker_base.cpp: no frame_locked, so the
    transform of header.frame_id at header.stamp) draws a LINE_STRIP's points where they are in
    its frame, z included. The lanes lie on the ground under base_link (REP 103, base_frame is on
    the ground), i.e. at z = T_map_base's z in map. With map → base_link at z = 25 m (a map frame
    anchored to a GNSS datum, odometry after a climb) the fused lanes must be at z ≈ 25 m, not on
    a plane 25 m below the car. (The per-frame lanes in base_link, fuse: false, are right.)"""
    dz = 25.0
    _, out = _run(_raised(front10, dz), map_min_hits=1)
    adds = [m for m in out["markers"][-1].markers if m.action == 0]
    assert adds and out["markers"][-1].markers[0].header.frame_id == "map"
    z = np.array([p.z for m in adds for p in m.points]) + np.array(
        [m.pose.position.z for m in adds for _ in m.points]
    )
    assert np.abs(z - dz).max() < 0.5, f"lanes drawn at z = {z.min():.2f}..{z.max():.2f} m, car at {dz} m"
