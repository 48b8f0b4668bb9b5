"""Mutation round 41 (bag): a breakage that passed every test. ``bag._same_ext``: rmw reads a QoS
duration of 0 (unspecified) as infinite, and rosbag2 writes infinite as 2147483647 s (Humble) or
9223372036 s (Jazzy's RMW_DURATION_INFINITE): one recording's metadata.yaml and storage may differ
only there. With the bound at ``> 2147483647`` Humble's own infinite was taken for a finite
deadline and every test still passed (their bags are written by one rosbags version)."""

from __future__ import annotations

import pytest

pytest.importorskip("rosbags.interfaces")

from rosbags.interfaces import (  # noqa: E402
    ConnectionExtRosbag2,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from gs_mapping.bag import _same_ext  # noqa: E402


def _ext(duration: QosTime) -> ConnectionExtRosbag2:
    q = Qos(
        QosHistory.UNKNOWN,
        0,
        QosReliability.RELIABLE,
        QosDurability.VOLATILE,
        duration,
        duration,
        QosLiveliness.AUTOMATIC,
        duration,
        False,
    )
    return ConnectionExtRosbag2("cdr", [q])


@pytest.mark.parametrize(
    "a, b",
    [
        (QosTime(2147483647, 4294967295), QosTime(9223372036, 854775807)),  # Humble's, Jazzy's infinite
        (QosTime(2147483647, 4294967295), QosTime(0, 0)),  # Humble's infinite, unspecified
        (QosTime(9223372036, 854775807), QosTime(0, 0)),
    ],
    ids=["humble-jazzy", "humble-unspecified", "jazzy-unspecified"],
)
def test_each_spelling_of_an_infinite_qos_duration_is_the_same(a, b):
    assert _same_ext(_ext(a), _ext(b))
    assert _same_ext(_ext(b), _ext(a))


def test_a_finite_duration_differs_from_infinite():
    assert not _same_ext(_ext(QosTime(2147483646, 0)), _ext(QosTime(9223372036, 854775807)))
    assert not _same_ext(_ext(QosTime(1, 0)), _ext(QosTime(0, 0)))
