"""gs_map_share frequency tables (tables.py): the rebuilt table is what both sides code with, a
present symbol never rebuilds to zero, and hostile table bytes only raise DecodeError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_map_share import jit, tables
from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import decode_stream, encode_stream
from gs_map_share.errors import DecodeError


def _table(freq, n=None) -> tuple[bytes, np.ndarray]:
    w = Writer()
    rec = tables.put_table(w, np.asarray(freq, np.int64), n)
    return w.getvalue(), rec


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1 << 16), min_size=2, max_size=320).filter(lambda f: sum(f) > 0))
def test_round_trip_and_present_symbols_stay_present(freq):
    data, rec = _table(freq)
    r = Reader(data)
    got = tables.get_table(r, len(freq))
    r.end()
    assert np.array_equal(got, rec)
    f = np.asarray(freq)
    assert np.all((rec > 0) == (f > 0))
    # kept bits: the rebuilt value shares the leading bits and lies in the dropped range
    e = np.array([int(x).bit_length() for x in f])
    assert np.all(np.array([int(x).bit_length() for x in rec]) == e)


def test_every_precision_decodes():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 5000, 100)
    for p in range(1, tables.MAX_FREQ_BITS + 1):
        e = tables._bitlen(f)
        rec = tables._rebuild(f, e, p)
        assert np.all((rec > 0) == (f > 0)) and np.all(np.abs(rec - f) < (1 << np.maximum(e - p, 0)))
    data, rec = _table(f)
    assert np.array_equal(tables.get_table(Reader(data), len(f)), rec)


def test_small_stream_tables_are_small():
    """A short stream over a wide alphabet (the octree's occupancy bytes of a small map): the table
    costs a few bits per symbol, not a byte each plus a presence bitmap."""
    rng = np.random.default_rng(1)
    vals = rng.integers(1, 256, 300)
    w = Writer()
    encode_stream(w, vals, False, 8)
    data = w.getvalue()
    assert np.array_equal(decode_stream(Reader(data), len(vals), False), vals.astype(np.uint64))
    ideal = 300 * np.log2(256) / 8  # uniform bytes
    assert len(data) < ideal + 120, len(data)


def test_large_counts_are_modelled_closely():
    """A long skewed stream: the chosen precision keeps the data within 0.5 % of its entropy."""
    rng = np.random.default_rng(2)
    vals = np.minimum(rng.geometric(0.3, 200000) - 1, 60)
    w = Writer()
    encode_stream(w, vals, False, 6)
    _, c = np.unique(vals, return_counts=True)
    h = -(c * np.log2(c / c.sum())).sum() / 8
    assert len(w.getvalue()) < 1.005 * h + 64


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda b: bytes([0]) + b[1:], "precision"),
        (lambda b: bytes([18]) + b[1:], "precision"),
        (lambda b: b[:1] + bytes([b[1] + 1]) + b[2:] + b"\0", "trailing"),
        (lambda b: b[:-1], "needs"),
        (lambda b: b[:1] + bytes([b[1] - 1]) + b[2:-1], "past its bits"),
    ],
)
def test_bad_tables_are_refused(mutate, msg):
    data, _ = _table([5, 0, 3, 1000, 7])
    with pytest.raises(DecodeError, match=msg):
        tables.get_table(Reader(mutate(data)), 5)


def test_all_zero_and_overlong_tables_are_refused():
    w = Writer()
    w.u8(4)
    w.blob(bytes(100))  # far more bytes than 2 entries can use: refused before unpacking
    with pytest.raises(DecodeError, match="100 bytes for 2 symbols"):
        tables.get_table(Reader(w.getvalue()), 2)
    w = Writer()
    w.u8(4)
    w.blob(bytes([0xFF]))  # eight ones: z = 0 each → every bit length 0 → sums to zero
    with pytest.raises(DecodeError, match="sums to zero"):
        tables.get_table(Reader(w.getvalue()), 8)
    w = Writer()
    w.u8(4)
    w.blob(bytes([0, 0]))  # a run of zeros longer than any valid entry
    with pytest.raises(DecodeError, match="too long"):
        tables.get_table(Reader(w.getvalue()), 1)
    w = Writer()
    w.u8(17)
    # z = 36 (bit length +18): exp-Golomb m = 6 → 5 zeros, a one, 5 bits of 37 below its top bit
    bits = [0] * 5 + [1] + [(37 >> j) & 1 for j in range(5)]
    w.blob(np.packbits(np.array(bits, np.uint8), bitorder="little").tobytes())
    with pytest.raises(DecodeError, match="bit length"):
        tables.get_table(Reader(w.getvalue()), 1)


def _read_both(data: bytes, a: int, monkeypatch):
    """get_table's result (array or the DecodeError text) with the compiled loop and without it."""
    out = []
    for compiled in (jit.kernels(), False):
        monkeypatch.setattr(jit, "_kernels", compiled)
        try:
            r = Reader(data)
            out.append(tables.get_table(r, a).tolist())
        except DecodeError as exc:
            out.append(str(exc))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 1 << 16), min_size=2, max_size=320).filter(lambda f: sum(f) > 0),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["none", "flip", "truncate", "precision", "count"]),
)
def test_compiled_table_reader_equals_the_plain_one(freq, seed, edit):
    pytest.importorskip("numba")
    if jit.switched_off():
        pytest.skip("GS_MAP_SHARE_NUMBA=0: the compiled loops are switched off")
    assert jit.kernels() is not None, "numba is installed: the compiled loop must be in use"
    rng = np.random.default_rng(seed)
    data = bytearray(_table(freq)[0])
    a = len(freq)
    if edit == "flip" and len(data) > 2:
        k = int(rng.integers(2, len(data)))
        data[k] ^= 1 << int(rng.integers(8))
    elif edit == "truncate" and len(data) > 2:
        data = data[: int(rng.integers(2, len(data)))]
        data[1] = min(data[1], len(data) - 2)  # the blob's length byte: keep it inside the data
    elif edit == "precision":
        data[0] = int(rng.integers(1, tables.MAX_FREQ_BITS + 1))
    elif edit == "count":
        a = max(1, a + int(rng.integers(-3, 4)))
    with pytest.MonkeyPatch.context() as mp:
        fast, plain = _read_both(bytes(data), a, mp)
    assert fast == plain
