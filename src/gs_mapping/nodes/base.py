"""What every node class shares: its config sections, diagnostics publishing, and the rule that a
bad message is counted and skipped, never fatal.

A node class declares ``sections``: the top-level sections of ``config/full.yaml`` it reads, each a
config dataclass (e.g. ``{"mapper": MapperConfig, "mapper_node": MapperNodeConfig}``). Core
sections (``mapper``, ``codec``, ``hd_map``) are shared with the CLI; ``<node>_node`` sections hold
the node's topics, frames and rates. Under rclpy the parameters are ``<section>.<field>``.

``runtime_parameters`` names the parameters a node applies while it runs (``ros2 param set``); the
rclpy runtime declares all others ``read_only``. A change reaches the node through
:meth:`NodeBase.parameters_changed`, already validated against the config dataclass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from ..config_file import load_section
from ..errors import GsMappingError
from .context import RELIABLE_QOS, NodeContext, resolve_topic
from .diagnostics import NodeDiagnostics


def say_qos_overrides_unapplied(path: Any, params: dict | None) -> None:
    """Once per file and set of names: the ``qos_overrides.…`` parameters file ``path`` gives a
    node that runs outside rclpy (``gs-mapping run`` on DDS or Zenoh, ``replay``, ``map``: the
    callers of :meth:`NodeBase.load_config`). Only the rclpy runtime applies ROS 2's QoS overrides;
    the others keep each topic's built-in QoS, and an operator who wrote them to match a driver or
    a relay must hear that they did nothing here."""
    if not params or "qos_overrides" not in params:
        return
    import logging

    from ..config_file import flatten
    from ..say_once import say_once

    given = params["qos_overrides"]
    names = sorted(flatten(given, "qos_overrides.")) if isinstance(given, dict) else []
    say_once(
        logging.getLogger("gs_mapping.params"),
        f"{path}: {', '.join(names) or 'qos_overrides'} not applied: this runtime keeps each topic's "
        "built-in QoS (ROS 2's qos_overrides are applied under rclpy: ros2 run, ros2 launch)",
    )


class NodeBase:
    name: ClassVar[str] = "node"
    sections: ClassVar[dict[str, type]] = {}
    runtime_parameters: ClassVar[frozenset[str]] = frozenset()  # "<section>.<field>" names

    def __init__(self, ctx: NodeContext, config: dict[str, Any]):
        self.ctx = ctx
        self.config = config
        self.diag = NodeDiagnostics(ctx.node_name, ctx.logger if hasattr(ctx.logger, "warning") else None)
        self._waiting_said: tuple[str, int] | None = None  # (what, when) report_waiting last logged
        self._older_in_a_row = 0  # frames in a row not after the last one taken (time_went_back)
        self._tf_clock_ns = -1  # the node's clock at the last TF add or lookup (tf_follows_clock)
        self._tf_at_this_clock: list[Any] = []  # the /tf messages added since it (tf_follows_clock)
        self._stamped: set[str] = set()  # camera topics a stamped message came on (header_ns)
        self._unstamped_said: set[Any] = set()  # topics (and why) header_ns said a line about
        attach = getattr(ctx, "attach_diagnostics", None)
        if attach is not None:  # a runtime that refuses or drops messages before our handlers run
            attach(self.diag)
        self._diag_pub = ctx.create_publisher(
            "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS
        )

    @classmethod
    def load_config(
        cls, path: str | None, params: dict | None = None, namespace: str = "", name: str | None = None
    ) -> dict[str, Any]:
        """Every section this node reads, from a parameter file (defaults where absent): the keys
        that name the node as ``name`` (default: its own) in ``namespace``, as rclpy applies them.
        ``params``: those parameters, read already (else they are read here, once for all sections)."""
        from .registry import node_fqn, read_parameter_file

        if params is None:
            params = read_parameter_file(path, node_fqn(name or cls.name, namespace))
        say_qos_overrides_unapplied(path, params)
        return {name: load_section(path, name, cfg_cls, params) for name, cfg_cls in cls.sections.items()}

    def guarded(self, topic: str, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap a subscription handler: a message it cannot use is counted, logged and skipped.

        Our own errors carry the reason; anything else a hostile message provokes (a numpy shape
        error deep in a converter, say) is counted the same way with its type, because under rclpy
        an exception out of a callback ends the process."""

        @functools.wraps(handler)
        def run(msg: Any) -> None:
            self.diag.received(topic, self.ctx.now_ns())
            self.contained(topic, handler, msg)

        return run

    def contained(self, topic: str, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)`` with what it raises counted against ``topic`` and logged, not raised: a
        message's handler, or a frame a timer retries (a timer callback has no guard around it, and
        under rclpy an exception out of one ends the process)."""
        try:
            fn(*args)
        except GsMappingError as exc:
            self.diag.reject(topic, str(exc))
        except Exception as exc:  # noqa: BLE001 - see the docstring: a bad message never kills a node
            self.diag.reject(topic, f"unexpected {type(exc).__name__}: {exc}")

    def parameters_changed(self, section: str, values: dict[str, Any]) -> None:
        """Apply validated new values of runtime parameters of ``section`` (field → value).

        The section's config object is updated in place, so code that reads it where the value is
        used sees the change; override to push a value into something that holds a copy."""
        cfg = self.config[section]
        for field, value in values.items():
            setattr(cfg, field, value)

    # a frame this much older than the last one is not a late message but time that went back (a
    # bag played with --loop, a simulator reset): the node starts its stamps over instead of
    # dropping every later frame as "not after the previous one"
    TIME_JUMP_S: ClassVar[float] = 5.0
    # so are this many frames in a row, each not after the last one taken: a late message comes
    # alone, the second pass of a bag shorter than TIME_JUMP_S keeps coming
    OLDER_IN_A_ROW: ClassVar[int] = 2

    def time_went_back(self, stamp_ns: int, last_ns: int) -> bool:
        """Whether time went back before ``stamp_ns`` (said in the log): it lies more than
        ``TIME_JUMP_S`` before ``last_ns``, or it is the ``OLDER_IN_A_ROW``-th frame in a row not
        after it."""
        older = last_ns >= 0 and stamp_ns <= last_ns
        self._older_in_a_row = self._older_in_a_row + 1 if older else 0
        if not older or (
            last_ns - stamp_ns <= self.TIME_JUMP_S * 1e9 and self._older_in_a_row < self.OLDER_IN_A_ROW
        ):
            return False
        self._older_in_a_row = 0
        self.ctx.logger.warning(
            f"time went back {(last_ns - stamp_ns) / 1e9:.1f} s (a bag played in a loop?): frames start over"
        )
        self.diag.values["time_jumps"] = int(self.diag.values.get("time_jumps", 0)) + 1
        return True

    # the /tf messages kept to be added again after a clock jump (tf_follows_clock), at most
    TF_KEPT_AT_A_CLOCK: ClassVar[int] = 100
    # a backward jump of ROS time (/clock, a bag's clock) this long or longer clears TF; a shorter
    # step (two /clock sources interleaved, rosbag2's 40 Hz clock beside a recorded /clock) keeps
    # it. tf2_ros clears on any backward jump (C++) or on 1 s or more (tf2_ros_py from jazzy):
    # between the two, a bag of 0.5 s played in a loop still starts over on its own TF. A step of
    # the system clock (an NTP step) clears nothing: rcl calls no jump callback for it
    TF_CLEAR_BACKWARD_S: ClassVar[float] = 0.1

    def add_tf(self, tf: Any, msg: Any, static: bool) -> None:
        """Add a ``/tf`` or ``/tf_static`` message to the node's :class:`~gs_mapping.tf.TFBuffer`,
        after :meth:`tf_follows_clock`. Raises what :meth:`~gs_mapping.tf.TFBuffer.add_message` raises."""
        self.tf_follows_clock(tf)
        tf.add_message(msg, static=static)
        if not static and len(msg.transforms):  # (an empty /tf is nothing to add again)
            self._tf_at_this_clock.append(msg)
            del self._tf_at_this_clock[: -self.TF_KEPT_AT_A_CLOCK]  # (no /clock yet: it stays at 0)

    def tf_follows_clock(self, tf: Any) -> None:
        """Forget ``tf``'s moving transforms where the node's clock went back ``TF_CLEAR_BACKWARD_S``
        or more since the last TF message or lookup (a simulator reset, ``ros2 bag play --loop
        --clock``), as tf2_ros's buffer clears on a backward jump of its clock: the new run is not
        posed by the old run's transforms at its stamps. Called before every add AND every lookup: a
        frame served after the clock went back but before the new run's first /tf must not find the
        old run's TF.

        The /tf that came while the clock still showed the old time and is stamped at or before the
        new one is the new run's (rosbag2's player publishes /clock from a timer of its own, after the
        first messages of a pass): it is added again."""
        from ..messages import stamp_to_ns

        now, before = self.ctx.now_ns(), self._tf_clock_ns
        kept = self._tf_at_this_clock
        if now != before:
            self._tf_at_this_clock = []
        self._tf_clock_ns = now  # (first: whatever the re-adding raises, the jump is handled once)
        ros_time = getattr(self.ctx, "ros_time", None)  # (a context that does not say: ROS time)
        if before - now >= self.TF_CLEAR_BACKWARD_S * 1e9 and (ros_time is None or ros_time()):
            self.ctx.logger.warning(
                f"the clock went back {(before - now) / 1e9:.3f} s: TF's moving transforms "
                "forgotten (static ones kept)"
            )
            tf.forget_moving()
            for msg in kept:  # (each was added whole once: it is again)
                if max(stamp_to_ns(t.header.stamp) for t in msg.transforms) <= now:
                    tf.add_message(msg)

    def header_ns(self, topic: str, msg: Any) -> int | None:
        """The time a camera message (Image, CompressedImage, CameraInfo, PointCloud2) on ``topic``
        is taken at: its header stamp; where that is zero (a driver that does not stamp) its arrival
        on the node's clock (under use_sim_time a bag's /clock: about its log time, the time
        ``map`` takes such a camera at), said once a topic, pairing and TF lookup done at it. A zero
        stamp on a topic a stamped message came on (a driver's clock not up yet, a glitch) has no
        time to take: None, counted in /diagnostics (``messages_unstamped``) and said once a topic;
        so is one that comes before the node's clock (use_sim_time with no /clock yet)."""
        from ..messages import stamp_to_ns

        stamp = stamp_to_ns(msg.header.stamp)
        if stamp != 0:
            if topic not in self._stamped and topic in self._unstamped_said:
                self.ctx.logger.warning(f"{topic}: stamped messages now: each is timed by its header stamp")
            self._stamped.add(topic)
            return stamp
        now = self.ctx.now_ns()
        if topic in self._stamped or now <= 0:
            why = "among stamped ones" if now > 0 else "before the node's clock (no /clock yet)"
            line = f"{topic}: a message with a zero header stamp {why}: skipped (counted: messages_unstamped)"
            self.diag.drop("messages_unstamped", line)
            if (topic, why) not in self._unstamped_said:
                self._unstamped_said.add((topic, why))
                self.ctx.logger.warning(line)
            return None
        if topic not in self._unstamped_said:
            self._unstamped_said.add(topic)
            self.ctx.logger.warning(
                f"{topic}: header stamp is zero (a driver that does not stamp): its messages are timed "
                "by their arrival on the node's clock (under use_sim_time: /clock), paired and posed "
                "by TF at it"
            )
        return now

    @staticmethod
    def restamped(msg: Any, stamp_ns: int) -> Any:
        """``msg`` where it is stamped ``stamp_ns``; else a shallow copy of it whose header (a copy)
        is (the message, which other subscribers of the topic may share, is left as it came)."""
        import copy

        from ..messages import stamp_to_ns
        from ..messages.factory import NS_PER_S

        if stamp_to_ns(msg.header.stamp) == stamp_ns:
            return msg

        header, stamp = copy.copy(msg.header), copy.copy(msg.header.stamp)
        stamp.sec, stamp.nanosec = divmod(int(stamp_ns), NS_PER_S)
        header.stamp = stamp
        out = copy.copy(msg)
        out.header = header
        return out

    # a node that waits for an input says so on the console when what it waits for changes, and
    # again every this many seconds of node time (a wrong topic name shows in /diagnostics only,
    # where a user starting the node does not look)
    WAITING_REPEAT_S: ClassVar[float] = 30.0

    def report_waiting(self, waiting: list[str], stopped: list[tuple[str, float]] = ()) -> None:
        """``waiting``: the inputs no output can be made without that have not arrived; ``stopped``:
        (input, seconds) of those that arrived and then stopped (for /diagnostics' ``waiting_for``
        and the console, which says it when the inputs change and every ``WAITING_REPEAT_S``, not
        each time a silence grows by a second)."""
        gone = [f"{what} (silent for {s:.1f} s)" for what, s in stopped]
        if not waiting and not gone:
            self.diag.values.pop("waiting_for", None)
            self._waiting_said = None
            return
        self.diag.values["waiting_for"] = ", ".join(waiting + gone)
        key = (tuple(waiting), tuple(what for what, _ in stopped))
        now = self.ctx.now_ns()
        last = self._waiting_said
        # (said again where node time went back since: a bag played with --loop --clock)
        if last is None or last[0] != key or not 0 <= now - last[1] < self.WAITING_REPEAT_S * 1e9:
            self._waiting_said = (key, now)
            if waiting:
                self.ctx.logger.warning(
                    f"waiting for {', '.join(waiting)} (nothing arrived on it yet; check the topic names)"
                )
            if gone:
                self.ctx.logger.warning(f"waiting for {', '.join(gone)}: it stopped while the others go on")

    def publish_diagnostics(self) -> None:
        # hardware_id: the fully qualified node name ("~" resolved), so that the same node in two
        # namespaces (two receivers, two vehicles) can be told apart on /diagnostics
        fqn = resolve_topic("~", self.ctx.node_name, self.ctx.namespace)
        self._diag_pub.publish(self.diag.to_message(self.ctx.factory, self.ctx.now_ns(), hardware_id=fqn))

    def close(self) -> None:
        """Release resources (override when a node holds any)."""
