"""The one-call coded-stream reader (``kernels.coded_stream``, entropy's int32 modes 2 and 6) against
the reference reader: the plain path with every compiled loop off, i.e. constriction's own ANS
decoder and the Python table reader. On streams as the encoder writes them (one context, several
contexts, escapes, two lanes, limits) and on those streams bit-flipped, truncated and with lying
bytes: the same values or the same refusal (the one-call reader hands a stream it does not accept to
the step-by-step reader, which names the fault), never a different value. And decoding real scene
subsets gives the reference's map."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share import entropy, jit
from gs_map_share.bitio import Reader, Writer
from gs_map_share.errors import DecodeError

pytest.importorskip("numba")


def _streams():
    """(bytes, n, signed, ctx, n_ctx, limit) of streams as the encoder writes them."""
    rng = np.random.default_rng(38)
    out = []
    for n, scale, signed, n_ctx, limit in [
        (1000, 3.0, True, 1, None),  # direct symbols, one table
        (300, 400.0, True, 1, 1 << 20),  # escapes and a mantissa blob
        (5000, 5.0, True, 1, 40),  # two lanes (≥ entropy.LANES_MIN values)
        (6000, 300.0, False, 1, None),  # two lanes with escapes, unsigned
        (1500, 4.0, True, 4, 30),  # several contexts
        (1200, 900.0, True, 3, 1 << 16),  # several contexts with escapes
        (400, 2.0, False, 2, 5),  # a limit below what the symbols bound: the scan
    ]:
        v = np.round(rng.laplace(0, scale, n)).astype(np.int64)
        if not signed:
            v = np.abs(v)
        if limit is not None:
            v = np.clip(v, -limit, limit)
        ctx = (np.arange(n) * 7 % n_ctx).astype(np.int64) if n_ctx > 1 else None
        w = Writer()
        entropy.put_stream(w, v, signed=signed, ctx=ctx, n_ctx=n_ctx)
        out.append((w.getvalue(), v, signed, ctx, n_ctx, limit))
    return out


STREAMS = _streams()


def _read(data: bytes, n, signed, ctx, n_ctx, limit, compiled: bool):
    """(values, reader position) or the DecodeError's text."""
    saved = jit._kernels
    if not compiled:
        jit._kernels = False  # every compiled loop off: constriction and the Python paths
    try:
        r = Reader(data, "stream")
        v = entropy.decode_stream(r, n, signed=signed, ctx=ctx, n_ctx=n_ctx, int32=True, limit=limit)
        return v.copy(), r.pos
    except DecodeError as e:
        return str(e)
    finally:
        jit._kernels = saved


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a[1] == b[1] and a[0].dtype == b[0].dtype and np.array_equal(a[0], b[0])


@pytest.fixture
def counted(monkeypatch):
    """Calls of the one-call reader and how many read their stream."""
    kernels = jit.kernels()
    seen = {"calls": 0, "read": 0}
    real = kernels.coded_stream

    def wrapped(*a):
        end = real(*a)
        seen["calls"] += 1
        seen["read"] += end >= 0
        return end

    monkeypatch.setattr(kernels, "coded_stream", wrapped)
    return seen


def test_streams_as_written_equal_the_reference(counted):
    for data, v, signed, ctx, n_ctx, limit in STREAMS:
        mode = data[0]
        assert mode in (2, 6), mode  # (the cases are meant to be coded streams)
        got = _read(data, len(v), signed, ctx, n_ctx, limit, True)
        ref = _read(data, len(v), signed, ctx, n_ctx, limit, False)
        assert _same(got, ref)
        assert np.array_equal(got[0], v) and got[1] == len(data)
    assert counted["read"] == len(STREAMS)  # every one read by the one call


def test_mutated_streams_give_the_reference_verdict(counted):
    rng = np.random.default_rng(7)
    differ = 0
    for data, v, signed, ctx, n_ctx, limit in STREAMS:
        for t in range(150):
            b = bytearray(data)
            kind = t % 5
            if kind == 0:  # one bit flipped in the header and tables (most of the structure)
                i = int(rng.integers(0, min(len(b), 64)))
                b[i] ^= 1 << int(rng.integers(0, 8))
            elif kind == 1:  # anywhere
                i = int(rng.integers(0, len(b)))
                b[i] ^= 1 << int(rng.integers(0, 8))
            elif kind == 2:  # truncated
                b = b[: int(rng.integers(0, len(b)))]
            elif kind == 3:  # a lying byte (a count, a length, a mode)
                b[int(rng.integers(0, min(len(b), 32)))] = int(rng.choice([0, 1, 2, 6, 0x7F, 0x80, 0xFF]))
            else:  # bytes added at the end
                b += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
            got = _read(bytes(b), len(v), signed, ctx, n_ctx, limit, True)
            ref = _read(bytes(b), len(v), signed, ctx, n_ctx, limit, False)
            assert _same(got, ref), (kind, got if isinstance(got, str) else "values", ref)
            differ += not _same(got, (v, len(data)))
    assert differ > 300  # the mutations did change what was read (most are refused)
    assert counted["read"] > 0 and counted["calls"] > counted["read"]


def test_scene_subsets_decode_as_the_reference(shared_data, counted, monkeypatch):
    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.splat_formats import load_splats

    path = shared_data / "splats" / "guitar.ply"
    if not path.exists():
        pytest.skip(f"{path} not present")
    kernels = jit.kernels()
    real = kernels.descend_streams
    depths = [0]

    def descend(*a):
        out = real(*a)
        depths[0] += out[0]
        return out

    monkeypatch.setattr(kernels, "descend_streams", descend)
    g = load_splats(path)
    for rows, degree, levels in [(1000, 0, 5), (6000, 3, 1)]:
        part = g.subset(np.sort(np.random.default_rng(0).choice(len(g), rows, replace=False)))
        rest = np.random.default_rng(1).standard_normal((rows, (degree + 1) ** 2 - 1, 3)) * 0.05
        part = GaussianMap(
            sh_degree=degree,
            means=part.means,
            quats=part.quats,
            log_scales=part.log_scales,
            opacity_logits=part.opacity_logits,
            sh=np.concatenate([part.sh[:, :1], rest.astype(np.float32)], axis=1),
        )
        p = QuantParams.from_quality(2).relative_to(part).for_shared_sh(part)
        data = encode_map(part, p, n_levels=levels)[0]
        before, depths_before = counted["read"], depths[0]
        got = decode_map(data)
        # (the octree's occupancy streams: read by the same compiled reader inside descend_streams)
        assert counted["read"] - before + depths[0] - depths_before >= 20
        saved = jit._kernels
        jit._kernels = False
        try:
            ref = decode_map(data)
        finally:
            jit._kernels = saved
        for f in ("means", "quats", "log_scales", "opacity_logits", "sh", "ids", "levels"):
            a, b = getattr(got, f), getattr(ref, f)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), f


def test_a_limit_the_table_leaves_open_and_a_longer_table_are_refused_as_the_reference(counted):
    """Values beyond the caller's limit though within what the table allows (the limit scan), and
    a frequency table one zero byte longer than its entries (its length byte raised to match)."""
    v = np.arange(600) % 13  # written without a limit: symbols up to 24, values up to 12
    w = Writer()
    entropy.put_stream(w, v, signed=True)
    data = w.getvalue()
    assert data[0] == 2
    for limit in (12, 11, 6):
        got = _read(data, len(v), True, None, 1, limit, True)
        assert _same(got, _read(data, len(v), True, None, 1, limit, False))
        assert isinstance(got, str) == (limit < 12), got
    # mode, log2 T, 1 table, its alphabet, precision, the blob's length, the blob
    assert data[2] == 1 and data[3] < 128 and data[5] < 127
    longer = data[:5] + bytes([data[5] + 1]) + data[6 : 6 + data[5]] + b"\0" + data[6 + data[5] :]
    got = _read(longer, len(v), True, None, 1, None, True)
    assert got == _read(longer, len(v), True, None, 1, None, False)
    assert "trailing bytes" in got
