"""entropy.encode_stream's symbols laid out for the ANS coder by the compiled loops (one context in
one or two lanes: ``kernels.lane_symbols``; several contexts grouped by a counting sort:
``kernels.group_symbols``): the same stream bytes as numpy's stable sort, gathers and counts, and
the reference reader (compiled loops off) gives the values back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_map_share import entropy, jit
from gs_map_share.bitio import Reader, Writer


def _both(vals, signed, log2t, ctx, n_ctx, groups):
    """(compiled bytes, plain bytes, the plain reader's values of the compiled bytes)."""
    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("numba not installed or switched off")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (kernels, False):
            mp.setattr(jit, "_kernels", compiled)
            c = entropy.Groups(ctx, n_ctx) if groups and ctx is not None else ctx
            w = Writer()
            entropy.encode_stream(w, vals, signed, log2t, ctx=c, n_ctx=n_ctx)
            out.append(w.getvalue())
        back = entropy.decode_stream(Reader(out[0]), len(vals), signed, ctx=ctx, n_ctx=n_ctx)
    return out[0], out[1], back


@settings(max_examples=60, deadline=None)
@given(
    n=st.sampled_from([2, 17, 300, 4095, 4096, 4097, 9001]),
    n_ctx=st.integers(1, 6),
    spread=st.sampled_from([1, 5, 40, 300, 1 << 40]),
    log2t=st.integers(2, 8),
    signed=st.booleans(),
    groups=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_laid_out_symbols_code_the_same_bytes(n, n_ctx, spread, log2t, signed, groups, seed):
    """Every value count around the two-lane threshold (4096), contexts with a skewed mix (some
    empty: their tables are left out), escapes from small to 41-bit values, raw context arrays
    and shared Groups."""
    rng = np.random.default_rng(seed)
    mag = rng.integers(0, spread, n, dtype=np.int64) >> rng.integers(0, 3, n)
    vals = np.where(rng.random(n) < 0.5, -mag, mag) if signed else mag
    if n_ctx > 1:  # context-dependent statistics, so that a table per context pays where it may
        ctx = rng.choice(n_ctx, n, p=np.arange(n_ctx, 0, -1) / (n_ctx * (n_ctx + 1) / 2))
        ctx[ctx == n_ctx - 1] = 0 if rng.random() < 0.5 else n_ctx - 1  # (the last maybe empty)
        vals = vals * (ctx + 1) if spread < (1 << 40) else vals
    else:
        ctx = None
    compiled, plain, back = _both(vals, signed, log2t, ctx, n_ctx, groups)
    assert compiled == plain
    assert np.array_equal(back, vals)


def test_context_groups_keep_each_contexts_value_order():
    """A counting sort that put a context's values out of their order would code other bytes: a
    stream whose two contexts each hold a ramp (the order matters to the ANS words, not the
    counts)."""
    n = 20_000
    ctx = (np.arange(n) % 3 == 0).astype(np.int64)
    vals = (np.arange(n) % 50).astype(np.int64) * (1 + ctx)
    compiled, plain, back = _both(vals, True, 6, ctx, 2, True)
    assert compiled[:3] == bytes([2, 6, 2])  # (dense, one lane, both contexts kept)
    assert compiled == plain
    assert np.array_equal(back, vals)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3000),
    a=st.integers(2, 320),
    power=st.integers(1, 8),
    lanes=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_ans_coder_writes_constrictions_words(n, a, power, lanes, seed):
    """kernels.ans_encode against constriction's own coder (``AnsCoder().encode_reverse`` of the
    table's model, then ``get_compressed``): the same words for every row, one or two rows (odd
    counts: row 0 one longer), skewed tables with symbols of frequency 0 (each still has a slot)
    and the rare symbols drawn too."""
    import constriction

    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("numba not installed or switched off")
    rng = np.random.default_rng(seed)
    p = rng.random(a) ** power
    freq = (p / p.sum() * 60_000).astype(np.int64)
    freq[rng.integers(0, a)] += 1
    sym = np.where(rng.random(n) < 0.02, rng.integers(0, a, n), rng.choice(a, n, p=p / p.sum())).astype(
        np.int32
    )
    rows = np.zeros((lanes, (n + lanes - 1) // lanes), np.int32)
    lens = np.array([len(sym[lane::lanes]) for lane in range(lanes)], np.int64)
    for lane in range(lanes):
        rows[lane, : lens[lane]] = sym[lane::lanes]
    words, nw = np.empty((lanes, int(lens[0]) + 2), np.uint32), np.empty(lanes, np.int64)
    kernels.ans_encode(rows, lens, kernels.quantized_cdf(freq), words, nw)
    model = entropy._model(freq)
    for lane in range(lanes):
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.ascontiguousarray(sym[lane::lanes]), model)
        assert words[lane, : nw[lane]].tolist() == coder.get_compressed().tolist()
