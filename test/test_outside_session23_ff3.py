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
