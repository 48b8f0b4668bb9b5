"""Hostile input: mutated, truncated and lying containers raise DecodeError only, quickly, without
allocations sized by a header (a long fuzz run is in bench/codec.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_maps import fuzz_seeds

from gs_map_share.container import Chunk, pack, reseal, unpack
from gs_map_share.delta import decode_delta
from gs_map_share.errors import DecodeError
from gs_map_share.receiver import MapStore
from gs_map_share.snapshot import decode_map, decode_snapshot

SNAP, Q0, DELTA, LAYERED = fuzz_seeds(300, seed=11)


def _lanes_seed() -> bytes:
    """A single-level SH0 snapshot of 5,000 Gaussians: its long streams are two-lane (mode 6)."""
    from synthetic_maps import synthetic_map

    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import encode_map

    return encode_map(synthetic_map(5000, 0, seed=12), QuantParams.from_quality(2), n_levels=1)[0]


LANES = _lanes_seed()
# a single-level scene whose colour travels blue first in neighbour phases (version 9)
PHASED = (Path(__file__).resolve().parent / "data" / "codec_golden_v9_q0_scene.bin").read_bytes()
# the last of several levels in octree tails (version 10)
TAILED = (Path(__file__).resolve().parent / "data" / "codec_golden_v10_q3_scene5.bin").read_bytes()
# higher SH channels from channel 1 (version 11), in an SH palette by first use (version 12) under
# coarse levels
SHEEN = (Path(__file__).resolve().parent / "data" / "codec_golden_v12_q3_sheen_palette.bin").read_bytes()


def _decode_any(b: bytes) -> None:
    try:
        decode_snapshot(b)
    except DecodeError:
        pass
    try:
        decode_delta(Q0, b)
    except DecodeError:
        pass
    for k in (0, 2):
        try:
            decode_map(b, max_level=k)
        except DecodeError:
            pass


mutation = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(["snapshot", "delta", "layered", "lanes", "phased", "tailed", "sheen"]),
    muts=mutation,
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
    seal=st.booleans(),
)
def test_mutated_containers_raise_only_decode_error(which, muts, cut, seal):
    seeds = {
        "snapshot": SNAP,
        "delta": DELTA,
        "layered": LAYERED,
        "lanes": LANES,
        "phased": PHASED,
        "tailed": TAILED,
        "sheen": SHEEN,
    }
    b = bytearray(seeds[which])
    for pos, val in muts:
        b[pos % len(b)] = val
    if cut is not None:
        b = b[: cut % (len(b) + 1)]
    b = bytes(b)
    if seal:
        b = reseal(b)
    _decode_any(b)  # anything but DecodeError propagates and fails the test


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data):
    _decode_any(data)
    _decode_any(b"GSMD" + data)


def test_lying_counts_rejected_before_allocation():
    h, chunks = unpack(SNAP)
    # a header claiming 2**40 Gaussians, correctly sealed
    h.gaussians = 1 << 40
    with pytest.raises(DecodeError, match="more than"):
        decode_snapshot(pack(h, chunks))
    # a TILES chunk claiming 2**40 Gaussians (header left honest)
    from gs_map_share.bitio import Reader, Writer

    h, chunks = unpack(SNAP)
    r = Reader(chunks[0].data)
    r.varint()
    w = Writer()
    w.varint(1 << 40)
    chunks[0] = Chunk(1, 0, w.getvalue() + bytes(chunks[0].data[r.pos :]))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_snapshot(pack(h, chunks))


def test_wrong_magic_version_and_other_map():
    with pytest.raises(DecodeError, match="magic"):
        decode_snapshot(b"XXXX" + SNAP[4:])
    b = bytearray(SNAP)
    struct.pack_into("<H", b, 4, 99)
    with pytest.raises(DecodeError, match="version"):
        decode_snapshot(reseal(bytes(b)))
    store = MapStore(map_id=2)
    assert store.receive(SNAP) == "other_map"


def test_unknown_chunk_types_are_skipped():
    h, chunks = unpack(SNAP)
    data = pack(h, chunks[:1] + [Chunk(200, 0, b"future extension")] + chunks[1:])
    assert decode_map(data).equals(decode_map(SNAP))


def test_every_single_byte_flip_is_caught():
    rng = np.random.default_rng(0)
    for i in rng.choice(len(DELTA), 200, replace=False):
        b = bytearray(DELTA)
        b[i] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(DecodeError):
            decode_delta(Q0, bytes(b))


def test_out_of_memory_while_decoding_is_a_decode_error_that_says_so():
    """The receiver keeps its map on a DecodeError; running out of memory is one, named as such
    (a valid container too large for the machine is not 'malformed')."""
    from gs_map_share.snapshot import guarded

    def oom():
        raise MemoryError

    with pytest.raises(DecodeError, match="out of memory while decoding"):
        guarded(oom)
