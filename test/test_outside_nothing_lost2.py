"""Outside check (second round) of issue 21 (nothing lost) and issue 19 (fleet sharing): classes of
input the suite does not bring yet.

- The fleet store's plain SQLite columns (the ones outside the CRC-protected containers: a global
  snapshot's ``seq``, a vehicle log's ``map_id``, a namespace's binding) damaged as one flipped bit
  would damage them: SQLite's ``quick_check`` passes, so the store must cross-check them with the
  containers it holds. docs/fleet.md's rules: a corrupt file is one ``FleetStoreError``, never a
  silent change; the server "resumes the same global sequence"; a namespace is bound to its map id.
- A receiver fed, in any order and with repeats, a stream holding several snapshots, and another
  map's stream with the very same sequence numbers: it ends equal to the sender's last snapshot
  decoded on its own (no delta path), never to a mix.
- Outputs that are the input under another spelling (same name, a symlink to it, the base of
  ``apply``): refused in one line with exit status 2, the input byte-identical.

References are independent of the code under test: the containers' own headers (read with
``unpack``), a snapshot decoded by ``decode_snapshot`` alone, the bytes of the input file, and the
rules docs/fleet.md and docs/format.md state. Where the code is wrong the test is a strict xfail
whose reason names the bug.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map
from test_outside_fleet import _delta, _send, _server, _stream

from gs_map_share.container import unpack
from gs_map_share.delta import MapSender
from gs_map_share.fleet_store import FleetStoreError
from gs_map_share.quantize import QuantParams
from gs_map_share.receiver import MapStore
from gs_map_share.snapshot import decode_snapshot
from gs_mapping.runtime.replay import ReplayBus

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
VEHICLES = ["vehicle1", "vehicle2"]

# ------------------------------------------------------------------------------------------------
# the fleet store: columns outside the containers, damaged


def _two_vehicle_store(tmp_path: Path) -> tuple[Path, int, dict]:
    """A store holding two vehicles' snapshot + 3 deltas each (committed, acknowledged, closed);
    returns it, the last global sequence the server published, and each vehicle's last seq."""
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0, vehicles=VEHICLES)
    s1, _ = _stream(1, 3, seed=3, origin=(0.0, 0.0, 0.0))
    s2, _ = _stream(2, 3, seed=4, origin=(1.0, 0.0, 0.0))
    for a, b in zip(s1, s2, strict=True):
        _send(bus, "vehicle1", a)
        _send(bus, "vehicle2", b)
    published = server.merge.global_seq
    server.close()
    return store, published, {1: unpack(s1[-1])[0].seq, 2: unpack(s2[-1])[0].seq}


def _tamper(store: Path, sql: str) -> None:
    db = sqlite3.connect(store)
    db.execute(sql)
    db.commit()
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"  # SQLite itself sees nothing wrong
    db.close()


@pytest.mark.parametrize("damage", ["snapshot_seq_bit42", "schema_P_to_T"])
def test_a_global_snapshot_seq_column_that_disagrees_with_its_container_never_moves_the_sequence_back(
    tmp_path, damage
):
    """docs/fleet.md, Restart: the server resumes the same global sequence; a store that does not
    decode is one FleetStoreError. One bit flipped — in the global snapshot's ``seq`` column (bit
    42), or in the file's schema text (global_log's ``PRIMARY`` → ``TRIMARY``: its seq is no longer
    the row id and reads NULL) — leaves quick_check ok; the outcome must be one of the two, never a
    sequence that goes back."""
    store, published, _ = _two_vehicle_store(tmp_path)
    if damage == "snapshot_seq_bit42":
        _tamper(store, "UPDATE global_snapshot SET seq = seq | (1 << 42)")
    else:
        assert not Path(f"{store}-wal").exists()  # (closed cleanly: everything is in the file)
        raw = bytearray(store.read_bytes())
        at = raw.index(b"global_log (\n  seq INTEGER PRIMARY KEY") + len(b"global_log (\n  seq INTEGER ")
        raw[at] ^= 0x04  # 'P' → 'T'
        store.write_bytes(bytes(raw))
        _tamper(store, "SELECT 1")  # (quick_check still ok)
    try:
        server = _server(ReplayBus(), store, global_period_s=0.0, vehicles=VEHICLES)
    except FleetStoreError as exc:
        assert store.name in str(exc)
        return
    try:
        assert server.merge.global_seq >= published, (server.merge.global_seq, published)
    finally:
        server.close()


def test_a_vehicle_log_map_id_column_that_disagrees_with_its_containers_is_refused(tmp_path):
    """Every container carries its map id in a CRC-checked header (docs/format.md); the column
    beside it is a copy. Where the two differ the store is corrupt: one FleetStoreError naming the
    file — or, at the least, the vehicle restored under the id its containers carry."""
    store, _, last = _two_vehicle_store(tmp_path)
    _tamper(store, "UPDATE vehicle_log SET map_id = 3 WHERE map_id = 2")  # 2 → 3: one bit
    try:
        server = _server(ReplayBus(), store, global_period_s=0.0, vehicles=VEHICLES)
    except FleetStoreError as exc:
        assert store.name in str(exc)
        return
    try:
        assert sorted(server.merge.vehicles) == [1, 2]
        assert server.merge.vehicles[2].seq == last[2]
    finally:
        server.close()


def test_a_binding_that_no_vehicle_log_matches_does_not_lock_the_vehicle_out(tmp_path):
    """docs/fleet.md: a namespace is bound by its first container taken, stored in the same commit
    as that container; so each logged vehicle has a namespace bound to its id. A binding value with
    one bit flipped ('2' → '6', quick_check ok) breaks that: one FleetStoreError, or vehicle2's next
    delta is taken as before."""
    store, _, last = _two_vehicle_store(tmp_path)
    states = _stream(2, 3, seed=4, origin=(1.0, 0.0, 0.0))[1]
    nxt = _delta(states[last[2]], states[last[2] - 1], 2, last[2] + 1)  # vehicle2's next delta
    assert unpack(nxt)[0].base_seq == last[2]
    control = tmp_path / "control.sqlite3"  # the same store undamaged takes that delta
    shutil.copy(store, control)
    bus = ReplayBus()
    server = _server(bus, control, global_period_s=0.0, vehicles=VEHICLES)
    _send(bus, "vehicle2", nxt)
    assert server.merge.vehicles[2].seq == last[2] + 1
    server.close()
    _tamper(store, "UPDATE meta SET value = '6' WHERE key = 'binding /vehicle2'")
    bus = ReplayBus()
    try:
        server = _server(bus, store, global_period_s=0.0, vehicles=VEHICLES)
    except FleetStoreError as exc:
        assert store.name in str(exc)
        return
    try:
        assert server.merge.vehicles[2].seq == last[2]
        _send(bus, "vehicle2", nxt)
        assert server.merge.vehicles[2].seq == last[2] + 1
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------
# a receiver: snapshots among the deltas, repeats, any order, another map on the same numbers

P = QuantParams()


def _sender_stream(map_id: int, seed: int) -> list[bytes]:
    """Snapshot, 2 deltas, snapshot, 2 deltas, snapshot (the last: the sender's final state); the
    two maps below share their first sequence number, so their deltas collide seq for seq."""
    rng = np.random.default_rng(seed)
    g = synthetic_map(200, 0, seed=seed)
    sender = MapSender.from_map(g, P, map_id=map_id, first_seq=5000)
    out = [sender.snapshot()]
    for k in range(4):
        ids = rng.choice(g.ids, 6, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.02 * (k + 1))
        out.append(sender.update(g, g.take_changes())[0])
        if k == 1:
            out.append(sender.snapshot())
    out.append(sender.snapshot())
    return out


OURS, THEIRS = _sender_stream(5, 11), _sender_stream(6, 12)
FINAL_HEADER, FINAL = decode_snapshot(OURS[-1])  # the reference: the last snapshot decoded alone


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.permutations(range(len(OURS) + len(THEIRS))),
    st.lists(st.integers(0, len(OURS) + len(THEIRS) - 1), max_size=6),
)
def test_a_receiver_fed_snapshots_and_another_maps_stream_in_any_order_ends_on_the_senders_map(
    order, repeats
):
    """docs/format.md §5: deltas apply only on their base, later ones wait, a newer snapshot
    replaces the state, a receiver bound to a map rejects other maps. Every container of map 5
    arrives at least once, map 6's (same sequence numbers) anywhere, repeats anywhere: the store
    ends bit-identical to map 5's last snapshot decoded on its own, with nothing left pending."""
    pool = OURS + THEIRS
    store = MapStore(map_id=5)
    for i in list(order) + list(repeats):
        store.receive(pool[i])
    assert store.map_id == 5 and store.seq == FINAL_HEADER.seq
    assert store.state.equals(FINAL)
    assert store.pending == 0


# ------------------------------------------------------------------------------------------------
# outputs that are the input under another spelling


def _cli(argv, cwd):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        cwd=cwd,
    )


def _one_line_refusal(r) -> None:
    assert r.returncode == 2, r.stderr[-400:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and " error: " in lines[0] and "Traceback" not in r.stderr, r.stderr


@pytest.fixture
def snapshot_files(tmp_path):
    for i, data in enumerate(OURS[:3]):
        (tmp_path / f"c{i}.gsd").write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    "argv, victim",
    [
        (["convert", "--overwrite", "c0.gsd", "c0.gsd"], "c0.gsd"),  # the same name
        (["convert", "--overwrite", "c0.gsd", "./sub/../c0.gsd"], "c0.gsd"),  # a missing parent on the way
        (["decode", "--overwrite", "c0.gsd", "link.ply"], "c0.gsd"),  # a symlink onto the input
        (["apply", "--overwrite", "c0.gsd", "c1.gsd", "c0.gsd"], "c0.gsd"),  # apply onto its own base
        (["apply", "--overwrite", "c0.gsd", "c1.gsd", "hard.ply"], "c1.gsd"),  # a hard link of a delta
    ],
    ids=["same_name", "dotdot_via_missing_dir", "symlink_to_input", "apply_onto_base", "hardlink_of_delta"],
)
def test_an_output_that_is_an_input_under_another_spelling_is_refused_and_the_input_kept(
    snapshot_files, argv, victim
):
    """Issue 21: an existing output is never the input itself, even with --overwrite; the answer
    is one line and exit status 2; the input's bytes are unchanged and no temp file is left."""
    d = snapshot_files
    (d / "link.ply").symlink_to(d / "c0.gsd")
    os.link(d / "c1.gsd", d / "hard.ply")
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    r = _cli(argv, d)
    _one_line_refusal(r)
    assert (d / victim).read_bytes() == before[victim]
    left = sorted(p.name for p in d.iterdir() if p.name not in before and p.name not in ("sub",))
    assert left == [], left
    shutil.rmtree(d / "sub", ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# hd-train --overwrite: "start over in OUT"


def test_hd_train_overwrite_starts_over_and_keeps_no_line_of_the_old_run(tmp_path):
    """hd-train's own words: --overwrite 'start[s] over in OUT, which holds a run already'; issue 21:
    outputs are the old ones or the complete new ones, never a mix. After a 1-step run over a
    2-step one, metrics.jsonl (one line per log) must hold exactly the new run's single line."""
    import json

    pytest.importorskip("torch")
    from gs_mapping.cli import main

    out = tmp_path / "run"
    base = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    base += ["--threads", "1", "--no-progress"]
    assert main([*base, "--steps", "2", "--seed", "1"]) in (0, None)
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [2]
    assert main([*base, "--steps", "1", "--seed", "2", "--overwrite"]) in (0, None)
    assert json.loads((out / "config.json").read_text())["steps"] == 1  # the new run's
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1], steps


def test_hd_train_without_overwrite_never_replaces_a_file_already_in_out(tmp_path):
    """Issue 21: an existing output is never replaced without --overwrite. A directory that holds a
    config.json and a metrics.jsonl of the user's own (no checkpoint) given as --out: hd-train
    either refuses in one line or leaves both files as they were."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main

    out = tmp_path / "project"
    out.mkdir()
    mine = {"config.json": '{"mine": true}\n', "metrics.jsonl": '{"my": "log"}\n'}
    for name, text in mine.items():
        (out / name).write_text(text)
    argv = ["hd-train", "--out", str(out), "--steps", "1", "--frames", "1", "--batch-size", "1"]
    main([*argv, "--eval-every", "0", "--threads", "1", "--no-progress"])
    assert {n: (out / n).read_text() for n in mine} == mine
