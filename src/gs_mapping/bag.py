"""rosbag2 reading and writing — the only module of the suite that touches bag files.

Reading: rosbag2 directories (MCAP or sqlite3 storage, any metadata version rosbags knows) and bare
``.mcap`` / ``.db3`` files. Messages come back in time order as deserialised rosbags objects, which the
duck-typed converters in :mod:`gs_mapping.messages` accept like rclpy messages.

Writing: rosbag2 directories with MCAP storage and metadata **version 8**, the newest layout ROS 2
Humble plays (version 9 changed how QoS profiles are serialised). Latched topics get a
``transient_local`` offered QoS profile so ``ros2 bag play`` re-latches them (e.g. ``/tf_static``).
A bag is written into a hidden sibling directory and moved into place when the writer closes, so a
crash never leaves a half-written bag under the requested name and ``overwrite=True`` loses the old
bag only once the new one is complete.

Everything that goes wrong (missing path, truncated or corrupt storage, unknown topic) raises
:class:`~gs_mapping.errors.BagError` naming the file and, where known, topic and record; exceptions
from rosbags, mcap or sqlite never escape raw. One message whose CDR cannot be decoded is counted in
:attr:`BagReader.bad_messages`, logged once per topic and skipped (``strict=True``: an error instead),
so one bad record never costs a whole run.

Integrity: MCAP files we write carry CRC-32s over every chunk, the data section and the summary
(rosbags writes zeros there); when reading, rosbags checks chunk CRCs and we check the data-section and
summary CRCs, so a flipped bit in a bag is an error, never a silently different map.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bag_repair import (
    MCAP_MAGIC,
    cut_short,
    empty_split_why,
    release_copy,
    repaired_copy,
    storage_files_in,
    write_metadata,
)
from .errors import BagError, GsMappingError, MessageError, OutputError
from .output_files import (
    check_output,
    install_directory,
    os_reason,
    remove_temp,
    signals_held,
    sweep_stale_temps,
    writing_temp,
)
from .say_once import say_once
from .topics import LIVOX_CUSTOM_MSGS

log = logging.getLogger(__name__)

WRITE_VERSION = 8  # rosbag2 metadata version we write; Humble reads it (see module docstring)
DEFAULT_STORE = "ROS2_HUMBLE"  # message definitions used for writing and for bags without definitions

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes (a message-compressed row)
MAX_MESSAGE_BYTES = 1 << 30  # a compressed message inflating past this is refused (a bomb, not a frame)
# Files a rosbag2 directory may contain; overwrite=True refuses to delete a directory holding others.
_BAG_SUFFIXES = (".mcap", ".db3", ".zstd", ".db3-shm", ".db3-wal")
_COMPRESSED_STORAGE = (".mcap.zstd", ".db3.zstd")  # `--compression-mode file`: one zstd frame a file
BAG_FILES = [
    "metadata.yaml",  # what a rosbag2 directory may hold (output_files allowed=)
    *(f"*{s}" for s in _BAG_SUFFIXES),
]


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: name, message type (``pkg/msg/Name``), message count, latched QoS, and
    whether a recorded publisher offered it best effort (``ros2 bag play`` then offers it so)."""

    name: str
    type: str
    count: int
    latched: bool
    best_effort: bool = False


def default_typestore():
    """A fresh rosbags typestore with the standard ROS 2 Humble message definitions, and Livox's
    CustomMsg (a Humble sqlite3 recording stores no definitions: :func:`~.messages.ros_typestore`)."""
    from .messages.factory import ros_typestore

    return ros_typestore(DEFAULT_STORE)


def _is_latched(connection) -> bool:
    from rosbags.interfaces import QosDurability

    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return bool(profiles) and all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)


def _same_ext(a, b) -> bool:
    """Whether two connections' serialisation and QoS say the same thing. rmw reads a duration of 0
    (unspecified) as infinite, and rosbag2 writes infinite as 2147483647 s (Humble) or 9223372036 s:
    one recording's metadata.yaml and storage may differ only there."""

    def canonical(ext):
        profiles = getattr(ext, "offered_qos_profiles", None)
        if not profiles:
            return ext

        def t(d):
            return None if (d.sec == 0 and d.nsec == 0) or d.sec >= 2147483647 else (d.sec, d.nsec)

        return (
            ext.serialization_format,
            [
                p._replace(
                    deadline=t(p.deadline),
                    lifespan=t(p.lifespan),
                    liveliness_lease_duration=t(p.liveliness_lease_duration),
                )
                for p in profiles
            ],
        )

    return a == b or canonical(a) == canonical(b)


def _is_best_effort(connection) -> bool:
    from rosbags.interfaces import QosReliability

    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    return any(p.reliability == QosReliability.BEST_EFFORT for p in profiles)


def _latched_qos(latched: bool):
    """Offered QoS profile in the form ``ros2 bag record`` stores (values as Humble writes them)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(sec=2147483647, nsec=4294967295)  # rmw's "infinite" duration as Humble dumps it
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=infinite,
        lifespan=infinite,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite,
        avoid_ros_namespace_conventions=False,
    )


def _types_from_connection(connection) -> dict:
    """Parse the message definition a bag carries for one connection (MSG or IDL text)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    fmt, data = connection.msgdef.format, connection.msgdef.data
    if fmt == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(data, connection.msgtype))
    if fmt == MessageDefinitionFormat.IDL:
        sep = "=" * 80 + "\n"
        types: dict = {}
        if data.startswith(f"{sep}IDL: "):
            for part in data.split(sep)[1:]:
                _, idl = part.split("\n", 1)
                types.update(get_types_from_idl(idl))
        else:
            types.update(get_types_from_idl(data))
        return types
    return {}


class BagReader:
    """Read a rosbag2 directory or a bare ``.mcap`` / ``.db3`` file. Use as a context manager::

        with BagReader(path) as bag:
            for topic, stamp_ns, msg in bag.messages(["/tf", "/tf_static"]):
                ...

    ``stamp_ns`` is the time the message was recorded (the bag's log time), not its header stamp.
    """

    def __init__(self, path, strict: bool = False):
        self.path = Path(path)
        self.strict = strict  # an undecodable message is an error (else counted, logged once, skipped)
        self.bad_messages: dict[str, int] = {}  # "topic (type)" → undecodable messages skipped
        self._reader = None
        self._opened: Path | None = None  # the storage rosbags reads (a repaired copy: see bag_repair)
        self._repair_cleanup: weakref.finalize | None = None  # removes that copy's temporary folder
        self._conns: dict[str, list] = {}
        self._said_qos: dict[int, Any] = {}  # connection id → metadata.yaml's, where the storage kept no QoS
        self.typestore = None
        self.topics: list[TopicInfo] = []
        self.start_ns = 0
        self.end_ns = 0
        self.message_count = 0

    # -- opening ---------------------------------------------------------------------------------
    def _storage_path(self) -> Path:
        try:
            return self._find_storage()
        except OSError as exc:  # an unreadable directory, a name too long, ...
            raise BagError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def _find_storage(self) -> Path:
        p = self.path
        if not p.exists():
            raise BagError(f"{p}: no such bag (path does not exist)")
        if not (p.is_dir() or p.is_file()):  # a FIFO or a device would block or never end
            raise BagError(f"{p}: not a bag (neither a regular file nor a directory)")
        if p.is_dir():
            for f in p.iterdir():  # what the storage plugins open must be regular files too
                if (f.suffix in (".mcap", ".db3") or f.name == "metadata.yaml") and not f.is_file():
                    raise BagError(f"{f}: not a regular file (a bag's storage and metadata must be)")
        if p.is_dir() and not (p / "metadata.yaml").exists():
            # A directory without metadata (e.g. copied storage file only): accept exactly one file.
            # Split files closed by a killed `--compression-mode file` recorder are *.db3.zstd beside
            # the open plain one: without metadata nothing says to inflate them, so never read the
            # plain one as the whole recording.
            packed = [x.name for x in _packed(p, True)]
            if packed and _one_recording([p / x[: -len(".zstd")] for x in packed] + _storage_files(p)):
                return p  # its split files inflated into a copy, read as reindexed (see open)
            if packed:
                raise BagError(
                    f"{p}: no metadata.yaml, and its storage files {', '.join(packed[:3])}"
                    f"{' …' if len(packed) > 3 else ''} are zstd-compressed; inflate them "
                    f"(zstd -d --rm {p}/*.zstd), then `ros2 bag reindex {p}` writes its metadata.yaml"
                )
            files = _storage_files(p)
            if len(files) > 1 and len({_split_of(f) for f in files}) == 1 and _split_of(files[0]):
                return p  # a split recording never closed: read as reindexed (see open)
            ros1 = sorted(x.name for x in p.glob("*.bag") if x.is_file())
            if not files and ros1:  # (a folder of ROS 1 recordings given for one of them)
                one = p / ros1[0]
                raise BagError(
                    f"{p}: no rosbag2 recording, but ROS 1 bags ({', '.join(ros1[:3])}); convert one first: "
                    f"rosbags-convert --src {one} --dst {one.with_suffix('')}"
                )
            if len(files) != 1:
                way = (
                    "; not named as one recording's split files (<bag>_<n>): read each alone" if files else ""
                )
                raise BagError(
                    f"{p}: not a rosbag2 directory (no metadata.yaml and {len(files)} .mcap/.db3 files){way}"
                )
            return files[0]
        if p.is_file() and p.suffix == ".bag":
            raise BagError(
                f"{p}: a ROS 1 bag; convert it first: rosbags-convert --src {p} --dst {p.with_suffix('')}"
            )
        if p.is_file() and p.name.endswith(_COMPRESSED_STORAGE):
            return p  # inflated into a copy (see open)
        if p.is_file() and p.name == "metadata.yaml":
            raise BagError(f"{p}: a bag's metadata, not the bag: give its folder, {p.parent}")
        if p.is_file() and p.suffix not in (".mcap", ".db3"):
            raise BagError(f"{p}: not a bag (expected a rosbag2 directory, .mcap or .db3 file)")
        if p.is_file():
            _say_if_one_of_several(p)
        return p

    def open(self) -> BagReader:
        from rosbags.rosbag2 import Reader

        storage = self._storage_path()
        try:
            files = _storage_files(storage)
            broken = cut_short(files)
            self._opened = storage
            # rosbags opens a .db3 through an unquoted sqlite URI: a path holding '#', '?' or '%' is
            # read through a folder of links (rosbag2 opens it as a plain path)
            uri_unsafe = any(f.suffix == ".db3" for f in files) and any(
                c in os.fspath(storage.resolve()) for c in "#?%"
            )
            # the split files of a recording whose recorder was killed (Humble's writes metadata.yaml
            # only when it closes): the users without ROS 2 have no `ros2 bag reindex`
            unlisted = storage.is_dir() and not (storage / "metadata.yaml").exists()
            # `--compression-mode file` storage without the metadata.yaml that says so (a file given
            # alone, a killed recorder's folder): inflated into the copy (a listed one rosbags reads)
            packed = _packed(storage, unlisted)
            if broken or uri_unsafe or unlisted or packed:
                folder, self._opened, lock = repaired_copy(storage, broken, packed)
                # (a reader dropped without close() must not leave the copy behind)
                self._repair_cleanup = weakref.finalize(self, release_copy, folder, lock)
                if packed:
                    what = (
                        "a zstd-compressed storage file"
                        if storage.is_file()
                        else f"{len(packed)} zstd-compressed split file{'s' if len(packed) > 1 else ''}"
                    )
                    say_once(
                        log,
                        f"{storage}: {what} (ros2 bag record --compression-mode file): read through an "
                        f"inflated temporary copy in {folder.parent}",
                    )
                if unlisted:
                    n = write_metadata(self._opened, storage)
                    say_once(
                        log, f"{storage}: no metadata.yaml: its {n} split files read in turn, as reindexed"
                    )
            for f in _storage_files(self._opened):
                if f.suffix == ".mcap":
                    try:
                        _check_mcap_framing(f)
                    except ValueError as exc:  # (named by file: a split bag has several)
                        raise BagError(f"{f}: corrupt MCAP: {exc}") from None
            reader = Reader(self._opened)
            reader.open()
        except BagError:
            self.close()
            raise
        except Exception as exc:  # rosbags, mcap, sqlite3, yaml, OSError: all mean "unreadable bag"
            self.close()
            where = storage if storage.is_file() else self.path
            if storage.is_file() and (why := empty_split_why(storage)):
                raise BagError(f"{storage}: an empty recording file ({why}): no messages in it") from exc
            empty = _empty_sqlite_definitions(storage) if isinstance(exc, KeyError) else []
            if empty:
                raise BagError(
                    f"{where}: the recorder left the message definition of {', '.join(empty[:3])} empty, "
                    f"and the sqlite3 reader (rosbags) cannot open such a bag; convert it to MCAP: "
                    f"ros2 bag convert (the MCAP form is read, those topics skipped)"
                ) from exc
            if "Serialization format" in str(exc):  # (rosbags: a bag of another rmw's format than CDR)
                raise BagError(f"{where}: cannot read this bag's messages: {_describe(exc)}") from exc
            raise BagError(f"{where}: cannot open bag (truncated or corrupt?): {_describe(exc)}") from exc
        self._reader = reader
        try:
            self._index()
        except BagError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise BagError(f"{self.path}: corrupt bag index: {_describe(exc)}") from exc
        return self

    def _index(self) -> None:
        reader = self._reader
        self._take_storage_qos()
        conns: dict[str, list] = {}
        for c in reader.connections:
            conns.setdefault(_absolute(c.topic), []).append(c)
        self._conns = conns
        topics = []
        for name in sorted(conns):
            cs = conns[name]
            types = {c.msgtype for c in cs}
            if len(types) != 1:
                raise BagError(f"{self.path}: topic {name} has several message types: {sorted(types)}")
            topics.append(
                TopicInfo(
                    name,
                    types.pop(),
                    sum(c.msgcount for c in cs),
                    any(_is_latched(self._said_qos.get(c.id, c)) for c in cs),
                    any(_is_best_effort(self._said_qos.get(c.id, c)) for c in cs),
                )
            )
        self.topics = topics
        self.message_count = int(reader.message_count)
        if self.message_count:
            self.start_ns = int(reader.start_time)
            self.end_ns = int(reader.end_time) - 1  # rosbags' end is exclusive; ours is the last stamp
        self.typestore = self._build_typestore(reader.connections)
        self._reconcile_with_storage()

    def _reconcile_with_storage(self) -> None:
        """metadata.yaml may lie (hand-edited, copied from another bag): take counts and times from
        the storage itself (MCAP statistics, sqlite rows) and say so when they disagree."""
        p = self.path
        files = _storage_files(self._opened or p)
        if self._reader.compression_mode == "file":
            # (ros2 bag record --compression-mode file: *.db3.zstd) rosbags has inflated each file
            # into its own temporary folder, removed on close: the storage is read there
            files = [Path(s.path) for s in getattr(getattr(self._reader, "storage", None), "storages", [])]
        if not files:
            return
        try:
            truth, types = _storage_counts(files)
        except Exception as exc:  # noqa: BLE001 - unreadable here means rosbags will say so when reading
            log.debug(f"{p}: storage statistics unreadable: {exc}")
            return
        self._check_names_and_types(types)
        if truth is None:
            return
        claimed = {t.name: t.count for t in self.topics}
        actual = {name: truth.get(name, (0, 0, 0))[0] for name in claimed}
        total = sum(c for c, _, _ in truth.values())
        firsts = [f for c, f, _ in truth.values() if c]
        lasts = [last for c, _, last in truth.values() if c]
        start, end = (min(firsts), max(lasts)) if firsts else (0, 0)
        if total and self.message_count and any(f.suffix == ".mcap" for f in files):
            start, end = self._span_as_read(start, end)
        lies = [
            f"{n}: {claimed[n]} messages (storage: {actual[n]})" for n in claimed if claimed[n] != actual[n]
        ]
        if self.message_count != total:
            lies.insert(0, f"{self.message_count} messages in all (storage: {total})")
        if total and (self.start_ns, self.end_ns) != (start, end):
            lies.append(f"time span {self.start_ns}..{self.end_ns} ns (storage: {start}..{end})")
        if lies:
            # (without a metadata.yaml the claims are rosbags' reading of this summary: none was made)
            if (p / "metadata.yaml").is_file():
                say_once(
                    log,
                    f"{p}: metadata.yaml disagrees with the storage, which is used: {'; '.join(lies[:3])}",
                )
            self.topics = [dataclasses.replace(t, count=actual[t.name]) for t in self.topics]
            self.message_count = total
            self.start_ns, self.end_ns = start, end

    def _span_as_read(self, start: int, end: int) -> tuple[int, int]:
        """An MCAP summary's first and last log time (``start``, ``end``), checked by reading where
        metadata.yaml claims a wider span: an MCAP summary can leave a message out (writers that took
        a time of 0 for "none yet": Go's before foxglove/mcap#770, whose Statistics skip a message
        logged at 0 (rosbag2's own test bag convert_a); Rust's, whose chunk indexes do too,
        foxglove/mcap#924). Only the messages between the two claims are read."""

        def times(lo: int, hi: int) -> list[int]:  # (hi inclusive: a chunk is picked by its own start)
            return [int(t) for _, t, _ in self._reader.messages(start=lo, stop=hi + 1)]

        try:
            if self.start_ns < start:
                start = min([start, *times(self.start_ns, start)])
            if self.end_ns > end:
                end = max([end, *times(end, self.end_ns)])
        except Exception as exc:  # noqa: BLE001 - a corrupt stretch: rosbags says so when it is read
            log.debug(f"{self.path}: messages between the summary's and metadata.yaml's times unread: {exc}")
        return start, end

    def _take_storage_qos(self) -> None:
        """rosbags pairs each metadata.yaml connection with the storage's on topic, type, QoS and type
        hash; one whose QoS or hash differs from the storage's (a hand-edited metadata.yaml, one copied
        from another recording) would read none of its messages. The storage's are taken instead."""
        reader = self._reader
        self._said_qos = {}
        stored = [x for s in getattr(reader.storage, "storages", []) for x in s.connections]
        for i, c in enumerate(reader.connections):
            same = [x for x in stored if x.topic == c.topic and x.msgtype == c.msgtype]
            if same and not any(
                _same_ext(x.ext, c.ext) and (not x.digest or not c.digest or x.digest == c.digest)
                for x in same
            ):
                x = same[0]
                if getattr(x.ext, "offered_qos_profiles", None) or (x.digest and c.digest):
                    log.warning(
                        f"{self.path}: metadata.yaml's QoS or type hash of {c.topic} differs from the "
                        f"storage's, which is used"
                    )
                else:  # a storage that kept no QoS (rosbag2's test bag convert_a) says nothing against
                    self._said_qos[c.id] = c  # the metadata's, which still tells latched and best effort
                reader.connections[i] = c._replace(ext=x.ext, digest=x.digest)

    def _check_names_and_types(self, stored: dict[str, str]) -> None:
        """BagError where metadata.yaml names a topic or type the storage does not hold: rosbags reads
        a channel through the metadata's connection, so a renamed topic's messages would be lost
        and a wrong type would be decoded as another message."""
        if not stored:  # (an MCAP file without a summary says nothing)
            return
        fix = "`ros2 bag reindex` rewrites metadata.yaml from the storage"
        for c in self._reader.connections:
            if c.topic not in stored and c.msgcount:
                near = next((t for t in stored if _absolute(t) == _absolute(c.topic)), None)
                hint = f" (it holds {near!r})" if near else ""
                raise BagError(
                    f"{self.path}: metadata.yaml names topic {c.topic!r} ({c.msgcount} messages), "
                    f"which the storage does not hold{hint}; {fix}"
                )
            if stored.get(c.topic) and stored[c.topic] != c.msgtype:
                raise BagError(
                    f"{self.path}: metadata.yaml gives {c.topic} the type {c.msgtype}, the storage "
                    f"{stored[c.topic]}; {fix}"
                )

    def _build_typestore(self, connections):
        """The standard definitions plus the bag's own; where they disagree, the bag's win."""
        from rosbags.typesys import Stores, get_typestore

        types: dict = {}
        unreadable: dict[str, str] = {}  # topic -> why its definition was not read
        for c in connections:
            try:
                types.update(_types_from_connection(c))
            except Exception as exc:  # noqa: BLE001 - it concerns this topic only
                # (e.g. the .srv text Jazzy's `ros2 bag record -a` stores for a service's
                # _service_event topic): it is read like a bag without definitions; the others read
                unreadable[c.topic] = _describe(exc)
        store = default_typestore()
        try:
            store.register(types)  # fast path: the bag's types equal (or extend) the standard ones
        except Exception:
            # A type defined differently from the standard set (another ROS distribution): start
            # from the bag's definitions and complete with the standard types they do not clash with.
            store = get_typestore(Stores.EMPTY)
            try:
                store.register(types)
            except Exception as exc:
                raise BagError(f"{self.path}: inconsistent message definitions: {_describe(exc)}") from exc
            fallback = default_typestore()
            missing = {k: v for k, v in fallback.fielddefs.items() if k not in store.fielddefs}
            try:
                store.register(missing)
            except Exception as exc:  # a standard type depending on a clashing one: leave them out
                log.debug(f"{self.path}: standard types not added to the bag's typestore: {exc}")
        for c in connections:
            why = f" (its definition is unreadable: {unreadable[c.topic]})" if c.topic in unreadable else ""
            if c.msgtype not in store.fielddefs:
                log.warning(
                    f"{self.path}: topic {c.topic}: no definition for {c.msgtype}{why}; "
                    f"its messages cannot be decoded",
                )
            elif why:
                log.warning(
                    f"{self.path}: topic {c.topic}: {c.msgtype}{why}; the standard definition is used"
                )
        return store

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception as exc:  # closing a corrupt file must not mask the real error
                log.debug(f"{self.path}: error while closing: {exc}")
        self._opened = None
        if self._repair_cleanup is not None:
            self._repair_cleanup()  # removes the copy (once)

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._reader is None:
            raise BagError(f"{self.path}: bag is not open (use `with BagReader(path) as bag:`)")

    def topic(self, name: str) -> TopicInfo:
        """The :class:`TopicInfo` of ``name``; :class:`BagError` naming the known topics if absent."""
        self._check_open()
        for t in self.topics:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.topics) or "none"
        raise BagError(f"{self.path}: no topic {name} in bag (topics: {known})")

    def has_topic(self, name: str) -> bool:
        return any(t.name == name for t in self.topics)

    def _select(self, topics) -> list:
        self._check_open()
        if topics is None:
            return list(self._reader.connections)
        if isinstance(topics, str):
            topics = [topics]
        return [c for name in topics for c in self._conns.get(self.topic(name).name, [])]

    def raw_messages(
        self,
        topics: Iterable[str] | str | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[tuple[str, int, bytes]]:
        """``(topic, stamp_ns, cdr_bytes)`` in time order; ``start_ns`` inclusive, ``stop_ns`` exclusive.

        Unknown topics raise :class:`BagError` here, not on the first iteration."""
        return self._iter_raw(self._select(topics), start_ns, stop_ns)

    def _iter_raw(self, conns, start_ns, stop_ns):
        if not conns:
            return
        # (from the first time there is, not from each MCAP chunk's own start: rosbags reads a chunk
        # from the start its index gives, which Rust's writer sets past a message logged at 0,
        # foxglove/mcap#924; int64's least keeps a sqlite3 row of any stamp)
        start = -(2**63) if start_ns is None else start_ns
        it = self._reader.messages(conns, start=start, stop=stop_ns)
        index = 0
        while True:
            try:
                conn, stamp, data = next(it)
            except StopIteration:
                return
            except Exception as exc:
                raise BagError(f"{self.path}: corrupt data after record {index}: {_describe(exc)}") from exc
            index += 1
            yield _absolute(conn.topic), int(stamp), bytes(data)

    def messages(
        self,
        topics: Iterable[str] | str | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
        arrays: Iterable[str] = (),
    ) -> Iterator[tuple[str, int, object]]:
        """``(topic, stamp_ns, message)`` in time order, messages deserialised with :attr:`typestore`.
        ``arrays``: topics whose Livox CustomMsg may come back with its points as one array
        (:class:`~gs_mapping.messages.livox.CustomMsgArrays`, as rclpy's raw subscriptions give it:
        rosbags makes an object a point, ~1 µs each) where the bag's definition is the driver's; for
        readers of the points, not for writing the message out again."""
        fast = {self.topic(t).name for t in arrays}
        return self._iter_decoded(self.raw_messages(topics, start_ns, stop_ns), fast)

    def _iter_decoded(self, raw, arrays: set):
        types = {t.name: t.type for t in self.topics}
        arrays = {t for t in arrays if self._livox_as_arrays(types[t])}
        counters: dict[str, int] = {}
        for topic, stamp, data in raw:
            n = counters.get(topic, 0)
            counters[topic] = n + 1
            try:
                if topic in arrays:
                    msg = self._decode_livox(topic, data, types[topic], n, stamp)
                else:
                    msg = self.decode(topic, data, types[topic], record=n, stamp_ns=stamp)
            except BagError as exc:
                if self.strict:
                    raise
                kind = f"{topic} ({types[topic]})"
                if kind not in self.bad_messages:  # (once a process too: map reads a bag twice)
                    say_once(log, f"{exc}: skipped (further undecodable {kind} messages are only counted)")
                self.bad_messages[kind] = self.bad_messages.get(kind, 0) + 1
                continue
            yield topic, stamp, msg

    @property
    def bad_total(self) -> int:
        """Undecodable messages skipped so far (all topics)."""
        return sum(self.bad_messages.values())

    def _livox_as_arrays(self, typename: str) -> bool:
        """A Livox CustomMsg whose definition in this bag is the driver's (a fork's own layout is
        deserialised by its definition)."""
        from .messages.livox import same_as_drivers

        return typename in LIVOX_CUSTOM_MSGS and same_as_drivers(self.typestore, typename)

    def _decode_livox(self, topic: str, data: bytes, typename: str, record: int, stamp_ns: int):
        from .messages.livox import custom_msg_from_cdr

        try:
            return custom_msg_from_cdr(_inflated(data))
        except (MessageError, BagError) as exc:
            raise BagError(
                f"{self.path}: topic {topic}: message {record} (stamp {stamp_ns} ns): cannot decode "
                f"{typename}: {exc}"
            ) from exc

    def decode(
        self, topic: str, data: bytes, typename: str, record: int | None = None, stamp_ns: int | None = None
    ):
        """Deserialise one CDR record of ``topic``; :class:`BagError` naming topic and record if bad.
        A zstd frame is inflated first: a recording made with ``--compression-mode message`` whose
        metadata.yaml, which says so, is missing (a killed recorder's) holds one per message (no CDR
        record starts with its magic: their first byte is 0)."""
        try:
            return self.typestore.deserialize_cdr(_inflated(data), typename)
        except Exception as exc:
            where = f"message {record}" if record is not None else "message"
            if stamp_ns is not None:
                where += f" (stamp {stamp_ns} ns)"
            raise BagError(
                f"{self.path}: topic {topic}: {where}: cannot decode {typename}: {_describe(exc)}"
            ) from exc


def _inflated(data: bytes) -> bytes:
    """A message's CDR, its zstd frame inflated first where it has one (see :meth:`BagReader.decode`)."""
    return _zstd_decompress(bytes(data), MAX_MESSAGE_BYTES) if data[:4] == ZSTD_MAGIC else data


class BagWriter:
    """Write a rosbag2 directory (MCAP storage, metadata version 8). Use as a context manager::

        with BagWriter(out_dir) as bag:
            bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
            bag.write("/tf_static", stamp_ns, msg)

    ``typestore`` defaults to the standard ROS 2 Humble definitions; pass another (or call
    :meth:`register_msg`) for custom message types. ``compress`` zstd-compresses the MCAP chunks.
    The bag is built in a hidden ``.NAME.XXXXXXXX.partial`` folder beside ``path`` and moved into place
    by :meth:`close`; one a killed writer left is removed by the next writer of ``path``
    (:func:`~gs_mapping.output_files.sweep_stale_temps`).
    """

    def __init__(self, path, overwrite: bool = False, typestore=None, compress: bool = False, inputs=()):
        self.path = Path(path)
        self.overwrite = overwrite
        self.inputs = list(inputs)  # paths this bag must never replace (see gs_mapping.output_files)
        self.compress = compress  # zstd-compressed MCAP chunks (read natively by rosbag2's MCAP plugin)
        self.typestore = typestore if typestore is not None else default_typestore()
        self._writer = None
        self._tmpdir: Path | None = None
        self.left_behind: str | None = None  # where the temp folder stayed when it could not be removed
        self._conns: dict[str, tuple[object, str]] = {}
        self.counts: dict[str, int] = {}

    def _check_target(self) -> None:
        p = self.path
        if not (p.exists() or p.is_symlink()):
            return
        if not self.overwrite:
            raise BagError(f"{p}: output bag exists already (pass --overwrite to replace it)")
        if p.is_dir():
            others = [
                x.name
                for x in p.iterdir()
                if x.name != "metadata.yaml" and not x.name.endswith(_BAG_SUFFIXES)
            ]
            if others:
                raise BagError(
                    f"{p}: exists and is not a rosbag2 directory (holds {others[:3]}); "
                    f"refusing to overwrite it"
                )

    def open(self) -> BagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._check_target()
        try:
            check_output(
                self.path, overwrite=self.overwrite, inputs=self.inputs, directory=True, allowed=BAG_FILES
            )
        except OutputError as exc:
            raise BagError(f"cannot create bag: {exc}") from None
        sweep_stale_temps(self.path)  # (the .partial folders of writers that were killed)
        try:
            # the bag is built in a .NAME.XXXXXXXX.partial folder, locked until _cleanup (never swept
            # while written); signals held: a Ctrl-C before its name is kept would leak it
            with signals_held():
                self._tmpdir = writing_temp(self.path, "bag")
            self._writer = Writer(
                self._tmpdir / self.path.name, version=WRITE_VERSION, storage_plugin=StoragePlugin.MCAP
            )
            # A non-empty custom_data map: rosbags writes `custom_data: null` otherwise, which some
            # rosbag2 YAML decoders reject ("bad conversion"); a map is valid for every version.
            self._writer.set_custom_data("gs_mapping.writer", "gs_mapping.bag.BagWriter")
            if self.compress:
                from rosbags.rosbag2 import CompressionFormat, CompressionMode

                self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            self._writer.open()
        except BaseException as exc:  # SIGTERM / Ctrl-C too: `with` does not exit what __enter__ failed
            self._cleanup()
            if not isinstance(exc, Exception):
                raise
            raise BagError(f"{self.path}: cannot create bag: {_describe(exc)}") from exc
        return self

    def register_msg(self, typename: str, definition: str) -> None:
        """Add a custom message type from its ``.msg`` text (before :meth:`add_topic` uses it). A
        Livox type's replaces the one the default typestore holds (a fork's own layout)."""
        from rosbags.typesys import get_types_from_msg

        from .messages.livox import make_way

        ours: dict = {}
        try:
            types = get_types_from_msg(definition, typename)
            ours = make_way(self.typestore, types)
            self.typestore.register(types)
        except Exception as exc:
            if ours:  # (register adds all or nothing: ours go back, nothing good lost)
                self.typestore.register(ours)
            raise BagError(f"{self.path}: cannot register message type {typename}: {_describe(exc)}") from exc

    def add_topic(self, name: str, typename: str, latched: bool = False) -> None:
        """Declare a topic. ``latched`` topics are offered transient_local (re-latched on play)."""
        self._check_open()
        if name in self._conns:
            raise BagError(f"{self.path}: topic {name} added twice")
        if typename not in self.typestore.fielddefs:
            raise BagError(f"{self.path}: topic {name}: unknown message type {typename}")
        try:
            conn = self._writer.add_connection(
                name, typename, typestore=self.typestore, offered_qos_profiles=[_latched_qos(latched)]
            )
        except Exception as exc:
            raise BagError(f"{self.path}: cannot add topic {name} ({typename}): {_describe(exc)}") from exc
        self._conns[name] = (conn, typename)
        self.counts[name] = 0

    def _conn(self, topic: str):
        self._check_open()
        try:
            return self._conns[topic]
        except KeyError:
            known = ", ".join(self._conns) or "none"
            raise BagError(f"{self.path}: topic {topic} was not added (topics: {known})") from None

    def write(self, topic: str, stamp_ns: int, msg) -> None:
        """Serialise ``msg`` (an rosbags or duck-typed message of the topic's type) and write it."""
        _, typename = self._conn(topic)
        try:
            try:
                data = self.typestore.serialize_cdr(msg, typename)
            except Exception:
                # e.g. an rclpy message holding array.array fields: rebuild it as a rosbags message.
                from .messages import RosbagsFactory, convert_message

                data = self.typestore.serialize_cdr(
                    convert_message(msg, typename, RosbagsFactory(self.typestore)), typename
                )
        except Exception as exc:
            raise BagError(
                f"{self.path}: topic {topic}: cannot serialise {typename} at {stamp_ns} ns: {_describe(exc)}"
            ) from exc
        self.write_raw(topic, stamp_ns, data)

    def write_raw(self, topic: str, stamp_ns: int, data) -> None:
        """Write an already CDR-serialised message."""
        conn, _ = self._conn(topic)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
            raise BagError(
                f"{self.path}: topic {topic}: stamp must be a non-negative int of "
                f"nanoseconds, got {stamp_ns!r}"
            )
        try:
            self._writer.write(conn, stamp_ns, data)
        except Exception as exc:
            raise BagError(
                f"{self.path}: topic {topic}: cannot write message at {stamp_ns} ns: {_describe(exc)}"
            ) from exc
        self.counts[topic] += 1

    def _check_open(self) -> None:
        if self._writer is None:
            raise BagError(f"{self.path}: bag writer is not open (use `with BagWriter(path) as bag:`)")

    def close(self) -> None:
        """Finish the bag and move it into place (replacing the old one when ``overwrite``)."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
            built = self._tmpdir / self.path.name
            for f in built.glob("*.mcap"):
                seal_mcap(f)
            self._check_target()  # re-check: something may have appeared meanwhile
            install_directory(
                built, self.path, overwrite=self.overwrite, inputs=self.inputs, allowed=BAG_FILES
            )
        except GsMappingError:
            raise
        except Exception as exc:
            raise BagError(f"{self.path}: cannot finish bag: {_describe(exc)}") from exc
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Drop what was written; the target path is left as it was."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception as exc:
                log.debug(f"{self.path}: error while aborting: {exc}")
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            self.left_behind = remove_temp(self._tmpdir)
            if self.left_behind is not None:
                log.warning(self.left_behind)
            self._tmpdir = None

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self.abort()
        if self.left_behind is not None and isinstance(exc, Exception):
            # the one line says where the partial bag stays (a warning alone is easily missed)
            what = str(exc) if isinstance(exc, GsMappingError) else f"{self.path}: {_describe(exc)}"
            raise BagError(f"{what}; {self.left_behind}") from exc


def _storage_files(storage: Path) -> list[Path]:
    """The storage files of a bag: the file itself, or those its ``metadata.yaml`` lists (by file
    name, as rosbag2 and rosbags resolve them: another bag's file left in the folder is not this
    bag's), or without one a directory's ``.mcap`` / ``.db3`` files."""
    if storage.is_file():
        return [storage]
    listed = _listed_files(storage)
    if listed is not None:
        return [storage / name for name in listed if (storage / name).is_file()]
    return storage_files_in(storage)


def _packed(storage: Path, unlisted: bool) -> list[Path]:
    """The zstd-compressed storage files (``--compression-mode file``) to inflate: ``storage`` given
    alone, or those of a folder without metadata.yaml (a listed folder's rosbags inflates) but
    where the inflated file is already there."""
    if storage.is_file():
        return [storage] if storage.name.endswith(_COMPRESSED_STORAGE) else []
    if not unlisted:
        return []
    # one beside its plain twin is left: that one is read (`zstd -d` keeps the .zstd it inflates; a
    # recorder killed as it compressed a split leaves the whole plain file and a cut .zstd)
    return sorted(
        x
        for x in storage.iterdir()
        if x.name.endswith(_COMPRESSED_STORAGE)
        and x.is_file()
        and not (storage / x.name[: -len(".zstd")]).exists()
    )


def _one_recording(files: list[Path]) -> bool:
    """``files`` (named as once inflated) are one storage file, or one recording's split files."""
    return len(files) == 1 or (len({_split_of(f) for f in files}) == 1 and _split_of(files[0]) is not None)


def _split_of(f: Path) -> tuple[str, str] | None:
    """(bag name, storage) of a file named as rosbag2 names a split, ``<bag>_<n>.mcap|.db3``: two
    recordings side by side are not one recording's splits."""
    m = re.fullmatch(r"(.*)_\d+", f.stem)
    return (m[1], f.suffix) if m and f.suffix in (".mcap", ".db3") else None


def _say_if_one_of_several(f: Path) -> None:
    """Said once where a storage file given alone is one of its folder's recording's split files
    (its metadata.yaml lists several, or without one the folder holds more of its kind): a tab
    completed ``rec/rec_0.mcap`` maps the first minute of the drive, its folder all of it."""
    listed = _listed_files(f.parent)
    if listed is None and _split_of(f) and not (f.parent / "metadata.yaml").exists():
        try:  # (a hint only: a folder one may enter but not list gives none, the file is read)
            listed = [x.name for x in f.parent.iterdir() if _split_of(x) == _split_of(f)]
        except OSError:
            listed = None
    if listed and len(listed) > 1 and f.name in listed:
        say_once(
            log,
            f"{f}: one of {len(listed)} split files of {f.parent}; only it is read (give the folder to read them all)",
        )


def _listed_files(folder: Path) -> list[str] | None:
    """The file names ``metadata.yaml`` lists (``relative_file_paths``; older recorders wrote the
    folder before each name, some absolute paths: the name is what counts); None where it does not
    say (no metadata.yaml, or one that does not parse: the reader names that)."""
    from pathlib import PurePath

    import yaml

    try:
        doc = yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8", errors="replace"))
        paths = doc["rosbag2_bagfile_information"]["relative_file_paths"]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return None
    if not isinstance(paths, list) or not all(isinstance(x, str) and x for x in paths):
        return None
    return [PurePath(x).name for x in paths]


def _sqlite_readonly(f: Path):
    """A sqlite3 connection that reads ``f`` and writes nothing beside it: ``immutable=1`` (as rosbags
    opens a bag; ``mode=ro`` on a WAL-mode file, rosbag2's resilient preset, makes -wal/-shm files
    in the user's folder), the path quoted for the URI (a folder named ``run #3``)."""
    import sqlite3
    from urllib.parse import quote

    return sqlite3.connect(f"file:{quote(os.fspath(f))}?immutable=1", uri=True)


def _check_mcap_framing(path: Path) -> None:
    """Check the MCAP framing rosbags skips: header record, footer record, summary CRC.

    rosbags reads through the summary and chunk indexes; a damaged header record or summary CRC would
    otherwise go unnoticed. Raises ValueError (wrapped into BagError by the caller)."""
    import struct
    import zlib

    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8 + 9 + 4096)
        if len(head) < 8 + 9 or head[:8] != MCAP_MAGIC:
            return  # rosbags reports a missing or bad magic itself
        op, length = head[8], struct.unpack_from("<Q", head, 9)[0]
        if op != 0x01:
            raise ValueError(f"MCAP header record expected at offset 8, found opcode 0x{op:02x}")
        body = head[17 : 17 + length]
        if len(body) != length:
            raise ValueError(f"MCAP header record length {length} is implausible")
        pos = 0
        fields = {}
        for field in ("profile", "library"):
            if pos + 4 > length:
                raise ValueError(f"MCAP header record truncated before {field}")
            n = struct.unpack_from("<I", body, pos)[0]
            fields[field] = body[pos + 4 : pos + 4 + n]
            pos += 4 + n
            if pos > length:
                raise ValueError(f"MCAP header {field} length {n} overruns the record")
        if pos != length:
            raise ValueError(f"MCAP header record length {length} does not match its contents ({pos})")
        if fields["profile"] == b"ros1":  # (`mcap convert x.bag`: whole, but ROS 1 messages)
            raise BagError(
                f"{path}: a ROS 1 recording (MCAP profile 'ros1'); convert the original .bag first: "
                f"rosbags-convert --src X.bag --dst X"
            )
        if size < 8 + 9 + 20 + 8 + 17:
            return
        f.seek(size - 8 - 29)
        footer = f.read(29)
        if footer[0] != 0x02 or struct.unpack_from("<Q", footer, 1)[0] != 20:
            return  # no valid footer: rosbags reports that (end magic / footer checks)
        summary_start, _, crc = struct.unpack_from("<QQI", footer, 9)
        if crc and summary_start:
            if summary_start > size - 8 - 29:
                raise ValueError(f"MCAP summary start {summary_start} lies beyond the footer")
            f.seek(summary_start)
            data = f.read(size - 8 - 29 - summary_start) + footer[:25]
            if zlib.crc32(data) != crc:
                raise ValueError("MCAP summary section checksum mismatch")
        if summary_start >= 8 + 13:
            f.seek(summary_start - 13)  # DataEnd record: opcode 0x0F, length 4, data_section_crc
            end = f.read(13)
            if len(end) == 13 and end[0] == 0x0F and struct.unpack_from("<Q", end, 1)[0] == 4:
                want = struct.unpack_from("<I", end, 9)[0]
                if want and _crc_of_range(f, 0, summary_start - 13) != want:
                    raise ValueError("MCAP data section checksum mismatch (a flipped bit?)")


def _empty_sqlite_definitions(storage: Path) -> list[str]:
    """``topic (type)`` of each message definition a sqlite3 bag's recorder left empty (rosbag2
    writes encoding '' for a type it cannot find; rosbags 0.11's sqlite3 reader fails on it with a
    KeyError, its MCAP reader does not)."""
    import sqlite3

    found: list[str] = []
    for f in [storage] if storage.is_file() else sorted(storage.glob("*.db3")):
        try:
            con = _sqlite_readonly(f)
            try:
                found += [
                    f"{topic} ({kind})"
                    for topic, kind in con.execute(
                        "SELECT t.name, d.topic_type FROM message_definitions d JOIN topics t "
                        "ON t.type = d.topic_type WHERE d.encoding NOT IN ('ros2msg', 'ros2idl') ORDER BY t.name"
                    )
                ]
            finally:
                con.close()
        except sqlite3.Error:  # not a sqlite3 file, or no such table: not this cause
            continue
    return found


def _storage_counts(files) -> tuple[dict[str, tuple[int, int, int]] | None, dict[str, str]]:
    """{topic: (messages, first stamp, last stamp)} from the storage files themselves (MCAP summary
    statistics and channels; sqlite3 rows), None where a file carries no statistics; and {topic as
    stored: its type} ("" where a file does not say)."""
    out: dict[str, tuple[int, int, int]] = {}
    types: dict[str, str] = {}
    counted = True

    def add(topic, n, first, last):
        # a file in which the topic has no message says nothing of its times (a split bag's later
        # files list /tf_static with no rows: its MIN is NULL, read as 0)
        topic = _absolute(topic)
        c, f, last0 = out.get(topic, (0, 0, 0))
        if not n:
            out[topic] = (c, f, last0)
        else:
            out[topic] = (c + n, min(f, first) if c else first, max(last0, last) if c else last)

    for f in files:
        if f.suffix == ".db3":
            con = _sqlite_readonly(f)
            try:
                rows = con.execute(
                    "SELECT t.name, t.type, COUNT(m.id), MIN(m.timestamp), MAX(m.timestamp) FROM topics t "
                    "LEFT JOIN messages m ON m.topic_id = t.id GROUP BY t.id"
                ).fetchall()
            finally:
                con.close()
            for name, msgtype, n, first, last in rows:
                types[name] = str(msgtype or "")
                add(name, int(n), int(first or 0), int(last or 0))
            continue
        stats, named = _mcap_statistics(f)
        types.update(named)
        if stats is None:
            counted = False
            continue
        for topic, (n, first, last) in stats.items():
            add(topic, n, first, last)
    return (out if counted else None), types


def _mcap_statistics(path: Path) -> tuple[dict[str, tuple[int, int, int]] | None, dict[str, str]]:
    """Per-topic message counts of an MCAP file from its summary (Channel + Statistics records; the
    file-wide start/end time, the Statistics' widened by the Chunk Indexes', is given to every topic:
    MCAP keeps no per-channel times), None without statistics; and each channel's topic → its
    schema's name (the message type)."""
    import struct

    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < 8 + 9 + 29:
            return None, {}
        f.seek(size - 8 - 29)
        footer = f.read(29)
        if footer[0] != 0x02:
            return None, {}
        summary_start, offsets_start = struct.unpack_from("<QQ", footer, 9)
        if not summary_start or summary_start > size - 37:
            return None, {}
        f.seek(summary_start)
        summary = f.read((offsets_start or size - 37) - summary_start)
    channels: dict[int, str] = {}
    schema_of: dict[int, int] = {}
    schemas: dict[int, str] = {}
    stats = None
    chunk_spans = []
    pos = 0
    while pos + 9 <= len(summary):
        op, length = struct.unpack_from("<BQ", summary, pos)
        body = summary[pos + 9 : pos + 9 + length]
        pos += 9 + length
        if op == 0x03 and len(body) >= 6:  # Schema: id u16, name string, …
            sid, n = struct.unpack_from("<HI", body, 0)
            schemas[sid] = body[6 : 6 + n].decode("utf-8", "replace")
        elif op == 0x04 and len(body) >= 8:  # Channel: id u16, schema u16, topic string, …
            cid, sid, n = struct.unpack_from("<HHI", body, 0)
            channels[cid] = body[8 : 8 + n].decode("utf-8", "replace")
            schema_of[cid] = sid
        elif op == 0x0B and len(body) >= 46:  # Statistics
            start, end = struct.unpack_from("<QQ", body, 26)
            (maplen,) = struct.unpack_from("<I", body, 42)
            counts = {}
            for i in range(46, min(46 + maplen, len(body)) - 9, 10):
                cid, n = struct.unpack_from("<HQ", body, i)
                counts[cid] = n
            stats = (start, end, counts)
        elif op == 0x08 and len(body) >= 16:  # Chunk Index: message start and end time, …
            chunk_spans += [struct.unpack_from("<QQ", body, 0)]
    types = {topic: schemas.get(schema_of[cid], "") for cid, topic in channels.items()}
    if stats is None:
        return None, types
    start, end, counts = stats
    # (a chunk's own times hold where a writer's Statistics skip a message logged at 0; end 0: empty)
    for chunk_start, chunk_end in chunk_spans:
        if chunk_end:
            start, end = min(start, chunk_start), max(end, chunk_end)
    out: dict[str, tuple[int, int, int]] = {}
    for cid, topic in channels.items():
        c, _, _ = out.get(topic, (0, 0, 0))
        out[topic] = (c + counts.get(cid, 0), start, end)
    return out, types


def _crc_of_range(f, start: int, stop: int) -> int:
    import zlib

    f.seek(start)
    crc, left = 0, stop - start
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            break
        crc = zlib.crc32(block, crc)
        left -= len(block)
    return crc


def _zstd_decompress(data: bytes, limit: int | None = None) -> bytes:
    """zstd frames inflated (with ``limit``: BagError past that many bytes, before they are made)."""
    from .zstd_frames import inflate

    out = inflate(data, (1 << 62) if limit is None else limit)
    if out is None:
        raise BagError(f"a zstd-compressed message inflates beyond {limit >> 20} MiB")
    return out


def seal_mcap(path: Path) -> None:
    """Fill in the CRC-32s rosbags' MCAP writer leaves at zero, in place (sizes and offsets unchanged).

    Each Chunk record gets the CRC of its uncompressed records, the DataEnd record the CRC of the
    whole data section, the Footer the CRC of the summary section. Readers (rosbags, the mcap tools,
    rosbag2's MCAP plugin) then detect any flipped bit. Only for files we just wrote (trusted lengths).
    """
    import struct
    import zlib

    with path.open("r+b") as f:
        size = f.seek(0, 2)
        f.seek(size - 8 - 29)
        footer = f.read(29)
        if footer[0] != 0x02:
            raise BagError(f"{path}: no MCAP footer where expected; cannot seal")
        summary_start = struct.unpack_from("<Q", footer, 9)[0]
        pos = 8
        data_end = None
        while pos < (summary_start or size - 8 - 29):
            f.seek(pos)
            op, length = struct.unpack("<BQ", f.read(9))
            if op == 0x06:  # Chunk: start u64, end u64, uncompressed_size u64, crc u32, compression, data
                body = f.read(length)
                usize = struct.unpack_from("<Q", body, 16)[0]
                clen = struct.unpack_from("<I", body, 28)[0]
                compression = body[32 : 32 + clen].decode()
                dlen = struct.unpack_from("<Q", body, 32 + clen)[0]
                data = body[40 + clen : 40 + clen + dlen]
                if compression == "zstd":
                    data = _zstd_decompress(data)
                    if len(data) != usize:
                        raise BagError(f"{path}: chunk at {pos} inflates to {len(data)} B, not {usize}")
                elif compression:
                    raise BagError(f"{path}: unknown MCAP chunk compression {compression!r}; cannot seal")
                f.seek(pos + 9 + 24)
                f.write(struct.pack("<I", zlib.crc32(data)))
            elif op == 0x0F:
                data_end = pos
                break
            pos += 9 + length
        if data_end is not None:
            crc = _crc_of_range(f, 0, data_end)
            f.seek(data_end + 9)
            f.write(struct.pack("<I", crc))
        if summary_start:
            f.seek(summary_start)
            data = f.read(size - 8 - 29 - summary_start) + footer[:25]
            f.seek(size - 8 - 4)
            f.write(struct.pack("<I", zlib.crc32(data)))
        f.flush()


def _absolute(topic: str) -> str:
    """A bag's topic name as ROS 2 resolves it: rosbags (and ROS 1 bags converted by it) may store
    ``camera/image`` without the leading slash, which every ROS 2 tool — and our ``--color-topic`` —
    names ``/camera/image``."""
    return (
        topic
        if topic.startswith("/") and "//" not in topic
        else "/" + "/".join(p for p in topic.split("/") if p)
    )


def _describe(exc: BaseException) -> str:
    """One line for a foreign exception: its text, or its type where the text is empty; an OS error
    in the words every other writer uses (a full disk: "no space left on device", not "OSError:
    [Errno 28] …", and the file it names is the temp folder's, which the user never sees)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_reason(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
