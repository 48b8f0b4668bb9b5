"""Outside review of this session's fixes to issues 16, 17, 19, 20 and 21: classes of input the
team's own tests do not try.

- Recordings cut short (bag_repair): an MCAP cut at many byte offsets (chunked and unchunked), a
  power-lost file whose tail is zeros, a split recording whose last file alone is cut (with its
  metadata.yaml), an MCAP cut inside its summary (data section whole), two readers of one cut bag
  at once, a reader dropped without close(), a sqlite3 bag whose ``-wal`` is much larger than the
  ``.db3`` with little room in ``$TMPDIR``, a ``-wal`` bag on a read-only file system.
- ``play``'s QoS rule for a topic recorded from a reliable and a best-effort publisher, and for a
  bag without QoS metadata (rosbag2_transport's ``adapt_offer_to_recorded_offers``).
- SOG images as 16-bit PNGs (docs/format.md: "16-bit images refused").

References are outside the component: the ``mcap`` library's own stream reader and writer for what
a storage file holds, Python's ``sqlite3`` (which replays a ``-wal`` as rosbag2's reader does), the
whole bag read before it was cut, rosbag2's MCAP plugin (``readSummary(AllowFallbackScan)``: a file
whose summary is cut is scanned), rosbag2_transport's QoS rule, OpenCV's PNG encoder, the rule the
README / docs state. Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import gc
import io
import shutil
import sqlite3
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("mcap")

import test_hostile_robot_inputs as rb  # noqa: E402  (its rosbags-only bag builders)
import test_outside_recordings2 as rec2  # noqa: E402  (_rechunked, _summaryless_mcap, _killed_wal_bag)

from gs_mapping.bag import BagReader, _latched_qos  # noqa: E402
from gs_mapping.errors import BagError, MapError  # noqa: E402
from gs_mapping.runtime.replay import ReplayBus  # noqa: E402

SPLAT_FIXTURES = Path(__file__).parent / "data" / "splat_formats"


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch):
    """$TMPDIR of this test alone (where the repaired copies go), so what is left there is ours."""
    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def _read(bag):
    with BagReader(bag) as r:
        return r.message_count, [(t, s) for t, s, _ in r.messages()]


def _mcap_messages(f: Path) -> list[tuple[str, int]]:
    """(topic, log time) of every message the mcap library's linear scan finds in ``f``."""
    from mcap.records import Channel, Message
    from mcap.stream_reader import StreamReader

    topics, out = {}, []
    with f.open("rb") as fh:
        try:
            for r in StreamReader(fh).records:
                if isinstance(r, Channel):
                    topics[r.id] = r.topic
                elif isinstance(r, Message):
                    out.append((topics[r.channel_id], r.log_time))
        except Exception:  # noqa: BLE001 - a cut file ends the scan
            pass
    return out


def _records(data: bytes):
    """(opcode, start, end) of the top-level MCAP records up to and including DataEnd."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        op, n = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        out.append((op, pos, pos + 9 + n))
        pos += 9 + n
        if op == 0x0F:
            break
    return out


# -- MCAP cut at any byte: a prefix of the recording, or one line ----------------------------------


@pytest.mark.parametrize("layout", ["lz4_chunks", "unchunked"])
def test_mcap_cut_at_many_offsets_is_a_prefix_of_the_recording_or_one_line(layout, tmp_path, own_tmpdir):
    """``ros2 bag record`` killed at any moment: whatever is read is the whole recording's first
    messages in their order (never one the recording does not hold, never reordered), else one
    BagError line; never a traceback, and the repaired copy is gone after each read."""
    src = rb.robot_bag(tmp_path / "src", n=3, storage="MCAP")
    kw = {"use_chunking": False} if layout == "unchunked" else {}
    whole = tmp_path / "whole.mcap"
    rec2._rechunked(next(src.glob("*.mcap")), whole, **kw)
    _, expected = _read(whole)
    data = whole.read_bytes()
    data_end = next(s for op, s, _ in _records(data) if op == 0x0F)
    cut = tmp_path / "cut" / "rec.mcap"
    cut.parent.mkdir()
    rng = np.random.default_rng(31)
    offsets = sorted(set(rng.integers(0, data_end, 40).tolist()) | {0, 8, 9, data_end - 1, data_end})
    read_some = 0
    for n in offsets:
        cut.write_bytes(data[:n])
        try:
            _, got = _read(cut)
        except BagError as e:
            assert "\n" not in str(e) and str(cut) in str(e), (n, str(e))
        else:
            assert got == expected[: len(got)], n
            # nothing lost that a linear scan of the cut file finds
            assert len(got) == len(_mcap_messages(cut)), n
            read_some += bool(got)
        assert list(own_tmpdir.iterdir()) == [], n
    assert read_some > len(offsets) // 3  # most cuts keep something (the sweep did reach the data)


def test_power_lost_mcap_with_a_zero_filled_tail_reads_what_the_plain_cut_reads(tmp_path, own_tmpdir):
    """ext4 after a power loss: the file has its length but its last blocks are zeros. The zeros
    are not records: the same messages as the same file cut where the zeros begin."""
    src = rb.robot_bag(tmp_path / "src", n=6, storage="MCAP")
    expected = rec2._rechunked(next(src.glob("*.mcap")), tmp_path / "whole.mcap")
    data = (tmp_path / "whole.mcap").read_bytes()
    chunks = [(s, e) for op, s, e in _records(data) if op == 0x06]
    n = (chunks[-2][0] + chunks[-2][1]) // 2  # in the middle of a chunk
    d = tmp_path / "cut"
    d.mkdir()
    (d / "plain.mcap").write_bytes(data[:n])
    (d / "zeros.mcap").write_bytes(data[:n] + b"\0" * 65536)
    _, plain = _read(d / "plain.mcap")
    _, zeros = _read(d / "zeros.mcap")
    assert 0 < len(plain) < len(expected)
    assert zeros == plain == expected[: len(plain)]


# -- split recordings --------------------------------------------------------------------------


def _split_bag(tmp_path, n=6):
    """A two-file MCAP recording with its metadata.yaml (as rosbag2 writes it for --max-bag-size):
    the messages split in time order between bag_0.mcap and bag_1.mcap; (bag, all messages)."""
    import yaml
    from mcap.reader import make_reader
    from mcap.writer import Writer as McapWriter

    src = rb.robot_bag(tmp_path / "src", n=n, storage="MCAP")
    with next(src.glob("*.mcap")).open("rb") as f:
        r = make_reader(f)
        summary = r.get_summary()
        msgs = [(ch.id, ch.topic, m) for _, ch, m in r.iter_messages(log_time_order=True)]
    bag = tmp_path / "bag"
    bag.mkdir()
    half = len(msgs) // 2
    for k, part in enumerate([msgs[:half], msgs[half:]]):
        with (bag / f"bag_{k}.mcap").open("wb") as o:
            w = McapWriter(o, chunk_size=2048)
            w.start(profile="ros2", library="split-test")
            for s in summary.schemas.values():
                w.register_schema(s.name, s.encoding, s.data)
            for c in summary.channels.values():
                w.register_channel(c.topic, c.message_encoding, c.schema_id, c.metadata)
            for cid, _, m in part:
                w.add_message(cid, m.log_time, m.data, m.publish_time, m.sequence)
            w.finish()
    meta = yaml.safe_load((src / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    info["relative_file_paths"] = ["bag_0.mcap", "bag_1.mcap"]
    info["files"] = [
        dict(info["files"][0], path="bag_0.mcap", message_count=half),
        dict(info["files"][0], path="bag_1.mcap", message_count=len(msgs) - half),
    ]
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return bag, [(topic, m.log_time) for _, topic, m in msgs], half


def test_split_recording_with_only_its_last_file_cut_reads_every_whole_file_and_a_prefix(
    tmp_path, own_tmpdir
):
    """A split recording whose last file was being written when the recorder died (the metadata of
    the earlier split still on disk): the first file whole, the second up to its cut, in order,
    and the counts are those of the storage, not the metadata's."""
    bag, msgs, half = _split_bag(tmp_path)
    data = (bag / "bag_1.mcap").read_bytes()
    chunks = [(s, e) for op, s, e in _records(data) if op == 0x06]
    assert len(chunks) >= 3
    before = (bag / "bag_0.mcap").read_bytes()
    (bag / "bag_1.mcap").write_bytes(data[: (chunks[-1][0] + chunks[-1][1]) // 2])
    count, got = _read(bag)
    assert half < len(got) < len(msgs)
    assert got == msgs[: len(got)] and count == len(got)
    assert len(got) == half + len(_mcap_messages(bag / "bag_1.mcap"))
    assert (bag / "bag_0.mcap").read_bytes() == before
    assert list(own_tmpdir.iterdir()) == []


# -- a cut inside the summary -------------------------------------------------------------------


def test_mcap_cut_inside_its_summary_is_read_whole_as_rosbag2_reads_it(tmp_path, own_tmpdir):
    src = rb.robot_bag(tmp_path / "src", n=4, storage="MCAP")
    expected = rec2._rechunked(next(src.glob("*.mcap")), tmp_path / "whole.mcap")
    data = (tmp_path / "whole.mcap").read_bytes()
    data_end = next(e for op, _, e in _records(data) if op == 0x0F)
    cut = tmp_path / "cut" / "rec.mcap"
    cut.parent.mkdir()
    cut.write_bytes(data[: (data_end + len(data)) // 2])  # half of the summary written
    assert len(_mcap_messages(cut)) == len(expected)  # every message is on disk
    _, got = _read(cut)
    assert got == expected


# -- the repaired copy's life --------------------------------------------------------------------


def test_two_readers_of_one_cut_bag_at_once_each_read_it_whole(tmp_path, own_tmpdir):
    """Two commands on the same cut recording at once (``info`` while ``map`` runs): each has its own
    copy; both read every message; closing one leaves the other's copy; nothing left at the end."""
    f = rec2._summaryless_mcap(tmp_path)
    present = _mcap_messages(f)
    with BagReader(f) as a:
        with BagReader(f) as b:
            assert len(list(own_tmpdir.iterdir())) == 2
            got_b = [(t, s) for t, s, _ in b.messages()]
        got_a = [(t, s) for t, s, _ in a.messages()]  # after b closed: a's copy is still there
    assert sorted(s for _, s in got_a) == sorted(s for _, s in present)
    assert got_a == got_b
    assert list(own_tmpdir.iterdir()) == []


def test_a_reader_dropped_without_close_leaves_no_copy_in_tmpdir(tmp_path, own_tmpdir):
    f = rec2._summaryless_mcap(tmp_path)
    r = BagReader(f).open()
    assert sum(1 for _ in r.messages()) == len(_mcap_messages(f))
    del r
    gc.collect()
    assert list(own_tmpdir.iterdir()) == []


def _wal_bigger_than_db(tmp_path, mib=40):
    """A killed sqlite3 recording (rosbag2's `resilient` preset) early in its life: a 44 kB .db3 and
    ``mib`` MiB of image-sized rows still in its -wal (one cache flush of a camera recording)."""
    src = rb.robot_bag(tmp_path / "src", n=2)
    work = tmp_path / "work"
    work.mkdir()
    db = work / "rec.db3"
    shutil.copy(next(src.glob("*.db3")), db)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    tid, ts, data = con.execute("SELECT topic_id, timestamp, data FROM messages LIMIT 1").fetchone()
    blob = bytes(data) + b"\0" * (1 << 20)
    con.executemany(
        "INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
        [(tid, ts + i + 1, blob) for i in range(mib)],
    )
    con.commit()
    killed = tmp_path / "killed"
    killed.mkdir()
    for f in work.iterdir():  # copied while the writer holds the file: the log stays
        shutil.copy(f, killed / f.name)
    con.close()
    assert (killed / "rec.db3-wal").stat().st_size > 100 * (killed / "rec.db3").stat().st_size
    return killed


def test_no_room_for_a_large_wal_names_tmpdir_and_the_repair_in_place(tmp_path, monkeypatch):
    from hostile_fs import full_disk_dir

    bag = _wal_bigger_than_db(tmp_path)
    with full_disk_dir(tmp_path / "small", 72 << 20) as (small, kind):
        if kind != "tmpfs":
            pytest.skip("needs a real small file system (root: tmpfs)")
        monkeypatch.setattr(tempfile, "tempdir", str(small))
        with pytest.raises(BagError) as e:
            _read(bag)
        assert list(small.iterdir()) == []
    msg = str(e.value)
    assert "TMPDIR" in msg and "wal_checkpoint" in msg and "\n" not in msg


def test_a_wal_recording_on_a_read_only_file_system_is_read_whole(tmp_path, own_tmpdir):
    """A recording on a read-only mount (a robot's disk mounted ro, a USB stick): sqlite3 replays
    the -wal, which needs the -shm writable; the copy in $TMPDIR does; the files are untouched."""
    from hostile_fs import read_only_dir

    src = rec2._killed_wal_bag(tmp_path)
    con = sqlite3.connect(f"file:{src / 'rec.db3'}?mode=ro", uri=True)
    rows = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    con.close()
    seed = {f.name: f.read_bytes() for f in src.iterdir()}
    with read_only_dir(tmp_path / "ro", seed) as ro:
        count, got = _read(ro)
        assert {f.name: f.read_bytes() for f in ro.iterdir()} == seed
    assert count == len(got) == rows
    assert list(own_tmpdir.iterdir()) == []


# -- play's QoS -------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["MCAP", "SQLITE3"])
def test_play_qos_of_mixed_and_missing_recorded_offers_follows_rosbag2(storage, tmp_path):
    """rosbag2_transport (qos.cpp, adapt_offer_to_recorded_offers): a topic recorded from a reliable
    and a best-effort publisher is offered best effort (it then reaches both kinds of reader); one
    recorded without QoS metadata gets rclcpp's default, reliable and volatile."""
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import StoragePlugin, Writer

    reliable = _latched_qos(False)
    best_effort = reliable._replace(reliability=QosReliability.BEST_EFFORT)
    latched_be = best_effort._replace(durability=QosDurability.TRANSIENT_LOCAL, depth=1)
    string = rb.TS.types["std_msgs/msg/String"]
    w = Writer(tmp_path / "b", version=9, storage_plugin=getattr(StoragePlugin, storage))
    with w:
        offers = {
            "/mixed": [reliable, best_effort],
            "/reliable": [reliable],
            "/none": [],
            "/latched_mixed": [_latched_qos(True), latched_be],
        }
        for i, (name, qos) in enumerate(offers.items()):
            kw = {"offered_qos_profiles": qos} if qos else {}
            c = w.add_connection(name, "std_msgs/msg/String", typestore=rb.TS, **kw)
            w.write(c, 1000 + i, rb.TS.serialize_cdr(string(data=name), "std_msgs/msg/String"))
    with BagReader(tmp_path / "b") as r:
        got = {t.name: (t.best_effort, t.latched) for t in r.topics}
    assert got == {
        "/mixed": (True, False),
        "/reliable": (False, False),
        "/none": (False, False),
        "/latched_mixed": (True, True),  # rosbag2: transient local only where every offer is
    }


# -- SOG images: 16-bit PNG ------------------------------------------------------------------------


def test_sog_with_16_bit_png_images_is_refused_as_docs_say(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from PIL import Image

    from gs_mapping.splat_formats import load_splats

    with zipfile.ZipFile(SPLAT_FIXTURES / "scene.sog") as z:
        files = {name: z.read(name) for name in z.namelist()}
    meta = files.pop("meta.json").decode()
    out = {}
    for name, data in files.items():
        rgba = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
        # what cv2.imwrite of the quantised values as uint16 writes (no ×257 scaling)
        ok, png = cv2.imencode(".png", rgba[..., [2, 1, 0, 3]].astype(np.uint16))
        assert ok and png.tobytes()[24] == 16  # IHDR bit depth: 16
        new = name.rsplit(".", 1)[0] + ".png"
        out[new] = png.tobytes()
        meta = meta.replace(f'"{name}"', f'"{new}"')
    out["meta.json"] = meta.encode()
    path = tmp_path / "sixteen.sog"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in out.items():
            z.writestr(name, data)
    with pytest.raises(MapError, match=r"16|8-bit"):
        load_splats(path)


# -- fleet store: a store the server wrote itself ---------------------------------------------------


def test_a_store_holding_a_vehicle_seen_only_through_a_buffered_delta_restarts(tmp_path):
    """docs/fleet.md: the store survives restarts; a namespace's binding is stored with its first
    container taken. Vehicle 2's first container reaches the server as a delta on a snapshot it
    never had (the server started late): buffered, not stored. Vehicle 1's snapshot is then
    committed. A restart must come back with vehicle 1's map, whatever vehicle 2 left."""
    import test_outside_fleet as of

    from gs_map_share.snapshot import decode_snapshot

    store = tmp_path / "fleet.sqlite3"
    server = of._server(ReplayBus(), store, global_period_s=0.0)
    q1, q2 = of._vmap(20, seed=1), of._vmap(30, seed=2, origin=(50.0, 0.0, 0.0))
    assert server.ingest(of._delta(q2, q2, 2, 11), server.bindings["vehicle2"]) == "buffered"
    snap1 = of._snap(q1, 1, 1)
    assert server.ingest(snap1, server.bindings["vehicle1"]) == "snapshot"
    server.close()
    again = of._server(ReplayBus(), store, global_period_s=0.0)  # the restart
    try:
        assert sorted(again.merge.vehicles) == [1]
        # vehicle 1's map is the snapshot it sent, as the codec decodes it
        assert again.merge.vehicles[1].state.equals(decode_snapshot(snap1)[1])
    finally:
        again.close()


# -- hd-train --overwrite interrupted ---------------------------------------------------------------


def test_hd_train_overwrite_interrupted_keeps_the_old_model(tmp_path):
    """Ctrl-C during `hd-train --overwrite` over an earlier run (its four files stand in for one:
    --overwrite reads none of them): the earlier run's files are all still there, unchanged."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    out = tmp_path / "run"
    out.mkdir()
    old = {n: f"earlier run's {n}".encode() for n in ("model.pt", "last.pt", "metrics.jsonl", "config.json")}
    for n, data in old.items():
        (out / n).write_bytes(data)
    argv = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    argv += ["--threads", "1", "--no-progress", "--steps", "100000", "--overwrite"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:  # the model is built and training starts: its INFO line
            line = p.stderr.readline()
            if not line or "training region" in line:
                break
        time.sleep(0.2)  # training
        p.send_signal(signal.SIGINT)  # Ctrl-C
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert {n: (out / n).read_bytes() if (out / n).exists() else None for n in old} == old
