"""The encoder's coded streams with contexts: the compiled path (the body of every context in one
call, and a short stream's per-context and one-table forms from one preparation) writes the very
bytes of the plain path (constriction's coder, Python's tables), and the stream decodes to the
values it was given."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_map_share import entropy, jit
from gs_map_share.bitio import Reader, Writer


def _both(fn):
    """``fn()`` with the compiled loops, then with the plain paths."""
    if jit.kernels() is None:
        pytest.skip("no compiled loops (numba absent or switched off)")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            out.append(fn())
    return out


@settings(max_examples=120, deadline=None)
@given(
    n=st.sampled_from([0, 1, 2, 17, 64, 65, 200, 1000, 4095, 4096, 5000]),
    n_ctx=st.sampled_from([1, 2, 3, 9, 130]),
    spread=st.sampled_from([0, 1, 5, 40, 3000, 1 << 40]),
    signed=st.booleans(),
    skew=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_put_stream_with_contexts_the_same_compiled_or_not(n, n_ctx, spread, signed, skew, seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(-spread, spread + 1, n) if signed else rng.integers(0, spread + 1, n)
    if skew:  # mostly small values with some escapes: contexts that differ
        v = np.where(rng.random(n) < 0.8, v % 3, v)
    # some contexts empty (only the lower half used) where skew
    hi = max(1, n_ctx // 2) if skew else n_ctx
    ctx = rng.integers(0, hi, n)

    def code():
        w = Writer()
        entropy.put_stream(w, v, signed, ctx=ctx, n_ctx=n_ctx)
        w2 = Writer()
        entropy.encode_stream(w2, v, signed, 5, ctx=ctx, n_ctx=n_ctx)
        w3 = Writer()  # (contexts counted by the caller: a Groups)
        entropy.put_stream(w3, v, signed, ctx=entropy.Groups(ctx, n_ctx), n_ctx=n_ctx)
        return w.getvalue(), w2.getvalue(), w3.getvalue()

    compiled, plain = _both(code)
    assert compiled == plain
    assert compiled[2] == compiled[0]
    for data in compiled:
        got = entropy.decode_stream(Reader(data), n, signed, ctx=ctx, n_ctx=n_ctx)
        assert np.array_equal(got, v)


def test_stats_best_the_same_compiled_or_not():
    """The one-call statistics (counts, every bound's estimate, the best bound) equal numpy's."""
    rng = np.random.default_rng(3)
    for n, spread, zeros in ((1, 0, 0), (5, 3, 2), (300, 40, 0), (3000, 1 << 20, 7), (70, 200, 100)):
        v = rng.integers(-spread, spread + 1, n)

        def stats(v=v, zeros=zeros):
            s = entropy.Stats(v, zeros=zeros)
            return s.best(), s._bits_by_bound().tolist(), s.small.tolist(), s.big_bl.tolist()

        compiled, plain = _both(stats)
        assert compiled == plain


def test_centring_median_is_numpys_median():
    """The residual median taken off a channel (from the Stats' counts, compiled or not) is
    ``int(np.median(v))`` for odd and even lengths, skewed and spread values."""
    from gs_map_share.section import _median_int

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 64, 65, 1000, 1001):
        for lo, hi in ((-3, 4), (-128, 128), (0, 1), (-60, -50), (100, 128)):
            v = rng.integers(lo, hi, n)

            def median(v=v):
                return _median_int(v, entropy.Stats(v))

            compiled, plain = _both(median)
            assert compiled == plain == int(np.median(v)), (n, lo, hi)
