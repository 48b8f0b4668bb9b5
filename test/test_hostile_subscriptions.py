"""Hostile-input harness, part 3: every subscription of every node, fed mutated messages.

Each node runs on the replay bus (the same node objects the rclpy, DDS and Zenoh runtimes drive).
Messages start from a valid default of the topic's type and have fields replaced by hostile values
(sizes that lie, NaN/inf, huge or negative integers, unknown encodings, long strings, empty or
oversized arrays). Rule: a bad message never escapes its handler (counted, skipped), no handler
hangs or blows up memory, and the node still takes a good message afterwards.
"""

from __future__ import annotations

import dataclasses
import resource
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hostile_cases import MAX_RSS_GB
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gs_mapping.nodes.registry import NODES, node_class
from gs_mapping.runtime.replay import ReplayBus, ReplayContext

INTS = [0, 1, -1, 7, 2**31 - 1, 2**32 - 1, 2**63 - 1, 65535, 10**9]
FLOATS = [float("nan"), float("inf"), -float("inf"), 1e308, -1e-320, 0.0, 1e9]
STRINGS = ["", "x" * 5000, "\x00", "yuv_bogus", "16UC1", "rgb8", "32FC1", "mono16", "png", "jpeg", "/"]


class RecordingContext(ReplayContext):
    """A replay context that also remembers what each node subscribes to (topic → type)."""

    subscriptions: list[tuple[str, str, str]] = []

    def create_subscription(self, topic, typename, qos, callback):
        RecordingContext.subscriptions.append((self.node_name, self._resolve(topic), typename))
        super().create_subscription(topic, typename, qos, callback)


def _make_nodes():
    RecordingContext.subscriptions = []
    bus = ReplayBus()
    nodes, skipped = {}, {}
    for name in NODES:
        cls = node_class(name)
        cfg = cls.load_config(None)
        if "map_server_node" in cfg:  # its global map goes to a scratch file, not the working directory
            cfg["map_server_node"].store_path = str(
                Path(tempfile.mkdtemp(prefix="hostile_")) / "fleet.sqlite3"
            )
        try:
            nodes[name] = cls(RecordingContext(bus, name), cfg)
        except Exception as exc:  # noqa: BLE001 - a node needing a service absent here is reported
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return bus, nodes, skipped, list(RecordingContext.subscriptions)


_BUS, _NODES, _SKIPPED, _SUBS = _make_nodes()


def _hostile(value, rng: np.random.Generator, depth: int = 0):
    """``value`` with some of its fields (recursively) replaced by hostile ones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if f.name.startswith("__") or rng.random() > 0.5:
                continue
            changes[f.name] = _hostile(getattr(value, f.name), rng, depth + 1)
        try:
            return dataclasses.replace(value, **changes)
        except Exception:  # noqa: BLE001 - a replacement the class itself refuses: keep the original
            return value
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return int(rng.choice(INTS))
    if isinstance(value, float):
        return float(rng.choice(FLOATS))
    if isinstance(value, str):
        return str(rng.choice(STRINGS))
    if isinstance(value, np.ndarray):
        n = int(rng.choice([0, 1, 3, 7, 12, 1000, 100_000]))
        if value.dtype == np.uint8:
            return rng.integers(0, 256, n, dtype=np.uint8)
        return rng.normal(size=n).astype(value.dtype) * (1e30 if rng.random() < 0.2 else 1)
    if isinstance(value, list):
        if not value or rng.random() < 0.3:
            return [] if rng.random() < 0.5 else value * int(rng.integers(2, 50))
        return [_hostile(v, rng, depth + 1) for v in value]
    return value


def _default(typename: str):
    f = _BUS.factory
    msg = f.make(typename)
    if typename == "tf2_msgs/msg/TFMessage":  # one transform to mutate, not an empty list
        msg = f.make(typename, transforms=[f.make("geometry_msgs/msg/TransformStamped")])
    return msg


def test_every_node_is_exercised():
    assert "mapper_node" in _NODES and "map_receiver_node" in _NODES and "hd_map_node" in _NODES, _SKIPPED
    topics = {(n, t) for n, t, _ in _SUBS}
    assert len(topics) >= 10, topics


@pytest.mark.parametrize("node, topic, typename", _SUBS, ids=[f"{n}:{t}" for n, t, _ in _SUBS])
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_hostile_message_never_escapes(node, topic, typename, seed):
    rng = np.random.default_rng(seed)
    msg = _hostile(_default(typename), rng)

    def on_alarm(*_):
        raise TimeoutError(f"{node} on {topic}: no return within 20 s")

    before = sum(_NODES[node].diag.inputs.values())
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    try:
        _BUS.inject(topic, msg, _BUS.now_ns + 1_000_000)  # raises only if a handler let it escape
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert rss < MAX_RSS_GB, f"memory: {rss:.1f} GB after {topic}"
    assert sum(_NODES[node].diag.inputs.values()) > before  # it was received and counted


def test_nodes_still_work_after_the_storm(tmp_path):
    """After every hostile message above, a receiver still rebuilds a map from a good snapshot."""
    from hostile_cases import small_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.messages import bytes_to_uint8_multiarray

    receiver = _NODES["map_receiver_node"]
    sender = MapSender.from_map(small_map(30, 0, seed=9), QuantParams.from_quality(2), map_id=424242)
    topic = next(t for n, t, _ in _SUBS if n == "map_receiver_node" and "snapshot" in t)
    receiver.store.map_id = None  # a fresh map (the storm may have bound another id)
    receiver.store.state = None
    _BUS.inject(topic, bytes_to_uint8_multiarray(sender.snapshot(), _BUS.factory), _BUS.now_ns + 1)
    assert receiver.store.ready and receiver.store.map_id == 424242
