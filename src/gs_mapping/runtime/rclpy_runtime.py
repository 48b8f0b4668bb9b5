"""rclpy runtime (ROS 2 Humble / Jazzy): the same node objects as replay and DDS, on a real ROS 2 node.

Kept thin on purpose: QoS mapping, parameters declared from the config dataclasses (descriptions,
ranges, ``read_only`` for what a node cannot change while running, a set-parameters callback for what
it can), message classes by type name, and spinning.

What has checked it (README, "What was tested where"): ``test/test_rclpy_runtime.py`` runs the three
nodes under this module with rclpy's own pure-Python package (Humble's, from PyPI
``rclpy-intellisense``; Jazzy's from the rclpy repository in a developer session) and only rclpy's C
extension replaced by an in-process stand-in (``test/rclpy_standin.py``: parameter-file parsing, topic
matching by name/type/QoS, wait sets), with stand-in message classes generated from the rosbags
typestore. It has not run against rclpy's C layer (rcl, an rmw, rosidl-generated messages): that
needs a ROS 2 machine.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ..config_file import describe, from_dict, unflatten
from ..cpu_threads import prefer_single_thread_torch
from ..errors import ConfigError
from ..nodes.context import QoS


def _msg_class(typename: str) -> type:
    """The rosidl-generated class of ``typename``; :class:`ConfigError` in one line naming the ROS
    package to install where its Python package is not there (a driver's message package, such as
    livox_ros_driver2, is built from source in a workspace of its own), or to rebuild where its C
    type support does not load."""
    from rclpy.exceptions import NoTypeSupportImportedException
    from rclpy.type_support import check_for_type_support

    pkg, kind, name = typename.split("/")
    try:
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"message type {typename}: {exc}; install the ROS 2 package {pkg} (or build it in a "
            "workspace) and source its setup file before starting the node"
        ) from None
    try:  # (rosidl's __import_type_support__ logs a C extension's ImportError at debug level only)
        check_for_type_support(cls)
    except (NoTypeSupportImportedException, ImportError, AttributeError) as exc:
        distro = os.environ.get("ROS_DISTRO", "this ROS distribution")
        raise ConfigError(
            f"message type {typename}: its C type support does not load ({type(exc).__name__}: the "
            f"package built for another ROS distribution or Python?); rebuild the ROS 2 package {pkg} "
            f"against {distro} and source its setup file"
        ) from None
    return cls


def _raw_decoder(typename: str) -> Callable[[bytes], Any] | None:
    """How a subscription of ``typename`` reads its messages from their CDR bytes, where rclpy's
    own conversion (one Python object a point, each field through rosidl's checked setters) cannot
    keep up: Livox's CustomMsg (:func:`gs_mapping.messages.custom_msg_from_cdr`); None: rclpy's."""
    from ..topics import LIVOX_CUSTOM_MSGS

    if typename in LIVOX_CUSTOM_MSGS:
        from ..messages import custom_msg_from_cdr

        return custom_msg_from_cdr
    return None


def _qos_overriding_options():
    """Which QoS policies ``qos_overrides`` parameters may change: rclpy's defaults (history, depth,
    reliability) and durability (a latched map topic read by a volatile tool, or the reverse), with
    a keep-last depth below 1 refused (rcl would fail on it, or keep nothing)."""
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.qos import HistoryPolicy, QoSPolicyKind
    from rclpy.qos_overriding_options import QoSOverridingOptions

    def check(profile: Any) -> Any:
        if profile.history == HistoryPolicy.KEEP_LAST and profile.depth < 1:
            return SetParametersResult(
                successful=False, reason=f"keep-last depth {profile.depth}: at least 1"
            )
        return SetParametersResult(successful=True)

    kinds = (QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY)
    return QoSOverridingOptions(kinds, callback=check)


def _qos_profile(qos: QoS):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE,
    )


class RclpyContext:
    """:class:`~gs_mapping.nodes.context.NodeContext` on an ``rclpy.node.Node``."""

    def __init__(self, node: Any):
        from ..messages import RclpyFactory

        self.node = node
        self.node_name = node.get_name()
        self.namespace = node.get_namespace()
        self.factory = RclpyFactory()
        # rclpy's RcutilsLogger: debug/info/warning/error(message, **kwargs), ONE string argument.
        self.logger = _NodeLogger(node)
        self._keep: list[Any] = []
        self.clock_watch = _SimClockWatch(node, self.logger)

    def resolve_topic_name(self, topic: str) -> str:
        return self.node.resolve_topic_name(topic)  # (rcl: expansion, then the -r rules)

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> Any:
        cls = _msg_class(typename)
        pub = self._overridden(
            "publisher",
            topic,
            lambda options: self.node.create_publisher(
                cls, topic, _qos_profile(qos), qos_overriding_options=options
            ),
        )
        return _Publisher(pub, self.node)

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        cls, decode = _msg_class(typename), _raw_decoder(typename)
        callback = self.clock_watch.counted(callback)
        if decode is not None:
            callback, raw = self._decoded(topic, decode, callback), True
        else:
            raw = False
        sub = self._overridden(
            "subscription",
            topic,
            lambda options: self.node.create_subscription(
                cls, topic, callback, _qos_profile(qos), qos_overriding_options=options, raw=raw
            ),
        )
        self._keep.append(sub)

    def publisher_count(self, topic: str) -> int:
        """Publishers rmw sees on ``topic`` as this node's subscriptions resolve it (remapping
        too: rclpy's own ``count_publishers`` only expands the name)."""
        if not self.node.context.ok():
            return 0
        return self.node.count_publishers(self.resolve_topic_name(topic))

    def _overridden(self, kind: str, topic: str, create: Callable[[Any], Any]) -> Any:
        """``create(options)`` with rclpy's QoS overriding options: the ``qos_overrides.<topic>.<kind>.
        <policy>`` parameters a params file or ``-p`` gives (ROS 2's way to match a driver's QoS) are
        applied, as rclcpp's and rclpy's own nodes that opt in do; without the options rclpy leaves
        them unread without a word. A value rclpy cannot apply is a :class:`ConfigError` naming the
        parameter, not a traceback."""
        from rclpy.qos_overriding_options import InvalidQosOverridesError

        try:
            return create(_qos_overriding_options())
        except (InvalidQosOverridesError, RuntimeError) as exc:  # (rclpy: RuntimeError for a bad policy name)
            try:
                prefix = f"qos_overrides.{self.node.resolve_topic_name(topic)}.{kind}."
            except Exception:  # noqa: BLE001 - a name rcl refuses: rclpy's own error stands
                raise exc from None
            given = sorted(n for n in getattr(self.node, "_parameter_overrides", {}) if n.startswith(prefix))
            if not given:
                raise
            raise ConfigError(f"{', '.join(given)}: {exc}") from None

    def _decoded(self, topic: str, decode: Callable[[bytes], Any], callback: Callable[[Any], None]):
        """A raw subscription's callback: the CDR bytes decoded, then ``callback``; bytes that do not
        decode are skipped with a line (the first of a topic a warning), as rmw drops a message it
        cannot deserialise."""
        from ..errors import MessageError

        said = False

        def run(data: bytes) -> None:
            nonlocal said
            try:
                msg = decode(data)
            except MessageError as exc:
                # (two call sites: rclpy ties one to one severity)
                if said:
                    self.logger.debug(f"{topic}: undecodable message skipped: {exc}")
                else:
                    self.logger.warning(f"{topic}: undecodable message skipped: {exc}")
                said = True
                return
            callback(msg)

        return run

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        # (on the node's clock, ROS time under use_sim_time; a bag's tail: _SimClockWatch)
        self._keep.append(self.node.create_timer(period_s, self.clock_watch.periodic(period_s, callback)))

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def clock_stopped(self) -> bool:
        """Whether the timer callback now running was run on steady time because ROS time stands
        still (a bag's end or pause: :class:`_SimClockWatch`'s tail) and no message came since the
        check before (the node is idle: what it does now is what it ends with, until more comes)."""
        return self.clock_watch.in_tail and self.clock_watch.quiet

    def ros_time(self) -> bool:
        """Whether the node's clock is ROS time from /clock (use_sim_time): rcl calls clock-jump
        callbacks, and tf2_ros clears its buffer, only for that clock's jumps."""
        return bool(getattr(self.node.get_clock(), "ros_time_is_active", False))


class _SimClockWatch:
    """Under ``use_sim_time`` the node's timers (diagnostics, the waiting lines, the receiver's map
    cloud, the snapshots for late joiners) run on ROS time, which only /clock moves: a bag played
    without ``--clock`` (or a /clock publisher gone while the data goes on) leaves the node mapping in
    silence, no line, no /diagnostics, no cloud. Every ``PERIOD_S`` of steady time this checks ROS
    time; where it stood still for ``STALL_S`` while messages came on the node's subscriptions it says
    so, once a stall (rclpy's own /clock subscription is not counted): at 0 (no /clock ever came)
    whatever came, else only once a message stamped ``STALL_S`` past it came (a bag's end stops
    /clock while a node still works through what it had queued, stamped before it: not a fault).

    That bag's tail: the receiver applies the mapper's last deltas, the map server the last
    containers, after the last /clock; their outputs (the map cloud, the global delta and the
    acknowledgements, /diagnostics) wait for a timer that ROS time no longer moves. So where /clock
    came and has stood still for ``TAIL_S`` with no fault said above, each node timer that messages
    came for since its last call runs once its period has passed on steady time (at most every
    ``PERIOD_S``). Before the first /clock nothing runs while nothing came, or while messages keep
    coming (the node waits for the bag's clock; a bag played without it is said below); where
    messages came and none has for ``TAIL_S`` with ROS time still at 0 (a receiver started after a
    bag's end gets the latched snapshot and nothing else: no /clock will come), the timers run so
    too, said once: the node publishes what it holds (stamped 0) rather than wait for a clock that
    is over. ROS time going back (a bag looped, or an earlier one played next) forgets the stamps
    above it.
    A timer so run sees :meth:`RclpyContext.clock_stopped` true where no message came since the
    check before (the mapper then latches a fresh snapshot for late joiners, once, not at every
    check while it still works through frames); a timer callback that returns true (work left for
    such a call) runs again at the next check without a message. A parameter change (:func:`_on_set_parameters`) counts as a message:
    what it changes in a periodic output goes out at the next check, ROS time standing still."""

    PERIOD_S = 1.0
    STALL_S = 5.0
    TAIL_S = 2.0  # (over PERIOD_S: a 1 Hz /clock stands still up to 1 s at a check)

    def __init__(self, node: Any, logger: Any) -> None:
        from rclpy.clock import Clock, ClockType

        self.node, self.logger = node, logger
        self.messages = 0  # taken on the node's subscriptions (counted)
        self._changes = 0  # parameter changes applied (changed): for the tail only, not the stall line
        self._ros_ns: int | None = None  # ROS time at the last check
        self._since = 0.0  # steady time ROS time has stood at _ros_ns since
        self._seen = 0  # messages then
        self._said = False
        self._unclocked_said = False  # the steady-time runs with no /clock at all: said once
        self.newest_ns = 0  # the newest header stamp among them
        # [period_s, call, steady at its last call, inputs then, whether it asked to run again]
        self._periodic: list[list[Any]] = []
        self.in_tail = False  # within a tail run (clock_stopped)
        self.quiet = False  # no input came between the last two checks
        self._checked = 0  # inputs at the last check
        self._input_at = 0.0  # steady time of the last check that saw new inputs
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.timer = node.create_timer(self.PERIOD_S, self.check, clock=steady)

    def counted(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(msg: Any) -> None:
            self.messages += 1
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            if stamp is not None:
                self.newest_ns = max(self.newest_ns, stamp.sec * 1_000_000_000 + stamp.nanosec)
            callback(msg)

        return run

    def periodic(self, period_s: float, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback`` as a node timer's: its calls noted, for :meth:`check`'s tail runs."""
        entry: list[Any] = [period_s, None, time.monotonic(), self._inputs(), False]

        def call() -> None:
            entry[2], entry[3] = time.monotonic(), self._inputs()
            entry[4] = bool(callback())

        entry[1] = call
        self._periodic.append(entry)
        return call

    def changed(self) -> None:
        """A parameter change applied: the timers run as for a message (:meth:`check`'s tail)."""
        self._changes += 1

    def _inputs(self) -> int:
        return self.messages + self._changes

    def check(self) -> None:
        clock = self.node.get_clock()
        now, steady = clock.now().nanoseconds, time.monotonic()
        self.quiet, self._checked = self._inputs() == self._checked, self._inputs()
        if not self.quiet:
            self._input_at = steady
        if now != self._ros_ns:  # (the system clock, use_sim_time false, always moves)
            if self._ros_ns is not None and now < self._ros_ns:  # a bag played again, or an earlier one:
                self.newest_ns = min(self.newest_ns, now)  # the stamps before are of that past play
            self._ros_ns, self._since, self._seen, self._said = now, steady, self.messages, False
            return
        tail = now and self.newest_ns - now < self.STALL_S * 1e9  # (a bag's end, not a fault)
        # no /clock has come, and what came stopped coming TAIL_S ago (a late joiner's latched
        # messages; a bag played without --clock, at its end)
        unclocked = not now and self._inputs() > 0 and steady - self._input_at >= self.TAIL_S
        if (tail or unclocked) and steady - self._since >= self.TAIL_S:
            if unclocked and not self._unclocked_said:
                self._unclocked_said = True
                n = self.messages
                self.logger.info(
                    f"use_sim_time is true and no /clock has come (ROS time stands at 0) after {n} "
                    f"message{'' if n == 1 else 's'}, and none since: the node's timers run on steady "
                    "time until /clock comes (its outputs, such as the map cloud, stamped 0)"
                )
            for period_s, call, last, seen, again in list(self._periodic):
                # (due within half a check: a 1 s timer at each 1 s check, not every other)
                if (self._inputs() > seen or again) and steady - last + self.PERIOD_S / 2 >= period_s:
                    self.in_tail = True
                    try:
                        call()
                    finally:
                        self.in_tail = False
        came = self.messages - self._seen
        if self._said or not came or steady - self._since < self.STALL_S:
            return
        if tail or not now and self.quiet:  # (a quiet check: the steady-time runs above)
            return
        self._said = True
        clock_state = (
            "no /clock has come (ROS time stands at 0)"
            if now == 0
            else f"/clock stopped at {now / 1e9:.3f} s (messages stamped up to {self.newest_ns / 1e9:.3f} s)"
        )
        self.logger.warning(
            f"use_sim_time is true and {clock_state} while {came} messages came in "
            f"{steady - self._since:.0f} s: the node's timers wait for it (no /diagnostics, no waiting "
            "lines, no periodic outputs such as the map cloud); play the bag with --clock, or set "
            "use_sim_time:=false"
        )


def _is_float_param(default: Any) -> bool:
    if isinstance(default, (list, tuple)):
        return bool(default) and all(isinstance(v, float) for v in default)
    return isinstance(default, float)


def _descriptor(name: str, info: dict[str, Any], read_only: bool):
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(description=info["description"] or name, read_only=read_only)
    lo_hi, default = info["range"], info["default"]
    if lo_hi is not None and not isinstance(default, bool):
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo_hi[0]), to_value=int(lo_hi[1]), step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lo_hi[0]), to_value=float(lo_hi[1]), step=0.0)
            ]
    if _is_float_param(default):
        # A YAML `rate: 2` arrives as an INTEGER; rclpy's static typing would refuse it at start-up
        # (InvalidParameterTypeException) although the CLI reads the same file. Dynamic typing lets it
        # in; the type and range are then checked by our config loader (ints accepted, strings not).
        desc.dynamic_typing = True
    return desc


def declare_section(node: Any, section: str, cls: type, runtime: frozenset[str] = frozenset()) -> Any:
    """Declare every field of config dataclass ``cls`` as parameter ``<section>.<field>`` (with
    description, range and ``read_only`` unless named in ``runtime``) and build the config from the
    values the node was given (the params file's ``/**: ros__parameters: <section>:`` entries arrive
    as overrides of these)."""
    values = {}
    for name, info in describe(cls).items():
        full = f"{section}.{name}"
        default = list(info["default"]) if isinstance(info["default"], tuple) else info["default"]
        param = node.declare_parameter(full, default, _descriptor(full, info, full not in runtime))
        values[name] = param.value
    return from_dict(cls, unflatten(values), where=f"node {node.get_name()} parameters {section}")


def _on_set_parameters(node: Any, obj: Any) -> Callable[[list[Any]], Any]:
    """The set-parameters callback: validate runtime changes against the config dataclass, apply them.
    A change counts as a message for the clock watch: where ROS time stands still (a bag paused or
    ended under ``use_sim_time``) the node's timers run at its next check, so a change of what a
    timer publishes (the receiver's ``min_opacity``) goes out then, not when the bag plays on.

    rclpy itself refuses ``read_only`` parameters before calling this; parameters outside our
    sections (``use_sim_time``) are left to rclpy."""
    from rcl_interfaces.msg import SetParametersResult

    def callback(params: list[Any]) -> Any:
        changes: dict[str, dict[str, Any]] = {}
        for p in params:
            section, _, field = p.name.partition(".")
            if section in obj.sections and field:
                changes.setdefault(section, {})[field] = p.value
        try:
            checked = {}
            for section, new in changes.items():
                cfg_cls = obj.sections[section]
                current = {n: node.get_parameter(f"{section}.{n}").value for n in describe(cfg_cls)}
                built = from_dict(
                    cfg_cls, unflatten({**current, **new}), where=f"{node.get_name()} {section}"
                )
                checked[section] = {f: getattr(built, f) for f in new}
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for section, values in checked.items():
            obj.parameters_changed(section, values)
        watch = getattr(obj.ctx, "clock_watch", None)
        if checked and watch is not None:  # (ROS time standing still: the timers run on steady time)
            watch.changed()
        return SetParametersResult(successful=True)

    return callback


def create_node(node_cls: type, context: Any = None) -> tuple[Any, Any]:
    """An ``rclpy.node.Node`` named after ``node_cls``, its parameters declared, the node object
    built on it, runtime parameter changes wired. Returns ``(rclpy node, node object)``."""
    from rclpy.node import Node

    node = Node(node_cls.name, context=context)
    try:
        runtime = node_cls.runtime_parameters
        config = {s: declare_section(node, s, cls, runtime) for s, cls in node_cls.sections.items()}
        _refuse_unknown_overrides(node, node_cls)
        obj = node_cls(RclpyContext(node), config)
    except BaseException:
        node.destroy_node()
        raise
    node.add_on_set_parameters_callback(_on_set_parameters(node, obj))
    return node, obj


def _refuse_unknown_overrides(node: Any, node_cls: type) -> None:
    """A value given for a parameter of one of this node's sections that the node does not have (a
    typo: ``-p map_receiver_node.min_opacty:=0.9``, or a misspelt key in a params file) is a
    :class:`ConfigError`: rclpy keeps overrides of undeclared names without a word, and the node ran
    with the default. Names outside the node's sections (other nodes' sections in a ``/**`` file,
    ``use_sim_time``, ``qos_overrides.…``, other packages' parameters) are not ours to judge.
    ``_parameter_overrides`` is rclpy's own table of them (Humble and Jazzy)."""
    import difflib

    from ..errors import ConfigError

    overrides = getattr(node, "_parameter_overrides", None) or {}
    ours = set(node_cls.sections)
    unknown = sorted(n for n in overrides if n.split(".", 1)[0] in ours and not node.has_parameter(n))
    if unknown:
        names = [f"{s}.{f}" for s, cls in node_cls.sections.items() for f in describe(cls)]
        near = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigError(f"unknown parameter {unknown[0]}{hint}: {node_cls.name} has no such parameter")


class _NodeLogger:
    """The node's rclpy logger while its context is valid; once it is shut down (rclpy's handler
    does that on SIGINT and SIGTERM, before the node closes: the final save's lines) a console-only
    logger under it, ``<node>.shutdown``: rcl would publish each line on the node's /rosout
    publisher, still registered until ``destroy_node``, and print "Failed to publish log message to
    rosout: publisher's context is invalid" for every one. (Not ``get_child``: from jazzy that
    registers the child on /rosout too.) Its level is the node's (rcutils levels are inherited)."""

    def __init__(self, node: Any) -> None:
        import rclpy.logging

        self._node, self._ros = node, node.get_logger()
        self._console = rclpy.logging.get_logger(f"{self._ros.name}.shutdown")

    def __getattr__(self, name: str) -> Any:  # (info, warning, get_effective_level, … as rclpy's)
        return getattr(self._ros if self._node.context.ok() else self._console, name)


class _Publisher:
    """An rclpy publisher for our Publisher protocol. Once the context is shut down (rclpy's signal
    handler does that on SIGINT and SIGTERM) rcl refuses every publish; what a node publishes as it
    closes (the map server's last flush, a final snapshot) is then skipped, not a traceback."""

    def __init__(self, pub: Any, node: Any):
        self._pub, self._node = pub, node

    def publish(self, msg: Any) -> None:
        if not self._node.context.ok():
            _NodeLogger(self._node).debug(f"{self._pub.topic_name}: not published, the context is shut down")
            return
        self._pub.publish(msg)

    def subscription_count(self) -> int:
        return self._pub.get_subscription_count() if self._node.context.ok() else 0

    def __getattr__(self, name: str) -> Any:  # (topic_name, qos_profile, … as rclpy's)
        return getattr(self._pub, name)


def close_node(node: Any, obj: Any) -> None:
    """Shutdown: let the node object save/release what it holds, then destroy the rclpy node."""
    try:
        if obj is not None:
            obj.close()
    finally:
        node.destroy_node()


def context_ok(context: Any = None) -> bool:
    import rclpy

    return rclpy.ok(context=context)


_OUR_PACKAGES = ("gs_mapping", "gs_map_share", "gsmap_hd")


class _ToNodeLogger(logging.Handler):
    """The Python logging of the suite's modules (the mapper, the codec, the readers) sent to the
    node's rclpy logger: under ``ros2 run`` their lines carry the node's name, reach /rosout and
    the log file, and follow ``--log-level``, as the node's own lines do."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {record.getMessage()}"
            # one call site per severity: rclpy ties a call site to one severity ("Logger severity
            # cannot be changed between calls")
            if record.levelno >= logging.ERROR:
                self.ros.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros.info(text)
            else:
                self.ros.debug(text)
        except Exception:  # noqa: BLE001 - logging must never stop the node
            self.handleError(record)


@contextlib.contextmanager
def python_logging_to(ros_logger: Any):
    """Within: our packages' Python log records go to ``ros_logger`` only (rclpy filters them by
    its level), not to Python's own handlers; afterwards, as they were."""
    handler = _ToNodeLogger(ros_logger)
    try:  # rcutils severities are Python's numbers (10 debug … 50 fatal); records below are not made
        level = int(ros_logger.get_effective_level()) or logging.INFO
    except Exception:  # noqa: BLE001
        level = logging.INFO
    saved = []
    for name in _OUR_PACKAGES:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def run_node(node_cls: type, args: list[str] | None = None, context: Any = None) -> int:
    """Entry point body for ``ros2 run gs_mapping <node>``: init rclpy, build the node, spin until
    shutdown (Ctrl-C or the context shut down), then close it. A bad parameter is one line and
    exit status 2."""
    import rclpy
    from rclpy.exceptions import NameValidationException, ParameterException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from ..errors import GsMappingError

    try:
        # rcl reads every --params-file here (rcl_init), and refuses one it cannot read with
        # RCLError: one line, as a file our own reading refuses below
        rclpy.init(args=args, context=context)
    except Exception as exc:  # noqa: BLE001 - RCLError, RCLInvalidROSArgsError, … (rclpy's C layer)
        text = str(exc).strip().splitlines()
        print(
            f"{node_cls.name}: cannot start: {text[0] if text else type(exc).__name__}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    try:
        try:
            node, obj = create_node(node_cls, context)
        except (GsMappingError, ParameterException, NameValidationException) as exc:  # a bad parameter
            # (file, value, or topic name: rcl's message spans lines, its last a caret under the fault)
            # (Humble's ParameterException subclasses keep message and parameter as two args, whose
            # str() is a tuple's repr: "('Invalid parameter value (0) … Reason: …', 'name')"; joined
            # here as Jazzy's ParameterException.__init__ does, "<message>: <parameter>")
            whole = ": ".join(map(str, exc.args)) if isinstance(exc, ParameterException) else str(exc)
            text = " ".join(line.strip() for line in whole.splitlines() if line.strip().strip("^"))
            print(f"{node_cls.name}: {text}", file=sys.stderr, flush=True)
            return 2
        except Exception:
            if not context_ok(context):  # SIGINT/SIGTERM while it was built: rcl refused what came after
                return 0
            raise
        if not context_ok(context):  # Ctrl-C while the node was being built (a model load can take a while)
            close_node(node, obj)
            return 0
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        with python_logging_to(obj.ctx.logger):
            try:
                executor.spin()
            except (KeyboardInterrupt, ExternalShutdownException):
                pass
            finally:
                executor.shutdown()
                close_node(node, obj)
    finally:
        rclpy.try_shutdown(context=context)
    return 0


def _main(node: str, torch_threads: bool = True) -> int:
    """An entry point's body for the registered node ``node``. Ctrl-C before rclpy has taken SIGINT
    (the imports take seconds) ends quietly with 130, as after it, instead of a KeyboardInterrupt
    traceback."""
    from .. import ctrl_c
    from ..nodes.registry import node_class

    try:
        if torch_threads:
            prefer_single_thread_torch()
        return run_node(node_class(node))
    except KeyboardInterrupt:
        return 130
    finally:
        ctrl_c.caught()  # (a Ctrl-C is answered by 130 or the node's clean stop)


def main_hd_map_node() -> int:
    return _main("hd_map_node")


def main_mapper_node() -> int:
    return _main("mapper_node")


def main_map_receiver_node() -> int:
    return _main("map_receiver_node")


def main_map_server_node() -> int:
    return _main("map_server_node", torch_threads=False)
