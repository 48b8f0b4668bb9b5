"""Version 11: a higher SH coefficient's colour channels 0 and 2 coded as differences from channel 1
(``section.CHANNEL_PRED``). Checked against the coefficient's own values, against sizes measured
by coding both ways, and against hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share import section
from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import put_stream
from gs_map_share.errors import DecodeError


def _channels(n: int, rho: float, scale: float = 6.0, seed: int = 0) -> np.ndarray:
    """(3, n) int32 channels of one coefficient whose pairwise correlation is about ``rho``."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 1, n)
    own = rng.normal(0, 1, (3, n))
    return np.rint(scale * (np.sqrt(rho) * common + np.sqrt(1 - rho) * own)).astype(np.int32)


def _put(ch: np.ndarray) -> bytes:
    w = Writer()
    section._put_sh_coefficient(w, ch)
    return w.getvalue()


def _get(data: bytes, n: int, bound: int) -> np.ndarray:
    r = Reader(data, "test")
    out = np.zeros((3, n), np.int32)
    section._get_sh_cols(r, out, np.full(3, bound))
    r.end()
    return out


def _forced(ch: np.ndarray, monkeypatch, predicted: bool) -> bytes:
    with monkeypatch.context() as m:
        m.setattr(section, "CHANNEL_PRED_GAIN", 1e9 if predicted else 0.0)
        return _put(ch)


@pytest.mark.parametrize("n", [300, 5000, 40000])
def test_correlated_channels_are_predicted_and_come_back(n):
    """Correlated channels take the form (after the joint form's byte where long and dense), and
    decode to the same values; uncorrelated ones do not take it."""
    ch = _channels(n, 0.95)
    data = _put(ch)
    assert data[0] == section.CHANNEL_PRED
    assert np.array_equal(_get(data, n, 64), ch)
    loose = _channels(n, 0.0, seed=1)
    data = _put(loose)
    assert data[0] != section.CHANNEL_PRED
    assert np.array_equal(_get(data, n, 64), loose)


def test_predicted_joint_form_round_trips():
    """Long dense small values: channel prediction, then the joint form of the differences."""
    n = 1 << 16
    ch = _channels(n, 0.8, scale=1.0, seed=3)
    data = _put(ch)
    assert data[0] == section.CHANNEL_PRED and data[1] == section.JOINT_MODE
    assert np.array_equal(_get(data, n, 64), ch)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.8, 0.9, 0.99])
def test_choice_follows_measured_sizes(rho, monkeypatch):
    """The form taken is within 2 % of the smaller of the two, each coded in full."""
    ch = _channels(20000, rho, seed=int(rho * 100))
    both = [len(_forced(ch, monkeypatch, p)) for p in (False, True)]
    chosen = len(_put(ch))
    assert chosen <= 1.02 * min(both) + 8
    assert chosen in both
    if rho >= 0.8:
        assert chosen == both[1] < both[0]


def test_all_zero_and_constant_channel_1():
    """Channel 1 all zero: nothing to predict from (plain); channels equal: the differences vanish."""
    n = 5000
    ch = _channels(n, 0.9)
    ch[1] = 0
    assert _put(ch)[0] != section.CHANNEL_PRED
    same = np.repeat(_channels(n, 0.0, seed=4)[:1], 3, axis=0)
    data = _put(same)
    assert data[0] == section.CHANNEL_PRED
    assert np.array_equal(_get(data, n, 64), same)


def _hostile(
    first: np.ndarray, middle: np.ndarray, last: np.ndarray, prefix=(section.CHANNEL_PRED,)
) -> bytes:
    w = Writer()
    for b in prefix:
        w.u8(b)
    for c in (first, middle, last):
        put_stream(w, c.astype(np.int64), True)
    return w.getvalue()


def test_hostile_bytes_refused():
    """Differences that rebuild a channel beyond the coefficient's range, differences beyond twice
    it, channel 1 beyond it in the joint form (found by a hostile review: the joint form reads its
    three channels under one limit), and the byte twice: one decode error each."""
    n = 1000
    z = np.zeros(n, np.int64)
    big = np.full(n, 40)
    with pytest.raises(DecodeError, match="outside its quantisation range"):
        _get(_hostile(big, big, z), n, 64)  # 80 > 64 in channel 0
    with pytest.raises(DecodeError, match="outside its quantisation range"):
        _get(_hostile(z, big, big), n, 64)  # channel 2
    with pytest.raises(DecodeError):
        _get(_hostile(np.full(n, 129), -big, z), n, 64)  # beyond 2 × 64 before the sum
    with pytest.raises(DecodeError):
        _get(_hostile(z, z, z, prefix=(section.CHANNEL_PRED, section.CHANNEL_PRED)), n, 64)
    # the joint form reads all three under the wider limit: channel 1 is still held to the range
    w = Writer()
    w.u8(section.CHANNEL_PRED)
    w.u8(section.JOINT_MODE)
    w.u8(2)
    wide = np.stack([z, z, z])
    wide[:, 5] = [-100, 100, -100]  # differences within 2 × 64: channels 0, 100, 0
    j, esc = section._joint_symbols(*section._zigzag_max(wide), 2)
    put_stream(w, j, False)
    for c in wide:
        put_stream(w, c[esc], True)
    with pytest.raises(DecodeError, match="outside its quantisation range"):
        _get(w.getvalue(), n, 64)
    # at the edge: −64 + 128 = 64 is inside
    ok = _get(_hostile(np.full(n, 128), np.full(n, -64), np.full(n, -0)), n, 64)
    assert ok[0].max() == 64 and ok[1].min() == -64
