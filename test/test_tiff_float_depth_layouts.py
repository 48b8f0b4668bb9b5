"""32FC1 depth in compressed_image_transport's ``tiff``, read through Pillow's libtiff reader, in
every layout TIFF 6.0 allows it: either byte order, strips or tiles, each compression; and a tiled
file cut short refused in one line with nothing from libtiff on stderr. The files are written by
hand (test_outside_host5's writer, from the specification), the truth is the array written, and,
where it is installed, OpenCV's own libtiff reads the same file."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
from test_outside_host5 import _CODECS, ENV, _msg, _tiff

METRES = (np.random.default_rng(5).random((19, 35), dtype=np.float32) * 10).astype(np.float32)


@pytest.mark.parametrize("codec", list(_CODECS))
@pytest.mark.parametrize("tile", [None, (16, 16)])
@pytest.mark.parametrize("order", ["<", ">"])
def test_float_depth_tiff_of_every_layout_reads_its_metres(order, tile, codec):
    from gs_mapping.messages.compressed_image import compressed_image_to_numpy

    data = _tiff(METRES, order, tile=tile, rows=4, codec=codec)
    with contextlib.suppress(ImportError):  # (the file as an independent reader sees it)
        import cv2

        got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, METRES)
    depth = compressed_image_to_numpy(_msg(data, "32FC1"))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, METRES)


@pytest.mark.parametrize("codec", ["none", "deflate"])
def test_a_tiled_tiff_cut_short_is_one_line_and_nothing_on_stderr(tmp_path, codec):
    """Its last tile runs past the data (TileOffsets/TileByteCounts): refused, naming the tile, in
    a process whose stderr (where libtiff writes) is read whole."""
    data = _tiff(METRES, ">", tile=(16, 16), codec=codec)
    (tmp_path / "cut.tif").write_bytes(data[:-7])
    code = (
        "import sys, numpy as np; from types import SimpleNamespace as NS\n"
        "from gs_mapping.errors import MessageError\n"
        "from gs_mapping.messages.compressed_image import compressed_image_to_numpy\n"
        "data = np.fromfile(sys.argv[1], np.uint8)\n"
        "try:\n    compressed_image_to_numpy(NS(format='32FC1; tiff compressed ', data=data))\n"
        "except MessageError as e:\n    print(e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cut.tif")], env=ENV, capture_output=True, text=True
    )
    assert r.stderr == ""
    (line,) = r.stdout.splitlines()
    assert (
        "cannot decode tiff" in line
        and f"its tile 5 runs to byte {len(data)} of a {len(data) - 7}-byte" in line
    )
