"""Neighbour phases and the blue-first colour order (container version 9): exact round trips
compiled or not, the encoder's choices against what each form costs, hostile phase bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_share_speedpaths import _use_compiled

from gs_map_share import jit, phases, section
from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import put_stream
from gs_map_share.errors import DecodeError


def _smooth(rng, n, spread=40):
    """A channel whose neighbours in order are alike (a random walk) plus noise."""
    return (np.cumsum(rng.integers(-2, 3, n)) % spread + rng.integers(-1, 2, n)).astype(np.int64)


def _round_trip(res, base, n_base, faint=1):
    w = Writer()
    phases.put(w, res, base, n_base, faint)
    r = Reader(w.getvalue(), "test")
    out = phases.get(r, len(res), base, n_base, (1 << 30) - 1, faint)
    r.end()
    return out, w.getvalue()


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 4096, 5001])
def test_phases_round_trip_every_length(n, compiled, monkeypatch):
    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(n)
    res = _smooth(rng, n)
    base = (rng.random(n) < 0.3).astype(np.int64)
    for b, k, faint in ((None, 1, 1), (base, 2, 1), (base, 2, 5)):
        out, _ = _round_trip(res, b, k, faint)
        assert out.dtype == np.int32 and np.array_equal(out, res)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    scale=st.sampled_from([1, 5, 100, 1 << 20, (1 << 30) - 1]),
    shift_bias=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_phase_contexts_the_same_compiled_or_not(n, scale, shift_bias, seed):
    """The compiled contexts and counts equal numpy's for any residuals and shift (sums of two
    residuals near the lattice edge, faint ones scaled up, shifts past their width), every phase."""
    if jit.kernels() is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    rng = np.random.default_rng(seed)
    res = rng.integers(-scale, scale + 1, n).astype(np.int32)
    base = rng.integers(0, 2, n).astype(np.int64)
    shift = min(shift_bias, phases.MAX_SHIFT)
    for start, gap in phases.PHASES:
        for b, k, faint in ((None, 1, 1), (base, 2, 1), (base, 2, 8)):
            fast = phases.contexts(res, start, gap, shift, b, k, faint)
            kernels = jit._kernels
            try:
                jit._kernels = False
                plain = phases.contexts(res, start, gap, shift, b, k, faint)
            finally:
                jit._kernels = kernels
            assert np.array_equal(fast.ctx, plain.ctx)
            assert np.array_equal(fast.counts, plain.counts)


def test_neighbours_give_the_context():
    """A channel smooth along its order costs less in phases; white noise does not (the encoder
    keeps phases only where smaller, so its choice byte says which)."""
    rng = np.random.default_rng(1)
    for res, phased in ((_smooth(rng, 20000), True), (rng.integers(-20, 21, 20000), False)):
        plain = Writer()
        put_stream(plain, res)
        _, split = _round_trip(res, None, 1)
        assert (len(split) < len(plain.getvalue())) == phased
        w = Writer()
        section._put_pred(w, res, [0], phased=True)
        assert bool(w.getvalue()[0] & section.PHASED) == phased
        assert len(w.getvalue()) <= len(plain.getvalue()) + 1
        r = Reader(w.getvalue(), "test")
        assert np.array_equal(section._get_pred(r, len(res), [0]), res)


def test_the_shift_follows_the_spread():
    rng = np.random.default_rng(2)
    res = _smooth(rng, 10000)
    assert phases.choose_shift(res) == phases.choose_shift(res * 8) - 3
    assert phases.choose_shift(np.zeros(100, np.int64)) == 0


def _phased_channel(res):
    """``res`` coded as a phased channel, and the offset of its shift byte."""
    w = Writer()
    section._put_pred(w, res, [0], phased=True)
    data = w.getvalue()
    assert data[0] & section.PHASED
    r = Reader(data, "test")
    if r.u8() & section.CENTRED:
        r.varint()
    return data, r.pos


@pytest.mark.parametrize("centred", [False, True])
def test_a_centred_phased_channel_round_trips(centred):
    """The centring constant comes before the shift (a channel far from zero: both flags)."""
    res = _smooth(np.random.default_rng(6), 9000) + (1 << 20 if centred else 0)
    data, _ = _phased_channel(res)
    assert bool(data[0] & section.CENTRED) == centred
    r = Reader(data, "test")
    assert np.array_equal(section._get_pred(r, len(res), [0]), res)
    r.end()


def test_the_largest_shift_decodes(monkeypatch):
    res = _smooth(np.random.default_rng(7), 5000)
    monkeypatch.setattr(phases, "choose_shift", lambda *a: 31)  # (docs/format.md: shift ≤ 31)
    out, data = _round_trip(res, None, 1)
    assert data[0] == 31 and np.array_equal(out, res)


@pytest.mark.parametrize("row", [0, 2, 1])
def test_a_residual_beyond_the_limit_is_refused_in_every_phase(row):
    res = np.zeros(64, np.int64)
    res[row] = 1 << 30
    w = Writer()
    phases.put(w, res, None, 1)
    with pytest.raises(DecodeError, match="beyond"):
        phases.get(Reader(w.getvalue(), "test"), len(res), None, 1, (1 << 30) - 1)


def test_hostile_phase_bytes_are_refused():
    rng = np.random.default_rng(3)
    res = _smooth(rng, 6000)
    data, shift_at = _phased_channel(res)
    data = bytearray(data)
    for bad_shift in (32, 200, 255):
        data2 = bytearray(data)
        data2[shift_at] = bad_shift
        with pytest.raises(DecodeError, match="phase shift"):
            section._get_pred(Reader(bytes(data2), "test"), len(res), [0])
    with pytest.raises(DecodeError, match="position channel"):
        section._get_pred(Reader(bytes(data), "test"), len(res), [0], wide=True)
    for cut in range(1, len(data), 97):
        with pytest.raises(DecodeError):
            r = Reader(bytes(data[:cut]), "test")
            section._get_pred(r, len(res), [0])
            r.end()
    # every byte flipped in turn: only our decode error, or the same length of values
    for i in range(0, len(data), 7):
        data2 = bytearray(data)
        data2[i] ^= 0x5A
        try:
            out = section._get_pred(Reader(bytes(data2), "test"), len(res), [0])
        except DecodeError:
            continue
        assert len(out) == len(res)


def test_blue_first_is_chosen_where_it_is_cheaper():
    """Colour whose blue is simplest (green from blue, red extrapolated) goes blue first; the
    mirror image red first; and each decodes to its codes."""
    rng = np.random.default_rng(4)
    n = 8000
    blue = rng.integers(-3, 4, n)
    green = blue + rng.integers(-40, 41, n)
    red = green + (green - blue) // 2 + rng.integers(-2, 3, n)
    simple_blue = np.stack([red, green, blue], 1).astype(np.int32)
    assert section._blue_first(simple_blue)
    assert not section._blue_first(simple_blue[:, ::-1].copy())
    assert not section._blue_first(simple_blue[:10])  # too few to estimate: the old order


def test_a_scene_snapshot_takes_both(monkeypatch):
    """The encoder uses them where they pay: a scene of smooth colour read without ids encodes
    smaller than with either switched off, and decodes to the same map."""
    from test_guards_format import scene_map

    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import decode_snapshot, encode_map

    g, p = scene_map(0), QuantParams.from_quality(0)
    data = encode_map(g, p, n_levels=1)[0]
    with monkeypatch.context() as m:
        m.setattr(phases, "MIN_VALUES", 1 << 40)
        assert len(encode_map(g, p, n_levels=1)[0]) > len(data) + 100
    with monkeypatch.context() as m:
        m.setattr(section, "_blue_first", lambda dc: False)
        no_blue = encode_map(g, p, n_levels=1)[0]
        assert len(no_blue) > len(data) + 100
        assert decode_snapshot(no_blue)[1].equals(decode_snapshot(data)[1])


def test_phases_are_kept_only_where_enough_smaller(monkeypatch):
    rng = np.random.default_rng(5)
    res = _smooth(rng, 20000)
    plain = Writer()
    put_stream(plain, res)
    _, split = _round_trip(res, None, 1)
    ratio = len(split) / len(plain.getvalue())
    for keep, phased in ((ratio * 1.001, True), (ratio * 0.999, False)):
        monkeypatch.setattr(phases, "KEEP", keep)
        w = Writer()
        section._put_pred(w, res, [0], phased=True)
        assert bool(w.getvalue()[0] & section.PHASED) == phased


def test_the_weighed_bit_says_whether_faint_neighbours_are_scaled():
    """On a faint lattice the encoder keeps the smaller of both weighings; the decoder follows the
    bit, whatever factor the channel has (a stream written unweighed decodes with factor 5)."""
    rng = np.random.default_rng(8)
    res = _smooth(rng, 6000)
    base = (rng.random(len(res)) < 0.5).astype(np.int64)
    w = Writer()
    phases.put(w, res, base, 2)  # (factor 1: unweighed)
    assert not w.getvalue()[0] & phases.WEIGHED
    r = Reader(w.getvalue(), "test")
    assert np.array_equal(phases.get(r, len(res), base, 2, (1 << 30) - 1, faint=5), res)
    sizes = {}
    for faint in (1, 5):
        out, data = _round_trip(res, base, 2, faint)
        assert np.array_equal(out, res)
        sizes[faint] = len(data)
    assert sizes[5] <= sizes[1]  # (the weighed form only where smaller)
