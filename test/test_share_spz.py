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
