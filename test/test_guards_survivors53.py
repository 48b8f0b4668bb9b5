"""Guards for behaviours a random-sample mutation pass (round 31b, seed 3102, over the ROS glue:
nodes, runtimes, messages, bag, bag_repair, tf, topics, config files and the CLI's run_node, replay,
play, map, world, info, params, router and topic_choice; ~40 of 80 lines drawn with
``random.Random(3102)``, weighted by file length) found unguarded: the channel types of an MCAP
summary without Statistics, compressedDepth's default stamp, the mapper's tf_wait_s boundary for a
frame lacking its CameraInfo, a parameter file over 16 MiB, ``run_node``'s rcl refusal on stderr,
livox points in the native layout (points_array, points_from_cdr), a non-numeric array field through
the rosbags factory and a missing type through the rclpy factory.
Each test compares the component with an independent reference (a hand-built input with a
hand-computed answer, a library that reads the same data, or the rule a doc or docstring states),
so that breaking the line it guards makes it fail."""

from __future__ import annotations

import pytest

# ------------------------------------------------------------------------------------------------
# bag._mcap_statistics: an MCAP summary without a Statistics record still names its channels' types


def _rewrite_without_statistics(path):
    """The MCAP file at ``path`` rewritten by the ``mcap`` library's own writer with the same
    schemas, channels and messages, but no Statistics record (use_statistics=False)."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    with path.open("rb") as f:
        rows = list(make_reader(f).iter_messages())
    out = path.with_suffix(".tmp")
    with out.open("wb") as f:
        w = Writer(f, use_statistics=False)
        w.start(profile="ros2", library="test")
        sids, cids = {}, {}
        for schema, channel, msg in rows:
            if schema.id not in sids:
                sids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
            if channel.id not in cids:
                cids[channel.id] = w.register_channel(
                    channel.topic, channel.message_encoding, sids[schema.id], channel.metadata
                )
            w.add_message(cids[channel.id], msg.log_time, msg.data, msg.publish_time, msg.sequence)
        w.finish()
    out.replace(path)


def test_metadata_renaming_a_topic_is_refused_in_an_mcap_without_statistics(tmp_path):
    """bag.py:1016 ``return None, types`` -> ``return None, {}``: _mcap_statistics gives 'each
    channel's topic -> its schema's name' even where the summary has no Statistics record (the
    ``mcap`` writer's use_statistics=False). So a metadata.yaml renaming /tf_static to /renamed is
    still refused ('BagError where metadata.yaml names a topic ... the storage does not hold'); with
    the channels dropped the bag opened, listing /renamed. The reference: the channels the ``mcap``
    library itself reads from the rewritten file."""
    import yaml
    from hostile_cases import _tf_bag
    from mcap.reader import make_reader

    from gs_mapping.bag import BagReader
    from gs_mapping.errors import BagError

    bag = _tf_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = bag.glob("*.mcap")
    _rewrite_without_statistics(mcap_file)
    with mcap_file.open("rb") as f:
        summary = make_reader(f).get_summary()
    assert summary.statistics is None
    assert sorted(c.topic for c in summary.channels.values()) == ["/tf", "/tf_static"]
    with BagReader(bag) as b:  # (as written: it opens, /tf_static's one message counted)
        assert {t.name: t.count for t in b.topics} == {"/tf": 20, "/tf_static": 1}
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    (t,) = [
        x
        for x in meta["rosbag2_bagfile_information"]["topics_with_message_count"]
        if x["topic_metadata"]["name"] == "/tf_static"
    ]
    t["topic_metadata"]["name"] = "/renamed"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(BagError, match="metadata.yaml names topic '/renamed' \\(1 messages\\)"):
        BagReader(bag).open()


# ------------------------------------------------------------------------------------------------
# messages.compressed_depth.numpy_to_compressed_depth: no stamp given -> the zero time


def test_compressed_depth_without_a_stamp_has_the_zero_time():
    """compressed_depth.py:218 ``stamp_ns: int = 0`` -> ``= 1``: a message built without a stamp
    carries the ROS zero time (builtin_interfaces/Time's fields default to 0: sec 0, nanosec 0), not
    1 ns; the same as an explicit ``stamp_ns=0``, and ``stamp_ns=1_500_000_001`` gives sec 1,
    nanosec 500000001 (written out by hand)."""
    import numpy as np

    from gs_mapping.messages.compressed_depth import numpy_to_compressed_depth

    mm = np.full((2, 3), 1000, np.uint16)
    stamp = numpy_to_compressed_depth(mm).header.stamp
    assert (int(stamp.sec), int(stamp.nanosec)) == (0, 0)
    stamp = numpy_to_compressed_depth(mm, stamp_ns=1_500_000_001).header.stamp
    assert (int(stamp.sec), int(stamp.nanosec)) == (1, 500_000_001)


# ------------------------------------------------------------------------------------------------
# mapper_node.on_pair: a frame waiting for its CameraInfo may wait tf_wait_s, the end included


def test_a_frame_waiting_for_its_camera_info_waits_tf_wait_s_inclusive():
    """mapper_node.py:333 ``now - waited_since > wait_ns`` -> ``>=``: a queued frame waits
    ``mapper_node.tf_wait_s`` (README: 0.5 s, as tf2's message filter) for what it lacks; the same
    instant the node still lets it wait for its transform (``now - waited_since <= wait_ns``), so at
    exactly 0.5 s (a replay's /clock lands on it: frames 0.1 s apart) a frame still lacking its
    CameraInfo waits on; 1 ns later it is dropped (one frame counted). By hand: 500_000_000 ns."""
    import numpy as np

    pytest.importorskip("torch")  # (the mapper node builds a mapper: not in the Humble run)

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    node = MapperNode(bus.context("mapper_node"), cfg)
    assert node.node_cfg.tf_wait_s == 0.5  # (README's default)
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    t0 = 10**9

    def header(frame, stamp):
        return intrinsics_to_camera_info(
            CameraIntrinsics(32, 24, K, frame_id=frame), bus.factory, stamp_ns=stamp
        ).header

    color, depth = (header("color", t0),), (header("depth", t0),)
    bus.now_ns = t0 + 500_000_000  # waited exactly tf_wait_s
    node.on_pair(color, depth, waited_since=t0)
    assert [w[2] for w in node._waiting] == [t0]
    assert not node.diag.summary()["dropped"]
    node._waiting.clear()
    bus.now_ns = t0 + 500_000_001  # 1 ns past it: dropped, no CameraInfo
    node.on_pair(color, depth, waited_since=t0)
    assert not node._waiting
    assert node.diag.summary()["dropped"] == {"frames": 1}


# ------------------------------------------------------------------------------------------------
# config_file.parameter_entries: a file beyond the 16 MiB limit is a ConfigError, not a crash


def test_a_parameter_file_beyond_16_mib_is_refused_naming_it(tmp_path):
    """config_file.py:97 ``raise ConfigError(f"{exc}: too large for a parameter file")`` -> ``pass``:
    a parameter file is a few kB ('a larger one is not one': 16 << 20 = 16_777_216 bytes). A file
    one byte past it (sparse: its size is what is checked, before reading) is one ConfigError line
    naming the file and saying it is too large, not an UnboundLocalError; the same file cut to a
    few bytes reads."""
    import os

    from gs_mapping.config_file import parameter_entries
    from gs_mapping.errors import ConfigError

    p = tmp_path / "params.yaml"
    p.write_text("/**:\n  ros__parameters:\n    a: 1\n")
    assert parameter_entries(p) == [("/**", {"a": 1})]
    os.truncate(p, 16 * 1024 * 1024 + 1)
    with pytest.raises(ConfigError, match="too large for a parameter file") as err:
        parameter_entries(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# rclpy_runtime.run_node: rcl refusing the command line is one line on stderr, exit status 2


@pytest.fixture(scope="module")
def ros():
    """rclpy on the test stand-in (test/rclpy_standin.py), as test_outside_ros2_nodes.py uses it."""
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


def test_rcl_refusing_the_command_line_is_one_line_on_stderr(ros, capsys, monkeypatch):
    """rclpy_runtime.py:390 ``file=sys.stderr`` -> ``file=sys.stdout``: where ``rclpy.init`` fails
    (rcl's RCLInvalidROSArgsError for ``--ros-args -p`` with no rule: its message, then the C
    file and line), ``ros2 run`` prints 'map_receiver_node: cannot start: <rcl's first line>' on
    stderr (a diagnostic: stdout is the program's output) and exits 2, the docstring's 'one line
    and exit status 2'. Nothing goes to stdout."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    said = "Couldn't parse trailing -p flag. No parameter rule provided."

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{said}, at ./src/rcl/arguments.c:394\n")

    monkeypatch.setattr(ros, "init", refuse)
    assert run_node(MapReceiverNode, ["n", "--ros-args", "-p"], ros.Context()) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [f"map_receiver_node: cannot start: {said}, at ./src/rcl/arguments.c:394"]


# ------------------------------------------------------------------------------------------------
# messages.livox.points_array: one little-endian CDR_POINT array, itself where it is one


def test_points_array_is_little_endian_custom_points_and_itself_where_it_is_one():
    """livox.py:149 ``points.dtype == CDR_POINT`` -> ``!=``: the docstring says 'one little-endian
    CDR_POINT array (itself where it is one)'. livox_ros_driver2's CustomPoint, by hand: u32
    offset_time, f32 x y z, u8 reflectivity tag line. A big-endian array of those (numpy's own
    '>' dtype, as a big-endian CDR stream gives) comes back as the little-endian layout with the same
    values; an array already in that layout comes back as the very same object (no copy)."""
    import numpy as np

    from gs_mapping.messages.livox import points_array

    little = np.dtype(
        {
            "names": ["offset_time", "x", "y", "z", "reflectivity", "tag", "line"],
            "formats": ["<u4", "<f4", "<f4", "<f4", "u1", "u1", "u1"],
            "offsets": [0, 4, 8, 12, 16, 17, 18],
            "itemsize": 20,
        }
    )
    pts = np.zeros(2, little)
    pts["offset_time"] = [0, 100_000]
    pts["x"], pts["y"], pts["z"] = [1.5, -2.0], [0.25, 3.0], [4.0, -0.5]
    pts["reflectivity"], pts["tag"], pts["line"] = [10, 200], [0, 16], [1, 5]
    assert points_array(pts) is pts
    big = pts.astype(little.newbyteorder(">"))
    got = points_array(big)
    assert got.dtype == little
    for name in little.names:
        np.testing.assert_array_equal(got[name], pts[name], err_msg=name)


# ------------------------------------------------------------------------------------------------
# messages.factory: a value numpy cannot make a number array of is a MessageError naming the field


def test_a_field_value_that_is_not_numbers_is_a_message_error_naming_the_field():
    """factory.py:216 ``raise MessageError(f"{typename}.{name}: cannot convert to ...")`` -> ``pass``:
    sensor_msgs/JointState's ``position`` is float64[] (the ROS message definition); numpy itself
    refuses to make float64 of ['fast'] (ValueError) or [object()] (TypeError). The factory says so as
    one MessageError naming the type, the field and the element type, not an UnboundLocalError."""
    import numpy as np

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.factory import RosbagsFactory

    f = RosbagsFactory()
    assert list(f.make("sensor_msgs/msg/JointState", position=[0.5, 1]).position) == [0.5, 1.0]
    for bad in (["fast"], [object()]):
        with pytest.raises((TypeError, ValueError)):
            np.asarray(bad, dtype=np.float64)
        with pytest.raises(
            MessageError, match=r"sensor_msgs/msg/JointState\.position: cannot convert to float64\[\]"
        ):
            f.make("sensor_msgs/msg/JointState", position=bad)


def test_big_endian_cdr_points_are_read_into_the_native_layout():
    """livox.py:176 ``return out if order == "<" else points_array(out)`` -> ``order != "<"``:
    points_from_cdr gives 'a native structured array' whatever the stream's byte order. Two
    CustomPoints packed by hand with ``struct`` (CDR: each 19 bytes, the next 4-aligned at 20), once
    little- and once big-endian, read back as the same values in the little-endian layout."""
    import struct

    import numpy as np

    from gs_mapping.messages.livox import points_from_cdr

    rows = [(0, 1.5, 0.25, 4.0, 10, 0, 1), (100_000, -2.0, 3.0, -0.5, 200, 16, 5)]
    for order in "<>":
        data = b"".join(struct.pack(f"{order}IfffBBB", *r) + b"\0" for r in rows)[:-1]
        got = points_from_cdr(b"\0" * 4 + data, 4, 2, order)
        assert got.dtype.fields["x"][0] == np.dtype("<f4") and got.dtype.fields["offset_time"][0] == np.dtype(
            "<u4"
        )
        assert [tuple(p.item()) for p in got] == rows, order


# ------------------------------------------------------------------------------------------------
# messages.factory.RclpyFactory: a type its package does not have is a MessageError, as a package
# that is not installed is


def test_rclpy_factory_names_a_type_missing_from_an_installed_package(ros):
    """factory.py:287 ``except (ImportError, AttributeError)`` -> ``except (ImportError,)``:
    std_msgs is installed (the stand-in's rosidl modules: std_msgs.msg.String is there) but has no
    message 'Strin' (a typo in a topic's type): ``getattr(std_msgs.msg, 'Strin')`` is an
    AttributeError in Python itself. The factory says 'cannot import message type ...' as one
    MessageError, the same as for a package that is not installed at all."""
    import importlib

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.factory import RclpyFactory

    RclpyFactory._class.cache_clear()
    msg_module = importlib.import_module("std_msgs.msg")
    assert hasattr(msg_module, "String") and not hasattr(msg_module, "Strin")
    f = RclpyFactory()
    assert f.make("std_msgs/msg/String", data="x").data == "x"
    for typename in ("std_msgs/msg/Strin", "nosuch_msgs/msg/String"):
        with pytest.raises(MessageError, match=f"cannot import message type '{typename}' through rclpy"):
            f.make(typename, data="x")
    RclpyFactory._class.cache_clear()
