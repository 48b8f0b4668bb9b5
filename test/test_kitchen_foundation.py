"""The foundation on real data: the 7-Scenes kitchen bag through BagReader, messages, TFBuffer and sync."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.bag import BagReader
from gs_mapping.camera import Camera
from gs_mapping.geometry import Transform
from gs_mapping.messages import (
    camera_info_to_intrinsics,
    depth_image_to_metres,
    image_to_rgb,
    stamp_to_ns,
    tf_message_to_transforms,
)
from gs_mapping.sync import ApproximateTimeSynchronizer
from gs_mapping.tf import TFBuffer

COLOR, DEPTH, INFO = "/camera/color/image_raw", "/camera/depth/image_rect_raw", "/camera/color/camera_info"
OPTICAL = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def kitchen(kitchen_bag):
    """Everything in the bag, read once: messages per topic (bag stamp, message) and a TF buffer."""
    per_topic: dict[str, list] = {}
    tf = TFBuffer(cache_time_s=None, extrapolation_tolerance_s=0.0)
    with BagReader(kitchen_bag) as bag:
        for topic, stamp, msg in bag.messages():
            per_topic.setdefault(topic, []).append((stamp, msg))
            if topic in ("/tf", "/tf_static"):
                tf.add_message(msg, static=topic == "/tf_static")
    return per_topic, tf


def test_counts(kitchen):
    per_topic, _ = kitchen
    assert {t: len(v) for t, v in per_topic.items()} == {
        COLOR: 50,
        DEPTH: 50,
        INFO: 50,
        "/tf": 50,
        "/tf_static": 1,
    }


def test_colour_and_intrinsics(kitchen):
    per_topic, _ = kitchen
    frames = [image_to_rgb(m) for _, m in per_topic[COLOR]]
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert all(f.std() > 20 for f in frames)  # real, textured images
    assert all(m.header.frame_id == OPTICAL for _, m in per_topic[COLOR])
    assert not np.array_equal(frames[0], frames[-1])
    for _, m in per_topic[INFO]:
        intr = camera_info_to_intrinsics(m)
        assert (intr.width, intr.height) == (320, 240)
        assert np.allclose(intr.K, [[292.5, 0, 159.75], [0, 292.5, 119.75], [0, 0, 1]])


def test_depth_is_plausible_metres(kitchen):
    per_topic, _ = kitchen
    for _, m in per_topic[DEPTH]:
        assert m.encoding == "16UC1"
        d = depth_image_to_metres(m)
        assert d.shape == (240, 320)
        valid = d[np.isfinite(d) & (d > 0)]
        assert valid.size > 0.5 * d.size
        assert np.mean((valid > 0.9) & (valid < 2.9)) > 0.95
        assert 1.0 < np.median(valid) < 2.5
        raw = np.frombuffer(np.asarray(m.data, np.uint8).tobytes(), "<u2").reshape(240, 320)
        # millimetres → metres, invalid (0 / 65535) not reported as a depth
        ok = (raw > 0) & (raw < 65535)
        assert np.allclose(d[ok], raw[ok] / 1000.0, atol=1e-6)
        assert not np.any(np.isfinite(d[~ok]) & (d[~ok] > 0))


def test_tf_tree_and_stamps(kitchen):
    per_topic, tf = kitchen
    assert tf.frames() == {"base_link": "map", OPTICAL: "base_link"}
    assert tf.is_static(OPTICAL) and not tf.is_static("base_link")
    tf_stamps = [stamp_to_ns(m.transforms[0].header.stamp) for _, m in per_topic["/tf"]]
    img_stamps = [stamp_to_ns(m.header.stamp) for _, m in per_topic[COLOR]]
    assert tf_stamps == img_stamps and len(set(img_stamps)) == 50


def test_map_to_optical_equals_composition_at_every_frame(kitchen):
    """The chain lookup equals map→base_link (straight from each /tf message) ∘ static base_link→optical."""
    per_topic, tf = kitchen
    (static,) = tf_message_to_transforms(per_topic["/tf_static"][0][1])
    assert (static.parent, static.child) == ("base_link", OPTICAL)
    T_base_opt = static.transform.matrix()
    tf_by_stamp = {}
    for _, m in per_topic["/tf"]:
        (t,) = tf_message_to_transforms(m)
        assert (t.parent, t.child) == ("map", "base_link")
        tf_by_stamp[t.stamp_ns] = t.transform.matrix()
    for _, img in per_topic[COLOR]:
        stamp = stamp_to_ns(img.header.stamp)
        chain = tf.lookup("map", OPTICAL, stamp).matrix()
        assert np.allclose(chain, tf_by_stamp[stamp] @ T_base_opt, atol=1e-9)
        two_hops = tf.lookup("map", "base_link", stamp) @ tf.lookup("base_link", OPTICAL, stamp)
        assert np.allclose(chain, two_hops.matrix(), atol=1e-9)
        back = tf.lookup(OPTICAL, "map", stamp).matrix()
        assert np.allclose(back @ chain, np.eye(4), atol=1e-9)
        assert np.allclose(chain[:3, :3] @ chain[:3, :3].T, np.eye(3), atol=1e-9)


def test_interpolated_pose_between_frames(kitchen):
    per_topic, tf = kitchen
    stamps = sorted(stamp_to_ns(m.transforms[0].header.stamp) for _, m in per_topic["/tf"])
    t0, t1 = stamps[10], stamps[11]
    mid = tf.lookup("map", "base_link", (t0 + t1) // 2)
    a, b = tf.lookup("map", "base_link", t0), tf.lookup("map", "base_link", t1)
    assert np.allclose(mid.translation, (a.translation + b.translation) / 2, atol=1e-6)
    expected = a.interpolate(b, ((t0 + t1) // 2 - t0) / (t1 - t0))
    assert np.allclose(mid.matrix(), expected.matrix(), atol=1e-9)
    assert isinstance(mid, Transform)


def _reprojection(kitchen, i, j, invert=False):
    """Depth of frame i moved into frame j with the TF poses vs frame j's own depth."""
    per_topic, tf = kitchen
    intr = camera_info_to_intrinsics(per_topic[INFO][0][1])
    depth = {stamp_to_ns(m.header.stamp): depth_image_to_metres(m) for _, m in per_topic[DEPTH]}
    stamps = sorted(depth)
    poses = [tf.lookup("map", OPTICAL, stamps[k]).matrix() for k in (i, j)]
    if invert:  # the wrong convention (T_cam_map taken for T_map_cam) must be visibly wrong
        poses = [np.linalg.inv(p) for p in poses]
    ci, cj = (Camera(intr.K, intr.width, intr.height, p) for p in poses)
    di, dj = depth[stamps[i]], depth[stamps[j]]
    good = np.isfinite(di) & (di > 0)
    pts = ci.backproject(np.where(good, di, 0.0))[good]
    uv, z = cj.project(pts)
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    inside = (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height) & (z > 0)
    measured = dj[v[inside], u[inside]]
    ok = np.isfinite(measured) & (measured > 0)
    err = np.abs(measured[ok] - z[inside][ok])
    return float(np.median(err)), float(np.mean(err < 0.05))


@pytest.mark.parametrize("j", [10, 25])
def test_poses_and_depth_agree_across_frames(kitchen, j):
    """Real geometry check of TF direction and depth scale: depth of frame 0, moved by the poses,
    lands on frame j's depth within centimetres; with inverted poses it does not."""
    median, within_5cm = _reprojection(kitchen, 0, j)
    assert median < 0.03 and within_5cm > 0.85, (median, within_5cm)
    wrong_median, _ = _reprojection(kitchen, 0, j, invert=True)
    assert wrong_median > 0.1


def test_sync_pairs_colour_depth_info_into_50_triples(kitchen):
    per_topic, _ = kitchen
    triples = []
    sync = ApproximateTimeSynchronizer(
        [COLOR, DEPTH, INFO], queue_size=10, slop=0.010, callback=lambda *m: triples.append(m)
    )
    # feed in bag order, as a replay would (the bag stamps interleave the three topics)
    merged = sorted(
        ((stamp, topic, k) for topic in (COLOR, DEPTH, INFO) for k, (stamp, _) in enumerate(per_topic[topic]))
    )
    for _, topic, k in merged:
        msg = per_topic[topic][k][1]
        sync.add(topic, stamp_to_ns(msg.header.stamp), msg)
    assert len(triples) == 50 and sync.dropped == 0 and sync.pending() == 0
    for c, d, i in triples:
        assert c.encoding == "rgb8" and d.encoding == "16UC1" and i.k[0] == 292.5
        assert stamp_to_ns(c.header.stamp) == stamp_to_ns(d.header.stamp) == stamp_to_ns(i.header.stamp)
    assert [stamp_to_ns(c.header.stamp) for c, _, _ in triples] == sorted(
        stamp_to_ns(m.header.stamp) for _, m in per_topic[COLOR]
    )


def test_the_recorded_depth_image_is_refused_as_colour(kitchen):
    """A 16UC1 depth image (REP-118 millimetres) on a colour topic was read as grey (its high byte:
    near black) and predicted on; the recording's own depth message is refused as colour by name,
    while its mono16 twin (the same bytes labelled as a grey camera) still reads as grey."""
    import copy

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.camera_image import color_to_rgb

    depth = kitchen[0][DEPTH][0][1]
    with pytest.raises(MessageError, match="'16UC1' is a depth image"):
        color_to_rgb(depth)
    grey = copy.copy(depth)
    grey.encoding = "mono16"
    mm = np.frombuffer(bytes(depth.data), "<u2").reshape(depth.height, depth.width)
    assert np.array_equal(color_to_rgb(grey)[..., 1], (mm >> 8).astype(np.uint8))
