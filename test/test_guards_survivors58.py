"""Mutation survey mut32a of the decoder side: container.py's header, TOC and chunk checks,
receiver.py's refusal paths, bitio.Reader's bounds and ans_decode's lane verdicts. Each test here
was seen to fail on the mutant named in its docstring (a copy of src/ with that one line changed)
and pass on the real code. The containers are the encoder's own (MapSender), edited the way a
damaged or hostile link would and, where the edit is behind a CRC, resealed; a receiver fed one
must refuse it and keep the map it had (compared with a receiver that never saw it)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.bitio import Reader
from gs_map_share.container import _FIXED, Header, pack, reseal, unpack, unpack_header
from gs_map_share.delta import MapSender
from gs_map_share.errors import DecodeError, EncodeError
from gs_map_share.quantize import QuantParams
from gs_map_share.receiver import APPLIED, BUFFERED, OTHER_MAP, REJECTED, SNAPSHOT, MapStore

P = QuantParams()
assert len(P.rot_tiers) == 4  # the tier edits below start from four tiers
# byte offsets in the version 6+ header (struct _FIXED; docs/format.md)
OFF_VERSION, OFF_HLEN, OFF_N_TIERS, OFF_TIERS, OFF_TILE_SIZE, OFF_POS_STEP = 4, 6, 96, 97, 56, 48


def _stream():
    """A snapshot and three deltas (the third removes Gaussians only) of a 600-Gaussian map."""
    rng = np.random.default_rng(58)
    g = synthetic_map(600, 0, seed=58)
    sender = MapSender.from_map(g, P, map_id=9, first_seq=100)
    msgs = [sender.snapshot()]
    for _ in range(2):
        ids = rng.choice(g.ids, 8, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.03)
        msgs.append(sender.update(g, g.take_changes())[0])
    g.remove(g.ids[:5])
    msgs.append(sender.update(g, g.take_changes())[0])
    return msgs, sender.snapshot()  # and a snapshot at the last delta's sequence


MSGS, LATE_SNAPSHOT = _stream()


def _edited(data: bytes, offset: int, fmt: str, value, seal: bool = True) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return reseal(bytes(b)) if seal else bytes(b)


def _store_after(n: int) -> MapStore:
    """A receiver that took the first ``n`` messages, all applied."""
    store = MapStore()
    for i, d in enumerate(MSGS[:n]):
        assert store.receive(d) == (SNAPSHOT if i == 0 else APPLIED)
    return store


def _refused_and_map_kept(bad: bytes, n: int = 2, by_unpack: bool = True) -> None:
    """``bad`` in place of message ``n``: unpack refuses it (``by_unpack``), a receiver rejects it
    and its map is the one a receiver that never saw it holds; the genuine message then applies."""
    if by_unpack:
        with pytest.raises(DecodeError):
            unpack(bad)
    store, clean = _store_after(n), _store_after(n)
    assert store.receive(bad) == REJECTED
    assert store.seq == clean.seq and store.pending == 0
    assert store.state.checksum() == clean.state.checksum() == unpack(MSGS[n - 1])[0].state_crc
    np.testing.assert_array_equal(store.gaussian_map().means, clean.gaussian_map().means)
    if n < len(MSGS):
        assert store.receive(MSGS[n]) == APPLIED


def _header(**kw) -> Header:
    h = dict(map_id=1, seq=3, base_seq=0, gaussians=0, state_crc=0, sh_degree=0, n_levels=1, params=P)
    h.update(kw)
    return Header(**h)


# ------------------------------------------------------------------------------------------------
# pack


def test_pack_refuses_a_frame_id_of_129_bytes_and_writes_128():
    """Mutant container.py:87 ``len(frame) > MAX_FRAME_ID + 1``: a 129-byte frame id was packed
    (a container every decoder refuses). 128 bytes round-trip; 129 are an EncodeError. Mutant
    container.py:190 (the decoded frame id stripped of trailing NULs): "map\\x00" came back "map"."""
    for frame in ("é" * 64, "map\x00", "\x00"):  # 128 bytes; NULs are text, kept as sent
        assert unpack_header(pack(_header(frame_id=frame), []))[0].frame_id == frame
    with pytest.raises(EncodeError, match="frame id longer than 128 bytes"):
        pack(_header(frame_id="f" * 129), [])


@pytest.mark.parametrize("name", ["map_id", "seq", "base_seq", "gaussians"])
def test_pack_refuses_uint64_fields_from_2_to_the_64(name):
    """Mutant container.py:91 ``value < 1 << 65``: 2**64 reached struct.pack (struct.error, not
    the EncodeError the CLI reports). 2**64 - 1 packs and reads back."""
    top = (1 << 64) - 1
    good = _header(seq=top, base_seq=top - 1) if name in ("seq", "base_seq") else _header(**{name: top})
    assert unpack_header(pack(good, []))[0] == good
    with pytest.raises(EncodeError, match=f"{name} must be 0"):
        pack(_header(**{name: 1 << 64}), [])


# ------------------------------------------------------------------------------------------------
# the header


def test_every_truncation_of_a_real_delta_is_refused_and_the_map_kept():
    """Mutants container.py:138 (first length check down to 4 bytes), :142 (second one removed)
    and :180 (``hlen > len(data)`` removed): a container cut short inside its header reached
    struct.unpack_from (struct.error, not DecodeError: the receiver raised). Every prefix of a real
    delta is a DecodeError, and a receiver keeps its map."""
    data = MSGS[2]
    hlen = struct.unpack_from("<H", data, OFF_HLEN)[0]
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            unpack(data[:n])
    for n in (0, 3, 5, 100, _FIXED.size + 6, hlen - 1, hlen, len(data) - 1):
        _refused_and_map_kept(data[:n])


def test_wrong_magic_and_unread_versions_are_refused():
    """Mutants container.py:174 (magic check removed) and :25 (READS with 13): a resealed delta
    whose magic is not GSMD, or whose version is 13 or 3, is refused and the receiver's map kept."""
    _refused_and_map_kept(_edited(MSGS[2], 0, "4s", b"GSMX"))
    for version in (13, 3):
        _refused_and_map_kept(_edited(MSGS[2], OFF_VERSION, "<H", version))
    with pytest.raises(DecodeError, match="unsupported version 13"):
        unpack(_edited(MSGS[2], OFF_VERSION, "<H", 13))


def test_a_header_byte_changed_behind_its_crc_is_refused():
    """Mutant container.py:183 (header CRC check removed): a delta whose map id's low byte is
    changed without resealing is refused naming the header CRC; the receiver's map is kept."""
    bad = bytearray(MSGS[2])
    bad[8] ^= 1  # map_id
    with pytest.raises(DecodeError, match="header CRC-32C mismatch"):
        unpack(bytes(bad))
    _refused_and_map_kept(bytes(bad))


def test_a_frame_id_length_that_disagrees_with_the_header_length_is_refused():
    """Mutant container.py:186 without ``layout.size + 3 + flen + 4 != hlen``: a header whose
    frame id length byte says 2 or 4 (the frame id is "map", the header length unchanged),
    resealed, read as frame "ma" (or one byte of the CRC more). Refused, the map kept."""
    assert unpack(MSGS[2])[0].frame_id == "map"
    for flen in (2, 4, 0):
        bad = _edited(MSGS[2], _FIXED.size + 2, "B", flen)
        with pytest.raises(DecodeError, match="frame id length"):
            unpack(bad)
        _refused_and_map_kept(bad)


def test_rotation_tiers_beyond_four_or_set_past_their_count_are_refused():
    """Mutant container.py:198 without ``n_tiers > MAX_ROT_TIERS``: a header declaring 5 tiers
    (only 4 are stored) read as 4. Without ``any(tiers[n_tiers:])``: a header declaring 2 tiers
    over 4 stored read as 2 (other quantisation parameters). Both resealed, both refused; the
    genuine count 4 is read."""
    assert unpack(MSGS[2])[0].params.rot_tiers == P.rot_tiers
    for n in (5, 2):
        bad = _edited(MSGS[2], OFF_N_TIERS, "B", n)
        with pytest.raises(DecodeError, match=f"{n} rotation tiers"):
            unpack(bad)
        _refused_and_map_kept(bad)


def test_a_nan_tile_size_is_refused():
    """Mutant container.py:217 ``tile_size <= 0 or tile_size >= 1e12``: NaN passed both (the map's
    tile size is metadata every receiver keeps). A resealed snapshot with a NaN or infinite tile
    size is refused and nothing is stored."""
    for bad in (float("nan"), float("inf"), 1e12):
        data = _edited(MSGS[0], OFF_TILE_SIZE, "<d", bad)
        with pytest.raises(DecodeError, match="bad tile size"):
            unpack(data)
        store = MapStore()
        assert store.receive(data) == REJECTED and not store.ready


# ------------------------------------------------------------------------------------------------
# table of contents and chunks


def test_a_toc_entry_changed_behind_its_crc_is_refused():
    """Mutant container.py:232 (TOC CRC check removed): the first chunk's type changed to PAD in
    the TOC, its CRC not recomputed: refused naming the TOC, the receiver's map kept."""
    hlen = struct.unpack_from("<H", MSGS[2], OFF_HLEN)[0]
    bad = _edited(MSGS[2], hlen, "B", 15, seal=False)
    with pytest.raises(DecodeError, match="table of contents CRC-32C mismatch"):
        unpack(bad)
    _refused_and_map_kept(bad)


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 4, b"GSMD"])
def test_bytes_after_the_last_chunk_are_refused(extra):
    """Mutant container.py:235 ``!=`` → ``>``: bytes after the chunks were ignored (a container
    glued to the start of another read as the first alone). Refused, the receiver's map kept."""
    with pytest.raises(DecodeError, match="follow the table of contents"):
        unpack(MSGS[2] + extra)
    _refused_and_map_kept(MSGS[2] + extra)


def test_a_chunk_byte_changed_behind_its_crc_is_refused_by_unpack():
    """Mutant container.py:243 (chunk CRC check removed): a byte of each chunk's body flipped, its
    CRC not recomputed, is refused by unpack naming the chunk, and a receiver keeps its map."""
    _, chunks = unpack(MSGS[2])
    pos = len(MSGS[2]) - sum(len(c.data) for c in chunks)
    for i, c in enumerate(chunks):
        if len(c.data):
            bad = bytearray(MSGS[2])
            bad[pos + len(c.data) // 2] ^= 0x10
            with pytest.raises(DecodeError, match=f"chunk {i} .* CRC-32C mismatch"):
                unpack(bytes(bad))
            _refused_and_map_kept(bytes(bad))
        pos += len(c.data)


# ------------------------------------------------------------------------------------------------
# the receiver


def test_a_delta_with_other_quantisation_parameters_is_refused_and_the_map_kept():
    """Mutant receiver.py:71 (the parameter check removed): a delta that only removes Gaussians
    decodes the same under any steps, so one whose header's position step was edited (resealed)
    applied, and the receiver then dequantised its whole map on the new step. Refused; the map
    (dequantised) stays the one a receiver that never saw it holds, and the genuine delta applies."""
    bad = _edited(MSGS[3], OFF_POS_STEP, "<d", P.pos_step * 2)
    assert unpack(bad)[0].params.pos_step == P.pos_step * 2
    _refused_and_map_kept(bad, n=3, by_unpack=False)


def test_another_maps_delta_from_the_future_is_refused_not_buffered():
    """Mutant receiver.py:58 (delta_standing's map id check removed): a delta for another map whose
    base is still to come was buffered (pending memory, and the store's answer BUFFERED) instead of
    refused as OTHER_MAP. The map id of the third delta edited (resealed), fed to a receiver at the
    first delta: OTHER_MAP, nothing pending, the map kept; the genuine deltas then apply."""
    bad = _edited(MSGS[3], 8, "<Q", 10)
    store, clean = _store_after(2), _store_after(2)
    assert store.receive(bad) == OTHER_MAP and store.pending == 0
    assert store.state.checksum() == clean.state.checksum()
    assert store.receive(MSGS[2]) == APPLIED and store.receive(MSGS[3]) == APPLIED


def test_a_snapshot_drops_the_buffered_delta_from_the_state_just_before_it():
    """Mutant receiver.py:133 (``take`` drops bases ``< seq - 1``): a buffered delta whose base is
    the sequence just before a newer snapshot stayed pending (memory the bounds count, never
    applicable). A receiver at the snapshot buffers the last delta, then gets the snapshot made
    after it: that delta is obsolete and nothing stays pending; the map is the snapshot's."""
    store = MapStore()
    assert store.receive(MSGS[0]) == SNAPSHOT
    assert store.receive(MSGS[3]) == BUFFERED and store.pending == 1
    assert store.receive(LATE_SNAPSHOT) == SNAPSHOT
    assert store.pending == 0 and store.pending_bytes == 0
    assert store.seq == unpack(MSGS[3])[0].seq
    assert store.state.checksum() == unpack(LATE_SNAPSHOT)[0].state_crc == unpack(MSGS[3])[0].state_crc


# ------------------------------------------------------------------------------------------------
# bitio.Reader


def test_varint_of_more_than_ten_bytes_is_refused():
    """Mutant bitio.py:126 ``shift > 70``: an 11-byte varint (ten continuation bytes, value 0) was
    read as 0. Ten bytes (the most a 64-bit value needs) are read; eleven are a DecodeError."""
    assert Reader(b"\x80" * 9 + b"\x01").varint() == 1 << 63
    assert Reader(b"\x80" * 9 + b"\x00").varint() == 0
    with pytest.raises(DecodeError, match="varint longer than 64 bits"):
        Reader(b"\x80" * 10 + b"\x00").varint()


def test_varint_above_its_limit_is_refused():
    """Mutant bitio.py:136 ``v > limit + 1``: a value one above the caller's limit was read. The
    limit itself is read; one more is a DecodeError naming both."""
    assert Reader(bytes([100])).varint(limit=100) == 100
    with pytest.raises(DecodeError, match="value 101 exceeds the limit 100"):
        Reader(bytes([101])).varint(limit=100)


def test_reader_end_refuses_one_trailing_byte_and_u8_past_the_end():
    """Mutants bitio.py:151 ``self.remaining > 1`` (one trailing byte passed ``end``) and :114
    ``p > len`` (u8 past the end: IndexError, not DecodeError)."""
    r = Reader(b"ab")
    assert r.u8() == ord("a")
    with pytest.raises(DecodeError, match="1 unexpected trailing bytes"):
        r.end()
    assert r.u8() == ord("b")
    r.end()
    with pytest.raises(DecodeError, match="needs 1 bytes, 0 left"):
        r.u8()
