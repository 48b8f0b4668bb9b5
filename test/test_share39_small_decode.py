"""Small-scene decode speed work (issue 17, session 39) against the reference paths: the octree
depths read in one compiled call (``kernels.descend_streams``), the range checks in one compiled pass
(``entropy.extremes``), the SH dequantised in one compiled pass (``kernels.dequantize_sh``) and the
ANS lookup tables sized by the stream (``kernels._lut_shift``). Each is compared with what the code
did before: the step-by-step octree loop (the same values, and on damaged containers the same
one-line error, byte offset included), numpy's min/max and products, and the plain path with every
compiled loop off (constriction's ANS decoder)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gs_map_share import entropy, jit, section
from gs_map_share.bitio import Reader, Writer
from gs_map_share.container import LEVEL, Chunk, pack, unpack
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QuantParams, dequantize_fields
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map
from gs_mapping.gaussians import GaussianMap

pytest.importorskip("numba")

FIELDS = ("ids", "levels", "means", "quats", "log_scales", "opacity_logits", "sh")


def _guitar(shared_data) -> GaussianMap:
    from gs_mapping.splat_formats import load_splats

    path = shared_data / "splats" / "guitar.ply"
    if not path.exists():
        pytest.skip(f"{path} not present")
    return load_splats(path)


def _subset(g: GaussianMap, rows: int, degree: int) -> GaussianMap:
    part = g.subset(np.sort(np.random.default_rng(0).choice(len(g), rows, replace=False)))
    rest = np.random.default_rng(1).standard_normal((rows, (degree + 1) ** 2 - 1, 3)) * 0.05
    return GaussianMap(
        sh_degree=degree,
        means=part.means,
        quats=part.quats,
        log_scales=part.log_scales,
        opacity_logits=part.opacity_logits,
        sh=np.concatenate([part.sh[:, :1], rest.astype(np.float32)], axis=1),
    )


@pytest.fixture(scope="module")
def scenes(shared_data):
    """Encoded guitar subsets: SH 0–3, one and several levels, qualities 1–3 (tails included)."""
    g = _guitar(shared_data)
    out = []
    for rows, degree, levels, quality in [
        (1000, 0, 5, 2),
        (1000, 2, 1, 1),
        (3000, 1, 3, 3),
        (6000, 3, 5, 2),
        (12000, 0, 1, 2),
    ]:
        part = _subset(g, rows, degree)
        p = QuantParams.from_quality(quality).relative_to(part).for_shared_sh(part)
        out.append(encode_map(part, p, n_levels=levels)[0])
    return out


def _decode(data, max_level=None):
    """The decoded map's fields, or the DecodeError's text."""
    try:
        g = decode_map(data, max_level)
    except DecodeError as e:
        return str(e)
    return [np.asarray(getattr(g, f)).copy() for f in FIELDS]


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture
def step_by_step(monkeypatch):
    """A function running a decode with the octree read depth by depth (as before the one call)."""

    def run(data, max_level=None):
        with monkeypatch.context() as mp:
            mp.setattr(
                section, "_descend_compiled", lambda k, r, code, tc, n, parents, d0, d1: (d0, code, None, tc)
            )
            return _decode(data, max_level)

    return run


def _compiled():
    """The compiled loops these tests call directly; skipped without them (no numba, or
    ``GS_MAP_SHARE_NUMBA=0``: the plain paths these tests compare against are then all there is)."""
    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("needs the compiled loops (numba)")
    return kernels


def test_one_call_octree_reads_the_depths_as_the_step_by_step_loop(scenes, step_by_step, monkeypatch):
    kernels = _compiled()
    real = kernels.descend_streams
    depths = []

    def counted(*a):
        out = real(*a)
        depths.append(out[0])
        return out

    monkeypatch.setattr(kernels, "descend_streams", counted)
    for data in scenes:
        for max_level in (None, 0, 1):
            got = _decode(data, max_level)
            assert not isinstance(got, str), got
            assert _same(got, step_by_step(data, max_level))
    assert sum(depths) > 100  # the one call did read the depths


def _norm(v: str) -> str:
    """A verdict without its byte offset and constriction's wording of the same ANS faults."""
    v = re.sub(r" \(at byte \d+\)", "", v)
    return v.replace("entropy decoding failed: Invalid compressed data: ", "").rstrip(".")


def test_damaged_octree_streams_get_the_step_by_step_verdict(scenes, step_by_step):
    """LEVEL chunks damaged where the octree's occupancy streams lie (resealed: valid CRCs), and
    hostile occupancy streams (bytes 0, a node count past the Gaussians): the one-call reader
    stops before a depth it does not take, and the loop names the fault, so the verdict is the
    step-by-step loop's to the byte; with every compiled loop off, the same verdict."""
    rng = np.random.default_rng(39)
    refused = 0
    for data in scenes[:3]:
        h, chunks = unpack(data)
        for t in range(60):
            cs = [Chunk(c.type, c.level, bytearray(c.data)) for c in chunks]
            lev = [c for c in cs if c.type == LEVEL]
            c = lev[int(rng.integers(0, len(lev)))]
            head = min(len(c.data), 400)  # (the depths come first in a LEVEL chunk)
            i = int(rng.integers(0, head))
            kind = t % 4
            if kind == 0:
                c.data[i] ^= 1 << int(rng.integers(0, 8))
            elif kind == 1:
                c.data[i] = int(rng.choice([0, 1, 2, 6, 7, 0x7F, 0x80, 0xFF]))
            elif kind == 2:
                del c.data[i:]
            else:
                c.data[i : i + 2] = bytes(rng.integers(0, 256, 2, dtype=np.uint8))
            bad = pack(h, [Chunk(x.type, x.level, bytes(x.data)) for x in cs])
            got = _decode(bad)
            assert _same(got, step_by_step(bad))
            saved = jit._kernels
            jit._kernels = False
            try:
                ref = _decode(bad)
            finally:
                jit._kernels = saved
            if isinstance(got, str):
                refused += 1
                assert isinstance(ref, str) and _norm(got) == _norm(ref), (got, ref)
            else:
                assert _same(got, ref)
    assert refused > 60


def _occupancy(v) -> bytes:
    w = Writer()
    entropy.put_stream(w, np.asarray(v, np.int64), signed=False)
    return w.getvalue()


@pytest.mark.parametrize(
    "occ, verdict",
    [
        ([0, 1, 2], "occupancy byte outside 1..255"),  # a zero byte, coded
        ([300, 1, 1], "occupancy byte outside 1..255"),
        ([255] * 3, "nodes, more than the"),  # 24 children for 10 Gaussians
        ([1] * 3, None),
    ],
)
def test_hostile_occupancy_is_refused_by_the_step_by_step_loop(occ, verdict):
    """An occupancy stream a hostile encoder writes (valid ANS): the one call stops at it, and the
    loop names it (``depth d: ...`` with the reader's byte), as before the one call."""
    kernels = _compiled()
    data = _occupancy(occ) + _occupancy([1] * 3)
    code = np.arange(3, dtype=np.uint64)
    tc = np.array([3], np.int64)
    r = Reader(data, "LEVEL")
    d, code2, _, tc2 = section._descend_compiled(kernels, r, code, tc, 10, False, 4, 6)
    if verdict is None:
        assert d == 6 and r.pos == len(data) and len(code2) == 3 and tc2.tolist() == [3]
        assert code2.tolist() == [64 * c for c in range(3)]  # octant 0 of each node, two depths down
    else:
        assert d == 4 and r.pos == 0 and code2 is code  # nothing taken: the loop reads it
        from gs_map_share import octree

        with pytest.raises(ValueError, match=re.escape(verdict)):
            occ_v = entropy.decode_stream(r, 3, signed=False, int32=True)
            octree.descend(code, occ_v, tc, 10)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int8])
def test_extremes_are_numpys(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    for n in (1, 2, 7, 64, 1000, 4097):
        a = rng.integers(info.min, int(info.max) + 1, n, dtype=dtype)
        assert entropy.extremes(a) == (int(a.min()), int(a.max()))
        a[rng.integers(0, n)] = info.min
        a[rng.integers(0, n)] = info.max
        assert entropy.extremes(a) == (int(a.min()), int(a.max()))
        m = a[: n - n % 2].reshape(-1, 2) if n > 1 else a.reshape(1, 1)
        assert entropy.extremes(m) == (int(m.min()), int(m.max()))  # 2-D, contiguous
        assert entropy.extremes(m.T) == (int(m.min()), int(m.max()))  # not contiguous: numpy
    with pytest.raises(ValueError, match="maximum"):
        entropy.extremes(np.zeros(0, dtype))  # as numpy refuses it (max first, as before)


def test_dequantized_sh_is_numpys(scenes):
    """The SH floats of the compiled pass are numpy's products bit for bit: a decoded map's rest
    (column-major), a row-major rest (a palette's) and an int64 rest (numpy's path)."""
    for data in scenes:
        h, q = decode_snapshot(data)
        if q.num_sh == 1:
            continue
        rows = q.rest.copy()  # row-major
        for rest in (q.rest, rows):
            q.rest = rest
            got = dequantize_fields(q, h.params)["sh"]
            saved = jit._kernels
            jit._kernels = False
            try:
                ref = dequantize_fields(q, h.params)["sh"]
            finally:
                jit._kernels = saved
            assert got.dtype == ref.dtype == np.float32 and got.tobytes() == ref.tobytes()


def test_short_streams_decode_as_constriction():
    """Streams around the lookup-table sizes (256, 2048 values): one table, contexts, escapes,
    two lanes; compiled (fewer buckets for short streams) and constriction give the same values."""
    rng = np.random.default_rng(11)
    for n in (2, 65, 255, 256, 257, 1000, 2048, 2049, 5000):
        for scale, n_ctx, signed in [(2.0, 1, True), (300.0, 1, False), (6.0, 3, True), (900.0, 2, True)]:
            v = np.round(rng.laplace(0, scale, n)).astype(np.int64)
            v = v if signed else np.abs(v)
            ctx = (np.arange(n) * 5 % n_ctx).astype(np.int64) if n_ctx > 1 else None
            w = Writer()
            entropy.put_stream(w, v, signed=signed, ctx=ctx, n_ctx=n_ctx)
            data = w.getvalue()
            got = entropy.decode_stream(Reader(data), n, signed=signed, ctx=ctx, n_ctx=n_ctx, int32=True)
            saved = jit._kernels
            jit._kernels = False
            try:
                ref = entropy.decode_stream(Reader(data), n, signed=signed, ctx=ctx, n_ctx=n_ctx, int32=True)
            finally:
                jit._kernels = saved
            assert np.array_equal(got, v) and np.array_equal(ref, v)


def test_every_cut_of_an_escaped_stream_gets_the_plain_verdict():
    """A blob length (a table's, the mantissas') that fits the bytes left before its own varint
    but not after it: the one-call reader read a byte past the chunk and ended past it (found by
    test_share_ans_decode's hypothesis case n=18, seed 2801, cut), where the Python reader says
    "needs 2 bytes, 1 left". Every cut of escaped streams, compiled and plain: the same verdict."""
    rng = np.random.default_rng(2801)
    for n, bits in [(18, 5), (40, 20), (300, 30)]:
        mag = rng.integers(0, 1 << 62, n, dtype=np.int64) >> rng.integers(63 - bits, 63, n)
        vals = np.where(rng.random(n) < 0.5, -mag, mag)
        w = Writer()
        entropy.encode_stream(w, vals, True, log2t=3)
        full = w.getvalue()
        for cut in range(1, len(full) + 1):
            got = []
            for compiled in (jit.kernels(), False):
                saved = jit._kernels
                jit._kernels = compiled
                try:
                    r = Reader(full[:cut], "test")
                    v = entropy.decode_stream(r, n, signed=True, int32=True)
                    r.end()
                    got.append(v.tolist())
                except DecodeError as e:
                    got.append(str(e))
                finally:
                    jit._kernels = saved
            assert got[0] == got[1], (n, cut, got)
