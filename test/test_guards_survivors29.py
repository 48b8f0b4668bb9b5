"""Guards for behaviours a mutation-testing pass over this session's own changes found unguarded
(29th round):

- recordings cut short (bag_repair, bag.py): what the repaired copy's warning says was left out
  (a cut summary, a cut at a record boundary, the bytes of a cut chunk), log times kept apart from
  publish times, a flipped bit in a scanned chunk never a different message, an empty ``-wal``
  read in place, a copy removed when opening it fails, a metadata.yaml type hash or message count
  unlike the storage's, an empty directory not sent to ``ros2 bag reindex``;
- the DDS runtime's incompatible-QoS warning for a peer met later (once, not never, not per poll);
- Python logging under ``ros2 run``: each level at its rcutils severity, the loggers restored;
- hd_map_node: unmatched images counted once, a camera silent after half a second;
- ``map`` saying an unusable depth once; the fleet store's damaged container in one line;
- SOG: a palette PNG image, a non-zip ``.sog``'s file closed;
- gsmap_hd: the region five of six cameras are judged on, a region asked for by name; hd-train
  ``--resume --overwrite``, and ``--overwrite`` runs that checkpoint before logging or fail.

Each test drives the real component and compares it with an independent reference: the MCAP record
framing walked by hand, rosbag2's and rcutils' conventions, Python's ResourceWarning rule, the rule a
docstring or the docs state, a hand-built input with a hand-computed answer."""

from __future__ import annotations

import logging
import sqlite3
import struct
import tempfile

import pytest

# -- recordings cut short: what the warning says was lost ----------------------------------------


def _bag_modules():
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("mcap")
    import test_hostile_robot_inputs as rb
    import test_outside_recordings2 as rec2

    return rb, rec2


def _records(data: bytes):
    """(opcode, start, end) of the top-level MCAP records, by the record framing of the MCAP spec
    (opcode byte, u64 length, body), up to and including DataEnd (0x0F)."""
    out, pos = [], 8
    while pos + 9 <= len(data):
        op, n = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        out.append((op, pos, pos + 9 + n))
        pos += 9 + n
        if op == 0x0F:
            break
    return out


@pytest.fixture
def whole_mcap(tmp_path, monkeypatch):
    """A chunked MCAP recording (several 4 kB chunks), its bytes, the (topic, log time) of its
    messages in order, and a private $TMPDIR for the repaired copies."""
    rb, rec2 = _bag_modules()
    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    src = rb.robot_bag(tmp_path / "src", n=6, storage="MCAP")
    expected = rec2._rechunked(next(src.glob("*.mcap")), tmp_path / "whole.mcap")
    return (tmp_path / "whole.mcap").read_bytes(), expected


def _read_cut(tmp_path, data: bytes, caplog):
    from gs_mapping.bag import BagReader

    cut = tmp_path / "cut" / "rec.mcap"
    cut.parent.mkdir()
    cut.write_bytes(data)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        with BagReader(cut) as r:
            got = [(t, s) for t, s, _ in r.messages()]
    said = [r.getMessage() for r in caplog.records if "read by scanning" in r.getMessage()]
    assert len(said) == 1, said
    return got, said[0]


def test_a_cut_inside_the_summary_is_not_reported_as_a_cut_record(tmp_path, whole_mcap, caplog):
    """bag_repair: 'a cut summary loses no message': the data section ends with its DataEnd record,
    so the warning says every message was read by scanning and names no bytes of a cut record."""
    data, expected = whole_mcap
    data_end = next(e for op, _, e in _records(data) if op == 0x0F)
    got, said = _read_cut(tmp_path, data[: (data_end + len(data)) // 2], caplog)
    assert got == expected
    assert f"{len(expected)} messages read by scanning" in said
    assert "cut record" not in said, said


def test_a_cut_at_a_record_boundary_leaves_no_bytes_of_a_cut_record(tmp_path, whole_mcap, caplog):
    """Power lost right after a whole chunk was written: nothing of a record is left out, so the
    warning names no cut bytes; the messages are those of the whole chunks (a prefix)."""
    data, expected = whole_mcap
    chunks = [(s, e) for op, s, e in _records(data) if op == 0x06]
    assert len(chunks) >= 3
    # the end of the second-last chunk's message index records: the next record is the last chunk
    last_start = chunks[-1][0]
    got, said = _read_cut(tmp_path, data[:last_start], caplog)
    assert 0 < len(got) < len(expected) and got == expected[: len(got)]
    assert "cut record" not in said, said


def test_a_cut_inside_a_chunk_reports_the_bytes_of_that_chunk_it_holds(tmp_path, whole_mcap, caplog):
    """The warning's byte count is the part of the cut record on disk: the file's size less where
    the cut chunk starts (the record framing walked by hand)."""
    data, expected = whole_mcap
    last_start, last_end = [(s, e) for op, s, e in _records(data) if op == 0x06][-1]
    size = (last_start + last_end) // 2
    got, said = _read_cut(tmp_path, data[:size], caplog)
    assert got == expected[: len(got)]
    assert f", {size - last_start} bytes of a cut record left out" in said, said


def test_an_empty_write_ahead_log_is_read_in_place(tmp_path, monkeypatch, caplog):
    """bag_repair._wal: a ``-wal`` is replayed 'where it holds anything'; an empty one (left by a
    clean close in WAL mode) holds no row, so the bag is read in place: no copy, no warning."""
    rb, _ = _bag_modules()
    from gs_mapping.bag import BagReader

    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    bag = rb.robot_bag(tmp_path / "b", n=3)
    db = next(bag.glob("*.db3"))
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    (bag / (db.name + "-wal")).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        with BagReader(bag) as r:
            assert list(where.iterdir()) == []  # no repaired copy
            assert sum(1 for _ in r.messages()) == rows
    assert not any("write-ahead log" in x.getMessage() for x in caplog.records)


def _rewritten(tmp_path, publish_shift_ns=0, compression=None):
    """The robot bag's MCAP rewritten by the mcap library's writer in 4 kB chunks, each message's
    publish time ``publish_shift_ns`` before its log time (a driver stamping at send, as Jazzy's
    recorder stores it); (its bytes, [(topic, log time, data)] in order)."""
    rb, _ = _bag_modules()
    from mcap.reader import make_reader
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    src = next(rb.robot_bag(tmp_path / "src", n=6, storage="MCAP").glob("*.mcap"))
    out = tmp_path / "whole.mcap"
    with src.open("rb") as inp, out.open("wb") as o:
        r = make_reader(inp)
        summary = r.get_summary()
        kw = {} if compression is None else {"compression": compression}
        if compression == "none":
            kw = {"compression": CompressionType.NONE}
        w = McapWriter(o, chunk_size=4096, **kw)
        w.start(profile="ros2", library="mcap-test")
        for s in summary.schemas.values():
            w.register_schema(s.name, s.encoding, s.data)
        for c in summary.channels.values():
            w.register_channel(c.topic, c.message_encoding, c.schema_id, c.metadata)
        want = []
        for _, ch, m in r.iter_messages(log_time_order=True):
            w.add_message(ch.id, m.log_time, m.data, m.log_time - publish_shift_ns, m.sequence)
            want.append((ch.topic, m.log_time, bytes(m.data)))
        w.finish()
    return out.read_bytes(), want


def test_a_repaired_recording_keeps_each_messages_log_time_not_its_publish_time(tmp_path, caplog):
    """rosbag2 stamps a message with its log (receive) time; the publish time is the sender's. The
    copy rebuilt from a scan keeps each in its place: the messages read back carry the log times
    the file was written with (7 ms after the publish times here)."""
    data, want = _rewritten(tmp_path, publish_shift_ns=7_000_000)
    data_end = next(e for op, _, e in _records(data) if op == 0x0F)
    got, _ = _read_cut(tmp_path, data[:data_end], caplog)  # no summary, no footer: scanned
    assert got == [(t, s) for t, s, _ in want]


def test_a_flipped_bit_in_a_cut_recordings_chunk_is_never_a_different_message(tmp_path, caplog):
    """bag.py: 'a flipped bit in a bag is an error, never a silently different message'. A cut
    recording (no summary) whose last uncompressed chunk has one payload byte flipped: the chunk's
    CRC no longer matches, so its messages are not delivered; every message read is byte for byte
    one the recording was written with."""
    from mcap.writer import CompressionType

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    data, want = _rewritten(tmp_path, compression=CompressionType.NONE)
    s, e = [(s, e) for op, s, e in _records(data) if op == 0x06][-1]
    data_end = next(e for op, _, e in _records(data) if op == 0x0F)
    payload = want[-1][2]
    at = data.rfind(payload)
    assert len(payload) > 8 and s < at and at + len(payload) <= e  # the last message, in the last chunk
    damaged = bytearray(data[:data_end])
    damaged[at + len(payload) // 2] ^= 0x01
    cut = tmp_path / "cut" / "rec.mcap"
    cut.parent.mkdir()
    cut.write_bytes(bytes(damaged))
    try:
        with BagReader(cut) as r:
            got = list(r.raw_messages())
    except BagError:  # refusing the damaged recording in one line is right too
        return
    assert got and set(got) <= set(want)


def test_an_empty_directory_is_not_sent_to_ros2_bag_reindex(tmp_path):
    """`ros2 bag reindex DIR` rebuilds metadata.yaml from the storage files in DIR: for a directory
    holding none there is nothing to reindex, so the error does not send the user there."""
    pytest.importorskip("rosbags.rosbag2")
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError) as e:
        BagReader(tmp_path / "empty").open()
    assert "0 .mcap/.db3 files" in str(e.value) and "reindex" not in str(e.value)


def test_metadata_type_hash_unlike_the_storages_loses_no_message(tmp_path):
    """BagReader._take_storage_qos: a metadata.yaml whose type hash of a topic differs from the
    storage's (one copied from another recording) would pair with no channel; the storage's is
    taken. Every message the storage holds on that topic (the mcap library's count) is read."""
    rb, _ = _bag_modules()
    import yaml

    from gs_mapping.bag import BagReader

    bag = rb.robot_bag(tmp_path / "b", n=4)  # sqlite3: its topics table holds each type hash
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    stored = con.execute(
        "SELECT COUNT(*) FROM messages JOIN topics ON topics.id = topic_id WHERE name = ?",
        ("/camera/color/image_raw",),
    ).fetchone()[0]
    assert con.execute("SELECT type_description_hash FROM topics").fetchone()[0].startswith("RIHS01_")
    con.close()
    p = bag / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    for t in doc["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/camera/color/image_raw":
            t["topic_metadata"]["type_description_hash"] = "RIHS01_" + "ab" * 32
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    with BagReader(bag) as r:
        got = sum(1 for t, *_ in r.raw_messages() if t == "/camera/color/image_raw")
    assert got == stored == 4


def test_a_lying_metadata_count_keeps_the_recorded_best_effort_offer(tmp_path):
    """metadata.yaml whose message count is wrong: the storage's count is taken, and the topic is
    still the best-effort one it was recorded as (``play`` offers it so, as rosbag2_transport's
    adapt_offer_to_recorded_offers does)."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("mcap")
    import test_hostile_robot_inputs as rb
    import yaml
    from rosbags.interfaces import QosReliability
    from rosbags.rosbag2 import StoragePlugin, Writer

    from gs_mapping.bag import BagReader, _latched_qos

    best_effort = _latched_qos(False)._replace(reliability=QosReliability.BEST_EFFORT)
    string = rb.TS.types["std_msgs/msg/String"]
    with Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection(
            "/be", "std_msgs/msg/String", typestore=rb.TS, offered_qos_profiles=[best_effort]
        )
        for i in range(3):
            w.write(c, 1000 + i, rb.TS.serialize_cdr(string(data=str(i)), "std_msgs/msg/String"))
    p = tmp_path / "b" / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    doc["rosbag2_bagfile_information"]["topics_with_message_count"][0]["message_count"] = 5
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    with BagReader(tmp_path / "b") as r:
        t = r.topic("/be")
        assert (t.count, t.best_effort, t.latched) == (3, True, False)


def test_a_repaired_copy_is_removed_when_opening_it_fails(tmp_path, monkeypatch):
    """bag_repair: the copy is 'removed when the bag is closed'; a bag that fails to open after its
    copy was made (a cut MCAP beside a metadata.yaml rosbags refuses) is closed by that error: the
    copy is gone while the error is still being handled, not only once the reader is collected."""
    rb, rec2 = _bag_modules()
    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    f = rec2._summaryless_mcap(tmp_path)
    (f.parent / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 999\n")
    with pytest.raises(BagError) as e:  # (e keeps the reader's frame, hence the reader, alive)
        BagReader(f.parent).open()
    assert str(f.parent) in str(e.value)
    assert list(where.iterdir()) == []


# -- the DDS runtime's incompatible-QoS warning --------------------------------------------------


def test_an_incompatible_publisher_met_later_is_said_once(caplog):
    """rclpy's default QoS event callback fires once for each incompatible peer discovered (the
    status's count change), at any time in the node's life: a best-effort writer that appears after
    the node has spun a while is named once, not never and not on every poll."""
    pytest.importorskip("cyclonedds")
    import time

    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic
    from test_outside_ros2_qos import _string_type

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    domain = 97  # not used by the other DDS tests
    ctx = DdsContext("s29_rx", domain_id=domain)
    got, control = [], []
    ctx.create_subscription("/gs_s29/be", "std_msgs/msg/String", QoS(reliable=True, depth=10), got.append)
    ctx.create_subscription("/gs_s29/be", "std_msgs/msg/String", QoS(reliable=False, depth=5), control.append)
    dp = writer = None
    try:
        end = time.monotonic() + 0.8  # the node runs a while before the writer appears
        while time.monotonic() < end:
            ctx.spin_once(0.05)
        dp = DomainParticipant(domain)
        xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
        writer = DataWriter(
            dp, Topic(dp, "rt/gs_s29/be", _string_type()), qos=Qos(Policy.Reliability.BestEffort, xcdr1)
        )
        with caplog.at_level(logging.WARNING):
            end = time.monotonic() + 2.5  # five polls and more
            while time.monotonic() < end:
                writer.write(_string_type()(data="x"))
                ctx.spin_once(0.05)
        assert control and not got  # discovered, delivering, and not matched by the reliable reader
        said = [r.getMessage() for r in caplog.records if "/gs_s29/be" in r.getMessage()]
        assert len(said) == 1 and "incompatible" in said[0].lower(), said
    finally:
        ctx.close()
        del writer, dp


# -- Python logging under `ros2 run` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ros():
    """rclpy's real Python layer over the test stand-in of its C extension (see rclpy_standin)."""
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


def test_each_python_level_reaches_the_node_logger_at_its_rcutils_severity(ros):
    """rcutils' severities are Python's numbers (DEBUG 10, INFO 20, WARN 30, ERROR 40): a record
    logged at ERROR is an error line of the node (not a warning), one at WARNING a warning."""
    import rclpy_standin
    from rclpy.logging import LoggingSeverity

    from gs_mapping.runtime.rclpy_runtime import python_logging_to

    node_logger = ros.logging.get_logger("s29_node")
    node_logger.set_level(LoggingSeverity.DEBUG)
    first = len(rclpy_standin.LOG)
    with python_logging_to(node_logger):
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            logging.getLogger("gs_map_share.s29").log(level, f"probe s29 {level}")
    said = [(sev, name, m) for sev, name, m in rclpy_standin.LOG[first:] if "probe s29" in m]
    assert [(sev, name) for sev, name, _ in said] == [
        (10, "s29_node"),
        (20, "s29_node"),
        (30, "s29_node"),
        (40, "s29_node"),
    ]
    assert all(m == f"gs_map_share.s29: probe s29 {sev}" for sev, _, m in said)


def test_after_the_node_our_loggers_are_as_they_were(ros):
    """python_logging_to: 'afterwards, as they were': each package logger's level, propagation and
    handlers as before the node ran."""
    from gs_mapping.runtime.rclpy_runtime import python_logging_to

    names = ("gs_mapping", "gs_map_share", "gsmap_hd")
    saved = [(logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names]
    try:
        for n, lv in zip(names, (logging.NOTSET, logging.WARNING, logging.DEBUG), strict=True):
            logging.getLogger(n).setLevel(lv)
        before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in map(logging.getLogger, names)]
        with python_logging_to(ros.logging.get_logger("s29_node2")):
            assert all(not logging.getLogger(n).propagate for n in names)
        after = [(lg.level, lg.propagate, list(lg.handlers)) for lg in map(logging.getLogger, names)]
        assert after == before
    finally:
        for n, (lv, prop) in zip(names, saved, strict=True):
            logging.getLogger(n).setLevel(lv)
            logging.getLogger(n).propagate = prop


# -- hd_map_node: images the synchroniser could not group ------------------------------------------


def _hd_node(cams):
    pytest.importorskip("torch")
    from gs_mapping.nodes.hd_map_node import HDMapNode
    from gs_mapping.runtime.replay import ReplayBus

    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].camera_topics = cams
    bus = ReplayBus()
    return HDMapNode(bus.context("hd_map_node"), cfg), bus


def _image(stamp_ns: int):
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time, Header, Image = (
        ts.types[n] for n in ("builtin_interfaces/msg/Time", "std_msgs/msg/Header", "sensor_msgs/msg/Image")
    )
    import numpy as np

    head = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam")
    return Image(
        header=head, height=1, width=1, encoding="rgb8", is_bigendian=0, step=3, data=np.zeros(3, np.uint8)
    )


def test_each_image_left_unmatched_is_counted_once():
    """message_filters' ApproximateTime policy keeps queue_size (5) messages a camera; with the
    other camera silent, each image beyond the fifth pushes the oldest out unmatched: eight images
    on one camera are three dropped, counted once each in /diagnostics."""
    pytest.importorskip("rosbags.typesys")
    node, _ = _hd_node(["/cam_a/image_raw", "/cam_b/image_raw"])
    for i in range(8):
        node.on_image("/cam_a/image_raw", _image(1_000_000_000 + i * 100_000_000))
    assert node.diag.dropped["images_unmatched"] == 3


def test_a_camera_is_silent_after_half_a_second_not_before():
    """HDMapNode._silent_cameras: a camera is silent once it has sent nothing for 'over half a second
    and five of their periods while another camera still arrives'. Two 100 Hz cameras (five periods:
    50 ms, so half a second rules); one stops: 0.3 s later it is not silent yet, 0.6 s later it is,
    for the 0.6 s measured on the ROS clock."""
    pytest.importorskip("rosbags.typesys")
    node, bus = _hd_node(["/cam_a/image_raw", "/cam_b/image_raw"])
    t0, step = 1_000_000_000, 10_000_000
    for i in range(50):  # both cameras, 0.5 s at 100 Hz
        for cam in ("/cam_a/image_raw", "/cam_b/image_raw"):
            bus.inject(cam, _image(t0 + i * step), t0 + i * step)
    last_b = t0 + 49 * step
    for i in range(50, 110):  # camera a alone, 0.6 s more
        bus.inject("/cam_a/image_raw", _image(t0 + i * step), t0 + i * step)
        gap = (t0 + i * step - last_b) / 1e9
        silent = node._silent_cameras()
        if gap <= 0.3 + 1e-9:
            assert silent == [], (gap, silent)
    assert [t for t, _ in silent] == ["/cam_b/image_raw"]
    assert silent[0][1] == pytest.approx(0.6)


# -- map: a camera whose depth is unusable on every frame -------------------------------------------


def test_map_says_an_unusable_depth_once_however_many_frames_carry_it(tmp_path, caplog):
    """mapping.run: frames skipped for their depth are 'counted' and said once: a recording whose
    every depth image is in millimetres (32FC1 is metres, REP 118) gives one warning line for its
    six frames, naming the first frame's stamp."""
    pytest.importorskip("torch")
    rb, _ = _bag_modules()
    import numpy as np
    from fleet_drives import tiny_config

    from gs_mapping.errors import GsMappingError
    from gs_mapping.mapping.run import map_bag

    def mm_float(ns, fid, d):
        return rb._image(ns, fid, (d * 1000).astype(np.float32), "32FC1")

    bag = rb.robot_bag(tmp_path / "b", n=6, depth=mm_float)
    cfg = tiny_config(1)
    cfg.topics.color = "/camera/color/image_raw"
    cfg.topics.depth = "/camera/aligned_depth_to_color/image_raw"
    cfg.topics.camera_info = "/camera/color/camera_info"
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        try:
            map_bag(bag, tmp_path / "out", cfg, device="cpu", progress=False, write_pngs=False)
        except GsMappingError:
            pass  # (nothing to map: said in one line too)
    lines = [r.getMessage() for r in caplog.records if "depth unusable" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"frame at {rb.T0} ns: depth unusable")


# -- the fleet store: a damaged container ------------------------------------------------------------


def test_a_container_damaged_in_the_store_is_one_fleet_store_error(tmp_path):
    """FleetStore.load: a store that does not decode is 'one FleetStoreError' (docs/fleet.md,
    Restart). A bit flipped inside a vehicle delta's container (its CRC then fails,
    docs/format.md; SQLite's quick_check still ok) is that error naming the file, not a
    traceback."""
    pytest.importorskip("hypothesis")
    from test_outside_nothing_lost2 import VEHICLES, _server, _tamper, _two_vehicle_store

    from gs_map_share.fleet_store import FleetStoreError
    from gs_mapping.runtime.replay import ReplayBus

    store, _, _ = _two_vehicle_store(tmp_path)
    db = sqlite3.connect(store)
    seq, blob = db.execute(
        "SELECT seq, container FROM vehicle_log WHERE map_id = 1 ORDER BY seq LIMIT 1"
    ).fetchone()
    db.close()
    damaged = bytearray(blob)
    damaged[8] ^= 0x10  # inside the header the CRC covers
    _tamper(
        store,
        f"UPDATE vehicle_log SET container = X'{bytes(damaged).hex()}' WHERE map_id = 1 AND seq = {seq}",
    )
    with pytest.raises(FleetStoreError) as e:
        _server(ReplayBus(), store, global_period_s=0.0, vehicles=VEHICLES).close()
    assert store.name in str(e.value) and "\n" not in str(e.value)


# -- SOG: files a failed read leaves open ------------------------------------------------------------


def test_a_sog_that_is_not_a_zip_is_refused_and_its_file_closed(tmp_path):
    """A .sog that is neither meta.json, a folder nor a zip is one MapError, and its file is closed
    (Python's rule: an unclosed file is a ResourceWarning when collected)."""
    import gc
    import warnings

    from gs_mapping.errors import MapError
    from gs_mapping.splat_formats import load_splats

    bad = tmp_path / "scene.sog"
    bad.write_bytes(b"not a zip at all" * 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(MapError, match="not a SOG"):
            load_splats(bad)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_sog_image_saved_as_a_palette_png_reads_as_its_webp_twin(tmp_path):
    """A palette PNG is 8-bit and lossless where the image has at most 256 colours (PNG spec,
    colour type 3; image optimisers write it so): shN_labels.webp (256 colours) re-saved as one, the
    scene is the WebP one exactly."""
    import io
    import json
    import zipfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from gs_mapping.splat_formats import load_splats

    fixture = Path(__file__).parent / "data" / "splat_formats" / "scene.sog"
    with zipfile.ZipFile(fixture) as z:
        files = {name: z.read(name) for name in z.namelist()}
    rgb = np.asarray(Image.open(io.BytesIO(files.pop("shN_labels.webp"))).convert("RGB"))
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 256
    img = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), "P")
    img.putpalette(colours.astype(np.uint8).tobytes())
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "P"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), rgb)
    files["shN_labels.png"] = buf.getvalue()
    meta = json.loads(files["meta.json"])
    text = json.dumps(meta).replace('"shN_labels.webp"', '"shN_labels.png"')
    assert "shN_labels.png" in text
    files["meta.json"] = text.encode()
    out = tmp_path / "palette.sog"
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    assert load_splats(out).equals(load_splats(fixture))


# -- gsmap_hd: the region a frame's cameras are judged on ------------------------------------------


@pytest.fixture(scope="module")
def surround_model_and_frame():
    pytest.importorskip("torch")
    from test_outside_hd_map2 import H, W

    from gsmap_hd.predict_bag import shipped_checkpoint
    from gsmap_hd.world_data import world_sample

    return shipped_checkpoint(3), world_sample(1, 5, "surround", (W, H))


def test_five_of_six_cameras_are_judged_where_they_see_and_six_on_the_patch(surround_model_and_frame):
    """infer.Predictor: the training config's 'patch' assumes its rig's all-round view; cameras that
    see less are judged where they see (the world's six cameras see 97 % of the patch; five of them
    79-92 %). Five cameras (the one at index 4 missing, 92 %): the frustum region, and every element
    published projects into one of the five (OpenCV's pinhole model, test_outside_hd_map2); all six:
    the patch."""
    from test_outside_hd_map2 import _inputs, _seen_by_any

    from gsmap_hd.infer import Predictor

    ckpt, frame = surround_model_and_frame
    p = Predictor.from_checkpoint(ckpt, score_threshold=0.3)
    five = [0, 1, 2, 3, 5]
    els = p.predict(*_inputs(frame, five))
    patch_area = (p.cfg.x_range[1] - p.cfg.x_range[0]) * (p.cfg.y_range[1] - p.cfg.y_range[0])
    assert p.last_regions[0].name == "frustum" and p.last_regions[0].area > 0.85 * patch_area
    assert all(_seen_by_any(e.points, frame, five).all() for e in els)
    p.predict(*_inputs(frame, list(range(6))))
    assert p.last_regions[0].name == "patch"


def test_a_region_asked_for_by_name_is_kept_whatever_the_cameras_see(surround_model_and_frame):
    """Predictor(region=...): a region named by the caller is used as named; only the training
    config's default 'patch' gives way to where the cameras see."""
    from test_outside_hd_map2 import _inputs

    from gsmap_hd.infer import Predictor

    ckpt, frame = surround_model_and_frame
    p = Predictor.from_checkpoint(ckpt, score_threshold=0.3, region="patch")
    p.predict(*_inputs(frame, [0, 1, 2]))
    assert p.last_regions[0].name == "patch"


# -- hd-train: --resume with --overwrite --------------------------------------------------------------


def test_hd_train_resume_with_overwrite_continues_the_run_and_keeps_its_log(tmp_path):
    """train(): a directory holding a run 'is continued with resume'; where OUT/last.pt exists,
    --resume continues it even beside --overwrite, so metrics.jsonl (one line per log) keeps the
    first run's line and gains the continued run's: steps 2 then 4."""
    import json

    pytest.importorskip("torch")
    from gs_mapping.cli import main

    out = tmp_path / "run"
    base = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    base += ["--threads", "1", "--no-progress", "--seed", "1"]
    assert main([*base, "--steps", "2"]) in (0, None)
    assert (out / "last.pt").exists()
    assert main([*base, "--steps", "4", "--resume", "--overwrite"]) in (0, None)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4], steps
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_hd_train_overwrite_checkpointing_before_its_first_log_keeps_no_line_of_the_old_run(tmp_path):
    """Issue 21: a run started over is 'never a mix' with the old one. A new run whose first
    checkpoint (step 1) comes before its first log line (step 2): once its checkpoint takes the old
    run's places, the old metrics.jsonl must be gone too, so the log holds the new run's line
    alone (not the old run's step 3 followed by it)."""
    import argparse
    import dataclasses
    import json

    pytest.importorskip("torch")
    from gs_mapping.cli import hd_train, main
    from gsmap_hd.train import train

    out = tmp_path / "run"
    base = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    base += ["--threads", "1", "--no-progress", "--seed", "1"]
    assert main([*base, "--steps", "3"]) in (0, None)
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [3]
    parser = argparse.ArgumentParser()
    hd_train.add_arguments(parser)  # the options as hd-train reads them, then two it has no flag for
    args = parser.parse_args([*base[1:], "--steps", "2"])
    cfg = dataclasses.replace(hd_train.build_config(args), log_every=2, checkpoint_every=1)
    train(cfg, out, progress=False, overwrite=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2], steps


def test_hd_train_overwrite_that_fails_before_its_checkpoint_leaves_the_old_run_alone(tmp_path):
    """_RunFiles: 'an interrupted or failed new run leaves the old one as it was': a run started
    over whose training frames cannot be read (a disk error on its first sample) leaves the old run's four
    files byte for byte, and nothing else in OUT (no staging folder)."""
    import argparse

    pytest.importorskip("torch")
    from gs_mapping.cli import hd_train
    from gsmap_hd.train import train

    out = tmp_path / "run"
    out.mkdir()
    old = {n: f"earlier run's {n}".encode() for n in ("model.pt", "last.pt", "metrics.jsonl", "config.json")}
    for n, data in old.items():
        (out / n).write_bytes(data)
    parser = argparse.ArgumentParser()
    hd_train.add_arguments(parser)
    args = parser.parse_args(
        [
            "--out",
            str(out),
            "--frames",
            "1",
            "--batch-size",
            "1",
            "--eval-every",
            "0",
            "--threads",
            "1",
            "--steps",
            "3",
            "--seed",
            "1",
        ]
    )

    class Unreadable:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        train(hd_train.build_config(args), out, progress=False, overwrite=True, source=Unreadable())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_incompatible_qos_warnings_name_the_peer_and_policy_as_rclpy_does(caplog):
    """rclpy's default QoS event callbacks: a publisher meeting a subscription it cannot serve says
    "New subscription discovered on topic '...', requesting incompatible QoS. No messages will be
    sent to it. Last incompatible policy: RELIABILITY"; a transient-local subscription meeting a
    volatile writer names DURABILITY (DDS policy id 2)."""
    pytest.importorskip("cyclonedds")
    import time

    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from test_outside_ros2_qos import _string_type

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    domain = 98  # not used by the other DDS tests
    ctx = DdsContext("s29_qos", domain_id=domain)
    ctx.create_publisher("/gs_s29/out", "std_msgs/msg/String", QoS(reliable=False, depth=5))
    ctx.create_subscription(
        "/gs_s29/latched",
        "std_msgs/msg/String",
        QoS(reliable=True, transient_local=True, depth=1),
        lambda m: None,
    )
    dp = DomainParticipant(domain)
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    reader = DataReader(
        dp, Topic(dp, "rt/gs_s29/out", _string_type()), qos=Qos(Policy.Reliability.Reliable(0), xcdr1)
    )
    writer = DataWriter(
        dp,
        Topic(dp, "rt/gs_s29/latched", _string_type()),
        qos=Qos(Policy.Reliability.Reliable(0), Policy.Durability.Volatile, xcdr1),
    )
    try:
        with caplog.at_level(logging.WARNING):
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                ctx.spin_once(0.05)
        said = [r.getMessage() for r in caplog.records]
        assert (
            "New subscription discovered on topic '/gs_s29/out', requesting incompatible QoS. No messages "
            "will be sent to it. Last incompatible policy: RELIABILITY"
        ) in said, said
        assert (
            "New publisher discovered on topic '/gs_s29/latched', offering incompatible QoS. No messages "
            "will be received from it. Last incompatible policy: DURABILITY"
        ) in said, said
    finally:
        ctx.close()
        del reader, writer, dp
