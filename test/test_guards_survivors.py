"""Guards for behaviours a mutation-testing pass found unguarded: each test compares the component
with an independent reference (OpenCV, a numpy re-computation, shapely-free geometry, the rule a
docstring states), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import io
import os
import stat
from types import SimpleNamespace as NS

import numpy as np
import pytest

from gs_mapping.bag import BagReader

# ------------------------------------------------------------------------------------------------
# messages


@pytest.mark.parametrize("encoding,code", [("bgr16", "COLOR_BGR2RGB"), ("bgra16", "COLOR_BGRA2RGB")])
def test_sixteen_bit_bgr_images_come_out_rgb(encoding, code):
    """bgr16/bgra16 are blue-first like bgr8: image_to_rgb must swap them to RGB (as OpenCV does),
    after scaling 16 → 8 bits by the high byte."""
    cv2 = pytest.importorskip("cv2")  # (not in the numpy-1.26 environment)

    from gs_mapping.messages import image_to_rgb, numpy_to_image

    rng = np.random.default_rng(3)
    channels = 4 if encoding.startswith("bgra") else 3
    a = rng.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    a[..., 0] = 60000  # blue strong, red weak: a swap cannot go unnoticed
    a[..., 2] = 1000
    want = (cv2.cvtColor(a, getattr(cv2, code)) >> 8).astype(np.uint8)
    got = image_to_rgb(numpy_to_image(a, encoding))
    assert got.shape == (5, 7, 3) and got.dtype == np.uint8
    assert np.array_equal(got, want)


def test_compressed_depth_16uc1_max_value_is_invalid_like_raw_images():
    """65535 mm is the "no return" value of 16UC1 depth: the compressedDepth decoder must turn it
    into NaN exactly as the raw Image decoder does for the same millimetres."""
    from PIL import Image

    from gs_mapping.messages import compressed_depth_to_metres, depth_image_to_metres, numpy_to_image

    mm = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 97 + 300).astype(np.uint16)
    mm[0, 0] = 0
    mm[2, 3] = 65535
    mm[5, 7] = 65535
    buf = io.BytesIO()
    Image.fromarray(mm).save(buf, format="PNG")
    header = np.array([0], "<i4").tobytes() + np.array([0, 0], "<f4").tobytes()
    msg = NS(format="16UC1; compressedDepth png", data=header + buf.getvalue())
    got = compressed_depth_to_metres(msg)
    raw = depth_image_to_metres(numpy_to_image(mm, "16UC1"))
    want = np.where((mm == 0) | (mm == 65535), np.nan, mm.astype(np.float32) * np.float32(0.001))
    assert np.isnan(got[2, 3]) and np.isnan(got[5, 7]) and np.isnan(got[0, 0])
    np.testing.assert_array_equal(got, raw)
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_cloud_rows_with_non_finite_z_are_dropped():
    """pointcloud2_xyz drops every row with a non-finite coordinate, z included (a numpy finite
    filter over the three columns is the reference)."""
    from gs_mapping.messages import array_to_pointcloud2, pointcloud2_xyz

    rng = np.random.default_rng(5)
    a = np.zeros(40, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    for n in ("x", "y", "z", "intensity"):
        a[n] = rng.normal(0, 3, 40)
    a["z"][[1, 7, 30]] = np.nan
    a["z"][12] = np.inf
    a["x"][20] = np.nan
    got = pointcloud2_xyz(array_to_pointcloud2(a))
    xyz = np.stack([a["x"], a["y"], a["z"]], axis=1)
    want = xyz[np.isfinite(xyz).all(axis=1)]
    assert got.shape == (35, 3)
    assert np.array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# camera intrinsics in time


def test_image_stamped_at_a_new_camera_info_gets_that_info():
    """The CameraInfo of an image is the latest one at or before its stamp (frames docstring): an
    image stamped exactly at a new CameraInfo takes the new one, not the previous."""
    from gs_mapping.sync import info_at as _intrinsics_at  # (what read_frames calls)

    old, new = object(), object()
    infos = [(1_000, old), (2_000, new)]
    assert _intrinsics_at(infos, 2_000) is new
    assert _intrinsics_at(infos, 1_999) is old
    assert _intrinsics_at(infos, 1_000) is old
    assert _intrinsics_at(infos, 500) is old  # before the first: the first
    assert _intrinsics_at(infos, 5_000) is new


# ------------------------------------------------------------------------------------------------
# output files


def test_outputs_honour_the_umask(tmp_path):
    """An output file gets the mode a plain open() would create (0666 & ~umask), not mkstemp's
    0600: under umask 022 both are 0644."""
    from gs_mapping.output_files import output_path

    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.bin"
        with open(plain, "wb") as fh:
            fh.write(b"x")
        out = tmp_path / "out.bin"
        with output_path(out) as tmp:
            tmp.write_bytes(b"payload")
        os.umask(0o027)
        out2 = tmp_path / "out2.bin"
        with output_path(out2) as tmp:
            tmp.write_bytes(b"payload")
    finally:
        os.umask(old)
    assert out.read_bytes() == b"payload"
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(out2.stat().st_mode) == 0o640


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_is_fsynced_before_it_is_installed(tmp_path, monkeypatch, overwrite):
    """A writer that only takes a name (output_path) gets its temp file fsynced before the temp is
    linked or renamed onto the target: a crash after the rename never leaves an empty file."""
    from gs_mapping import output_files

    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        try:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            events.append(("fsync", "?"))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("install", os.fspath(src)))
        return real_replace(src, dst, *a, **k)

    def link(src, dst, *a, **k):
        events.append(("install", os.fspath(src)))
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    out = tmp_path / "map.ply"
    if overwrite:
        out.write_bytes(b"old")
    with output_files.output_path(out, overwrite=overwrite) as tmp:
        tmp_name = str(tmp.resolve())
        tmp.write_bytes(b"new contents")  # no fsync of its own
    assert out.read_bytes() == b"new contents"
    installs = [i for i, (op, p) in enumerate(events) if op == "install" and os.path.realpath(p) == tmp_name]
    assert installs, events
    synced = [i for i, (op, p) in enumerate(events) if op == "fsync" and p == tmp_name]
    assert synced and synced[0] < installs[0], events


# ------------------------------------------------------------------------------------------------
# HD map regions


def test_region_in_map_is_the_rigid_transform_of_its_vertices():
    """region_in_map(region, T) is the base_link region placed in the map frame: every vertex
    mapped by the planar rigid transform (yaw 0.7 rad plus a translation), computed here by hand."""
    from gsmap_hd.lane_map import region_in_map
    from gsmap_hd.region import Region

    verts = np.array([[0.0, -2.0], [12.0, -5.0], [12.0, 5.0], [0.0, 2.0]])
    region = Region.from_coords("frustum", [verts])
    yaw, tx, ty = 0.7, 31.0, -4.5
    T = np.eye(4)
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[0, 3], T[1, 3], T[2, 3] = tx, ty, 1.2
    want = np.stack(
        [
            np.cos(yaw) * verts[:, 0] - np.sin(yaw) * verts[:, 1] + tx,
            np.sin(yaw) * verts[:, 0] + np.cos(yaw) * verts[:, 1] + ty,
        ],
        axis=1,
    )
    got = np.asarray(region_in_map(region, T).exterior.coords)[:-1]
    np.testing.assert_allclose(got, want, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# map sharing: receiver


def test_receiver_rebuilds_the_map_with_the_senders_tile_size():
    """A map tiled at 1 m reaches the receiver tiled at 1 m (not the 2 m default): its tiles are
    floor(mean / 1.0) of the rebuilt means."""
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_map_share.receiver import SNAPSHOT, MapStore
    from gs_mapping.gaussians import GaussianMap

    g0 = synthetic_map(300, 0, seed=4)
    g = GaussianMap(0, 1.0, g0.means, g0.quats, g0.log_scales, g0.opacity_logits, g0.sh)
    store = MapStore()
    assert (
        store.receive(MapSender.from_map(g, QuantParams.from_quality(2), first_seq=1).snapshot()) == SNAPSHOT
    )
    rebuilt = store.gaussian_map()
    assert rebuilt.tile_size == 1.0
    assert np.array_equal(rebuilt.tile_coords(), np.floor(rebuilt.means / 1.0).astype(np.int64))


def test_pending_deltas_past_the_bound_evict_the_latest_arrival_at_the_farthest_base():
    """PendingDeltas' rule: beyond the bound, the latest arrival at the farthest base goes first
    (the earlier candidate for that base stays; the nearer deltas stay)."""
    from gs_map_share.receiver import BUFFERED, DROPPED, PendingDeltas

    pend = PendingDeltas(max_count=2)
    assert pend.add(NS(base_seq=5), b"first at 5") == (BUFFERED, 0)
    assert pend.add(NS(base_seq=5), b"second at 5") == (BUFFERED, 0)
    # a nearer delta: room is made at base 5, by its latest arrival
    assert pend.add(NS(base_seq=3), b"at 3") == (BUFFERED, 1)
    assert [p.data for p in pend.take(3)] == [b"at 3"]
    assert [p.data for p in pend.take(5)] == [b"first at 5"]
    assert len(pend) == 0 and pend.nbytes == 0
    # a new arrival at the farthest base beyond the bound is itself the latest there: dropped
    pend = PendingDeltas(max_count=2)
    pend.add(NS(base_seq=4), b"a4")
    pend.add(NS(base_seq=9), b"a9")
    assert pend.add(NS(base_seq=9), b"b9") == (DROPPED, 0)
    assert [p.data for p in pend.take(9)] == [b"a9"]
    # bounded in bytes the same way
    pend = PendingDeltas(max_count=10, max_bytes=10)
    pend.add(NS(base_seq=7), b"xxxx")
    pend.add(NS(base_seq=7), b"yyyy")
    assert pend.add(NS(base_seq=6), b"zzzz") == (BUFFERED, 1)
    assert [p.data for p in pend.take(7)] == [b"xxxx"]


# ------------------------------------------------------------------------------------------------
# mapper node


def test_mapper_node_maps_a_repeated_pair_once(kitchen_bag, fast_nodes_config):
    """The same colour/depth pair delivered twice (a DDS retransmission, a replay restarted) is
    mapped once: the second is counted in dropped["frames"], and the mapper has seen as many frames
    as there were distinct colour stamps."""
    from gs_mapping.bag import BagReader
    from gs_mapping.messages import stamp_to_ns
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    color, depth = "/camera/color/image_raw", "/camera/depth/image_rect_raw"
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages())
    color_stamps = sorted({s for t, s, _ in msgs if t == color})[:3]
    msgs = [m for m in msgs if m[1] <= color_stamps[-1]]
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(fast_nodes_config)))
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    used = node.mapper.stats.frames
    assert used == 3, node.diag.summary()
    before = node.diag.summary()["dropped"].get("frames", 0)
    last_color = next(m for m in reversed(msgs) if m[0] == color)
    last_depth = next(m for m in reversed(msgs) if m[0] == depth)
    assert stamp_to_ns(last_depth[2].header.stamp) == stamp_to_ns(last_color[2].header.stamp)
    for topic, stamp, msg in (last_color, last_depth):
        bus.inject(topic, msg, stamp + 1000)
    assert node.mapper.stats.frames == used
    assert node.diag.summary()["dropped"].get("frames", 0) == before + 1


# ------------------------------------------------------------------------------------------------
# map sharing: coarse levels of detail


def _children(seed: int):
    """Child Gaussians of 6 nodes: nodes 0-4 spread out, node 5 eight near-copies of one Gaussian
    (stacked: their Σ α·area far exceeds the merged Gaussian's area)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    node = np.concatenate([np.repeat(np.arange(5), [3, 5, 2, 7, 4]), np.full(8, 5)])
    n = len(node)
    centres = rng.uniform(-2, 2, (6, 3))
    means = centres[node] + rng.normal(0, 0.3, (n, 3))
    quats = Rotation.random(n, random_state=seed).as_quat()
    log_scales = np.log(rng.uniform(0.02, 0.25, (n, 3)))
    op_logits = rng.normal(0, 1.5, n)
    stacked = node == 5
    means[stacked] = centres[5] + rng.normal(0, 1e-3, (8, 3))
    quats[stacked] = quats[stacked][0]
    log_scales[stacked] = np.log([0.2, 0.2, 0.01])
    op_logits[stacked] = np.log(0.3 / 0.7)
    dc = rng.normal(0, 1, (n, 3))
    return node, centres, means, quats, log_scales, op_logits, dc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coarse_gaussian_has_its_childrens_mixture_covariance_and_capped_opacity(seed):
    """merged_gaussians (octree docstring): covariance = E[(x-c)(x-c)ᵀ] over the children's mixture
    (weights α + 1e-6 from the moments), the two largest axes then widened by COVER; opacity
    conserves Σ α·area but never exceeds the largest child's. Rebuilt here with scipy and numpy."""
    from scipy.spatial.transform import Rotation

    from gs_map_share import octree

    node, centres, means, quats, log_scales, op_logits, dc = _children(seed)
    m = octree.leaf_moments(node, 6, means, quats, log_scales, op_logits, dc)
    q, ls, op, _ = octree.merged_gaussians(m, centres)
    alpha = 1.0 / (1.0 + np.exp(-op_logits))
    s = np.exp(log_scales)
    R = Rotation.from_quat(quats).as_matrix()
    cov_k = np.einsum("nij,nj,nkj->nik", R, s * s, R)
    for j in range(6):
        k = node == j
        w = alpha[k] + 1e-6
        d = means[k] - centres[j]
        want = (w[:, None, None] * (cov_k[k] + d[:, :, None] * d[:, None, :])).sum(0) / w.sum()
        order = np.argsort(ls[j])
        ls_raw = ls[j].copy()
        ls_raw[order[1:]] -= np.log(octree.COVER)  # undo the in-plane widening
        Rj = Rotation.from_quat(q[j]).as_matrix()
        got = Rj @ np.diag(np.exp(2 * ls_raw)) @ Rj.T
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())
        # opacity: Σ α·area / merged area (area: product of the two largest scales), capped
        area = np.sort(s[k], axis=1)[:, 1:].prod(1)
        area_p = np.exp(np.sort(ls[j])[1:].sum())
        a_want = np.clip(min((alpha[k] * area).sum() / area_p, alpha[k].max()), 1e-4, 0.9999)
        a_got = 1.0 / (1.0 + np.exp(-op[j]))
        assert a_got <= alpha[k].max() * (1 + 1e-9)
        assert a_got == pytest.approx(a_want, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# map sharing: lane ids


def _line(y: float, x0: float = 0.0, x1: float = 10.0) -> np.ndarray:
    return np.stack([np.linspace(x0, x1, 11), np.full(11, y)], axis=1)


def test_lane_ids_are_kept_per_class():
    """assign_ids (lanes docstring): an element keeps the id of a previous lane only of its own
    class; a lane of another class lying exactly under it does not lend its id."""
    from gs_map_share.lanes import Lane, assign_ids

    prev = [Lane(3, 0, 0.9, _line(0.0)), Lane(4, 1, 0.9, _line(0.4))]
    divider = NS(cls=1, score=0.8, points=_line(0.0))  # on top of lane 3 (class 0), near lane 4
    out, next_id = assign_ids(prev, [divider], next_id=10)
    assert [(ln.id, ln.cls) for ln in out] == [(4, 1)]
    assert next_id == 10
    alone = NS(cls=2, score=0.8, points=_line(0.0))  # no previous lane of class 2: a new id
    out, next_id = assign_ids(prev, [alone], next_id=10)
    assert [ln.id for ln in out] == [10] and next_id == 11


def test_higher_scored_element_wins_a_contested_lane_id():
    """assign_ids matches greedily by score: of two elements near the same previous lane, the
    higher-scored one keeps its id even when the other lies closer; the other gets a new id."""
    from gs_map_share.lanes import Lane, assign_ids

    prev = [Lane(7, 0, 0.9, _line(0.0))]
    strong = NS(cls=0, score=0.9, points=_line(0.5))
    weak = NS(cls=0, score=0.4, points=_line(0.1))
    for elements in ([weak, strong], [strong, weak]):
        out, next_id = assign_ids(prev, elements, next_id=20)
        ids = {float(ln.score): ln.id for ln in out}
        assert ids == {0.9: 7, 0.4: 20}
        assert next_id == 21


# ------------------------------------------------------------------------------------------------
# map sharing: region paging


def test_region_pages_give_the_nearest_tiles_first():
    """A region answer pages tiles by distance from the pose (region docstring): the first page
    holds the tiles nearest to it, and the pages together list every tile within the radius in
    non-decreasing distance (tile cube's nearest point, recomputed here)."""
    from synthetic_maps import synthetic_map

    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.region import RegionRequest, answer

    params = QuantParams()
    q = to_qmap(synthetic_map(3000, 0, seed=6, extent=8.0), params)
    tiles = np.unique(q.pos >> params.tile_bits, axis=0)
    tile_seq = {tuple(int(v) for v in t): 1 for t in tiles}
    pose = np.array([1.0, 6.5, 0.5])
    edge = (1 << params.tile_bits) * params.pos_step
    lo = tiles * edge
    dist = {
        tuple(int(v) for v in t): float(np.linalg.norm(np.clip(pose, a, a + edge) - pose))
        for t, a in zip(tiles, lo, strict=True)
    }
    radius = 6.0
    inside = {t for t, d in dist.items() if d <= radius}
    assert 4 < len(inside) < len(tiles)  # the radius matters
    full = answer(RegionRequest(*pose, radius_m=radius), q, params, map_id=1, seq=1, tile_seq=tile_seq)
    assert full.next_cursor is None and {tuple(t) for t in full.tiles} == inside
    pages, cursor = [], 0
    while cursor is not None:
        req = RegionRequest(
            *pose, radius_m=radius, cursor=cursor, max_bytes=max(4096, len(full.container) // 4)
        )
        a = answer(req, q, params, map_id=1, seq=1, tile_seq=tile_seq)
        assert a.status == "ok", a.error
        pages.append([tuple(t) for t in a.tiles])
        cursor = a.next_cursor
    assert len(pages) >= 2
    listed = [t for p in pages for t in p]
    assert sorted(listed) == sorted(inside) and len(set(listed)) == len(listed)
    d = np.array([dist[t] for t in listed])
    assert np.all(np.diff(d) >= 0), d
    first = pages[0]
    assert max(dist[t] for t in first) <= min(dist[t] for t in inside - set(first))
    assert first[0] == min(inside, key=lambda t: (dist[t], t))


# ------------------------------------------------------------------------------------------------
# hd_map_node: lanes in the map frame


def test_hd_map_node_places_lanes_in_the_map_frame_at_the_vehicles_pose(tmp_path, monkeypatch):
    """hd_map_node's ~/lanes_delta carries each frame's lanes in the map frame: base_link points
    mapped by T_map_base, which for a synthetic drive is its ground-truth pose (some 40 m from the
    origin). The model is replaced by fixed base_link elements so that only the frames are tested."""
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.messages import uint8_multiarray_to_bytes
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import replay_bag
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag
    from gsmap_hd.infer import Element, Predictor

    base = {
        0: np.stack([np.linspace(5.0, 20.0, 6), np.full(6, 2.0)], axis=1),
        2: np.stack([np.linspace(4.0, 16.0, 5), np.linspace(-3.0, -4.0, 5)], axis=1),
    }

    def fake_predict(self, images, cameras, extrinsics):
        return [Element(c, 0.9, p.copy(), np.zeros((len(p), 5))) for c, p in base.items()]

    monkeypatch.setattr(Predictor, "predict", fake_predict)
    drive = Drive.make(3, 3, "front", (128, 72))
    write_bag(drive, tmp_path / "world", progress=False)
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].fuse = False
    replay_bag(tmp_path / "world", tmp_path / "out", [HDMapNode], [cfg])
    with BagReader(tmp_path / "out") as bag:
        deltas = [(s, uint8_multiarray_to_bytes(m)) for _, s, m in bag.messages(["/hd_map_node/lanes_delta"])]
    assert len(deltas) == 3
    state = None
    for i, (_, data) in enumerate(deltas):
        _, state = decode_lanes(data, state)
        T = drive.pose(i)
        assert np.linalg.norm(T[:2, 3]) > 30.0
        c, s = T[0, 0], T[1, 0]
        got = {cls: q * 0.01 for cls, _, q in state.lanes.values()}
        assert set(got) == set(base)
        for cls, p in base.items():
            want = np.stack(
                [c * p[:, 0] - s * p[:, 1] + T[0, 3], s * p[:, 0] + c * p[:, 1] + T[1, 3]], axis=1
            )
            np.testing.assert_allclose(got[cls], want, atol=0.006)


# ------------------------------------------------------------------------------------------------
# bags: time span


def _mcap_span(files) -> tuple[int, int, int]:
    """(messages, first log time, last log time) by reading every MCAP message record."""
    from mcap.reader import make_reader

    n, first, last = 0, None, None
    for f in files:
        with open(f, "rb") as fh:
            for _schema, _channel, message in make_reader(fh).iter_messages():
                n += 1
                first = message.log_time if first is None else min(first, message.log_time)
                last = message.log_time if last is None else max(last, message.log_time)
    return n, first, last


def _assert_span_agrees(path, caplog) -> None:
    caplog.clear()
    with caplog.at_level("WARNING"):
        with BagReader(path) as bag:
            start, end, count = bag.start_ns, bag.end_ns, bag.message_count
    assert not [r for r in caplog.records if "disagrees" in r.getMessage()], caplog.text
    n, first, last = _mcap_span(sorted(path.glob("*.mcap")))
    assert (count, start, end) == (n, first, last)


def test_bag_span_ends_at_the_last_message_written(tmp_path, caplog):
    """A bag we write: BagReader's end_ns is the last message's stamp (rosbags' end_time is one
    past it), with no metadata-disagrees warning; the reference is the MCAP records themselves."""
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages import string_message

    out = tmp_path / "bag"
    with BagWriter(out) as bag:
        bag.add_topic("/a", "std_msgs/msg/String")
        bag.add_topic("/b", "std_msgs/msg/String")
        for stamp, topic in ((1_000, "/a"), (1_500, "/b"), (2_700, "/a")):
            bag.write(topic, stamp, string_message(f"at {stamp}"))
    _assert_span_agrees(out, caplog)
    with BagReader(out) as bag:
        assert (bag.start_ns, bag.end_ns) == (1_000, 2_700)


def test_kitchen_bag_span_agrees_with_its_storage(kitchen_bag, caplog):
    """The real kitchen bag opens without a metadata-disagrees warning, its end_ns the stamp of its
    last message as read from the MCAP file directly."""
    _assert_span_agrees(kitchen_bag, caplog)


# ------------------------------------------------------------------------------------------------
# mapper_node: a cloud placed with TF at its own stamp


def test_mapper_node_places_a_cloud_with_tf_at_the_clouds_own_stamp(fast_nodes_config, monkeypatch):
    """A LiDAR cloud stamped 15 ms after the colour image, from a vehicle driving at 20 m/s: it is
    moved into the camera with the vehicle's pose at the cloud's stamp (tf2's rule), not at the
    image's. The cloud samples a wall at map x = 18 m; the camera is 7.5 m from it at the image's
    stamp, so every depth pixel reads 7.5 m (taking the image's pose would read 7.2 m)."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import (
        intrinsics_to_camera_info,
        numpy_to_image,
        points_to_pointcloud2,
        transforms_to_tf_message,
    )
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    t0, speed = 1_700_000_000_000_000_000, 20.0
    tc, td = t0, t0 + 15_000_000
    cfg = MapperNode.load_config(str(fast_nodes_config))
    cfg["mapper_node"].cloud_topic = "/cloud"
    cfg["mapper"].topics.color = "/cam/image_raw"
    cfg["mapper"].topics.camera_info = "/cam/camera_info"
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), cfg)
    frames = []
    real_add = node.mapper.add_frame
    monkeypatch.setattr(node.mapper, "add_frame", lambda f: (frames.append(f), real_add(f))[1])

    def base_x(t):
        return 10.0 + speed * (t - t0) * 1e-9

    R_base_cam = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical: z forward
    T_base_cam = np.eye(4)
    T_base_cam[:3, :3], T_base_cam[:3, 3] = R_base_cam, [0.5, 0.0, 1.0]
    T_base_lidar = np.eye(4)
    T_base_lidar[:3, 3] = [0.2, 0.0, 1.2]
    static = [
        TransformStamped("base_link", "cam_optical", t0, Transform.from_matrix(T_base_cam)),
        TransformStamped("base_link", "lidar", t0, Transform.from_matrix(T_base_lidar)),
    ]
    bus.inject("/tf_static", transforms_to_tf_message(static), t0 - 200_000_000)
    for t in range(t0 - 200_000_000, t0 + 100_000_001, 5_000_000):
        tf = TransformStamped("map", "base_link", t, Transform(np.array([base_x(t), 0.0, 0.0])))
        bus.inject("/tf", transforms_to_tf_message([tf]), t)
    K = np.array([[50.0, 0, 32.0], [0, 50.0, 24.0], [0, 0, 1.0]])
    intr = CameraIntrinsics(64, 48, K, frame_id="cam_optical")
    wall = 18.0
    y, z = np.meshgrid(np.arange(-6.0, 6.0, 0.1), np.arange(-5.0, 5.0, 0.1))
    x_lidar = wall - (base_x(td) + 0.2)  # the wall in the lidar frame at the cloud's stamp
    cloud = np.stack([np.full(y.size, x_lidar), y.ravel(), z.ravel()], axis=1)
    rgb = np.full((48, 64, 3), 128, np.uint8)
    now = t0 + 100_000_000
    bus.inject("/cam/camera_info", intrinsics_to_camera_info(intr, stamp_ns=tc), now)
    bus.inject("/cam/image_raw", numpy_to_image(rgb, "rgb8", tc, "cam_optical"), now)
    bus.inject("/cloud", points_to_pointcloud2(cloud, stamp_ns=td, frame_id="lidar"), now)
    assert len(frames) == 1, node.diag.summary()
    depth = np.asarray(frames[0].depth)
    valid = np.isfinite(depth) & (depth > 0)
    assert valid.mean() > 0.5
    want = wall - (base_x(tc) + 0.5)  # the camera's distance to the wall at the image's stamp
    np.testing.assert_allclose(depth[valid], want, atol=0.02)
