"""Frequency tables of coded streams, written compactly.

A coded stream carries one table of A symbol frequencies per context. Small maps and deltas have
many short streams, where a plain table (a varint per symbol) can outweigh the data it models, so a
table is written as bits:

    u8 P          significant bits kept per frequency, 1..17
    blob          bits, LSB-first. For each symbol i = 0..A-1, with e_i the bit length of its
                  frequency (0 for an absent symbol) and e_-1 = 0:
                  z_i = zigzag(e_i - e_{i-1}) as exp-Golomb of order 0 (m - 1 zero bits, a one
                  bit, then the m - 1 bits of z_i + 1 below its leading one, low bit first;
                  m = bit length of z_i + 1); then, when k_i = min(e_i, P) ≥ 2, the k_i - 1 bits of
                  the frequency below its leading one that are kept (low bit first)

The decoder rebuilds f_i = 0 for e_i = 0, else ``top << d`` plus half of the dropped range
(``1 << (d - 1)`` when d > 0), where d = e_i - k_i and ``top`` = the leading one and the kept bits.
The encoder picks P per table for the smallest table plus estimated data, and codes the data with
the rebuilt frequencies: both sides use the same model, and a present symbol never rebuilds to 0.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .bitio import Reader, Writer, pack_bits

MAX_FREQ_BITS = 17  # frequencies are at most 2**16 (entropy._FREQ_TOTAL), i.e. 17 bits
TABLE_BITS_PER_SYMBOL = 8  # the encoder's size estimate for a present symbol's table entry
_MAX_ENTRY_BITS = 11 + MAX_FREQ_BITS - 1  # exp-Golomb of z ≤ 34 (11 bits) + kept bits


def _bitlen(x: np.ndarray) -> np.ndarray:
    """Bit length of small non-negative int64 values (< 2**32): frexp's exponent, exact for them."""
    return np.frexp(np.asarray(x, np.int64).astype(np.float64))[1].astype(np.int64)


def _rebuild(f: np.ndarray, e: np.ndarray, p) -> np.ndarray:
    """The frequencies a decoder rebuilds at precision ``p`` (an int, or a column of them: a row each)."""
    k = np.minimum(e, p)
    d = e - k
    top = f >> d
    return np.where(e > 0, (top << d) + np.where(d > 0, 1 << np.maximum(d - 1, 0), 0), 0)


def _top_precision(e: np.ndarray) -> int:
    """The longest frequency's bit length (at least 1): beyond it no precision drops a bit."""
    return max(1, min(MAX_FREQ_BITS, int(e.max())))


def _precision(f: np.ndarray, e: np.ndarray, scale: float) -> int:
    """The kept precision p (1.. :func:`_top_precision`) whose table bits plus estimated data bits
    are fewest; on a near tie the lower. The bits every precision spends (the exp-Golomb codes)
    are left out, and each row's data bits are summed symbol by symbol:
    ``kernels.table_precision`` does the same arithmetic in the same order."""
    ps = np.arange(1, _top_precision(e) + 1)[:, None]
    recs = _rebuild(f, e, ps)
    present = f > 0
    terms = f[present] * np.log2(recs[:, present] / recs.sum(axis=1, keepdims=True))
    data = np.cumsum(terms, axis=1)[:, -1] if terms.shape[1] else np.zeros(len(ps))
    costs = np.maximum(np.minimum(e, ps) - 1, 0).sum(axis=1) - data * scale
    best = 0
    for i in range(1, len(costs)):
        if costs[i] < costs[best] - 1e-9:
            best = i
    return int(ps[best, 0])


def put_table(w: Writer, freq: np.ndarray, n_values: int | None = None) -> np.ndarray:
    """Write the table of ``freq`` (int, each ≤ 2**16) and return the frequencies the decoder will
    rebuild (code the data with those). ``n_values``: how many values the table models (freq may
    be scaled down from their counts), to weigh table bits against data bits."""
    f = np.asarray(freq, np.int64)
    e = _bitlen(f)
    total = float(f.sum())
    scale = (n_values or total) / total
    kernels = jit.kernels()
    if kernels is not None:  # the choice and the bits in two compiled passes (same bytes)
        p = kernels.table_precision(f, e, scale, _top_precision(e))
        rec = np.empty(len(f), np.int64)
        buf = np.empty(len(f) * _MAX_ENTRY_BITS // 8 + 8, np.uint8)
        nbytes = kernels.table_blob(f, e, p, rec, buf)
        w.u8(p)
        w.blob(buf[:nbytes].tobytes())
        return rec
    p = _precision(f, e, scale)
    rec = _rebuild(f, e, p)
    z = np.diff(e, prepend=0)
    z = (z << 1) ^ (z >> 63)
    m = _bitlen(z + 1)  # exp-Golomb: 2m - 1 bits per symbol
    # per symbol three bit fields: the exp-Golomb prefix (m - 1 zeros, a one), the bits of z + 1
    # below its leading one, the kept frequency bits below the leading one
    k = np.minimum(e, p)
    kept = np.maximum(k - 1, 0)
    vals = np.stack([1 << (m - 1), (z + 1) & ((1 << (m - 1)) - 1), (f >> (e - k)) & ((1 << kept) - 1)], 1)
    nbits = np.stack([m, m - 1, kept], 1)
    w.u8(p)
    w.blob(pack_bits(vals.reshape(-1).astype(np.uint64), nbits.reshape(-1)))
    return rec


def _prefix_table() -> list[int]:
    """For the 13 bits from an entry's start: ``adv | (dz + 64) << 4`` (adv = 2m − 1 bits of its
    exp-Golomb code, dz = the bit-length change it codes), or −1 when the first 7 bits are zeros."""
    out = []
    for v in range(1 << 13):
        m = (v & -v).bit_length()
        if m == 0 or m > 7:
            out.append(-1)
            continue
        z = ((v >> m) & ((1 << (m - 1)) - 1) | (1 << (m - 1))) - 1
        out.append((2 * m - 1) | (((z >> 1) ^ -(z & 1)) + 64) << 4)
    return out


def _rebuild_tables() -> list[tuple[list[int], list[int], list[int], list[int]]]:
    """Per precision p, per bit length e: (kept bits k − 1, their mask, dropped bits d, the value
    without the kept bits: the leading one shifted up plus half the dropped range)."""
    out = []
    for p in range(MAX_FREQ_BITS + 1):
        kl, mask, sh, base = [0], [0], [0], [0]
        for e in range(1, MAX_FREQ_BITS + 1):
            k = min(e, max(p, 1))
            d = e - k
            kl.append(k - 1)
            mask.append((1 << (k - 1)) - 1)
            sh.append(d)
            base.append(((1 << (k - 1)) << d) + ((1 << (d - 1)) if d else 0))
        out.append((kl, mask, sh, base))
    return out


_PREFIX = _prefix_table()
_REBUILD = _rebuild_tables()
# the same tables as int64 arrays, for the compiled loop: (prefix, kl, mask, sh, base) per precision
_REBUILD_ARRAYS = [tuple(np.array(t, np.int64) for t in (_PREFIX, *tables)) for tables in _REBUILD]
# for entropy's one-call stream reader (kernels.coded_stream): the prefix table, and kl, mask, sh,
# base stacked as [row, precision, bit length]
_TABLE_ARRAYS = (
    np.array(_PREFIX, np.int64),
    np.array([list(t) for t in zip(*_REBUILD, strict=True)], np.int64),
)


_ERRORS = {
    1: "frequency table runs past its bits",
    2: "frequency table entry too long",
}


def _read_entries_py(win, p: int, nb: int, a: int) -> tuple[int, int, list[int]]:
    """(code, value, entries): code 0 = read (value = bits used), 1/2 = :data:`_ERRORS`, 3 = a bit
    length outside 0..MAX_FREQ_BITS (value = that length)."""
    prefix = _PREFIX
    kl, mask, sh, base = _REBUILD[p]
    win = win.tolist()
    pos, e, i = 0, 0, 0
    out = [0] * a
    while i < a:
        x = win[pos >> 3] >> (pos & 7)
        if e == 0 and x & 1:  # a run of absent symbols (z = 0): one bit each
            run = min(((x + 1) & ~x).bit_length() - 1, a - i)
            pos += run
            i += run
            continue
        t = prefix[x & 8191]
        if t < 0:  # z ≤ 2·17 needs at most 6 bits after the leading zeros
            return (1 if pos + 7 > nb else 2), 0, out
        adv = t & 15
        pos += adv
        if pos > nb:
            return 1, 0, out
        e += (t >> 4) - 64
        if not 0 <= e <= MAX_FREQ_BITS:
            return 3, e, out
        if e:
            pos += kl[e]
            if pos > nb:
                return 1, 0, out
            out[i] = base[e] + (((x >> adv) & mask[e]) << sh[e])
        i += 1
    return 0, pos, out


def get_table(r: Reader, a: int) -> np.ndarray:
    """Inverse of :func:`put_table`: ``a`` rebuilt frequencies (int64), or :class:`DecodeError`."""
    p = r.u8()
    if not 1 <= p <= MAX_FREQ_BITS:
        raise r.fail(f"table precision {p} outside 1..{MAX_FREQ_BITS}")
    blob = r.blob()
    if len(blob) > (a * _MAX_ENTRY_BITS + 7) // 8:  # before unpacking: no allocation sized by a lie
        raise r.fail(f"frequency table of {len(blob)} bytes for {a} symbols")
    nb = 8 * len(blob)
    # an entry (≤ 29 bits) starting at bit ``pos`` is in the 64 bits from byte pos >> 3 on,
    # shifted by pos & 7 (≥ 57 valid bits): zeros past the blob keep that window in the data
    data = np.frombuffer(bytes(blob) + bytes(8), np.uint8)
    kernels = jit.kernels()
    if kernels is not None:
        freq = np.empty(a, np.int64)
        code, value, total = kernels.read_table_entries(data, *_REBUILD_ARRAYS[p], nb, MAX_FREQ_BITS, freq)
    else:
        # win[j] = the 64 bits from byte j on
        win = np.ndarray((len(blob) + 1,), "<u8", data, 0, (1,))
        code, value, entries = _read_entries_py(win, p, nb, a)
        freq = np.array(entries, np.int64)
        total = int(freq.sum())
    if code == 3:
        raise r.fail(f"frequency bit length {value} outside 0..{MAX_FREQ_BITS}")
    if code:
        raise r.fail(_ERRORS[code])
    if (value + 7) // 8 != len(blob):
        raise r.fail("frequency table has trailing bytes")
    if total <= 0:
        raise r.fail("frequency table sums to zero")
    return freq
