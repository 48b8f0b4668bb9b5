"""Lines of the fleet merge, its store, region answers and the container whose breaking passed
every test (session #30's mut30d mutation survey), each now guarded by a test.

- Every byte of a container's header and table of contents is covered by its CRCs: a flip in any
  is refused (the random flips of test_share_fuzz missed the header's seq field).
- A vehicle snapshot at the sequence the server holds is a replay, as the vehicle's own receiver
  takes it: the server's copy stays the vehicle's.
- Vehicle map ids outside 1..2**31 − 1 are refused with nothing made; a container carrying the
  global map's own id, valid or corrupt, is counted as unknown, not as a vehicle.
- The fleet store refuses a file of another identity, field by field; drops bindings to map ids no
  vehicle log holds; records each tile at the sequence of the global delta that changed it.
- Region pages: every tile within the radius arrives on some page or is named in an error page,
  whatever ``max_bytes``; a tile whose nearest point is exactly at the radius is within it.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.container import unpack
from gs_map_share.delta import encode_delta
from gs_map_share.errors import DecodeError
from gs_map_share.fleet_store import FleetStore, FleetStoreError, Row, identity
from gs_map_share.merge import REJECTED, REPLAYED, FleetMerge, tile_counts
from gs_map_share.quantize import QuantParams, to_qmap
from gs_map_share.receiver import MapStore
from gs_map_share.region import RegionRequest, answer
from gs_map_share.snapshot import encode_snapshot

P = QuantParams.from_quality(2)
GLOBAL = 1_000_000


def _q(n=300, seed=1):
    return to_qmap(synthetic_map(n, sh_degree=0, seed=seed), P)


# --- the container's header and table of contents ---------------------------------------------------


@pytest.mark.parametrize("kind", ["snapshot", "delta"])
def test_a_flip_in_any_byte_of_the_header_or_the_table_of_contents_is_refused(kind):
    q = _q(100)
    if kind == "snapshot":
        data, _ = encode_snapshot(q, P, map_id=5, seq=7, n_levels=1)
    else:
        data, _ = encode_delta(q, q.take(np.arange(90)), P, map_id=5, seq=8, base_seq=7)
    hlen = struct.unpack_from("<H", data, 6)[0]
    n_chunks = len(unpack(data)[1])
    end = hlen + 2 + n_chunks * 16  # the table: a count, then its entries (at most 16 bytes each)
    assert end < len(data)
    for i in range(min(end, len(data) - 1)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(DecodeError):
                unpack(bytes(bad))


# --- fleet merge: replays and map ids ----------------------------------------------------------------


def test_a_vehicle_snapshot_at_the_held_sequence_is_a_replay_as_for_its_receiver():
    a, _ = encode_snapshot(_q(300, 1), P, map_id=5, seq=4, n_levels=1)
    b, _ = encode_snapshot(_q(200, 2), P, map_id=5, seq=4, n_levels=1)  # another map, the same seq
    fleet, store = FleetMerge(P, global_map_id=GLOBAL), MapStore()
    statuses = []
    for data in (a, a, b):
        statuses.append(fleet.offer(data).status)
        store.receive(data)
    assert statuses[1:] == [REPLAYED, REPLAYED]
    assert fleet.vehicles[5].state.equals(store.state) and len(store.state) == 300


@pytest.mark.parametrize("map_id", [0, 1 << 31, (1 << 64) - 1])
def test_a_vehicle_map_id_outside_its_range_is_refused_with_nothing_made(map_id):
    data, _ = encode_snapshot(_q(), P, map_id=map_id, seq=1, n_levels=1)
    fleet = FleetMerge(P, global_map_id=GLOBAL)
    assert fleet.offer(data).status == REJECTED
    assert not fleet.vehicles and len(fleet.global_map) == 0 and fleet.unknown[REJECTED] == 1


@pytest.mark.parametrize("corrupt", [False, True])
def test_a_container_carrying_the_global_maps_own_id_is_unknown_not_a_vehicle(corrupt):
    data, _ = encode_snapshot(_q(), P, map_id=GLOBAL, seq=1, n_levels=1)
    if corrupt:
        data = data[:-1] + bytes([data[-1] ^ 0xFF])
    fleet = FleetMerge(P, global_map_id=GLOBAL)
    got = fleet.offer(data)
    assert got.status == REJECTED and got.map_id is None
    assert not fleet.vehicles and fleet.unknown[REJECTED] == 1 and len(fleet.global_map) == 0


# --- the fleet store -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", [("map_id", 7), ("frame_id", "odom"), ("params", QuantParams.from_quality(3)), ("sh_degree", 3)]
)
def test_a_store_of_another_identity_is_refused_field_by_field(tmp_path, field):
    base = {"map_id": GLOBAL, "frame_id": "map", "params": P, "sh_degree": 0}
    FleetStore(str(tmp_path / "s.db"), identity(*base.values())).close()
    other = {**base, field[0]: field[1]}
    with pytest.raises(FleetStoreError):
        FleetStore(str(tmp_path / "s.db"), identity(*other.values())).close()
    FleetStore(str(tmp_path / "s.db"), identity(*base.values())).close()  # its own still opens


def test_a_store_keeps_bindings_only_to_vehicles_it_holds_and_each_tiles_sequence(tmp_path):
    q = _q(100)
    store = FleetStore(str(tmp_path / "s.db"), identity(GLOBAL, "map", P, 0))
    for k in range(2, 7):  # global deltas 2..6, delta k changing tile (0, 0, k)
        d, _ = encode_delta(q, q, P, map_id=GLOBAL, seq=k, base_seq=k - 1, n_levels=1)
        store.commit([], Row(k, k - 1, d), [(0, 0, k)])
    snap, _ = encode_snapshot(q, P, map_id=5, seq=1, n_levels=1)
    store.commit([(5, Row(1, 0, snap))], bindings={"/v5": 5, "/ghost": 9})
    got = store.load()
    store.close()
    assert got.bindings == {"/v5": 5}
    assert {t: s for t, s in got.tile_seq.items() if t[:2] == (0, 0)} == {(0, 0, k): k for k in range(2, 7)}


# --- region answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [1024, 3000, 20_000, 1 << 20])
def test_region_pages_bring_every_tile_within_the_radius(max_bytes):
    q = _q(3000)
    counts = tile_counts(q, P.tile_bits)
    tile_seq = {t: 1 for t in counts}
    edge = (1 << P.tile_bits) * P.pos_step
    centre = (np.array(max(counts, key=counts.get)) + 0.5) * edge  # on the densest tile
    cursor, got, named = 0, set(), set()
    for _ in range(10_000):
        req = RegionRequest(*centre, radius_m=3 * edge, cursor=cursor, max_bytes=max_bytes)
        a = answer(req, q, P, map_id=9, seq=1, tile_seq=tile_seq)
        if a.status == "ok":
            got |= {tuple(t) for t in a.tiles}
        else:
            named.add(cursor)
        if a.next_cursor is None:
            break
        cursor = a.next_cursor
    lo = np.array(list(counts), np.float64) * edge
    near = np.linalg.norm(np.clip(centre, lo, lo + edge) - centre, axis=1) <= 3 * edge
    within = {t for t, ok in zip(counts, near, strict=True) if ok}
    assert got <= within and len(got) + len(named) == len(within)


def test_a_tile_exactly_at_the_radius_is_within_it():
    q = _q(3000)
    counts = tile_counts(q, P.tile_bits)
    tile = max(counts, key=counts.get)
    edge = (1 << P.tile_bits) * P.pos_step
    lo = np.array(tile, np.float64) * edge
    centre = lo + np.array([-2 * edge, edge / 2, edge / 2])  # 2 edges from its −x face
    req = RegionRequest(*centre, radius_m=2 * edge, max_bytes=1 << 20)
    a = answer(req, q, P, map_id=9, seq=1, tile_seq={tile: 1})
    assert a.tiles == [list(tile)]
