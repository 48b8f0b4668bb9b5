"""The compiled one-call reader of a coded stream (kernels.coded_stream) on a stream cut inside its
lengths: a length varint's limit was the bytes left before the varint, so a length one byte too
long passed and the reader read past the chunk's end and moved the reader beyond it (found by
test_share_ans_decode's hypothesis run: 'test: -1 unexpected trailing bytes'). It now hands the
stream to the step-by-step reader, which names the fault."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share import entropy, jit
from gs_map_share.bitio import Reader, Writer
from gs_map_share.errors import DecodeError


def _read(data: bytes, n: int, signed: bool) -> object:
    try:
        r = Reader(data, "test")
        v = entropy.decode_stream(r, n, signed=signed, int32=True)
        r.end()
        return v.tolist()
    except DecodeError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "vals,signed,log2t",
    [
        ([16, 13], False, 2),  # escapes: the mantissa blob's length is the last varint
        (list(range(40)) * 3, True, 6),  # no escapes: the words' count, the table's bytes
        ([5, 900, 3, 70000, 1] * 20, True, 3),
    ],
)
def test_every_cut_reads_as_the_step_by_step_reader_reads_it(vals, signed, log2t):
    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("numba not installed or switched off")
    w = Writer()
    entropy.encode_stream(w, np.array(vals, np.int64), signed, log2t)
    data = w.getvalue()
    assert data[0] in (2, 6)  # (a coded stream: the one-call reader's)
    for cut in range(1, len(data) + 1):
        got = []
        with pytest.MonkeyPatch.context() as mp:
            for compiled in (kernels, False):
                mp.setattr(jit, "_kernels", compiled)
                got.append(_read(data[:cut], len(vals), signed))
        assert got[0] == got[1], cut
        if cut < len(data):
            assert isinstance(got[1], str)  # (the plain reader refuses every cut)
    assert got[0] == vals
