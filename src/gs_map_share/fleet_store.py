"""The map server's durable store: one SQLite file in WAL mode (schema in docs/fleet.md).

What is kept is what the server acknowledged: per vehicle, its last snapshot and the deltas applied
after it (the bytes as received), and the same for the global map (its stream as published), plus
each tile's last-changed global sequence (for "newer than my sequence" region queries). One ingest =
one transaction (``synchronous=FULL``); the server acknowledges and publishes only after the commit,
so ``kill -9`` at any moment loses nothing acknowledged. Restarted, the server rebuilds every map by
decoding snapshot + deltas (each container checks its own CRCs and the state checksum).

A file that is not SQLite, is SQLite of another application (``PRAGMA application_id``), has another
schema version, or holds another fleet map (map id, frame, quantisation, SH degree) is one
:class:`FleetStoreError` naming the file and what was wrong; it is never reset or rewritten.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from gs_mapping.errors import GsMappingError
from gs_mapping.output_files import os_reason, out_of_descriptors
from gs_mapping.topics import resolve_namespace

from .container import unpack_header
from .errors import DecodeError
from .quantize import QuantParams

APPLICATION_ID = 0x47534D46  # "GSMF": gs_mapping fleet store
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vehicle_log (
  map_id INTEGER NOT NULL, seq INTEGER NOT NULL, base_seq INTEGER NOT NULL,
  container BLOB NOT NULL, PRIMARY KEY (map_id, seq));
CREATE TABLE global_snapshot (
  id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, container BLOB NOT NULL);
CREATE TABLE global_log (
  seq INTEGER PRIMARY KEY, base_seq INTEGER NOT NULL CHECK (base_seq > 0), container BLOB NOT NULL);
CREATE TABLE tiles (
  x INTEGER NOT NULL, y INTEGER NOT NULL, z INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (x, y, z));
"""
TABLES = {"meta", "vehicle_log", "global_snapshot", "global_log", "tiles"}


class FleetStoreError(GsMappingError):
    """The store file cannot be used (corrupt, foreign, another fleet map, or unwritable)."""


@dataclass
class Row:
    seq: int
    base_seq: int  # 0 = snapshot
    data: bytes


@dataclass
class Stored:
    """What a restart starts from: per stream, its last snapshot and the deltas after it."""

    vehicles: dict[int, list[Row]] = field(default_factory=dict)
    global_rows: list[Row] = field(default_factory=list)
    tile_seq: dict[tuple[int, int, int], int] = field(default_factory=dict)
    bindings: dict[str, int] = field(default_factory=dict)  # resolved vehicle namespace → its map id
    # (lo, hi): global sequences strictly between never issued by this history (a restart moved the
    # sequence to the wall clock; a fresh store started there: (0, start)); a client's sequence in
    # one came from another history of the store, or from a store this one replaced
    unissued: list[tuple[int, int]] = field(default_factory=list)
    # vehicle map id → {"lo", "past"}: the sequences the server held its map at (merge.Spans)
    spans: dict[int, dict] = field(default_factory=dict)


# what an operator checks when the store cannot be written, at open or at any later commit
UNWRITABLE_HINT = "check its and its directory's permissions, the mount and free space"

MAX_UNISSUED = 64  # ranges kept (a start each); beyond, the oldest two are joined


def identity(global_map_id: int, frame_id: str, params: QuantParams, sh_degree: int) -> dict:
    """The fleet map a store belongs to (stored in ``meta``; checked on every open)."""
    return {
        "global_map_id": int(global_map_id),
        "frame_id": frame_id,
        "params": list(params.as_tuple()),
        "sh_degree": int(sh_degree),
    }


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class FleetStore:
    def __init__(self, path: str, ident: dict):
        self.path = str(path)
        # SQLite resolves a linked path and keeps -wal/-shm beside the real file: looked at there
        self._wal_path = os.path.realpath(self.path) + "-wal"
        self._wal_id: tuple[int, int] | None = None  # the -wal file's (device, inode), once it exists
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise FleetStoreError(self._why(exc, "not a usable SQLite database")) from None
        self._hold()
        try:
            app = self.db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            self.close()
            raise FleetStoreError(self._why(exc, "not a usable SQLite database")) from None
        # New = no tables and no application id (a missing or empty file; also one whose content so
        # far is only in the WAL). Anything else must be ours.
        existed = bool(tables) or app != 0
        if existed and (app != APPLICATION_ID or not TABLES <= tables):
            self.close()
            raise FleetStoreError(
                f"{self.path}: not a gs_mapping fleet store (application id {app:#x}, "
                f"tables {sorted(tables)}); refusing to touch it"
            )
        try:
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.db.execute("PRAGMA synchronous=FULL")
            if mode.lower() != "wal":
                raise FleetStoreError(f"{self.path}: SQLite refused WAL mode (journal mode {mode})")
            if not existed:
                self._create(ident)
            else:
                self._check(ident)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise FleetStoreError(self._why(exc, "corrupt fleet store")) from None
        except FleetStoreError:
            self.close()
            raise

    def _why(self, exc: sqlite3.Error, what: str = "", doing: str | None = None) -> str:
        """One line for an SQLite error, on open (``what``: the file's fault where the cause is in
        it) or while writing (``doing``: ``"commit"``, ``"compact"``; the file opened fine). A store
        that cannot be written (permissions, a read-only mount, no room for its -wal and -shm: the
        same causes whether met at open or at a later commit) is not called corrupt (an operator
        might delete a good map) and gets :data:`UNWRITABLE_HINT` either way."""
        msg = str(exc)
        head = f"{self.path}: " if doing is None else f"{self.path}: cannot {doing}: "
        if isinstance(exc, sqlite3.OperationalError) and "locked" in msg:
            undone = "it was not read" if doing is None else "nothing of it was written"
            return f"{head}another process holds the store locked ({msg}); {undone}"
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in msg:
            # (SQLite says the same when the process has no descriptor left: permissions are fine)
            if (reason := out_of_descriptors()) is not None:
                return f"{head}{'cannot open the store: ' if doing is None else ''}{reason} ({msg})"
        if isinstance(exc, sqlite3.OperationalError) and any(
            k in msg for k in ("readonly", "read-only", "unable to open", "disk I/O", "full")
        ):
            return f"{head}cannot write the store or the -wal/-shm files beside it ({msg}); {UNWRITABLE_HINT}"
        return f"{self.path}: {what} ({msg})" if doing is None else f"{self.path}: cannot {doing} ({msg})"

    def _hold(self) -> None:
        """One server per store: an exclusive flock on the file for as long as the store is open
        (two servers on one file committed the same global sequence with different maps). flock
        and SQLite's own POSIX locks do not interact."""
        try:
            self._lock: int | None = os.open(self.path, os.O_RDONLY)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise FleetStoreError(f"{self.path}: another map server holds this store") from None
            raise FleetStoreError(f"{self.path}: cannot open ({os_reason(exc)})") from None

    def _create(self, ident: dict) -> None:
        with self._tx():
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("INSERT INTO meta VALUES ('identity', ?)", (json.dumps(ident, sort_keys=True),))

    def _check(self, ident: dict) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise FleetStoreError(
                f"{self.path}: schema version {version}, this server reads {SCHEMA_VERSION}"
            )
        check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise FleetStoreError(f"{self.path}: SQLite integrity check failed ({check})")
        row = self.db.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if row is None:
            raise FleetStoreError(f"{self.path}: fleet store without an identity record")
        try:
            stored = json.loads(row[0])
        except (ValueError, TypeError, RecursionError):
            stored = None
        if not isinstance(stored, dict):
            raise FleetStoreError(f"{self.path}: the identity record is not a JSON object (corrupt store)")
        want = json.loads(json.dumps(ident, sort_keys=True))
        diff = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
        if diff:
            parts = ", ".join(f"{k} stored {stored.get(k)!r} vs configured {want.get(k)!r}" for k in diff)
            raise FleetStoreError(f"{self.path}: holds another fleet map ({parts})")

    def _still_ours(self) -> None:
        """The file (and its WAL) still the ones opened: SQLite goes on writing into a removed or
        replaced file, and a restart would find none of it, so nothing more may be acknowledged."""
        held = os.fstat(self._lock) if self._lock is not None else None
        now, wal = _stat(self.path), _stat(self._wal_path)
        if wal is not None and self._wal_id is None:
            self._wal_id = (wal.st_dev, wal.st_ino)
        same = held is not None and now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        if not same or (
            self._wal_id is not None and (wal is None or (wal.st_dev, wal.st_ino) != self._wal_id)
        ):
            raise FleetStoreError(
                f"{self.path}: the store file or its -wal was removed or replaced while open"
            )

    def _tx(self):
        db, check = self.db, self._still_ours

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")
                try:
                    check()
                except FleetStoreError:
                    db.execute("ROLLBACK")
                    raise

            def __exit__(self, et, ev, tb):
                db.execute("COMMIT" if et is None else "ROLLBACK")
                return False

        return _Tx()

    # -- reading -----------------------------------------------------------------------------------
    def load(self) -> Stored:
        """Everything a restart needs; FleetStoreError for rows of the wrong kind (a store edited or
        damaged by hand: text where SQLite should hold a blob or an integer), for columns that
        disagree with the CRC-checked header of the container beside them (the column is a copy: a
        damaged one would move the global sequence back or file a vehicle under another id). A
        namespace bound to a map id no vehicle log holds is not kept (it binds nothing restored)."""
        try:
            out = self._load()
            _check_against_containers(out)
        except (sqlite3.Error, ValueError, TypeError, DecodeError) as exc:
            raise FleetStoreError(f"{self.path}: corrupt fleet store ({type(exc).__name__}: {exc})") from None
        return out

    def _load(self) -> Stored:
        out = Stored()
        for mid, seq, base, data in self.db.execute(
            "SELECT map_id, seq, base_seq, container FROM vehicle_log ORDER BY map_id, seq"
        ):
            out.vehicles.setdefault(_int(mid), []).append(Row(_int(seq), _int(base), _blob(data)))
        snap = self.db.execute("SELECT seq, container FROM global_snapshot").fetchone()
        if snap is not None:
            out.global_rows = [Row(_int(snap[0]), 0, _blob(snap[1]))] + self.global_deltas(_int(snap[0]))
        out.tile_seq = {(x, y, z): s for x, y, z, s in self.db.execute("SELECT x, y, z, seq FROM tiles")}
        for key, value in self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'binding %'"):
            # keyed by the resolved namespace: vehicle1 and /vehicle1 are one (a store written
            # before kept the configured spelling; a key already resolved is the newer one)
            ns = key[len("binding ") :]
            if ns == resolve_namespace(ns) or resolve_namespace(ns) not in out.bindings:
                out.bindings[resolve_namespace(ns)] = _int(value)
        for key, value in self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'spans %'"):
            out.spans[_int(key[len("spans ") :])] = _spans(json.loads(value))
        row = self.db.execute("SELECT value FROM meta WHERE key='unissued'").fetchone()
        out.unissued = [(_int(lo), _int(hi)) for lo, hi in json.loads(row[0])] if row else []
        # rows the queries above skip (a NULL where the schema promised an integer key)
        for table in ("vehicle_log", "global_log"):
            bad = self.db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE typeof(seq) != 'integer' OR typeof(base_seq) != 'integer'"
            ).fetchone()[0]
            if bad:
                raise ValueError(f"{table}: {bad} rows without an integer sequence")
        return out

    def global_deltas(self, after_seq: int) -> list[Row]:
        """Stored global deltas after ``after_seq`` (catch-up), in order."""
        return [
            Row(_int(s), _int(b), _blob(d))
            for s, b, d in self.db.execute(
                "SELECT seq, base_seq, container FROM global_log WHERE seq > ? AND base_seq >= ? ORDER BY seq",
                (after_seq, after_seq),
            )
        ]

    def last_global_deltas(self, n: int) -> list[Row]:
        """The last ``n`` stored global deltas, in order (republished after a restart)."""
        rows = self.db.execute(
            "SELECT seq, base_seq, container FROM global_log WHERE base_seq > 0 ORDER BY seq DESC LIMIT ?",
            (int(n),),
        ).fetchall()
        return [Row(_int(s), _int(b), _blob(d)) for s, b, d in reversed(rows)]

    def vehicle_rows(self, map_id: int) -> int:
        return self.db.execute("SELECT COUNT(*) FROM vehicle_log WHERE map_id=?", (map_id,)).fetchone()[0]

    # -- writing -----------------------------------------------------------------------------------
    def commit(
        self,
        vehicle_rows: Iterable[tuple[int, Row]],
        global_row: Row | None = None,
        tiles: Iterable[tuple[int, int, int]] = (),
        bindings: dict[str, int] | None = None,
        unissued: tuple[int, int] | None = None,
        spans: dict[int, dict] | None = None,
    ) -> None:
        """One ingest, atomically: the vehicle containers applied (a snapshot replaces that vehicle's
        log), the global delta published for them, the tiles it changed, namespaces newly bound to
        a map id, a range of sequences skipped (:attr:`Stored.unissued`), vehicles' spans that
        changed (:attr:`Stored.spans`). Durable on return."""
        try:
            with self._tx():
                for mid, sp in (spans or {}).items():
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"spans {mid}", json.dumps(sp))
                    )
                if unissued is not None:
                    row = self.db.execute("SELECT value FROM meta WHERE key='unissued'").fetchone()
                    ranges = (json.loads(row[0]) if row else []) + [list(map(int, unissued))]
                    while len(ranges) > MAX_UNISSUED:
                        # the oldest two become one, never dropped: a fresh store's (0, start) must
                        # stay; a client still at a sequence between them just asks again from 0
                        ranges[:2] = [[ranges[0][0], ranges[1][1]]]
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('unissued', ?)", (json.dumps(ranges),)
                    )
                for ns, mid in (bindings or {}).items():
                    self.db.execute(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (f"binding {resolve_namespace(ns)}", str(mid)),
                    )
                for mid, r in vehicle_rows:
                    if r.base_seq == 0:
                        self.db.execute("DELETE FROM vehicle_log WHERE map_id=?", (mid,))
                    self.db.execute(
                        "INSERT OR REPLACE INTO vehicle_log VALUES (?, ?, ?, ?)",
                        (mid, r.seq, r.base_seq, r.data),
                    )
                if global_row is not None:
                    self.db.execute(
                        "INSERT OR REPLACE INTO global_log VALUES (?, ?, ?)",
                        (global_row.seq, global_row.base_seq, global_row.data),
                    )
                    self.db.executemany(
                        "INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?)",
                        [(*t, global_row.seq) for t in tiles],
                    )
        except sqlite3.Error as exc:
            raise FleetStoreError(self._why(exc, doing="commit")) from None

    def compact_vehicle(self, map_id: int, snapshot: Row) -> None:
        """Replace a vehicle's log by a snapshot of its current state (bounded restart time)."""
        try:
            with self._tx():
                self.db.execute("DELETE FROM vehicle_log WHERE map_id=? AND seq<=?", (map_id, snapshot.seq))
                self.db.execute(
                    "INSERT INTO vehicle_log VALUES (?, ?, 0, ?)", (map_id, snapshot.seq, snapshot.data)
                )
        except sqlite3.Error as exc:
            raise FleetStoreError(self._why(exc, doing="compact")) from None

    def compact_global(self, snapshot: Row, keep_deltas: int) -> None:
        """Store a global snapshot (the restart point); keep the last ``keep_deltas`` deltas at or
        before it for receivers catching up, drop older ones. Counted as rows, not by sequence
        distance: a restart moves the sequence on to the wall clock, far past every earlier delta."""
        try:
            with self._tx():
                self.db.execute(
                    "INSERT OR REPLACE INTO global_snapshot VALUES (1, ?, ?)", (snapshot.seq, snapshot.data)
                )
                self.db.execute(
                    "DELETE FROM global_log WHERE seq<=? AND seq NOT IN "
                    "(SELECT seq FROM global_log WHERE seq<=? ORDER BY seq DESC LIMIT ?)",
                    (snapshot.seq, snapshot.seq, int(keep_deltas)),
                )
        except sqlite3.Error as exc:
            raise FleetStoreError(self._why(exc, doing="compact")) from None

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            os.close(lock)  # (releases the flock)


def _check_against_containers(out: Stored) -> None:
    """ValueError where a row's columns are not what its container's header says."""

    def check(where: str, row: Row, map_id: int | None) -> int:
        h = unpack_header(row.data)[0]
        if (h.seq, h.base_seq) != (row.seq, row.base_seq) or (map_id is not None and h.map_id != map_id):
            raise ValueError(
                f"{where}: row seq {row.seq} on {row.base_seq}"
                f"{'' if map_id is None else f' of map {map_id}'} holds the container of map {h.map_id}, "
                f"seq {h.seq} on {h.base_seq}"
            )
        return h.map_id

    for mid, rows in out.vehicles.items():
        for r in rows:
            check("vehicle_log", r, mid)
    if out.global_rows:
        gid = check("global_snapshot", out.global_rows[0], None)
        for r in out.global_rows[1:]:
            check("global_log", r, gid)
    # a namespace bound to a map id no vehicle log holds: its vehicle was seen only through deltas
    # held back for a snapshot (lost with the process), or the value is damaged; either way it
    # binds nothing a restart has, and kept it would refuse that vehicle ever after
    out.bindings = {ns: mid for ns, mid in out.bindings.items() if mid in out.vehicles}


def _spans(value) -> dict:
    """A vehicle's stored spans, checked: ValueError for anything but ``{"lo", "past"}`` integers."""
    if not isinstance(value, dict) or set(value) != {"lo", "past"} or not isinstance(value["past"], list):
        raise ValueError(f"spans record {value!r} is not {{'lo', 'past'}}")
    past = [(_int(a), _int(b)) for a, b in value["past"]]
    if any(a > b for a, b in past):
        raise ValueError(f"spans record {value!r} holds a span that ends before it starts")
    return {"lo": _int(value["lo"]), "past": sorted(past)}


def _int(value) -> int:
    """An integer column as SQLite returned it (a binding is stored as its decimal text)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"expected an integer, found {type(value).__name__}")
    return int(value)


def _blob(value) -> bytes:
    """A container column: bytes only (``bytes(5)`` of an integer would be five zero bytes)."""
    if not isinstance(value, bytes):
        raise TypeError(f"expected a container blob, found {type(value).__name__}")
    return value
