"""Guards for behaviours a random-sample mutation pass (24th round, 60 lines drawn from gs_map_share,
the splat format readers and the PLY reader) found unguarded: the SPZ writer's version check, the
``.splat`` reader's row named in a negative-scale error, dequantisation past the first block of
rows, a stream context holding exactly one value, a region request of exactly MAX_REQUEST bytes,
the PLY reader's refusal of bytes that are not a PLY, the faint lattice's strict "below
faint_below" test, the compiled decoder's ``limit`` on direct values and the id named for a
duplicate in an octree section. Each test compares the component with an independent reference
(the rule a docstring or docs/format.md states, a hand-built input with a hand-computed answer,
numpy's float32 product or its count of repeated ids), so that breaking the line it guards makes
it fail."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.errors import MapError

# ------------------------------------------------------------------------------------------------
# SPZ writer: versions 2-4 only (spz.py module docstring: "versions 1–4 read, 2–4 written")


@pytest.mark.parametrize("version", [1, 5, 0])
def test_spz_writer_refuses_a_version_it_cannot_write(version):
    # version 1 would get a legacy header saying 1 over version 2's 24-bit positions (a reader
    # then takes them as float16); 5 a header no reader knows
    from gs_mapping.splat_formats.spz import write_spz

    g = synthetic_map(20, 0, seed=1)
    with pytest.raises(MapError, match="version must be 2, 3 or 4"):
        write_spz(g, version=version)


# ------------------------------------------------------------------------------------------------
# .splat reader: a negative scale names the first row (in file order) that has one


def test_splat_negative_scale_names_the_first_such_row():
    from gs_mapping.splat_formats.antimatter_splat import RECORD, read_splat

    rec = np.zeros(5, RECORD)
    rec["scale"] = 0.5
    rec["rgba"] = 200
    rec["rot"] = (255, 128, 128, 128)
    rec["scale"][1, 2] = -0.1  # rows 1 and 3 are bad: the message names row 1
    rec["scale"][3, 0] = -2.0
    with pytest.raises(MapError, match=r"scale of Gaussian 1 \(row in file\) is negative"):
        read_splat(rec.tobytes(), "hand.splat")


# ------------------------------------------------------------------------------------------------
# dequantize_fields: float32(v) * float32(step) on every row, past the first 16384-row block


def test_dequantised_colour_is_the_float32_product_on_every_row_of_a_large_map():
    from gs_map_share.quantize import QuantParams, dequantize_fields, to_qmap

    p = QuantParams()
    q = to_qmap(synthetic_map(20000, 0, seed=3), p)  # > _BLOCK rows, SH degree 0 (row blocks)
    sh = dequantize_fields(q, p)["sh"]
    # the docstring's rule, computed in numpy: one exactly rounded float32 product
    want = q.dc.astype(np.float32) * np.float32(p.dc_step)
    assert sh.shape == (len(q), 1, 3)
    np.testing.assert_array_equal(sh[:, 0, :], want)


# ------------------------------------------------------------------------------------------------
# entropy streams: a context holding exactly one value still decodes to it


def test_stream_context_with_a_single_value_round_trips():
    from gs_map_share import entropy
    from gs_map_share.bitio import Reader, Writer

    vals = np.array([3, -1, 4, -1, 5, 9, -2, 6, 5, -30], np.int64)
    ctx = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2])  # context 2: one value (and a large one)
    w = Writer()
    entropy.encode_stream(w, vals, True, 6, ctx=ctx, n_ctx=3)
    got = entropy.decode_stream(Reader(w.getvalue(), "t"), len(vals), True, ctx=ctx, n_ctx=3)
    assert got.tolist() == vals.tolist()


# ------------------------------------------------------------------------------------------------
# region requests: "at most MAX_REQUEST" bytes, the bound itself included


def test_region_request_of_exactly_max_request_bytes_is_read():
    from gs_map_share.region import MAX_REQUEST, RegionError, RegionRequest

    body = b'{"x": 1.5, "y": -2.0, "radius_m": 10.0}'
    data = body + b" " * (MAX_REQUEST - len(body))  # JSON allows trailing white space
    assert len(data) == MAX_REQUEST
    r = RegionRequest.from_bytes(data, 50.0, 1 << 20)
    assert (r.x, r.y, r.radius_m) == (1.5, -2.0, 10.0)
    with pytest.raises(RegionError, match=f"at most {MAX_REQUEST}"):
        RegionRequest.from_bytes(data + b" ", 50.0, 1 << 20)


# ------------------------------------------------------------------------------------------------
# PLY reader: bytes without the magic or without end_header are "not a PLY file" (a MapError)


@pytest.mark.parametrize(
    "raw",
    [
        b"hello, this is no PLY at all\n",  # neither magic nor end_header
        b"plx\nformat ascii 1.0\nelement vertex 0\nend_header\n",  # end_header, no magic
        b"ply\nformat ascii 1.0\nelement vertex 0\n",  # magic, no end_header
    ],
)
def test_ply_reader_refuses_bytes_that_are_not_a_ply(raw):
    from gs_mapping.ply import read_elements

    with pytest.raises(MapError, match="not a PLY file"):
        read_elements(raw, "x.ply")


# ------------------------------------------------------------------------------------------------
# faint lattice: "opacity code below faint_below" (docs/format.md), strictly below


def test_faint_lattice_is_strictly_below_faint_below():
    from gs_map_share.quantize import QuantParams, attribute_lattices

    p = QuantParams()  # faint_factor 2 below code -14 (the defaults)
    f, b = p.faint_factor, p.faint_below
    assert f == 2
    logits = np.array([b, b - 1], np.float64) * p.opacity_step  # codes b (not faint), b − 1 (faint)
    log_scales = np.full((2, 3), 3.2 * p.scale_step)
    dc = np.full((2, 3), 3.2 * p.dc_step)
    op, scale, dcq = attribute_lattices(logits, log_scales, dc, p)
    assert op.tolist() == [b, b - 1]
    # docs/format.md: faint v = F · rint(x / (F · step)) = 2 · rint(1.6) = 4; otherwise rint(3.2) = 3
    assert scale.tolist() == [[3, 3, 3], [4, 4, 4]]
    assert dcq.tolist() == [[3, 3, 3], [4, 4, 4]]


# ------------------------------------------------------------------------------------------------
# decode_stream's limit on direct values, on the compiled path (a table wider than the direct
# symbols, none of its escape symbols used: only a crafted stream has one)


def _stream_with_unused_escapes(vals: np.ndarray, log2t: int) -> bytes:
    """encode_stream's mode-2 layout (one context) for ``vals`` (all direct), but with a table
    that lists two escape symbols of frequency 0: the alphabet is wider than 2**log2t."""
    from gs_map_share import entropy
    from gs_map_share.bitio import Writer
    from gs_map_share.tables import put_table

    t = 1 << log2t
    sym = entropy.zigzag(vals).astype(np.int64)
    assert sym.max() < t
    freq = np.zeros(t + 2, np.int64)
    freq[: sym.max() + 1] = np.bincount(sym)
    w = Writer()
    w.u8(2)
    w.u8(log2t)
    w.varint(1)
    w.varint(len(freq))
    freq = put_table(w, freq, len(sym))
    model = constriction.stream.model.Categorical(freq.astype(np.float64) / float(freq.sum()), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(sym.astype(np.int32), model)
    words = coder.get_compressed()
    w.varint(len(words))
    w.raw(words.astype("<u4").tobytes())
    w.blob(b"")
    return w.getvalue()


@pytest.mark.parametrize("int32", [True, False])
def test_limit_refuses_a_direct_value_beyond_it_with_escapes_in_the_table(int32):
    from gs_map_share import entropy
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError

    vals = np.array([1, -3, 25, 0, 2, -5, 7, 1] * 4, np.int64)  # direct at log2t 6 (|v| ≤ 32)
    data = _stream_with_unused_escapes(vals, 6)
    # the stream itself is sound: without a limit, or with one it meets, it decodes to vals
    assert entropy.decode_stream(Reader(data, "t"), len(vals), True, int32=int32).tolist() == vals.tolist()
    ok = entropy.decode_stream(Reader(data, "t"), len(vals), True, int32=int32, limit=25)
    assert ok.tolist() == vals.tolist()
    # decode_stream's docstring: every |value| must be at most limit, else DecodeError
    # (20: between t // 4 and t // 2, the bound direct signed symbols give)
    with pytest.raises(DecodeError):
        entropy.decode_stream(Reader(data, "t"), len(vals), True, int32=int32, limit=20)


# ------------------------------------------------------------------------------------------------
# decode_section: duplicate ids in an octree section are refused, naming the lowest repeated id


def test_octree_section_with_duplicate_ids_names_the_lowest_repeat():
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.section import decode_section, encode_section

    p = QuantParams()
    q = to_qmap(synthetic_map(400, 0, seed=0), p)
    ids = q.ids.copy()
    ids[10], ids[200] = ids[11], ids[201]  # two ids repeated (the encoder does not check ids)
    vals, counts = np.unique(ids, return_counts=True)
    lowest = int(vals[counts > 1].min())  # the reference: numpy's count of each id
    chunks, _ = encode_section(q.with_ids(ids), p, 3)  # levels of detail: octree geometry
    with pytest.raises(DecodeError, match=rf"duplicate Gaussian id {lowest}$"):
        decode_section(chunks, p, 0, 10_000)
