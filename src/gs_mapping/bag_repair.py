"""Recordings cut short (``ros2 bag record`` killed, power lost): read them through a repaired copy.

A killed recorder leaves storage that rosbags cannot read whole, though every message is on disk:

- an MCAP file without its summary and footer (or with its last record cut): rosbags reads through
  the summary and refuses the file; rosbag2's own MCAP plugin scans it record by record. The copy is
  rebuilt from a linear scan (the ``mcap`` library's stream reader) with the ``mcap`` writer, which
  adds the summary and indexes.
- a sqlite3 file with rows still in its write-ahead log (``-wal``, rosbag2's ``resilient`` preset):
  rosbags opens sqlite ``immutable``, which ignores the log; sqlite itself replays it. The copy is the
  file and its log, checkpointed.

The user's files are never written: the copy goes to a temporary folder (``$TMPDIR``), removed when
the bag is closed. Where that folder lacks the room, the error names the way to repair in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path
from urllib.parse import quote

from .errors import BagError
from .say_once import say_once

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"  # (bag.py checks it too)
_FOOTER = 0x02
_MESSAGE = 0x05
_CHUNK = 0x06
_DATA_END = 0x0F


def _mcap_footer_whole(path: Path) -> bool:
    """True where an MCAP file ends with its footer record and the closing magic (not MCAP at all:
    True too, the reader says so)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(8) != MCAP_MAGIC:
            return True
        if size < 8 + 9 + 20 + 8:
            return False
        f.seek(size - 8 - 29)
        tail = f.read(29 + 8)
    return tail[29:] == MCAP_MAGIC and tail[0] == _FOOTER and struct.unpack_from("<Q", tail, 1)[0] == 20


def _walk_records(path: Path, stop: tuple[int, ...] = ()) -> tuple[int, int, int]:
    """Follow the top-level record lengths up to a DataEnd record or one whose opcode is in
    ``stop``: (where the last whole record ends, where it starts, the opcode met: DataEnd, one of
    ``stop``, or 0 where the records ran out first). Seeks only: one read per record."""
    size, pos, last = path.stat().st_size, 8, 8
    with path.open("rb") as f:
        while pos + 9 <= size:
            f.seek(pos)
            head = f.read(9)
            end = pos + 9 + struct.unpack_from("<Q", head, 1)[0]
            if end > size or head[0] == 0:  # (opcode 0 is no record: zeros a power loss left)
                break
            if head[0] == _DATA_END or head[0] in stop:
                return end, pos, head[0]
            last, pos = pos, end
    return pos, last, 0


def _wal(path: Path) -> Path | None:
    """The sqlite write-ahead log beside ``path`` where it holds anything."""
    wal = path.with_name(path.name + "-wal")
    return wal if wal.is_file() and wal.stat().st_size > 0 else None


def _mcap_unindexed(path: Path) -> bool:
    """A whole MCAP whose messages rosbags cannot find through its indexes, though rosbag2 reads
    them in file order: one without a summary, one written without chunks (rosbag2's ``fastwrite``
    preset, whose messages need not be in log-time order: rosbags then refuses the file) or
    without message indexes (``noMessageIndex``: rosbags reads nothing). A summary that does not
    read is left to the reader's error (a damaged file, not an unindexed one). A file or chunk
    without messages has no message index to miss (rosbags' writer closes a recording without
    messages in one chunk of its Schema and Channel records: start time after end time; the
    ``mcap`` writer without Statistics, an optional record, writes no chunk: the data section's
    records are walked to a Message or Chunk record, or to its end)."""
    from mcap.reader import make_reader

    try:
        with path.open("rb") as f:
            if f.read(8) != MCAP_MAGIC:
                return False
            f.seek(0)
            summary = make_reader(f).get_summary()
    except Exception:  # noqa: BLE001 - the mcap library's errors, OSError: the reader says it
        return False
    if summary is None:
        return True
    if summary.statistics is not None and summary.statistics.message_count == 0:
        return False
    if not summary.chunk_indexes:  # (no Statistics, which is optional: are there messages to miss?)
        return bool(summary.channels) and _walk_records(path, (_MESSAGE, _CHUNK))[2] != _DATA_END
    return any(
        not ci.message_index_offsets and ci.message_start_time <= ci.message_end_time
        for ci in summary.chunk_indexes
    )


def cut_short(files: list[Path]) -> list[Path]:
    """The storage files among ``files`` that rosbags cannot read whole though their messages are
    on disk: an MCAP without its footer (a killed recorder, before or while it wrote its summary:
    the data section is scanned, as rosbag2's MCAP plugin falls back to) or without the indexes
    rosbags reads by (:func:`_mcap_unindexed`), a sqlite3 file with a write-ahead log. A whole MCAP
    with a damaged summary is corrupt, not cut: refused. An empty split (:func:`empty_split_why`:
    its whole magic and nothing after it too) holds nothing to repair: skipped or named as empty."""
    return [
        f
        for f in files
        if (f.suffix == ".mcap" and not _empty_split(f) and (not _mcap_footer_whole(f) or _mcap_unindexed(f)))
        or (f.suffix == ".db3" and _wal(f))
    ]


class _Upto(io.RawIOBase):
    """``f`` read up to byte ``end`` (the end of its last whole record): a scan that stops before
    ``end`` met damage, not the cut."""

    def __init__(self, f, end: int) -> None:
        self.f, self.end, self.pos = f, end, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(memoryview(b)[: max(0, min(len(b), self.end - self.pos))])
        self.pos += n
        return n


def _os_error(src: Path, dst: Path, exc: OSError) -> BagError:
    """The copy's disk full (or a file size limit) named as such, not as damage to the recording."""
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return BagError(
            f"{src}: read through a repaired copy in {dst.parent}, which cannot be written "
            f"({exc.strerror}); set TMPDIR to a disk with room, or repair it in place: {_how_in_place(src)}"
        )
    return BagError(f"{src}: cannot read: {exc.strerror or exc}")


def _rebuild_mcap(src: Path, dst: Path) -> tuple[int, int]:
    """Scan ``src``'s whole records into ``dst``; (messages, bytes of the cut record left out).
    BagError where a record before the cut is damaged (a failing chunk CRC, a malformed record): a
    flipped bit is an error, as in a whole file, never a shorter reading."""
    from mcap.exceptions import EndOfFile
    from mcap.records import Attachment, Channel, Header, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import CompressionType, Writer

    end, last_start, met = _walk_records(src)
    data_whole = met == _DATA_END
    schemas: dict[int, int] = {0: 0}
    channels: dict[int, int] = {}
    messages = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        upto = _Upto(fin, end)
        writer = Writer(fout, compression=CompressionType.LZ4)
        started = False
        try:
            for rec in StreamReader(upto, validate_crcs=True).records:
                if isinstance(rec, Header):
                    writer.start(rec.profile, rec.library)
                    started = True
                elif not started:
                    break
                elif isinstance(rec, Schema):
                    if rec.id not in schemas:
                        schemas[rec.id] = writer.register_schema(rec.name, rec.encoding, rec.data)
                elif isinstance(rec, Channel):
                    if rec.id not in channels and rec.schema_id in schemas:
                        channels[rec.id] = writer.register_channel(
                            rec.topic, rec.message_encoding, schemas[rec.schema_id], rec.metadata
                        )
                elif isinstance(rec, Message):
                    if rec.channel_id in channels:
                        writer.add_message(
                            channels[rec.channel_id], rec.log_time, rec.data, rec.publish_time, rec.sequence
                        )
                        messages += 1
                elif isinstance(rec, Metadata):
                    writer.add_metadata(rec.name, rec.metadata)
                elif isinstance(rec, Attachment):
                    writer.add_attachment(rec.create_time, rec.log_time, rec.name, rec.media_type, rec.data)
        except EndOfFile:
            if upto.pos < end:  # (a record claiming more than its chunk holds)
                raise BagError(
                    f"{src}: a record ends early at byte {upto.pos}, before the recording's cut"
                ) from None
        except BagError:
            raise
        except OSError as exc:  # the copy's disk (full, a file size limit), or the recording's
            raise _os_error(src, dst, exc) from None
        except Exception as exc:  # noqa: BLE001 - a failing CRC, a malformed record, a bad codec stream
            if upto.pos < end:  # a record before the last: damage, as in a whole file
                raise BagError(
                    f"{src}: damaged before the recording's cut (near byte {upto.pos}: "
                    f"{type(exc).__name__}: {exc}); nothing read"
                ) from None
            end = last_start  # the last record itself, half written when the power went (zeros)
            log.debug(f"{src}: the last record does not read ({exc}): taken as the cut")
        if not started:
            raise BagError(f"{src}: not a readable MCAP file (its header record is missing or damaged)")
        try:
            writer.finish()
        except OSError as exc:
            raise _os_error(src, dst, exc) from None
    if not messages:
        raise BagError(f"{src}: cut short before its first whole message (nothing to read)")
    return messages, 0 if data_whole else src.stat().st_size - end  # (a cut summary loses no message)


def _checkpoint_sqlite(src: Path, dst: Path) -> int:
    """Copy ``src`` with its write-ahead log folded in to ``dst``; the rows it then holds.

    Where a recorder may still write (its ``-shm`` is there) SQLite's backup API copies one snapshot
    under a read lock, as any reader of the live file: two file copies could pair the file of before
    the recorder's automatic checkpoint with the log restarted after it ('malformed'). Without a
    ``-shm`` no recorder is on the file, and a read-only open would have to make one beside it (or
    fails, in a read-only folder): the file and its log are copied."""
    if src.with_name(src.name + "-shm").is_file():
        try:
            with (
                contextlib.closing(
                    sqlite3.connect(f"file:{quote(os.fspath(src))}?mode=ro", uri=True)
                ) as live,
                contextlib.closing(sqlite3.connect(dst)) as copy,
            ):
                live.backup(copy)
        except sqlite3.Error as exc:
            log.debug(f"{src}: no snapshot through SQLite ({exc}): its files are copied")
            dst.unlink(missing_ok=True)
        else:
            return _fold_log(dst)
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_name(src.name + "-wal"), dst.with_name(dst.name + "-wal"))
    return _fold_log(dst)


def _fold_log(dst: Path) -> int:
    """Fold ``dst``'s log into it and make it a plain file again; the rows it holds."""
    con = sqlite3.connect(dst)
    try:
        rows = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")  # a plain file again: rosbags opens it immutable
    finally:
        con.close()
    return int(rows)


def _how_in_place(f: Path) -> str:
    if f.suffix == ".mcap":
        return f"`mcap recover {f} -o FIXED.mcap` (the mcap CLI)"
    return f"`sqlite3 {f} 'PRAGMA wal_checkpoint(TRUNCATE)'`"


_COPY_PREFIX = "gs_mapping_bag_"
_COPY_LOCK = ".in-use"  # flocked by the reader for as long as the copy is open


def _remove_abandoned_copies(tmp_root: Path) -> None:
    """Repaired copies whose reader was killed (SIGKILL runs no cleanup): their lock is free.
    Without this, every killed read of a cut recording left its copy in ``$TMPDIR`` for good."""
    for folder in tmp_root.glob(f"{_COPY_PREFIX}*"):
        try:
            if folder.is_symlink():
                continue
            fd = os.open(folder / _COPY_LOCK, os.O_RDONLY)
        except OSError:  # (no lock: not one of ours, or gone meanwhile)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # in use
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _locked_folder(tmp_root: Path) -> tuple[Path, int]:
    """A new copy folder, locked before it takes a name the cleaner looks at (made under another
    prefix, then renamed): no reader's copy is taken for an abandoned one while it is being made."""
    from .output_files import _RENAME_NOREPLACE, _renameat2

    making = "gs_mapping_newbag."  # (not _COPY_PREFIX*; the random part follows, unique as it is)
    made = Path(tempfile.mkdtemp(prefix=making, dir=tmp_root))
    lock = os.open(made / _COPY_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = tmp_root / f"{_COPY_PREFIX}{made.name[len(making) :]}"
    try:
        if not _renameat2(made, work, _RENAME_NOREPLACE):  # (no renameat2: a plain rename, as unique)
            os.rename(made, work)
    except OSError:
        release_copy(made, lock)
        raise
    return work, lock


def release_copy(folder: Path, lock_fd: int) -> None:
    """Remove a copy made by :func:`repaired_copy` and let go of its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.close(lock_fd)


PACKED = ".zstd"  # `ros2 bag record --compression-mode file`: each closed storage file one zstd stream


def _inflate(src: Path, dst: Path) -> None:
    """``src`` (``rec_0.db3.zstd``) inflated into ``dst``, streamed (a split of gigabytes is never
    held in memory); :class:`BagError` naming ``src`` where it does not inflate or ``dst``'s disk
    is full."""
    from .zstd_frames import zstd

    try:
        # ("xb": never written through a link, nor over a file: the copy's others link the user's)
        with zstd.open(src, "rb") as fin, dst.open("xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (zstd.ZstdError, EOFError) as exc:
        raise BagError(
            f"{src}: a zstd-compressed storage file that does not inflate (damaged?): {exc}"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise BagError(
                f"{src}: read through an inflated copy in {dst.parent.parent}, which cannot be written "
                f"({exc.strerror}); set TMPDIR to a disk with room, or inflate it beside it: zstd -d {src}"
            ) from None
        raise BagError(f"{src}: cannot read: {exc.strerror or exc}") from None


def repaired_copy(
    storage: Path, broken: list[Path], packed: list[Path] | tuple = ()
) -> tuple[Path, Path, int]:
    """A temporary folder holding ``storage`` (a bag directory or one storage file) with ``broken``
    rebuilt, ``packed`` (``*.db3.zstd``, ``*.mcap.zstd``) inflated and every other file linked: (the
    folder and the lock that marks it in use, which the caller hands to :func:`release_copy`; the
    path to open)."""
    need = sum(f.stat().st_size + (w.stat().st_size if (w := _wal(f)) else 0) for f in broken)
    tmp_root = Path(tempfile.gettempdir())
    # (room for the repairs; a copy of links needs none, and an inflated file's own ENOSPC is said
    # by _inflate: without this 'broken' a TMPDIR under 64 MiB free was an IndexError below)
    if broken and shutil.disk_usage(tmp_root).free < 2 * need + (64 << 20):
        raise BagError(
            f"{broken[0]}: a recording cut short, which is read through a repaired copy, but "
            f"{tmp_root} lacks the room ({need >> 20} MiB); set TMPDIR to a larger disk, or repair it "
            f"in place: {_how_in_place(broken[0])}"
        )
    _remove_abandoned_copies(tmp_root)
    work, lock = _locked_folder(tmp_root)
    try:
        sources = [storage] if storage.is_file() else sorted(storage.iterdir())
        for f in sources:
            if not f.is_file() or f.name.endswith(("-wal", "-shm")):
                continue
            out = work / f.name
            if f in packed:
                _inflate(f, work / f.name[: -len(PACKED)])
            elif f not in broken:
                out.symlink_to(f.resolve())
            elif f.suffix == ".mcap" and _mcap_footer_whole(f):
                n, _ = _rebuild_mcap(f, out)
                log.info(f"{f}: no summary, chunks or message indexes: {n} messages read by scanning")
            elif f.suffix == ".mcap":
                n, left = _rebuild_mcap(f, out)
                cut = f", {left} bytes of a cut record left out" if left else ""
                say_once(
                    log,
                    f"{f}: ends without its summary (a recording cut short): {n} messages read by "
                    f"scanning{cut}",
                )
            else:
                n = _checkpoint_sqlite(f, out)
                say_once(
                    log,
                    f"{f}: rows still in its write-ahead log (a recording cut short): read with the log "
                    f"folded into a copy ({n} messages)",
                )
        name = storage.name[: -len(PACKED)] if storage in packed else storage.name
        return work, (work / name if storage.is_file() else work), lock
    except BaseException:
        release_copy(work, lock)
        raise


_SQLITE_MAGIC = b"SQLite format 3\x00"


def storage_files_in(folder: Path) -> list[Path]:
    """A folder's ``.mcap`` / ``.db3`` files, by name: not macOS's AppleDouble ``._rec_0.mcap``,
    written beside each file on FAT/exFAT and shares."""
    return sorted(
        x for x in folder.iterdir() if x.suffix in (".mcap", ".db3") and not x.name.startswith("._")
    )


SQLITE_HEADER = 100  # bytes of a SQLite database's header (its first page begins with it)


def empty_split_why(f: Path) -> str | None:
    """Why ``f`` is a storage file with nothing in it (None: it is not): 0 bytes or a prefix of its
    format's magic, or a ``.db3`` whose SQLite magic is not followed by the whole 100-byte header
    (SQLite writes its first page at once: cut within it, by a recorder killed or the power lost
    as it opened the file, it holds no table, so no message)."""
    magic = MCAP_MAGIC if f.suffix == ".mcap" else _SQLITE_MAGIC
    try:
        with f.open("rb") as fh:
            head = fh.read(SQLITE_HEADER)
    except OSError:  # (unreadable: not empty; the reader names it)
        return None
    if len(head) <= len(magic) and magic.startswith(head):
        return "its recorder stopped as it opened it"
    if f.suffix == ".db3" and head.startswith(magic) and len(head) < SQLITE_HEADER:
        return (
            f"SQLite's magic but {len(head)} of its {SQLITE_HEADER} header bytes: its recorder stopped "
            "as it opened it"
        )
    return None


def _empty_split(f: Path) -> bool:
    """``f`` holds nothing (:func:`empty_split_why`)."""
    return empty_split_why(f) is not None


def write_metadata(folder: Path, source: Path) -> int:
    """Write the ``metadata.yaml`` that ``ros2 bag reindex`` would into ``folder`` (a repaired copy
    holding the split files of a recording whose recorder never closed it: Humble's recorder writes
    the metadata only then), so that its files are read as one recording, in time order (their
    numbers: ``_2`` before ``_10``); the files it lists. Each file says its own topics, QoS, type
    hashes and times (rosbags reads one storage file alone); one that does not read is named as
    ``source``'s, the user's folder."""
    import re

    import yaml
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.metadata import dump_qos_v9

    def number(f: Path) -> tuple:
        return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", f.stem))

    found = sorted(storage_files_in(folder), key=number)
    # a recorder killed right after it opened a new split leaves it empty (or cut within its magic):
    # nothing in it to read, so not listed (said once); a damaged file with more in it is not skipped
    files = [f for f in found if not _empty_split(source / f.name)]
    for f in found:
        if f not in files:
            why = empty_split_why(source / f.name)
            say_once(log, f"{source / f.name}: an empty split file ({why}): skipped")
    if not files:
        raise BagError(f"{source}: no metadata.yaml, and its {len(found)} split files are all empty")
    topics: dict[tuple, int] = {}
    spans = []
    for f in files:
        try:
            with Reader(f) as r:
                if r.message_count:
                    spans.append((r.start_time, r.end_time - 1, r.message_count, f.name))
                for c in r.connections:
                    qos = yaml.safe_dump(dump_qos_v9(c.ext.offered_qos_profiles))
                    key = (c.topic, c.msgtype, c.ext.serialization_format, qos, c.digest or "")
                    topics[key] = topics.get(key, 0) + c.msgcount
        except Exception as exc:  # noqa: BLE001 - rosbags', sqlite3's, the mcap library's errors
            what = str(exc).replace(str(f), f.name)
            raise BagError(
                f"{source / f.name}: one of {len(files)} split files, unreadable: {what}"
            ) from None
    for a, b in zip(spans, spans[1:], strict=False):  # (read in turn, they must follow one another)
        if b[0] < a[1]:
            raise BagError(
                f"{source}: no metadata.yaml, and {a[3]} and {b[3]} overlap in time: not one recording's "
                f"split files; read each alone"
            )
    # (rosbag2 numbers a recording's splits from 0 on: a number missing is a part of the drive not
    # copied, which would be read as a jump in time (numbers far past the count, time stamps say,
    # are not that counter's)
    nums = sorted(
        int(m[1]) for f in found if (m := re.fullmatch(r".*_(\d+)", f.stem))
    )  # (an empty one skipped is no gap)
    gaps = [(a + 1, b - 1) for a, b in zip([-1, *nums], nums, strict=False) if b > a + 1]
    if gaps and nums[-1] < 10 * len(nums):
        lo, hi = gaps[0]
        say_once(
            log,
            f"{source}: no split file numbered {lo if lo == hi else f'{lo} to {hi}'}"
            f"{f' (and {len(gaps) - 1} more gaps)' if len(gaps) > 1 else ''} among its {len(found)}: "
            f"that part of the recording is missing (not copied?); read without it",
        )
    start = min((s[0] for s in spans), default=0)
    end = max((s[1] for s in spans), default=0)
    info = {
        "version": 9,
        "storage_identifier": "mcap" if files[0].suffix == ".mcap" else "sqlite3",
        "relative_file_paths": [f.name for f in files],
        "starting_time": {"nanoseconds_since_epoch": start},
        "duration": {"nanoseconds": end - start},
        "message_count": sum(s[2] for s in spans),
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": name,
                    "type": msgtype,
                    "serialization_format": fmt,
                    "offered_qos_profiles": yaml.safe_load(qos),
                    "type_description_hash": digest,
                },
                "message_count": n,
            }
            for (name, msgtype, fmt, qos, digest), n in topics.items()
        ],
        "compression_format": "",
        "compression_mode": "",
    }
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    return len(files)


__all__ = ["MCAP_MAGIC", "cut_short", "release_copy", "repaired_copy", "storage_files_in", "write_metadata"]
