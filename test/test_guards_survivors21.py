"""Guards for decoder checks of the map codec that a mutation-testing pass found unguarded (21st
round): checks that only a hostile stream reaches, because the encoder never writes what they
refuse. Each stream or container here is built by hand from docs/format.md's text (plain mode-7
varints, mode-1 constants, a coded mode-2 stream whose symbols are chosen directly, the id-ordered
and octree sections of §4), and each test checks the decoder refuses it with a DecodeError naming
the fault — never a traceback, never a wrong map. Where the check is all that stands between the
stream and a wrong map, the container's header carries the count and checksum (§6) of the map the
decoder would build without it, so only the check refuses it:

- the faint lattice's bound |v| < 2^30 / F (section.py): a faint value past it wraps in int32 when
  multiplied back by F, onto a small valid code;
- the SH palette by first use (version 12): a first Gaussian that repeats, a repeat naming a row
  not yet met, a flag above 1, K − 1 and K + 1 new rows;
- the stream decoder (entropy.py): a context ≥ n_ctx, an escape naming more than 64 bits, a
  mantissa area shorter than its escapes' bits, the int32 lower bound (escaped, plain, constant);
- the octree descent's node cap on the numpy path (octree.py), before 8^depth nodes are sized."""

from __future__ import annotations

import dataclasses

import constriction
import numpy as np
import pytest
from test_guards_survivors3 import _leb128
from test_share_speedpaths import _use_compiled

from gs_map_share import section
from gs_map_share.bitio import Reader, Writer
from gs_map_share.container import LEVEL, TILES, Chunk, Header, pack
from gs_map_share.entropy import decode_stream, encode_stream
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QMap, QuantParams
from gs_map_share.snapshot import decode_snapshot
from gs_map_share.tables import put_table

Q0 = QuantParams.from_quality(0)  # faint lattice F = 5 below opacity code −1


# ------------------------------------------------------------------------------------------------
# hand-written streams (docs/format.md §3)


def _zz(v: int) -> int:
    return (v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1


def _plain(values, signed: bool = True) -> bytes:
    """Mode 7: n varints of the (zig-zag) values; mode 0 for no values."""
    values = [int(v) for v in values]
    if not values:
        return b"\x00"
    return b"\x07" + b"".join(_leb128(_zz(v) if signed else v) for v in values)


def _raw(values) -> bytes:
    """A predicted channel with choice 0 (raw): the choice byte, then the values' stream."""
    return b"\x00" + _plain(values)


def _coded(symbols, log2t: int, alphabet: int, mantissa: bytes) -> bytes:
    """Mode 2, one table: the given symbols (escapes included, whatever they name) ANS-coded with
    constriction under the table's rebuilt frequencies, then the mantissa area as given."""
    sym = np.asarray(symbols, np.int64)
    freq = np.bincount(sym, minlength=alphabet)
    w = Writer()
    w.u8(2)
    w.u8(log2t)
    w.varint(1)
    w.varint(alphabet)
    freq = put_table(w, freq, len(sym))
    coder = constriction.stream.stack.AnsCoder()
    model = constriction.stream.model.Categorical(freq.astype(np.float64) / freq.sum(), perfect=False)
    coder.encode_reverse(sym.astype(np.int32), model)
    words = coder.get_compressed()
    w.varint(len(words))
    w.raw(words.astype("<u4").tobytes())
    w.varint(len(mantissa))
    w.raw(mantissa)
    return w.getvalue()


# ------------------------------------------------------------------------------------------------
# hand-built snapshots (docs/format.md §4)


def _expected(params_sh: int, ids, pos, op, scale, dc, rest=None) -> QMap:
    n = len(ids)
    k = (params_sh + 1) ** 2 - 1
    return QMap(
        params_sh,
        np.asarray(ids, np.uint64),
        np.asarray(pos, np.int64).reshape(n, 3),
        np.zeros(n, np.uint8),
        np.asarray(op, np.int32),
        np.asarray(scale, np.int32).reshape(n, 3),
        np.full(n, 3, np.uint8),
        np.zeros((n, 3), np.int32),
        np.asarray(dc, np.int32).reshape(n, 3),
        np.zeros((n, k, 3), np.int32) if rest is None else np.asarray(rest, np.int32).reshape(n, k, 3),
    )


def _id_ordered(params: QuantParams, n: int, pos, op, scale_sent, dc_sent, sh: bytes, want: QMap) -> bytes:
    """A snapshot of one id-ordered section (ids 1..n) whose attribute channels are all raw plain
    streams of the values sent; the header carries ``want``'s count and checksum."""
    t = _leb128(n) + _leb128(1) + bytes([params.tile_bits, section.ID_ORDER])
    body = _leb128(1) + _plain([0] * (n - 1), signed=False)  # first id 1, then gaps of 0
    pos = np.asarray(pos, np.int64).reshape(n, 3)
    for i in range(3):
        body += _plain(np.diff(pos[:, i], prepend=0))
    body += _plain([0] * n, signed=False)  # level
    body += _raw(op)
    for i in range(3):
        body += _raw(np.asarray(scale_sent).reshape(n, 3)[:, i])
    body += _raw([3] * n)  # rotation index: the identity code
    for _ in range(3):
        body += _raw([0] * n)
    for i in range(3):
        body += _raw(np.asarray(dc_sent).reshape(n, 3)[:, i])
    body += sh
    h = Header(1, 1, 0, len(want), want.checksum(), want.sh_degree, 1, params)
    return pack(h, [Chunk(TILES, 0, t), Chunk(LEVEL, 0, body)])


# ------------------------------------------------------------------------------------------------
# the faint lattice's bound (section.py, _faint_put)


def test_faint_scale_on_its_lattice_decodes_multiplied_back():
    """The builder's valid case: a faint Gaussian (F = 5, opacity code −2 < faint_below −1) whose
    log-scales are sent as 1, −1, 2 decodes to 5, −5, 10 (docs §4: multiplied back by F)."""
    assert (Q0.faint_factor, Q0.faint_below) == (5, -1)
    ok = _expected(0, [1], [[10, 20, 30]], [-2], [[5, -5, 10]], [[0, 0, 0]])
    _, got = decode_snapshot(_id_ordered(Q0, 1, [[10, 20, 30]], [-2], [[1, -1, 2]], [[0, 0, 0]], b"", ok))
    assert got.equals(ok)


@pytest.mark.parametrize(
    "sent",
    [
        858993460,  # 5 × that = 2^32 + 4: wraps in int32 onto the valid code 4
        -858993460,  # onto −4
        300000000,  # 5 × that = 1.5e9: no wrap, but past the bound all the same
    ],
)
def test_faint_scale_past_the_lattice_bound_is_refused_not_wrapped(sent):
    """docs §4: a faint value travels divided by F and must satisfy |v| < 2^30 / F. A faint
    Gaussian's first log-scale sent past that (but within the stream's own limit 2^30) is refused
    by that rule. The header carries the checksum of the map that multiplying back in int32 gives,
    so where that wraps onto a valid code only the bound stands between the stream and a wrong
    map."""
    assert abs(sent) < 1 << 30 and abs(sent) >= (1 << 30) / 5
    as_int32 = (5 * sent + (1 << 31)) % (1 << 32) - (1 << 31)
    wrapped = _expected(0, [1], [[10, 20, 30]], [-2], [[as_int32, 5, 5]], [[0, 0, 0]])
    with pytest.raises(DecodeError, match="faint value outside the lattice range"):
        decode_snapshot(_id_ordered(Q0, 1, [[10, 20, 30]], [-2], [[sent, 1, 1]], [[0, 0, 0]], b"", wrapped))


# ------------------------------------------------------------------------------------------------
# the SH palette by first use (section.py, _get_first_uses), through a whole container

ROWS = np.array([[1, 2, 3, -1, -2, -3, 4, 5, 6], [-7, 0, 7, 8, -8, 0, 1, 1, -1]])  # K = 2 rows, SH degree 1


def _palette_snapshot(k: int, flags, repeats, idx_if_taken) -> bytes:
    """4 Gaussians of SH degree 1 whose higher SH are a palette by first use (byte 9) of ``k``
    rows (ROWS, cycled), the flags and repeats streams as given; the header carries the checksum of
    the map whose rows are ``idx_if_taken`` (what a decoder without the check would build)."""
    rows = ROWS[np.arange(k) % 2]
    sh = bytes([section.PALETTE_FIRST_USE]) + _leb128(k)
    for c in range(9):  # per coefficient, its three channels: column 3·j + channel
        sh += _plain(rows[:, c])
    sh += _plain(flags, signed=False) + _plain(repeats, signed=False)
    n = 4
    pos = [[i, 2 * i, 3 * i] for i in range(n)]
    idx = np.asarray(idx_if_taken)
    want = _expected(
        1, range(1, n + 1), pos, [5] * n, [[1, 1, 1]] * n, [[0, 0, 0]] * n, rows[idx].reshape(n, 3, 3)
    )
    return _id_ordered(Q0, n, pos, [5] * n, [[1, 1, 1]] * n, [[0, 0, 0]] * n, sh, want)


def test_palette_by_first_use_hand_built_decodes():
    """The builder's valid case: flags 1 0 1 0, repeats 0 1 → rows 0 0 1 1 (docs §4)."""
    _, got = decode_snapshot(_palette_snapshot(2, [1, 0, 1, 0], [0, 1], [0, 0, 1, 1]))
    assert np.array_equal(got.rest.reshape(4, 9), ROWS[[0, 0, 1, 1]])


@pytest.mark.parametrize(
    "k, flags, repeats, taken, why",
    [
        # the first Gaussian repeats a row (none met yet): "the first flag must be 1"
        (2, [0, 1, 1, 0], [0, 0], [0, 0, 1, 0], "before its first use"),
        # the second Gaussian repeats row 1, met only at the third
        (2, [1, 0, 1, 0], [1, 0], [0, 1, 1, 0], "before its first use"),
        # a flag of 2 (flags are ≤ 1): read as "new" it would give rows 0 1 0 1
        (2, [1, 2, 0, 0], [0, 1], [0, 1, 0, 1], "beyond"),
        # K + 1 and K − 1 new rows: "exactly K flags must be 1"
        (2, [1, 1, 1, 0], [0], [0, 1, 0, 0], "do not name each row once"),
        (2, [1, 0, 0, 0], [0, 0, 0], [0, 0, 0, 0], "do not name each row once"),
    ],
)
def test_palette_by_first_use_refuses_what_it_cannot_mean(k, flags, repeats, taken, why):
    """docs §4 (version 12): the first flag must be 1, exactly K flags 1, flags ≤ 1, and every
    repeat must name a row already met — else a DecodeError naming it (not the generic net's
    "malformed data", not a map)."""
    with pytest.raises(DecodeError, match=why):
        decode_snapshot(_palette_snapshot(k, flags, repeats, taken))


# ------------------------------------------------------------------------------------------------
# the stream decoder (entropy.py)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("bad", [2, -1])
def test_stream_context_outside_its_count_is_refused(bad, compiled, monkeypatch):
    """A stream's contexts come from structure the decoder already holds and must lie in
    0..n_ctx − 1 (docs §3): a context array holding n_ctx (or −1) is a DecodeError, not values
    taken from no table (the plain path would leave them uninitialised)."""
    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(4)
    values = rng.integers(-20, 20, 300)
    ctx = np.arange(300) % 2
    w = Writer()
    encode_stream(w, values, ctx=ctx, n_ctx=2)
    data = w.getvalue()
    assert data[0] == 2 and data[2] == 2  # mode 2, two tables
    assert np.array_equal(decode_stream(Reader(data), 300, ctx=ctx, n_ctx=2, int32=True), values)
    hostile = ctx.copy()
    hostile[7] = bad
    with pytest.raises(DecodeError, match=r"context outside 0\.\.1"):
        decode_stream(Reader(data), 300, ctx=hostile, n_ctx=2, int32=True)


# an escape symbol s ≥ T names bitlen(u) = s − T + t + 1 (docs §3): with t = 8 (T = 256), 311 names
# 64 bits (the most a uint64 has), 312 names 65
@pytest.mark.parametrize("signed", [False, True])
def test_escape_naming_more_than_64_bits_is_refused(signed):
    """Symbol 311 with 63 mantissa bits of ones is u = 2^64 − 1 (decoded); symbol 312 would name
    65 bits and is a DecodeError (without the check, its implied top bit shifts out of a uint64
    and the stream decodes to a value it never held)."""
    ones = b"\xff" * 8
    ok = decode_stream(Reader(_coded([0, 311, 1], 8, 320, ones[:8])), 3, signed=signed)
    u = np.array([0, (1 << 64) - 1, 1], np.uint64)
    if signed:
        assert ok.tolist() == [0, -(1 << 63), -1]  # zig-zag of u
    else:
        assert np.array_equal(ok, u)
    with pytest.raises(DecodeError, match="more than 64 bits"):
        decode_stream(Reader(_coded([0, 312, 1], 8, 320, ones)), 3, signed=signed)


@pytest.mark.parametrize("short", [1, 2])
@pytest.mark.parametrize("signed, int32", [(False, False), (True, False), (True, True)])
def test_mantissa_area_shorter_than_its_escapes_is_refused(signed, int32, short):
    """An escape symbol naming bitlen 25 (t = 6: symbol 64 + 25 − 7 = 82) needs 24 mantissa bits:
    with exactly them (3 bytes) the value is 2^24 + the bits; with one or two bytes fewer it is a
    DecodeError naming the shortfall (without the check the missing bits read as zeros: a wrong
    value)."""
    sym = [3, 82, 1]
    mant = (0xABCDEF).to_bytes(3, "little")
    u = (1 << 24) | 0xABCDEF
    got = decode_stream(Reader(_coded(sym, 6, 84, mant)), 3, signed=signed, int32=int32)
    want = [3, u, 1] if not signed else [-2, (u >> 1) ^ -(u & 1), -1]
    assert [int(x) for x in got] == want
    with pytest.raises(DecodeError, match=f"mantissa needs 24 bits, stream holds {8 * (3 - short)}"):
        decode_stream(Reader(_coded(sym, 6, 84, mant[: 3 - short])), 3, signed=signed, int32=int32)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("mode", ["escaped", "plain", "constant"])
def test_int32_stream_below_its_range_is_refused(mode, compiled, monkeypatch):
    """An int32 stream's values must fit int32 (docs §1: every channel is int32): −2^31 decodes,
    −2^31 − 1 (zig-zag 2^32 + 1) is a DecodeError, in each stream form that can hold it — not
    stored into the int32 array, where it would wrap to 2^31 − 1."""
    _use_compiled(compiled, monkeypatch)

    def stream(v: int) -> bytes:
        u = _zz(v)
        if mode == "plain":
            return b"\x07" + _leb128(0) + _leb128(u)
        if mode == "constant":
            return b"\x01" + _leb128(u)
        bl = u.bit_length()  # t = 6: symbol 64 + bl − 7, then the bl − 1 bits under the top one
        return _coded([0, 64 + bl - 7], 6, 64 + bl - 6, (u - (1 << (bl - 1))).to_bytes(5, "little"))

    n = 1 if mode == "constant" else 2
    low = -(1 << 31)
    got = decode_stream(Reader(stream(low)), n, signed=True, int32=True)
    assert got.dtype == np.int32 and int(got[-1]) == low
    with pytest.raises(DecodeError, match="outside the int32 range"):
        decode_stream(Reader(stream(low - 1)), n, signed=True, int32=True)


# ------------------------------------------------------------------------------------------------
# the octree descent's node cap (octree.py, descend: its numpy path)


def _octree_snapshot(n: int, occupancy: list[int], want: QMap | None = None) -> bytes:
    """A snapshot of one octree section (docs §4) of ``n`` Gaussians in tile (0, 0, 0) at tile
    depth 3: depth d's occupancy bytes all ``occupancy[d]`` (mode 1), then one Gaussian per voxel,
    ids 1..n in octree order, every attribute raw and constant."""
    p = dataclasses.replace(Q0, tile_bits=3)
    tiles = _leb128(n) + _leb128(1) + bytes([p.tile_bits, section.OCTREE]) + _leb128(1) + bytes(24)
    level = b"".join(b"\x01" + _leb128(o) for o in occupancy)
    level += b"\x01\x00" + _leb128(1) + b"\x01" + _leb128(_zz(1))  # counts − 1 = 0; ids 1, +1, …
    level += b"\x01\x00" + b"\x00\x01" + _leb128(_zz(5))  # level 0; opacity 5
    level += (b"\x00\x01" + _leb128(_zz(1))) * 3 + b"\x00\x01" + _leb128(_zz(3))  # scales 1; rotation index 3
    level += b"\x00\x01\x00" * 6  # rotation components and DC 0
    crc = 0 if want is None else want.checksum()
    h = Header(1, 1, 0, n, crc, 0, 1, p)
    return pack(h, [Chunk(TILES, 0, tiles), Chunk(LEVEL, 0, level)])


@pytest.mark.parametrize("compiled", [False, True])
def test_octree_of_as_many_nodes_as_gaussians_decodes(compiled, monkeypatch):
    """The cap's boundary from below: 8 Gaussians, occupancy 255 then 1, 1 (8 nodes at each depth
    = n) decode to one Gaussian per octant, at x·4, y·4, z·4 (octant = x·4 + y·2 + z, docs §4)."""
    _use_compiled(compiled, monkeypatch)
    o = np.arange(8)
    pos = np.stack([(o >> 2) & 1, (o >> 1) & 1, o & 1], axis=1) * 4
    want = _expected(0, range(1, 9), pos, [5] * 8, [[1, 1, 1]] * 8, [[0, 0, 0]] * 8)
    _, got = decode_snapshot(_octree_snapshot(8, [255, 1, 1], want))
    assert got.equals(want)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("n", [2, 7])
def test_octree_occupancy_naming_more_nodes_than_gaussians_is_refused(n, compiled, monkeypatch):
    """docs §2: node counts are bounded by the Gaussian count before the arrays they size are
    allocated. Occupancy 255 at every depth names 8 nodes at depth 1 (and 8^d at depth d: a memory
    bomb at tile depth 20): for n = 7 Gaussians (one short) or 2 it is refused at depth 1, naming
    the fault (not later, as counts that do not add up)."""
    _use_compiled(compiled, monkeypatch)
    with pytest.raises(DecodeError, match=f"depth 1: 8 nodes, more than the {n} Gaussians"):
        decode_snapshot(_octree_snapshot(n, [255, 255, 255]))
