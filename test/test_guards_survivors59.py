"""Guards for behaviours a mutation survey (session 33) of the compressed PLY and .splat readers,
the CLI's scene naming (scene_io) and the codec's phases, tails and id-ordered geometry found
unguarded: each test compares with an independent reference (PlayCanvas' and antimatter15's
published layouts re-computed in numpy, a decoder against its encoder's input, the rules of
docs/format.md applied to hand-built containers), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# id-ordered geometry: ids strictly ascending (docs/format.md), even under a matching checksum


def test_id_ordered_gap_of_2_to_the_64_minus_1_repeating_an_id_is_refused_under_a_matching_checksum():
    """A gap − 1 of 2**64 − 1 wraps the + 1 to 0: the next id repeats the one before. Ids in an
    id-ordered section are strictly ascending, so the section is refused as "not increasing" even
    when the header's checksum is that of the map with the repeated id (a crafted container: the
    checksum alone would not catch it)."""
    from synthetic_maps import synthetic_map
    from test_share_id_order import P, _crafted, _valid_fields

    from gs_map_share.container import pack, unpack
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import to_qmap
    from gs_map_share.snapshot import decode_snapshot

    swept = synthetic_map(3000, 1, seed=5)
    first, gaps, d = _valid_fields(swept)
    gaps = gaps.astype(np.uint64)
    gaps[10] = np.uint64((1 << 64) - 1)
    # the map such a section names: id 11 twice (ids recomputed by hand from the gaps)
    repeated = to_qmap(swept.subset(np.arange(50)), P)
    repeated = repeated.take(np.arange(len(repeated)))
    repeated.ids = np.concatenate([[first], first + np.cumsum(gaps + np.uint64(1))]).astype(np.uint64)
    assert len(np.unique(repeated.ids)) == 49
    h, chunks = unpack(_crafted(swept, first, gaps, d))
    h.state_crc = repeated.checksum()
    with pytest.raises(DecodeError, match="not increasing"):
        decode_snapshot(pack(h, chunks))


# ------------------------------------------------------------------------------------------------
# scene_io: names are read without regard to case, .gsd included


def test_a_snapshot_named_in_capitals_is_decoded_as_a_snapshot(shared_data, tmp_path):
    """Every scene name is taken without regard to case (``kind_by_name`` lowers it: ``X.PLY`` is a
    PLY), so ``scene.GSD`` is a snapshot, decoded as ``scene.gsd`` is: the first 400 Gaussians of
    guitar.ply come back, each within the quantiser's step of where guitar.ply has it."""
    from gs_map_share.snapshot import encode_map
    from gs_mapping.cli.scene_io import load_scene
    from gs_mapping.splat_formats import load_splats

    g = load_splats(shared_data / "splats" / "guitar.ply").subset(np.arange(400))
    data, _ = encode_map(g)
    (tmp_path / "scene.GSD").write_bytes(data)
    (tmp_path / "lower.gsd").write_bytes(data)
    upper, lower = load_scene(str(tmp_path / "scene.GSD")), load_scene(str(tmp_path / "lower.gsd"))
    assert len(upper) == len(g) == 400
    assert np.array_equal(upper.means, lower.means) and np.array_equal(upper.ids, lower.ids)
    # the same Gaussians as the input (ids renumbered spatially: match by position)
    d = np.linalg.norm(upper.means[:, None, :] - g.means[None, :, :], axis=2).min(axis=1)
    assert d.max() < 0.01


def _bundle_playbot(shared_data, path) -> int:
    """playbot's SOG folder bundled as one zip (a ``.sog`` file, as splat-transform writes one) at
    ``path``; its Gaussian count from meta.json."""
    import json
    import zipfile

    folder = shared_data / "splats" / "playbot_sog"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(folder.iterdir()):
            if f.name != "LICENSE.txt":
                z.write(f, f.name)
    return json.loads((folder / "meta.json").read_text())["count"]


def test_a_bundled_sog_under_another_name_is_told_to_end_in_sog_and_then_reads(shared_data, tmp_path):
    """A zip (a bundled SOG) named .ply is refused by the PLY reader; the refusal says what it is
    and the name that reads it, ``.sog``, and following that advice reads all of meta.json's
    Gaussians."""
    from gs_mapping.cli.scene_io import load_scene
    from gs_mapping.errors import GsMappingError

    count = _bundle_playbot(shared_data, tmp_path / "playbot.ply")
    with pytest.raises(
        GsMappingError, match=r"a zip \(as a \.sog\) under another name: rename it to end in \.sog$"
    ):
        load_scene(str(tmp_path / "playbot.ply"))
    (tmp_path / "playbot.ply").rename(tmp_path / "playbot.sog")
    assert len(load_scene(str(tmp_path / "playbot.sog"))) == count == 500000


def test_a_damaged_ply_named_in_capitals_gets_the_ply_readers_words_not_rename_advice(shared_data, tmp_path):
    """``GUITAR.PLY`` is a PLY by its name (case does not matter): cut in half, it is refused with
    the PLY reader's own words (what ``guitar.ply`` cut the same way gets), never told that "a PLY
    file under another name" should be renamed to end in .ply."""
    from gs_mapping.cli.scene_io import load_scene
    from gs_mapping.errors import GsMappingError

    data = (shared_data / "splats" / "guitar.ply").read_bytes()
    said = []
    for name in ("GUITAR.PLY", "guitar.ply"):
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(GsMappingError) as e:
            load_scene(str(tmp_path / name))
        said.append(str(e.value).replace(str(tmp_path / name), "<path>"))
    assert "under another name" not in said[0]
    assert said[0] == said[1] and "truncated" in said[0]


# ------------------------------------------------------------------------------------------------
# compressed PLY: a chunk's infinite bound is the value at its own end of the range


def _ply(path, elements) -> None:
    """A binary little-endian PLY of ``elements`` [(name, structured array)], written by hand."""
    kinds = {"<f4": "float", "<u4": "uint", "|u1": "uchar"}
    head = ["ply", "format binary_little_endian 1.0"]
    for name, a in elements:
        head.append(f"element {name} {len(a)}")
        head += [f"property {kinds[a.dtype[p].str]} {p}" for p in a.dtype.names]
    body = b"".join(a.tobytes() for _, a in elements)
    path.write_bytes(("\n".join(head) + "\nend_header\n").encode() + body)


def test_flat_gaussians_whose_chunk_bounds_are_minus_inf_read_as_a_standard_plys_do(tmp_path):
    """Flat Gaussians (scale 0 on z: log-scale −inf, as 2D splats have) give a chunk whose z scale
    bounds are both −inf, packed at fraction 0 (and one at 1). PlayCanvas' description reads the
    bound itself there: −inf, which the suite's rule clamps exactly as it does a standard PLY's
    ``scale_2`` of −inf, not the NaN that −inf · 1 + −inf · 0 would give (a refusal)."""
    from gs_mapping.splat_formats import load_splats

    n = 4
    bounds = [f"{m}_{a}" for m in ("min", "max") for a in "xyz"]
    bounds += [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    chunk = np.zeros(1, [(b, "<f4") for b in bounds])
    for a, lo, hi in (("x", -1, 1), ("y", -2, 2), ("z", 0, 4)):
        chunk[f"min_{a}"], chunk[f"max_{a}"] = lo, hi
    chunk["min_scale_x"], chunk["max_scale_x"] = -3, -1
    chunk["min_scale_y"], chunk["max_scale_y"] = -5, -2
    chunk["min_scale_z"], chunk["max_scale_z"] = -np.inf, -np.inf
    fx = np.array([0, 2047, 1024, 7], np.uint32)  # 11-bit x fractions (also the scale's x)
    fy = np.array([0, 1023, 512, 3], np.uint32)  # 10-bit y
    fz = np.array([0, 2047, 0, 0], np.uint32)  # 11-bit z: the flat axis' fraction 0, and one 1
    vert = np.zeros(
        n, [(p, "<u4") for p in ("packed_position", "packed_rotation", "packed_scale", "packed_color")]
    )
    vert["packed_position"] = (fx << 21) | (fy << 11) | fz
    vert["packed_scale"] = (fx << 21) | (fy << 11) | fz
    vert["packed_rotation"] = (0 << 30) | (512 << 20) | (512 << 10) | 512  # w largest, x, y, z ≈ 0
    vert["packed_color"] = (200 << 24) | (100 << 16) | (50 << 8) | 128
    _ply(tmp_path / "flat.compressed.ply", [("chunk", chunk), ("vertex", vert)])

    # the same Gaussians from the description, in a standard PLY
    t = np.stack([fx / 2047, fy / 1023, fz / 2047], 1)
    lo = np.array([[-1, -2, 0]]), np.array([[-3, -5, -np.inf]])
    hi = np.array([[1, 2, 4]]), np.array([[-1, -2, -np.inf]])
    means = lo[0] + (hi[0] - lo[0]) * t
    with np.errstate(invalid="ignore"):  # (−inf − −inf between the bounds: not taken)
        log_scales = np.where(t == 0, lo[1], np.where(t == 1, hi[1], lo[1] + (hi[1] - lo[1]) * t))
    abc = (512 / 1023 - 0.5) * np.sqrt(2.0)
    names = "x y z scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3 opacity f_dc_0 f_dc_1 f_dc_2".split()
    std = np.zeros(n, [(p, "<f4") for p in names])
    for i, a in enumerate("xyz"):
        std[a], std[f"scale_{i}"] = means[:, i], log_scales[:, i]
    std["rot_0"] = np.sqrt(1 - 3 * abc**2)
    std["rot_1"] = std["rot_2"] = std["rot_3"] = abc
    std["opacity"] = -np.log(255 / 128 - 1)
    for i, c in enumerate((200, 100, 50)):
        std[f"f_dc_{i}"] = (c / 255 - 0.5) / 0.28209479177387814
    _ply(tmp_path / "flat.ply", [("vertex", std)])

    got, want = load_splats(tmp_path / "flat.compressed.ply"), load_splats(tmp_path / "flat.ply")
    assert np.array_equal(got.log_scales[:, 2], want.log_scales[:, 2])  # every one clamped alike
    assert np.abs(got.log_scales - want.log_scales).max() < 1e-6
    assert np.abs(got.means - want.means).max() < 1e-6


def test_a_compressed_ply_without_packed_color_is_named_as_such(tmp_path):
    """A vertex element with packed_position (PlayCanvas' mark) but no packed_color is a compressed
    PLY missing one of its four packed properties: the refusal names ``packed_color``, in one line
    (not the standard reader's complaint about x, y, z)."""
    from gs_mapping.errors import MapError
    from gs_mapping.splat_formats import load_splats

    bounds = [f"{m}_{a}" for m in ("min", "max") for a in "xyz"]
    bounds += [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    chunk = np.zeros(1, [(b, "<f4") for b in bounds])
    vert = np.zeros(3, [(p, "<u4") for p in ("packed_position", "packed_rotation", "packed_scale")])
    _ply(tmp_path / "c.compressed.ply", [("chunk", chunk), ("vertex", vert)])
    with pytest.raises(MapError, match=r"compressed PLY vertex element lacks 'packed_color'$") as e:
        load_splats(tmp_path / "c.compressed.ply")
    assert "\n" not in str(e.value)
