"""BagReader / BagWriter: real bag reading, and bags we write read back by rosbags and by mcap-ros2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from conftest import map_args

from gs_mapping.bag import BagReader, BagWriter, TopicInfo, default_typestore
from gs_mapping.errors import BagError

_STORE = default_typestore()

KITCHEN_TOPICS = {
    "/camera/color/image_raw": ("sensor_msgs/msg/Image", 50),
    "/camera/depth/image_rect_raw": ("sensor_msgs/msg/Image", 50),
    "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 50),
    "/tf": ("tf2_msgs/msg/TFMessage", 50),
    "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
}


# --- reading the real bag --------------------------------------------------------------------------
def test_kitchen_topics_counts_span(kitchen_bag):
    with BagReader(kitchen_bag) as bag:
        got = {t.name: (t.type, t.count) for t in bag.topics}
        assert got == KITCHEN_TOPICS
        assert bag.topic("/tf_static").latched and not bag.topic("/tf").latched
        assert bag.message_count == 201
        stamps = [s for _, s, _ in bag.raw_messages()]
    assert len(stamps) == 201
    assert stamps == sorted(stamps), "messages must come in time order"
    assert bag.start_ns == stamps[0] and bag.end_ns == stamps[-1]
    # 50 frames at 30 Hz
    assert abs((bag.end_ns - bag.start_ns) / 1e9 - 49 / 30) < 1e-3


def test_bare_mcap_file_reads_like_the_directory(kitchen_bag):
    mcap = next(kitchen_bag.glob("*.mcap"))
    with BagReader(kitchen_bag) as a, BagReader(mcap) as b:
        assert [t.name for t in a.topics] == [t.name for t in b.topics]
        assert [(t.type, t.count, t.latched) for t in a.topics] == [
            (t.type, t.count, t.latched) for t in b.topics
        ]
        assert (a.start_ns, a.end_ns) == (b.start_ns, b.end_ns)
        ra = [(t, s, d) for t, s, d in a.raw_messages("/tf")]
        rb = [(t, s, d) for t, s, d in b.raw_messages("/tf")]
    assert ra == rb and len(ra) == 50


def test_messages_filter_window_and_decode(kitchen_bag):
    with BagReader(kitchen_bag) as bag:
        msgs = list(bag.messages(["/camera/color/camera_info"]))
        assert len(msgs) == 50
        topic, stamp, info = msgs[0]
        assert topic == "/camera/color/camera_info" and stamp == bag.start_ns
        assert (info.width, info.height) == (320, 240)
        assert np.allclose(
            np.asarray(info.k).reshape(3, 3)[[0, 1, 0, 1], [0, 1, 2, 2]], [292.5, 292.5, 159.75, 119.75]
        )
        # start inclusive, stop exclusive, several topics merged in time order
        t0, t1 = msgs[10][1], msgs[20][1]
        window = list(bag.messages(["/tf", "/camera/color/camera_info"], start_ns=t0, stop_ns=t1))
        assert len(window) == 20 and {m[0] for m in window} == {"/tf", "/camera/color/camera_info"}
        assert all(t0 <= s < t1 for _, s, _ in window)
        # the typestore can decode what raw_messages yields, and build standard messages
        _, _, raw = next(iter(bag.raw_messages("/tf_static")))
        tf = bag.decode("/tf_static", raw, "tf2_msgs/msg/TFMessage")
        assert tf.transforms[0].child_frame_id == "camera_color_optical_frame"
        assert "sensor_msgs/msg/PointCloud2" in bag.typestore.types


def test_unknown_topic_is_a_bag_error_naming_it(kitchen_bag):
    with BagReader(kitchen_bag) as bag:
        with pytest.raises(BagError, match=r"/nope.*topics: /camera"):
            bag.messages(["/tf", "/nope"])
        with pytest.raises(BagError, match="/nope"):
            bag.topic("/nope")


def test_reader_not_opened_is_a_bag_error(kitchen_bag):
    with pytest.raises(BagError, match="not open"):
        list(BagReader(kitchen_bag).messages())


# --- writing ---------------------------------------------------------------------------------------
def _sample_messages(ts):
    """One message of each type we publish, built from plain rosbags classes."""
    T = ts.types
    stamp = T["builtin_interfaces/msg/Time"](sec=1_700_000_000, nanosec=123_456_789)

    def header(frame):
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)

    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = T["sensor_msgs/msg/Image"](
        header=header("cam"),
        height=4,
        width=6,
        encoding="rgb8",
        is_bigendian=0,
        step=18,
        data=rgb.reshape(-1),
    )
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header("cam"),
        height=4,
        width=6,
        distortion_model="plumb_bob",
        d=np.array([0.1, -0.2, 0.0, 0.0, 0.01]),
        k=np.array([5.0, 0, 3, 0, 5, 2, 0, 0, 1]),
        r=np.eye(3).reshape(-1),
        p=np.array([5.0, 0, 3, 0, 0, 5, 2, 0, 0, 0, 1, 0]),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )
    tfs = T["geometry_msgs/msg/TransformStamped"](
        header=header("base_link"),
        child_frame_id="cam",
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=0.1, y=0.0, z=1.2),
            rotation=T["geometry_msgs/msg/Quaternion"](x=0.5, y=-0.5, z=0.5, w=-0.5),
        ),
    )
    tf_static = T["tf2_msgs/msg/TFMessage"](transforms=[tfs])
    PF = T["sensor_msgs/msg/PointField"]
    # x, y, z float32 at 0/4/8, 4 bytes padding, rgb uint32 at 16: point_step 20
    fields = [
        PF(name="x", offset=0, datatype=7, count=1),
        PF(name="y", offset=4, datatype=7, count=1),
        PF(name="z", offset=8, datatype=7, count=1),
        PF(name="rgb", offset=16, datatype=6, count=1),
    ]
    pts = np.zeros(
        3,
        dtype=np.dtype(
            {
                "names": ["x", "y", "z", "rgb"],
                "formats": ["<f4", "<f4", "<f4", "<u4"],
                "offsets": [0, 4, 8, 16],
                "itemsize": 20,
            }
        ),
    )
    pts["x"], pts["y"], pts["z"], pts["rgb"] = [1, 2, 3], [4, 5, 6], [7, 8, 9], [0xFF0000, 0xFF00, 0xFF]
    cloud = T["sensor_msgs/msg/PointCloud2"](
        header=header("map"),
        height=1,
        width=3,
        fields=fields,
        is_bigendian=False,
        point_step=20,
        row_step=60,
        data=np.frombuffer(pts.tobytes(), np.uint8),
        is_dense=True,
    )
    MAL = T["std_msgs/msg/MultiArrayLayout"]
    blob = np.frombuffer(b"delta\x00\x01\xff" * 100, np.uint8)
    delta = T["std_msgs/msg/UInt8MultiArray"](layout=MAL(dim=[], data_offset=0), data=blob)
    return {
        "/camera/image": ("sensor_msgs/msg/Image", False, image),
        "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", False, info),
        "/tf_static": ("tf2_msgs/msg/TFMessage", True, tf_static),
        "/map/cloud": ("sensor_msgs/msg/PointCloud2", False, cloud),
        "/map/delta": ("std_msgs/msg/UInt8MultiArray", False, delta),
    }, pts


def _write_sample_bag(path, overwrite=False):
    ts = default_typestore()
    samples, pts = _sample_messages(ts)
    with BagWriter(path, overwrite=overwrite) as bag:
        for topic, (typename, latched, _) in samples.items():
            bag.add_topic(topic, typename, latched=latched)
        for k in range(3):
            for j, (topic, (_, latched, msg)) in enumerate(samples.items()):
                if latched and k:
                    continue
                bag.write(topic, 1_000 + 100 * k + j, msg)
    return samples, pts


def _field_names(msg) -> list[str]:
    """Message fields of a rosbags message, from its type definition (constants excluded)."""
    typename = getattr(msg, "__msgtype__", None)
    if typename is None or not dataclasses.is_dataclass(msg):
        return []
    return [name for name, _ in _STORE.fielddefs[typename][1]]


def _assert_same(a, b):
    """Field-by-field equality of two message objects from different libraries."""
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple, bytes)):
        a_list, b_list = list(a), list(b)
        assert len(a_list) == len(b_list)
        if a_list and hasattr(a_list[0], "__slots__") or (a_list and hasattr(a_list[0], "__dict__")):
            for x, y in zip(a_list, b_list, strict=False):
                _assert_same(x, y)
        else:
            assert np.array_equal(np.asarray(a_list), np.asarray(b_list))
        return
    if isinstance(a, (int, float, str, bool)):
        assert a == b
        return
    names = _field_names(a)
    assert names, f"unexpected value {a!r}"
    for n in names:
        _assert_same(getattr(a, n), getattr(b, n))


def test_written_bag_reads_back_with_rosbags(tmp_path):
    from rosbags.highlevel import AnyReader

    out = tmp_path / "out_bag"
    samples, pts = _write_sample_bag(out)
    with BagReader(out) as bag:
        assert {t.name: (t.type, t.count, t.latched) for t in bag.topics} == {
            topic: (typename, 1 if latched else 3, latched)
            for topic, (typename, latched, _) in samples.items()
        }
        got = list(bag.messages())
    assert [s for _, s, _ in got] == sorted(s for _, s, _ in got)
    for topic, _, msg in got:
        _assert_same(samples[topic][2], msg)
    # rosbags' own high-level reader (its typestore comes from the definitions stored in the bag)
    with AnyReader([out]) as reader:
        n = 0
        for conn, _stamp, raw in reader.messages():
            _assert_same(samples[conn.topic][2], reader.deserialize(raw, conn.msgtype))
            n += 1
    assert n == 13
    cloud = next(m for t, _, m in got if t == "/map/cloud")
    back = np.frombuffer(np.asarray(cloud.data, np.uint8).tobytes(), pts.dtype)
    assert np.array_equal(back, pts)


def test_written_bag_reads_back_with_mcap_ros2(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = tmp_path / "bag"
    samples, _ = _write_sample_bag(out)
    files = list(out.glob("*.mcap"))
    assert len(files) == 1
    seen = {}
    with open(files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        for schema, channel, _message, decoded in reader.iter_decoded_messages():
            typename, latched, original = samples[channel.topic]
            assert schema.name == typename and schema.encoding == "ros2msg"
            assert channel.message_encoding == "cdr"
            qos = yaml.safe_load(channel.metadata["offered_qos_profiles"])
            assert qos[0]["durability"] == (1 if latched else 2)  # 1 transient_local, 2 volatile
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            _compare_mcap_decoded(original, decoded)
    assert seen == {
        "/camera/image": 3,
        "/camera/camera_info": 3,
        "/tf_static": 1,
        "/map/cloud": 3,
        "/map/delta": 3,
    }


def _compare_mcap_decoded(ours, theirs):
    """mcap_ros2 decodes into its own dynamic classes (bytes for uint8[], lists for arrays)."""
    names = _field_names(ours)
    if not names:
        if isinstance(ours, np.ndarray):
            theirs_arr = (
                np.frombuffer(theirs, np.uint8)
                if isinstance(theirs, (bytes, bytearray))
                else np.asarray(theirs)
            )
            assert np.array_equal(ours, theirs_arr)
        elif isinstance(ours, list):
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs, strict=False):
                _compare_mcap_decoded(a, b)
        elif isinstance(ours, float):
            assert ours == pytest.approx(theirs)
        else:
            assert ours == theirs
        return
    for n in names:
        _compare_mcap_decoded(getattr(ours, n), getattr(theirs, n))


def test_metadata_version_8_and_latched_qos(tmp_path):
    out = tmp_path / "bag"
    samples, _ = _write_sample_bag(out)
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    assert meta["storage_identifier"] == "mcap"
    assert meta["message_count"] == 13
    assert meta["relative_file_paths"] == ["bag.mcap"]
    assert isinstance(meta["custom_data"], dict) and meta["custom_data"]  # a map, never null
    assert meta["compression_mode"] == "" and meta["compression_format"] == ""
    by_topic = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert set(by_topic) == set(samples)
    for topic, (typename, latched, _) in samples.items():
        tm = by_topic[topic]["topic_metadata"]
        assert tm["type"] == typename and tm["serialization_format"] == "cdr"
        # version 8 stores the profiles as a YAML string (version 9 changed that; Humble reads this)
        assert isinstance(tm["offered_qos_profiles"], str)
        (qos,) = yaml.safe_load(tm["offered_qos_profiles"])
        assert qos["durability"] == (1 if latched else 2)
        assert qos["reliability"] == 1
    # our reader sees the latch again
    with BagReader(out) as bag:
        assert [t.name for t in bag.topics if t.latched] == ["/tf_static"]


def test_existing_output_is_an_error_unless_overwrite(tmp_path):
    out = tmp_path / "bag"
    _write_sample_bag(out)
    before = (out / "bag.mcap").read_bytes()
    with pytest.raises(BagError, match=f"{out}.*exists"):
        BagWriter(out).open()
    assert (out / "bag.mcap").read_bytes() == before
    _write_sample_bag(out, overwrite=True)
    with BagReader(out) as bag:
        assert bag.message_count == 13
    # overwrite never deletes a directory that is not a bag
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        BagWriter(other, overwrite=True).open()
    assert (other / "notes.txt").read_text() == "keep me"


def test_failed_write_leaves_nothing_and_keeps_old_bag(tmp_path):
    out = tmp_path / "bag"
    _write_sample_bag(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        with BagWriter(out, overwrite=True) as bag:
            bag.add_topic("/x", "std_msgs/msg/String")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial directory left behind
    with BagReader(out) as bag:
        assert bag.message_count == 13  # old bag intact


def test_writer_errors_name_topic(tmp_path):
    ts = default_typestore()
    with BagWriter(tmp_path / "b") as bag:
        bag.add_topic("/s", "std_msgs/msg/String")
        with pytest.raises(BagError, match="/s added twice"):
            bag.add_topic("/s", "std_msgs/msg/String")
        with pytest.raises(BagError, match="/q: unknown message type foo_msgs/msg/Nope"):
            bag.add_topic("/q", "foo_msgs/msg/Nope")
        with pytest.raises(BagError, match="topic /t was not added"):
            bag.write("/t", 1, ts.types["std_msgs/msg/String"](data="x"))
        with pytest.raises(BagError, match="/s: cannot serialise std_msgs/msg/String"):
            bag.write("/s", 1, object())
        with pytest.raises(BagError, match="stamp must be a non-negative int"):
            bag.write("/s", -5, ts.types["std_msgs/msg/String"](data="x"))
        bag.write("/s", 7, ts.types["std_msgs/msg/String"](data="ok"))
        bag.write_raw(
            "/s", 8, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="raw"), "std_msgs/msg/String")
        )
    with BagReader(tmp_path / "b") as bag:
        assert [m.data for _, _, m in bag.messages()] == ["ok", "raw"]


def test_custom_message_type_round_trip(tmp_path):
    with BagWriter(tmp_path / "b") as bag:
        bag.register_msg("gs_mapping_msgs/msg/Stat", "string name\nfloat64 value\nuint32[] ids\n")
        bag.add_topic("/stat", "gs_mapping_msgs/msg/Stat")
        cls = bag.typestore.types["gs_mapping_msgs/msg/Stat"]
        bag.write("/stat", 5, cls(name="psnr", value=31.5, ids=np.array([1, 2, 3], np.uint32)))
    # the definition travels in the bag: a fresh reader decodes it without being told
    with BagReader(tmp_path / "b") as bag:
        ((_, _, m),) = bag.messages("/stat")
    assert (m.name, m.value, m.ids.tolist()) == ("psnr", 31.5, [1, 2, 3])


def test_duck_typed_message_is_written(tmp_path):
    from types import SimpleNamespace as NS

    msg = NS(
        header=NS(stamp=NS(sec=3, nanosec=4), frame_id="f"),
        height=1,
        width=2,
        encoding="mono8",
        is_bigendian=0,
        step=2,
        data=np.array([7, 9], np.uint8),
    )
    with BagWriter(tmp_path / "b") as bag:
        bag.add_topic("/img", "sensor_msgs/msg/Image")
        bag.write("/img", 10, msg)
    with BagReader(tmp_path / "b") as bag:
        ((_, stamp, m),) = bag.messages()
    assert stamp == 10 and m.header.frame_id == "f" and m.data.tolist() == [7, 9]


def test_sqlite3_bag_is_read(tmp_path):
    """rosbag2 directories with sqlite3 storage (the pre-Iron default) read like MCAP ones."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = default_typestore()
    String = ts.types["std_msgs/msg/String"]
    path = tmp_path / "sq"
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        for i in range(5):
            w.write(c, 100 + i, ts.serialize_cdr(String(data=f"m{i}"), "std_msgs/msg/String"))
    with BagReader(path) as bag:
        assert bag.topics == [TopicInfo("/chatter", "std_msgs/msg/String", 5, False)]
        assert [(s, m.data) for _, s, m in bag.messages()] == [(100 + i, f"m{i}") for i in range(5)]
        assert (bag.start_ns, bag.end_ns) == (100, 104)
    db3 = next(path.glob("*.db3"))
    with BagReader(db3) as bag:  # bare .db3 file
        assert [m.data for _, _, m in bag.messages()] == [f"m{i}" for i in range(5)]


def test_split_sqlite3_bag_keeps_its_time_span(tmp_path, caplog):
    """A bag split over several .db3 files (``ros2 bag record --max-bag-size``): every file lists every
    topic, and /tf_static has rows only in the first. Its span is the messages' own (a later file's
    empty topic once counted as a message at t = 0: a 54-year bag and a false metadata warning)."""
    import shutil
    import sqlite3

    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = default_typestore()
    String = ts.types["std_msgs/msg/String"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    t0 = 1_700_000_000_000_000_000
    with Writer(whole, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        static = w.add_connection("/tf_static", "std_msgs/msg/String", typestore=ts)
        chatter = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        w.write(static, t0, ts.serialize_cdr(String(data="s"), "std_msgs/msg/String"))
        for i in range(6):
            w.write(chatter, t0 + 10 + i, ts.serialize_cdr(String(data=f"m{i}"), "std_msgs/msg/String"))
    split.mkdir()
    db = next(whole.glob("*.db3"))
    meta = yaml.safe_load((whole / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    cuts, names = [(0, t0 + 13), (t0 + 13, t0 + 100)], []
    for i, (lo, hi) in enumerate(cuts):
        name = f"split_{i}.db3"
        shutil.copy(db, split / name)
        con = sqlite3.connect(split / name)
        con.execute("DELETE FROM messages WHERE timestamp < ? OR timestamp >= ?", (lo, hi))
        con.commit()
        con.close()
        names.append(name)
    info["relative_file_paths"] = names
    info.pop("files", None)
    (split / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with caplog.at_level("WARNING"), BagReader(split) as bag:
        assert (bag.start_ns, bag.end_ns) == (t0, t0 + 15)
        assert [(s, m.data) for _, s, m in bag.messages()] == [(t0, "s")] + [
            (t0 + 10 + i, f"m{i}") for i in range(6)
        ]
    assert "disagrees" not in caplog.text


def test_directory_without_metadata_uses_its_single_storage_file(tmp_path, kitchen_bag):
    d = tmp_path / "nometa"
    d.mkdir()
    mcap = next(kitchen_bag.glob("*.mcap"))
    (d / mcap.name).symlink_to(mcap)
    with BagReader(d) as bag:
        assert bag.message_count == 201
    (d / "second.mcap").write_bytes(b"")
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        BagReader(d).open()


def test_zstd_compressed_storage_without_metadata_that_does_not_inflate_is_named(tmp_path):
    """`ros2 bag record --compression-mode file` leaves each closed file as one zstd frame,
    ``<name>.db3.zstd``; without metadata.yaml (a killed recorder's, a file copied alone) it is
    inflated into a copy and read (test_bag38_file_compression); one that does not inflate is named,
    never "0 .mcap/.db3 files"."""
    d = tmp_path / "nometa"
    d.mkdir()
    (d / "rec_0.db3.zstd").write_bytes(b"\x28\xb5\x2f\xfd")
    for path in (d, d / "rec_0.db3.zstd"):
        with pytest.raises(
            BagError, match="rec_0.db3.zstd: a zstd-compressed storage file that does not inflate"
        ):
            BagReader(path).open()


def test_path_written_is_exactly_what_was_asked(tmp_path):
    out = tmp_path / "nested" / "run1"
    _write_sample_bag(out)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", "run1.mcap"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["run1"]


@pytest.mark.parametrize(
    "storage,mode",
    [("mcap", "file"), ("mcap", "message"), ("mcap", "storage"), ("sqlite3", "file"), ("sqlite3", "message")],
)
def test_compressed_bags_are_read(tmp_path, storage, mode):
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    ts = default_typestore()
    String = ts.types["std_msgs/msg/String"]
    path = tmp_path / "z"
    w = Writer(path, version=8, storage_plugin=getattr(StoragePlugin, storage.upper()))
    w.set_compression(getattr(CompressionMode, mode.upper()), CompressionFormat.ZSTD)
    with w:
        c = w.add_connection("/s", "std_msgs/msg/String", typestore=ts)
        for i in range(4):
            w.write(c, 10 + i, ts.serialize_cdr(String(data=f"{i}" * 1000), "std_msgs/msg/String"))
    with BagReader(path) as bag:
        assert [(s, m.data[:2]) for _, s, m in bag.messages()] == [(10 + i, f"{i}" * 2) for i in range(4)]


def test_writer_compress_option(tmp_path):
    from mcap.reader import make_reader

    samples, _ = _sample_messages(default_typestore())
    with BagWriter(tmp_path / "c", compress=True) as bag:
        bag.add_topic("/camera/image", "sensor_msgs/msg/Image")
        for k in range(20):
            bag.write("/camera/image", k, samples["/camera/image"][2])
    with open(tmp_path / "c" / "c.mcap", "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert chunks and all(c.compression == "zstd" for c in chunks)
    with BagReader(tmp_path / "c") as bag:
        got = [m for _, _, m in bag.messages()]
    assert len(got) == 20
    _assert_same(samples["/camera/image"][2], got[-1])


def test_bag_definition_that_differs_from_the_standard_one_wins(tmp_path):
    """A bag from another ROS distribution may define a type differently: decode with the bag's."""
    import struct

    from rosbags.rosbag2 import StoragePlugin, Writer

    path = tmp_path / "other_distro"
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection(
            "/s", "std_msgs/msg/String", msgdef="string data\nint32 extra\n", rihs01="RIHS01_" + "0" * 64
        )
        cdr = b"\x00\x01\x00\x00" + struct.pack("<I", 3) + b"hi\x00" + b"\x00" + struct.pack("<i", -7)
        w.write(c, 5, cdr)
    with BagReader(path) as bag:
        ((_, _, msg),) = bag.messages()
        assert (msg.data, msg.extra) == ("hi", -7)
        assert "sensor_msgs/msg/Image" in bag.typestore.types  # the standard types are still there


def test_kitchen_bag_rewritten_is_byte_identical(kitchen_bag, tmp_path):
    """Decode every real message and write it again: the CDR bytes, stamps and latching survive."""
    out = tmp_path / "copy"
    with BagReader(kitchen_bag) as src, BagWriter(out) as dst:
        for t in src.topics:
            dst.add_topic(t.name, t.type, latched=t.latched)
        for topic, stamp, msg in src.messages():
            dst.write(topic, stamp, msg)
        original = list(src.raw_messages())
    with BagReader(out) as copy:
        assert [(t.name, t.type, t.count, t.latched) for t in copy.topics] == [
            (t.name, t.type, t.count, t.latched) for t in src.topics
        ]
        rewritten = list(copy.raw_messages())
    assert len(rewritten) == len(original) == 201
    # same multiset of records; within one stamp the order of topics may differ
    assert sorted(rewritten) == sorted(original)


def _without_leading_slashes(src, dst):
    """The kitchen bag rewritten with topic names as rosbags (and ROS 1 bags converted by it) may
    store them: ``camera/color/image_raw``, no leading slash; the messages' bytes are unchanged."""
    from rosbags.rosbag2 import Writer

    with BagReader(src) as bag, Writer(dst, version=8) as w:
        conns = {t.name: w.add_connection(t.name.lstrip("/"), t.type, typestore=_STORE) for t in bag.topics}
        for topic, stamp, data in bag.raw_messages():
            w.write(conns[topic], stamp, data)
    return dst


def test_topics_stored_without_a_leading_slash_are_named_as_ros_2_names_them(kitchen_bag, tmp_path):
    """ROS 2 resolves a topic name at the root: ``camera/color/image_raw`` is
    ``/camera/color/image_raw`` to every ROS 2 tool, and that is the name a user passes to
    ``--color-topic``. Such a bag once mapped by discovery, but a named topic was "not in the bag",
    and the check of metadata against storage counted its messages as 0."""
    pytest.importorskip("torch")  # (gs_mapping.mapping loads the mapper, and torch with it)
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    bag_path = _without_leading_slashes(kitchen_bag, tmp_path / "noslash")
    with BagReader(bag_path) as bag:
        assert {t.name: (t.type, t.count) for t in bag.topics} == KITCHEN_TOPICS
        got = [(t, s) for t, s, _ in bag.raw_messages(["/tf_static", "/camera/color/camera_info"])]
    assert {t for t, _ in got} == {"/tf_static", "/camera/color/camera_info"} and len(got) == 51
    for name in ("camera/color/image_raw", "/camera/color/image_raw"):
        cfg = MapperConfig()
        args = map_args(color_topic=name, depth_topic="camera/depth/image_rect_raw")
        assert choose_topics(bag_path, cfg, args) == ""
        t = cfg.topics
        assert (t.color, t.depth, t.camera_info) == (
            "/camera/color/image_raw",
            "/camera/depth/image_rect_raw",
            "/camera/color/camera_info",
        )
