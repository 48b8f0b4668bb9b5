"""Guards for behaviours a mutation-testing pass found unguarded (fourth round): each test compares
the component with an independent reference (the PLY as plyfile reads it, the clamping rule of the
suite's non-finite values, image_transport's compressedDepth rules applied to hand-built RVL
streams, RViz's marker conventions, the pixel-centre rule of an image resize written out as a
matrix, a bilinear read and nearest-pixel rule recomputed with numpy from the rectifier's own
sampling positions, the documented overwrite and size-limit rules), so that breaking the line it
guards makes it fail."""

from __future__ import annotations

import io
import struct
from types import SimpleNamespace as NS

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# PLY: wide ids, the Mip-Splatting 3D filter


def _gmap(n: int = 4, seed: int = 0):
    from gs_mapping.gaussians import GaussianMap

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return GaussianMap(
        sh_degree=0,
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=q,
        log_scales=rng.uniform(-4, -1, (n, 3)).astype(np.float32),
        opacity_logits=rng.uniform(-2, 2, n).astype(np.float32),
        sh=rng.normal(size=(n, 1, 3)).astype(np.float32) * 0.3,
    )


def test_wide_ids_keep_all_32_bits_of_their_low_half(tmp_path):
    """A fleet id ``map_id << 32 | local`` beyond 2**53 is written as uint ``id_hi`` / ``id_lo``:
    a local id with its top bit set (0xFFFFFFF0) is kept whole in ``id_lo`` (as plyfile reads it)
    and read back exactly."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.ply import load_ply, save_ply

    g = _gmap(3)
    hi = np.uint64(1 << 30)
    lo = np.array([0xFFFFFFF0, 0x80000001, 7], np.uint64)
    g.ids, g.ids_implicit = (hi << np.uint64(32)) | lo, False
    save_ply(g, tmp_path / "fleet.ply", keep_ids=True)
    v = plyfile.PlyData.read(str(tmp_path / "fleet.ply"))["gs_mapping"]
    assert sorted(v["id_lo"].tolist()) == [7, 0x80000001, 0xFFFFFFF0]
    assert v["id_hi"].tolist() == [1 << 30] * 3
    assert sorted(load_ply(tmp_path / "fleet.ply").ids.tolist()) == sorted(g.ids.tolist())


def _mip_ply(path, opacity, log_scale, filt) -> None:
    plyfile = pytest.importorskip("plyfile")
    n = len(opacity)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "filter_3D"]
    v = np.zeros(n, [(k, "<f4") for k in names])
    v["opacity"] = opacity
    for i in range(3):
        v[f"scale_{i}"] = log_scale
    v["rot_0"] = 1.0
    v["filter_3D"] = filt
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(path))


def test_folded_3d_filter_opacity_is_clamped_to_the_suites_logit_limit(tmp_path):
    """Folding Mip-Splatting's filter into the opacity can reach p = 1 (an opacity logit of 40
    with no filter) or p ≈ 0 (a tiny Gaussian under a wide filter): the logit is ±inf there, and the
    suite's rule is that no infinity reaches a map (clamp_nonfinite clamps ±inf logits to finite
    ones): the map holds finite logits beyond ±OPACITY_LOGIT_LIMIT (which render as opacity 1 and
    0), and a row without filter is unchanged."""
    from gs_mapping.gaussians import OPACITY_LOGIT_LIMIT
    from gs_mapping.ply import load_ply

    _mip_ply(tmp_path / "m.ply", [40.0, 0.0, 1.0], [-1.0, -12.0, -1.0], [0.0, 100.0, 0.0])
    g = load_ply(tmp_path / "m.ply")
    assert np.all(np.isfinite(g.opacity_logits))
    assert OPACITY_LOGIT_LIMIT <= g.opacity_logits[0] <= 40.0
    assert -40.0 <= g.opacity_logits[1] <= -OPACITY_LOGIT_LIMIT
    assert g.opacity_logits[2] == pytest.approx(1.0, abs=1e-5)  # no filter, nothing changes


# ------------------------------------------------------------------------------------------------
# input and output files


def test_read_bytes_takes_a_file_of_exactly_its_limit(tmp_path):
    """input_files.read_bytes(limit): a file of ``limit`` bytes is read, one byte more is a
    MapError naming the limit (the limit is the most bytes allowed)."""
    from gs_mapping.errors import MapError
    from gs_mapping.input_files import read_bytes

    (tmp_path / "a").write_bytes(b"x" * 100)
    assert read_bytes(tmp_path / "a", limit=100) == b"x" * 100
    with pytest.raises(MapError, match=r"101 bytes \(limit 100\)"):
        (tmp_path / "b").write_bytes(b"x" * 101)
        read_bytes(tmp_path / "b", limit=100)


def test_file_output_onto_a_directory_is_refused_even_with_overwrite(tmp_path):
    """A file output whose name is an existing directory is refused with 'is a directory'
    whether or not --overwrite is given (overwrite replaces files, never a directory)."""
    from gs_mapping.output_files import OutputError, check_output

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a directory"):
            check_output(tmp_path / "d", overwrite=overwrite)
    assert (tmp_path / "d" / "keep.txt").read_text() == "x"


# ------------------------------------------------------------------------------------------------
# compressedDepth


def _vle(values) -> bytes:
    """RVL's variable-length code (Wilson 2017), written out: 3-bit nibbles low first, the high
    bit of a nibble set when more follow, eight nibbles per little-endian uint32, first nibble in
    the word's top bits."""
    nibbles = []
    for v in values:
        while True:
            nib, v = v & 7, v >> 3
            nibbles.append(nib | 8 if v else nib)
            if not v:
                break
    nibbles += [0] * (-len(nibbles) % 8)
    words = [sum(nibbles[i + k] << (28 - 4 * k) for k in range(8)) for i in range(0, len(nibbles), 8)]
    return struct.pack(f"<{len(words)}I", *words)


def _rvl_msg(cols: int, rows: int, body: bytes, encoding: str = "16UC1"):
    data = struct.pack("<iff", 0, 0.0, 0.0) + struct.pack("<II", cols, rows) + body
    return NS(format=f"{encoding}; compressedDepth rvl", data=np.frombuffer(data, np.uint8))


def test_rvl_image_of_the_largest_side_is_decoded():
    """An RVL image 16384 pixels wide (the largest side the decoder takes) is decoded; 16385 is
    refused as corrupt."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages import compressed_depth_to_numpy

    side = 16384
    body = _vle([side - 2, 2, 2 * 5, 2 * 3])  # zeros, then 5 and 8 (zig-zag deltas +5, +3)
    d = compressed_depth_to_numpy(_rvl_msg(side, 1, body))
    assert d.shape == (1, side) and d.dtype == np.uint16
    assert d[0, -2:].tolist() == [5, 8] and not d[0, :-2].any()
    with pytest.raises(MessageError, match="sides 1..16384"):
        compressed_depth_to_numpy(_rvl_msg(side + 1, 1, _vle([side + 1, 0])))


def test_rvl_code_longer_than_32_bits_is_refused_as_such():
    """An RVL value takes at most 11 nibbles (33 bits of payload); a 12-nibble code is refused as
    'longer than 32 bits', not read as a (huge) run."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages import compressed_depth_to_numpy

    assert len(_vle([1 << 33])) == 8  # 12 nibbles: two words
    with pytest.raises(MessageError, match="longer than 32 bits"):
        compressed_depth_to_numpy(_rvl_msg(4, 1, _vle([1 << 33, 0])))
    assert compressed_depth_to_numpy(_rvl_msg(4, 1, _vle([4, 0]))).tolist() == [[0, 0, 0, 0]]


def test_16uc1_depth_at_depth_max_is_kept_and_above_it_zeroed():
    """compressedDepth 16UC1: values above depth_max (in mm) are zeroed by the publisher; the
    value equal to depth_max * 1000 is kept."""
    from gs_mapping.messages import compressed_depth_to_numpy, numpy_to_compressed_depth

    d = np.array([[9999, 10000, 10001, 0]], np.uint16)
    back = compressed_depth_to_numpy(numpy_to_compressed_depth(d, depth_max=10.0))
    assert back.tolist() == [[9999, 10000, 0, 0]]


def test_32fc1_depth_at_depth_max_is_invalid():
    """compressedDepth 32FC1: only depths strictly below depth_max are quantised (the publisher's
    ``depth < depth_max``); depth_max itself comes back invalid (NaN), just below it finite."""
    from gs_mapping.messages import compressed_depth_to_metres, numpy_to_compressed_depth

    d = np.array([[5.0, 10.0, 9.9, 12.0]], np.float32)
    back = compressed_depth_to_metres(numpy_to_compressed_depth(d, depth_max=10.0))
    assert np.isnan(back[0, 1]) and np.isnan(back[0, 3])
    assert back[0, 0] == pytest.approx(5.0, rel=0.01) and back[0, 2] == pytest.approx(9.9, rel=0.01)


def test_32fc1_compressed_depth_without_its_header_is_refused():
    """A header-less PNG is read only as 16UC1 millimetres (some converters drop the header); a
    32FC1 one has no quantisation parameters to restore metres, so it is a MessageError, not
    inverse-depth codes read as millimetres."""
    from PIL import Image

    from gs_mapping.errors import MessageError
    from gs_mapping.messages import compressed_depth_to_numpy

    buf = io.BytesIO()
    Image.fromarray(np.array([[1000, 2000]], np.uint16)).save(buf, format="PNG")
    png = np.frombuffer(buf.getvalue(), np.uint8)
    assert compressed_depth_to_numpy(NS(format="16UC1; compressedDepth png", data=png)).tolist() == [
        [1000, 2000]
    ]
    with pytest.raises(MessageError):
        compressed_depth_to_numpy(NS(format="32FC1; compressedDepth png", data=png))


# ------------------------------------------------------------------------------------------------
# markers


def test_marker_with_identity_rotation_and_a_translation_is_moved():
    """A marker's pose is applied to its points: an identity rotation with a translation (RViz's
    usual way to place a marker) moves every point by it."""
    from gs_mapping.messages.markers import marker_to_points

    m = NS(
        ns="lanes",
        id=3,
        points=[NS(x=1.0, y=0.0, z=0.0), NS(x=0.0, y=2.0, z=0.5)],
        pose=NS(orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0), position=NS(x=10.0, y=-1.0, z=0.25)),
    )
    assert marker_to_points(m).tolist() == [[11.0, -1.0, 0.25], [10.0, 1.0, 0.75]]


def test_line_markers_leave_scale_y_zero_and_points_set_it():
    """RViz: a LINE_STRIP / LINE_LIST uses scale.x as the line width only (scale.y 0); a POINTS
    marker's points are scale.x by scale.y."""
    from gs_mapping.messages import line_list_marker, line_strip_marker, points_marker

    pts = np.zeros((2, 3))
    for make in (line_strip_marker, line_list_marker):
        m = make("a", 1, pts, width=0.3)
        assert (m.scale.x, m.scale.y) == (pytest.approx(0.3), 0.0)
    m = points_marker("a", 1, pts, size=0.2)
    assert (m.scale.x, m.scale.y) == (pytest.approx(0.2), pytest.approx(0.2))


def test_per_vertex_rgb_colours_take_the_markers_alpha():
    """Per-vertex colours given as RGB take the marker's alpha (a half-transparent lane stays
    half-transparent along its length)."""
    from gs_mapping.messages import line_strip_marker

    m = line_strip_marker("a", 1, np.zeros((2, 3)), rgba=(1, 0, 0, 0.25), colors=np.ones((2, 3)))
    assert [c.a for c in m.colors] == [pytest.approx(0.25)] * 2
    assert [c.r for c in m.colors] == [pytest.approx(1.0)] * 2


# ------------------------------------------------------------------------------------------------
# HD model input: resize keeps K consistent, skew included


def test_resized_intrinsics_are_the_pixel_centre_map_times_k_skew_included():
    """images_to_model resizes by (sx, sy) with pixel centres at integers, u' = (u + 0.5) sx − 0.5:
    the new K is that affine map times the old K, so a skew K[0, 1] scales by sx too."""
    pytest.importorskip("torch")
    from gsmap_hd.data import images_to_model

    K = np.array([[100.0, 3.0, 60.0], [0.0, 90.0, 30.0], [0.0, 0.0, 1.0]])
    imgs = np.zeros((1, 64, 128, 3), np.uint8)
    _, K2 = images_to_model(imgs, K[None], (32, 64))
    sx = sy = 0.5
    A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    assert np.allclose(K2[0].numpy(), A @ K, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# rectification


def _barrel_rectifier():
    from gs_mapping.rectify import Rectifier

    K = np.array([[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])
    return Rectifier(64, 48, K, "plumb_bob", np.array([0.25, 0.05, 0.0, 0.0, 0.0]))


def test_rectified_depth_is_zero_where_the_nearest_raw_pixel_is_past_the_right_border():
    """Depth is read from the nearest raw pixel and is 0 (invalid) where that pixel lies outside
    the raw image: a ray whose nearest column is the width itself reads no pixel (not the first
    pixel of the next row). Checked against the rule applied to the rectifier's sample positions."""
    r = _barrel_rectifier()
    us, vs = r.source
    ni, nj = np.rint(vs).astype(int), np.rint(us).astype(int)
    edge = (nj == r.width) & (ni >= 0) & (ni < r.height - 1)
    assert edge.any()  # the case is present in this camera
    raw = np.arange(1, 48 * 64 + 1, dtype=np.float32).reshape(48, 64)
    out = r.depth(raw)
    inside = (ni >= 0) & (ni < r.height) & (nj >= 0) & (nj < r.width)
    ref = np.where(inside, raw[np.clip(ni, 0, 47), np.clip(nj, 0, 63)], 0.0)
    assert np.array_equal(out, ref)
    assert not out[edge].any()


def test_rectified_colour_is_the_rounded_bilinear_read():
    """Colour is read bilinearly at the distorted position (clamped to the border) and rounded to
    the nearest integer, not truncated: compared with a numpy bilinear read at the rectifier's
    sample positions."""
    r = _barrel_rectifier()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    us, vs = r.source
    u, v = np.clip(us, 0, 63), np.clip(vs, 0, 47)
    j0, i0 = np.minimum(np.floor(u).astype(int), 62), np.minimum(np.floor(v).astype(int), 46)
    a, b = (u - j0)[..., None], (v - i0)[..., None]
    f = rgb.astype(np.float64)
    ref = (
        f[i0, j0] * (1 - a) * (1 - b)
        + f[i0, j0 + 1] * a * (1 - b)
        + f[i0 + 1, j0] * (1 - a) * b
        + f[i0 + 1, j0 + 1] * a * b
    )
    diff = np.abs(r.color(rgb).astype(np.float64) - np.rint(ref))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99


# ------------------------------------------------------------------------------------------------
# topic discovery


def test_rectified_is_decided_by_the_image_topics_own_name():
    """is_rectified looks at the image's own name (image_rect, image_rect_color, image_rect_raw),
    whatever the transport: a namespace that happens to contain 'rect' (``/direct_cam``,
    ``/rect_rig``) does not make image_raw rectified."""
    from gs_mapping.topics import is_rectified

    assert is_rectified("/cam/color/image_rect_color/compressed")
    assert is_rectified("/camera/depth/image_rect_raw")
    assert not is_rectified("/direct_cam/image_raw")
    assert not is_rectified("/rect_rig/left/image_raw/compressed")


def test_a_stereo_pair_without_a_colour_namespace_gives_the_left_camera():
    """Discovery prefers a colour/rgb namespace, then a left camera: ZED-style left and right
    ``image_rect_color`` streams (each with its camera_info) give the left one as colour, not an
    ambiguity."""
    from gs_mapping.topics import CAMERA_INFO, IMAGE, discover

    types = {
        "/zed/left/image_rect_color": IMAGE,
        "/zed/left/camera_info": CAMERA_INFO,
        "/zed/right/image_rect_color": IMAGE,
        "/zed/right/camera_info": CAMERA_INFO,
        "/zed/depth/depth_registered": IMAGE,
    }
    found = discover(types)
    assert found.color == "/zed/left/image_rect_color"
    assert found.camera_info == "/zed/left/camera_info"
    assert found.depth == "/zed/depth/depth_registered"


# ------------------------------------------------------------------------------------------------
# fleet merge: the id space's edges


def _vehicle_snapshot(map_id: int, local_ids):
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import encode_snapshot

    g = _gmap(len(local_ids), seed=map_id % 97)
    g.ids, g.ids_implicit = np.asarray(local_ids, np.uint64), False
    return encode_snapshot(to_qmap(g, QuantParams()), QuantParams(), map_id=map_id)[0]


def test_fleet_takes_the_last_vehicle_map_id_and_the_last_local_id():
    """docs: global id = map_id << 32 | local id, vehicle map ids 1..2**31 − 1 and local ids below
    2**32. The largest of each is merged (its global id is 2**63 − 1); map id 2**31 and local id
    2**32 are rejected."""
    from gs_map_share.merge import REJECTED, SNAPSHOT, FleetMerge
    from gs_map_share.quantize import QuantParams

    top_map, top_local = (1 << 31) - 1, (1 << 32) - 1
    fm = FleetMerge(QuantParams(), global_map_id=1)
    assert fm.offer(_vehicle_snapshot(top_map, [5, top_local])).status == SNAPSHOT
    assert int(fm.global_map.ids.max()) == (1 << 63) - 1
    assert fm.offer(_vehicle_snapshot(1 << 31, [5])).status == REJECTED
    assert fm.offer(_vehicle_snapshot(7, [5, 1 << 32])).status == REJECTED


# ------------------------------------------------------------------------------------------------
# TF: time going back


def _ts(parent, child, stamp_s, x=0.0):
    from gs_mapping.geometry import Transform, TransformStamped

    return TransformStamped(
        parent, child, int(stamp_s * 1e9), Transform(np.array([x, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    )


def test_a_sample_at_the_edge_of_the_cache_is_not_a_time_jump():
    """With a 10 s cache, a sample exactly 10 s older than the newest is one the cache keeps (it
    prunes only what is older): no time jump, both samples stay and a lookup between them
    interpolates."""
    from gs_mapping.tf import TFBuffer

    buf = TFBuffer(cache_time_s=10.0)
    buf.add(_ts("odom", "base_link", 20.0, x=2.0))
    buf.add(_ts("odom", "base_link", 10.0, x=1.0))
    assert buf.time_jumps == 0
    assert buf.lookup("odom", "base_link", int(15e9)).translation[0] == pytest.approx(1.5)


def test_time_going_back_clears_every_moving_transform_once():
    """As tf2_ros on a backward clock jump (a bag played in a loop): a moving transform older than
    the cache clears every moving edge, not only its own, and static ones stay. The other moving
    edge then says it has no sample since time went back, and its first new sample is no second
    jump."""
    from gs_mapping.errors import ExtrapolationError
    from gs_mapping.tf import TFBuffer

    buf = TFBuffer(cache_time_s=10.0)
    buf.add(_ts("base_link", "lidar", 0.0, x=0.5), static=True)
    for s in (100.0, 110.0, 120.0):
        buf.add(_ts("odom", "base_link", s, x=s))
        buf.add(_ts("base_link", "cam", s, x=0.1))
    buf.add(_ts("odom", "base_link", 1.0, x=1.0))
    assert buf.time_jumps == 1
    with pytest.raises(ExtrapolationError, match="no sample since time went back"):
        buf.lookup("base_link", "cam", int(1e9))
    buf.add(_ts("base_link", "cam", 1.0, x=0.2))
    assert buf.time_jumps == 1
    assert buf.lookup("odom", "cam", int(1e9)).translation[0] == pytest.approx(1.2)
    assert buf.lookup("base_link", "lidar", int(1e9)).translation[0] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------
# lanes


def test_lane_scores_are_rounded_to_the_nearest_step_of_1_over_255():
    """A lane's score travels as u8 score·255 rounded to the nearest (0.999 → 255, 0.5 → 128
    (127.5 to even), 0.3 → 76 (76.5 to even), 0.1 → 26), clamped to 0..255."""
    from gs_map_share.lanes import Lane, quantize_lanes

    scores = [0.999, 0.5, 0.3, 0.1, 1.7, -0.2]
    st = quantize_lanes([Lane(i, 0, s, np.zeros((2, 2))) for i, s in enumerate(scores)])
    assert [st.lanes[i][1] for i in range(len(scores))] == [255, 128, 76, 26, 255, 0]


def test_lane_coordinates_must_stay_below_2_to_the_40_steps():
    """A lane point is coded on the pos_step lattice with |coordinate| < 2**40 steps: 2**40 − 1
    steps is accepted, 2**40 an EncodeError."""
    from gs_map_share.errors import EncodeError
    from gs_map_share.lanes import Lane, quantize_lanes

    ok = quantize_lanes([Lane(1, 0, 0.5, np.array([[(1 << 40) - 1, 0.0]]))], step=1.0)
    assert ok.lanes[1][2].tolist() == [[(1 << 40) - 1, 0]]
    with pytest.raises(EncodeError, match="out-of-range"):
        quantize_lanes([Lane(1, 0, 0.5, np.array([[0.0, -float(1 << 40)]]))], step=1.0)


def test_a_short_piece_of_a_long_lane_is_not_matched_to_it():
    """assign_ids matches by the mean distance from each polyline's points to the other's, both
    ways: a 0.5 m element at the start of a 20 m lane is close to it one way (0 m) but the lane is
    ~9.7 m from it on average the other way, so the symmetric distance (~4.9 m) exceeds max_dist and
    the element gets a new id."""
    from gs_map_share.lanes import Lane, assign_ids

    long = np.stack([np.linspace(0.0, 20.0, 41), np.zeros(41)], axis=1)
    short = np.stack([np.linspace(0.0, 0.5, 2), np.zeros(2)], axis=1)
    d = np.linalg.norm(short[:, None] - long[None], axis=2)
    assert d.min(1).mean() == 0.0 and 0.5 * (d.min(1).mean() + d.min(0).mean()) > 1.0
    out, nxt = assign_ids([Lane(7, 0, 0.9, long)], [NS(cls=0, score=0.8, points=short)], next_id=20)
    assert [ln.id for ln in out] == [20] and nxt == 21
    out, _ = assign_ids([Lane(7, 0, 0.9, long)], [NS(cls=0, score=0.8, points=long + [0.0, 0.3])], 20)
    assert [ln.id for ln in out] == [7]


# ------------------------------------------------------------------------------------------------
# mapper: the cap on Gaussians


def test_cap_keeps_a_wide_flat_new_gaussian_over_a_small_round_one():
    """New Gaussians (no measured contribution yet) are ranked by opacity × the area of their two
    largest axes (what they can cover on screen): a flat 1 m × 1 m disc 1 cm thick outranks a 30 cm
    ball (area 0.09 m²), so a cap of one keeps the disc."""
    pytest.importorskip("torch")
    from gs_mapping.mapping.densify import enforce_cap
    from gs_mapping.mapping.params import TorchGaussians

    g = _gmap(2)
    g.log_scales = np.log(np.array([[1.0, 0.01, 1.0], [0.3, 0.3, 0.3]], np.float32))
    g.opacity_logits = np.zeros(2, np.float32)
    p = TorchGaussians.from_map(g)
    assert not np.isfinite(p.contrib).any()
    assert enforce_cap(p, 1) == 1
    assert np.allclose(np.exp(p.numpy("log_scales")), [[1.0, 0.01, 1.0]], rtol=1e-5)


def test_rvl_image_of_too_many_pixels_is_refused_before_it_is_expanded():
    """Sides within 16384 but 16384 x 16384 pixels in one zero run (a 28-byte message) is refused
    as corrupt, naming the bound; 8192 x 4096 (the most pixels taken) is decoded."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages import compressed_depth_to_numpy

    with pytest.raises(MessageError, match="at most 33554432 pixels"):
        compressed_depth_to_numpy(_rvl_msg(16384, 16384, _vle([16384 * 16384, 0])))
    d = compressed_depth_to_numpy(_rvl_msg(8192, 4096, _vle([8192 * 4096 - 1, 1, 2 * 7])))
    assert d.shape == (4096, 8192) and d[-1, -1] == 7 and np.count_nonzero(d) == 1
