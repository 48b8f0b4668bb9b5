"""Outside review of session 23's changes (hostile pass): what the day's fixes left half-done or
broke, each checked against something outside the component.

- (``/tf_static`` values kept by log time: test_outside_session23_tf.py.)
- SPZ's ``SPZ_ADOBE_coordinate_system`` extension as nianticlabs/spz (commit 21715c3) reads it:
  ``extensions/cc/coordinate-system-adobe.cc`` (``read``: a value above 16 is no record, so the
  file's axes stay RUB; ``resolve``: UNSPECIFIED (0) is RUB, with a warning), ``src/cc/load-spz.cc``
  (``deserializePackedGaussians``: the gzip framing, versions 1-3, reads extension records after the
  arrays, inside the gzip stream, when flag 2 is set; ``unpackGaussians`` converts from the axes
  they name). Asked for PLY axes (``to: RDF``, what ``--spz-axes rub`` promises), an RDF-tagged
  file is left as stored, an untagged / RUB / UNSPECIFIED / unknown-code one is turned.
- SOG folders as a Mac leaves them: copying a folder to an exFAT/FAT USB stick or a network share
  from macOS writes an AppleDouble ``._NAME`` beside every file (``._meta.json`` beside
  ``meta.json``); the folder read before session 23 (``meta.json`` by name).
- A binary PLY whose mesh faces have rows of varying size and two list properties, big- and
  little-endian, read as plyfile reads it (guards ``ply._after_list_rows``' switch between its
  row walk and its numpy runs, which test_outside_splat_files5's all-triangle mesh never leaves).
- The parameter file ``gs-mapping demo`` writes (``yaml.safe_dump``) read back by the nodes as
  PyYAML's safe_load reads it, after config_file now reads files as rcl does.

Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "outside_splat_files"


# --- SPZ coordinate-system extension as Niantic's library reads it -----------------------------------

# @adobe/spz 0.2.3 (npm) saveSpzToBuffer of 2 points at (1, 2, 3) and (-0.5, 0.25, -4), version 4,
# no extension (the same vector as test_outside_splat_files5)
_ADOBE_V4 = base64.b64decode(
    "TkdTUAQAAAACAAAAAAwABSAAAAAAAAAAAAAAAAAAAAAbAAAAAAAAABIAAAAAAAAACwAAAAAAAAACAAAAAAAAAA8AAAAA"
    "AAAABgAAAAAAAAAPAAAAAAAAAAYAAAAAAAAAEQAAAAAAAAAIAAAAAAAAACi1L/0gEpEAAAAQAAAgAAAwAAD4/wAEAADA/yi1"
    "L/0gAhEAAJ9FKLUv/SAGMQAAg4eLdICPKLUv/SAGMQAAgHBgkJCQKLUv/SAIQQAA2USCxAAAAMA="
)
_STORED = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, -4.0]])
_TURNED = _STORED * [1, -1, -1]  # RUB -> RDF: a half turn about x
_RECORD = "<III"  # u32 type, u32 byteLength, u32 CoordinateSystem (coordinate-system-adobe.cc write)
_EXT_COORD = 0xADBE0003


def _v4_with_coordinate_system(coord: int) -> bytes:
    """_ADOBE_V4 with one coordinate-system record in its header zone [32, tocByteOffset), flag 2
    set (load-spz.cc: the plaintext zone is [header][extensions][TOC])."""
    record = struct.pack(_RECORD, _EXT_COORD, 4, coord)
    head = bytearray(_ADOBE_V4[:32])
    head[14] |= 2
    struct.pack_into("<I", head, 16, 32 + len(record))
    return bytes(head) + record + _ADOBE_V4[32:]


@pytest.mark.parametrize("coord", [0, 17], ids=["unspecified", "unknown-code"])
def test_spz_coordinate_system_unspecified_or_unknown_reads_as_rub_as_niantic_does(tmp_path, coord):
    """nianticlabs/spz: ``SpzExtensionCoordinateSystemAdobe::resolve`` gives RUB for UNSPECIFIED (a
    writer that set the extension without a system, "likely a writer bug", is read with a warning),
    and ``read`` drops a record whose value is above 16 (RBU), so ``getPackedCoordinateSystem`` finds
    none: RUB. Asked for PLY's RDF both files are turned, as an untagged one is. Ours refuses both
    ("SPZ stored in UNSPECIFIED axes ... read it with --spz-axes stored")."""
    from gs_mapping.splat_formats import load_splats

    path = tmp_path / "s.spz"
    path.write_bytes(_v4_with_coordinate_system(coord))
    g = load_splats(path, spz_axes="rub")
    assert np.array_equal(g.means, _TURNED.astype(np.float32))


def test_gzip_spz_with_rdf_coordinate_system_extension_is_not_turned(tmp_path):
    """Niantic's gzip framing (``deserializePackedGaussians``) reads extension records after the
    six arrays, inside the gzip stream, when header flag 2 is set, and ``unpackGaussians`` converts
    from the system they name: an RDF-tagged version-3 file asked for RDF is returned as stored.
    Session 23 honoured the extension for version 4 only (``stored_coordinate_system``: "None ... for
    the gzip framing, whose extensions are not read"), so ``--spz-axes rub`` turns a v3 RDF file
    upside down: the bug fixed for v4, left in v2/v3. The v3 arrays are our writer's (its bytes
    equal Niantic's on the reference vectors); the record is appended as Niantic writes it."""
    from gs_mapping.splat_formats import load_splats
    from gs_mapping.splat_formats.spz import read_spz, write_spz

    raw = bytearray(gzip.decompress(write_spz(read_spz(_ADOBE_V4), version=3)))
    assert struct.unpack_from("<II", raw) == (0x5053474E, 3)
    raw[14] |= 2  # FlagHasExtensions (PackedGaussiansHeader: magic, version, n, deg, bits, flags)
    raw += struct.pack(_RECORD, _EXT_COORD, 4, 6)  # RDF
    path = tmp_path / "rdf_v3.spz"
    path.write_bytes(gzip.compress(bytes(raw)))
    assert np.allclose(load_splats(path, spz_axes="stored").means, _STORED, atol=1e-3)  # (control)
    assert np.allclose(load_splats(path, spz_axes="rub").means, _STORED, atol=1e-3)


# --- SOG folder copied by a Mac ----------------------------------------------------------------------


def test_sog_folder_with_macos_appledouble_meta_file_still_reads(tmp_path):
    """macOS writes an AppleDouble ``._meta.json`` (magic 0x00051607, "Mac OS X") beside
    ``meta.json`` when it copies the folder to a FAT/exFAT stick or an SMB share. The folder is
    still splat-transform's SOG, whose meta file is ``meta.json``; gs-mapping read it by that name
    until ``sog._meta_in`` (session 23) began collecting every name ending in ``meta.json`` and
    refusing two. The plain ``meta.json`` (and no dot file: ``_Files.read`` refuses names starting
    with '.') should win; the values are splat-transform's decode of the fixture."""
    from gs_mapping.splat_formats import load_splats

    plyfile = pytest.importorskip("plyfile")
    folder = tmp_path / "scene"
    shutil.copytree(DATA / "s1_sog", folder)
    (folder / "._meta.json").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(16))
    ours = load_splats(folder)
    ref = plyfile.PlyData.read(str(DATA / "s1_sog.decoded.ply"))["vertex"].data
    assert np.array_equal(ours.means, np.stack([ref["x"], ref["y"], ref["z"]], axis=1).astype(np.float32))


# --- binary PLY: faces of varying size before the map's ids ------------------------------------------


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("layout", ["quads-then-mixed", "mixed", "empty-rows"])
def test_ply_ids_after_faces_of_varying_size_read_as_plyfile_reads_them(tmp_path, byte_order, layout):
    """A mesh of 3000 faces with two list properties (``vertex_indices`` counted by a ushort,
    ``texcoord`` by a uchar, a uchar scalar between them), rows of one size for a long run and then
    varying (or varying throughout, or with empty lists), then the ``gs_mapping`` ids. plyfile is
    the reference reader; ours walks the rows with a numpy fast path for runs of one size, whose
    break-off and restart this exercises."""
    plyfile = pytest.importorskip("plyfile")
    from gs_mapping.ply import read_elements, read_file

    rng = np.random.default_rng(23)
    nf = 3000
    faces = np.empty(nf, [("vertex_indices", "O"), ("flag", "u1"), ("texcoord", "O")])
    for i in range(nf):
        if layout == "quads-then-mixed":
            k = 4 if i < 2000 else int(rng.integers(3, 6))
        elif layout == "mixed":
            k = int(rng.integers(3, 6))
        else:
            k = int(rng.integers(0, 2)) * 3
        faces["vertex_indices"][i] = rng.integers(0, 5, k).astype(np.int32)
        faces["flag"][i] = i % 256
        faces["texcoord"][i] = rng.random(
            2 * (k > 0) if layout != "mixed" else int(rng.integers(0, 4))
        ).astype(np.float32)
    v = np.zeros(5, [(n, "f4") for n in ("x", "y", "z")])
    v["x"] = np.arange(5)
    ids = np.zeros(5, [("id", "f8")])
    ids["id"] = [7, 19, 23, 1000, 5]
    path = tmp_path / "m.ply"
    plyfile.PlyData(
        [
            plyfile.PlyElement.describe(v, "vertex"),
            plyfile.PlyElement.describe(
                faces,
                "face",
                len_types={"vertex_indices": "u2", "texcoord": "u1"},
                val_types={"vertex_indices": "i4", "texcoord": "f4"},
            ),
            plyfile.PlyElement.describe(ids, "gs_mapping"),
        ],
        byte_order=byte_order,
    ).write(str(path))
    ref = plyfile.PlyData.read(str(path))
    ours, _ = read_elements(read_file(path), path)
    assert np.array_equal(ours["gs_mapping"]["id"], ref["gs_mapping"].data["id"])
    assert np.array_equal(ours["vertex"]["x"], ref["vertex"].data["x"])


# --- the demo's parameter file, read back ---------------------------------------------------------


def test_demo_parameter_file_reads_back_as_pyyaml_reads_it(tmp_path):
    """``gs-mapping demo`` writes ``demo_config.yaml`` with ``yaml.safe_dump`` and says it is usable
    with ``--config``. config_file now reads a file as rcl does (no null, ``~`` a string, empty
    mappings and values refused): every section each node reads from the demo's file must hold what
    PyYAML's ``safe_load`` (the writer's own library) reads there, and nothing may be refused."""
    pytest.importorskip("torch")
    import yaml

    from gs_mapping.config_file import to_dict
    from gs_mapping.demo.pipeline import DemoSettings, node_configs, write_config
    from gs_mapping.nodes.registry import node_class

    path = tmp_path / "demo_config.yaml"
    configs = node_configs(DemoSettings())
    write_config(configs, path)
    written = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
    for node, sections in configs.items():
        loaded = node_class(node).load_config(path)
        for name in sections:
            assert to_dict(loaded[name]) == written[name], (node, name)
