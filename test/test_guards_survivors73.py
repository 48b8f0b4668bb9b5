"""Session 37's review of four changes (review37b): the fleet's spans of held sequences (replays
told from restarts), the rclpy runtime's clock watch under use_sim_time, Zenoh's config-error
wording, run_node's Humble ParameterException line. Each test compares with the real thing
(merge_maps of the vehicles' own maps, rclpy's real Python code over test/rclpy_standin.py) and
fails on a mutant of the line it names that the earlier tests let through."""

from __future__ import annotations

import sys
import time

import pytest

SIM = ["-p", "use_sim_time:=true"]


# -- the clock watch: a second bag played after a first (ROS time jumps back) ----------------------


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy, rclpy_standin


@pytest.fixture
def quick(monkeypatch):
    from gs_mapping.runtime.rclpy_runtime import _SimClockWatch

    monkeypatch.setattr(_SimClockWatch, "PERIOD_S", 0.25)
    monkeypatch.setattr(_SimClockWatch, "STALL_S", 1.5)


def test_a_second_bag_earlier_than_the_first_ends_without_a_warning(ros, quick):
    """A bag played (/clock and frames at 142 s), then an earlier recording (/clock back to 42 s)
    which ends: the mapper works through its queued frames stamped 42.2 s after the last /clock.
    That is a bag's end, not a fault; the watch kept the first bag's newest stamp (142.2 s, 100 s
    past the stopped clock) and said 'play the bag with --clock'."""
    from test_ros37_sim_clock import _camera_info, _run

    def clock(t):
        return 142.25 if t < 0.5 else 42.25 if t < 1.0 else None

    lines = _run(ros, "mapper_node", SIM, 4.0, clock, _camera_info(lambda t: 142.2 if t < 0.5 else 42.2))
    assert lines == [], lines


# -- the fleet's spans of held sequences -----------------------------------------------------------

DAY_US = 86_400_000_000


def _fleet_check(fm, mappers: dict) -> None:
    """The server holds each vehicle's map as its mapper does, nothing waits for a numbering left
    behind, and the global map is merge_maps of the mappers' maps (the real thing)."""
    from test_fleet37_replays import P

    from gs_map_share.merge import merge_maps

    want = {mid: m.sender.shadow for mid, m in mappers.items()}
    for mid, shadow in want.items():
        v = fm.vehicles[mid]
        assert v.seq == mappers[mid].sender.seq and v.state.equals(shadow), mid
        assert len(v.pending) == 0, (mid, len(v.pending))
    assert fm.global_map.equals(merge_maps(want, P.tile_bits, 0))


def test_a_delta_inside_an_earlier_span_whose_base_is_not_is_a_replay():
    """merge.offer: ``v.spans.in_past(h.seq)``. A run the server joined at a periodic snapshot (it
    missed the run's first snapshot and delta) holds the span from that snapshot on; after the
    vehicle restarted on a clock set back, that run's first delta replayed (its sequence the span's
    first, its base below the span) is a replay, not a future delta held back (it waits for nothing)."""
    from test_fleet37_replays import _Mapper

    from gs_map_share.merge import FleetMerge

    now = 1_800_000_000_000_000
    fm = FleetMerge(__import__("test_fleet37_replays").P, global_map_id=1 << 20)
    other = _Mapper(2, 40, now)
    fm.offer(other.snapshot())
    ahead = _Mapper(1, 41, now + DAY_US)
    ahead.snapshot()  # (never reached the server)
    missed = ahead.delta()  # seq now + DAY + 1, base now + DAY: never reached the server either
    fm.offer(ahead.snapshot())  # the periodic snapshot at now + DAY + 1: the span's first
    fm.offer(ahead.delta())
    _fleet_check(fm, {1: ahead, 2: other})
    back = _Mapper(1, 42, now + 1000)  # restarted on a clock set back
    assert fm.offer(back.snapshot()).status == "snapshot"
    assert fm.offer(back.delta()).status == "applied"
    replayed = fm.vehicles[1].counts["replayed"]
    assert fm.offer(missed).status == "replayed"
    assert fm.vehicles[1].counts["replayed"] == replayed + 1
    _fleet_check(fm, {1: back, 2: other})


def test_a_vehicle_restarting_often_past_the_span_bound_is_followed_and_never_replayed():
    """A vehicle whose mapper restarts 90 times on clocks ahead and set back (MAX_SPANS = 64: the
    spans join), a snapshot and a delta each run. A restart is refused only inside the joined
    spans (never inside a gap the exact record of held sequences leaves: counted, and it must be
    inside a joined span); every restart taken is followed (merge_maps of the mappers' maps), and
    after each run every container taken so far, replayed, changes nothing."""
    import random

    import test_fleet37_replays as t

    from gs_map_share.merge import MAX_SPANS, FleetMerge

    rng = random.Random(73)
    now = 1_800_000_000_000_000
    fm = FleetMerge(t.P, global_map_id=1 << 20)
    other = t._Mapper(2, 50, now)
    fm.offer(other.snapshot())
    held: list[tuple[int, int]] = []  # the exact spans held (no joins): the reference
    taken: list[bytes] = []
    current = None
    refused = 0
    for k in range(90):
        first = now + rng.randrange(-DAY_US, DAY_US) // 1000 * 1000
        m = t._Mapper(1, 100 + k, first)
        inside = any(a <= first <= b for a, b in held)
        status = fm.offer(snap := m.snapshot()).status
        if inside:  # (a clock landing on a held sequence: stays out, documented)
            assert status == "replayed"
            continue
        if status == "replayed":  # refused outside every exact span: only where spans joined
            refused += 1
            assert len(fm.vehicles[1].spans.past) == MAX_SPANS and fm.vehicles[1].spans.in_past(first)
            continue
        assert status == "snapshot", k
        d = m.delta()
        assert fm.offer(d).status == "applied", k
        held.append((first, first + 1))
        taken += [snap, d]
        current = m
        _fleet_check(fm, {1: current, 2: other})
        seq = fm.global_seq
        for data in rng.sample(taken, min(len(taken), 12)):
            assert fm.offer(data).status == "replayed"
        assert fm.global_seq == seq
        _fleet_check(fm, {1: current, 2: other})
    sp = fm.vehicles[1].spans
    assert len(sp.past) == MAX_SPANS and len(held) > MAX_SPANS + 1
    assert all(sp.holds(a, fm.vehicles[1].seq) and sp.holds(b, fm.vehicles[1].seq) for a, b in held)
    assert refused < 10, refused


def _timer_calls(ros, clock_at, seconds: float) -> list[tuple[float, bool]]:
    """map_receiver_node under use_sim_time spun ``seconds``: a message on its delta topic every
    0.1 s (unstamped), /clock at ``clock_at(t)`` s (None: none then), and a node timer of 1 s made
    through the runtime. Returns its calls: (steady time, whether the clock watch ran it)."""
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import UInt8MultiArray
    from test_ros37_sim_clock import _node, _stamp

    from gs_mapping.runtime.rclpy_runtime import close_node

    rclpy, _ = ros
    context, node, obj = _node(rclpy, "map_receiver_node", *SIM)
    calls: list[tuple[float, bool]] = []

    def by_watch() -> bool:
        f = sys._getframe(2)
        while f is not None and not (f.f_code.co_name == "check" and "rclpy_runtime" in f.f_code.co_filename):
            f = f.f_back
        return f is not None

    obj.ctx.create_timer(1.0, lambda: calls.append((time.monotonic(), by_watch())))
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        data = player.create_publisher(UInt8MultiArray, obj.cfg.delta_topic, 10)
        t0 = next_send = time.monotonic()
        while (t := time.monotonic()) - t0 < seconds:
            if t >= next_send:
                next_send += 0.1
                data.publish(UInt8MultiArray(data=list(b"not a container")))
                if (sec := clock_at(t - t0)) is not None:
                    clock.publish(Clock(clock=_stamp(sec)))
            executor.spin_once(timeout_sec=0.02)
        player.destroy_node()
    finally:
        context.try_shutdown()
        close_node(node, obj)
    return calls


def test_a_clock_at_half_a_hertz_runs_no_timer_on_steady_time(ros):
    """_SimClockWatch.TAIL_S (2 s, over the check's 1 s): ``ros2 bag play --clock 0.5`` moves ROS
    time 2 s every 2 s while the data flows. That is a bag playing, not its tail: its timers run
    on ROS time only (with a tail of 0.5 s the watch ran them between the /clock messages)."""
    calls = _timer_calls(ros, lambda t: 100 + 2 * int(t / 2), 7.0)
    assert len(calls) >= 2 and not any(w for _, w in calls), calls


def test_after_the_bags_last_clock_a_1s_timer_runs_at_every_check(ros):
    """The tail runs: once /clock has stood 2 s (messages still coming), a 1 s node timer runs at
    each 1 s check (due within half a check), not at every other one (steady time between a call
    and the next check falls short of the period by the executor's jitter)."""
    calls = _timer_calls(ros, lambda t: 100 + t if t < 1.0 else None, 8.0)
    tail = [t for t, w in calls if w]
    assert len(tail) >= 3, calls
    assert max(b - a for a, b in zip(tail[:-1], tail[1:], strict=True)) < 1.5, calls


@pytest.mark.parametrize("clock", ["ahead", "set back"])
def test_a_restarts_deltas_before_its_snapshot(clock):
    """docs/fleet.md, "Vehicles": a restarted mapper's first deltas arriving before its snapshot
    (the server's delta and snapshot subscriptions are separate topics). On a clock ahead they are
    held back for the snapshot and the server follows the mapper at once; on a clock set back they
    are below the vehicle's sequence, replays (left open: documented), and the server holds the
    snapshot until the mapper's next one, which brings it back to the mapper's map (merge_maps)."""
    import test_fleet37_replays as t

    from gs_map_share.merge import FleetMerge

    now = 1_800_000_000_000_000
    fm = FleetMerge(t.P, global_map_id=1 << 20)
    other, first = t._Mapper(2, 60, now), t._Mapper(1, 61, now)
    for data in (other.snapshot(), first.snapshot(), first.delta()):
        fm.offer(data)
    _fleet_check(fm, {1: first, 2: other})
    m = t._Mapper(1, 62, now + (DAY_US if clock == "ahead" else -DAY_US))
    snap = m.snapshot()
    early = [m.delta(), m.delta()]
    got = [fm.offer(d).status for d in early]
    assert fm.offer(snap).status == "snapshot"
    if clock == "ahead":
        assert got == ["buffered", "buffered"]
        _fleet_check(fm, {1: m, 2: other})
        return
    assert got == ["replayed", "replayed"] and fm.vehicles[1].counts["clock_back"] == 1
    assert fm.vehicles[1].seq == m.sender.seq - 2
    assert fm.offer(m.snapshot()).status == "snapshot"  # the mapper's next snapshot_period_s
    _fleet_check(fm, {1: m, 2: other})


# -- Zenoh's config-error wording ------------------------------------------------------------------


def test_a_zenoh_config_value_of_the_wrong_type_is_said_with_plain_quotes(tmp_path, capsys):
    """zenoh_runtime._short, serde's message: its text is Rust's Debug of a string, whose quotes
    come escaped (``string \\"yes\\"``); the line quotes the file's value as the file has it."""
    zenoh = pytest.importorskip("zenoh")
    from gs_mapping.cli import main

    path = tmp_path / "router.json5"
    path.write_text('{ scouting: { multicast: { enabled: "yes" } } }')
    with pytest.raises(zenoh.ZError, match="expected a boolean"):  # the reference: Zenoh refuses it
        zenoh.Config.from_file(str(path))
    assert main(["router", "--zenoh-config", str(path), "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith(f'({path}): line 1, column 37: invalid type: string "yes", expected a boolean'), (
        err
    )
