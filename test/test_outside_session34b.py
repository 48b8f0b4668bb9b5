"""Outside review of fleet map sharing (session 34, user34b): what a fleet operator meets.

Each test drives the real MapServerNode on real SQLite files and real codec containers, and compares
the global map with docs/fleet.md's merge rule written out (test_guards_survivors7._rule) over the
vehicles' own maps as built here, never with the server's own bookkeeping.
"""

from __future__ import annotations

import json

from test_outside_fleet import _delta, _rule, _server, _stream, _vmap

from gs_mapping.runtime.replay import ReplayBus

# ------------------------------------------------------------------------------------------------
# a stray delta of another fleet's map reaches a vehicle's topic before the vehicle's first snapshot


def test_a_stray_delta_of_another_map_does_not_lock_the_vehicle_out(tmp_path):
    """docs/fleet.md: "A namespace is bound to the map id of its first container taken". A delta
    that only waits for a snapshot (the server cannot apply it, so nothing proves whose it is: here
    one of another fleet's map 5, on the same quantisation, as a shared router can carry) took
    nothing; it bound vehicle1 to map 5 and refused every container of the real vehicle (map 1),
    so its map never reached the global map. The vehicle's own snapshot and deltas must be taken,
    the global map be the rule over the vehicle's own map, before and after a restart."""
    store = tmp_path / "fleet.sqlite3"
    server = _server(ReplayBus(), store, global_period_s=0.0)
    v1 = server.bindings["vehicle1"]
    other = _vmap(30, seed=9, origin=(80.0, 0.0, 0.0))
    assert server.ingest(_delta(other, other, 5, 7001), v1) == "buffered"
    stream, states = _stream(1, 3, seed=1, origin=(0.0, 0.0, 0.0))
    outcomes = [server.ingest(c, v1) for c in stream]
    # a second stray delta of that map, now that the namespace is the vehicle's: refused
    assert server.ingest(_delta(other, other, 5, 7002), v1) == "rejected"
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle1"])
    server.close()
    assert outcomes == ["snapshot", "applied", "applied", "applied"], info["last_error"]
    want = _rule({1: states[103]})
    assert server.merge.global_map.equals(want)
    assert (info["map_id"], info["seq"], info["rejected"]) == (1, 103, 1)
    again = _server(ReplayBus(), store)  # the binding stored is the vehicle's own
    try:
        assert again.merge.global_map.equals(want)
        assert again.bindings["vehicle1"].map_id == 1
    finally:
        again.close()


def test_stray_deltas_of_many_maps_on_one_namespace_are_held_as_one_vehicles(tmp_path):
    """Before its first snapshot, what a namespace holds back stays bounded as one vehicle's
    (docs/fleet.md: max_pending, 64 MB): deltas of further map ids are refused, not each given a
    vehicle of its own; the first container taken still binds the namespace."""
    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3", global_period_s=0.0)
    v1 = server.bindings["vehicle1"]
    other = _vmap(20, seed=9, origin=(80.0, 0.0, 0.0))
    got = [server.ingest(_delta(other, other, mid, 7001), v1) for mid in range(5, 25)]
    assert got == ["buffered"] + ["rejected"] * 19
    assert sorted(server.merge.vehicles) == [5]
    stream, states = _stream(1, 2, seed=1, origin=(0.0, 0.0, 0.0))
    assert [server.ingest(c, v1) for c in stream] == ["snapshot", "applied", "applied"]
    assert server.merge.global_map.equals(_rule({1: states[102]}))
    server.close()
