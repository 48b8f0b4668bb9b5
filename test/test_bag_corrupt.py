"""Broken bags raise BagError naming the file — never a raw exception from rosbags, mcap or sqlite."""

from __future__ import annotations

import random
import shutil
import sqlite3

import pytest

from gs_mapping.bag import BagReader, BagWriter, default_typestore
from gs_mapping.errors import BagError


def _read_all(path) -> int:
    with BagReader(path, strict=True) as bag:
        return sum(1 for _ in bag.messages())


def _copy_with(kitchen_bag, tmp_path, data: bytes, name="bag"):
    """A copy of the kitchen bag directory whose MCAP file holds ``data``."""
    d = tmp_path / name
    d.mkdir()
    shutil.copy(kitchen_bag / "metadata.yaml", d / "metadata.yaml")
    mcap = next(kitchen_bag.glob("*.mcap"))
    (d / mcap.name).write_bytes(data)
    return d


@pytest.fixture(scope="module")
def kitchen_bytes(kitchen_bag) -> bytes:
    return next(kitchen_bag.glob("*.mcap")).read_bytes()


def test_missing_path(tmp_path):
    with pytest.raises(BagError, match=f"{tmp_path / 'nope'}: no such bag"):
        BagReader(tmp_path / "nope").open()


def test_not_a_bag(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(BagError, match="notes.txt: not a bag"):
        BagReader(f).open()
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        BagReader(tmp_path).open()


# 0, 8, 100 bytes: nothing whole to read (cuts that leave messages: the tests below)
@pytest.mark.parametrize("keep", [0, 8, 100])
def test_truncated_mcap(kitchen_bag, kitchen_bytes, tmp_path, keep):
    n = len(kitchen_bytes)
    cut = int(n * keep) if isinstance(keep, float) else (keep if keep >= 0 else n + keep)
    d = _copy_with(kitchen_bag, tmp_path, kitchen_bytes[:cut])
    with pytest.raises(BagError) as err:
        _read_all(d)
    assert str(d) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("keep", [1 / 3, 0.5, 0.9])
def test_mcap_cut_inside_its_data_is_read_up_to_the_cut(kitchen_bag, kitchen_bytes, tmp_path, keep, caplog):
    """A recording cut short (ros2 bag record killed): the messages of its whole records are read, a
    prefix of the whole bag's, and the cut is named (rosbag2's MCAP plugin reads it by scanning)."""
    with BagReader(kitchen_bag) as whole:
        expected = [(t, s) for t, s, _ in whole.messages()]
    f = tmp_path / "cut.mcap"
    f.write_bytes(kitchen_bytes[: int(len(kitchen_bytes) * keep)])
    caplog.set_level("WARNING")
    with BagReader(f, strict=True) as bag:
        got = [(t, s) for t, s, _ in bag.messages()]
    assert 0 < len(got) < len(expected) and got == expected[: len(got)]
    assert any("cut.mcap: ends without its summary" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("keep", [-4096, -1])
def test_mcap_cut_inside_its_summary_is_read_whole(kitchen_bag, kitchen_bytes, tmp_path, keep, caplog):
    """Killed while close() wrote the summary: the data section is whole, so every message is read
    (by scanning), the same as the intact bag's, and the damage is named."""
    with BagReader(kitchen_bag) as whole:
        expected = [(t, s) for t, s, _ in whole.messages()]
    d = _copy_with(kitchen_bag, tmp_path, kitchen_bytes[:keep])
    caplog.set_level("WARNING")
    with BagReader(d, strict=True) as bag:
        assert [(t, s) for t, s, _ in bag.messages()] == expected
    assert any("ends without its summary" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("n", [0, 3])
def test_mcap_without_statistics_read_whole_and_cut(tmp_path, monkeypatch, n, chunked):
    """The ``mcap`` writer without its optional Statistics record (and without chunks: rosbag2's
    fastwrite layout): whole, its n messages are read (none: its topic at count 0, not 'cut
    short'); cut before its first message, it is named as cut short."""
    import tempfile

    from mcap.writer import Writer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # (a repair's scratch stays in tmp_path)
    path = tmp_path / "w.mcap"
    with path.open("wb") as f:
        w = Writer(f, use_statistics=False, use_chunking=chunked)
        w.start(profile="ros2", library="test")
        sid = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        cid = w.register_channel("/chatter", "cdr", sid)
        head = f.tell()  # (unchunked: the Header, Schema and Channel records end here)
        for i in range(n):
            w.add_message(
                cid, log_time=i + 1, data=b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", publish_time=i + 1
            )
        w.finish()
    with BagReader(path, strict=True) as bag:
        assert [(t.name, t.count) for t in bag.topics] == [("/chatter", n)]
        assert [m.data for _, _, m in bag.messages()] == ["a"] * n
    if not chunked:
        cut = tmp_path / "cut.mcap"
        cut.write_bytes(path.read_bytes()[: head + 4])
        with pytest.raises(BagError, match="cut short before its first whole message"):
            with BagReader(cut):
                pass


@pytest.mark.parametrize("where", ["magic", "header", "footer"])
def test_bit_flip_in_structure_is_detected(kitchen_bag, kitchen_bytes, tmp_path, where):
    """Flips in the file's framing (magic, the header record, the summary CRC in a whole footer)
    must be reported."""
    n = len(kitchen_bytes)
    pos = {"magic": 0, "header": 9, "footer": n - 9}[where]
    data = bytearray(kitchen_bytes)
    data[pos] ^= 0x40
    d = _copy_with(kitchen_bag, tmp_path, bytes(data))
    with pytest.raises(BagError, match=str(d)):
        _read_all(d)


def test_a_footer_record_that_no_longer_frames_is_read_as_a_cut_recording(
    kitchen_bag, kitchen_bytes, tmp_path, caplog
):
    """A flip in the footer record's length: the file no longer ends in a footer, as a recording
    cut while it wrote its summary does not; its data section is whole and verified (chunk and
    data-section CRCs), so every message the intact bag holds is read, and the cut is named."""
    with BagReader(kitchen_bag) as whole:
        expected = [(t, s) for t, s, _ in whole.messages()]
    n = len(kitchen_bytes)
    data = bytearray(kitchen_bytes)
    data[n - 30] ^= 0x40
    d = _copy_with(kitchen_bag, tmp_path, bytes(data))
    caplog.set_level("WARNING")
    with BagReader(d, strict=True) as bag:
        assert [(t, s) for t, s, _ in bag.messages()] == expected
    assert any("ends without its summary" in r.getMessage() for r in caplog.records)


def test_random_bit_flips_never_escape_as_raw_exceptions(kitchen_bag, kitchen_bytes, tmp_path):
    """A flip anywhere either reads (payload bytes carry no checksum) or raises BagError."""
    rng = random.Random(1234)
    n = len(kitchen_bytes)
    mcap_name = next(kitchen_bag.glob("*.mcap")).name
    d = _copy_with(kitchen_bag, tmp_path, kitchen_bytes)
    outcomes = {"read": 0, "error": 0}
    # weight towards the framing at both ends, where flips change structure rather than pixels
    positions = (
        [rng.randrange(0, 4096) for _ in range(20)]
        + [rng.randrange(n - 4096, n) for _ in range(20)]
        + [rng.randrange(n) for _ in range(10)]
    )
    for pos in positions:
        data = bytearray(kitchen_bytes)
        data[pos] ^= 1 << rng.randrange(8)
        (d / mcap_name).write_bytes(bytes(data))
        try:
            _read_all(d)
            outcomes["read"] += 1
        except BagError as exc:
            assert str(d) in str(exc), exc
            outcomes["error"] += 1
    assert outcomes["error"] > 0  # the structural flips were caught


def test_corrupt_cdr_payload_names_topic_and_record(kitchen_bag, kitchen_bytes, tmp_path):
    """Damage inside one message: the error names the file, topic and record."""
    # The first /tf_static record holds the frame name; its CDR string length precedes it.
    key = b"camera_color_optical_frame"
    pos = kitchen_bytes.index(key) - 4  # uint32 length of child_frame_id
    data = bytearray(kitchen_bytes)
    data[pos : pos + 4] = (10_000_000).to_bytes(4, "little")
    d = _copy_with(kitchen_bag, tmp_path, bytes(data))
    with pytest.raises(BagError, match=r"topic /tf_static: message 0 \(stamp \d+ ns\): cannot decode"):
        _read_all(d)


def test_garbage_metadata(kitchen_bag, kitchen_bytes, tmp_path):
    d = _copy_with(kitchen_bag, tmp_path, kitchen_bytes)
    (d / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    with pytest.raises(BagError, match=str(d)):
        _read_all(d)
    (d / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 8\n")
    with pytest.raises(BagError, match=str(d)):
        _read_all(d)


def _sqlite_bag(path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = default_typestore()
    String = ts.types["std_msgs/msg/String"]
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        for i in range(50):
            w.write(c, 100 + i, ts.serialize_cdr(String(data=f"message {i}" * 20), "std_msgs/msg/String"))
    return next(path.glob("*.db3"))


@pytest.mark.parametrize("damage", ["truncate", "zero_header", "garbage"])
def test_corrupt_sqlite(tmp_path, damage):
    path = tmp_path / "sq"
    db3 = _sqlite_bag(path)
    data = db3.read_bytes()
    if damage == "truncate":
        db3.write_bytes(data[: len(data) // 2])
    elif damage == "zero_header":
        db3.write_bytes(b"\x00" * 100 + data[100:])
    else:
        db3.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(len(data))))
    with pytest.raises(BagError, match="sq"):
        _read_all(path)


def test_corrupt_sqlite_row(tmp_path):
    """A row whose CDR bytes are garbage: error names the topic and record."""
    path = tmp_path / "sq"
    db3 = _sqlite_bag(path)
    con = sqlite3.connect(db3)
    con.execute("UPDATE messages SET data = ? WHERE timestamp = 107", (b"\x00\x01\x00\x00\xff\xff\xff\x7f",))
    con.commit()
    con.close()
    with pytest.raises(BagError, match=r"topic /chatter: message 7 \(stamp 107 ns\)"):
        _read_all(path)


def test_writer_into_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BagError, match="cannot create bag"):
        BagWriter(blocker / "sub" / "bag").open()
