"""Outside review of issue 16 (real robot recordings), second pass: classes of input the earlier guards
do not try. Bags as each ROS 2 distribution's recorder leaves them (sqlite3 schema and metadata.yaml
of Eloquent, Foxy and Humble; Iron/Jazzy metadata versions 8 and 9 with their QoS layouts), MCAP chunk
compressions (lz4, zstd, none) and unchunked MCAP, recordings cut short (``ros2 bag record`` killed:
no metadata.yaml, an MCAP with no summary, a sqlite3 WAL left behind), 16-bit PNG colour as
image_transport compresses it, registered depth at another resolution than colour, header stamps far
from the record times (sim time) and out of order within a topic.

Expected values come from outside the component: the ``mcap`` library's own stream reader and
Python's ``sqlite3`` for what a storage file holds, OpenCV's PNG encoder/decoder, hand-composed
poses (the robot drives 0.02 m a frame along x, the camera sits 0.1 m ahead of base_link), and the
rule a user of rosbag2 expects (its MCAP plugin reads a file without a summary by scanning it; its
sqlite3 reader sees rows still in the WAL). Known bugs are ``xfail(strict=True)``."""

from __future__ import annotations

import shutil
import sqlite3
import struct

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags.rosbag2")

import test_hostile_robot_inputs as rb  # noqa: E402  (its rosbags-only bag builders)

from gs_mapping.bag import BagReader, _latched_qos  # noqa: E402
from gs_mapping.errors import BagError  # noqa: E402


def _pose_x(i):
    """x of the colour camera in the map at frame i: base_link at 0.02 i, camera_link 0.1 ahead."""
    return 0.1 + 0.02 * i


def _read_all(bag):
    with BagReader(bag) as r:
        return r.message_count, [(t, s) for t, s, _ in r.messages()]


def _writer_with_qos(version):
    """robot_bag's writer, but offering QoS as a recorder stores it (/tf_static transient_local)
    and writing metadata ``version`` (8: QoS as a YAML string, 9: as a YAML list)."""

    def write(path, topics, msgs, compression=None, storage="SQLITE3"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        w = Writer(path, version=version, storage_plugin=getattr(StoragePlugin, storage))
        with w:
            conns = {
                n: w.add_connection(
                    n, t, typestore=rb.TS, offered_qos_profiles=[_latched_qos(n == "/tf_static")]
                )
                for n, t in topics.items()
            }
            for ns, topic, msg in sorted(msgs, key=lambda m: m[0]):
                w.write(conns[topic], ns, rb.TS.serialize_cdr(msg, topics[topic]))
        return path

    return write


def _as_older_distro(bag, distro):
    """Rewrite a rosbags sqlite3 bag into the layout an older recorder leaves: Humble (schema 3, no
    message_definitions, metadata version 5), Foxy (no schema table, version 4), Eloquent (no QoS
    at all, version 3)."""
    import yaml

    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    qos = dict(con.execute("SELECT name, offered_qos_profiles FROM topics").fetchall())
    con.execute("DROP TABLE message_definitions")
    con.execute("DROP TABLE metadata")
    con.execute("ALTER TABLE topics RENAME TO old")
    keep = "id, name, type, serialization_format" + ("" if distro == "eloquent" else ", offered_qos_profiles")
    cols = (
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, serialization_format TEXT NOT NULL"
    )
    if distro != "eloquent":
        cols += ", offered_qos_profiles TEXT NOT NULL"
    con.execute(f"CREATE TABLE topics({cols})")
    con.execute(f"INSERT INTO topics SELECT {keep} FROM old")
    con.execute("DROP TABLE old")
    con.execute("DELETE FROM schema")
    if distro == "humble":
        con.execute("INSERT INTO schema VALUES (3, 'humble')")
    else:
        con.execute("DROP TABLE schema")
    con.commit()
    con.close()
    p = bag / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    info = doc["rosbag2_bagfile_information"]
    info["version"] = {"humble": 5, "foxy": 4, "eloquent": 3}[distro]
    for key in ("ros_distro", "custom_data") + (("files",) if distro != "humble" else ()):
        info.pop(key, None)
    for t in info["topics_with_message_count"]:
        tm = t["topic_metadata"]
        tm.pop("type_description_hash", None)
        if distro == "eloquent":
            tm.pop("offered_qos_profiles", None)
        else:
            tm["offered_qos_profiles"] = qos[tm["name"]]  # the same string the db3 holds
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return bag


# -- each distribution's recorder ------------------------------------------------------------------
@pytest.mark.parametrize(
    "storage,version,distro",
    [
        ("SQLITE3", 8, "eloquent"),
        ("SQLITE3", 8, "foxy"),
        ("SQLITE3", 8, "humble"),
        ("SQLITE3", 8, None),  # Iron
        ("MCAP", 8, None),
        ("SQLITE3", 9, None),  # Jazzy: QoS as a YAML list
        ("MCAP", 9, None),
    ],
)
def test_bags_as_each_distro_writes_them_read_whole_and_map(storage, version, distro, monkeypatch, tmp_path):
    monkeypatch.setattr(rb, "_write", _writer_with_qos(version))
    bag = rb.robot_bag(tmp_path / "b", n=4, storage=storage)
    if distro:
        _as_older_distro(bag, distro)
    with BagReader(bag) as r:
        latched = {t.name: t.latched for t in r.topics}
        n = sum(1 for _ in r.messages())
    # 4 colour + 4 depth + 4 info + 6 /tf + 1 /tf_static, as written
    assert n == 19
    # a latched /tf_static is what `ros2 bag play` re-latches; Eloquent's bags say nothing of QoS
    assert latched["/tf_static"] is (distro != "eloquent") and not latched["/tf"]
    frames = rb._frames(bag)
    assert [float(f.camera.T_map_cam[0, 3]) for f in frames] == pytest.approx(
        [_pose_x(i) for i in range(4)], abs=1e-6
    )


# -- MCAP as other writers chunk it ------------------------------------------------------------------
def _rechunked(f, out, **kw):
    """``f`` rewritten by the mcap library's writer in chunks of 4 kB (``kw``: its options); the
    (topic, log time) of its messages in order."""
    from mcap.reader import make_reader
    from mcap.writer import Writer as McapWriter

    with f.open("rb") as inp, out.open("wb") as o:
        r = make_reader(inp)
        summary = r.get_summary()
        w = McapWriter(o, chunk_size=4096, **kw)  # several chunks
        w.start(profile="ros2", library="mcap-test")
        for s in summary.schemas.values():
            w.register_schema(s.name, s.encoding, s.data)
        for c in summary.channels.values():
            w.register_channel(c.topic, c.message_encoding, c.schema_id, c.metadata)
        want = []
        for _, ch, m in r.iter_messages(log_time_order=True):
            w.add_message(ch.id, m.log_time, m.data, m.publish_time, m.sequence)
            want.append((ch.topic, m.log_time))
        w.finish()
    return want


@pytest.mark.parametrize("kind", ["lz4", "zstd", "none", "unchunked"])
def test_mcap_chunk_compressions_and_unchunked_give_every_message(kind, tmp_path):
    from mcap.writer import CompressionType

    src = rb.robot_bag(tmp_path / "src", n=4, storage="MCAP")
    f = next(src.glob("*.mcap"))
    dst = tmp_path / kind
    dst.mkdir()
    shutil.copy(src / "metadata.yaml", dst)
    kw = {"use_chunking": False} if kind == "unchunked" else {"compression": CompressionType[kind.upper()]}
    want = _rechunked(f, dst / f.name, **kw)
    count, got = _read_all(dst)
    assert count == len(want) and sorted(got) == sorted(want)
    assert len(rb._frames(dst)) == 4


# -- recordings cut short --------------------------------------------------------------------------
def test_sqlite3_bag_of_a_killed_recorder_without_metadata_reads_whole(tmp_path):
    """`ros2 bag record` killed before it closes leaves the .db3 and no metadata.yaml."""
    bag = rb.robot_bag(tmp_path / "b", n=4)
    (bag / "metadata.yaml").unlink()
    con = sqlite3.connect(next(bag.glob("*.db3")))
    rows = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    con.close()
    count, got = _read_all(bag)
    assert count == rows == len(got) == 19
    assert len(rb._frames(bag)) == 4


def _killed_wal_bag(tmp_path):
    """A sqlite3 bag whose recorder ran in WAL mode (rosbag2's `resilient` storage preset) and was
    killed: the second half of the messages is still in the -wal file, no metadata.yaml."""
    src = rb.robot_bag(tmp_path / "src", n=6)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(next(src.glob("*.db3")), work / "rec.db3")
    con = sqlite3.connect(work / "rec.db3")
    half = rb.T0 + 3 * rb.DT
    late = con.execute(
        "SELECT topic_id, timestamp, data FROM messages WHERE timestamp >= ?", (half,)
    ).fetchall()
    con.execute("DELETE FROM messages WHERE timestamp >= ?", (half,))
    con.commit()
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", late)
    con.commit()
    killed = tmp_path / "killed"
    killed.mkdir()
    for f in work.iterdir():  # copied while the writer still holds the file: the WAL stays
        shutil.copy(f, killed / f.name)
    con.close()
    assert (killed / "rec.db3-wal").stat().st_size > 0
    return killed


def test_sqlite3_rows_left_in_the_wal_are_read_or_refused(tmp_path):
    bag = _killed_wal_bag(tmp_path)
    con = sqlite3.connect(f"file:{bag / 'rec.db3'}?mode=ro", uri=True)  # as rosbag2 opens it: WAL included
    rows = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    con.close()
    assert rows == 27
    before = {f.name: f.read_bytes() for f in bag.iterdir()}
    count, got = _read_all(bag)
    assert count == len(got) == rows
    assert {f.name: f.read_bytes() for f in bag.iterdir()} == before  # the recording is not touched


def _summaryless_mcap(tmp_path):
    """An MCAP as a killed recorder leaves it: header, chunks and message indexes, but no DataEnd,
    summary or footer (the data section is complete); no metadata.yaml."""
    src = rb.robot_bag(tmp_path / "src", n=4, storage="MCAP")
    data = next(src.glob("*.mcap")).read_bytes()
    pos = 8
    while data[pos] != 0x0F:  # walk the records up to DataEnd
        pos += 9 + struct.unpack_from("<Q", data, pos + 1)[0]
    cut = tmp_path / "killed"
    cut.mkdir()
    (cut / "rec.mcap").write_bytes(data[:pos])
    return cut / "rec.mcap"


def test_mcap_without_summary_is_read_by_scanning_or_the_error_says_how_to_recover(tmp_path):
    from mcap.stream_reader import StreamReader

    f = _summaryless_mcap(tmp_path)
    present = []
    with f.open("rb") as fh:  # the mcap library's linear scan: what the file still holds
        try:
            for rec in StreamReader(fh).records:
                if type(rec).__name__ == "Message":
                    present.append(rec.log_time)
        except Exception:  # noqa: BLE001 - the missing footer ends the scan
            pass
    assert len(present) == 19
    before = f.read_bytes()
    _, got = _read_all(f)
    assert sorted(s for _, s in got) == sorted(present)
    assert f.read_bytes() == before  # the recording is not touched


def test_metadata_qos_unlike_the_storages_loses_no_message_silently(tmp_path):
    import yaml

    bag = rb.robot_bag(tmp_path / "b", n=4)
    p = bag / "metadata.yaml"
    doc = yaml.safe_load(p.read_text())
    for t in doc["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/camera/color/image_raw":  # best effort, depth 5
            t["topic_metadata"]["offered_qos_profiles"] = (
                "- history: 1\n  depth: 5\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 0\n"
                "    nsec: 0\n  lifespan:\n    sec: 0\n    nsec: 0\n  liveliness: 1\n"
                "  liveliness_lease_duration:\n    sec: 0\n    nsec: 0\n"
                "  avoid_ros_namespace_conventions: false"
            )
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    with BagReader(bag) as r:
        claimed = r.topic("/camera/color/image_raw").count
        got = sum(1 for t, *_ in r.messages() if t == "/camera/color/image_raw")
    assert claimed == got == 4


# -- images drivers send ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt,channels", [("bgr16; png compressed bgr16", 3), ("rgba16; png compressed bgra16", 4)]
)
def test_sixteen_bit_png_colour_is_its_high_byte_in_rgb_order(fmt, channels):
    """image_transport's png of a 16-bit colour image (cv::imencode of the BGR(A)16 Mat)."""
    from gs_mapping.messages.camera_image import color_to_rgb

    rng = np.random.default_rng(16)
    rgb = rng.integers(0, 65536, (rb.H, rb.W, channels), dtype=np.uint16)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA) if channels == 4 else rgb[:, :, ::-1]
    ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    back = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)  # OpenCV's own reading: BGR(A) 16 bit
    want = (back[:, :, 2::-1] >> 8).astype(np.uint8)
    got = color_to_rgb(rb._compressed(rb.T0, "cam", fmt, png.tobytes()))
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_registered_depth_at_half_resolution_with_its_own_camera_info_fills_the_colour_image(tmp_path):
    """OAK-style: depth aligned to the RGB camera (same frame) but at half its resolution, with its
    own CameraInfo (K halved). A wall 1.5 m away must be 1.5 m at every colour pixel."""
    k2 = [rb.FX / 2, 0.0, (rb.W / 2 - 1) / 2, 0.0, rb.FX / 2, (rb.H / 2 - 1) / 2, 0.0, 0.0, 1.0]
    fid = "oak_rgb_camera_optical_frame"

    def depth(ns, frame, _d):
        return rb._image(ns, frame, np.full((rb.H // 2, rb.W // 2), 1500, np.uint16), "16UC1")

    infos = [
        (rb.T0 + i * rb.DT, "/oak/stereo/camera_info", rb._info(rb.T0 + i * rb.DT, fid, k=k2, w=rb.W // 2, h=rb.H // 2))
        for i in range(4)
    ]  # fmt: skip
    bag = rb.robot_bag(
        tmp_path / "b",
        color_topic="/oak/rgb/image_raw",
        depth_topic="/oak/stereo/image_raw",
        cfid=fid,
        depth=depth,
        extra_topics={"/oak/stereo/camera_info": rb.CINFO},
        extra_msgs=infos,
    )
    frames = rb._frames(bag)
    assert len(frames) == 4
    for f in frames:
        assert f.depth.shape == (rb.H, rb.W)
        assert np.allclose(f.depth, 1.5, atol=1e-3)


# -- stamps ----------------------------------------------------------------------------------------
def test_sim_time_header_stamps_far_from_record_times_are_posed_at_the_header_stamp(monkeypatch, tmp_path):
    """A Gazebo bag: header stamps count from 5 s of sim time, record times are wall clock (2023).
    TF and images agree on sim time, so each frame gets its own pose."""
    sim0 = 5_000_000_000
    hdr = rb._hdr
    monkeypatch.setattr(rb, "_hdr", lambda ns, fid: hdr(ns - rb.T0 + sim0, fid))
    bag = rb.robot_bag(tmp_path / "b", n=4, storage="MCAP")
    frames = rb._frames(bag)
    assert [f.stamp_ns for f in frames] == [sim0 + i * rb.DT for i in range(4)]
    assert [float(f.camera.T_map_cam[0, 3]) for f in frames] == pytest.approx(
        [_pose_x(i) for i in range(4)], abs=1e-6
    )


def test_out_of_order_stamps_in_one_topic_keep_each_image_with_its_own_depth_and_pose(monkeypatch, tmp_path):
    """Frames 2 and 3 of the camera carry each other's header stamps (recorded in the other order):
    each colour image is paired with the depth of its stamp and posed at that stamp."""
    hdr = rb._hdr
    a, b = rb.T0 + 2 * rb.DT, rb.T0 + 3 * rb.DT
    swap = {a: b, b: a, a + 1000: b + 1000, b + 1000: a + 1000}  # colour and its depth (1 µs later)

    def swapped(ns, fid):
        return hdr(swap.get(ns, ns) if fid == "camera_color_optical_frame" else ns, fid)

    monkeypatch.setattr(rb, "_hdr", swapped)
    bag = rb.robot_bag(tmp_path / "b", n=6, storage="MCAP")
    frames = rb._frames(bag)
    assert len(frames) == 6
    for f in frames:
        i = (f.stamp_ns - rb.T0) // rb.DT  # the pose's frame: by stamp
        content = {2: 3, 3: 2}.get(i, i)  # the image's frame: swapped for 2 and 3
        want_blue = (40 * content) % 256  # _scene: blue at pixel (0, 0) is 40 i
        assert float(f.camera.T_map_cam[0, 3]) == pytest.approx(_pose_x(i), abs=1e-6)
        assert int(round(float(f.rgb[0, 0, 2]) * 255)) == want_blue


# -- recordings cut short: what the repaired copy keeps, and where it goes --------------------------


def test_mcap_cut_inside_its_last_chunk_keeps_every_whole_chunk_and_maps_their_frames(tmp_path, caplog):
    """Power lost while a chunk was written: the whole chunks before it are read (the source bag's
    first messages, in order), the cut is reported in bytes, and the frames they hold are mapped."""
    src = rb.robot_bag(tmp_path / "src", n=6, storage="MCAP")
    expected = _rechunked(next(src.glob("*.mcap")), tmp_path / "whole.mcap")
    data = (tmp_path / "whole.mcap").read_bytes()
    chunks, pos = [], 8
    while data[pos] != 0x0F:
        n = struct.unpack_from("<Q", data, pos + 1)[0]
        if data[pos] == 0x06:  # Chunk
            chunks.append((pos, pos + 9 + n))
        pos += 9 + n
    assert len(chunks) >= 4
    last_start, last_end = chunks[-1]
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "rec.mcap").write_bytes(data[: (last_start + last_end) // 2])
    caplog.set_level("WARNING")
    _, got = _read_all(cut / "rec.mcap")
    assert 0 < len(got) < len(expected)
    assert got == expected[: len(got)]  # a prefix of the recording, nothing reordered or invented
    assert len(rb._frames(cut / "rec.mcap")) >= 3
    assert any("bytes of a cut record left out" in r.getMessage() for r in caplog.records)


def test_a_repaired_copy_is_removed_when_the_bag_closes(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    f = _summaryless_mcap(tmp_path)
    with BagReader(f) as r:
        assert len(list((tmp_path / "tmp").iterdir())) == 1  # the copy, while reading
        assert sum(1 for _ in r.messages()) == 19
    assert list((tmp_path / "tmp").iterdir()) == []


def test_no_room_for_the_repaired_copy_names_tmpdir_and_the_repair_in_place(tmp_path, monkeypatch):
    import tempfile

    from hostile_fs import full_disk_dir

    f = _summaryless_mcap(tmp_path)
    # (room for less than the copy, however the full disk is made: a small tmpfs as root, else a
    # file-size limit, which only a file larger than it meets; the bag is ~24 KB)
    with full_disk_dir(tmp_path / "small", size_bytes=f.stat().st_size // 3) as (small, _kind):
        monkeypatch.setattr(tempfile, "tempdir", str(small))
        with pytest.raises(BagError) as e:
            _read_all(f)
    msg = str(e.value)
    assert "TMPDIR" in msg and "mcap recover" in msg and str(f) in msg and "\n" not in msg


def test_two_copies_of_one_recording_without_metadata_are_not_read_as_its_splits(tmp_path):
    """Two files and no metadata.yaml are read as a killed split recording (test_real_inputs_bags37),
    but two of the same times are no one recording's splits: refused, naming both."""
    bag = rb.robot_bag(tmp_path / "b", n=2)
    db = next(bag.glob("*.db3"))
    shutil.copy(db, bag / "b_1.db3")  # (named as splits are: two other names are refused as such)
    db.rename(bag / "b_0.db3")
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=rf"^{bag}: no metadata.yaml, and b_0.db3 and b_1.db3 overlap in time"):
        _read_all(bag)
