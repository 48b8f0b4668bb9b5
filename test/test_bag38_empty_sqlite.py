"""A ``.db3`` holding SQLite's magic but not its whole 100-byte header: what a recorder killed (or a
power cut) as it opened a new split leaves, SQLite's first page not yet written whole. It holds no
table, so no message: in a killed split recording it is an empty split, skipped and said once (the
real kitchen bag's other splits read whole); given alone, one line says it is an empty recording
file, not 'truncated or corrupt'. A file whose header is whole is judged by SQLite as before.
References: the source bag as rosbags reads it, and SQLite's own refusal of the cut file."""

from __future__ import annotations

import logging
import sqlite3

import pytest

pytest.importorskip("rosbags.rosbag2")

from test_real_inputs_bags37 import _killed_split_recording, source  # noqa: E402, F401

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.cli import main  # noqa: E402
from gs_mapping.say_once import forget  # noqa: E402


def _cut_head(bag, keep: int):
    """``bag``'s rec_3.db3: the first ``keep`` bytes of its real rec_0.db3 (SQLite's own header)."""
    f = bag / "rec_3.db3"
    f.write_bytes((bag / "rec_0.db3").read_bytes()[:keep])
    return f


def test_a_split_with_magic_but_no_whole_header_is_an_empty_split(source, tmp_path, caplog):  # noqa: F811
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    f = _cut_head(bag, 60)
    assert f.read_bytes().startswith(b"SQLite format 3\x00")
    with pytest.raises(sqlite3.DatabaseError):  # SQLite itself reads nothing in it
        sqlite3.connect(f"file:{f}?mode=ro", uri=True).execute("SELECT * FROM sqlite_master").fetchall()
    forget()
    caplog.set_level(logging.WARNING)
    with BagReader(bag) as b:
        got = [(t, s) for t, s, _ in b.raw_messages()]
    assert got == [(m[0], m[1]) for m in source[1]]  # every message of the source, in order
    said = [r.getMessage() for r in caplog.records if "empty split file" in r.getMessage()]
    assert said == [
        f"{f}: an empty split file (SQLite's magic but 60 of its 100 header bytes: its recorder "
        "stopped as it opened it): skipped"
    ]


def test_given_alone_it_is_named_an_empty_recording_file(source, tmp_path, capsys):  # noqa: F811
    bag = _killed_split_recording(tmp_path / "rec", source, 3, "SQLITE3")
    f = _cut_head(bag, 60)
    assert main(["info", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gs-mapping info: error: {f}: an empty recording file (SQLite's magic but 60 of its 100 header "
        "bytes: its recorder stopped as it opened it): no messages in it"
    ]
    # its header whole, its first page cut: damaged, named as before (SQLite says malformed)
    f = _cut_head(bag, 1000)
    assert main(["info", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open bag (truncated or corrupt?)" in err[0] and "empty" not in err[0]
