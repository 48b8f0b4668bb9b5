"""A Livox CustomMsg read from a bag for its points comes with them as one array (as rclpy's raw
subscription gives it) instead of rosbags' object a point: the same values as rosbags' own
deserialisation of the same records, a fork's layout still read by its own definition, a corrupt
record skipped and counted as any undecodable message is, and messages asked for without
``arrays`` (to be played or written out again) still rosbags' objects."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from test_livox_messages import DRIVER_MSG, NAMES  # noqa: E402

from gs_mapping.bag import BagReader, BagWriter  # noqa: E402
from gs_mapping.messages import cloud_xyz_times, typestore  # noqa: E402
from gs_mapping.messages.livox import CustomMsgArrays  # noqa: E402

LIVOX = NAMES[0]
POINT = LIVOX.replace("CustomMsg", "CustomPoint")
TOPIC = "/livox/lidar"
FORK_POINT = """uint32 offset_time
float32 x
float32 y
float32 z
float32 intensity
uint8 reflectivity
uint8 tag
uint8 line
"""


def _msg(store, k: int, n: int = 500, fork: bool = False):
    rng = np.random.default_rng(k)
    xyz = rng.uniform(-30, 30, (n, 3)).astype(np.float32)
    xyz[7] = np.nan  # (a no-return: dropped by both readings alike)
    point = store.types[POINT]
    extra = {"intensity": 1.5} if fork else {}
    pts = [
        point(offset_time=int(1000 * i + k), x=float(a), y=float(b), z=float(c), reflectivity=i % 256, tag=16,
              line=i % 4, **extra)
        for i, (a, b, c) in enumerate(xyz)
    ]  # fmt: skip
    stamp = 1_700_000_000_000_000_000 + k * 100_000_000
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
        frame_id="livox_frame",
    )
    return stamp, store.types[LIVOX](
        header=header, timebase=stamp, point_num=n, lidar_id=1, rsvd=np.zeros(3, np.uint8), points=pts
    )


def _bag(path, fork=False, corrupt=None, count=3):
    with BagWriter(path) as bag:
        if fork:
            bag.register_msg(POINT, FORK_POINT)
            bag.register_msg(LIVOX, DRIVER_MSG)
        bag.add_topic(TOPIC, LIVOX)
        for k in range(count):
            stamp, msg = _msg(bag.typestore, k, fork=fork)
            if k == corrupt:
                data = bag.typestore.serialize_cdr(msg, LIVOX)
                bag.write_raw(TOPIC, stamp, data[: len(data) // 2])  # cut in the middle of the points
            else:
                bag.write(TOPIC, stamp, msg)
    return path


def _read(path, arrays):
    with BagReader(path) as bag:
        got = list(bag.messages([TOPIC], arrays=[TOPIC] if arrays else ()))
        return got, dict(bag.bad_messages)


def test_points_read_as_one_array_are_rosbags_own_reading(tmp_path):
    """Each message as arrays against rosbags' deserialisation of the same bytes: every point
    field, the header, timebase, point_num, lidar_id; and the cloud made of either is the same."""
    path = _bag(tmp_path / "b")
    fast, _ = _read(path, arrays=True)
    slow, _ = _read(path, arrays=False)
    assert len(fast) == len(slow) == 3
    for (t1, s1, a), (t2, s2, o) in zip(fast, slow, strict=True):
        assert isinstance(a, CustomMsgArrays) and not isinstance(o, CustomMsgArrays)
        assert (t1, s1) == (t2, s2)
        for name in ("offset_time", "x", "y", "z", "reflectivity", "tag", "line"):
            want = np.array([getattr(p, name) for p in o.points])
            np.testing.assert_array_equal(a.points[name], want.astype(a.points[name].dtype), err_msg=name)
        assert (a.timebase, a.point_num, a.lidar_id) == (o.timebase, o.point_num, o.lidar_id)
        assert (a.header.stamp.sec, a.header.stamp.nanosec, a.header.frame_id) == (
            o.header.stamp.sec,
            o.header.stamp.nanosec,
            o.header.frame_id,
        )
        (xa, ta), (xo, to) = cloud_xyz_times(a), cloud_xyz_times(o)
        np.testing.assert_array_equal(xa, xo)
        np.testing.assert_array_equal(ta, to)
        assert len(xa) == 499


def test_a_forks_layout_is_read_by_its_own_definition(tmp_path):
    """A CustomPoint with a field the driver's lacks (another wire layout): the array reading would
    be wrong, so the message comes from rosbags by the bag's definition, its values right."""
    got, _ = _read(_bag(tmp_path / "b", fork=True), arrays=True)
    assert got and not any(isinstance(m, CustomMsgArrays) for _, _, m in got)
    _, want = _msg(typestore(), 0)
    xyz, _ = cloud_xyz_times(got[0][2])
    np.testing.assert_array_equal(xyz[:3], np.array([[p.x, p.y, p.z] for p in want.points[:3]], np.float32))


def test_a_corrupt_record_is_skipped_and_counted_the_rest_read(tmp_path):
    """A record cut short: skipped with the others read, counted as rosbags' path counts it."""
    path = _bag(tmp_path / "b", corrupt=1)
    fast, bad_fast = _read(path, arrays=True)
    slow, bad_slow = _read(path, arrays=False)
    assert [s for _, s, _ in fast] == [s for _, s, _ in slow] and len(fast) == 2
    assert bad_fast == bad_slow == {f"{TOPIC} ({LIVOX})": 1}


def test_replay_feeds_arrays_to_the_nodes_and_copies_the_recorded_bytes(tmp_path):
    """The replay runtime: a Livox topic only fed to the nodes reaches them as arrays; one also
    copied into the output bag (``record_inputs``) is copied as rosbags' message, the copy's
    records byte for byte the input's."""
    from gs_mapping.runtime.replay import ReplayBus

    src = _bag(tmp_path / "in")
    for copied in (False, True):
        out = tmp_path / f"out{copied}"
        seen = []
        with BagWriter(out) as writer, BagReader(src) as reader:
            bus = ReplayBus(writer)
            bus.subscribe(TOPIC, seen.append)
            bus.run(reader, record_inputs=(TOPIC,) if copied else (), progress=False)
        assert len(seen) == 3
        assert all(isinstance(m, CustomMsgArrays) for m in seen) != copied
        if copied:
            with BagReader(src) as a, BagReader(out) as b:
                assert [d for *_, d in a.raw_messages([TOPIC])] == [d for *_, d in b.raw_messages([TOPIC])]
