"""TFBuffer: a frame re-mounted (another parent) at the very log time of its newest mount takes the
later one, as tf2 fed the recording in its order would and as two values logged at one time do
(test_tf_buffer: "one logged twice at a time: the later"). mut41's mutant T4 (``since_ns >=
_since(edge)`` → ``>`` in ``TFBuffer._mount``) kept the earlier mount and passed every test."""

from __future__ import annotations

import numpy as np

from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.tf import TFBuffer

S = 1_000_000_000


def _ts(parent, child, t):
    return TransformStamped(parent, child, 0, Transform(np.array(t, float), np.array([0.0, 0, 0, 1])))


def test_a_remount_logged_at_the_newest_mounts_time_is_the_one_in_force():
    bag = TFBuffer(cache_time_s=None)
    bag.add(_ts("base", "cam", (0.1, 0, 0)), static=True, since_ns=2 * S)
    bag.add(_ts("head", "cam", (0.2, 0, 0)), static=True, since_ns=5 * S)
    bag.add(_ts("mast", "cam", (0.3, 0, 0)), static=True, since_ns=5 * S)  # (same log time: the later)
    assert [bag.root("cam", logged_ns=k * S) for k in (3, 5, 9)] == ["base", "mast", "mast"]
    assert bag.root("cam") == "mast"
    assert bag.lookup("mast", "cam", 0, logged_ns=6 * S).translation[0] == 0.3
    live = TFBuffer()  # (live: the newest mount, whatever its time)
    live.add(_ts("head", "cam", (0.2, 0, 0)), static=True)
    live.add(_ts("mast", "cam", (0.3, 0, 0)), static=True)
    assert live.root("cam") == "mast"
