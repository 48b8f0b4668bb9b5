"""Outside review of issue 16 (real robot recordings), fifth pass: bag folders as users keep them
rather than as a recorder leaves them. A sqlite3 bag recorded with rosbag2's ``resilient`` preset
(the file stays in WAL journal mode after a clean close), bags in folders whose names hold ``#``,
``?``, ``%``, spaces or non-ASCII letters, a bag folder that also holds a storage file its
``metadata.yaml`` does not list (another bag's file copied in, a cut-short file left there), old
metadata whose ``relative_file_paths`` carry the bag folder's name or an absolute path, the storage
files of a split, message-compressed bag given one by one instead of the folder, and
``gs-mapping play`` of such a split bag.

Expected values come from outside the component: rosbags' own reader (the library the suite reads
through, used here on its own) for what a bag holds, rosbag2's C++ sources for what a recorder and
``ros2 bag`` do (``sqlite_pragmas.hpp``: the resilient preset is ``PRAGMA journal_mode=WAL``;
``sqlite_wrapper.cpp``: files are opened with ``sqlite3_open_v2`` and no ``SQLITE_OPEN_URI``, so a
file name is a plain path; ``sequential_reader.cpp``: a bag is the files ``relative_file_paths``
lists, resolved by ``resolve_relative_paths``: below the bag folder's parent before version 4,
absolute paths as they are), SQLite's file format (header bytes 18-19 = 2: WAL mode) and Python's
``sqlite3`` opening a plain path. Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile

import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("mcap")
pytest.importorskip("cv2")  # (test_hostile_robot_inputs, whose rosbags-only builders we use, needs it)

import test_hostile_robot_inputs as rb  # noqa: E402
import test_outside_recordings3 as rec3  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.errors import BagError  # noqa: E402


# -- helpers: what rosbags reads, what the suite reads -------------------------------------------------
def _abs(topic):
    return topic if topic.startswith("/") else "/" + topic


def _rosbags(bag):
    """rosbags' own reading: ([(topic, log time, CDR)] in its order, {topic: count}, first, last)."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as r:
        msgs = [(_abs(c.topic), int(t), bytes(d)) for c, t, d in r.messages()]
    counts: dict[str, int] = {}
    for topic, _, _ in msgs:
        counts[topic] = counts.get(topic, 0) + 1
    stamps = [t for _, t, _ in msgs]
    return msgs, counts, min(stamps), max(stamps)


def _ours(bag):
    """The suite's reading, in the same shape (counts as its topic table says them)."""
    with BagReader(bag) as r:
        msgs = list(r.raw_messages())
        counts = {t.name: t.count for t in r.topics if t.count}
        return msgs, counts, r.start_ns, r.end_ns, r.message_count


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch):
    """$TMPDIR of this test alone (where the suite puts repaired copies), so nothing goes elsewhere."""
    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def _files(folder):
    """{name: bytes} of every file in ``folder`` (what a reader must leave as it found it)."""
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


# -- rosbag2's `resilient` preset: a sqlite3 bag in WAL mode ------------------------------------------
def _wal_mode_bag(path, n=3):
    """A cleanly closed recording of ``ros2 bag record --storage sqlite3 --storage-preset-profile
    resilient``: rosbag2 applies ``PRAGMA journal_mode=WAL`` (sqlite_pragmas.hpp,
    robust_writing_pragmas), which SQLite keeps in the file header; at the last close SQLite
    checkpoints and deletes the -wal and -shm, so the folder holds the .db3 and metadata.yaml only."""
    bag = rb.robot_bag(path, n=n)
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.close()
    assert db.read_bytes()[18:20] == b"\x02\x02"  # (file format: read/write version 2 = WAL)
    assert sorted(f.name for f in bag.iterdir()) == [db.name, "metadata.yaml"]
    return bag


def test_resilient_preset_sqlite3_bag_is_read_without_writing_into_its_folder(tmp_path):
    """The bag folder is the user's recording (often on a robot's disk or a shared mount): reading
    it must leave it as it was. rosbags reads it without a trace (it opens sqlite ``immutable``);
    the suite's own sqlite look-ups open it ``mode=ro``, which for a WAL-mode file still creates
    the -wal and -shm files beside it."""
    bag = _wal_mode_bag(tmp_path / "b")
    before = _files(bag)
    ref, ref_counts, _, _ = _rosbags(bag)
    assert _files(bag) == before  # the reference reader leaves the folder untouched
    msgs, counts, _, _, _ = _ours(bag)
    assert msgs == [(t, s, d) for t, s, d in ref] and counts == ref_counts
    assert sorted(_files(bag)) == sorted(before), "files written into the user's bag folder"
    assert _files(bag) == before


def test_resilient_preset_bag_on_a_read_only_mount_takes_its_counts_from_the_storage(tmp_path):
    """README: "counts and times come from the storage, not from a metadata.yaml that may lie".
    The same WAL-mode recording on a read-only mount (a robot's disk mounted ro, a USB stick),
    its metadata.yaml claiming 5 more colour images than the .db3 holds (hand-edited, or copied
    from another recording): the suite's ``mode=ro`` look-up cannot create the -shm there, fails,
    and the storage check is skipped in silence; rosbags (``immutable``) reads the rows."""
    import yaml
    from hostile_fs import read_only_dir

    bag = _wal_mode_bag(tmp_path / "b")
    p = bag / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    info = doc["rosbag2_bagfile_information"]
    for t in info["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/camera/color/image_raw":
            t["message_count"] += 5
    info["message_count"] += 5
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    ref, ref_counts, first, last = _rosbags(bag)
    with read_only_dir(tmp_path / "ro", _files(bag)) as ro:
        try:
            (ro / "probe").write_bytes(b"")
        except OSError:
            pass
        else:
            pytest.skip("needs a read-only file system (root without mount rights can write anywhere)")
        msgs, counts, start, end, total = _ours(ro)
    assert msgs == ref
    assert counts == ref_counts and total == len(ref) == 15


def test_split_bag_missing_one_of_its_files_is_one_line_naming_that_file(tmp_path, capsys):
    """A split bag copied without one of its files (a file left behind on the robot, a transfer
    stopped early): rosbag2 cannot open the files it lists (sequential_reader.cpp), and neither can
    rosbags; the suite says so in one line naming the missing file, exit 2, no traceback."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    from gs_mapping.cli import main

    bag, _ = rec3._split(tmp_path, "MCAP", None)
    (bag / "split_1.mcap").unlink()
    with pytest.raises(ReaderError):  # the reference refuses it too
        Reader(bag).open()
    rc = main(["info", str(bag)])
    cap = capsys.readouterr()
    lines = [x for x in cap.err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and "split_1.mcap" in lines[0]
    assert "Traceback" not in cap.err + cap.out


# -- folder names ------------------------------------------------------------------------------------
def _moved(tmp_path, name, storage):
    """A robot bag written in a plain folder, then moved to ``name`` (rosbags' own sqlite writer
    cannot write into some names; ``ros2 bag record -o NAME`` can: it opens a plain path)."""
    bag = rb.robot_bag(tmp_path / "plain", n=2, storage=storage)
    dst = tmp_path / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(bag, dst)
    return dst


@pytest.mark.parametrize("name", ["run #3", "what?", "50%20done"], ids=["hash", "question", "percent"])
def test_sqlite3_bag_in_a_folder_whose_name_holds_uri_characters_is_read_whole(name, tmp_path):
    """rosbag2 opens each .db3 with ``sqlite3_open_v2(path, READONLY)`` and no ``SQLITE_OPEN_URI``
    (sqlite_wrapper.cpp): ``#``, ``?`` and ``%`` are ordinary letters of a file name there, as in
    ``sqlite3.connect(path)``. Folders like ``run #3`` or ``test?`` are what people type."""
    bag = _moved(tmp_path, name, "SQLITE3")
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(str(db))  # a plain path, as rosbag2 opens it
    rows = sorted(con.execute("SELECT timestamp, data FROM messages").fetchall())
    con.close()
    with BagReader(bag) as r:
        got = sorted((s, d) for _, s, d in r.raw_messages())
    assert got == [(int(t), bytes(d)) for t, d in rows]


@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
@pytest.mark.parametrize(
    "name", ["with space/run 1", "ünïcødé/Fahrt_ß", "a%b"], ids=["space", "unicode", "lone%"]
)
def test_bag_in_a_folder_with_spaces_or_non_ascii_letters_reads_as_rosbags_reads_it(name, storage, tmp_path):
    """Spaces and non-ASCII letters in a bag's path (a user's home on a German or French system, a
    folder named by date and place) read message for message as rosbags reads them. (Guards the
    fix of the URI bug above: quoting a path must not break these.)"""
    bag = _moved(tmp_path, name, storage)
    ref, ref_counts, first, last = _rosbags(bag)
    msgs, counts, start, end, total = _ours(bag)
    assert msgs == ref and counts == ref_counts
    assert (start, end, total) == (first, last, len(ref))


# -- storage files metadata.yaml does not list ---------------------------------------------------------
def _with_stray_file(tmp_path, storage, monkeypatch):
    """A 3-frame bag whose folder also holds the 5-frame storage file of a bag recorded a day
    earlier (copied in by hand, or left from an earlier run), which its metadata.yaml does not list."""
    bag = rb.robot_bag(tmp_path / "run", n=3, storage=storage)
    with monkeypatch.context() as m:
        m.setattr(rb, "T0", rb.T0 - 86_400 * 10**9)
        other = rb.robot_bag(tmp_path / "yesterday", n=5, storage=storage)
    (f,) = [x for x in other.iterdir() if x.suffix in (".db3", ".mcap")]
    shutil.copy(f, bag / f"yesterday_0{f.suffix}")
    return bag, f


@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
def test_a_storage_file_not_listed_in_metadata_is_not_part_of_the_bag(
    storage, tmp_path, monkeypatch, caplog, own_tmpdir
):
    """rosbag2's reader opens the files ``relative_file_paths`` lists and no other
    (sequential_reader.cpp); rosbags too. The suite reads the listed files' messages (rosbags does
    the reading), but takes its counts and time span from every .db3/.mcap in the folder: ``info``
    shows the other bag's messages and a start a day early, ``replay`` starts its clock there, and
    a warning says that the (correct) metadata.yaml lies."""
    bag, _ = _with_stray_file(tmp_path, storage, monkeypatch)
    ref, ref_counts, first, last = _rosbags(bag)
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        msgs, counts, start, end, total = _ours(bag)
    assert msgs == ref  # the messages are the listed file's
    assert counts == ref_counts
    assert (start, end, total) == (first, last, len(ref))
    assert not [r for r in caplog.records if "disagrees" in r.getMessage()]


def test_a_cut_short_file_not_listed_in_metadata_does_not_refuse_the_bag(tmp_path, monkeypatch, own_tmpdir):
    """The same folder where the unlisted file is the first 200 bytes of another recording (a copy
    interrupted, a recorder killed at once): rosbag2 and rosbags never open it and read the bag;
    the suite tries to repair it and refuses the whole bag ("cut short before its first whole
    message"), naming a file that is not part of it."""
    bag, src = _with_stray_file(tmp_path, "MCAP", monkeypatch)
    (bag / f"yesterday_0{src.suffix}").write_bytes(src.read_bytes()[:200])
    ref, ref_counts, _, _ = _rosbags(bag)
    try:
        msgs, counts, _, _, _ = _ours(bag)
    except BagError as exc:
        pytest.fail(f"a valid bag refused for a file it does not list: {exc}")
    assert msgs == ref and counts == ref_counts
    assert list(own_tmpdir.iterdir()) == []


# -- old metadata: relative_file_paths as Dashing/Eloquent and absolute -o paths wrote them -----------
@pytest.mark.parametrize("form", ["folder_prefixed", "absolute"])
@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
def test_relative_file_paths_as_old_recorders_wrote_them_read_as_rosbags_reads_them(form, storage, tmp_path):
    """Metadata version 3 and older list ``<bag folder>/<bag folder>_0.db3``, which rosbag2 resolves
    below the bag folder's parent (resolve_relative_paths, ``version < 4``); a path that is absolute
    is used as it is. Both name the file in the bag folder; the suite reads the bag as rosbags
    does. (Guards a fix that takes the storage files from metadata.yaml: it must resolve these.)"""
    import yaml

    bag = rb.robot_bag(tmp_path / "robot_run", n=3, storage=storage)
    (f,) = [x for x in bag.iterdir() if x.suffix in (".db3", ".mcap")]
    p = bag / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    info = doc["rosbag2_bagfile_information"]
    if form == "folder_prefixed":
        info["version"] = 3
        for key in ("files", "custom_data", "ros_distro"):
            info.pop(key, None)
        for t in info["topics_with_message_count"]:
            t["topic_metadata"].pop("type_description_hash", None)
            qos = t["topic_metadata"].get("offered_qos_profiles")
            if isinstance(qos, list):  # (version 3 stored them as one YAML string)
                t["topic_metadata"]["offered_qos_profiles"] = yaml.safe_dump(qos)
        info["relative_file_paths"] = [f"{bag.name}/{f.name}"]
    else:
        info["relative_file_paths"] = [str(f.resolve())]
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    ref, ref_counts, first, last = _rosbags(bag)
    msgs, counts, start, end, total = _ours(bag)
    assert msgs == ref and counts == ref_counts
    assert (start, end, total) == (first, last, len(ref)) == (first, last, 3 * 3 + 5 + 1)


# -- a split, message-compressed bag given file by file, and played --------------------------------------
@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
def test_each_file_of_a_split_message_compressed_bag_given_alone_decodes_as_rosbags_reads_the_folder(
    storage, tmp_path
):
    """``gs-mapping info bag/bag_0.mcap`` (the path to a storage file, as ``ros2 bag info`` also
    takes it) of a bag recorded with ``--compression-mode message``: without metadata.yaml nothing
    says the rows are zstd frames. Each file's messages, decoded by the suite and serialised again
    with the standard typestore, are byte for byte what rosbags reads (and decompresses) through
    the folder, in the same order."""
    bag, _ = rec3._split(tmp_path, storage, "MESSAGE")
    ref, _, _, _ = _rosbags(bag)
    got = []
    for f in sorted(x for x in bag.iterdir() if x.suffix in (".db3", ".mcap")):
        with BagReader(f) as r:
            types = {t.name: t.type for t in r.topics}
            got += [(t, s, bytes(rb.TS.serialize_cdr(m, types[t]))) for t, s, m in r.messages()]
            assert r.bad_total == 0
    assert got == ref


def test_play_of_a_split_message_compressed_bag_plays_every_message(tmp_path, capsys):
    """``gs-mapping play`` of the split, message-compressed bag (the way to feed ``run`` nodes from
    a long recording): every message rosbags reads is published, none skipped as undecodable."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.cli import main

    bag, _ = rec3._split(tmp_path, "MCAP", "MESSAGE")
    ref, _, _, _ = _rosbags(bag)
    domain = 150 + (hash(str(tmp_path)) % 70)
    rc = main(["play", str(bag), "--wait-for-subscribers", "0", "--rate", "1000", "--domain-id", str(domain)])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"played {len(ref)} messages" in out and "undecodable" not in out
