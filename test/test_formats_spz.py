"""SPZ v2 export, read back with our own reader per the spec."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.errors import DecodeError
from gs_map_share.spz import read_spz, write_spz
from gs_mapping.errors import MapError


@pytest.mark.parametrize("deg", [0, 3])
def test_spz_round_trip_within_spz_precision(deg):
    g = synthetic_map(3000, deg, seed=deg)
    data = write_spz(g)
    raw = gzip.decompress(data)
    magic, version, n, sd, fb, flags, res = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, sd, fb, flags, res) == (0x5053474E, 2, 3000, deg, 12, 0, 0)
    assert len(raw) == 16 + n * (9 + 1 + 3 + 3 + 3 + 3 * ((deg + 1) ** 2 - 1))
    h = read_spz(data)
    assert np.abs(h.means - g.means).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(h.log_scales - np.clip(g.log_scales, -10, 5.9375)).max() <= 1 / 32 + 1e-6
    assert np.abs(h.opacities() - g.opacities()).max() <= 0.5 / 255 + 1e-6
    dc_err = np.abs(h.sh[:, 0] - g.sh[:, 0]).max()
    assert dc_err <= 0.5 / (255 * 0.15) + 1e-5
    dots = np.abs((h.quats.astype(np.float64) * g.quats).sum(1))
    assert dots.min() > 0.995
    if deg:
        assert (
            np.abs(h.sh[:, 1:4] - np.clip(g.sh[:, 1:4], -1, 127 / 128)).max() <= (4 + 0.5) / 128 + 1e-6
        )  # 5-bit bucket after 8-bit rounding


def test_spz_never_wraps_far_positions():
    g = synthetic_map(100, 0, seed=1, origin=(3000.0, 0.0, 0.0))
    with pytest.raises(MapError, match="wrap"):
        write_spz(g, 12)
    h = read_spz(write_spz(g, None))  # fewer fraction bits, no wrap
    assert np.abs(h.means - g.means).max() < 0.01


def test_spz_reader_rejects_garbage():
    for bad in (
        b"",
        b"junk",
        gzip.compress(b"\x00" * 16),
        gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 5, 0, 12, 0, 0)),
    ):
        with pytest.raises(DecodeError):
            read_spz(bad)
    with pytest.raises(DecodeError):
        read_spz(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 1 << 31, 0, 12, 0, 0)))


# -- Niantic's reference files (../shared/data/splats/spz_reference: written and decoded by Niantic's
# own SPZ library) ---------------------------------------------------------------------------------


def _payload(data: bytes) -> np.ndarray:
    return np.frombuffer(gzip.decompress(data), np.uint8)


def test_spz_v2_reader_matches_niantics_decoder(spz_reference):
    """guitar_v2.spz through our reader vs the PLY that Niantic's reader decoded from it."""
    from gs_mapping.ply import load_ply

    ref = load_ply(spz_reference / "guitar_v2.decoded.ply")
    ours = read_spz((spz_reference / "guitar_v2.spz").read_bytes())
    assert len(ours) == len(ref) == 90854 and ours.sh_degree == ref.sh_degree
    assert np.array_equal(ours.means, ref.means)
    assert np.array_equal(ours.log_scales, ref.log_scales)
    assert np.abs(ours.sh - ref.sh).max() <= 1e-6  # colour = (byte/255 - 0.5) / 0.15 in float32
    assert np.abs(ours.opacities() - ref.opacities()).max() <= 1e-5  # saturated logits differ, alpha not
    dots = np.abs((ours.quats.astype(np.float64) * ref.quats).sum(1))
    assert dots.min() > 1 - 1e-6


def test_spz_v2_writer_reproduces_niantics_bytes(spz_reference):
    """Niantic's decoded PLY written by our writer: the same payload Niantic's writer produced, byte
    for byte in positions, alphas, colours and scales; rotations may differ by one step where the
    float rounding ties (3 of 90854 here)."""
    from gs_mapping.ply import load_ply

    ref = load_ply(spz_reference / "guitar_v2.decoded.ply")
    ours, theirs = _payload(write_spz(ref)), _payload((spz_reference / "guitar_v2.spz").read_bytes())
    assert ours[:16].tobytes() == theirs[:16].tobytes()  # header: magic, version 2, count, degree, bits
    assert len(ours) == len(theirs)
    n, start = len(ref), 16
    for name, size in (("positions", 9), ("alphas", 1), ("colours", 3), ("scales", 3), ("rotations", 3)):
        a, b = ours[start : start + n * size], theirs[start : start + n * size]
        start += n * size
        differ = np.nonzero(a != b)[0]
        if name != "rotations":
            assert len(differ) == 0, f"{name}: {len(differ)} bytes differ from Niantic's writer"
        else:
            assert len(differ) <= 10 and np.abs(a[differ].astype(int) - b[differ]).max() <= 1


def test_spz_colour_bytes_follow_niantics_formula():
    """Without the reference files: Niantic's colour byte is round(dc * 0.15 * 255 + 127.5)."""
    g = synthetic_map(50, 0, seed=4)
    g.sh[:, 0, :] = np.linspace(-3.0, 3.0, 150, dtype=np.float32).reshape(50, 3)
    raw = _payload(write_spz(g))
    colours = raw[16 + 50 * 10 : 16 + 50 * 13].reshape(50, 3)
    want = np.clip(np.round(g.sh[:, 0, :].astype(np.float64) * 0.15 * 255 + 127.5), 0, 255)
    assert np.array_equal(colours, want.astype(np.uint8))
