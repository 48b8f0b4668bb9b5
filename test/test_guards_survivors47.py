"""Guards for mutants that survived the project's tests (mutation run 47: 95 lines drawn from the
3DGS file readers and writers, splat_formats/, ply.py, and the scene CLI, cli/scene_io.py,
cli/convert.py, cli/diff.py).

Each test checks the project against something outside its own bookkeeping (Niantic's own SPZ
files and its reader's rules, the RIFF layout of WebP, plyfile reading and writing the same PLY,
the values of a hand-written file) and fails on the surviving mutant it is named after while
passing on the real code.
"""

from __future__ import annotations

import io
import shutil
import struct

import numpy as np
import pytest

EXT_COORDINATE_SYSTEM = 0xADBE0003  # Niantic's SPZ_ADOBE_coordinate_system extension type
RDF = 6  # spz::CoordinateSystem::RDF (splat-types.h)
RDF_RECORD = struct.pack("<III", EXT_COORDINATE_SYSTEM, 4, RDF)


def _v4_with_zone(data: bytes, zone: bytes, flag: bool) -> bytes:
    """A Niantic version-4 SPZ (32-byte header, then its table of contents) with ``zone`` between
    the header and the table, the table's offset (bytes 16-19) moved past it and flag 2 ("extensions
    follow", byte 14) set or cleared: the layout of Niantic's ``saveSpz`` for a file with extensions."""
    head = bytearray(data[:32])
    assert struct.unpack_from("<I", head, 16)[0] == 32, "Niantic's file has no extensions of its own"
    head[14] = (head[14] & ~2) | (2 if flag else 0)
    struct.pack_into("<I", head, 16, 32 + len(zone))
    return bytes(head) + zone + data[32:]


def _extension_zone(data: bytes) -> tuple[int, bytes]:
    """(flags, the bytes between header and table of contents) of a version-4 SPZ, by its layout."""
    assert data[:4] == b"NGSP" and struct.unpack_from("<I", data, 4)[0] == 4
    return data[14], data[32 : struct.unpack_from("<I", data, 16)[0]]


def test_v4_extension_bytes_without_flag_2_are_not_read(spz_reference):
    """Niantic's reader (load-spz.cc, ``loadPackedGaussiansFromNgsp``) reads the bytes between the
    header and the table of contents as extension records only ``if (header.flags &
    FlagHasExtensions)``. Niantic's guitar_v4.spz with an RDF coordinate-system record there but
    flag 2 clear is RUB (no extension): ``--spz-axes rub`` turns it (y and z negated, by hand),
    where the same bytes with flag 2 set read as stored; and bytes that are no record at all are
    skipped without the flag. (Mutant spz.py:379, the zone read whatever the flags.)"""
    from gs_mapping.splat_formats import read_spz, stored_coordinate_system

    data = (spz_reference / "guitar_v4.spz").read_bytes()
    stored = read_spz(data, "guitar_v4.spz")
    unflagged = _v4_with_zone(data, RDF_RECORD, flag=False)
    assert stored_coordinate_system(unflagged) is None
    turned = read_spz(unflagged, "unflagged.spz", axes="rub")
    assert np.array_equal(turned.means, stored.means * np.float32([1, -1, -1]))
    flagged = _v4_with_zone(data, RDF_RECORD, flag=True)  # (the test's file is what it says)
    assert stored_coordinate_system(flagged) == RDF
    assert np.array_equal(read_spz(flagged, "flagged.spz", axes="rub").means, stored.means)
    junk = read_spz(_v4_with_zone(data, b"\x01\x02\x03\x04\x05", flag=False), "junk.spz")
    assert np.array_equal(junk.means, stored.means) and np.array_equal(junk.sh, stored.sh)


@pytest.mark.parametrize("command", ["convert", "export"])
def test_convert_and_export_keep_an_spz_inputs_coordinate_system_record(spz_reference, tmp_path, command):
    """Written in the axes it was read in (the default ``--spz-axes stored``), an SPZ whose
    coordinate-system extension says RDF keeps the record (commit 1ce73bb: "convert/export keep
    the tag"): without it every reader that honours the extension (Niantic's library) takes the data
    as RUB and turns the scene upside down. The output's bytes are read by the layout alone: flag 2
    set, and between header and table of contents exactly the record (type 0xADBE0003, 4 bytes,
    RDF). (Mutants scene_io.py:110, the tag not looked up; scene_io.py:90, export's input, named
    ``map``, not among the inputs looked at.)"""
    from gs_mapping.cli import main

    tagged = tmp_path / "tagged.spz"
    tagged.write_bytes(_v4_with_zone((spz_reference / "guitar_v4.spz").read_bytes(), RDF_RECORD, flag=True))
    out = tmp_path / "out.spz"
    assert main([command, str(tagged), str(out)]) == 0
    flags, zone = _extension_zone(out.read_bytes())
    assert flags & 2 and zone == RDF_RECORD


def test_lossy_webp_behind_an_odd_sized_chunk_is_refused(shared_data, tmp_path):
    """RIFF (the WebP container spec): a chunk's payload is padded to an even size, so the chunk
    after an odd-sized one starts one byte later. Pillow writes a lossy WebP with a 5-byte ICC
    profile as VP8X, ICCP (5 bytes, padded), then (RGBA) ALPH and 'VP8 ': the real playbot SOG with its quats image so
    re-encoded must be refused as lossy (its quantised values are gone), not read. (Mutant
    sog.py:221, the walk without the padding byte: it lands inside the ICC chunk and never sees
    'VP8 '.)"""
    from PIL import Image

    from gs_mapping.errors import MapError
    from gs_mapping.splat_formats import load_splats

    sog = tmp_path / "playbot_sog"
    shutil.copytree(shared_data / "splats" / "playbot_sog", sog)
    buf = io.BytesIO()
    Image.open(sog / "quats.webp").save(buf, "WEBP", quality=90, icc_profile=b"abcde")
    raw = buf.getvalue()
    chunks, pos = [], 12
    while pos + 8 <= len(raw):  # the container's chunks, by the spec
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        chunks.append((raw[pos : pos + 4], size))
        pos += 8 + size + (size & 1)
    assert [c for c, _ in chunks[:2]] == [b"VP8X", b"ICCP"] and chunks[1][1] % 2 == 1
    assert b"VP8 " in [c for c, _ in chunks[2:]]
    (sog / "quats.webp").write_bytes(raw)
    with pytest.raises(MapError, match="quats.webp is lossy WEBP") as e:
        load_splats(sog)
    assert "\n" not in str(e.value)


def _guitar_rows(shared_data, n=7):
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(str(shared_data / "splats" / "guitar.ply"))["vertex"]
    return plyfile, vertex.data[:n].copy()


def _ascii_ply(plyfile, rows, path) -> bytes:
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")], text=True).write(str(path))
    return path.read_bytes()


def _expected(rows) -> dict:
    """The values a 3DGS PLY row means (the reference trainer's layout), taken from plyfile's rows."""
    col = lambda *names: np.stack([rows[n].astype(np.float32) for n in names], axis=1)  # noqa: E731
    return {
        "means": col("x", "y", "z"),
        "dc": col("f_dc_0", "f_dc_1", "f_dc_2"),
        "opacity": rows["opacity"].astype(np.float32),
        "log_scales": col("scale_0", "scale_1", "scale_2"),
    }


def _check(gmap, want) -> None:
    assert np.array_equal(gmap.means, want["means"])
    assert np.array_equal(gmap.sh[:, 0], want["dc"])
    assert np.array_equal(gmap.opacity_logits, want["opacity"])
    assert np.array_equal(gmap.log_scales, want["log_scales"])


def test_ascii_ply_whose_last_row_has_no_line_end_reads_every_row(shared_data, tmp_path):
    """Seven rows of the real guitar scene written as ASCII PLY by plyfile, then with the final
    line end cut (as some exporters leave it): the reader gives all seven rows, equal to plyfile's
    values. (Mutant ply.py:383, the last line without its line end not counted: "truncated".)"""
    from gs_mapping.ply import load_ply

    plyfile, rows = _guitar_rows(shared_data)
    text = _ascii_ply(plyfile, rows, tmp_path / "g.ply")
    assert text.endswith(b"\n")
    cut = tmp_path / "cut.ply"
    cut.write_bytes(text[:-1])
    gmap = load_ply(cut)
    assert len(gmap) == len(rows)
    _check(gmap, _expected(rows))


def test_ascii_ply_of_bare_carriage_returns_reads_its_rows(shared_data, tmp_path):
    """The ASCII reader's own contract (ply.py, ``_ascii_elements``: rows end in \\n, \\r\\n, "old
    Mac files: \\r alone"): the plyfile-written rows of the real guitar scene with every line end
    made a bare \\r read the same values as plyfile's (refused until session #27: the header
    pattern wanted \\n, and numpy's parser splits rows at \\n only). Also kills mutant ply.py:305
    (rows counted at \\n only)."""
    from gs_mapping.ply import load_ply

    plyfile, rows = _guitar_rows(shared_data, 5)
    text = _ascii_ply(plyfile, rows, tmp_path / "g.ply")
    mac = tmp_path / "mac.ply"
    mac.write_bytes(text.replace(b"\n", b"\r"))
    _check(load_ply(mac), _expected(rows))


def test_a_repeated_id_in_ascending_order_is_refused(tmp_path):
    """A Gaussian id names one Gaussian (deltas update and remove by it): a PLY written by plyfile
    (the reference library, not our writer) whose ``id`` column is 1, 2, 2, 3 -- sorted, so no
    reordering is needed -- is refused naming id 2, in one line. (Mutant ply.py:620, ``<`` for
    ``<=``: only an id smaller than its predecessor made the reader sort and look for repeats.)"""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply

    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    rows = np.zeros(4, [(n, "<f4") for n in names] + [("id", "<f8")])
    rows["x"] = np.arange(4)
    rows["rot_0"] = 1.0
    rows["id"] = [1, 2, 2, 3]
    path = tmp_path / "dup.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(str(path))
    with pytest.raises(MapError, match="duplicate Gaussian id 2") as e:
        load_ply(path)
    assert "\n" not in str(e.value)


def test_v4_spz_with_fewer_streams_than_its_sh_degree_needs_is_one_line(spz_reference):
    """Niantic's reader (``decompressNgspStreams``): ``dests.size() != header.numStreams`` is
    "stream count mismatch", refused. Niantic's guitar_v4.spz (SH degree 0, five streams) with its
    header saying SH degree 1 needs six streams: one MapError naming the stream count, not a Python
    exception from unpacking five arrays as six. (Mutant spz.py:469, ``>`` for ``!=``: only too many
    streams were refused.)"""
    from gs_mapping.errors import MapError
    from gs_mapping.splat_formats import read_spz

    data = bytearray((spz_reference / "guitar_v4.spz").read_bytes())
    assert data[12] == 0 and data[15] == 5
    data[12] = 1
    with pytest.raises(MapError, match="5 SPZ streams, 6 expected for SH degree 1") as e:
        read_spz(bytes(data), "deg1.spz")
    assert "\n" not in str(e.value)
