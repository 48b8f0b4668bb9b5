"""Lines of the scene readers and writers whose breaking passed every test (session #30's mut30
mutation survey), each now guarded by a test that compares with what the format or the
reference reader says.

- ``write_spz`` refuses more than 23 fractional bits, as every SPZ reader (ours, Niantic's) does:
  everything it writes reads back.
- The gzip framing holds SPZ versions 1–4 only: Niantic's reader refuses 0 and 5.
- A gzip stream cut anywhere before its end is refused in one line, never read for ever.
- A ``.sog`` zip with its ``meta.json`` at the top and another in a sub-folder is the top one's
  scene (splat-transform's reader looks for the top one first).
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.errors import MapError
from gs_mapping.splat_formats import load_splats
from gs_mapping.splat_formats.spz import read_spz, write_spz

FIXTURES = Path(__file__).parent / "data" / "splat_formats"


@pytest.mark.parametrize("version", [2, 3, 4])
def test_spz_fractional_bits_a_reader_takes_are_all_a_writer_writes(version):
    g = synthetic_map(6, 0, seed=3)
    g.means[:] = 0.1
    for fb in range(0, 24):  # SPZ's 24-bit positions: 0..23 fractional bits, each read back
        back = read_spz(write_spz(g, version, fractional_bits=fb))
        assert np.allclose(back.means, 0.1, atol=2.0**-fb)
    for fb in (24, 31, -1):
        with pytest.raises(MapError, match="fractional bits must be 0..23"):
            write_spz(g, version, fractional_bits=fb)


@pytest.mark.parametrize("version", [0, 5, 255])
def test_spz_gzip_framing_of_a_version_beyond_1_to_4_is_refused(version):
    raw = gzip.decompress(write_spz(synthetic_map(5, 0, seed=1), 2))
    assert raw[4:8] == (2).to_bytes(4, "little")
    with pytest.raises(MapError, match=f"SPZ version {version} not supported"):
        read_spz(gzip.compress(raw[:4] + version.to_bytes(4, "little") + raw[8:]))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", [2, 3])
def test_spz_gzip_cut_short_anywhere_is_refused_not_read_for_ever(version):
    data = write_spz(synthetic_map(300, 1, seed=2), version)
    for cut in (1, 4, 8, 9, len(data) // 2, len(data) - 20):
        with pytest.raises(MapError):
            read_spz(data[:-cut])


def test_a_sog_zip_with_a_meta_json_on_top_and_one_in_a_folder_is_the_top_ones_scene(tmp_path):
    with zipfile.ZipFile(FIXTURES / "scene.sog") as z:
        files = {n: z.read(n) for n in z.namelist()}
    assert "meta.json" in files
    path = tmp_path / "two.sog"
    with zipfile.ZipFile(path, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)
        out.writestr("old/meta.json", json.dumps({"version": 2, "count": 1}))
    got, want = load_splats(path), load_splats(FIXTURES / "scene.sog")
    assert len(got) == len(want) and np.array_equal(got.means, want.means)
