"""Outside review of map sharing end to end (``gs_map_share``: snapshots, deltas, the receiver's
store, progressive levels of detail, lane containers), session 23.

References are outside the component: hand computations of the lattice points a map or a lane
must come back as, the rules docs/format.md states (size caps, PAD, sequence rules), and a
container reader written here from docs/format.md section 2 with the ``crc32c`` library.
Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import numpy as np
import pytest
from test_share_codec import random_map

from gs_map_share.lanes import Lane, decode_lanes, encode_lanes, quantize_lanes


def test_long_straight_lane_travels():
    """A lane of the fused HD map is resampled every metre (``lane_map.resample_spacing``); a
    straight axis-aligned road of 6 km (a simulator's grid town) is 6,001 points whose differences
    are all (100, 0) on the 1 cm lattice: a stream that codes to almost nothing. docs/format.md
    section 2: "An encoder whose output would be smaller than that [8 · bytes + 4096 per count]
    appends a PAD chunk". The receiver must get the hand-computed lattice points back, not refuse
    the sender's own container."""
    x = np.arange(6001, dtype=np.float64)
    lane = Lane(7, 1, 1.0, np.stack([x, np.full_like(x, 3.5)], 1))
    data = encode_lanes(None, quantize_lanes([lane]), map_id=1, seq=1, base_seq=0)
    _, got = decode_lanes(data, None)
    want = np.stack([np.arange(6001) * 100, np.full(6001, 350)], 1)
    assert list(got.lanes) == [7]
    np.testing.assert_array_equal(got.lanes[7][2], want)


def test_many_empty_lanes_travel():
    """Lanes without points (a track whose points were all cut) are lanes the receiver must hold:
    20,000 of them with consecutive ids code to ~150 bytes, below the decoder's count cap of
    8 · bytes + 4096 unless the encoder pads (docs/format.md section 2). Hand check: the ids."""
    lanes = [Lane(i, 0, 1.0, np.zeros((0, 2))) for i in range(1, 20001)]
    data = encode_lanes(None, quantize_lanes(lanes), map_id=1, seq=1, base_seq=0)
    _, got = decode_lanes(data, None)
    assert sorted(got.lanes) == list(range(1, 20001))


def test_lane_point_rounding_onto_the_limit_is_refused_by_the_encoder():
    """The lane decoder refuses a coordinate of 2^40 lattice steps or more. A point at
    (2^40 − 0.5) steps passes the encoder's check before rounding and rounds (half to even, as
    numpy's rint and IEEE-754 do) to exactly 2^40: the encoder must refuse it (EncodeError, one
    line) rather than send a container every receiver rejects."""
    from gs_map_share.errors import EncodeError

    step = 1.0  # exact in binary, so (2^40 − 0.5) · step is the float itself
    far = float(2**40) - 0.5
    assert np.rint(far) == 2**40  # the hand computation the test rests on
    lane = Lane(1, 0, 1.0, np.array([[far, 0.0], [0.0, 0.0]]))
    try:
        state = quantize_lanes([lane], step)
    except EncodeError:
        return
    data = encode_lanes(None, state, map_id=1, seq=1, base_seq=0, step=step)
    _, got = decode_lanes(data, None)  # must not raise: what the encoder sends, the decoder reads
    assert got.lanes[1][2][0, 0] == 2**40


def _receiver():
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import ReplayBus, ReplayContext

    bus = ReplayBus()
    cls = node_class("map_receiver_node")
    return bus, cls(ReplayContext(bus, "map_receiver_node"), cls.load_config(None))


def test_receiver_waiting_before_its_first_snapshot_names_the_snapshot():
    """docs/format.md section 5: a receiver applies a delta only on the state it was made from, and
    ``MapSender`` numbers from the wall clock in microseconds, so a receiver without a map follows
    the sender from its first snapshot; no "delta 1" ever comes. With deltas buffered and no
    snapshot yet, what map_receiver_node says it waits for must be the snapshot (on its topic)."""
    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.messages import bytes_to_uint8_multiarray

    rng = np.random.default_rng(0)
    g = random_map(rng, 50, deg=0)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), map_id=3)
    g.update(g.ids[:5], means=g.means[:5] + 0.1)
    delta, _ = sender.update(g, g.take_changes())
    bus, node = _receiver()
    bus.inject("/mapper_node/map_delta", bytes_to_uint8_multiarray(delta, bus.factory), 1)
    assert node.store.pending == 1
    waiting = node.diag.values.get("waiting_for", "")
    assert "snapshot" in waiting and "mapper_node/map_snapshot" in waiting, waiting
    assert "delta 1 " not in waiting, waiting


@pytest.mark.parametrize(
    "option, value, name",
    [
        ("--seq", 0, "--seq"),
        ("--seq", 1 << 64, "--seq"),
        ("--map-id", -1, "--map-id"),
        ("--map-id", 1 << 64, "--map-id"),
    ],
)
@pytest.mark.parametrize("cmd", ["encode", "convert"])
def test_encode_container_fields_out_of_range_name_the_option(tmp_path, capsys, cmd, option, value, name):
    """docs/format.md section 2: map_id and seq are uint64 and a snapshot's seq is ≥ 1. A value
    outside is the option's fault: one line naming the option (exit 2), not one that puts the
    input file's name in front as if the scene were bad."""
    from gs_mapping.cli import main
    from gs_mapping.ply import save_ply

    scene = tmp_path / "scene.ply"
    save_ply(random_map(np.random.default_rng(1), 20, deg=0), scene)
    rc = main([cmd, str(scene), str(tmp_path / "x.gsd"), option, str(value)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert name in err and str(scene) not in err, err
    assert not (tmp_path / "x.gsd").exists()


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 127) << s
        s += 7
        if c < 128:
            return v, i


def _chunks_by_the_docs(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, level, body) of each chunk, read as docs/format.md section 2 lays a container out
    (header_len at 6, n_chunks at 110, 12-byte TOC entries and their CRC-32C), every CRC checked
    with the ``crc32c`` library."""
    import struct

    crc32c = pytest.importorskip("crc32c").crc32c
    assert data[:4] == b"GSMD"
    hlen = struct.unpack_from("<H", data, 6)[0]
    assert crc32c(data[: hlen - 4]) == struct.unpack_from("<I", data, hlen - 4)[0]
    n = struct.unpack_from("<H", data, 110)[0]
    toc = data[hlen : hlen + 12 * n]
    assert crc32c(toc) == struct.unpack_from("<I", data, hlen + 12 * n)[0]
    out, pos = [], hlen + 12 * n + 4
    for i in range(n):
        ctype, level, flags, length, crc = struct.unpack_from("<BBHII", toc, 12 * i)
        body = data[pos : pos + length]
        assert flags == 0 and crc32c(body) == crc
        out.append((ctype, level, body))
        pos += length
    assert pos == len(data)  # "The container must end exactly after the last body"
    return out


@pytest.mark.parametrize("quality", [0, 2])
def test_progressive_prefix_is_one_gaussian_per_occupied_octree_cell(quality):
    """docs/format.md section 4: coarse level k has "one coarse Gaussian per node at depth d_k",
    the nodes being the distinct occupied cells of 2^(D − d_k) lattice steps, and its position
    lies inside its node's cell. The depths d_k are read here from the TILES chunk by the docs'
    layout (varint n, varint L, L × u8 depth); the occupied cells are computed from the sender's
    quantised positions. A receiver given levels 0..k must get exactly one Gaussian in each, ids
    1..M, level k."""
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import decode_map, encode_map

    p = QuantParams.from_quality(quality)
    g = random_map(np.random.default_rng(quality), 20000, deg=0, spread=4.0)
    g.levels[:] = 0  # one level: the encoder's own octree levels of detail
    data, info = encode_map(g, p, n_levels=5)
    tiles = [body for t, _, body in _chunks_by_the_docs(data) if t == 1]
    assert len(tiles) == 1
    n, i = _varint(tiles[0], 0)
    n_levels, i = _varint(tiles[0], i)
    depths = list(tiles[0][i : i + n_levels])
    assert n == 20000 and n_levels == info.levels >= 2 and depths[-1] == p.tile_bits
    lattice = to_qmap(g, p).pos
    for k in range(n_levels - 1):
        cell = 1 << (p.tile_bits - depths[k])
        occupied = {tuple(c) for c in (lattice // cell).tolist()}
        prefix = decode_map(data, k)
        at = np.floor(prefix.means.astype(np.float64) / p.pos_step / cell).astype(np.int64)
        assert len(prefix) == len(occupied)
        assert {tuple(c) for c in at.tolist()} == occupied
        assert prefix.ids.tolist() == list(range(1, len(prefix) + 1))
        assert set(prefix.levels.tolist()) == {k}


def test_lane_container_cut_at_every_byte_leaves_the_lanes_untouched():
    """A lane delta cut at any byte (a message truncated on the way) must be one DecodeError and
    leave the receiver's lanes as they were (compared with a copy taken before); the whole one
    then gives the hand-computed lattice points, rint(point / 1 cm)."""
    from gs_map_share.errors import DecodeError

    rng = np.random.default_rng(4)
    old = quantize_lanes([Lane(i, i % 3, 0.5, rng.normal(size=(8, 2)) * 20) for i in range(1, 6)])
    new_lanes = [Lane(i, i % 3, 0.7, rng.normal(size=(8, 2)) * 20) for i in range(3, 9)]
    new = quantize_lanes(new_lanes)
    _, held = decode_lanes(encode_lanes(None, old, map_id=2, seq=10, base_seq=0), None)
    before = {i: (c, s, p.copy()) for i, (c, s, p) in held.lanes.items()}
    delta = encode_lanes(old, new, map_id=2, seq=11, base_seq=10)
    for cut in range(len(delta)):
        with pytest.raises(DecodeError):
            decode_lanes(delta[:cut], held)
    assert held.lanes.keys() == before.keys()
    for i, (c, s, p) in before.items():
        assert held.lanes[i][:2] == (c, s) and np.array_equal(held.lanes[i][2], p)
    _, got = decode_lanes(delta, held)
    assert sorted(got.lanes) == list(range(3, 9))
    for ln in new_lanes:
        np.testing.assert_array_equal(got.lanes[ln.id][2], np.rint(ln.points / 0.01).astype(np.int64))


def test_deltas_in_any_order_across_the_2_to_the_32_sequence_boundary():
    """docs/format.md section 5: a receiver applies a delta only on its base, buffers later ones,
    drops earlier ones and replaces its state by any newer snapshot. Whatever order the snapshot
    and eight deltas arrive in, with replays, the store must end at the sender's last sequence
    number and hold exactly the sender's quantised map (``quantize``, section 1). Sequence
    numbers cross 2^32 and ids lie near 2^63, where 32-bit or float64 arithmetic would show."""
    import random

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams, quantize
    from gs_map_share.receiver import MapStore

    rng = np.random.default_rng(11)
    high = np.arange(100, dtype=np.uint64) + np.uint64(2**63 - 1000)  # the map adds above these
    ids = np.concatenate([np.arange(1, 101, dtype=np.uint64), high])
    g = random_map(rng, 200, deg=1, ids=ids)
    p = QuantParams.from_quality(1)
    sender = MapSender.from_map(g, p, map_id=2**32 + 1, first_seq=2**32 - 4)
    msgs = [sender.snapshot()]
    for step in range(8):
        g.remove(rng.choice(g.ids, 10, replace=False))
        g.update(g.ids[:5], means=g.means[:5] + 0.01 * (step + 1))
        a = random_map(rng, 5, deg=1)
        g.add(a.means, a.quats, a.log_scales, a.opacity_logits, a.sh, a.levels)
        msgs.append(sender.update(g, g.take_changes())[0])
    assert sender.seq == 2**32 + 4
    want = quantize(g, p)
    for trial in range(40):
        order = msgs + random.Random(trial).choices(msgs, k=4)
        random.Random(trial).shuffle(order)
        store = MapStore()
        for m in order:
            store.receive(m)
        assert store.seq == sender.seq and store.gaussian_map().equals(want), (trial, store.stats)


def test_lane_with_a_nan_score_is_one_encode_error():
    """A lane's score travels as a u8, score · 255 (lanes.py's format): NaN has no such value
    (IEEE-754: it compares false with every bound, so clipping cannot place it). The encoder must
    refuse it with its own one-line EncodeError naming the lane, as it does a NaN point, and not
    let Python's ``int(nan)`` ValueError escape to the node."""
    from gs_map_share.errors import EncodeError

    with pytest.raises(EncodeError, match="lane 4"):
        quantize_lanes([Lane(4, 0, float("nan"), np.zeros((2, 2)))])


@pytest.mark.parametrize("field", ["op", "scale", "dc", "rot", "rest", "faint_scale"])
def test_delta_cannot_make_a_map_outside_the_format_lattice(field):
    """docs/format.md section 1 defines the integers a map holds: opacity rint(clip(x, −20, 20) /
    step), log-scales clipped to [−30, 12], DC and SH to ±64, rotation components |c| ≤ 2^(b−1) − 1,
    a faint Gaussian's scales and DC multiples of F. A snapshot decoder refuses anything else, so
    a delta (a hostile or broken sender's, with valid CRCs and a matching checksum) that updates a
    Gaussian outside them must be rejected whole too, the receiver's map untouched: otherwise the
    receiver holds a map no snapshot can carry (the fleet server re-encodes what it accepts)."""
    from gs_map_share.delta import encode_delta
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.receiver import MapStore
    from gs_map_share.snapshot import encode_snapshot

    p = QuantParams.from_quality(2)  # opacity step 1/10: |code| ≤ 200; rotations ≤ 8 bits: |c| ≤ 127
    assert p.faint_factor == 2
    g = random_map(np.random.default_rng(5), 50, deg=1)
    old = to_qmap(g, p)
    new = old.take(np.arange(len(old)))
    for name in ("op", "scale", "dc", "rot", "rest"):
        setattr(new, name, getattr(new, name).copy())
    if field == "op":
        new.op[3] = 10**6
    elif field == "scale":
        new.scale[3, 0] = 10**6
    elif field == "dc":
        new.dc[3, 1] = -(10**6)
    elif field == "rot":
        new.rot[3] = [1000, 0, 0]
    elif field == "rest":
        new.rest[3, 0, 2] = 10**6
    else:
        faint = int(np.flatnonzero(new.op < p.faint_below)[0])
        new.scale[faint, 0] += 1  # odd: off the faint lattice of F = 2
    store = MapStore()
    assert store.receive(encode_snapshot(old, p, seq=1)[0]) == "snapshot"
    data, _ = encode_delta(old, new, p, map_id=1, seq=2, base_seq=1)
    assert store.receive(data) == "rejected", field
    assert store.seq == 1 and store.state.checksum() == old.checksum()
