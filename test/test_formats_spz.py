"""SPZ v1–v4: our writer against Niantic's own files, our reader against Niantic's own decodes,
and hostile input (truncated, bit-flipped, lying headers) → one MapError, nothing else."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.errors import MapError
from gs_mapping.ply import load_ply
from gs_mapping.splat_formats.spz import pack_attributes, read_spz, write_spz, zstd


def _ngsp_streams(data: bytes) -> list[bytes]:
    ns, toc = data[15], struct.unpack_from("<I", data, 16)[0]
    o, out = toc + 16 * ns, []
    for i in range(ns):
        cs, _ = struct.unpack_from("<QQ", data, toc + 16 * i)
        out.append(data[o : o + cs])
        o += cs
    return out


def test_writer_equals_niantic_on_the_reference_vectors(spz_reference, shared_data):
    g = load_ply(shared_data / "splats" / "guitar.ply")  # the PLY Niantic's library was given
    for v in (2, 3):  # gzip framing: the whole file byte for byte
        assert write_spz(g, v) == (spz_reference / f"guitar_v{v}.spz").read_bytes()
    ref = (spz_reference / "guitar_v4.spz").read_bytes()
    ours = write_spz(g, 4)
    assert ours[:32] == ref[:32]  # header
    # every attribute array equal to Niantic's; each stream a zstd level-12 frame of it (the frames
    # themselves are equal where the zstd library versions produce the same output)
    ref_raw = [zstd.decompress(s) for s in _ngsp_streams(ref)]
    assert ref_raw == [p for p in pack_attributes(g, 4) if p]
    assert [zstd.decompress(s) for s in _ngsp_streams(ours)] == ref_raw
    assert [struct.unpack_from("<Q", ours, 32 + 16 * i + 8) for i in range(5)] == [
        struct.unpack_from("<Q", ref, 32 + 16 * i + 8) for i in range(5)
    ]


@pytest.mark.parametrize("version", [2, 3, 4])
def test_reader_equals_niantics_decode(spz_reference, version):
    """Niantic's library decoded its v2 and v4 files to PLY; v3 stores what v4 stores."""
    ours = read_spz((spz_reference / f"guitar_v{version}.spz").read_bytes())
    theirs = load_ply(spz_reference / f"guitar_v{2 if version == 2 else 4}.decoded.ply")
    assert len(ours) == len(theirs) == 90854 and ours.ids_implicit
    assert np.array_equal(ours.means, theirs.means)
    assert np.array_equal(ours.log_scales, theirs.log_scales)
    assert np.array_equal(ours.sh, theirs.sh)
    assert np.abs(ours.opacities() - theirs.opacities()).max() < 1e-6
    assert np.abs(np.abs((ours.quats.astype(np.float64) * theirs.quats).sum(1)) - 1).max() < 1e-6


@pytest.mark.parametrize("deg", [0, 1, 3])
@pytest.mark.parametrize("version", [2, 3, 4])
def test_round_trip_within_spz_precision(deg, version):
    g = synthetic_map(3000, deg, seed=deg)
    h = read_spz(write_spz(g, version))
    assert h.sh_degree == deg and len(h) == 3000
    assert np.abs(h.means - g.means).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(h.log_scales - np.clip(g.log_scales, -10, 5.9375)).max() <= 1 / 32 + 1e-6
    assert np.abs(h.opacities() - g.opacities()).max() <= 0.5 / 255 + 1e-6
    assert np.abs(h.sh[:, 0] - g.sh[:, 0]).max() <= 0.5 / (255 * 0.15) + 1e-5
    dots = np.abs((h.quats.astype(np.float64) * g.quats).sum(1))
    # smallest three (v3+) keeps rotations to ~0.1°; v2's first three loses up to degrees near w = 0
    assert dots.min() > (0.99999 if version >= 3 else 0.99)
    if deg:
        lim = np.clip(g.sh[:, 1:4], -1, 127 / 128)
        assert np.abs(h.sh[:, 1:4] - lim).max() <= (4 + 0.5) / 128 + 1e-6  # 5-bit buckets


def test_header_fields_and_sh_layout():
    g = synthetic_map(10, 1, seed=3)
    raw = gzip.decompress(write_spz(g, 2))
    assert struct.unpack_from("<IIIBBBB", raw) == (0x5053474E, 2, 10, 1, 12, 0, 0)
    sh = np.frombuffer(raw[16 + 10 * 19 :], np.uint8).reshape(10, 3, 3)  # point, coefficient, channel
    want = np.clip(np.round(g.sh[:, 1:4] * 128) + 128, 0, 255)
    assert np.abs(sh.astype(int) - want).max() <= 4


def test_never_wraps_far_positions():
    g = synthetic_map(100, 0, seed=1, origin=(3000.0, 0.0, 0.0))
    with pytest.raises(MapError, match="wrap"):
        write_spz(g, 4, 12)
    h = read_spz(write_spz(g, 4, 8))
    assert np.abs(h.means - g.means).max() < 0.01


def _mutants(data: bytes, rng, count: int):
    for _ in range(count):
        b = bytearray(data)
        kind = rng.integers(3)
        if kind == 0:
            yield bytes(b[: rng.integers(len(b))])
        elif kind == 1:
            for _ in range(rng.integers(1, 8)):
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            yield bytes(b)
        else:
            pos = rng.integers(min(len(b), 48))
            b[pos : pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
            yield bytes(b)


@pytest.mark.parametrize("version", [2, 4])
def test_fuzz_only_map_errors(version):
    """Truncated, bit-flipped and lying-header files: a MapError or a valid map, nothing else."""
    data = write_spz(synthetic_map(300, 1, seed=5), version)
    rng = np.random.default_rng(version)
    ok = 0
    for m in _mutants(data, rng, 400):
        try:
            h = read_spz(m)
            ok += 1
            assert len(h) == 300
        except MapError:
            pass
    assert ok < 400


def test_lying_point_counts_allocate_nothing():
    head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, (1 << 26), 3, 12, 0, 6, 32)
    with pytest.raises(MapError, match="point count"):
        read_spz(head + bytes(96))
    legacy = struct.pack("<IIIBBBB", 0x5053474E, 2, (1 << 31), 0, 12, 0, 0)
    with pytest.raises(MapError, match="point count"):
        read_spz(gzip.compress(legacy))
    # a gzip bomb (10 MB of zeros behind a 1000-point header) keeps only the 1000 points' bytes: the
    # rest is inflated to the CRC in bounded chunks and discarded (more than MAX_TRAILER: refused)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = (
        z.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 1000, 0, 12, 0, 0) + bytes(10_000_000)) + z.flush()
    )
    assert len(bomb) < 20_000 and len(read_spz(bomb)) == 1000
    for bad in (b"", b"junk", gzip.compress(b"\x00" * 16)):
        with pytest.raises(MapError):
            read_spz(bad)


def test_huge_finite_sh_saturates_like_spz_without_overflow():
    """SH far outside SPZ's byte range saturate to 0 / 255 (as in range ±1.x) instead of overflowing
    float32 into an undefined integer cast (which wrapped +1e38 to 0)."""
    g = synthetic_map(8, sh_degree=1, seed=3)
    sh = g.sh.copy()
    sh[:, 1:, :] = 0.0
    sh[0, 1:, :], sh[1, 1:, :] = 1e38, -1e38
    g.sh[:] = sh
    with np.errstate(over="raise", invalid="raise"):
        back = read_spz(write_spz(g))
    assert np.all(back.sh[0, 1:] > 0.9) and np.all(back.sh[1, 1:] < -0.9)
    assert np.allclose(back.sh[2:, 1:], 0.0, atol=0.02)


def _with_band_four(spz: bytes, n: int, band4: np.ndarray) -> bytes:
    """A degree-3 SPZ (gzip framing) turned into the degree-4 file Niantic's writer makes: the
    header's degree 4 and 9 more coefficients per point after the 15 (coefficient-major, colour
    channel inner)."""
    raw = bytearray(gzip.decompress(spz))
    raw[12] = 4
    sh_at = 16 + n * (9 + 1 + 3 + 3 + 4)  # positions, alpha, colour, scales, rotations (v3)
    sh = np.frombuffer(bytes(raw[sh_at:]), np.uint8).reshape(n, 15, 3)
    return gzip.compress(bytes(raw[:sh_at]) + np.concatenate([sh, band4], 1).tobytes())


def test_sh_degree_four_keeps_bands_zero_to_three(caplog):
    """SPZ allows SH degree 4 (the reference library's maximum): read with the fifth band dropped
    and a warning; everything else is what the degree-3 file holds. The antialiased flag is read
    over with a warning too."""
    g = synthetic_map(50, 3, seed=6)
    spz = write_spz(g, 3)
    band4 = np.random.default_rng(1).integers(0, 256, (50, 9, 3), dtype=np.uint8)
    h = read_spz(_with_band_four(spz, 50, band4), "d4.spz")
    assert h.sh_degree == 3 and h.equals(read_spz(spz)) and "fifth band is dropped" in caplog.text
    raw = bytearray(gzip.decompress(spz))
    raw[14] |= 1  # flags: antialiased
    assert read_spz(gzip.compress(bytes(raw)), "aa.spz").equals(h) and "antialiased" in caplog.text
    raw[12] = 5
    with pytest.raises(MapError, match="SH degree 5"):
        read_spz(gzip.compress(bytes(raw)))


# --- SPZ's axes (RUB by its specification) and PLY's (RDF) ------------------------------------------


def test_axis_turn_is_a_rotation_of_the_whole_scene():
    """turn_axes is the scene turned 180° about x, checked field by field against what that turn
    does: R' = M R Mᵀ for the rotations, and each Gaussian's SH colour seen along M d equal to the
    original's along d (the SH basis evaluated by the renderer's own code); twice is the identity."""
    import torch

    from gs_mapping.geometry import quat_to_matrix
    from gs_mapping.render import sh_to_color
    from gs_mapping.splat_formats.spz import turn_axes

    g = synthetic_map(500, 3, seed=4)
    t = turn_axes(g)
    M = np.diag([1.0, -1.0, -1.0])
    assert np.allclose(t.means, g.means @ M)
    assert np.allclose(quat_to_matrix(t.quats), M @ quat_to_matrix(g.quats) @ M, atol=1e-6)
    d = np.random.default_rng(0).normal(size=(500, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    before = sh_to_color(3, torch.tensor(d), torch.tensor(g.sh, dtype=torch.float64))
    after = sh_to_color(3, torch.tensor(d @ M), torch.tensor(t.sh, dtype=torch.float64))
    assert torch.allclose(before, after, atol=1e-6)
    back = turn_axes(t)
    assert back.equals(g) and not t.equals(g)


def test_axis_turn_renders_the_same_scene_from_the_turned_camera():
    """The renderer, an independent path: the turned scene seen from the turned camera is the same
    image (positions, rotations, scales and view-dependent colour together)."""
    from gs_mapping.camera import Camera
    from gs_mapping.render import render
    from gs_mapping.splat_formats.spz import turn_axes

    g = synthetic_map(800, 3, seed=5, extent=2.0, height=1.0)
    T = np.eye(4)
    T[:3, 3] = (1.0, 1.0, -3.0)
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    M4 = np.diag([1.0, -1.0, -1.0, 1.0])
    a = render(g, Camera(K, 64, 48, T), backend="cpu").numpy()[0]
    b = render(turn_axes(g), Camera(K, 64, 48, M4 @ T), backend="cpu").numpy()[0]
    assert a.std() > 0.05 and np.abs(a - b).max() < 1e-4


def test_spz_axes_option_turns_on_write_and_back_on_read(tmp_path, shared_data, spz_reference):
    """``--spz-axes rub`` writes PLY's RDF as SPZ's RUB (y and z negated, as splat-transform writes
    it) and reads it back to the PLY's axes; the default keeps Niantic's bytes (the reference vectors
    were written with its default, unspecified system)."""
    from gs_mapping.cli import main
    from gs_mapping.cli.encode import SPZ_AXES as CLI_AXES
    from gs_mapping.splat_formats import load_splats
    from gs_mapping.splat_formats.spz import SPZ_AXES

    assert CLI_AXES == SPZ_AXES
    ply = shared_data / "splats" / "guitar.ply"
    src = load_ply(ply)
    assert main(["convert", str(ply), str(tmp_path / "as_is.spz")]) == 0
    as_is = load_splats(tmp_path / "as_is.spz")
    ref = read_spz((spz_reference / "guitar_v4.spz").read_bytes())
    assert np.array_equal(as_is.means, ref.means) and np.array_equal(as_is.sh, ref.sh)
    assert main(["convert", str(ply), str(tmp_path / "rub.spz"), "--spz-axes", "rub"]) == 0
    stored = load_splats(tmp_path / "rub.spz")
    assert np.abs(stored.means - src.means * [1, -1, -1]).max() < 1e-3
    back = load_splats(tmp_path / "rub.spz", spz_axes="rub")
    # fixed-point positions and the DC colour round alike either way up: the same values exactly
    assert np.array_equal(back.means, as_is.means) and np.array_equal(back.sh[:, 0], as_is.sh[:, 0])
    assert main(["convert", str(tmp_path / "rub.spz"), str(tmp_path / "back.ply"), "--spz-axes", "rub"]) == 0
    assert np.array_equal(load_ply(tmp_path / "back.ply").means, as_is.means)
    with pytest.raises(MapError, match="SPZ axes must be one of stored, rub"):
        load_splats(tmp_path / "rub.spz", spz_axes="luf")
