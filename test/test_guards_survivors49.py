"""Lines of the map-sharing package whose breaking passed every test (session #30's mut30c
mutation survey), each now guarded by a test.

- A delta whose every checksum is right but whose records are not (a broken or hostile sender:
  the state checksum computed for what it would make) is refused by the layered checks, and the
  receiver's map and sequence stay as they were: removing or updating an id the map does not hold,
  updating a value off its quantisation lattice, adding an id the map already holds.
- In a fleet of SH degree ≥ 1, a vehicle that changes only its Gaussians' higher SH: the global
  map follows it (the changed tiles took no account of the higher SH: the global map kept the old
  coefficients and sent no delta).
- ``MapSender.update`` across an SH-degree change and ``encode_delta`` from base 0 (a snapshot's
  base) are refused with EncodeError.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.bitio import Writer
from gs_map_share.container import REMOVED, UPDATED, Chunk, Header, pack
from gs_map_share.delta import F_OP, MapSender, _put, _put_ids, _put_updates, encode_delta
from gs_map_share.errors import EncodeError
from gs_map_share.merge import FleetMerge
from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_map_share.receiver import MapStore
from gs_map_share.section import encode_section

P = QuantParams()


def _sender():
    s = MapSender.from_map(synthetic_map(200, 0, seed=1), P, map_id=5, first_seq=10)
    return s, s.snapshot(), s.shadow


def _delta(chunks, want: QMap) -> bytes:
    """A delta from seq 10 to 11 whose header holds ``want``'s count and checksum."""
    return pack(Header(5, 11, 10, len(want), want.checksum(), 0, 1, P), chunks)


def _updated_opacity(q: QMap, row_id: int, prev_row: int, value: int) -> bytes:
    w = Writer()
    _put_ids(w, np.array([row_id], np.uint64))
    _put(w, np.array([F_OP], np.int64), signed=False)
    prev = q.take(np.array([prev_row]))
    cur = prev.copy()
    cur.op[:] = value
    _put_updates(w, prev, cur, np.array([F_OP], np.int64))
    return w.getvalue()


def _refused_and_kept(snap: bytes, delta: bytes, words: str) -> None:
    st = MapStore()
    st.receive(snap)
    before, seq = st.state.copy(), st.seq
    st.receive(delta)
    assert st.seq == seq and st.state.equals(before), "the map moved on a refused delta"
    assert words in (st.last_error or ""), st.last_error


def test_a_delta_removing_an_id_the_map_lacks_is_refused():
    _, snap, q = _sender()
    unknown = int(q.ids.max()) + 1000
    w = Writer()
    _put_ids(w, np.array([unknown], np.uint64))
    want = q.take(np.arange(len(q) - 1))  # (what a receiver dropping its last row would hold)
    _refused_and_kept(snap, _delta([Chunk(REMOVED, 0, w.getvalue())], want), f"unknown Gaussian id {unknown}")


def test_a_delta_updating_an_id_the_map_lacks_is_refused():
    _, snap, q = _sender()
    unknown = int(q.ids.max()) + 1000
    last = len(q) - 1
    want = q.copy()
    want.op[last] += 1  # (what a receiver editing its last row would hold)
    data = _updated_opacity(q, unknown, last, int(q.op[last]) + 1)
    _refused_and_kept(snap, _delta([Chunk(UPDATED, 0, data)], want), f"unknown Gaussian id {unknown}")


def test_a_delta_updating_a_value_off_its_lattice_is_refused():
    _, snap, q = _sender()
    want = q.copy()
    want.op[3] = 100_000  # far past the opacity lattice (a logit of 6250)
    data = _updated_opacity(q, int(q.ids[3]), 3, 100_000)
    _refused_and_kept(snap, _delta([Chunk(UPDATED, 0, data)], want), "outside its quantisation range")


def test_a_delta_adding_an_id_the_map_holds_is_refused():
    _, snap, q = _sender()
    dup = q.take(np.array([7]))
    dup.pos[:, 0] += 50  # the same id elsewhere
    chunks, _ = encode_section(dup, P, 1)
    _refused_and_kept(snap, _delta(chunks, QMap.concat([q, dup])), "already exists")


@pytest.mark.parametrize("what", ["rest", "dc"])
def test_a_fleet_follows_a_vehicle_that_changes_only_its_colour(what):
    """The global map, and a follower of its deltas, hold the vehicle's new colours (compared with
    the vehicle's own quantised map, row by row)."""
    vehicle = synthetic_map(100, 1, seed=4)
    sender = MapSender.from_map(vehicle, P, map_id=7, first_seq=10)
    fleet = FleetMerge(P, global_map_id=1, sh_degree=1)
    fleet.offer(sender.snapshot())
    follower = MapStore()
    follower.receive(fleet.snapshot())
    rows = vehicle.rows_of(vehicle.ids[:5])
    sh = vehicle.sh[rows].copy()
    sh[:, 1:, :] += 0.3 if what == "rest" else 0.0
    sh[:, :1, :] += 0.3 if what == "dc" else 0.0
    vehicle.update(vehicle.ids[:5], sh=sh)
    delta, info = sender.update(vehicle, vehicle.take_changes())
    assert info.updated == 5
    ingest = fleet.offer(delta)
    assert ingest.global_delta is not None, "the global map did not move"
    follower.receive(ingest.global_delta)
    mine = to_qmap(vehicle, P)
    for got in (fleet.global_map, follower.state):
        assert got.equals(fleet.reference_merge())
        for r in range(len(mine)):  # each of the vehicle's Gaussians, found by its place
            at = np.flatnonzero(np.all(got.pos == mine.pos[r], axis=1))
            assert len(at) == 1
            assert np.array_equal(got.rest[at[0]], mine.rest[r]) and np.array_equal(got.dc[at[0]], mine.dc[r])


def test_an_update_across_an_sh_degree_change_is_an_encode_error():
    sender = MapSender.from_map(synthetic_map(100, 1, seed=2), P, map_id=5, first_seq=10)
    other = synthetic_map(100, 0, seed=2)
    other.take_changes()
    other.update(other.ids[:3], means=other.means[:3] + 0.1)
    with pytest.raises(EncodeError, match="SH degree"):
        sender.update(other, other.take_changes())


def test_a_delta_from_base_zero_is_an_encode_error():
    q = to_qmap(synthetic_map(100, 0, seed=1), P)
    with pytest.raises(EncodeError):
        encode_delta(q, q.take(np.arange(90)), P, map_id=5, seq=1, base_seq=0)
