"""Outside check of issue 17, fifth pass (read the 3DGS files users have), from angles the first
four passes (test_outside_splat_files.py, ...2.py, ...3.py, ...4.py) and test_formats_*.py do not
take:

- PlayCanvas splat-transform (npm; 2.7.1 and 3.10.2 checked) reads and writes an unbundled SOG
  under any name that ends in ``meta.json`` (``lowerFilename.endsWith('meta.json')`` in its
  dist/index.mjs, input and output; ``lod-meta.json`` is its streamed LOD format): ``splat-transform
  scene.ply out/guitar.meta.json`` writes ``guitar.meta.json`` beside the WebP images and reads it
  back. The fixture's SOG (test/data/outside_splat_files/s1_sog, splat-transform's own output) is
  laid out so here; the reference is splat-transform's decode of it (s1_sog.decoded.ply, read by
  plyfile).
- Niantic's SPZ library with its extensions built in (``@adobe/spz`` 0.2.3 on npm: the WebAssembly
  build of nianticlabs/spz, ``SpzHasExtensionSupport() == true``): a version-4 file may carry the
  ``SPZ_ADOBE_coordinate_system`` extension (type 0xADBE0003, a u32 ``CoordinateSystem``; RUB = 4,
  RDF = 6) in the header zone [32, tocByteOffset), which names the axes the data is stored in;
  ``unpackGaussians`` converts from those axes (RUB when absent) to ``UnpackOptions.to``. Asked for
  PLY axes (``to: RDF``, what ``--spz-axes rub`` promises), it turns a file without the extension
  or with RUB, and leaves one stored in RDF as it is. Its outputs are written beside each case.
- A binary PLY with a mesh's faces (a list property) between the vertices and our ``gs_mapping``
  element (ids, levels), as plyfile writes a map it was given faces for: plyfile reads the ids.
- gsplat's ``export_splats(format="ply_compressed")`` (nerfstudio-project/gsplat,
  ``splat2ply_bytes_compressed``) writes ``element sh N`` even for SH degree 0, with no property.
"""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.splat_formats import load_splats

plyfile = pytest.importorskip("plyfile")

DATA = Path(__file__).parent / "data" / "outside_splat_files"
SH_C0 = 0.28209479177387814


# --- SOG named as splat-transform names it ---------------------------------------------------------


def test_unbundled_sog_named_scene_meta_json_reads_as_splat_transform_decodes_it(tmp_path):
    """splat-transform 2.7.1 and 3.10.2 write ``splat-transform in.ply out/guitar.meta.json`` as
    ``guitar.meta.json`` + WebP images (the same meta.json content as under the plain name) and read
    that name back; the README promises SOG as ``meta.json`` + WebP. Read it, and the values are
    splat-transform's decode of the same files (positions compared, read by plyfile)."""
    folder = tmp_path / "scene"
    shutil.copytree(DATA / "s1_sog", folder)
    (folder / "meta.json").rename(folder / "s1.meta.json")
    ours = load_splats(folder / "s1.meta.json")
    ref = plyfile.PlyData.read(str(DATA / "s1_sog.decoded.ply"))["vertex"].data
    assert len(ours) == len(ref) and ours.sh_degree == 1
    want = np.stack([ref["x"], ref["y"], ref["z"]], axis=1)
    assert np.array_equal(ours.means, want.astype(np.float32))


# --- SPZ with Niantic's coordinate-system extension ------------------------------------------------

# @adobe/spz 0.2.3 (npm), saveSpzToBuffer({numPoints: 2, shDegree: 0, positions [1, 2, 3,
# -0.5, 0.25, -4], rotations (x, y, z, w) [0.1, 0.2, 0.3, 0.927, 0, 0, 0, 1], ...},
# {version: 4, from: UNSPECIFIED, sh1Bits: 5, shRestBits: 4}): 197 bytes, no extension.
_ADOBE_V4 = base64.b64decode(
    "TkdTUAQAAAACAAAAAAwABSAAAAAAAAAAAAAAAAAAAAAbAAAAAAAAABIAAAAAAAAACwAAAAAAAAACAAAAAAAAAA8AAAAA"
    "AAAABgAAAAAAAAAPAAAAAAAAAAYAAAAAAAAAEQAAAAAAAAAIAAAAAAAAACi1L/0gEpEAAAAQAAAgAAAwAAD4/wAEAADA/yi1"
    "L/0gAhEAAJ9FKLUv/SAGMQAAg4eLdICPKLUv/SAGMQAAgHBgkJCQKLUv/SAIQQAA2USCxAAAAMA="
)
_STORED = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, -4.0]])
_TURNED = _STORED * [1, -1, -1]  # RUB -> RDF: a half turn about x


def _with_coordinate_system(data: bytes, coord: int) -> bytes:
    """The file with one SPZ_ADOBE_coordinate_system record (type, byteLength 4, u32 value) in its
    header zone, flag 2 (extensions) set and tocByteOffset moved past it (nianticlabs/spz
    extensions/README.md, "Extension record format")."""
    record = struct.pack("<III", 0xADBE0003, 4, coord)
    head = bytearray(data[:32])
    head[14] |= 2  # flags
    struct.pack_into("<I", head, 16, 32 + len(record))  # tocByteOffset
    return bytes(head) + record + data[32:]


@pytest.mark.parametrize(
    ("coord", "axes", "want"),
    [
        # @adobe/spz loadSpzFromBuffer(plain, {to: RDF}) -> 1,-2,-3,-0.5,-0.25,4
        (None, "rub", _TURNED),
        # ... (RUB-tagged, {to: RDF}) -> 1,-2,-3,-0.5,-0.25,4
        (4, "rub", _TURNED),
        # ... (RDF-tagged, {to: UNSPECIFIED}) -> 1,2,3,-0.5,0.25,-4 (the stored axes)
        (6, "stored", _STORED),
        # ... (RDF-tagged, {to: RDF}) -> 1,2,3,-0.5,0.25,-4: already in PLY axes, nothing turned
        (6, "rub", _STORED),
    ],
    ids=["no-extension-rub", "rub-tagged-rub", "rdf-tagged-stored", "rdf-tagged-rub"],
)
def test_spz_coordinate_system_extension_read_as_niantics_library_reads_it(tmp_path, coord, axes, want):
    """``--spz-axes rub`` promises SPZ's specified axes turned into PLY's; Niantic's library (with
    extensions, as @adobe/spz ships it) takes the stored axes from the file's coordinate-system
    extension when there is one. Positions as it returned them; the rotation turned with them."""
    path = tmp_path / "s.spz"
    path.write_bytes(_ADOBE_V4 if coord is None else _with_coordinate_system(_ADOBE_V4, coord))
    g = load_splats(path, spz_axes=axes)
    assert np.array_equal(g.means, want.astype(np.float32))
    q = np.array([0.1, 0.2, 0.3, 0.927]) * ([1, 1, 1, 1] if want is _STORED else [1, -1, -1, 1])
    q /= np.linalg.norm(q)
    assert abs(float(np.dot(g.quats[0].astype(np.float64), q))) > 0.9999


# --- binary PLY: the map's ids after a mesh's faces ------------------------------------------------


def _map_with_faces(path: Path, text: bool) -> np.ndarray:
    """vertex (the reference layout, 4 Gaussians), face (list), gs_mapping (id double): plyfile
    writes it; returns the ids as plyfile reads them back."""
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    v = np.zeros(4, [(n, "<f4") for n in names])
    v["x"] = [0, 1, 2, 3]
    v["scale_0"] = v["scale_1"] = v["scale_2"] = -3
    v["rot_0"] = 1
    faces = np.empty(2, [("vertex_indices", "O")])
    faces["vertex_indices"][0] = np.array([0, 1, 2], np.int32)
    faces["vertex_indices"][1] = np.array([1, 2, 3], np.int32)
    ids = np.zeros(4, [("id", "<f8")])
    ids["id"] = [7, 19, 23, 1000]
    plyfile.PlyData(
        [
            plyfile.PlyElement.describe(v, "vertex"),
            plyfile.PlyElement.describe(
                faces, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"}
            ),
            plyfile.PlyElement.describe(ids, "gs_mapping"),
        ],
        text=text,
    ).write(str(path))
    return plyfile.PlyData.read(str(path))["gs_mapping"].data["id"]


@pytest.mark.parametrize("text", [True, False], ids=["ascii", "binary"])
def test_a_maps_ids_after_a_mesh_s_faces_read_as_plyfile_reads_them(tmp_path, text):
    """A map saved by us and given a mesh's faces by a tool (plyfile keeps the element order:
    vertex, face, gs_mapping). plyfile reads the ids in either encoding; so must we, or refuse in
    one line: taking them as implicit 1..N silently renumbers the map, and its deltas then apply to
    the wrong Gaussians. The ASCII twin reads them today."""
    path = tmp_path / "m.ply"
    want = _map_with_faces(path, text)
    g = load_splats(path)
    assert not g.ids_implicit
    assert np.array_equal(g.ids, want.astype(np.uint64))


# --- gsplat's compressed PLY of an SH-0 scene ------------------------------------------------------


def test_gsplats_compressed_ply_with_an_empty_sh_element_reads_as_sh0(tmp_path):
    """gsplat writes ``element sh N`` with no property when the scene has no higher SH (its header
    loop over shN's zero columns). The values follow PlayCanvas' formulas, by hand: position bits
    0 and all-ones are the chunk's min and max; colour byte 128 of 255 between the chunk's colour
    bounds 0..1 is 128/255, so f_dc = (128/255 - 0.5) / SH_C0; alpha 51 is 0.2, logit ln(0.25)."""
    names = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z"]
    names += ["min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
    names += ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
    packed = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
    head = ["ply", "format binary_little_endian 1.0", "element chunk 1"]
    head += [f"property float {p}" for p in names] + ["element vertex 2"]
    head += [f"property uint {p}" for p in packed] + ["element sh 2", "end_header"]
    chunk = np.array([-1, -2, -3, 1, 2, 3, -5, -5, -5, -1, -1, -1, 0, 0, 0, 1, 1, 1], "<f4")
    # rotation: largest w (index 0), the other three at 10-bit 511.5 ~ 0 -> near identity
    rot = (0 << 30) | (512 << 20) | (512 << 10) | 512
    vert = np.array([[0, rot, 0, 0x80808033], [0xFFFFFFFF, rot, 0xFFFFFFFF, 0x80808033]], "<u4")
    path = tmp_path / "gsplat.compressed.ply"
    path.write_bytes(("\n".join(head) + "\n").encode() + chunk.tobytes() + vert.tobytes())
    g = load_splats(path)
    assert len(g) == 2 and g.sh_degree == 0
    assert np.allclose(g.means, [[-1, -2, -3], [1, 2, 3]])
    assert np.allclose(g.log_scales, [[-5, -5, -5], [-1, -1, -1]])
    assert np.allclose(g.sh[:, 0, :], (128 / 255 - 0.5) / SH_C0, atol=1e-6)
    assert np.allclose(g.opacity_logits, np.log(0.2 / 0.8), atol=1e-5)
    assert np.all(np.abs(g.quats[:, 3]) > 0.999)
