"""Guards for behaviours a random-sample mutation pass (27th round, seed 2501, over the ROS glue:
bag, tf, topics, config files, messages, runtimes, nodes and the CLI) found unguarded: metadata.yaml
naming a topic the storage does not hold, ``string[]`` fields through the rosbags factory, a TF
message with one bad transform, ``info``'s text for a bag without TF, the mapper's codec quality
range, ``run``'s $ROS_DOMAIN_ID, numpy scalars through the rclpy factory, the encodings an Image
error names, ``seal_mcap`` on a file that is not MCAP, the demo's default output directory, the
mapper node pairing colour and depth within ``sync_slop_s``, the replay's progress total, the HD map
node starting over when a looped bag's time goes back, and ``output_directory`` on a file system
out of inodes.
Each test compares the component with an independent reference (a hand-built input with a
hand-computed answer, the rule a doc, docstring or parameter description states, or the ROS 2
convention), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import numpy as np
import pytest

S = 10**9

# ------------------------------------------------------------------------------------------------
# bag._check_names_and_types: a renamed topic in metadata.yaml is refused, not read under the new name


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_metadata_renaming_a_topic_the_storage_lacks_is_refused(tmp_path, storage):
    """_check_names_and_types: 'BagError where metadata.yaml names a topic ... the storage does not
    hold' (its messages would be lost). A bag whose metadata.yaml renames /tf_static (1 message) to
    /renamed must not open — it opened, listing /renamed, when the check was skipped."""
    import yaml
    from hostile_cases import _tf_bag

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    bag = _tf_bag(tmp_path / "bag", storage)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    (t,) = [
        x
        for x in meta["rosbag2_bagfile_information"]["topics_with_message_count"]
        if x["topic_metadata"]["name"] == "/tf_static"
    ]
    assert t["message_count"] == 1
    t["topic_metadata"]["name"] = "/renamed"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(BagError, match="metadata.yaml names topic '/renamed' \\(1 messages\\)"):
        BagReader(bag).open()


# ------------------------------------------------------------------------------------------------
# messages.factory.RosbagsFactory: a string[] field is a list of str, not a numpy array


def test_a_string_sequence_field_round_trips_through_cdr():
    """sensor_msgs/JointState's ``name`` is string[] (a list of str); the primitive-array path
    (numpy dtypes) is for numbers only. Built, serialised and read back, the names are the same."""
    from gs_mapping.messages import deserialize_cdr, serialize_cdr
    from gs_mapping.messages.factory import RosbagsFactory

    msg = RosbagsFactory().make("sensor_msgs/msg/JointState", name=["hip", "knee"], position=[0.5, -1.0])
    back = deserialize_cdr(serialize_cdr(msg, "sensor_msgs/msg/JointState"), "sensor_msgs/msg/JointState")
    assert list(back.name) == ["hip", "knee"]
    assert np.array_equal(back.position, [0.5, -1.0])


# ------------------------------------------------------------------------------------------------
# tf.TFBuffer.add_message: "(and N more ...)" only where there are more


def test_one_bad_transform_in_a_message_is_named_without_a_count_of_others():
    """add_message: one bad transform among good ones raises its own error alone — '(and 0 more bad
    transforms ...)' would be false — and the good transform is still taken."""
    from hostile_cases import tf_message

    from gs_mapping.errors import TFError
    from gs_mapping.messages.factory import RosbagsFactory
    from gs_mapping.tf import TFBuffer

    f = RosbagsFactory()
    good = tf_message(f, 1 * S, "map", "odom", 1.0).transforms[0]
    bad = tf_message(f, 1 * S, "odom", "base", 0.0).transforms[0]
    bad.transform.translation.x = float("nan")
    tf = TFBuffer()
    with pytest.raises(TFError) as err:
        tf.add_message(f.make("tf2_msgs/msg/TFMessage", transforms=[good, bad]))
    assert "not finite" in str(err.value) and "more bad transforms" not in str(err.value), err.value
    assert tf.frames() == {"odom": "map"}


# ------------------------------------------------------------------------------------------------
# cli.info: the text form says when a bag has no TF at all


def test_info_text_says_a_bag_has_no_tf_tree(tmp_path, capsys):
    """``gs-mapping info BAG`` (text): a bag without /tf or /tf_static still gets its TF line, one
    that says there are none (not a silently missing section)."""
    from gs_mapping.bag import BagWriter
    from gs_mapping.cli import main
    from gs_mapping.messages.factory import RosbagsFactory

    bag = tmp_path / "bag"
    with BagWriter(bag) as w:
        w.add_topic("/chatter", "std_msgs/msg/String")
        w.write("/chatter", 7, RosbagsFactory().make("std_msgs/msg/String", data="hi"))
    assert main(["info", str(bag)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("TF tree:") and "no /tf or /tf_static" in ln for ln in lines), lines


# ------------------------------------------------------------------------------------------------
# nodes.mapper_node: quality is 0 … 5, as the codec takes it


def test_mapper_quality_outside_the_codecs_range_is_a_config_error():
    """mapper_node.quality: 'codec quality 0 (smallest) … 5 (finest)' — gs_map_share's encoder takes
    0..5 and refuses 6, so a parameter file's quality 6 must be refused when it is read, not when
    the first snapshot is encoded."""
    from gs_mapping.config_file import from_dict
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.mapper_node import MapperNodeConfig

    assert from_dict(MapperNodeConfig, {"quality": 5}).quality == 5
    assert from_dict(MapperNodeConfig, {"quality": 0}).quality == 0
    for bad in (6, -1):
        with pytest.raises(ConfigError, match="quality"):
            from_dict(MapperNodeConfig, {"quality": bad}, where="mapper_node")


# ------------------------------------------------------------------------------------------------
# cli.run_node: no --domain-id means $ROS_DOMAIN_ID (the ROS 2 convention)


def test_run_without_domain_id_takes_ros_domain_id(monkeypatch):
    """`gs-mapping run`'s --domain-id: 'default: $ROS_DOMAIN_ID or 0', as every ROS 2 node does.
    With ROS_DOMAIN_ID=7 and no option, the context joins domain 7; an option wins over it."""
    import argparse

    from gs_mapping.cli.run_node import add_arguments, make_context

    p = argparse.ArgumentParser()
    add_arguments(p)
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    for argv, want in ((["mapper_node"], 7), (["mapper_node", "--domain-id", "3"], 3)):
        ctx = make_context(p.parse_args(argv), "probe_node")
        try:
            assert ctx.domain_id == want
        finally:
            ctx.close()


# ------------------------------------------------------------------------------------------------
# messages.factory.RclpyFactory: numpy scalars become Python scalars (rosidl's setters want them)


def test_rclpy_factory_takes_numpy_integer_scalars(fake_rclpy_messages):
    """RclpyFactory._coerce: 'int fields [reject] numpy ints' in rosidl_generator_py, so a numpy
    scalar (an array's shape element, a np.uint32 stamp) is made a Python int; the stand-in classes
    enforce rosidl's setter checks."""
    from gs_mapping.messages import RclpyFactory

    f = RclpyFactory()
    msg = f.make("sensor_msgs/msg/RegionOfInterest", x_offset=np.uint32(3), height=np.int64(4))
    assert type(msg.x_offset) is int and msg.x_offset == 3 and msg.height == 4
    stamp = f.make("builtin_interfaces/msg/Time", sec=np.int32(5), nanosec=np.uint32(6))
    assert (stamp.sec, stamp.nanosec) == (5, 6)


@pytest.fixture
def fake_rclpy_messages(monkeypatch):
    from test_messages_rclpy_factory import fake_rclpy_messages as fixture

    yield from fixture.__wrapped__(monkeypatch)


# ------------------------------------------------------------------------------------------------
# messages.image: the unsupported-encoding error lists every named encoding that works


def test_unknown_encoding_error_names_every_named_encoding_that_is_supported():
    """encoding_layout's error lists the supported encodings; each plain name of ROS's
    sensor_msgs/image_encodings.hpp that numpy_to_image really takes (checked by a round trip)
    must be in that list, or the user is told a working encoding is unsupported."""
    from gs_mapping.errors import MessageError
    from gs_mapping.messages import image_to_numpy, numpy_to_image

    with pytest.raises(MessageError) as err:
        numpy_to_image(np.zeros((2, 2), np.uint8), "nv12")
    listed = str(err.value).split("supported:")[1]
    names = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
    names.update({"mono16": 1, "rgb16": 3, "bgr16": 3, "rgba16": 4, "bgra16": 4})
    for name, ch in names.items():
        dtype = np.uint16 if name.endswith("16") else np.uint8
        a = np.arange(2 * 3 * ch, dtype=dtype).reshape((2, 3, ch) if ch > 1 else (2, 3))
        assert np.array_equal(image_to_numpy(numpy_to_image(a, name)), a), name
        assert f" {name}," in listed, (name, listed)


# ------------------------------------------------------------------------------------------------
# bag.seal_mcap: only a file ending in an MCAP footer is touched


def test_seal_mcap_refuses_a_file_without_an_mcap_footer(tmp_path):
    """seal_mcap: 'no MCAP footer where expected; cannot seal' — an MCAP file ends in a Footer
    record (opcode 0x02, 29 bytes) and the 8-byte magic. A file of text ends in neither: it is
    refused and left byte for byte as it was."""
    from gs_mapping.bag import seal_mcap
    from gs_mapping.errors import BagError

    f = tmp_path / "x.mcap"
    data = b"not an mcap file at all; " * 8
    f.write_bytes(data)
    with pytest.raises(BagError, match="no MCAP footer"):
        seal_mcap(f)
    assert f.read_bytes() == data


# ------------------------------------------------------------------------------------------------
# cli.demo: --out defaults to out (README: make demo → out/report.md)


def test_demo_writes_to_out_by_default():
    """`demo [--out DIR]`, 'output directory (default: out)'; README: the demo → out/report.md."""
    from gs_mapping.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.out == "out"


# ------------------------------------------------------------------------------------------------
# nodes.mapper_node: colour and depth within topics.sync_slop_s are one frame


@pytest.mark.parametrize(("offset_ms", "frames"), [(10, 1), (40, 0)])
def test_mapper_pairs_colour_and_cloud_within_the_sync_slop(offset_ms, frames):
    """mapper.topics.sync_slop_s (message_filters' ApproximateTime slop): a cloud 10 ms after the
    colour image pairs with it at a 20 ms slop (one frame); 40 ms after it does not."""
    from hostile_cases import tf_message
    from test_guards_survivors20 import COLOR, _lidar_mapper, _points_per_pixel

    from gs_mapping.messages import array_to_pointcloud2, numpy_to_image

    stamp = 1 * S
    bus, node = _lidar_mapper(stamp, sync_slop_s=0.02)
    f = bus.factory
    bus.inject("/tf_static", tf_message(f, 0, "map", "cam", 0.0), stamp)
    rgb = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    late = stamp + offset_ms * 10**6
    bus.inject(COLOR, numpy_to_image(rgb, "rgb8", stamp, "cam", f), stamp)
    bus.inject("/lidar/points", array_to_pointcloud2(_points_per_pixel(), late, "cam", factory=f), late)
    assert node.mapper.stats.frames == frames


# ------------------------------------------------------------------------------------------------
# runtime.replay.ReplayBus.run: the progress bar counts the messages it will feed


def test_replay_progress_total_is_the_messages_fed(tmp_path, capsys, monkeypatch):
    """ReplayBus.run(progress=True): the bar's total is the number of messages it feeds — the
    subscribed topic's 3 and the 2 /tf messages it copies (record_inputs) — not those of other
    topics in the bag (2 on /other). (stderr is no terminal here: progress lines, one a tenth.)"""
    monkeypatch.setenv("GS_MAPPING_PROGRESS_INTERVAL", "0")
    from hostile_cases import tf_message

    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.messages.factory import RosbagsFactory
    from gs_mapping.runtime.replay import ReplayBus

    f = RosbagsFactory()
    bag = tmp_path / "bag"
    with BagWriter(bag) as w:
        w.add_topic("/chatter", "std_msgs/msg/String")
        w.add_topic("/other", "std_msgs/msg/String")
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        for i in range(3):
            w.write("/chatter", (i + 1) * S, f.make("std_msgs/msg/String", data=str(i)))
        for i in range(2):
            w.write("/other", (i + 1) * S, f.make("std_msgs/msg/String", data="x"))
            w.write("/tf", (i + 1) * S, tf_message(f, (i + 1) * S, "map", "base", float(i)))
    got = []
    bus = ReplayBus()
    bus.subscribe("/chatter", got.append)
    with BagReader(bag) as r:
        summary = bus.run(r, progress=True)
    assert len(got) == 3 and summary.input_messages == 5
    err = capsys.readouterr().err
    assert "/5 " in err and "/7 " not in err, err


# ------------------------------------------------------------------------------------------------
# nodes.hd_map_node: a bag played in a loop is taken again once time goes back


@pytest.fixture(scope="module")
def hd_world_bag(tmp_path_factory):
    """test_guards_survivors8's drive: 3 frames of the front camera, 256 x 144."""
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd27") / "world"
    write_bag(Drive.make(3, 3, "front", (256, 144)), out, progress=False)
    return out


def test_hd_map_node_starts_its_frames_over_when_time_goes_back(hd_world_bag):
    """on_frame: 'time went back ... frames start over' (nodes.base.time_went_back, ``ros2 bag play
    --loop``). The drive played 60 s into the recording, then with its own stamps again: the second
    pass is taken frame for frame (as many lane documents as the first), none dropped as 'not after
    the previous frame's'."""
    from test_guards_survivors22 import _bag_messages, _node
    from test_hostile_nodes import _shifted

    hd, bus, out = _node()
    msgs = [m for m in _bag_messages(hd_world_bag) if m[0] in bus.subscribers]  # (inputs only)
    for topic, stamp, msg in msgs:
        later = msg if topic == "/tf_static" else _shifted(msg, 60)
        bus.inject(topic, later, stamp + 60 * S)
    n = len(out["docs"])
    assert n == 3 and not hd.diag.dropped
    for topic, stamp, msg in msgs:
        if topic != "/tf_static":
            bus.inject(topic, msg, stamp + 61 * S)  # (the bus's clock only goes forward)
    assert "frames" not in hd.diag.dropped, dict(hd.diag.dropped)
    assert len(out["docs"]) == 2 * n


# ------------------------------------------------------------------------------------------------
# output_files.output_directory: a temp directory that cannot be made is one OutputError


def test_output_directory_on_a_file_system_out_of_inodes_is_an_output_error(tmp_path):
    """output_directory: a file system with no inode left (a real tmpfs of one inode, its root)
    passes check_output's access test, then the temp directory cannot be made (ENOSPC): one
    OutputError naming the output, not an OSError traceback; nothing is left behind."""
    from hostile_fs import _mount, _umount

    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import output_directory

    where = tmp_path / "full"
    if not _mount(where, "size=64k,nr_inodes=1,mode=0755"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        with pytest.raises(OutputError, match=r"full/out: cannot write: no space left"):
            with output_directory(where / "out"):
                pass
        assert list(where.iterdir()) == []
    finally:
        _umount(where)
