"""Guards for behaviours a mutation-testing pass over the 3DGS file readers and writers and the scene
CLI found unguarded (tenth round): each test compares a reader or writer with an independent
reference (SPZ files laid out by hand from the byte layout in ``splat_formats/spz.py``'s docstring
and Niantic's reference reader's rules, PlayCanvas SOG / compressed PLY images and elements built
by hand from their published layouts and splat-transform's ``read-sog`` / ``read-ply`` formulas,
numpy re-computations, plyfile for PLY), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest

from gs_mapping.errors import MapError
from gs_mapping.splat_formats.spz import read_spz

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning")]

SQRT1_2 = np.float32(0.70710678118654752)


# ------------------------------------------------------------------------------------------------
# SPZ laid out by hand (the module docstring's byte layout)


def _spz_gzip(version: int, pos, alpha, col, scale, rot, sh=b"", deg: int = 0, fb: int = 12, flags: int = 0):
    """A version 1-3 SPZ: gzip of the 16-byte header and the arrays, each given as raw bytes."""
    n = len(alpha)
    head = struct.pack("<IIIBBBB", 0x5053474E, version, n, deg, fb, flags, 0)
    return gzip.compress(
        head + bytes(pos) + bytes(alpha) + bytes(col) + bytes(scale) + bytes(rot) + bytes(sh)
    )


def _rot_code(largest: int, comps) -> bytes:
    """A smallest-three u32: bits 30-31 the largest's index, then 10 bits (sign, 9-bit magnitude)
    per other component in x, y, z, w order, the first in the highest bits."""
    code = largest
    for sign, mag in comps:
        code = (code << 10) | (sign << 9) | mag
    return struct.pack("<I", code)


def test_spz_smallest_three_whose_three_exceed_one_rebuilds_a_zero_largest():
    """Niantic's reader rebuilds the largest component as sqrt(max(0, 1 − Σ others²)): three stored
    magnitudes of 511 (each sqrt(1/2), Σ² = 1.5) give a largest of 0, and the quaternion
    (x, y, z, 0) normalised, not a NaN or a refusal."""
    n = 2
    pos = bytes(9 * n)
    rot = _rot_code(3, [(0, 511), (0, 511), (1, 511)]) + _rot_code(0, [(0, 0), (0, 0), (0, 0)])
    data = _spz_gzip(3, pos, [128] * n, bytes(3 * n), bytes(3 * n), rot)
    g = read_spz(data)
    v = float(SQRT1_2)
    want = np.array([[v, v, -v, 0.0], [1.0, 0.0, 0.0, 0.0]])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(g.quats, want, atol=1e-6)


def _scene(means, quats=None, deg: int = 0, sh_rest=None):
    """A GaussianMap of unit-free test values: scales e^-3, opacity logit 0, grey DC."""
    from gs_mapping.gaussians import GaussianMap

    means = np.asarray(means, np.float32).reshape(-1, 3)
    n = len(means)
    quats = np.tile(np.float32([0, 0, 0, 1]), (n, 1)) if quats is None else np.asarray(quats, np.float32)
    sh = np.zeros((n, (deg + 1) ** 2, 3), np.float32)
    if sh_rest is not None:
        sh[:, 1:] = sh_rest
    return GaussianMap(
        sh_degree=deg,
        means=means,
        quats=quats,
        log_scales=np.full((n, 3), -3.0, np.float32),
        opacity_logits=np.zeros(n, np.float32),
        sh=sh,
    )


def _legacy_arrays(data: bytes):
    """The header fields and the raw bytes after the 16-byte header of a gzip SPZ."""
    raw = gzip.decompress(data)
    return struct.unpack_from("<IIIBBBB", raw), raw[16:]


def _i24(b: bytes) -> np.ndarray:
    a = np.frombuffer(b, np.uint8).reshape(-1, 3).astype(np.int64)
    v = a[:, 0] | (a[:, 1] << 8) | (a[:, 2] << 16)
    return np.where(v >= 1 << 23, v - (1 << 24), v)


def test_spz_writes_23_fractional_bits_the_documented_maximum():
    """Fractional bits 0..23 are writable: 23 bits put x · 2**23 in the 24-bit field (positions
    below 1 unit), laid out by hand."""
    from gs_mapping.splat_formats.spz import write_spz

    means = [[0.5, -0.25, 0.0], [0.999, -0.999, 2.0**-23]]
    head, body = _legacy_arrays(write_spz(_scene(means), 2, 23))
    assert head[4] == 23
    want = np.round(np.float64(np.float32(means)) * (1 << 23)).astype(np.int64).reshape(-1)
    assert _i24(body[: 9 * 2]).tolist() == want.tolist()


def test_spz_position_of_exactly_2_to_the_23_steps_is_refused_not_wrapped():
    """With 12 fractional bits a position of 2048 is 2**23 steps, beyond the signed 24-bit field's
    2**23 − 1 (it would read back as −2048): one MapError, while one step less on either side is
    written as that many steps."""
    from gs_mapping.splat_formats.spz import write_spz

    with pytest.raises(MapError, match="wrap"):
        write_spz(_scene([[2048.0, 0, 0]]), 2, 12)
    for sign in (1, -1):
        _, body = _legacy_arrays(write_spz(_scene([[sign * (2048.0 - 2.0**-12), 0, 0]]), 2, 12))
        assert _i24(body[:9]).tolist() == [sign * ((1 << 23) - 1), 0, 0]


def test_spz_fractional_bits_drop_to_11_at_exactly_2048_units():
    """The writer keeps 12 fractional bits while every position is below 2**23 steps; at exactly
    2048 units (2**23 steps) it takes 11 bits (2**22 steps), and the file reads back exactly."""
    from gs_mapping.splat_formats.spz import write_spz

    g = _scene([[2048.0, -1.0, 0.5]])
    data = write_spz(g, 2)
    head, body = _legacy_arrays(data)
    assert head[4] == 11
    assert _i24(body[:9]).tolist() == [1 << 22, -(1 << 11), 1 << 10]
    assert np.array_equal(read_spz(data).means, g.means)


@pytest.mark.parametrize(
    ("quat", "want"),
    [((1, 0, 0, 0), [255, 128, 128]), ((0, -1, 0, 0), [128, 0, 128]), ((0.6, 0, 0, -0.8), [51, 128, 128])],
)
def test_spz_v2_rotation_bytes_keep_w_non_negative_only_when_w_is_negative(quat, want):
    """Version 2 stores x, y, z as round(q · 127.5 + 127.5) of the quaternion with w ≥ 0 (Niantic's
    writer negates it only where w < 0): a rotation with w = 0 is stored as given."""
    from gs_mapping.splat_formats.spz import write_spz

    _, body = _legacy_arrays(write_spz(_scene([[0, 0, 0]], [quat]), 2))
    assert list(body[9 + 1 + 3 + 3 : 9 + 1 + 3 + 3 + 3]) == want


def _sh_bytes_by_hand(c: np.ndarray, bucket: int) -> np.ndarray:
    """round(c · 128) + 128 (half away from zero), to the centre of its bucket ((q + b/2) // b · b,
    C integer division of a non-negative value), clipped to a byte."""
    c64 = np.float64(np.float32(c)) * 128
    q = np.copysign(np.floor(np.abs(c64) + 0.5), c64).astype(np.int64) + 128
    q = np.clip(q, -bucket // 2, None)  # (a negative sum truncates to 0 in C)
    return np.clip((q + bucket // 2) // bucket * bucket, 0, 255)


def test_spz_sh_buckets_of_8_for_degree_1_and_16_for_degrees_2_and_3():
    """Every higher-SH coefficient byte of a degree-3 scene, laid out as the docstring says
    (per point, coefficient-major, colour inner) and computed by hand: degree 1 (coefficients
    1-3) in buckets of 8, degrees 2-3 (coefficients 4-15) in buckets of 16."""
    from gs_mapping.splat_formats.spz import write_spz

    rng = np.random.default_rng(10)
    n = 50
    rest = rng.uniform(-1.1, 1.1, (n, 15, 3)).astype(np.float32)
    rest[0, :, :] = np.linspace(-1, 1, 45, dtype=np.float32).reshape(15, 3)
    _, body = _legacy_arrays(write_spz(_scene(np.zeros((n, 3)), deg=3, sh_rest=rest), 3))
    sh = np.frombuffer(body[n * (9 + 1 + 3 + 3 + 4) :], np.uint8).reshape(n, 15, 3)
    assert np.array_equal(sh[:, :3], _sh_bytes_by_hand(rest[:, :3], 8))
    assert np.array_equal(sh[:, 3:], _sh_bytes_by_hand(rest[:, 3:], 16))


# ------------------------------------------------------------------------------------------------
# PlayCanvas SOG built by hand (sog.py's docstring; splat-transform's read-sog formulas)


def _webp_file(path, pixels) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(pixels, np.uint8), "RGBA").save(
        path, "WEBP", lossless=True, exact=True
    )  # (RGB kept under alpha 0)


def _sog_dir(tmp_path, images: dict, meta: dict, name: str = "s"):
    """A SOG directory: each image (h, w, 4) uint8 written as lossless WebP, and meta.json."""
    import json

    d = tmp_path / name
    d.mkdir()
    for fname, px in images.items():
        _webp_file(d / fname, px)
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def _v2_meta(count: int, mins=(0.0, 0.0, 0.0), maxs=(1.0, 1.0, 1.0), shn=None) -> dict:
    meta = {
        "version": 2,
        "count": count,
        "means": {"mins": list(mins), "maxs": list(maxs), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": [float(i) / 32 - 6 for i in range(256)], "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": [float(i) / 128 - 1 for i in range(256)], "files": ["sh0.webp"]},
    }
    if shn is not None:
        meta["shN"] = shn
    return meta


def _uniform_images(h: int, w: int) -> dict:
    """Every v2 image of one valid Gaussian per pixel: mid positions, identity rotation (tag 252:
    w largest, the others 0 ↦ byte 127.5, stored 128), mid codebook entries, alpha 128."""
    full = lambda v: np.broadcast_to(np.uint8(v), (h, w, 4)).copy()  # noqa: E731
    return {
        "means_l.webp": full([0, 0, 0, 255]),
        "means_u.webp": full([128, 128, 128, 255]),
        "quats.webp": full([128, 128, 128, 252]),
        "scales.webp": full([100, 100, 100, 255]),
        "sh0.webp": full([128, 128, 128, 128]),
    }


def test_sog_v2_decoded_by_splat_transforms_formulas(tmp_path):
    """Six Gaussians in images of 4×2 pixels, every field computed with splat-transform's
    read-sog: positions invLog(mins + ((maxs − mins) or 1) · (lo | hi << 8) / 65535) (an axis with
    mins = maxs spans 1), rotations rebuilt from the tag (252 + index of the largest of w, x, y,
    z; any other tag the identity), codebook scales and colours, opacity logit(clamp(a / 255,
    1e-6, 1 − 1e-6))."""
    from gs_mapping.splat_formats import load_splats

    rng = np.random.default_rng(3)
    n, h, w = 6, 2, 4
    images = _uniform_images(h, w)
    lo = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    hi = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    lo[..., 3] = hi[..., 3] = 255
    images["means_l.webp"], images["means_u.webp"] = lo, hi
    q = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    q.reshape(-1, 4)[:, 3] = [252, 253, 254, 255, 7, 251, 252, 252]
    images["quats.webp"] = q
    c0 = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    c0.reshape(-1, 4)[:3, 3] = [0, 255, 1]
    images["sh0.webp"] = c0
    sc = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    images["scales.webp"] = sc
    mins, maxs = (-2.0, 0.5, 1.0), (3.0, 0.5, 4.0)
    meta = _v2_meta(n, mins, maxs)
    g = load_splats(_sog_dir(tmp_path, images, meta) / "meta.json")

    flat = lambda a: a.reshape(-1, 4)[:n].astype(np.float64)  # noqa: E731
    t = (flat(lo)[:, :3] + 256 * flat(hi)[:, :3]) / 65535
    mn, mx = np.array(mins), np.array(maxs)
    v = mn + np.where(mx - mn == 0, 1.0, mx - mn) * t
    assert np.allclose(g.means, np.sign(v) * (np.exp(np.abs(v)) - 1), rtol=1e-6, atol=1e-6)

    want_q = []
    for px in flat(q):
        tag = int(px[3]) - 252
        if not 0 <= tag <= 3:
            want_q.append([0.0, 0.0, 0.0, 1.0])  # identity, (x, y, z, w)
            continue
        comps = [0.0] * 4
        for j, slot in enumerate([s for s in range(4) if s != tag]):
            comps[slot] = (px[j] / 255 * 2 - 1) / np.sqrt(2)
        comps[tag] = np.sqrt(max(0.0, 1 - sum(c * c for c in comps)))
        wq, xq, yq, zq = comps
        want_q.append(np.array([xq, yq, zq, wq]) / np.linalg.norm(comps))
    assert np.allclose(g.quats, np.array(want_q), atol=1e-6)

    book_s = np.array(meta["scales"]["codebook"])
    book_c = np.array(meta["sh0"]["codebook"])
    assert np.allclose(g.log_scales, book_s[flat(sc)[:, :3].astype(int)], atol=1e-6)
    assert np.allclose(g.sh[:, 0], book_c[flat(c0)[:, :3].astype(int)], atol=1e-6)
    a = np.clip(flat(c0)[:, 3] / 255, 1e-6, 1 - 1e-6)
    assert np.allclose(g.opacity_logits, np.log(a / (1 - a)), atol=1e-4)


def _shn_images(n_side: int, cen_rows: int, labels) -> dict:
    """The v2 images of n_side² Gaussians plus a 1-band palette (192 pixels a row: entry e's three
    coefficients at row e // 64, columns (e % 64) · 3 + j, RGB the codebook index of each channel;
    entry e's values here: e mod 256 for all), labels R + 256 · G."""
    images = _uniform_images(n_side, n_side)
    cen = np.zeros((cen_rows, 192, 4), np.uint8)
    e = np.arange(cen_rows * 64)
    cen.reshape(cen_rows, 64, 3, 4)[..., :3] = (e % 256).reshape(cen_rows, 64, 1, 1).astype(np.uint8)
    cen[..., 3] = 255
    lab = np.zeros((n_side * n_side, 4), np.uint8)
    labels = np.asarray(labels)
    lab[: len(labels), 0], lab[: len(labels), 1], lab[:, 3] = labels & 255, labels >> 8, 255
    images["shN_centroids.webp"] = cen
    images["shN_labels.webp"] = lab.reshape(n_side, n_side, 4)
    return images


def _shn(count: int) -> dict:
    return {
        "count": count,
        "bands": 1,
        "codebook": [float(i) / 256 for i in range(256)],
        "files": ["shN_centroids.webp", "shN_labels.webp"],
    }


def test_sog_shn_labels_use_both_bytes_and_stop_at_the_palette(tmp_path):
    """Labels are R + 256·G: label 300 (44, 1) picks palette entry 300 (row 4, column 44·3);
    labels up to count − 1 are read, a label equal to shN.count is refused (ours: a lying label),
    and a count beyond the rows of the centroid image is refused, naming both (it limited the
    palette to those rows, and said so only for a label beyond them)."""
    from gs_mapping.splat_formats import load_splats

    labels = [300, 0, 319, 65, 5, 6, 7, 8, 9]
    g = load_splats(_sog_dir(tmp_path, _shn_images(3, 5, labels), _v2_meta(9, shn=_shn(320))))
    assert g.sh_degree == 1
    want = (np.array(labels) % 256) / 256
    assert np.allclose(g.sh[:, 1:], want[:, None, None], atol=1e-7)

    bad = [320] + labels[1:]
    with pytest.raises(MapError, match="label 320 of Gaussian 0 is beyond the palette's 320"):
        load_splats(_sog_dir(tmp_path, _shn_images(3, 5, bad), _v2_meta(9, shn=_shn(320)), "b"))
    # shN.count 400 but 5 rows (320 entries), whatever the labels
    with pytest.raises(MapError, match="is 192×5: 320 palette entries for shN.count 400"):
        load_splats(_sog_dir(tmp_path, _shn_images(3, 5, labels), _v2_meta(9, shn=_shn(400)), "c"))


def test_sog_image_pixel_bound_is_twice_the_count_and_a_megapixel_inclusive(tmp_path):
    """1024 Gaussians: an image may hold up to 2 · 1024 + 2**20 = 1024 × 1026 pixels (read), one
    pixel more (1025 × 1025) is refused before decoding."""
    from gs_mapping.splat_formats import load_splats

    images = _uniform_images(32, 32)
    images["means_u.webp"] = np.broadcast_to(np.uint8([128, 128, 128, 255]), (1026, 1024, 4))
    assert len(load_splats(_sog_dir(tmp_path, images, _v2_meta(1024)))) == 1024
    images["means_u.webp"] = np.broadcast_to(np.uint8([128, 128, 128, 255]), (1025, 1025, 4))
    with pytest.raises(MapError, match="1025×1025 for 1024 Gaussians"):
        load_splats(_sog_dir(tmp_path, images, _v2_meta(1024), "b"))


def test_sog_count_beyond_2_to_the_26_is_refused_by_its_range(tmp_path):
    from gs_mapping.splat_formats import load_splats

    d = _sog_dir(tmp_path, _uniform_images(2, 2), _v2_meta((1 << 26) + 1))
    with pytest.raises(MapError, match="out of range"):
        load_splats(d)


def test_sog_file_names_with_a_backslash_are_refused_as_invalid(tmp_path):
    """A file name in meta.json is a bare name: one holding a backslash (a Windows path) is refused
    as invalid, as one holding a slash."""
    from gs_mapping.splat_formats import load_splats

    meta = _v2_meta(4)
    meta["quats"]["files"] = ["sub\\quats.webp"]
    with pytest.raises(MapError, match="invalid file"):
        load_splats(_sog_dir(tmp_path, _uniform_images(2, 2), meta))


def _sog_zip(path, members: dict) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.mark.parametrize("layout", ["two folders", "nested folder"])
def test_sog_zip_meta_json_only_at_the_top_or_in_one_folder(tmp_path, layout):
    """A .sog zip's files sit at its top or in its one folder: two folders each with a meta.json,
    or a folder two levels deep, are "missing" (not read from the first or the deep one)."""

    from gs_mapping.splat_formats import load_splats

    d = _sog_dir(tmp_path, _uniform_images(2, 2), _v2_meta(4))
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    prefixes = ["a/", "b/"] if layout == "two folders" else ["a/b/"]
    members = {pre + name: data for pre in prefixes for name, data in files.items()}
    _sog_zip(tmp_path / "x.sog", members)
    with pytest.raises(MapError, match="missing"):
        load_splats(tmp_path / "x.sog")
    _sog_zip(tmp_path / "ok.sog", {"a/" + k: v for k, v in files.items()})  # the one folder: read
    assert len(load_splats(tmp_path / "ok.sog")) == 4


# ------------------------------------------------------------------------------------------------
# PlayCanvas compressed PLY written with plyfile (splat-transform's decompress-ply formulas)


def _cply(path, n: int, rng, chunks: int | None = None, colour_bounds: bool = True, sh_rows=None):
    """A compressed PLY of n random packed Gaussians and random chunk bounds, plus a degree-1 sh
    element (9 uchar f_rest_*, bytes 0 and 255 included): the arrays, for the expected values."""
    plyfile = pytest.importorskip("plyfile")  # (not in the numpy-1.26 venv)

    chunks = (n + 255) // 256 if chunks is None else chunks
    names = [f"{m}_{a}" for m in ("min", "max") for a in "xyz"]
    names += [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    if colour_bounds:
        names += [f"{m}_{a}" for m in ("min", "max") for a in "rgb"]
    ch = np.zeros(chunks, [(k, "<f4") for k in names])
    for k in names:
        ch[k] = rng.uniform(-3, -1, chunks) if k.startswith("min") else rng.uniform(1, 3, chunks)
    packed = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
    vx = np.zeros(n, [(k, "<u4") for k in packed])
    for k in packed:
        vx[k] = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    rows = n if sh_rows is None else sh_rows
    sh = np.zeros(rows, [(f"f_rest_{i}", "u1") for i in range(9)])
    for i in range(9):
        sh[f"f_rest_{i}"] = rng.integers(0, 256, rows)
    if rows:
        sh["f_rest_0"][0], sh["f_rest_4"][0] = 0, 255
    els = [
        plyfile.PlyElement.describe(ch, "chunk"),
        plyfile.PlyElement.describe(vx, "vertex"),
        plyfile.PlyElement.describe(sh, "sh"),
    ]
    plyfile.PlyData(els).write(str(path))
    return ch, vx, sh


def test_compressed_ply_decoded_by_splat_transforms_formulas(tmp_path):
    """300 Gaussians in 2 chunks, each field recomputed as splat-transform's decompress-ply does:
    lerp of the 11-10-11 fractions between the chunk's bounds, smallest three (2-bit index of the
    largest of w, x, y, z; 10-bit (v − 0.5)·√2), colour 8-8-8 (high bytes first) between the colour
    bounds, opacity −ln(1/alpha − 1) of the low byte, SH byte 0 → −4, 255 → +4, else ((b + 0.5)/256 − 0.5)·8, f_rest channel-major."""
    from gs_mapping.gaussians import SH_C0
    from gs_mapping.splat_formats import load_splats

    rng = np.random.default_rng(11)
    n = 300
    ch, vx, sh = _cply(tmp_path / "c.compressed.ply", n, rng)
    g = load_splats(tmp_path / "c.compressed.ply")
    ci = np.arange(n) // 256

    def un(v, shift, bits):
        return ((v.astype(np.int64) >> shift) & ((1 << bits) - 1)) / ((1 << bits) - 1)

    def lerp(name_lo, name_hi, t):
        lo, hi = ch[name_lo].astype(np.float64)[ci], ch[name_hi].astype(np.float64)[ci]
        return lo * (1 - t) + hi * t

    pp, ps, pr, pc = vx["packed_position"], vx["packed_scale"], vx["packed_rotation"], vx["packed_color"]
    for k, (a, shift, bits) in enumerate([("x", 21, 11), ("y", 11, 10), ("z", 0, 11)]):
        assert np.allclose(g.means[:, k], lerp(f"min_{a}", f"max_{a}", un(pp, shift, bits)), atol=1e-5)
        want = lerp(f"min_scale_{a}", f"max_scale_{a}", un(ps, shift, bits))
        assert np.allclose(g.log_scales[:, k], want, atol=1e-5)
    abc = np.stack([(un(pr, s, 10) - 0.5) * np.sqrt(2) for s in (20, 10, 0)], 1)
    m = np.sqrt(np.maximum(0, 1 - (abc**2).sum(1)))
    which = pr.astype(np.int64) >> 30
    wxyz = np.zeros((n, 4))
    for i in range(n):
        others = [s for s in range(4) if s != which[i]]
        wxyz[i, others] = abc[i]
        wxyz[i, which[i]] = m[i]
    xyzw = wxyz[:, [1, 2, 3, 0]] / np.linalg.norm(wxyz, axis=1, keepdims=True)
    assert np.allclose(np.abs((g.quats * xyzw).sum(1)), 1, atol=1e-6)
    rgb = np.stack(
        [lerp(f"min_{a}", f"max_{a}", un(pc, s, 8)) for a, s in zip("rgb", (24, 16, 8), strict=True)], 1
    )
    assert np.allclose(g.sh[:, 0], (rgb - 0.5) / SH_C0, atol=1e-5)
    alpha = un(pc, 0, 8)
    with np.errstate(divide="ignore"):
        op = -np.log(1 / alpha - 1)
    fin = np.isfinite(op)
    assert np.allclose(g.opacity_logits[fin], op[fin], atol=1e-5)
    b = np.stack([sh[f"f_rest_{i}"].astype(np.float64) for i in range(9)], 1)
    nrm = np.where(b == 0, 0.0, np.where(b == 255, 1.0, (b + 0.5) / 256))
    rest = ((nrm - 0.5) * 8).reshape(n, 3, 3).transpose(0, 2, 1)  # (point, coefficient, channel)
    assert np.allclose(g.sh[:, 1:], rest, atol=1e-6)
    assert g.sh[0, 1, 0] == -4.0 and g.sh[0, 2, 1] == 4.0


@pytest.mark.parametrize("partial", [False, True])
def test_compressed_ply_without_all_colour_bounds_reads_colour_itself(tmp_path, partial):
    """Without the six min_r..max_b the 8-bit colour is the colour itself (no lerp); a chunk with
    only some of them (min_r, min_g, min_b) is read the same way, not a KeyError."""
    plyfile = pytest.importorskip("plyfile")  # (not in the numpy-1.26 venv)

    from gs_mapping.gaussians import SH_C0
    from gs_mapping.splat_formats import load_splats

    path = tmp_path / "c.compressed.ply"
    ch, vx, sh = _cply(path, 10, np.random.default_rng(2), colour_bounds=False)
    if partial:
        extra = np.zeros(len(ch), ch.dtype.descr + [(f"min_{a}", "<f4") for a in "rgb"])
        for k in ch.dtype.names:
            extra[k] = ch[k]
        els = [
            plyfile.PlyElement.describe(a, name) for a, name in ((extra, "chunk"), (vx, "vertex"), (sh, "sh"))
        ]
        plyfile.PlyData(els).write(str(path))
    g = load_splats(path)
    pc = vx["packed_color"].astype(np.int64)
    rgb = np.stack([((pc >> s) & 255) / 255 for s in (24, 16, 8)], 1)
    assert np.allclose(g.sh[:, 0], (rgb - 0.5) / SH_C0, atol=1e-5)


def test_compressed_ply_with_too_few_chunks_or_sh_rows_is_one_map_error(tmp_path):
    """One chunk row per 256 Gaussians (rounded up): 257 Gaussians in one chunk are refused; an sh
    element with another row count than the vertices is refused (splat-transform does not take
    either as a compressed PLY)."""
    from gs_mapping.splat_formats import load_splats

    _cply(tmp_path / "a.compressed.ply", 257, np.random.default_rng(1), chunks=1)
    with pytest.raises(MapError, match="1 chunk rows for 257 Gaussians"):
        load_splats(tmp_path / "a.compressed.ply")
    _cply(tmp_path / "b.compressed.ply", 10, np.random.default_rng(1), sh_rows=9)
    with pytest.raises(MapError, match=r"9 properties × 9 rows"):
        load_splats(tmp_path / "b.compressed.ply")


# ------------------------------------------------------------------------------------------------
# load_splats / save_splats options


def test_save_splats_writes_the_spz_version_asked_for(tmp_path):
    """save_splats' spz_version goes into the file: version 2 is a gzip stream whose header says 2,
    version 3 says 3, version 4 is the uncompressed NGSP header."""
    from gs_mapping.splat_formats import save_splats

    g = _scene([[0.0, 1.0, 2.0]])
    for v in (2, 3):
        save_splats(g, tmp_path / f"v{v}.spz", spz_version=v)
        assert _legacy_arrays((tmp_path / f"v{v}.spz").read_bytes())[0][1] == v
    save_splats(g, tmp_path / "v4.spz", spz_version=4)
    assert struct.unpack_from("<II", (tmp_path / "v4.spz").read_bytes()) == (0x5053474E, 4)


def test_load_splats_sets_the_tile_size_it_is_given(tmp_path):
    from gs_mapping.splat_formats import load_splats, save_splats

    save_splats(_scene([[0.0, 1.0, 2.0]]), tmp_path / "a.spz")
    assert load_splats(tmp_path / "a.spz", tile_size=7.5).tile_size == 7.5


# ------------------------------------------------------------------------------------------------
# SPZ reading: hand-built files


def test_spz_version_1_float16_positions_are_read():
    """Version 1 stores positions as 3 × float16 (the rest as version 2): read, not refused."""
    pos = np.array([[1.5, -2.25, 1024.0], [0.0, 0.125, -7.0]], "<f2")
    rot = bytes([128, 128, 128] * 2)
    data = _spz_gzip(1, pos.tobytes(), [128, 128], bytes(6), bytes(6), rot)
    g = read_spz(data)
    assert np.array_equal(g.means, pos.astype(np.float32))


def test_spz_fractional_bits_beyond_23_are_refused():
    """Fractional bits are 0..23 (a 24-bit field holds no more): a header saying 24 is refused."""
    data = _spz_gzip(2, bytes(9), [128], bytes(3), bytes(3), bytes([128, 128, 128]), fb=24)
    with pytest.raises(MapError, match="fractional bits 24"):
        read_spz(data)
    assert len(read_spz(_spz_gzip(2, bytes(9), [128], bytes(3), bytes(3), bytes([128] * 3), fb=23))) == 1


def _ngsp(streams, n: int = 1, toc: int = 32, deg: int = 0, extra: bytes = b"", sizes=None) -> bytes:
    """A version 4 SPZ by hand: 32-byte header, the table of (compressed, raw) u64 pairs at toc,
    each stream a zstd frame."""
    from gs_mapping.splat_formats.spz import zstd

    frames = [zstd.compress(s) for s in streams]
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, deg, 12, 0, len(frames), toc)
    sizes = sizes or [len(f) for f in frames]
    table = b"".join(struct.pack("<QQ", c, len(s)) for c, s in zip(sizes, streams, strict=True))
    return head + b"\0" * (toc - 32) + table + b"".join(frames) + extra


_ONE = [bytes(9), bytes([128]), bytes(3), bytes(3), struct.pack("<I", 3 << 30)]


def test_spz_v4_by_hand_is_read_and_its_framing_rules_hold():
    """A hand-built version 4 file of one Gaussian reads; a table of contents inside the header, a
    stream claiming one byte more than the file holds, and a byte after the last stream are each
    one MapError naming the fault."""
    g = read_spz(_ngsp(_ONE))
    assert len(g) == 1 and np.array_equal(g.quats, [[0, 0, 0, 1]])
    good = _ngsp(_ONE)
    with pytest.raises(MapError, match="table of contents at 16"):
        read_spz(good[:16] + struct.pack("<I", 16) + good[20:])
    sizes = [struct.unpack_from("<Q", good, 32 + 16 * i)[0] for i in range(5)]
    with pytest.raises(MapError, match="stream 4 runs past the end"):
        read_spz(_ngsp(_ONE, sizes=sizes[:4] + [sizes[4] + 1]))
    with pytest.raises(MapError, match="1 unexpected bytes after"):
        read_spz(good + b"\0")


def test_spz_point_count_beyond_2_to_the_26_is_refused_by_the_limit():
    """At most 2**26 points, whatever the file size allows (here 1024 × 400 kB / 6 > 2**26)."""
    rng = np.random.default_rng(0)
    head = struct.pack("<IIIBBBB", 0x5053474E, 2, (1 << 26) + 1, 0, 12, 0, 0)
    data = gzip.compress(head + rng.integers(0, 256, 400_000, dtype=np.uint8).tobytes())
    with pytest.raises(MapError, match=f"point count {(1 << 26) + 1} impossible"):
        read_spz(data)


def test_spz_gzip_trailer_is_inflated_up_to_2_to_the_26_bytes():
    """What follows the arrays of a gzip SPZ (extensions) is inflated and discarded up to
    MAX_TRAILER = 2**26 bytes: exactly that many is read, one more is refused."""
    from gs_mapping.splat_formats.spz import MAX_TRAILER

    assert MAX_TRAILER == 1 << 26
    head = struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 0, 0)
    arrays = bytes(9) + bytes([128]) + bytes(3) + bytes(3) + bytes([128, 128, 128])
    for extra, ok in ((MAX_TRAILER - 1024, True), (MAX_TRAILER + 1, False)):
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        data = c.compress(head + arrays) + c.compress(bytes(extra)) + c.flush()
        if ok:
            assert len(read_spz(data)) == 1
        else:
            with pytest.raises(MapError, match="bytes after the SPZ arrays"):
                read_spz(data)


# ------------------------------------------------------------------------------------------------
# the scene CLI


def _cli(args, capsys):
    from gs_mapping.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def ply_scene(tmp_path):
    """A small degree-1 scene (a trainer's PLY, no ids), as plyfile reads it back."""
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    g = synthetic_map(300, 1, seed=5)
    g = _scene(g.means, g.quats, 1, g.sh[:, 1:])  # implicit ids
    save_ply(g, tmp_path / "a.ply")
    return tmp_path / "a.ply"


def test_upper_case_extensions_pick_the_same_formats(tmp_path, capsys, ply_scene):
    """File names are matched without regard to case: convert to A.GSD writes a snapshot (its
    magic, not a scene), which decode reads back; export to B.SPZ writes SPZ; apply writes OUT.PLY."""
    rc, _, err = _cli(["convert", ply_scene, tmp_path / "A.GSD"], capsys)
    assert rc == 0, err
    gsd = (tmp_path / "A.GSD").read_bytes()
    assert not gsd.startswith((b"ply", b"NGSP", b"\x1f\x8b"))
    rc, _, err = _cli(["export", ply_scene, tmp_path / "B.SPZ"], capsys)
    assert rc == 0, err
    assert (tmp_path / "B.SPZ").read_bytes()[:4] == b"NGSP"
    rc, _, err = _cli(["convert", tmp_path / "A.GSD", tmp_path / "c.ply"], capsys)
    assert rc == 0, err
    rc, _, err = _cli(["apply", tmp_path / "A.GSD", tmp_path / "OUT.PLY"], capsys)
    assert rc == 0, err
    assert (tmp_path / "OUT.PLY").read_bytes().startswith(b"ply\n")


def test_export_reports_bytes_per_gaussian_of_a_one_gaussian_scene(tmp_path, capsys):
    import json

    from gs_mapping.ply import save_ply

    save_ply(_scene([[0.0, 1.0, 2.0]]), tmp_path / "one.ply")
    rc, out, err = _cli(["export", tmp_path / "one.ply", tmp_path / "one.spz"], capsys)
    assert rc == 0, err
    info = json.loads(out)
    assert info["gaussians"] == 1 and info["bytes"] == (tmp_path / "one.spz").stat().st_size
    assert info["bytes_per_gaussian"] == info["bytes"]


@pytest.mark.parametrize("cmd", ["export", "convert"])
def test_spz_version_option_is_written(tmp_path, capsys, ply_scene, cmd):
    """--spz-version 2 writes a version 2 file (gzip, header version 2)."""
    rc, _, err = _cli([cmd, ply_scene, tmp_path / "v2.spz", "--spz-version", "2"], capsys)
    assert rc == 0, err
    assert _legacy_arrays((tmp_path / "v2.spz").read_bytes())[0][1] == 2


def test_encode_levels_are_1_to_32(tmp_path, capsys, ply_scene):
    rc, _, err = _cli(["encode", ply_scene, tmp_path / "a.gsd", "--levels", "33"], capsys)
    assert rc == 2 and "--levels must be 1..32, got 33" in err
    assert not (tmp_path / "a.gsd").exists()


def test_diff_sequence_and_map_id_bounds(tmp_path, capsys, ply_scene):
    """The container holds uint64 sequence numbers and map ids: --base-seq up to 2**64 − 2 (its
    delta is base + 1), --map-id up to 2**64 − 1; one more is refused."""
    out = tmp_path / "d.gsd"
    rc, _, err = _cli(["diff", ply_scene, ply_scene, out, "--base-seq", (1 << 64) - 1], capsys)
    assert rc == 2 and "--base-seq must be" in err
    rc, _, err = _cli(["diff", ply_scene, ply_scene, out, "--map-id", 1 << 64], capsys)
    assert rc == 2 and "--map-id must be" in err
    assert not out.exists()
    rc, _, err = _cli(["diff", ply_scene, ply_scene, out, "--base-seq", (1 << 64) - 2], capsys)
    assert rc == 0, err


def test_apply_refuses_a_delta_as_base_and_a_snapshot_as_delta(tmp_path, capsys, ply_scene):
    t = lambda n: tmp_path / n  # noqa: E731
    assert _cli(["encode", ply_scene, t("a.gsd")], capsys)[0] == 0
    assert _cli(["diff", ply_scene, ply_scene, t("d.gsd")], capsys)[0] == 0
    rc, _, err = _cli(["apply", t("d.gsd"), t("x.ply")], capsys)
    assert rc == 2 and str(t("d.gsd")) in err
    rc, _, err = _cli(["apply", t("a.gsd"), t("a.gsd"), t("x.ply")], capsys)
    assert rc == 2 and "is a snapshot, expected a delta" in err
    assert not t("x.ply").exists()


def _header(path):
    from gs_map_share.container import unpack_header

    return unpack_header(path.read_bytes())[0]


def test_diff_base_sequence_is_olds_own_only_when_old_is_the_snapshot(tmp_path, capsys, ply_scene):
    """--base-seq defaults to OLD's own sequence when OLD is the .gsd, else 1 — also when the
    parameters come from --params-from BASE.gsd of another sequence (docs: diff.py)."""
    t = lambda n: tmp_path / n  # noqa: E731
    assert _cli(["encode", ply_scene, t("a.gsd"), "--seq", "5"], capsys)[0] == 0
    assert _cli(["diff", t("a.gsd"), ply_scene, t("d1.gsd")], capsys)[0] == 0
    assert (_header(t("d1.gsd")).base_seq, _header(t("d1.gsd")).seq) == (5, 6)
    assert _cli(["diff", ply_scene, ply_scene, t("d2.gsd"), "--params-from", t("a.gsd")], capsys)[0] == 0
    assert (_header(t("d2.gsd")).base_seq, _header(t("d2.gsd")).seq) == (1, 2)


def test_diff_params_from_a_snapshot_of_another_sh_degree_is_refused(tmp_path, capsys, ply_scene):
    from gs_mapping.ply import save_ply

    t = lambda n: tmp_path / n  # noqa: E731
    assert _cli(["encode", ply_scene, t("a.gsd")], capsys)[0] == 0  # degree 1
    save_ply(_scene(np.zeros((5, 3)) + np.arange(5)[:, None]), t("z.ply"))  # degree 0
    rc, _, err = _cli(["diff", t("z.ply"), t("z.ply"), t("d.gsd"), "--params-from", t("a.gsd")], capsys)
    assert rc == 2 and "has SH degree 1" in err
    assert not t("d.gsd").exists()


def test_diff_never_writes_over_its_params_from_snapshot(tmp_path, capsys, ply_scene):
    t = lambda n: tmp_path / n  # noqa: E731
    assert _cli(["encode", ply_scene, t("a.gsd")], capsys)[0] == 0
    before = t("a.gsd").read_bytes()
    args = ["diff", ply_scene, ply_scene, t("a.gsd"), "--params-from", t("a.gsd"), "--overwrite"]
    assert _cli(args, capsys)[0] == 2
    assert t("a.gsd").read_bytes() == before


def test_spz_axes_rub_is_applied_when_the_cli_reads_an_spz(tmp_path, capsys, ply_scene):
    """--spz-axes rub on reading: export writes (x, −y, −z) (checked on the stored fixed-point
    positions, decoded by hand), and convert --spz-axes rub reads them back as the PLY's own
    positions (to SPZ's 1/4096 step); without the option the SPZ's stored axes are kept."""
    from gs_mapping.ply import load_ply

    src = load_ply(ply_scene)
    rc, _, err = _cli(
        ["export", ply_scene, tmp_path / "r.spz", "--spz-version", "2", "--spz-axes", "rub"], capsys
    )
    assert rc == 0, err
    head, body = _legacy_arrays((tmp_path / "r.spz").read_bytes())
    stored = _i24(body[: 9 * len(src)]).reshape(-1, 3) / 2.0 ** head[4]
    assert np.abs(stored - src.means * np.float32([1, -1, -1])).max() <= 0.5 / 4096 + 1e-6
    for opt, sign in (("rub", [1, 1, 1]), ("stored", [1, -1, -1])):
        out = tmp_path / f"{opt}.ply"
        rc, _, err = _cli(["convert", tmp_path / "r.spz", out, "--spz-axes", opt], capsys)
        assert rc == 0, err
        got = load_ply(out).means
        assert np.abs(got - src.means * np.float32(sign)).max() <= 0.5 / 4096 + 1e-6, opt


def test_encode_relative_scales_the_position_step_by_the_median_gaussian_size(tmp_path, capsys):
    """--relative: the metre preset's position step × (median largest-axis Gaussian size / 0.1)
    (docs/format.md, scale-relative presets). Every Gaussian here has log-scale −3: the ratio of
    the two steps is e^−3 / 0.1 (to the scale lattice's step)."""
    import json

    from gs_mapping.ply import save_ply

    rng = np.random.default_rng(4)
    save_ply(_scene(rng.uniform(-1, 1, (500, 3))), tmp_path / "s.ply")
    steps = []
    for extra in ([], ["--relative"]):
        rc, out, err = _cli(["encode", tmp_path / "s.ply", tmp_path / f"s{len(extra)}.gsd", *extra], capsys)
        assert rc == 0, err
        steps.append(json.loads(out)["pos_step"])
    assert steps[1] / steps[0] == pytest.approx(np.exp(-3.0) / 0.1, rel=0.05)


def test_encode_gives_a_palette_scenes_higher_sh_a_finer_step(tmp_path, capsys):
    """A scene whose higher SH is a palette (64 distinct rows shared by 4096 Gaussians, K/n ≤ 1/4)
    is encoded with rest_step × K/n rounded to a power of two and at most 16× finer, then halved
    (docs/format.md, palette SH): here the preset's step / 32, written into the header."""
    from gs_map_share.quantize import QuantParams
    from gs_mapping.ply import save_ply

    rng = np.random.default_rng(6)
    n = 4096
    rows = rng.uniform(-0.5, 0.5, (64, 3, 3)).astype(np.float32)
    save_ply(_scene(rng.uniform(-1, 1, (n, 3)), deg=1, sh_rest=rows[np.arange(n) % 64]), tmp_path / "p.ply")
    rc, _, err = _cli(["encode", tmp_path / "p.ply", tmp_path / "p.gsd"], capsys)
    assert rc == 0, err
    assert _header(tmp_path / "p.gsd").params.rest_step == pytest.approx(
        QuantParams.from_quality(2).rest_step / 32
    )


def test_sog_v1_decoded_by_splat_transforms_v1_formulas(tmp_path):
    """SOG version 1 (no "version", means.shape): scales, colours and the opacity logit are
    mins + (maxs − mins) · byte / 255 per channel; shN entries the scalar mins + (maxs − mins) ·
    byte / 255 (splat-transform read-sog-v1)."""
    from gs_mapping.splat_formats import load_splats

    rng = np.random.default_rng(9)
    n = 4
    images = _uniform_images(2, 2)
    sc = rng.integers(0, 256, (2, 2, 4), dtype=np.uint8)
    c0 = rng.integers(1, 255, (2, 2, 4), dtype=np.uint8)
    images["scales.webp"], images["sh0.webp"] = sc, c0
    cen = rng.integers(0, 256, (1, 192, 4), dtype=np.uint8)
    cen[..., 3] = 255
    lab = np.zeros((2, 2, 4), np.uint8)
    lab[..., 0], lab[..., 3] = [[3, 0], [63, 7]], 255
    images["shN_centroids.webp"], images["shN_labels.webp"] = cen, lab
    meta = {
        "means": {
            "shape": [n, 3],
            "mins": [0, 0, 0],
            "maxs": [1, 1, 1],
            "files": ["means_l.webp", "means_u.webp"],
        },
        "scales": {"mins": [-8.0, -7.0, -6.0], "maxs": [1.0, 0.5, 2.0], "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"mins": [-2.0, -1.5, -1.0, -6.0], "maxs": [2.0, 1.0, 3.0, 6.0], "files": ["sh0.webp"]},
        "shN": {"mins": -0.75, "maxs": 0.5, "files": ["shN_centroids.webp", "shN_labels.webp"]},
    }
    g = load_splats(_sog_dir(tmp_path, images, meta))
    lerp = lambda lo, hi, b: np.array(lo) + (np.array(hi) - np.array(lo)) * (b / 255.0)  # noqa: E731
    flat = lambda a: a.reshape(-1, 4)[:n].astype(np.float64)  # noqa: E731
    assert np.allclose(
        g.log_scales, lerp(meta["scales"]["mins"], meta["scales"]["maxs"], flat(sc)[:, :3]), atol=1e-6
    )
    t = lerp(meta["sh0"]["mins"], meta["sh0"]["maxs"], flat(c0))
    assert np.allclose(g.sh[:, 0], t[:, :3], atol=1e-6)
    assert np.allclose(g.opacity_logits, t[:, 3], atol=1e-5)
    entries = cen[0, :, :3].reshape(64, 3, 3).astype(np.float64)  # (entry, coefficient, channel)
    labels = flat(lab)[:, 0].astype(int)
    assert np.allclose(g.sh[:, 1:], lerp(-0.75, 0.5, entries[labels]), atol=1e-6)


def test_diff_and_apply_carry_the_new_scenes_tile_size(tmp_path, capsys, ply_scene):
    """A delta's header holds NEW's tile size (the PLY's ``tile_size`` comment), and apply gives the
    map the last delta's, not the snapshot's."""
    from gs_mapping.ply import load_ply, save_ply

    t = lambda n: tmp_path / n  # noqa: E731
    b = load_ply(ply_scene)
    b.tile_size = 4.0
    save_ply(b, t("b.ply"))
    assert _cli(["encode", ply_scene, t("a.gsd")], capsys)[0] == 0
    assert _header(t("a.gsd")).tile_size == 2.0
    assert _cli(["diff", ply_scene, t("b.ply"), t("d.gsd")], capsys)[0] == 0
    assert _header(t("d.gsd")).tile_size == 4.0
    assert _cli(["apply", t("a.gsd"), t("d.gsd"), t("out.ply")], capsys)[0] == 0
    assert b"tile_size 4.0" in t("out.ply").read_bytes()[:2000]


@pytest.mark.parametrize("name", ["x.compressed.ply", "X.Compressed.PLY"])
def test_no_standard_ply_is_written_under_a_compressed_ply_name(tmp_path, capsys, ply_scene, name):
    """Compressed PLY is read, not written: save_splats and convert refuse the name (a standard
    PLY there would be taken for the other format by name), and write nothing."""
    from gs_mapping.ply import load_ply
    from gs_mapping.splat_formats import can_write, save_splats

    assert not can_write(tmp_path / name)
    with pytest.raises(MapError, match="not supported"):
        save_splats(load_ply(ply_scene), tmp_path / name)
    rc, _, _ = _cli(["convert", ply_scene, tmp_path / name], capsys)
    assert rc == 2 and not (tmp_path / name).exists()
