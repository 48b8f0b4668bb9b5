"""Outside review (seventh pass) of issue 20 (ROS 2 for real): the nodes over time, as a running ROS 2
system drives them: simulated time that jumps back (``ros2 bag play --loop --clock``), runtime
parameter changes, and a stop by signal.

New angles, not in test_rclpy_runtime.py / test_outside_ros2_nodes.py / test_outside_ros2_qos.py /
test_outside_ros2_real3..6.py / test_outside_tf_jump.py:

- what rcl does with TIMERS and clock JUMP CALLBACKS when ROS time goes back
  (ros2/rcl humble ``src/rcl/timer.c`` ``_rcl_timer_time_jump`` / ``rcl_timer_call``, and
  ``src/rcl/time.c`` ``rcl_set_ros_time_override`` / ``rcl_clock_call_callbacks``), ported below
  and compared with test/rclpy_standin.py, which every rclpy test of the suite runs on;
- a bag played with ``--loop --clock`` under ``use_sim_time`` through rclpy, with /clock coming
  from a clock timer of its own as rosbag2's player publishes it (so the first messages of a new
  pass can come before the /clock that goes back);
- a simulator reset / ``ros2 bag play --loop --clock`` through rclpy when the camera's messages
  are served before the /tf of their stamp: the first frame of the new run is posed with the
  previous run's TF (tf2_ros clears at the clock jump; base.py ``add_tf`` only at the next /tf);
- an INTEGER for a float parameter under ``ros2 param set``: rclpy's ``_apply_descriptor`` range-checks
  an INTEGER value against ``integer_range`` only, so the node's own check is the only one;
- the nodes' "waiting for ..." console line (every 30 s of node time) when node time goes back;
- the node's log lines after SIGINT/SIGTERM: rclpy's signal handler shuts the rcl context down
  (``rclpy::shutdown_contexts``, signal_handler.cpp) while the node's /rosout publisher stays
  registered (rcl ``logging_rosout.c``); every line the node logs before ``destroy_node`` is then
  published with ``rcl_publish`` on an invalid context (publisher.c ``rcl_publisher_is_valid``:
  "publisher's context is invalid") and rcl prints "Failed to publish log message to rosout: ..."
  on stderr.

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it, as in
test_rclpy_runtime.py. Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

S = 10**9


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    distro = os.environ.get("RCLPY_DISTRO", "humble")
    store = get_typestore(Stores.ROS2_JAZZY if distro == "jazzy" else Stores.ROS2_HUMBLE)
    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(store, os.environ.get("RCLPY_SOURCE"))
    yield rclpy, standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _clock_msg(ns: int):
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    return Clock(clock=Time(sec=ns // S, nanosec=ns % S))


# ------------------------------------------------------------------------------------------------
# rcl's timer and clock-jump rules, as written (ros2/rcl humble; unchanged in jazzy 9.2.0)


class RclTimer:
    """rcl/src/rcl/timer.c: a timer on a ROS clock. ``rcl_timer_init`` registers
    ``_rcl_timer_time_jump`` with threshold min_forward 1 ns, min_backward -1 ns (any jump)."""

    def __init__(self, now: int, period: int):
        self.period, self.last, self.next = period, now, now + period

    def is_ready(self, now: int) -> bool:  # rcl_timer_is_ready: time until next call <= 0
        return self.next - now <= 0

    def call(self, now: int) -> None:  # rcl_timer_call
        self.last = now
        nxt = self.next + self.period  # "always move the next call time by exactly period forward"
        if nxt < now:  # "in case the timer has missed at least one cycle"
            ahead = now - nxt
            nxt += (1 + (ahead - 1) // self.period) * self.period
        self.next = nxt

    def jumped(self, now: int) -> None:  # _rcl_timer_time_jump, after the jump, no clock change
        if self.next <= now:
            return  # "Post Forward jump and timer is ready" (guard condition triggered)
        if now < self.last:  # "Post backwards time jump that went further back than 1 period"
            self.next, self.last = now + self.period, now


def _rcl_fires(times: list[int], period: int, start: int = 0) -> list[int]:
    """When rcl fires a timer created at ROS time ``start`` while /clock takes ``times`` in turn (the
    executor serving the timer after each /clock)."""
    t, now, fired = RclTimer(start, period), start, []
    for ns in times:
        now = ns  # rcl_set_ros_time_override: the jump callbacks run with the new time set
        t.jumped(now)
        if t.is_ready(now):
            t.call(now)
            fired.append(now)
    return fired


def test_the_rcl_timer_rule_as_written():
    """The port above on rcl's own comments: a steady clock fires once a period; after /clock goes
    back past the last call the timer fires one period after the jump, not when the clock next
    reaches the old time."""
    steps = [k * S // 10 for k in range(1, 101)]  # 0.1 s .. 10 s
    assert _rcl_fires(steps, S) == [k * S for k in range(1, 11)]
    back = steps + [k * S // 10 for k in range(1, 51)]  # then 0.1 s .. 5 s again
    assert _rcl_fires(back, S)[10:] == [S // 10 + k * S for k in range(1, 5)]  # 1.1, 2.1, 3.1, 4.1 s


def test_standin_timers_fire_after_a_backward_clock_jump_as_rcl_timers_do(ros):
    """``ros2 bag play --loop --clock``: at each new pass /clock goes back. rcl resets every timer
    of the clock (timer.c ``_rcl_timer_time_jump``: next call = now + period), so the nodes'
    diagnostics, snapshot and cloud timers keep running through the second pass. The stand-in's
    Timer (``now - last >= period``) stays silent for the whole pass: every rclpy test of the suite
    that plays a loop or a simulator reset sees no /diagnostics, no snapshot retry, no tf_wait
    expiry from the timer, where rcl has them."""
    rclpy, _ = ros
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    context = rclpy.Context()
    rclpy.init(args=["t", "--ros-args", "-p", "use_sim_time:=true"], context=context)
    try:
        node = rclpy.create_node("timed", context=context)
        fired: list[int] = []
        node.create_timer(1.0, lambda: fired.append(node.get_clock().now().nanoseconds))
        player = rclpy.create_node("player", context=context)
        clock = player.create_publisher(Clock, "/clock", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(player)
        times = [k * S // 10 for k in range(1, 101)] + [k * S // 10 for k in range(1, 51)]
        for ns in times:
            clock.publish(_clock_msg(ns))
            for _ in range(6):
                executor.spin_once(timeout_sec=0.0)
        expected = _rcl_fires(times, S)
        assert fired[:10] == expected[:10]  # (the first pass: the same)
        assert fired[10:] == expected[10:], (fired[10:], expected[10:])
    finally:
        context.try_shutdown()


def test_standin_clock_calls_jump_callbacks_as_rcl_does(ros):
    """rcl time.c: ``rcl_set_ros_time_override`` (what rclpy's TimeSource calls for each /clock)
    calls every jump callback whose threshold the jump reaches (``rcl_clock_call_callbacks``:
    delta <= min_backward), before and after setting the time. tf2_ros_py's Buffer (jazzy
    buffer.py: cleared on a jump back of 1 s or more) and rclpy's ``Clock.sleep_until`` (humble
    clock.py) rely on that; the stand-in keeps the callbacks and never calls them."""
    rclpy, _ = ros
    from rclpy.clock import JumpThreshold
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    context = rclpy.Context()
    rclpy.init(args=["t", "--ros-args", "-p", "use_sim_time:=true"], context=context)
    try:
        node = rclpy.create_node("jumped", context=context)
        jumps: list[int] = []
        threshold = JumpThreshold(
            min_forward=None, min_backward=Duration(seconds=-0.5), on_clock_change=False
        )
        handle = node.get_clock().create_jump_callback(  # noqa: F841 - kept registered
            threshold, post_callback=lambda j: jumps.append(j.delta.nanoseconds)
        )
        player = rclpy.create_node("player", context=context)
        clock = player.create_publisher(Clock, "/clock", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(player)
        for ns in (10 * S, 10 * S + S // 10, 1 * S):  # forward 0.1 s (below no threshold), back 9.1 s
            clock.publish(_clock_msg(ns))
            for _ in range(6):
                executor.spin_once(timeout_sec=0.0)
        assert node.get_clock().now().nanoseconds == 1 * S
        assert jumps == [1 * S - (10 * S + S // 10)]
    finally:
        context.try_shutdown()


# ------------------------------------------------------------------------------------------------
# ros2 bag play --loop --clock under use_sim_time, through rclpy


@pytest.fixture(scope="module")
def short_drive(tmp_path_factory):
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("real7") / "world"
    write_bag(Drive.make(5, 6, "front", (128, 72)), out, progress=False)
    with BagReader(out) as bag:
        return list(bag.messages()), {t.name: t.type for t in bag.topics}


MAPPER_YAML = (
    "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      max_gaussians: 20000\n"
    "      seeding: {stride: 8}\n      optim: {iterations: 1, first_iterations: 2}\n"
    "      keyframe: {max_gap: 4}\n      topics: {color: /cameras/front/image_raw, "
    "depth: /cameras/front/depth, camera_info: /cameras/front/camera_info}\n"
)


def _shifted(msg, dy: float):
    """A /tf message with every transform moved by ``dy`` along y (the second run of a simulator)."""
    import copy

    out = copy.deepcopy(msg)
    for tr in out.transforms:
        tr.transform.translation.y += dy
    return out


def _later(msgs, dt: int):
    """``msgs`` with every stamp (bag and header) ``dt`` later."""
    import copy

    out = []
    for topic, stamp, msg in msgs:
        m = copy.deepcopy(msg)
        for h in [tr.header for tr in m.transforms] if hasattr(m, "transforms") else [m.header]:
            h.stamp.sec, h.stamp.nanosec = divmod(h.stamp.sec * S + h.stamp.nanosec + dt, S)
        out.append((topic, stamp + dt, m))
    return out


def _long_first_run(msgs):
    """A first run whose TF covers the second run's stamps (the drive's /tf) and whose frames lie
    6 s later (the drive again, 6 s on): the second run's frames are then more than base.py's
    TIME_JUMP_S back, taken at once as a new run."""
    tf = [m for m in msgs if m[0] == "/tf"]
    rest = [m for m in msgs if m[0] not in ("/tf", "/tf_static") and not m[0].startswith("/ground_truth")]
    static = [m for m in msgs if m[0] == "/tf_static"]
    return static + tf + _later(tf + rest, 6 * S)


@pytest.mark.parametrize(
    "dy, tf_late, long_run",
    [
        pytest.param(0.0, False, False, id="bag-loop"),
        pytest.param(100.0, True, False, id="reset-tf-served-after-images"),
        pytest.param(100.0, False, True, id="reset-after-6s-bag-order"),
        pytest.param(
            100.0,
            True,
            True,
            id="reset-after-6s-tf-served-after-images",
        ),
    ],
)
def test_each_pass_under_a_clock_that_goes_back_is_mapped_at_its_own_poses(
    ros, short_drive, tmp_path, dy, tf_late, long_run
):
    """rosbag2's player (``--clock``) publishes /clock from a clock timer of its own (40 Hz), not
    before each message, so at each new pass the first messages come while /clock still says the
    end of the last pass, and /clock goes back only after them; a simulator reset is the same with
    a new trajectory (here: the same drive moved 100 m along y). The node's clock (rclpy
    TimeSource) goes back with /clock. Each pass must be mapped again, each frame at its own run's
    pose, none dropped as waiting for a TF that is gone.

    tf2_ros clears its buffer in the clock's jump callback, i.e. when /clock goes back, before any
    later message is served (geometry2 humble ``tf2_ros/src/buffer.cpp`` ``onTimeJump``: any
    backward jump; ``tf2_ros_py/tf2_ros/buffer.py`` from jazzy: ``time_jump_callback``, 1 s or more).
    base.py ``add_tf`` forgets the moving transforms only when the next /tf message arrives and
    finds the clock behind the previous /tf's. Between the two, a frame whose images are served
    before the /tf of their stamp (rclpy's executor takes ready subscriptions in creation order:
    the camera's before /tf, as test_outside_ros2_nodes.py notes) is looked up in the old run's
    TF. It is taken at once when its stamp lies more than base.py's TIME_JUMP_S (5 s) before the
    last frame (a first run of more than 5 s; a shorter one drops that first frame as 'not after the
    previous one' anyway, OLDER_IN_A_ROW), and mapped at the previous run's pose: 100 m off."""
    pytest.importorskip("torch")  # (the mapper renders with it)
    rclpy, _ = ros
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock

    from gs_mapping.messages import RclpyFactory, convert_message
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import _msg_class, close_node, create_node

    msgs, types = short_drive
    if tf_late:
        rank = {"/tf_static": 0, "/tf": 2}
        msgs = sorted(msgs, key=lambda m: (m[0] != "/tf_static", m[1], rank.get(m[0], 1)))
    f = tmp_path / "m.yaml"
    f.write_text(MAPPER_YAML)
    context = rclpy.Context()
    rclpy.init(args=["m", "--ros-args", "--params-file", str(f), "-p", "use_sim_time:=true"], context=context)
    node, obj = create_node(MapperNode, context)
    try:
        posed: list[tuple[int, int, np.ndarray]] = []  # (pass, stamp, camera position in map)
        add_frame, current = obj.mapper.add_frame, [0]

        def recording(frame):
            posed.append((current[0], frame.stamp_ns, np.asarray(frame.camera.T_map_cam)[:3, 3].copy()))
            return add_frame(frame)

        obj.mapper.add_frame = recording
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("rosbag2_player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)
        pubs, factory = {}, RclpyFactory()

        def spin(n=12):
            for _ in range(n):
                executor.spin_once(timeout_sec=0.0)

        for run in range(2):
            current[0], last_clock = run, None
            for topic, stamp, msg in _long_first_run(msgs) if long_run and not run else msgs:
                if topic.startswith("/ground_truth") or (topic == "/tf_static" and run):
                    continue
                if topic == "/tf" and run:
                    msg = _shifted(msg, dy)
                if topic not in pubs:
                    qos = QoSProfile(depth=100)
                    if topic == "/tf_static":
                        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
                    pubs[topic] = player.create_publisher(_msg_class(types[topic]), topic, qos)
                pubs[topic].publish(convert_message(msg, types[topic], factory))
                spin()
                if last_clock is None or stamp - last_clock >= S // 40:  # --clock's 40 Hz timer
                    clock.publish(_clock_msg(stamp))
                    last_clock = stamp
                    spin(4)
            spin(40)
        n_frames = len({s for t, s, _ in msgs if t == obj.cfg.topics.color})
        shift = 6 * S if long_run else 0  # (the first run's frames of the same drive pose)
        first = {s - shift: xyz for r, s, xyz in posed if r == 0}
        second = [(s, xyz) for r, s, xyz in posed if r == 1]
        assert len(first) == n_frames and len(second) >= n_frames - (0 if long_run else 1), (
            len(posed),
            dict(obj.diag.dropped),
        )
        assert "frames_no_pose" not in obj.diag.dropped, dict(obj.diag.dropped)
        for s, xyz in second:  # the same camera, moved by dy: nothing of the first run's poses
            np.testing.assert_allclose(xyz, first[s] + [0.0, dy, 0.0], atol=1e-6, err_msg=f"frame at {s}")
    finally:
        context.try_shutdown()
        close_node(node, obj)


# ------------------------------------------------------------------------------------------------
# ros2 param set: an INTEGER for a float parameter


def test_an_integer_out_of_range_for_a_float_parameter_is_refused_and_the_old_value_kept(ros):
    """``ros2 param set /map_receiver_node map_receiver_node.min_opacity 5`` sends an INTEGER. The
    float parameters are declared with dynamic typing (rclpy_runtime._descriptor), and rclpy's
    ``_apply_descriptor`` (node.py, humble and jazzy) checks ``floating_point_range`` only for a
    DOUBLE value: rclpy itself lets 5 and -1 through. The node must refuse them with a reason, keep
    the old value in rclpy (what ``ros2 param get`` / ``dump`` show) and in what it uses, and still
    take an integer inside the range."""
    rclpy, _ = ros
    from rclpy.parameter import Parameter

    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    context = rclpy.Context()
    rclpy.init(args=["r", "--ros-args"], context=context)
    node, obj = create_node(MapReceiverNode, context)
    try:
        name = "map_receiver_node.min_opacity"
        before = node.get_parameter(name).value
        for bad in (5, -1):
            (res,) = node.set_parameters([Parameter(name, value=bad)])
            assert not res.successful and "min_opacity" in res.reason, res
            assert node.get_parameter(name).value == before == obj.cfg.min_opacity
        (res,) = node.set_parameters([Parameter(name, value=1)])
        assert res.successful and obj.cfg.min_opacity == 1.0
    finally:
        context.try_shutdown()
        close_node(node, obj)


# ------------------------------------------------------------------------------------------------
# a stop by signal: what the node logs after rclpy's handler has shut the context down


def test_no_node_log_line_goes_to_rosout_on_a_shut_down_context(ros, tmp_path, monkeypatch):
    """``ros2 launch`` ends a node with SIGINT (then SIGTERM), ``docker stop`` with SIGTERM. The
    entry point runs on rclpy's default context, so ``rclpy.init`` installs rclpy's handlers for
    both (``SignalHandlerOptions.ALL``); on the signal they ``rcl_shutdown`` the context and nothing
    else (SIGTERM: the previous handler is SIG_DFL and not called). run_node then closes the node:
    the receiver saves its map and says so with ``node.get_logger().info``, before
    ``destroy_node``. rcl (logging_rosout.c ``rcl_logging_rosout_output_handler``) publishes that
    line on the node's /rosout publisher, still registered, and ``rcl_publish`` refuses it
    (publisher.c: "publisher's context is invalid"), so the user sees after every stop
    ``Failed to publish log message to rosout: publisher's context is invalid, at
    ./src/rcl/publisher.c:389`` on stderr. Modelled here: rclpy's signal handler (on a thread, as
    rclpy's deferred handler) and rcl's rosout rule, counting the node-logger lines of INFO and
    above (the default level) made between the shutdown and ``destroy_node``. A node that handles
    the signal itself (``signal_handler_options=NO`` and its own handler) gets the real signal."""
    rclpy, standin = ros
    import rclpy_standin
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import get_default_context
    from std_msgs.msg import UInt8MultiArray
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import encode_map
    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    installed: list = []
    monkeypatch.setattr(standin, "install_signal_handlers", lambda opts=None, *a: installed.append(opts))
    marks: dict[str, int] = {}
    destroy = Node.destroy_node

    def destroy_node(self):
        if self.get_name() == "map_receiver_node":
            marks.setdefault("destroyed", len(rclpy_standin.LOG))
        return destroy(self)

    monkeypatch.setattr(Node, "destroy_node", destroy_node)

    # the mapper's latched snapshot, offered before the receiver starts (a late joiner gets it)
    pub_context = rclpy.Context()
    rclpy.init(args=["pub"], context=pub_context)
    pub_node = rclpy.create_node("mapper_node_stub", context=pub_context)
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = pub_node.create_publisher(UInt8MultiArray, "/mapper_node/map_snapshot", qos)
    data, _ = encode_map(synthetic_map(300, 0, seed=7))
    pub.publish(bytes_to_uint8_multiarray(data, RclpyFactory()))

    held: list = []

    class Receiver(MapReceiverNode):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            held.append(self)

    def stopper():
        end = time.monotonic() + 30
        while not (held and held[0].store.ready) and time.monotonic() < end:
            time.sleep(0.01)
        marks["had_map"] = int(bool(held and held[0].store.ready))  # (else: stopped all the same)
        time.sleep(0.2)
        opts = installed[-1] if installed else SignalHandlerOptions.NO
        marks["signal"] = len(rclpy_standin.LOG)
        if int(opts) & int(SignalHandlerOptions.SIGTERM):
            get_default_context().handle.shutdown()  # rclpy::shutdown_contexts -> rcl_shutdown
        elif signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            os.kill(os.getpid(), signal.SIGTERM)  # the node's own handler
        else:
            marks["no_handler"] = 1
            get_default_context().handle.shutdown()

    save = tmp_path / "rx.ply"
    t = threading.Thread(target=stopper, daemon=True)
    t.start()
    try:
        rc = run_node(
            Receiver, ["map_receiver_node", "--ros-args", "-p", f"map_receiver_node.save_path:={save}"]
        )
    finally:
        t.join(5)
        pub_node.destroy_node()
        pub_context.try_shutdown()
        rclpy.try_shutdown()
    assert rc == 0 and marks.get("had_map") and "no_handler" not in marks, marks
    assert save.stat().st_size > 0
    logger = "map_receiver_node"
    after = rclpy_standin.LOG[marks["signal"] : marks.get("destroyed", len(rclpy_standin.LOG))]
    to_rosout = [m for sev, name, m in after if name == logger and sev >= 20]
    assert to_rosout == [], to_rosout


# ------------------------------------------------------------------------------------------------
# the "waiting for ..." console line under a clock that goes back


def test_the_waiting_line_is_repeated_on_every_pass_of_a_looped_bag(ros):
    """base.py: a node that waits for an input 'says so on the console when what it waits for
    changes, and again every this many seconds of node time' (WAITING_REPEAT_S, 30 s): a wrong
    topic name shows where the user looks. Played with ``ros2 bag play --loop --clock`` (a 50 s
    bag, use_sim_time), the receiver that never gets a map says it at 1 s and 31 s of the first
    pass; in the second pass node time runs 49 s more, but the rule compares the clock (0.5 s ..
    49.5 s) with the last saying (31 s) and never repeats, on that pass or any later one. rclpy's
    own repeat (``logger.warning(..., throttle_duration_sec=30)``, rcutils_logger.py) counts on the
    system clock, which a loop does not turn back. Hand count: 49 s of node time, 30 s period:
    at least one line in the second pass."""
    rclpy, _ = ros
    import rclpy_standin
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    context = rclpy.Context()
    rclpy.init(args=["r", "--ros-args", "-p", "use_sim_time:=true"], context=context)
    node, obj = create_node(MapReceiverNode, context)
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        player = rclpy.create_node("rosbag2_player", context=context)
        executor.add_node(player)
        clock = player.create_publisher(Clock, "/clock", 10)

        def said_in(times: list[int]) -> int:
            n = len(rclpy_standin.LOG)
            for ns in times:
                clock.publish(_clock_msg(ns))
                for _ in range(50):
                    if node.get_clock().now().nanoseconds == ns:
                        break
                    executor.spin_once(timeout_sec=0.0)
                assert node.get_clock().now().nanoseconds == ns
                obj.on_diagnostics_timer()  # (what rcl's timer calls each diagnostics period)
            return sum(
                "waiting for" in m for _, name, m in rclpy_standin.LOG[n:] if name == node.get_logger().name
            )

        first = said_in([k * S for k in range(1, 51)])  # 1 s .. 50 s
        second = said_in([k * S + S // 2 for k in range(0, 50)])  # the loop: 0.5 s .. 49.5 s
        assert first >= 2  # (1 s and 31 s)
        assert second >= 1, (first, second)
    finally:
        context.try_shutdown()
        close_node(node, obj)
