"""Outside review of commit 53dc52c (hostile pass of session 22's own fixes): the edge cases of its
new rules, each compared with something outside the suite:

- rcl itself (ros2/rcl ``rcl/src/rcl/expand_topic_name.c``, its test table
  ``rcl/test/rcl/test_expand_topic_name.cpp`` and ``node_resolve_name.c``, which validates the
  expanded name with ``rmw_validate_full_topic_name``): what a name with ``{ns}``/``{namespace}``
  expands to, and which expansions rcl then refuses;
- a hand count of a recording of two takes (which depth belongs to which colour image: each
  colour image has exactly one depth 1 ms after it and nothing else within the slop);
- tf2_ros's MessageFilter (ros2/geometry2 ``tf2_ros/message_filter.h``): the messages waiting for
  their transform leave in the order they came; and mapper_node's own rule that a frame 'not after
  the previous frame's' stamp is not mapped, i.e. the mapper sees stamps in order; the robot's
  pose by hand (x = 1 m/s × t, as tf2 interpolates it).

Known bugs are ``xfail(strict=True)`` whose reason names the bug.
"""

from __future__ import annotations

import pytest

MS = 1_000_000


# ------------------------------------------------------------------------------------------------
# topic names: rcl's substitutions that expand to a name rcl refuses


@pytest.mark.parametrize(
    ("name", "ns"),
    [
        ("/foo/{namespace}", "/my_ns"),  # rcl's own table: expands to '/foo//my_ns', 'caught by rmw'
        ("{ns}/chatter", "/"),  # root namespace: rcl's replacement is '/': '//chatter'
        ("chatter/{ns}", "/my_ns"),  # '/my_ns/chatter//my_ns'
    ],
)
def test_a_substitution_that_expands_to_a_double_slash_is_refused_as_rcl_does(name, ns):
    """rcl_expand_topic_name replaces ``{ns}``/``{namespace}`` by the node's namespace verbatim
    (``/`` in the root namespace) and adds nothing else; its test table keeps
    ``{"/foo/{namespace}", "my_node", "/my_ns", "/foo//my_ns"}`` with the comment 'this one will
    produce an invalid topic ... the '//' should be caught by rmw_validate_full_topic_name()',
    which rcl_node_resolve_name runs on every expanded name (RCL_RET_TOPIC_NAME_INVALID: rclpy's
    create_publisher raises). context.resolve_topic says 'ConfigError for a name rcl refuses', so
    that a parameter means one thing everywhere; it instead drops the empty part and serves
    '/foo/my_ns', '/chatter', '/my_ns/chatter/my_ns', names the same parameter never gets under
    rclpy."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import resolve_topic

    with pytest.raises(ConfigError):
        got = resolve_topic(name, "my_node", ns)
        print(name, ns, "->", got)


# ------------------------------------------------------------------------------------------------
# RecordingPairer: a recording of two takes (its clock steps back)


def _pair_all(events):
    from gs_mapping.sync import RecordingPairer

    pairer = RecordingPairer(20 * MS)
    pairs = []
    for stream, stamp, msg in events:
        pairs += pairer.add(stream, stamp, msg)
    pairs += pairer.finish()
    return sorted(pairs), pairer.dropped


def test_recording_pairer_pairs_every_frame_of_a_second_take_logged_two_by_two():
    """Take A at t = 100 s (four frames at 30 Hz), then the clock steps back to 0 (take B, six
    frames). Each colour image has one depth image 1 ms after it, nothing else within the 20 ms
    slop: by hand ten pairs, colour k with depth k. In take B the recorder logs two colour
    images, then their two depth images (a depth driver publishing in bursts; the class's rule
    'a message is called partnerless once the other stream has two messages beyond its slop'
    keeps both colour images waiting). The commit's take rule ('the one before is decided as at
    the end') must leave take B pairing as take A did; here add() sets the stream's newest
    stamp back to take A's after finish(), so every later take-B message is 'a step back' again."""
    A = [100_000 * MS + k * 33 * MS for k in range(4)]
    B = [k * 33 * MS for k in range(6)]
    events = []
    for k, s in enumerate(A):
        events += [(0, s, f"A{k}c"), (1, s + MS, f"A{k}d")]
    for k in range(0, 6, 2):
        events += [(0, B[k], f"B{k}c"), (0, B[k + 1], f"B{k + 1}c")]
        events += [(1, B[k] + MS, f"B{k}d"), (1, B[k + 1] + MS, f"B{k + 1}d")]
    pairs, dropped = _pair_all(events)
    want = sorted([(f"A{k}c", f"A{k}d") for k in range(4)] + [(f"B{k}c", f"B{k}d") for k in range(6)])
    assert (pairs, dropped) == (want, 0)


def test_recording_pairer_pairs_across_a_take_boundary_with_depth_logged_one_behind():
    """Colour k+1 is logged before depth k throughout (a depth image takes longer to arrive:
    the usual order in a RealSense bag), in take A (t = 100 s) and take B (t = 0). By hand:
    every colour image has its depth 1 ms after it, nothing else within 20 ms: ten pairs. At the
    boundary take B's first colour image comes before take A's last depth image; the new take of
    the colour stream must not make take A's last colour image (its depth is next) or take B's
    first ones partnerless."""
    stamps = [100_000 * MS + k * 33 * MS for k in range(5)] + [k * 33 * MS for k in range(5)]
    events = []
    for k, s in enumerate(stamps):
        events.append((0, s, f"c{k}"))
        if k:
            events.append((1, stamps[k - 1] + MS, f"d{k - 1}"))
    events.append((1, stamps[-1] + MS, f"d{len(stamps) - 1}"))
    pairs, dropped = _pair_all(events)
    assert (pairs, dropped) == ([(f"c{k}", f"d{k}") for k in range(10)], 0)


def test_recording_pairer_pairs_two_takes_logged_in_step():
    """The same two takes with each depth image logged right after its colour image: by hand ten
    pairs, nothing dropped (guards the step-back rule on the order that works today)."""
    stamps = [100_000 * MS + k * 33 * MS for k in range(5)] + [k * 33 * MS for k in range(5)]
    events = []
    for k, s in enumerate(stamps):
        events += [(0, s, f"c{k}"), (1, s + MS, f"d{k}")]
    pairs, dropped = _pair_all(events)
    assert (pairs, dropped) == ([(f"c{k}", f"d{k}") for k in range(10)], 0)


# ------------------------------------------------------------------------------------------------
# live mapper_node: frames waiting for TF, one of them also for its CameraInfo


def test_frames_leave_the_tf_queue_in_order_when_their_camera_info_is_late_too(tmp_path):
    """A 10 Hz camera on a robot driving at 1 m/s (x = 1 m/s × t). Four frames (100..400 ms)
    arrive before any TF after t = 0; their CameraInfo (but the first's) comes 10 ms after the TF.
    tf2_ros's MessageFilter holds up to queue_size messages and lets them go in the order they
    came; mapper_node's own rule drops a frame 'not after the previous frame's' stamp, i.e. the
    mapper is to see frames in stamp order. The queue is full at the fourth frame (the first goes
    with the TF there is: superseded); then the TF comes: frames 200, 300, 400 ms must reach the
    mapper in that order, each with the pose of its stamp (by hand x = 0.2, 0.3, 0.4 m).
    Today frame 400 reaches the mapper first: retrying 300 flushes 200 (waiting for its
    CameraInfo) through on_pair, which re-enters the TF queue's retry, and 200's stamp check ran
    before 400 was mapped."""
    pytest.importorskip("rosbags.rosbag2")
    import test_hostile_robot_inputs as rb
    import test_outside_recordings4 as r4

    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    T0 = rb.T0
    s = [T0 + k * 100 * MS for k in range(6)]
    plan = [
        (T0, "/tf_static", r4._tfm(rb._tf(T0, "base_link", "cam", q=rb.OPT_Q))),
        (T0 + 1, "/tf", r4._tfm(rb._tf(T0, "map", "base_link", (0.0, 0.0, 0.0)))),
        (s[1] + MS, r4.INFO, rb._info(s[1], "cam")),
    ]
    for k in (1, 2, 3, 4):
        rgb, _ = rb._scene(k)
        plan += [
            (s[k] + 2 * MS, r4.COLOR, rb._image(s[k], "cam", rgb, "rgb8")),
            (s[k] + 2 * MS + 1, r4.DEPTH, rb._image(s[k], "cam", r4._wall_depth(), "16UC1")),
        ]
    tf = [rb._tf(s[k], "map", "base_link", (0.1 * k, 0.0, 0.0)) for k in range(1, 6)]
    plan.append((s[4] + 10 * MS, "/tf", r4._tfm(*tf)))
    plan += [(s[4] + 20 * MS + k, r4.INFO, rb._info(s[k], "cam")) for k in (2, 3, 4)]
    bag = rb._write(tmp_path / "b", r4.TOPICS, plan)
    with BagReader(bag) as b:
        msgs = list(b.messages())
    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(rb.FAST + r4.NODE_TOPICS + "    mapper_node:\n      tf_wait_s: 0.5\n")
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(cfg)))
    used = []
    add = node.mapper.add_frame

    def recording(frame):
        used.append(((frame.stamp_ns - T0) // MS, round(float(frame.camera.T_map_cam[0, 3]), 4)))
        return add(frame)

    node.mapper.add_frame = recording
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    node.close()
    assert used == [(200, 0.2), (300, 0.3), (400, 0.4)], (used, node.diag.values.get("dropped"))
