"""Livox fixes after the hostile review of 52580de (test_outside_host6): a merger's ``point_num``
counting the first LiDAR only, a fork's own CustomPoint given to BagWriter, frames waiting for a
cloud that comes a scan after its stamp (bounded), against hand-placed points and stamps."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_livox_mapping as lm  # noqa: E402
import test_livox_messages as lmsg  # noqa: E402
import test_outside_host6 as h6  # noqa: E402
import test_outside_lidar_deskew as dk  # noqa: E402

MS = 1_000_000
S = 1_000_000_000


# -- point_num counting the first LiDAR ----------------------------------------------------------------
def test_point_num_below_the_points_reads_the_first_point_num_and_warns():
    """The second LiDAR's points (here far off and late) are not read: exactly the hand points come
    back, and ``warn`` gets one line naming both counts; more than it holds is still refused."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages import cloud_xyz_times

    second = [(90_000_000, 40.0, -40.0, 9.0, 1, 0, 2), (95_000_000, 41.0, -41.0, 9.5, 1, 0, 2)]
    said: list[str] = []
    xyz, times = cloud_xyz_times(lmsg.driver_msg(points=lmsg.POINTS + second, point_num=3), said.append)
    want_xyz, want_t = lmsg.want_xyz_times()
    np.testing.assert_array_equal(xyz, want_xyz)
    np.testing.assert_allclose(times, want_t, rtol=0, atol=1e-12)
    assert len(said) == 1 and "point_num is 3 but it holds 5 points" in said[0]
    with pytest.raises(MessageError, match="point_num is 6 but it holds 5 points"):
        cloud_xyz_times(lmsg.driver_msg(points=lmsg.POINTS + second, point_num=6))


def test_map_reads_a_mergers_clouds_by_point_num_and_says_so_once(tmp_path, caplog):
    """The appended points are the wall's at half the range (read, they would put every pixel at
    half its depth): each frame holds the wall, and the run says it once."""

    def merged(ns):
        msg = h6._custom_msg(ns)
        P = type(msg.points[0])
        near = [P(offset_time=p.offset_time, x=p.x / 2, y=p.y / 2, z=p.z / 2, reflectivity=1, tag=0, line=2) for p in msg.points]  # fmt: skip
        msg.points = list(msg.points) + near
        return msg

    with caplog.at_level(logging.WARNING):
        dk._assert_on_the_wall(lm.frames(lm.bag(tmp_path / "b", merged)))
    said = [r.getMessage() for r in caplog.records if "point_num" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{lm.TOPIC}: ") and "holds 1536 points" in said[0], said


# -- a fork's definition --------------------------------------------------------------------------------
def test_bag_writer_writes_a_forks_clouds_by_its_definition_and_our_reader_reads_them(tmp_path):
    """robotics-laboratory's CustomPoint (``intensity``) replaces ours in the writer: its values go
    in the bag with its definition and come back by it."""
    from gs_mapping.bag import BagReader, BagWriter

    with BagWriter(tmp_path / "b") as w:
        w.register_msg(h6.POINT, h6.FORK_POINT)
        w.add_topic(lm.TOPIC, lm.LIVOX)
        P = w.typestore.types[h6.POINT]
        points = [P(offset_time=o, x=x, y=y, z=z, intensity=i, tag=t, line=n) for o, x, y, z, i, t, n in lmsg.POINTS]  # fmt: skip
        msg = w.typestore.types[lm.LIVOX](
            header=lmsg.driver_msg().header, timebase=lmsg.STAMP, point_num=3, lidar_id=7,
            rsvd=np.array([1, 2, 3], np.uint8), points=points,
        )  # fmt: skip
        w.write(lm.TOPIC, lmsg.STAMP, msg)
    with BagReader(tmp_path / "b") as b:
        ((_, _, got),) = list(b.messages([lm.TOPIC]))
    assert [p.intensity for p in got.points] == [p[4] for p in lmsg.POINTS]
    assert [(p.x, p.y, p.z) for p in got.points] == [p[1:4] for p in lmsg.POINTS]


def test_a_definition_that_does_not_register_leaves_ours(tmp_path):
    """A fork's CustomPoint sent with a std_msgs/Header of ROS 1 (a definition of several messages):
    one line, and the writer still holds (and writes) our CustomPoint."""
    from gs_mapping.bag import BagError, BagWriter
    from gs_mapping.messages import ros_typestore

    with BagWriter(tmp_path / "b") as w:
        with pytest.raises(BagError, match="cannot register message type"):
            w.register_msg(h6.POINT, h6.FORK_POINT + "=" * 80 + "\nMSG: std_msgs/Header\nuint32 seq\n")
        assert w.typestore.fielddefs[h6.POINT] == ros_typestore().fielddefs[h6.POINT]
        w.add_topic(lm.TOPIC, lm.LIVOX)
        w.write(lm.TOPIC, lmsg.STAMP, lmsg.driver_msg())


# -- waiting for a late cloud, bounded -----------------------------------------------------------------
def _camera_and_late_clouds(period_s: float, color_hz: int, clouds: int):
    """(stream, stamp) in arrival order: a camera at ``color_hz`` and a cloud every ``period_s``,
    stamped at a colour frame's stamp and arriving a scan (``period_s``) + 5 ms later."""
    step = S // color_hz
    end = int((clouds + 1) * period_s * S)
    events = [(j * step, 0, j * step) for j in range(end // step)]
    cloud_stamps = [k * int(period_s * color_hz) * step for k in range(1, clouds + 1)]
    events += [(s + int(period_s * S) + 5 * MS, 1, s) for s in cloud_stamps]
    return [(stream, stamp) for _, stream, stamp in sorted(events)], cloud_stamps


@pytest.mark.parametrize("period_s", [2, 4])
def test_recording_pairer_pairs_each_late_cloud_with_the_frame_of_its_stamp(period_s):
    from gs_mapping.sync import CLOUD_WAIT_NS, RecordingPairer

    events, cloud_stamps = _camera_and_late_clouds(period_s, 30, 3)
    p, got = RecordingPairer(20 * MS, wait_ns=CLOUD_WAIT_NS), []
    for stream, stamp in events:
        got += p.add(stream, stamp, stamp)
    got += p.finish()
    assert got == [(s, s) for s in cloud_stamps]


def test_recording_pairer_holds_no_more_than_max_waiting():
    """A 60 Hz camera: 4 s late clouds still pair (240 frames wait), 6 s late ones do not (360 would
    be over MAX_WAITING: memory); never more than MAX_WAITING frames wait."""
    from gs_mapping.sync import CLOUD_WAIT_NS, MAX_WAITING, RecordingPairer

    for period_s, want_pairs in ((4, 3), (6, 0)):
        events, _ = _camera_and_late_clouds(period_s, 60, 3)
        p, got, most = RecordingPairer(20 * MS, wait_ns=CLOUD_WAIT_NS), [], 0
        for stream, stamp in events:
            got += p.add(stream, stamp, stamp)
            most = max(most, p.pending())
        got += p.finish()
        assert most <= MAX_WAITING + 1 and len(got) == want_pairs, (period_s, most, got)


@pytest.mark.parametrize("period_s", [2, 4])
def test_live_synchroniser_pairs_a_late_cloud_and_its_queue_stays_bounded(period_s):
    """message_filters' rule, colour frames kept ``wait_ns`` of stamps: each cloud pairs with the
    frame of its stamp; the colour queue never holds more than 9 s of frames (30 Hz: 271)."""
    from gs_mapping.sync import CLOUD_WAIT_NS, ApproximateTimeSynchronizer

    events, cloud_stamps = _camera_and_late_clouds(period_s, 30, 3)
    sync, got, most = ApproximateTimeSynchronizer(2, 10, 0.02, wait_ns=CLOUD_WAIT_NS), [], 0
    for stream, stamp in events:
        pair = sync.add(stream, stamp, stamp)
        got += [pair] if pair else []
        most = max(most, sync.pending())
    assert got == [(s, s) for s in cloud_stamps]
    assert most <= CLOUD_WAIT_NS * 30 // S + 2, most
    assert ApproximateTimeSynchronizer(2, 10, 0.02).queue_size == 10  # (a depth camera: as before)


def test_the_wait_covers_deskews_longest_cloud_and_a_period():
    from gs_mapping.mapping.deskew import MAX_SKEW_S
    from gs_mapping.sync import CLOUD_WAIT_NS

    assert CLOUD_WAIT_NS >= 2 * MAX_SKEW_S * S


def test_live_synchroniser_with_10hz_clouds_holds_only_the_frames_since_the_last_pair():
    """10 Hz clouds arriving a scan late, a 30 Hz camera, 20 s: every cloud pairs with the frame of
    its stamp, and the frames older than a pair go with it (streams come in stamp order, so no
    later cloud pairs with them): the colour queue holds a scan and a period of frames (~7), where
    keeping every frame the 9 s cloud wait allows held ~270 (1.6 GB of 1080p rgb8)."""
    from gs_mapping.sync import CLOUD_WAIT_NS, ApproximateTimeSynchronizer

    events, cloud_stamps = _camera_and_late_clouds(0.1, 30, 200)
    sync, got, most = ApproximateTimeSynchronizer(2, 10, 0.02, wait_ns=CLOUD_WAIT_NS), [], 0
    for stream, stamp in events:
        pair = sync.add(stream, stamp, stamp)
        got += [pair] if pair else []
        if got:
            most = max(most, sync.pending())
    assert got == [(s, s) for s in cloud_stamps]
    assert most <= 10, most
