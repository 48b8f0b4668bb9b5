"""Mutation round 41 (SPZ): a breakage that passed every test, guarded against Niantic's reference
vector (``../shared/data/splats/spz_reference``)."""

from __future__ import annotations

import gzip
import struct

import pytest
from conftest import SPZ_REFERENCE
from hostile_cases import one_error_line

from gs_mapping.cli import main

pytestmark = pytest.mark.skipif(not SPZ_REFERENCE.exists(), reason="SPZ reference vectors absent")


def test_a_gunzipped_version_1_spz_says_gzip_too(tmp_path, capsys):
    """Versions 1-3 are all stored gzip-compressed (Niantic's reader); the framing line named 2 and 3
    only through the test of the vectors there are (test_splat40_spz_framing), and a version 1 file
    without its gzip (its header: the vector's, version 1) said 'version 1 not supported in this
    framing' with the bound at 2 <= version."""
    raw = bytearray(gzip.decompress((SPZ_REFERENCE / "guitar_v2.spz").read_bytes()))
    assert struct.unpack_from("<I", raw, 4)[0] == 2
    struct.pack_into("<I", raw, 4, 1)
    bad = tmp_path / "raw_v1.spz"
    bad.write_bytes(bytes(raw))
    assert main(["convert", str(bad), str(tmp_path / "out.ply")]) == 2
    one_error_line(capsys, "raw_v1.spz", "SPZ version 1 without its gzip framing")
    assert not (tmp_path / "out.ply").exists()
