"""Splat formats without the reference files: facts of Niantic's SPZ format (its colour formula)
checked in the bytes our writer produces, through the public read/write functions. The byte-for-byte
comparison with Niantic's own files is in test_formats_spz.py (needs ../shared/data)."""

from __future__ import annotations

import gzip

import numpy as np
from synthetic_maps import synthetic_map

from gs_mapping.splat_formats.spz import read_spz, write_spz


def test_spz_v2_colour_bytes_follow_niantics_formula():
    """Niantic's colour byte is round(dc * 0.15 * 255 + 127.5) (v2: gzip, 16-byte header, then 9n
    position, n alpha and 3n colour bytes); our reader inverts it to within half a byte step."""
    n = 50
    g = synthetic_map(n, 0, seed=4)
    g.sh[:, 0, :] = np.linspace(-3.0, 3.0, 3 * n, dtype=np.float32).reshape(n, 3)
    raw = np.frombuffer(gzip.decompress(write_spz(g, 2)), np.uint8)
    colours = raw[16 + n * 10 : 16 + n * 13].reshape(n, 3)
    want = np.clip(np.round(g.sh[:, 0, :].astype(np.float64) * 0.15 * 255 + 127.5), 0, 255)
    assert np.abs(colours.astype(int) - want).max() <= 1  # float32 rounding at the .5 ties
    assert np.mean(colours == want) > 0.95
    back = read_spz(write_spz(g, 2))
    inside = np.abs(g.sh[:, 0, :]) < 127.5 / (0.15 * 255)
    assert np.abs(back.sh[:, 0, :] - g.sh[:, 0, :])[inside].max() <= 0.5 / (0.15 * 255) + 1e-5
