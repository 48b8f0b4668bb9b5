"""The encoder's compiled SH passes (session 38, issue 17: SH 3 encoding speed) write the bytes the
plain numpy path writes — the reference the codec's pinned bytes came from: the sparse split of a
stream (``kernels.sparse_split``), a coefficient's estimates (``kernels.coefficient_counts``), the
palette's column estimates (``kernels.column_counts``); and ``encode_map`` quantising the higher SH
straight into the spatial order gives the bytes of ``spatial_ids(to_qmap(...))``, and the same Gaussians
back from the decoder."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share import jit, section
from gs_map_share.bitio import Writer
from gs_map_share.entropy import put_stream
from gs_map_share.quantize import QuantParams, to_qmap
from gs_map_share.snapshot import decode_snapshot, encode_map, encode_snapshot, spatial_ids
from gs_mapping.gaussians import GaussianMap


def _plain(fn):
    """``fn()`` with every compiled loop switched off (the numpy path)."""
    kernels = jit._kernels
    try:
        jit._kernels = False
        return fn()
    finally:
        jit._kernels = kernels


def _compiled():
    if jit.kernels() is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")


def _stream(values, signed=True) -> bytes:
    w = Writer()
    put_stream(w, values, signed)
    return w.getvalue()


def _streams(rng):
    """Streams around the sparse / dense border: all zero, a few non-zero, just under and over half
    non-zero, escapes, values near ±2**62 (the numpy path holds them as uint64), int32 and int64,
    a strided view (a column of the SH rows)."""
    n = 5000
    for frac in (0.0, 0.002, 0.1, 0.49, 0.5, 0.51, 0.9):
        for scale in (1, 3, 300, 1 << 40):
            v = rng.integers(-scale, scale + 1, n) * (rng.random(n) < frac)
            yield v.astype(np.int64), True
            yield np.abs(v).astype(np.int64), False
            if scale < 1 << 31:
                yield v.astype(np.int32), True
    big = np.zeros(n, np.int64)
    big[[3, 700]] = [(1 << 62) - 1, -(1 << 62)]
    yield big, True
    big[5] = 1 << 62  # beyond: the numpy path's uint64 zig-zag
    yield big, True
    neg = np.zeros(n, np.int64)
    neg[[10, 20]] = [4, -1]  # unsigned with a negative value: numpy's uint64
    yield neg, False
    rows = (rng.integers(-2, 3, (n, 9)) * (rng.random((n, 9)) < 0.2)).astype(np.int32)
    yield rows[:, 4], True
    one = np.zeros(n, np.int32)
    one[-1] = 7  # one value, the last (its gap n − 1)
    yield one, True


def test_sparse_split_writes_the_numpy_paths_bytes():
    _compiled()
    rng = np.random.default_rng(38)
    for values, signed in _streams(rng):
        assert _stream(values, signed) == _plain(lambda v=values, s=signed: _stream(v, s)), (
            values.dtype,
            signed,
        )


def _coefficient(ch) -> bytes:
    w = Writer()
    section._put_sh_coefficient(w, ch)
    return w.getvalue()


@pytest.mark.parametrize("kind", ["sparse", "correlated", "wide", "escapes", "huge", "rows"])
def test_sh_coefficient_choices_write_the_numpy_paths_bytes(kind):
    """Long coefficients (estimated on every 8th Gaussian): plain streams, channels 0 and 2 from
    channel 1 (correlated channels), joint symbols under each base (small values, escapes),
    values the numpy path holds as uint64, and the strided columns of the SH rows."""
    _compiled()
    rng = np.random.default_rng(len(kind))
    n = section.SAMPLE_MIN + 1234
    if kind == "sparse":
        ch = rng.integers(-3, 4, (3, n)) * (rng.random((3, n)) < 0.05)
    elif kind == "correlated":
        base = rng.integers(-40, 41, n)
        ch = np.stack([base + rng.integers(-1, 2, n), base, base + rng.integers(-1, 2, n)])
    elif kind == "wide":
        ch = rng.integers(-2, 3, (3, n)) * (rng.random((3, n)) < 0.6)
    elif kind == "escapes":
        ch = rng.integers(-1, 2, (3, n))
        ch[:, rng.random(n) < 0.02] = rng.integers(-500, 500)
    elif kind == "huge":
        ch = rng.integers(-1, 2, (3, n))
        ch[1, 16] = 1 << 62
    else:
        rows = (rng.integers(-2, 3, (n, 45)) * (rng.random((n, 45)) < 0.4)).astype(np.int32)
        ch = rows[:, 6:9].T
    if kind != "rows":
        ch = ch.astype(np.int64 if kind == "huge" else np.int32)
    got = _coefficient(ch)
    assert got == _plain(lambda: _coefficient(ch))
    if kind == "correlated":
        assert got[0] == section.CHANNEL_PRED  # (the case that takes channel 1's differences)


def test_palette_column_estimates_are_the_numpy_paths():
    _compiled()
    rng = np.random.default_rng(7)
    for a in (
        rng.integers(-300, 300, (4000, 45)).astype(np.int32),
        rng.integers(-3, 3, (64000, 9)).astype(np.int32)[::16],
        np.array([[1 << 62, 0], [0, -5]], np.int64),
    ):
        assert section._columns_bits(a) == _plain(lambda a=a: section._columns_bits(a))


def _sh3_map(n: int) -> GaussianMap:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((n, 4)).astype(np.float32)
    sh = (rng.standard_normal((n, 16, 3)) * 0.05).astype(np.float32)
    sh[:, 0] *= 10
    return GaussianMap(
        sh_degree=3,
        means=(rng.random((n, 3)) * 20).astype(np.float32),
        quats=q / np.linalg.norm(q, axis=1, keepdims=True),
        log_scales=rng.uniform(-5, -1, (n, 3)).astype(np.float32),
        opacity_logits=rng.normal(0, 2, n).astype(np.float32),
        sh=sh,
    )


@pytest.mark.parametrize("compiled", [True, False])
def test_encode_map_quantises_the_sh_in_spatial_order_as_spatial_ids_does(compiled):
    g = _sh3_map(20000)
    assert g.ids_implicit
    p = QuantParams.from_quality(2).relative_to(g).for_shared_sh(g)

    def both():
        ref = spatial_ids(to_qmap(g, p), p)
        return encode_map(g, p, n_levels=3)[0], encode_snapshot(ref, p, n_levels=3)[0], ref

    if compiled:
        _compiled()
    got, want, ref = both() if compiled else _plain(both)
    assert got == want
    _, back = decode_snapshot(got)
    assert back.equals(ref)


@pytest.mark.parametrize("pred", [False, True])
def test_coefficient_counts_are_numpys_for_every_base(pred):
    """Each channel's counts, and under every joint base the escapes, the joint symbols' counts and
    the escaped values' counts, as numpy counts them on the same every-8th Gaussians."""
    _compiled()
    rng = np.random.default_rng(5)
    n = section.SAMPLE_MIN
    ch = rng.integers(-3, 4, (3, n)) * (rng.random((3, n)) < 0.7)
    ch[:, rng.random(n) < 0.01] = 300  # escapes past every base, some beyond 256 zig-zagged
    ch = ch.astype(np.int32)
    sub = ch[:, ::8].astype(np.int64)
    ref_sep, ref_joint = section._sub_estimates(section._from_channel_1(sub) if pred else sub)
    sep, joint = section._counted_estimates(ch, pred)

    def same(a, b):
        assert a.n == b.n and np.array_equal(a.small, b.small) and np.array_equal(a.big_bl, b.big_bl)

    for a, b in zip(sep, ref_sep, strict=True):
        same(a, b)
    for base in section.JOINT_BASES:
        (e, js, es), (re, rjs, res) = joint(base), ref_joint(base)
        assert e == re > 0
        same(js(), rjs())
        for a, b in zip(es(), res(), strict=True):
            same(a, b)


def test_sh_rows_split_in_two_passes_write_the_numpy_paths_bytes():
    """Every coefficient of long int32 rows (channels read where they lie, all channels' sparse
    splits from two passes over the rows): all-zero, sparse, more than half non-zero and escaping
    channels, a coefficient whose channels follow channel 1, one of joint symbols; the bytes and
    the per-label byte accounting of the plain path."""
    _compiled()
    rng = np.random.default_rng(11)
    n = section.SAMPLE_MIN + 77
    rows = (rng.integers(-3, 4, (n, 18)) * (rng.random((n, 18)) < 0.1)).astype(np.int32)
    rows[:, 0:3] = 0  # an all-zero coefficient
    rows[:, 4] = rng.integers(-2, 3, n) * (rng.random(n) < 0.9)  # more than half non-zero
    rows[rng.random(n) < 0.003, 5] = 100000  # escapes, gaps beyond 256
    base = rng.integers(-60, 61, n)
    rows[:, 6:9] = np.stack([base + rng.integers(-1, 2, n), base, base - rng.integers(-1, 2, n)], 1)
    rows[:, 9:12] = rng.integers(-1, 2, (n, 3))  # small values in every channel: joint symbols
    rows[-1, 13] = -7  # a lone value, the last row
    for c, frac in ((14, 0.25), (15, 0.35), (16, 0.45), (17, 0.5)):  # sparse and dense estimates near
        rows[:, c] = rng.choice([-1, 1], n) * (rng.random(n) < frac)

    def put():
        w = Writer({})
        section._put_sh_rows(w, rows)
        return w.getvalue(), w.stats

    assert put() == _plain(put)
    split = section._SparseRows(rows)
    split.any(range(0, 3))  # (made on first use)
    for c in range(rows.shape[1]):  # each channel's split and dense counts as numpy makes them
        v = rows[:, c].astype(np.int64)
        idx = np.flatnonzero(v)
        assert split.k[c] == len(idx)
        if not 0 < len(idx) <= n // 2:
            assert split.start[c] == -1
            continue
        s = split.start[c]
        gaps = np.diff(idx, prepend=-1) - 1
        zz = (v[idx] << 1) ^ (v[idx] >> 63)
        assert np.array_equal(split.gaps[s : s + len(idx)], gaps)
        assert np.array_equal(split.mapped[s : s + len(idx)], zz - 1)
        assert np.array_equal(split.small_d[c, :256], np.bincount(np.minimum(zz, 256), minlength=257)[:256])


def test_sh_rows_where_the_full_joint_comparison_keeps_three_streams(monkeypatch):
    """A coefficient whose estimate finds joint symbols clearly faster, but whose comparison on all
    values keeps three streams (joint symbols made costly here), is written from the rows as from
    its own columns."""
    _compiled()
    rng = np.random.default_rng(12)
    n = section.SAMPLE_MIN + 5
    rows = rng.integers(-1, 2, (n, 6)).astype(np.int32)
    made = []

    def costly(u, umax, b):
        made.append(b)
        return rng.integers(0, 1 << 20, u.shape[1]), np.zeros(u.shape[1], bool)

    monkeypatch.setattr(section, "_joint_symbols", costly)

    def put(from_rows):
        w = Writer({})
        if from_rows:
            section._put_sh_rows(w, rows)
        else:
            cols = section._columns(rows)
            for j in range(0, 6, 3):
                section._put_sh_coefficient(w, cols[j : j + 3])
        return w.getvalue(), w.stats

    assert put(True) == put(False)
    assert made  # (the full comparison ran)


@pytest.mark.parametrize("n", [1, 9, 4097, 20_000])
def test_every_coefficients_counts_in_one_pass_equal_each_coefficients_own(n):
    """kernels.rows_coefficient_counts (every SH coefficient's estimate counts, plain and
    predicted, from one pass over every 8th row, in blocks) equals coefficient_counts of each
    coefficient's three strided channels, the counts _put_sh_coefficient chose by before: small
    values (joint symbols), escapes past 256 and values near int32's bounds."""
    from gs_map_share import jit

    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(n)
    rows = rng.integers(-4, 5, (n, 45)).astype(np.int32)
    rows[rng.random((n, 45)) < 0.05] = rng.integers(-(1 << 31), (1 << 31) - 1, dtype=np.int64)
    rows[rng.random((n, 45)) < 0.1] = rng.integers(-600, 600)
    k = 15
    cube, small, big = (
        np.zeros((k, 2, 216), np.int64),
        np.zeros((k, 2, 21, 257), np.int64),
        np.zeros((k, 2, 21, 65), np.int64),
    )
    kernels.rows_coefficient_counts(rows, 8, cube, small, big)
    for j in range(k):
        ch = rows[:, 3 * j : 3 * j + 3].T
        for p in (0, 1):
            c1, s1, b1 = np.zeros(216, np.int64), np.zeros((21, 257), np.int64), np.zeros((21, 65), np.int64)
            assert kernels.coefficient_counts(*(ch[c, ::8] for c in range(3)), bool(p), c1, s1, b1) == 0
            assert (
                np.array_equal(cube[j, p], c1)
                and np.array_equal(small[j, p], s1)
                and np.array_equal(big[j, p], b1)
            )
