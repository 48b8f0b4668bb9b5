"""TFBuffer: lookups through the tree, interpolation (slerp), static edges, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.errors import ExtrapolationError, TFError, UnknownFrameError
from gs_mapping.geometry import Transform, TransformStamped, quat_to_matrix
from gs_mapping.tf import TFBuffer, TFConfig

S = 1_000_000_000


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg) / 2
    return np.array([0.0, 0.0, math.sin(a), math.cos(a)])


def rot_axis(axis, deg: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(deg) / 2
    return np.array([*(axis * math.sin(a)), math.cos(a)])


def ts(parent, child, stamp, t=(0, 0, 0), q=(0, 0, 0, 1)):
    return TransformStamped(parent, child, int(stamp), Transform(np.array(t, float), np.array(q, float)))


def angle_deg(T: Transform) -> float:
    return math.degrees(2 * math.acos(min(1.0, abs(float(T.rotation[3])))))


OPTICAL = Transform(np.array([0.1, 0.0, 1.2]), np.array([-0.5, 0.5, -0.5, 0.5]))


def robot_buffer(**kw) -> TFBuffer:
    """map → base_link dynamic (two samples 1 s apart, 90° turn and 2 m move), base_link → optical static."""
    buf = TFBuffer(**kw)
    buf.add(ts("map", "base_link", 10 * S, (0, 0, 0), rot_z(0)))
    buf.add(ts("map", "base_link", 11 * S, (2, 0, 0), rot_z(90)))
    buf.add(TransformStamped("base_link", "camera_optical", 0, OPTICAL), static=True)
    return buf


def test_interpolation_linear_translation_and_slerp_rotation():
    buf = robot_buffer()
    for frac in (0.0, 0.25, 0.5, 0.9, 1.0):
        T = buf.lookup("map", "base_link", 10 * S + int(frac * S))
        assert np.allclose(T.translation, [2 * frac, 0, 0], atol=1e-12)
        assert angle_deg(T) == pytest.approx(90 * frac, abs=1e-9)  # constant angular speed: slerp
        assert np.allclose(T.rotation, rot_z(90 * frac), atol=1e-12)


def test_slerp_takes_the_short_way_with_sign_flipped_quaternions():
    for q1 in (rot_z(-170), -rot_z(-170)):  # q and −q: same rotation, 20° from 170° the short way
        buf = TFBuffer()
        buf.add(ts("a", "b", 0, q=rot_z(170)))
        buf.add(ts("a", "b", S, q=q1))
        T = buf.lookup("a", "b", S // 2)
        assert np.allclose(quat_to_matrix(T.rotation), quat_to_matrix(rot_z(180)), atol=1e-9)
        T = buf.lookup("a", "b", S // 4)
        assert np.allclose(quat_to_matrix(T.rotation), quat_to_matrix(rot_z(175)), atol=1e-9)


def test_chain_equals_composition_and_inverse():
    buf = robot_buffer()
    t = 10 * S + S // 3
    T_map_base = buf.lookup("map", "base_link", t)
    T_map_cam = buf.lookup("map", "camera_optical", t)
    assert np.allclose(T_map_cam.matrix(), T_map_base.matrix() @ OPTICAL.matrix(), atol=1e-12)
    T_cam_map = buf.lookup("camera_optical", "map", t)
    assert np.allclose(T_cam_map.matrix(), np.linalg.inv(T_map_cam.matrix()), atol=1e-12)
    # static edge alone holds at any time, even far outside the dynamic data
    assert np.allclose(buf.lookup("base_link", "camera_optical", 0).matrix(), OPTICAL.matrix())
    assert np.allclose(
        buf.lookup("camera_optical", "base_link", 10**18).matrix(), np.linalg.inv(OPTICAL.matrix())
    )
    # a frame to itself is the identity
    assert np.allclose(buf.lookup("map", "map", t).matrix(), np.eye(4))


def test_points_map_through_lookup():
    buf = robot_buffer()
    p_cam = np.array([[0.0, 0.0, 2.0], [1.0, -1.0, 3.0]])
    T = buf.lookup("map", "camera_optical", 11 * S)
    p_map = T.apply(p_cam)
    # by hand: optical → base_link → map (90° about z, then +2 m in x)
    p_base = p_cam @ quat_to_matrix(OPTICAL.rotation).T + OPTICAL.translation
    expected = p_base @ quat_to_matrix(rot_z(90)).T + [2, 0, 0]
    assert np.allclose(p_map, expected)


def test_siblings_go_through_common_ancestor():
    buf = TFBuffer()
    buf.add(ts("base", "left", 0, (0, 0.5, 0), rot_z(10)), static=True)
    buf.add(ts("base", "right", 0, (0, -0.5, 0), rot_z(-10)), static=True)
    buf.add(ts("left", "left_optical", 0, (0.1, 0, 0), rot_axis([1, 1, 0], 30)), static=True)
    T = buf.lookup("right", "left_optical", 5)
    m = (
        np.linalg.inv(Transform(np.array([0, -0.5, 0]), rot_z(-10)).matrix())
        @ Transform(np.array([0, 0.5, 0]), rot_z(10)).matrix()
        @ Transform(np.array([0.1, 0, 0]), rot_axis([1, 1, 0], 30)).matrix()
    )
    assert np.allclose(T.matrix(), m)


@st.composite
def random_trees(draw):
    n = draw(st.integers(2, 9))
    parents = [None] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    edges = []
    for i in range(1, n):
        q = rng.normal(size=4)
        edges.append((f"f{parents[i]}", f"f{i}", rng.normal(size=3), q / np.linalg.norm(q)))
    a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
    return edges, f"f{a}", f"f{b}"


@settings(max_examples=60, deadline=None)
@given(random_trees())
def test_any_tree_any_pair_matches_matrix_composition(tree):
    edges, target, source = tree
    buf = TFBuffer()
    parent_of, mat = {}, {}
    for parent, child, t, q in edges:
        buf.add(ts(parent, child, 0, t, q), static=True)
        parent_of[child] = parent
        mat[child] = Transform(t, q).matrix()

    def to_root(frame):  # T_root_frame by walking up
        m = np.eye(4)
        while frame in parent_of:
            m = mat[frame] @ m
            frame = parent_of[frame]
        return m

    expected = np.linalg.inv(to_root(target)) @ to_root(source)
    assert np.allclose(buf.lookup(target, source, 123).matrix(), expected, atol=1e-9)
    assert buf.frames() == dict(sorted(parent_of.items()))


def test_two_dynamic_edges_interpolate_independently():
    buf = TFBuffer()
    buf.add(ts("map", "odom", 0, (0, 0, 0)))
    buf.add(ts("map", "odom", 4 * S, (4, 0, 0)))
    buf.add(ts("odom", "base", 1 * S, (0, 1, 0)))
    buf.add(ts("odom", "base", 3 * S, (0, 3, 0)))
    T = buf.lookup("map", "base", 2 * S)
    assert np.allclose(T.translation, [2, 2, 0])
    assert buf.latest_common_stamp("map", "base") == 3 * S
    assert np.allclose(buf.lookup("map", "base", None).translation, [3, 3, 0])


def test_out_of_order_and_duplicate_stamps():
    buf = TFBuffer(cache_time_s=None)
    for k in [5, 1, 3, 2, 4, 0]:
        buf.add(ts("a", "b", k * S, (k, 0, 0)))
    buf.add(ts("a", "b", 2 * S, (20, 0, 0)))  # same stamp again replaces
    (e,) = buf.edges()
    assert (e.count, e.first_ns, e.last_ns) == (6, 0, 5 * S)
    assert buf.lookup("a", "b", 2 * S).translation[0] == 20
    assert buf.lookup("a", "b", int(3.5 * S)).translation[0] == pytest.approx(3.5)


def test_extrapolation_within_tolerance_uses_nearest_sample():
    buf = robot_buffer(extrapolation_tolerance_s=0.1)
    before = buf.lookup("map", "camera_optical", 10 * S - S // 20)
    assert np.allclose(before.matrix(), buf.lookup("map", "camera_optical", 10 * S).matrix())
    after = buf.lookup("map", "base_link", 11 * S + S // 10)
    assert np.allclose(after.translation, [2, 0, 0])


def test_extrapolation_error_names_frames_stamp_and_range():
    buf = robot_buffer(extrapolation_tolerance_s=0.1)
    stamp = 11 * S + S // 2
    with pytest.raises(ExtrapolationError) as err:
        buf.lookup("camera_optical", "map", stamp)
    msg = str(err.value)
    for part in (
        "camera_optical",
        "map",
        "base_link",
        str(stamp),
        str(10 * S),
        str(11 * S),
        "after the last",
        "0.500000 s",
    ):
        assert part in msg, (part, msg)
    with pytest.raises(ExtrapolationError, match="before the first"):
        buf.lookup("map", "base_link", 9 * S)
    assert not buf.can_transform("map", "camera_optical", 9 * S)
    assert buf.can_transform("map", "camera_optical", 10 * S)
    zero = robot_buffer(extrapolation_tolerance_s=0.0)
    with pytest.raises(ExtrapolationError):
        zero.lookup("map", "base_link", 11 * S + 1)


def test_unknown_frame_names_it_and_the_known_frames():
    buf = robot_buffer()
    with pytest.raises(UnknownFrameError) as err:
        buf.lookup("map", "lidar", 10 * S)
    msg = str(err.value)
    assert "'lidar'" in msg and "base_link, camera_optical, map" in msg
    with pytest.raises(UnknownFrameError, match="'odom'"):
        buf.lookup("odom", "map", 10 * S)
    with pytest.raises(UnknownFrameError, match="no transform received yet"):
        TFBuffer().lookup("map", "base_link", 0)
    assert issubclass(UnknownFrameError, TFError)


def test_disconnected_trees():
    buf = robot_buffer()
    buf.add(ts("world", "other", 0), static=True)
    with pytest.raises(TFError, match="not connected.*roots"):
        buf.lookup("other", "camera_optical", 10 * S)


def test_invalid_edges_are_rejected():
    buf = robot_buffer()
    with pytest.raises(TFError, match="loop"):
        buf.add(ts("camera_optical", "map", 0))
    with pytest.raises(TFError, match="loop"):  # (a new parent too: the loop is checked first)
        buf.add(ts("camera_optical", "base_link", 12 * S))
    with pytest.raises(TFError, match="own parent"):
        buf.add(ts("x", "x", 0))
    with pytest.raises(TFError, match="non-finite"):
        buf.add(ts("map", "base_link", 12 * S, q=(np.nan, 0, 0, 1)))
    with pytest.raises(TFError, match="not unit"):
        buf.add(ts("map", "base_link", 12 * S, q=(0, 0, 0, 2)))
    with pytest.raises(TFError, match="translation"):
        buf.add(ts("map", "base_link", 12 * S, t=(0, np.inf, 0)))
    # nothing of the rejected samples got in
    assert buf.edges()[0].count == 2


def test_a_remounted_frame_is_taken_as_tf2_takes_it():
    """tf2 (``BufferCore::setTransformImpl``) takes a transform whatever parent or kind the frame had:
    a static one replaces the stored one, parent and all, and a static <-> dynamic switch restarts the
    frame's cache (robot_state_publisher given a new robot_description). Live, the newest mount is
    used for every lookup; a recording read whole (``since_ns``: log times) keeps the earlier mount for
    what was logged before the change. Two parents for one frame in ONE message are refused (neither
    is guessed), the rest of the message kept."""
    from types import SimpleNamespace

    buf = robot_buffer()
    buf.add(ts("map", "mast", 0, (0, 0, 2)), static=True)
    buf.add(ts("mast", "camera_optical", 0, (0.5, 0, 0)), static=True)  # a new parent: replaces
    assert buf.frames()["camera_optical"] == "mast"
    assert np.allclose(buf.lookup("map", "camera_optical", 10 * S).translation, [0.5, 0, 2])
    buf.add(ts("base_link", "camera_optical", 12 * S, (0, 0, 1)))  # static -> dynamic: starts anew
    assert not buf.is_static("camera_optical") and buf.edges()[1].count == 1
    with pytest.raises(ExtrapolationError, match="before the first sample"):  # (no old static value)
        buf.lookup("base_link", "camera_optical", 10 * S)

    rec = TFBuffer(cache_time_s=0)  # a recording: every mount kept by the time it was logged
    rec.add(ts("base_link", "cam", 0, (0.1, 0, 0.2)), static=True, since_ns=1 * S)
    for k in range(5, 8):
        rec.add(ts("base_link", "cam", k * S, (0.3, 0, 1.0)), since_ns=k * S + 1)
    for logged, want in ((2 * S, [0.1, 0, 0.2]), (6 * S, [0.3, 0, 1.0]), (None, [0.3, 0, 1.0])):
        assert np.allclose(rec.lookup("base_link", "cam", 6 * S, logged_ns=logged).translation, want)
    rec.add(ts("head", "cam", 0, (0, 0, 9)), static=True, since_ns=3 * S)  # (logged between the two)
    assert np.allclose(rec.lookup("base_link", "cam", 6 * S, logged_ns=2 * S).translation, [0.1, 0, 0.2])
    assert rec.root("cam", logged_ns=4 * S) == "head" and rec.root("cam") == "base_link"

    def tf(parent, child, x):
        stamp = SimpleNamespace(sec=0, nanosec=0)
        return SimpleNamespace(
            header=SimpleNamespace(frame_id=parent, stamp=stamp),
            child_frame_id=child,
            transform=SimpleNamespace(
                translation=SimpleNamespace(x=x, y=0.0, z=0.0),
                rotation=SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0),
            ),
        )

    one = TFBuffer()
    msg = SimpleNamespace(
        transforms=[tf("base_link", "cam", 1.0), tf("head", "cam", 2.0), tf("base_link", "imu", 3.0)]
    )
    with pytest.raises(TFError, match="the same message gives cam another parent, base_link"):
        one.add_message(msg, static=True)
    assert one.frames() == {"cam": "base_link", "imu": "base_link"}


def test_quaternion_norm_rule_is_tf2s_and_a_refused_frame_says_why():
    """tf2 takes (and normalises) a rotation whose |q|² is within 0.01 of 1 and refuses the rest
    (buffer_core.cpp); a recording ROS takes must be taken here. A frame whose every transform was
    refused is named as refused, with the reason, not as never seen."""
    for norm, taken in (
        (1.002, True),
        (0.996, True),
        (1.0049, True),
        (0.9951, True),
        (1.006, False),
        (0.9949, False),
    ):
        buf = TFBuffer()
        q = (0.0, 0.0, np.sin(0.3) * norm, np.cos(0.3) * norm)
        if taken:
            buf.add(ts("map", "cam", 0, q=q), static=True)
            r = buf.lookup("map", "cam", 0).rotation
            assert np.allclose(r, (0, 0, np.sin(0.3), np.cos(0.3)), atol=1e-12), (norm, r)
        else:
            with pytest.raises(TFError, match="not unit"):
                buf.add(ts("map", "cam", 0, q=q), static=True)
            with pytest.raises(
                UnknownFrameError, match=r"'cam': every transform to it was refused.*not unit"
            ):
                buf.lookup("map", "cam", 0)
    buf = TFBuffer()
    buf.add(ts("map", "base", 0), static=True)
    with pytest.raises(UnknownFrameError, match="never appeared"):
        buf.lookup("map", "elsewhere", 0)


def test_cache_time_prunes_old_samples_but_keeps_newest():
    buf = TFBuffer(cache_time_s=2.0)
    for k in range(10):
        buf.add(ts("map", "base", k * S, (k, 0, 0)))
    (e,) = buf.edges()
    assert (e.first_ns, e.last_ns, e.count) == (7 * S, 9 * S, 3)
    with pytest.raises(ExtrapolationError):
        buf.lookup("map", "base", 3 * S)
    keep_all = TFBuffer(cache_time_s=None)
    for k in range(10):
        keep_all.add(ts("map", "base", k * S, (k, 0, 0)))
    assert keep_all.edges()[0].count == 10


def test_a_static_value_replaces_the_one_before_or_with_its_log_time_holds_from_then_on():
    """Live (no log time): each /tf_static value replaces the last at every time (tf2's static
    cache). From a recording (``since_ns``, its log time): each holds from when it was logged, picked
    by the log time a lookup gives (``logged_ns``), never by its stamp (a simulator's recording
    stamps on another clock); the first also before it, the newest without a log time; one logged
    twice at a time: the later."""
    live = TFBuffer()
    live.add(ts("base", "cam", 5 * S, (0.1, 0, 0)), static=True)
    live.add(ts("base", "cam", 7 * S, (0.5, 0, 0)), static=True)
    assert [live.lookup("base", "cam", k * S).translation[0] for k in (0, 6, 9)] == [0.5, 0.5, 0.5]
    bag = TFBuffer(cache_time_s=None)
    bag.add(ts("base", "cam", 0, (0.1, 0, 0)), static=True, since_ns=5 * S)
    bag.add(ts("base", "cam", 0, (0.5, 0, 0)), static=True, since_ns=7 * S)
    bag.add(ts("base", "cam", 0, (0.3, 0, 0)), static=True, since_ns=6 * S)  # (read out of order)
    bag.add(ts("base", "cam", 0, (0.4, 0, 0)), static=True, since_ns=6 * S)
    got = [bag.lookup("base", "cam", 3 * S, logged_ns=k * S).translation[0] for k in (0, 5, 6, 7, 9)]
    assert got == [0.1, 0.1, 0.4, 0.5, 0.5]
    assert [bag.lookup("base", "cam", t).translation[0] for t in (0, 6 * S, None)] == [0.5, 0.5, 0.5]


def test_forget_moving_keeps_the_static_transforms():
    buf = TFBuffer()
    buf.add(ts("map", "base", S, (1, 0, 0)))
    buf.add(ts("base", "cam", 0, (0.1, 0, 0)), static=True)
    buf.forget_moving()
    assert buf.time_jumps == 1
    with pytest.raises(ExtrapolationError, match="no sample since time went back"):
        buf.lookup("map", "cam", S)
    buf.add(ts("map", "base", S, (0, 2, 0)))
    np.testing.assert_allclose(buf.lookup("map", "cam", S).translation, [0.1, 2, 0])


def test_from_config():
    buf = TFBuffer.from_config(TFConfig(cache_time_s=0, extrapolation_tolerance_s=0.25))
    assert buf.cache_ns is None and buf.tolerance_ns == S // 4


def test_many_stamps_per_edge():
    """Thousands of samples per edge and as many lookups stay cheap (bisect, no scans)."""
    buf = TFBuffer(cache_time_s=None, extrapolation_tolerance_s=0.0)
    n = 5000
    for k in range(n):
        buf.add(ts("map", "base_link", k * S // 100, (k / 100, 0, 0), rot_z(k * 0.01)))
    buf.add(TransformStamped("base_link", "cam", 0, OPTICAL), static=True)
    stamps = np.random.default_rng(0).integers(0, (n - 1) * S // 100, size=n)
    xs = [buf.lookup("map", "base_link", int(s)).translation[0] for s in stamps]
    assert np.allclose(xs, stamps / S, atol=1e-9)


def test_add_message_from_tf_message():
    from gs_mapping.messages import transforms_to_tf_message

    msg = transforms_to_tf_message(
        [ts("/map", "base_link", 7, (1, 2, 3), rot_z(30)), ts("base_link", "cam", 7, (0, 0, 1))]
    )
    buf = TFBuffer()
    buf.add_message(msg, static=True)
    assert buf.frames() == {"base_link": "map", "cam": "base_link"}  # leading "/" dropped
    T = buf.lookup("map", "cam", 0)
    assert np.allclose(T.translation, [1, 2, 4])


def test_add_message_keeps_the_good_transforms_of_a_bad_message():
    from gs_mapping.messages import transforms_to_tf_message

    msg = transforms_to_tf_message([ts("map", "a", 7), ts("map", "b", 7), ts("map", "c", 7)])
    msg.transforms[1].transform.rotation.w = float("nan")
    buf = TFBuffer()
    with pytest.raises(TFError, match="'b'"):
        buf.add_message(msg)
    assert buf.frames() == {"a": "map", "c": "map"}


def test_live_map_poses_wait_for_a_moving_transform_before_anchoring():
    """A node (live) with no map frame and only static transforms to the camera does not anchor to
    the static tree's root, which moves with the robot: the lookup fails as 'may arrive'. Once the
    odometry transform comes, it anchors at the tree's root (odom), as for an odometry-only robot."""
    from gs_mapping.errors import transform_may_arrive
    from gs_mapping.tf import MapPoses

    buf = TFBuffer()
    buf.add(ts("base_link", "cam", 0, (0.5, 0, 1)), static=True)
    live = MapPoses(buf, "map", live=True)
    with pytest.raises(UnknownFrameError, match="only static transforms reach 'cam'") as err:
        live.lookup("cam", S)
    assert transform_may_arrive(err.value) and live.anchor is None
    assert MapPoses(buf, "map").lookup("cam", S) is not None  # a bag: a camera that does not move
    buf.add(ts("odom", "base_link", S, (2, 0, 0)))
    buf.add(ts("odom", "base_link", 2 * S, (3, 0, 0)))
    assert np.allclose(live.lookup("cam", S), np.eye(4)) and live.anchor[0] == "odom"
    assert np.allclose(live.lookup("cam", 2 * S)[:3, 3], (1, 0, 0))


def test_bag_map_poses_refuse_a_static_camera_tree_beside_an_unconnected_moving_one():
    """A bag (TF read whole): a camera only static transforms reach is a tripod where nothing in TF
    moves; beside a moving tree it is not connected to (``odom -> base_footprint``, the URDF rooted
    at ``base_link``) it is a robot's camera whose join is missing: an error naming both roots, as
    tf2's "two or more unconnected trees". The tripod's way out stays: the map frame set to its root."""
    from gs_mapping.tf import MapPoses

    buf = TFBuffer()
    buf.add(ts("base_link", "cam", 0, (0.5, 0, 1)), static=True)
    assert MapPoses(buf, "map").lookup("cam", S) is not None  # a tripod
    buf.add(ts("odom", "base_footprint", S, (2, 0, 0)))
    buf.add(ts("odom", "base_footprint", 2 * S, (3, 0, 0)))
    poses = MapPoses(buf, "map")
    with pytest.raises(TFError, match="unconnected trees.*root base_link.*rooted at odom") as err:
        poses.lookup("cam", S)
    assert "\n" not in str(err.value) and poses.anchor is None
    assert np.allclose(MapPoses(buf, "base_link").lookup("cam", S)[:3, 3], (0.5, 0, 1))
    buf.add(ts("base_footprint", "base_link", 0, (0, 0, 0.1)), static=True)  # joined: it moves
    joined = MapPoses(buf, "map")
    assert np.allclose(joined.lookup("cam", S), np.eye(4)) and joined.anchor[0] == "odom"
    assert np.allclose(joined.lookup("cam", 2 * S)[:3, 3], (1, 0, 0))


def test_map_poses_hold_a_late_localisations_first_fix_for_the_odometry_before_it():
    """REP 105: ``map -> odom`` (AMCL, slam_toolbox) may start after odometry. A frame before its
    first sample is posed through that first fix (one map before and after); odometry that starts
    late is still no pose, and a frame after the first fix is looked up as always."""
    from gs_mapping.tf import MapPoses

    buf = TFBuffer(cache_time_s=0)
    for k in range(0, 11):
        buf.add(ts("odom", "base_link", k * S, (0.1 * k, 0, 0)))
    for k in (5, 6):
        buf.add(ts("map", "odom", k * S, (5.0 + (k - 5), 0, 0)))
    buf.add(ts("base_link", "cam", 0, (0, 0, 1)), static=True)
    poses = MapPoses(buf, "map")
    assert np.allclose(poses.lookup("cam", 2 * S)[:3, 3], [5.2, 0, 1])  # first fix (5 m) + odom 0.2
    assert np.allclose(poses.lookup("cam", 5 * S + S // 2)[:3, 3], [6.05, 0, 1])  # interpolated
    late = TFBuffer(cache_time_s=0)
    late.add(ts("map", "odom", 0, (5, 0, 0)), static=True)
    late.add(ts("odom", "base_link", 5 * S))
    with pytest.raises(ExtrapolationError, match="before the first sample"):
        MapPoses(late, "map").lookup("base_link", 2 * S)


def test_map_poses_anchored_before_map_appears_move_into_it_once():
    """A live mapper anchored to the first frame's pose (no ``map`` yet): once a late localisation
    brings ``map -> odom``, the next lookup first hands its owner T_map_anchor (the first fix composed
    with the anchor's pose in odom, here by hand: the anchor is base_link at x = 0.1 in odom, the
    fix a quarter turn about z and (5, 1, 0)), then poses are TF's map: held back through the first
    fix before it, following the fix after (a second fix moves the poses, not the map: the owner is
    not called again). Said once each: the anchor, the move."""
    import logging

    from gs_mapping.tf import MapPoses

    buf = TFBuffer(cache_time_s=0)
    for k in range(0, 11):
        buf.add(ts("odom", "base_link", k * S, (0.1 * k, 0, 0)))
    said, moves = [], []
    log = logging.getLogger("test_anchor")
    log.warning = said.append  # type: ignore[method-assign]
    poses = MapPoses(buf, "map", log, live=True, on_reanchor=moves.append)
    assert np.allclose(poses.lookup("base_link", 1 * S)[:3, 3], [0, 0, 0]) and len(said) == 1
    turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # a quarter turn about z
    q = (0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5))
    buf.add(ts("map", "odom", 5 * S, (5, 1, 0), q))
    buf.add(ts("map", "odom", 7 * S, (5, 1, 0), q))
    buf.add(ts("map", "odom", 8 * S, (6, 1, 0), q))  # the localisation corrects itself
    assert moves == [] and poses.anchor is not None  # (nothing moves before a lookup asks)
    at = poses.lookup("base_link", 6 * S)
    T_map_odom = np.eye(4)
    T_map_odom[:3, :3], T_map_odom[:3, 3] = turn, (5, 1, 0)
    T_odom_anchor = np.eye(4)
    T_odom_anchor[0, 3] = 0.1
    assert len(moves) == 1 and np.allclose(moves[0], T_map_odom @ T_odom_anchor)
    assert np.allclose(at[:3, 3], (5, 1.6, 0)) and np.allclose(at[:3, :3], turn)  # odom x 0.6, turned
    assert np.allclose(poses.lookup("base_link", 3 * S)[:3, 3], (5, 1.3, 0))  # held back: first fix
    assert np.allclose(poses.lookup("base_link", 8 * S)[:3, 3], (6, 1.8, 0))  # the second fix
    assert len(moves) == 1 and poses.anchor is None and poses.map_came_late
    assert len(said) == 2 and "moved into 'map'" in said[1]


def test_map_poses_keep_the_anchor_while_map_does_not_reach_its_root():
    """A ``map`` frame in another tree (not above the anchor's root, odom) is no localisation of this
    robot: the anchor stays, said once, and nothing moves until ``map`` reaches odom."""
    import logging

    from gs_mapping.tf import MapPoses

    buf = TFBuffer(cache_time_s=0)
    for k in range(0, 5):
        buf.add(ts("odom", "base_link", k * S, (0.1 * k, 0, 0)))
    said, moves = [], []
    log = logging.getLogger("test_anchor_unconnected")
    log.warning = said.append  # type: ignore[method-assign]
    poses = MapPoses(buf, "map", log, live=True, on_reanchor=moves.append)
    poses.lookup("base_link", 1 * S)
    buf.add(ts("map", "other_robot/odom", 2 * S, (9, 0, 0)))
    for k in (2, 3):
        assert np.allclose(poses.lookup("base_link", k * S)[:3, 3], [0.1 * (k - 1), 0, 0])
    assert moves == [] and len(said) == 2 and "does not reach odom" in said[1]
    buf.add(ts("map", "odom", 4 * S, (5, 0, 0)))
    assert np.allclose(poses.lookup("base_link", 4 * S)[:3, 3], [5.4, 0, 0]) and len(moves) == 1
