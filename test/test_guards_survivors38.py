"""Guards found by mutation testing (seed 2412063; 40 lines drawn from gs_mapping's nodes/,
runtime/, sync, tf, bag, bag_repair, topics and config_file modules): each test here fails on a
mutant that no existing test noticed, and checks the real behaviour against something outside the
code under test: the MCAP specification read through the ``mcap`` library, Cyclone DDS's own
matching and status counts, eclipse-zenoh's own queryable, rmw's namespace rules, tf2's lookup
direction, the README's promises for errors and waiting nodes, or a hand computation.
No known bug was found on these lines (no ``xfail``)."""

# no `from __future__ import annotations`: Cyclone resolves IdlStruct annotations at run time
import zlib

import pytest


# -- bag.py seal_mcap: the chunk CRC ------------------------------------------------------------------
def _write_small_bag(path, compress: bool):
    pytest.importorskip("rosbags.rosbag2")
    from gs_mapping.bag import BagWriter

    with BagWriter(path, compress=compress) as bag:
        bag.add_topic("/chatter", "std_msgs/msg/String")
        String = bag.typestore.types["std_msgs/msg/String"]
        for i in range(5):
            bag.write("/chatter", 1_000_000_000 + i * 1_000_000, String(data=f"hello {i}" * 7))
    return sorted(path.glob("*.mcap"))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
def test_mcap_chunks_carry_their_size_and_crc_as_the_mcap_spec_lays_them_out(tmp_path, compress):
    """Outside: the MCAP specification (mcap.dev/spec, "Chunk (op=0x06)": message_start_time u64,
    message_end_time u64, uncompressed_size u64, uncompressed_crc u32, compression, records), read
    through the ``mcap`` library's own record parser, and ``zlib.crc32`` (the spec's CRC-32).
    Why: ``BagWriter`` seals the CRCs rosbags' writer leaves at zero by patching them in place; a
    patch at the wrong offset overwrote half of ``uncompressed_size`` with the CRC and left the CRC
    zero (which readers take as "not computed"), and no reader-based test noticed. Every chunk must
    say its true uncompressed size and a non-zero CRC-32 of its records."""
    mcap_stream = pytest.importorskip("mcap.stream_reader")
    from mcap.records import Chunk, DataEnd

    files = _write_small_bag(tmp_path / "bag", compress)
    assert files
    chunks = 0
    for f in files:
        raw = f.read_bytes()
        with f.open("rb") as fh:
            records = list(mcap_stream.StreamReader(fh, emit_chunks=True).records)
        for r in records:
            if isinstance(r, Chunk):
                chunks += 1
                if r.compression == "zstd":
                    import zstandard

                    body = zstandard.ZstdDecompressor().decompress(r.data, max_output_size=1 << 26)
                else:
                    assert r.compression == ""
                    body = r.data
                assert r.uncompressed_size == len(body)
                assert r.uncompressed_crc != 0
                assert r.uncompressed_crc == zlib.crc32(body)
            if isinstance(r, DataEnd):
                # spec: CRC-32 of all bytes in the data section (from the magic to the DataEnd record)
                data_end_at = raw.rfind(b"\x0f\x04\x00\x00\x00\x00\x00\x00\x00")
                assert data_end_at > 0
                assert r.data_section_crc == zlib.crc32(raw[:data_end_at])
    assert chunks >= 1


# -- runtime/dds.py: incompatible-QoS warnings name the policy as Cyclone numbers it ----------------
_DDS_DOMAIN = 211  # not used by the other DDS tests


def _cyclone_string_type():
    """std_msgs/msg/String as rmw_cyclonedds names it, written here (not our dds_types)."""
    import dataclasses

    from cyclonedds.idl import IdlStruct

    @dataclasses.dataclass
    class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
        data: str

    return String_


def test_an_exclusive_ownership_writer_is_named_ownership_in_the_warning(caplog):
    """Outside: Cyclone DDS itself decides the match and reports the policy on the reader's
    requested-incompatible-QoS status by its ``dds_qos_policy_id_t`` (DDS 1.4 numbering:
    DDS_OWNERSHIP_QOS_POLICY_ID = 6; 7 is OWNERSHIPSTRENGTH, never incompatible). A writer offering
    EXCLUSIVE ownership never matches a ROS reader (SHARED, the only kind rmw offers); the
    warning must name OWNERSHIP (as Cyclone's own policy-name table does), not 'unknown'.
    Why: the id-to-name table was only exercised for RELIABILITY, DURABILITY and
    DATA_REPRESENTATION; a shifted OWNERSHIP id went unnoticed."""
    pytest.importorskip("cyclonedds")
    import logging
    import time

    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    String_ = _cyclone_string_type()
    ctx = DdsContext("s38_own", domain_id=_DDS_DOMAIN)
    got = []
    ctx.create_subscription("/gs_s38/own", "std_msgs/msg/String", QoS(reliable=True, depth=10), got.append)
    dp = DomainParticipant(_DDS_DOMAIN)
    qos = Qos(
        Policy.Reliability.Reliable(0),
        Policy.Ownership.Exclusive,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )
    writer = DataWriter(dp, Topic(dp, "rt/gs_s38/own", String_), qos=qos)
    try:
        with caplog.at_level(logging.WARNING):
            end = time.monotonic() + 3.0
            while time.monotonic() < end and not any(
                "incompatible" in r.getMessage().lower() for r in caplog.records
            ):
                writer.write(String_(data="x"))
                ctx.spin_once(0.05)
        said = [r.getMessage() for r in caplog.records]
        assert not got  # Cyclone's rule: no match
        assert any("/gs_s38/own" in m and "Last incompatible policy: OWNERSHIP" in m for m in said), said
    finally:
        ctx.close()
        del writer, dp


# -- bag.py BagReader.open: a refused bag leaves no repaired copy behind --------------------------
def test_a_split_bag_refused_after_its_repair_leaves_no_copy_in_tmpdir(tmp_path, monkeypatch):
    """Outside: the file system. A split recording (two .mcap files listed in metadata.yaml, as
    ``ros2 bag record --max-bag-size`` writes them) whose first file was cut short (a killed
    recorder: no footer) is read through a repaired copy in $TMPDIR; when rosbags then refuses its
    second file (a damaged MCAP magic), the open fails with one BagError, and the copy
    must go with it, at once (the error's traceback keeps the reader alive: a caller that logs the
    exception and carries on must not keep a copy of the whole recording in $TMPDIR, nor its lock).
    Why: the cleanup on this path could be dropped with no test noticing."""
    import shutil
    import tempfile

    import yaml

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    src = tmp_path / "src"
    _write_small_bag(src, compress=False)
    (mcap,) = sorted(src.glob("*.mcap"))
    bag = tmp_path / "split"
    bag.mkdir()
    a, b = bag / "split_0.mcap", bag / "split_1.mcap"
    data = mcap.read_bytes()
    a.write_bytes(data[: len(data) // 2])  # cut inside the data: no summary, no footer
    damaged = bytearray(data)
    damaged[1:5] = b"XXXX"  # its leading magic (MCAP spec: \x89MCAP0\r\n): rosbags refuses the file
    b.write_bytes(bytes(damaged))
    meta = yaml.safe_load((src / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    info["relative_file_paths"] = [a.name, b.name]
    one = info["files"][0]
    info["files"] = [dict(one, path=a.name), dict(one, path=b.name)]
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))

    troot = tmp_path / "tmp"
    troot.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(troot))
    with pytest.raises(BagError) as err:
        BagReader(bag).open()
    assert "cannot open bag" in str(err.value)
    left = sorted(p.name for p in troot.iterdir())
    del err
    assert left == []
    shutil.rmtree(troot, ignore_errors=True)


# -- map_server_node.vehicles: the refusal names the file -------------------------------------------
def test_a_vehicle_namespace_rcl_refuses_is_named_with_its_parameter_file(tmp_path):
    """Outside: rmw_validate_namespace (rmw/src/validate_namespace.c) refuses '-' in a namespace,
    so no vehicle can publish under ``truck-7``; and the README's promise for bad input: one line
    naming the file, topic, frame or field. A parameter file listing it must be refused by
    ``gs-mapping run map_server_node --config FILE`` with exit 2 and one line that names the file,
    the field and the entry. Why: only the bare check was tested; the file's name could be dropped
    from the message (a fleet operator with several parameter files then cannot tell which)."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = tmp_path / "fleet_server.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"/**": {"ros__parameters": {"map_server_node": {"vehicles": ["vehicle1", "truck-7"]}}}}
        )
    )
    env = dict(os.environ, HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "run", "map_server_node", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert str(cfg) in lines[0] and "map_server_node.vehicles" in lines[0] and "'truck-7'" in lines[0]
    assert list(tmp_path.iterdir()) == [cfg]  # refused before any store was created


def test_a_dds_publisher_counts_only_the_subscriptions_matched_now():
    """Outside: Cyclone DDS's publication-matched status (DDS 1.4 2.2.4.1: ``current_count`` is
    the readers matched now, ``total_count`` every reader ever matched) and rclpy's
    ``Publisher.get_subscription_count`` (rcl_publisher_get_subscription_count: the readers matched
    now). A ``ros2 topic echo`` that joins and quits must leave the count at 0 again. Why: the
    count could read the cumulative total and no test noticed (the mapper's 'subscriber joined:
    send a snapshot' rule and the receivers' rate bound read it)."""
    pytest.importorskip("cyclonedds")
    import time

    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    def wait_for(cond, seconds=5.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not cond():
            ctx.spin_once(0.05)
        return cond()

    String_ = _cyclone_string_type()
    domain = _DDS_DOMAIN + 2
    ctx = DdsContext("s38_count", domain_id=domain)
    pub = ctx.create_publisher("/gs_s38/count", "std_msgs/msg/String", QoS(reliable=True, depth=5))
    dp = DomainParticipant(domain)
    try:
        assert pub.subscription_count() == 0
        qos = Qos(Policy.Reliability.Reliable(0), Policy.DataRepresentation(use_cdrv0_representation=True))
        reader = DataReader(dp, Topic(dp, "rt/gs_s38/count", String_), qos=qos)
        assert wait_for(lambda: pub.subscription_count() == 1)
        del reader  # (cyclonedds deletes the entity with its Python object: the echo quits)
        import gc

        gc.collect()
        assert wait_for(lambda: pub.subscription_count() == 0), pub.subscription_count()
    finally:
        ctx.close()
        del dp


# -- bag.py: metadata.yaml that misstates counts ----------------------------------------------------
def test_every_topic_whose_count_metadata_misstates_is_named_with_the_storage_count(tmp_path, caplog):
    """Outside: the ``mcap`` library's own reading of the storage (every message record counted by
    channel). A metadata.yaml copied from another take of the same drive (same topics, same total,
    counts shuffled between three topics) misstates all three; the reader takes the storage's
    counts and its one warning names each of the three topics with the count the storage holds.
    Why: the warning's list could be cut shorter with no test noticing; a user comparing with
    ``ros2 bag info`` must see every topic whose count is not what metadata.yaml says."""
    import logging

    import yaml

    pytest.importorskip("rosbags.rosbag2")
    mcap_reader = pytest.importorskip("mcap.reader")
    from gs_mapping.bag import BagReader, BagWriter

    bag = tmp_path / "bag"
    counts = {"/a": 2, "/b": 3, "/c": 4}
    with BagWriter(bag) as w:
        String = w.typestore.types["std_msgs/msg/String"]
        for t in counts:
            w.add_topic(t, "std_msgs/msg/String")
        k = 0
        for t, n in counts.items():
            for _ in range(n):
                w.write(t, 1_000_000_000 + k * 10_000_000, String(data=t))
                k += 1
    (storage,) = sorted(bag.glob("*.mcap"))
    truth: dict[str, int] = {}
    with storage.open("rb") as f:
        for _schema, channel, _msg in mcap_reader.make_reader(f).iter_messages():
            truth[channel.topic] = truth.get(channel.topic, 0) + 1
    assert truth == counts

    lied = {"/a": 3, "/b": 4, "/c": 2}  # same total (9): only the three topics disagree
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    for tm in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        tm["message_count"] = lied[tm["topic_metadata"]["name"]]
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))

    with caplog.at_level(logging.WARNING), BagReader(bag) as r:
        assert {t.name: t.count for t in r.topics} == truth
        assert r.message_count == sum(truth.values())
    said = [rec.getMessage() for rec in caplog.records if "metadata.yaml" in rec.getMessage()]
    assert len(said) == 1, said
    for t, n in truth.items():
        assert f"{t}: {lied[t]} messages (storage: {n})" in said[0], said[0]


# -- runtime/zenoh_runtime.py ZenohContext.get: a reply's attachment -------------------------------
def test_a_zenoh_query_reply_keeps_the_attachment_a_real_zenoh_queryable_sent():
    """Outside: eclipse-zenoh itself: a plain Zenoh session (no gs_mapping code) declares a
    queryable under ``<domain>/s38/q`` and replies with a payload and an attachment
    (``Query.reply(key, payload, attachment=...)``); ``ZenohContext.get('s38/q')`` must hand both
    back, byte for byte, with the replier's key. Why: the attachment of replies was never checked
    (our own queryables send none), and dropping it went unnoticed; a foreign server that carries
    metadata there (as rmw_zenoh carries its sequence/gid attachment) would lose it."""
    zenoh = pytest.importorskip("zenoh")
    import socket
    import time

    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp/127.0.0.1:{port}"
    domain = 57
    router = run_router([endpoint])
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("connect/endpoints", f'["{endpoint}"]')
    conf.insert_json5("scouting/multicast/enabled", "false")
    other = zenoh.open(conf)
    ctx = None
    try:
        key = f"{domain}/s38/q"

        def on_query(query):
            query.reply(key, b"answer", attachment=b"\x00meta\xff")

        queryable = other.declare_queryable(key, on_query)
        ctx = ZenohContext("s38_querier", domain_id=domain, connect=[endpoint])
        replies = []
        end = time.monotonic() + 15
        while time.monotonic() < end and not replies:
            replies = [r for r in ctx.get("s38/q", timeout_s=2.0) if r.ok]
        assert len(replies) == 1, replies
        (r,) = replies
        assert (r.key, r.payload, r.attachment) == (key, b"answer", b"\x00meta\xff")
        queryable.undeclare()
    finally:
        if ctx is not None:
            ctx.close()
        other.close()
        router.close()


# -- tf.py: a failed lookup names the frames in the lookup's direction --------------------------------
def test_a_failed_lookup_names_target_and_source_the_way_round_tf2_does():
    """Outside: tf2's ``lookupTransform(target_frame, source_frame, time)`` (tf2/buffer_core.h:
    the transform that takes data from source_frame into target_frame), whose extrapolation
    error says "when looking up transform from frame [source] to frame [target]". Our message writes
    the same lookup as ``target <- source``: for a camera looked up in ``odom`` past the end of the
    odometry it must read ``odom <- camera``, never ``camera <- odom`` (the other lookup), and name
    the edge that ran out as its TF message has it (parent -> child). Why: the direction in the
    message could be swapped with no test noticing; a user debugging TF then reads the inverse."""
    import numpy as np

    from gs_mapping.errors import ExtrapolationError
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.tf import TFBuffer

    S = 1_000_000_000
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    tf = TFBuffer()
    for k in range(3):
        tf.add(TransformStamped("odom", "base_link", k * S, Transform(np.array([k, 0.0, 0.0]), identity)))
    tf.add(TransformStamped("base_link", "camera", 0, Transform(np.zeros(3), identity)), static=True)
    with pytest.raises(ExtrapolationError) as err:
        tf.lookup("odom", "camera", 100 * S)
    text = str(err.value)
    assert "odom <- camera" in text and "camera <- odom" not in text, text
    assert "odom -> base_link" in text, text


# -- mapper_node: waiting for an unregistered depth camera's CameraInfo ---------------------------
def test_a_mapper_missing_only_the_depth_cameras_info_says_it_waits_for_it():
    """Outside: the README ("A node waiting for a topic says so on the console (and in
    /diagnostics, waiting_for)") and a hand reasoning: an unregistered depth image cannot be put
    into the colour camera without the depth camera's own intrinsics (that is what
    ``mapper.topics.depth_camera_info`` is for), so with colour, depth, the colour CameraInfo and TF
    all in and only the depth camera's CameraInfo missing, no frame is mapped and the node's
    waiting list names exactly that topic. Why: dropping it from the list went unnoticed (a user
    then sees a node mapping nothing and waiting for nothing)."""
    pytest.importorskip("torch")  # (the mapper)
    import numpy as np
    from hostile_cases import tf_message

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, numpy_to_image
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    S = 1_000_000_000
    stamp = 1 * S
    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    t = cfg["mapper"].topics
    t.depth_camera_info = "/camera/depth/camera_info"
    node = MapperNode(bus.context("mapper_node"), cfg)
    f = bus.factory
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    bus.inject(
        t.camera_info,
        intrinsics_to_camera_info(CameraIntrinsics(32, 24, K, frame_id="cam"), f, stamp_ns=stamp),
        stamp,
    )
    bus.inject("/tf_static", tf_message(f, 0, "map", "cam", 0.0), stamp)
    bus.inject("/tf_static", tf_message(f, 0, "map", "depth_cam", 0.04), stamp)
    rgb = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    depth = np.full((24, 32), 1500, np.uint16)
    for k in range(3):
        s = stamp + k * S // 10
        bus.inject(t.color, numpy_to_image(rgb, "rgb8", s, "cam", f), s)
        bus.inject(t.depth, numpy_to_image(depth, "16UC1", s, "depth_cam", f), s)
    bus.advance(stamp + 2 * S)
    assert node.mapper.stats.frames == 0
    waiting = node.waiting_for()
    assert waiting == ["depth camera_info on /camera/depth/camera_info"], waiting


def _tf_z(f, stamp: int, parent: str, child: str, z: float):
    """A TFMessage of one transform ``parent → child``, ``z`` metres along z, no rotation."""
    from gs_mapping.messages.factory import make_header

    t = f.make(
        "geometry_msgs/msg/TransformStamped",
        header=make_header(stamp, parent, f),
        child_frame_id=child,
        transform=f.make(
            "geometry_msgs/msg/Transform",
            translation=f.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=z),
            rotation=f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
        ),
    )
    return f.make("tf2_msgs/msg/TFMessage", transforms=[t])


def test_aligned_depth_of_a_moving_camera_whose_camera_info_names_no_frame_is_moved_to_the_colour_time():
    """Outside: a hand computation. A camera drives at 2 m/s along its optical axis towards a wall
    parallel to the image (5 m from the map origin); its aligned depth (librealsense's: registered
    to colour, stamped with the depth frame's own time) was taken 15 ms before the colour image. At
    the depth's time the wall is 5 - 2.000 = 3.000 m away; at the colour's 5 - 2.030 = 2.970 m, which
    is what the colour camera's image must carry. Here the colour CameraInfo leaves ``frame_id``
    empty (as some drivers do) and the images name the optical frame: the colour image's frame is
    the one to move by. Why: the node could pass no colour frame to the registration (it then falls
    back on the CameraInfo's empty one and leaves the depth 30 mm off) with no test noticing."""
    pytest.importorskip("torch")  # (the mapper)
    import numpy as np

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, numpy_to_image
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    MS = 1_000_000
    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    t = cfg["mapper"].topics
    node = MapperNode(bus.context("mapper_node"), cfg)
    frames = []
    add_frame = node.mapper.add_frame

    def spy(frame):
        frames.append(frame)
        return add_frame(frame)

    node.mapper.add_frame = spy
    f = bus.factory
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    info = intrinsics_to_camera_info(CameraIntrinsics(32, 24, K, frame_id=""), f, stamp_ns=900 * MS)
    bus.inject(t.camera_info, info, 900 * MS)
    for ms in range(900, 1101, 5):  # map -> cam: z = 2 m/s * t
        bus.inject(t.tf, _tf_z(f, ms * MS, "map", "cam", 2.0 * ms / 1000), ms * MS)
    rgb = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    depth = np.full((24, 32), 3000, np.uint16)  # mm: the wall 3.000 m away at the depth's time
    bus.inject(t.depth, numpy_to_image(depth, "16UC1", 1000 * MS, "cam", f), 1000 * MS)
    bus.inject(t.color, numpy_to_image(rgb, "rgb8", 1015 * MS, "cam", f), 1015 * MS)
    bus.advance(1100 * MS)
    assert len(frames) == 1, node.diag.rejected
    d = np.asarray(frames[0].depth, dtype=float)[6:18, 8:24]  # the interior (the warp zooms in)
    d = d[np.isfinite(d) & (d > 0)]
    assert d.size > 100
    np.testing.assert_allclose(np.median(d), 2.970, atol=0.002)
