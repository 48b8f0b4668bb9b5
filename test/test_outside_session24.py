"""Outside review of session 24's changes (a hostile pass over ``sync.RecordingPairer``'s new
glitch-ahead logic, ``topics.tf_topics`` as hd-predict now reads a bag's TF, and the other callers).

Expected values come from outside the component: the rule ``sync.RecordingPairer`` documents for a
finished recording ("each with its mutually nearest partner within slop_ns, each message used once",
and "a stream logged late (a second behind the other) still pairs, up to ``keep`` messages
waiting"), computed by brute force over the whole recording (``test_sync_approximate._mutual_nearest``);
bags written with rosbags only (``test_hostile_robot_inputs``), whose transforms a hand computation
and tf2's rule resolve (``base_link -> camera`` is on the global ``/tf_static``: tf2 needs nothing
else to look it up); and the behaviour of the same code at 8d718da (the commit before the session),
run on the same inputs. Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import pytest
from test_sync_approximate import _mutual_nearest

MS = 1_000_000
T0 = 10**18


def _pair(a, b, log, slop_ns=20 * MS):
    """RecordingPairer over a recording logged in ``log`` order ([(log time, stream, index)])."""
    from gs_mapping.sync import RecordingPairer

    p, got = RecordingPairer(slop_ns), []
    for _, s, k in log:  # (each message logged in its place, whatever its stamp)
        got += p.add(s, (a, b)[s][k], k)
    got += p.finish()
    return sorted(got)


# -- a stream logged a second late, with a pause (or a clock step forward) on both streams --------
@pytest.mark.parametrize("late_ms", [1100, 1500])
def test_stream_logged_late_across_a_pause_of_both_pairs_as_the_rule(late_ms):
    """Colour and depth at 30 Hz, depth logged ``late_ms`` behind colour (within ``keep`` = 60
    messages: 2 s, which the class documents as pairing), and both drivers paused for 3 s (a camera
    restart; the same for both clocks stepped ahead by NTP). By the documented rule all 300 frames
    pair, as they did at 8d718da. Now the depth stream's jump is taken for a glitch 'ahead' until
    60 depth messages pass: `_queue` confirms a jump only where ``abs(newest(other) - newest(this))
    <= STEP_BACK_NS``, and the other stream's newest is the logging lag (> 1 s) ahead; meanwhile
    ``_decide`` waits on the pre-jump stamp and the colour queue is cut to ``keep``: 34-46 pairs lost."""
    colour = [T0 + k * 33 * MS + (3 * 10**9 if k >= 150 else 0) for k in range(300)]
    depth = [c + 1 * MS for c in colour]
    log = sorted([(c, 0, k) for k, c in enumerate(colour)] + [(d + late_ms * MS, 1, k) for k, d in enumerate(depth)])  # fmt: skip
    expected = _mutual_nearest(colour, depth, 20 * MS)
    assert len(expected) == 300
    assert _pair(colour, depth, log) == expected


@pytest.mark.parametrize("period_s", [1.5, 3.0])
def test_slow_stream_logged_late_pairs_as_the_rule(period_s):
    """A 30 Hz colour stream and a second stream with one message every ``period_s`` (stamped on a
    colour frame, +2 ms), logged 1.2 s late. Each slow message steps > STEP_BACK_NS past its own
    newest, so each opens an 'ahead' that is confirmed only when the fast stream's newest is within
    1 s of it, never true with a 1.2 s logging lag; the pairs wait until the fast queue is cut to
    ``keep``. By the rule (and at 8d718da) every slow message pairs."""
    fast = [T0 + k * 33 * MS for k in range(300)]
    step = int(round(period_s * 1000 / 33))
    slow = [fast[k] + 2 * MS for k in range(0, 300, step)]
    log = sorted([(s, 0, k) for k, s in enumerate(fast)] + [(s + 1200 * MS, 1, k) for k, s in enumerate(slow)])  # fmt: skip
    expected = _mutual_nearest(fast, slow, 20 * MS)
    assert len(expected) == len(slow)
    assert _pair(fast, slow, log) == expected


@pytest.mark.parametrize("late_ms", [0, 500])
@pytest.mark.parametrize("period_s", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("slow_first", [True, False])
def test_streams_at_very_different_rates_pair_as_the_rule(period_s, late_ms, slow_first):
    """Guard (passes): a stream with one message every 1.5-3 s beside a 30 Hz one (each slow
    message is a step of more than STEP_BACK_NS past its own newest: the new glitch-ahead logic
    must take it for a real jump, as the other stream follows). Either stream slow, logged in
    time or 0.5 s late: every slow message pairs with its colour frame, by the brute-force rule."""
    fast = [T0 + k * 33 * MS for k in range(300)]
    step = int(round(period_s * 1000 / 33))
    slow = [fast[k] + 2 * MS for k in range(0, 300, step)]
    a, b = (slow, fast) if slow_first else (fast, slow)
    log = sorted([(s, 0, k) for k, s in enumerate(a)] + [(s + late_ms * MS, 1, k) for k, s in enumerate(b)])  # fmt: skip
    expected = _mutual_nearest(a, b, 20 * MS)
    assert len(expected) == len(slow)
    assert _pair(a, b, log) == expected


@pytest.mark.parametrize("start_s", [1.5, 3.0])
@pytest.mark.parametrize("which", [0, 1])
def test_a_stream_that_starts_seconds_later_pairs_as_the_rule(start_s, which):
    """Guard (passes): one stream's first message seconds after the other's (its first stamp is more
    than STEP_BACK_NS past the other's first: the new 'for its first, the other stream's newest'
    reference must not take it for a glitch). Every message of the later stream pairs."""
    first = [T0 + k * 100 * MS for k in range(100)]
    later = [s + 1 * MS for s in first if s >= T0 + int(start_s * 1e9)]
    a, b = (later, first) if which == 0 else (first, later)
    log = sorted([(s, 0, k) for k, s in enumerate(a)] + [(s, 1, k) for k, s in enumerate(b)])
    expected = _mutual_nearest(a, b, 20 * MS)
    assert len(expected) == len(later)
    assert _pair(a, b, log) == expected


# -- hd-predict on a multi-robot recording whose camera mount is on the global /tf_static ---------
def test_hd_predict_multi_robot_tf_beside_global_tf_static(tmp_path, capsys):
    """A recording with the camera mount (``base_link -> camera_link -> optical``) on the global
    ``/tf_static``, a global ``/tf`` advertised and recorded empty, and two robots' odometry on
    ``/robot1/tf`` and ``/robot2/tf``. hd-predict needs only ``base_link <- camera`` (tf2 resolves it
    from ``/tf_static`` alone, a hand-checked chain of two static transforms): at 8d718da it
    predicted all 4 frames. Now ``predict_bag`` calls ``topics.tf_topics(bag)`` before anything
    else and its several-robots ConfigError ends the run (exit 2, 'one robot's TF topics must be
    chosen', with no hd-predict option to choose one). Expected: the global TF used (or the
    namespaced ones ignored) and 4 frames predicted."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    pytest.importorskip("torch")  # (the GSMap model)
    import test_hostile_robot_inputs as rb
    import test_outside_recordings7 as r7

    T = rb.T
    extra = []
    for i in range(-1, 6):
        ns = rb.T0 + i * rb.DT
        extra.append((ns, "/robot1/tf", T[rb.TFM](transforms=[rb._tf(ns, "odom", "robot1/base_link", (0.02 * i, 0, 0))])))  # fmt: skip
        extra.append((ns, "/robot2/tf", T[rb.TFM](transforms=[rb._tf(ns, "odom", "robot2/base_link", (0.03 * i, 0, 0))])))  # fmt: skip
    bag = rb.robot_bag(
        tmp_path / "b",
        n=4,
        tf_dyn=lambda ns, i: [],  # (the global /tf advertised, no message)
        extra_topics={"/robot1/tf": rb.TFM, "/robot2/tf": rb.TFM},
        extra_msgs=extra,
    )
    rc, summary, last = r7._hd_predict(capsys, bag, tmp_path / "hd.json")
    assert rc == 0, last
    assert summary["frames"] == 4 and summary["skipped_frames"] == 0, summary


# -- bag_repair: an MCAP without messages, written without a Statistics record --------------------
def test_whole_mcap_without_messages_or_statistics_reads_as_mcap_and_rosbags_read_it(tmp_path, monkeypatch):
    """Session 24 made 'a whole MCAP without messages read as it is', but only where the summary
    has a Statistics record (``message_count == 0``) or an empty chunk. The MCAP spec makes
    Statistics optional; the official ``mcap`` writer omits it with ``use_statistics=False`` and then
    writes no chunk for a file without messages. The file is whole (footer, summary with its Schema
    and Channel): ``mcap``'s own reader and rosbags both read it as one topic with 0 messages.
    ``BagReader`` raises 'cut short before its first whole message (nothing to read)' —
    ``bag_repair._mcap_unindexed`` returns True for 'no chunk indexes and a channel' and
    ``_rebuild_mcap`` refuses the empty rebuild."""
    import tempfile

    from mcap.reader import make_reader
    from mcap.writer import Writer

    pytest.importorskip("rosbags.rosbag2")
    from rosbags.rosbag2 import Reader

    from gs_mapping.bag import BagReader

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # (a repair's scratch stays in tmp_path)
    path = tmp_path / "empty.mcap"
    with path.open("wb") as f:
        w = Writer(f, use_statistics=False)
        w.start(profile="ros2", library="test")
        sid = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        w.register_channel("/chatter", "cdr", sid)
        w.finish()
    with path.open("rb") as f:  # the reference readers
        reader = make_reader(f)
        assert list(reader.iter_messages()) == []
        assert [c.topic for c in reader.get_summary().channels.values()] == ["/chatter"]
    with Reader(path) as rr:
        assert [(c.topic, c.msgcount) for c in rr.connections] == [("/chatter", 0)]
    with BagReader(path) as bag:
        assert [(t.name, t.count) for t in bag.topics] == [("/chatter", 0)]


# -- tf_topics: a second robot with only its latched tf_static is not a second robot's TF ----------
def test_tf_topics_one_robot_moving_beside_another_robots_static_only(tmp_path):
    """A recording (no global /tf) of robot1 driving (``/robot1/tf``, ``/robot1/tf_static``) while a
    parked robot2's robot_state_publisher latched its URDF on ``/robot2/tf_static`` and nothing on
    ``/robot2/tf`` (its odometry not running; ``/robot2/tf`` is not in the bag). README: 'where
    ``/tf`` holds no message ... but one robot's namespaced ``/robot1/tf`` does ..., that robot's
    ``/robot1/tf`` and ``/robot1/tf_static`` too': exactly one robot's ``tf`` holds messages (read
    here with rosbags), so robot1's TF is read, as ``map`` did at 8d718da (its namespaces came from
    ``…/tf`` topics only). Now ``topics.tf_topics`` collects namespaces from ``…/tf_static`` too and
    raises 'several robots' namespaces (/robot1/tf, /robot2/tf)', a topic the bag does not have."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    import test_hostile_robot_inputs as rb
    from rosbags.rosbag2 import Reader

    from gs_mapping.bag import BagReader
    from gs_mapping.topics import tf_topics

    T = rb.T
    topics = {"/tf_static": rb.TFM, "/robot1/tf": rb.TFM, "/robot1/tf_static": rb.TFM, "/robot2/tf_static": rb.TFM}  # fmt: skip
    msgs = [
        (
            rb.T0 - 2,
            "/robot1/tf_static",
            T[rb.TFM](transforms=[rb._tf(rb.T0, "robot1/base_link", "robot1/camera_link")]),
        ),  # fmt: skip
        (
            rb.T0 - 1,
            "/robot2/tf_static",
            T[rb.TFM](transforms=[rb._tf(rb.T0, "robot2/base_link", "robot2/camera_link")]),
        ),  # fmt: skip
        (rb.T0 - 1, "/tf_static", T[rb.TFM](transforms=[rb._tf(rb.T0, "map", "robot1/odom")])),
    ]
    for i in range(5):
        ns = rb.T0 + i * rb.DT
        msgs.append((ns, "/robot1/tf", T[rb.TFM](transforms=[rb._tf(ns, "robot1/odom", "robot1/base_link", (0.02 * i, 0, 0))])))  # fmt: skip
    path = rb._write(tmp_path / "b", topics, msgs)
    with Reader(path) as r:  # (rosbags: which robots' moving TF holds a message)
        moving = sorted(c.topic for c in r.connections if c.topic.endswith("/tf") and c.msgcount)
    assert moving == ["/robot1/tf"]
    with BagReader(path) as bag:
        got = tf_topics(bag)
    assert ("/robot1/tf", False) in got and ("/robot1/tf_static", True) in got, got
    assert all(not n.startswith("/robot2/") for n, _ in got), got


# -- the live ApproximateTimeSynchronizer under ros2 bag play --loop --------------------------------
@pytest.mark.parametrize("lag_ms", [60, 120])
def test_live_sync_under_bag_play_loop_keeps_the_last_frames_of_each_loop(lag_ms):
    """Two cameras (hd_map_node: queue_size 5, 10 ms slop) fed by ``ros2 bag play --loop`` of a
    3 s, 30 Hz recording played 3 times, camera b's messages delivered ``lag_ms`` after camera a's
    (a slower transport). Hand computation of message_filters' rule: each b stamp is 1 ms after its
    a stamp and 33 ms from every other, so each of the 270 sets has exactly one possible member per
    input, all its messages arrive, and no queue exceeds 5 (the lag is at most 4 messages): 270
    sets, nothing dropped (as at 8d718da). Session 24's rule ('a message stamped more than
    STEP_BACK_NS before others queued on its input drops those') runs when a's first message of the
    next loop arrives and drops a's last 2-4 messages of the loop before, whose b partners are
    still in flight: 268 or 264 sets."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    sync = ApproximateTimeSynchronizer(["a", "b"], 5, 0.01)
    n, events = 90, []
    for loop in range(3):
        for k in range(n):
            stamp, t = T0 + k * 33 * MS, (loop * n + k) * 33 * MS
            events += [(t, "a", stamp), (t + lag_ms * MS + 1, "b", stamp + 1 * MS)]
    for _, key, stamp in sorted(events):
        sync.add(key, stamp, stamp)
    assert (sync.matched, sync.dropped, sync.pending()) == (3 * n, 0, 0)
