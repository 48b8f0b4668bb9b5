"""Guards for behaviours a mutation-testing pass over the ROS 2 wire layer and the bag commands found
unguarded (fifteenth round): REP-2011 type hashes of the field kinds our nodes' types lack (wstring,
bounded wstring), rmw_zenoh's liveliness and QoS strings, the Cyclone DDS runtime's
QoS and discovery message, the wall-clock spin loop, and the ``map`` / ``replay`` / ``play`` /
``info`` commands' options and output. Each test drives the real component and compares it with an
independent reference (rosidl's ``FieldType`` constants as the Jazzy store holds them, rmw_zenoh's
``docs/design.md`` token layout, rmw_dds_common's ``.msg`` layouts, the README / ``--help`` text, a
hand-built bag with a hand-computed answer), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import pytest
from conftest import map_args
from test_guards_survivors3 import _run_play
from test_real_inputs_topics import _topics_only_bag

# ------------------------------------------------------------------------------------------------
# runtime.type_hash: the field kinds none of our nodes' types has (REP-2011)


def _register_idl(idl: str) -> None:
    """Add a test-only type (package ``gs_test15_msgs``) to the Jazzy store the hasher reads."""
    from rosbags.typesys import get_types_from_idl

    from gs_mapping.runtime.type_hash import _typestore

    types = get_types_from_idl(idl)
    store = _typestore()
    store.register({k: v for k, v in types.items() if k not in store.fielddefs})


def _field_type_ids() -> dict[str, int]:
    """rosidl's ``type_description_interfaces/msg/FieldType`` constants, read from the message
    definition itself (not from our table)."""
    from rosbags.typesys import Stores, get_typestore

    consts = get_typestore(Stores.ROS2_JAZZY).fielddefs["type_description_interfaces/msg/FieldType"][0]
    return {name: value for name, _type, value in consts}


def test_wide_string_fields_hash_with_rosidls_field_type_ids():
    """wstring (18), wstring<=N (22, string capacity N), sequence<wstring> (18 + 144) and, beside
    them, string<=N (21): the ids FieldType.msg defines. (rosbags' own hasher has no wstring, and no
    Jazzy type we ship uses one, so the ids come from the constants.)"""
    from gs_mapping.runtime.type_hash import type_description

    _register_idl(
        "module gs_test15_msgs { module msg { struct Wide {"
        " wstring a; wstring<5> b; string<7> c; sequence<wstring> d; sequence<wstring<3>, 4> e; }; }; };"
    )
    ids = _field_type_ids()
    fields = {
        f["name"]: f["type"]
        for f in type_description("gs_test15_msgs/msg/Wide")["type_description"]["fields"]
    }
    assert fields["a"] == {
        "type_id": ids["FIELD_TYPE_WSTRING"],
        "capacity": 0,
        "string_capacity": 0,
        "nested_type_name": "",
    }
    assert fields["b"] == {
        "type_id": ids["FIELD_TYPE_BOUNDED_WSTRING"],
        "capacity": 0,
        "string_capacity": 5,
        "nested_type_name": "",
    }
    assert fields["c"]["type_id"] == ids["FIELD_TYPE_BOUNDED_STRING"] and fields["c"]["string_capacity"] == 7
    assert fields["d"]["type_id"] == ids["FIELD_TYPE_WSTRING_UNBOUNDED_SEQUENCE"]
    assert fields["e"] == {
        "type_id": ids["FIELD_TYPE_BOUNDED_WSTRING_BOUNDED_SEQUENCE"],
        "capacity": 4,
        "string_capacity": 3,
        "nested_type_name": "",
    }


# ------------------------------------------------------------------------------------------------
# runtime.zenoh_wire: rmw_zenoh's QoS strings and tokens (its docs/design.md, rmw/types.h)

# RMW_DURATION_INFINITE (rmw/types.h) is INT64_MAX nanoseconds split into {sec, nsec}
RMW_DURATION_INFINITE = divmod(2**63 - 1, 10**9)


def test_an_infinite_duration_is_rmws_int64_max_and_is_written_empty():
    """rmw_zenoh leaves a QoS component empty when it equals its default, and the default deadline,
    lifespan and liveliness lease are RMW_DURATION_INFINITE = {9223372036, 854775807}: spelled out
    in a token it still means infinite (None), and written back it is empty again."""
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import RmwQos, parse_qos_keyexpr, qos_keyexpr

    sec, nsec = RMW_DURATION_INFINITE
    assert (sec, nsec) == (9223372036, 854775807)
    spelled = f"::,:{sec},{nsec}:{sec},{nsec}:,{sec},{nsec}"
    q = parse_qos_keyexpr(spelled)
    assert (q.deadline, q.lifespan, q.liveliness_lease) == (None, None, None)
    assert qos_keyexpr(RmwQos(deadline=(sec, nsec), lifespan=(sec, nsec), liveliness_lease=(sec, nsec))) == (
        "::,:,:,:,,"
    )
    # one nanosecond short of infinite is a real duration, written out
    assert parse_qos_keyexpr(f"::,:{sec},{nsec - 1}:,:,,").deadline == (sec, nsec - 1)


def test_a_token_with_a_unicode_digit_is_a_message_error():
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_liveliness

    for bad in ("@ros2_lv/0/abc/0/0/NN/%/%/n".replace("/0/abc", "/²/abc"),
                "@ros2_lv/0/abc/0/1/MP/%/%/n/%t/T_/RIHS01_0/::,²:,:,:,,"):  # fmt: skip
        with pytest.raises(MessageError):
            parse_liveliness(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "::1:,:,:,,",  # history without its depth (2 components needed)
        "::,:5:,:,,",  # deadline without nanoseconds
        "::,:,:5:,,",  # lifespan without nanoseconds
    ],
)
def test_a_qos_part_short_of_its_components_is_a_message_error(bad):
    """zenoh_wire: 'rmw_zenoh's checks (6 parts, 2/2/2/3 components)': history,depth and the two
    sec,nsec durations each need two values; one alone is refused with MessageError (not an
    IndexError from the parser)."""
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_qos_keyexpr

    with pytest.raises(MessageError, match="too few"):
        parse_qos_keyexpr(bad)


# ------------------------------------------------------------------------------------------------
# cli.topic_choice / cli.map: which topics `map` takes (README: options choose, else found)

IMG, CINFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"


def _two_cameras_bag(path):
    types = {"/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage"}
    for cam in ("cam_a", "cam_b"):
        types.update(
            {
                f"/{cam}/color/image_raw": IMG,
                f"/{cam}/color/camera_info": CINFO,
                f"/{cam}/depth/image_raw": IMG,
                f"/{cam}/depth/camera_info": CINFO,
            }
        )
    return _topics_only_bag(path, types)


def _mapper_cfg(tmp_path, **topics):
    """The mapper section as `map --config FILE` reads it, FILE naming these topics."""
    from gs_mapping.config_file import load_section
    from gs_mapping.mapping.mapper_config import MapperConfig
    from gs_mapping.nodes.registry import read_parameter_file

    f = tmp_path / "params.yaml"
    lines = "".join(f"        {k}: {v}\n" for k, v in topics.items())
    f.write_text(f"/**:\n  ros__parameters:\n    mapper:\n      topics:\n{lines}")
    return load_section(str(f), "mapper", MapperConfig, read_parameter_file(str(f)))


def test_a_topic_option_wins_over_the_parameter_file(tmp_path):
    """topic_choice: 'names given on the command line win, then those the parameter file sets':
    the file names camera A's colour and depth, --color-topic camera B's colour; colour (and its
    sibling CameraInfo) is B's, depth stays the file's A."""
    from gs_mapping.cli.map import choose_topics

    bag = _two_cameras_bag(tmp_path / "bag")
    cfg = _mapper_cfg(tmp_path, color="/cam_a/color/image_raw", depth="/cam_a/depth/image_raw")
    assert choose_topics(bag, cfg, map_args(color_topic="/cam_b/color/image_raw")) == ""
    t = cfg.topics
    assert (t.color, t.camera_info, t.depth) == (
        "/cam_b/color/image_raw",
        "/cam_b/color/camera_info",
        "/cam_a/depth/image_raw",
    )


def test_camera_info_option_overrides_the_colour_topics_sibling(tmp_path):
    """--camera-info-topic: 'colour CameraInfo (default: the colour topic's sibling)': camera A's
    colour has a sibling camera_info, but the option names a recalibrated one; that one is taken."""
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    types = {
        "/tf": "tf2_msgs/msg/TFMessage",
        "/cam_a/color/image_raw": IMG,
        "/cam_a/color/camera_info": CINFO,
        "/cam_a/depth/image_raw": IMG,
        "/recalibrated/camera_info": CINFO,
    }
    bag = _topics_only_bag(tmp_path / "bag", types)
    cfg = MapperConfig()
    choose_topics(bag, cfg, map_args(camera_info_topic="/recalibrated/camera_info"))
    assert (cfg.topics.color, cfg.topics.camera_info) == (
        "/cam_a/color/image_raw",
        "/recalibrated/camera_info",
    )


def test_replay_refuses_a_cloud_topic_the_parameter_file_names_but_the_bag_lacks(tmp_path):
    """replay: 'a named topic that is missing is an error' (the node would wait for it forever);
    a parameter file that names only mapper_node.cloud_topic names a topic too: on a bag with TF
    alone (no camera either) that is the one-line ConfigError, not a warning and a node that waits."""
    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.registry import node_class

    bag = _topics_only_bag(tmp_path / "bag", {"/tf": "tf2_msgs/msg/TFMessage"})
    f = tmp_path / "params.yaml"
    f.write_text("/**:\n  ros__parameters:\n    mapper_node:\n      cloud_topic: /lidar/points\n")
    nodes = node_class("mapper_node").load_config(str(f))
    assert nodes["mapper_node"].cloud_topic == "/lidar/points"
    with pytest.raises(ConfigError, match="no colour image topic"):
        _discover_mapper_topics(bag, nodes)


@pytest.mark.parametrize("bad", ["5::,:,:,:,,", "::4,:,:,:,,"])
def test_qos_policies_outside_rmws_enums_are_refused(bad):
    """rmw/types.h: reliability 0..4 (…, BEST_AVAILABLE = 4), history 0..3 (SYSTEM_DEFAULT,
    KEEP_LAST, KEEP_ALL, UNKNOWN): a token with reliability 5 or history 4 is no rmw_zenoh token."""
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_qos_keyexpr

    with pytest.raises(MessageError, match="unknown policy value"):
        parse_qos_keyexpr(bad)


def test_a_token_is_read_enclave_then_namespace_then_node():
    """design.md: ``@ros2_lv/<domain>/<zid>/<nid>/<id>/<kind>/<enclave>/<namespace>/<node>/…``, names
    mangled (``/`` → ``%``). A node under namespace /robot1 with an SROS enclave /secure: the
    parser must not mix the two up (both are ``%`` in the document's own examples)."""
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_liveliness

    token = "@ros2_lv/0/aa11/3/7/MP/%secure/%robot1/talker/%robot1%chatter/std_msgs::msg::dds_::String_/RIHS01_0/::,7:,:,:,,"
    e = parse_liveliness(token)
    assert (e.enclave, e.namespace, e.node_name, e.topic) == (
        "/secure",
        "/robot1",
        "talker",
        "/robot1/chatter",
    )
    assert (e.zid, e.node_id, e.entity_id, e.domain_id) == ("aa11", "3", "7", 0)
    assert e.keyexpr == token


@pytest.mark.parametrize("size", [15, 24])
def test_an_attachment_takes_only_a_16_byte_gid(size):
    """The attachment is seq, stamp, then the 16-byte GID (33 bytes): a 15-byte or a Humble-DDS-sized
    24-byte GID would make a sample rmw_zenoh cannot read; encode refuses it."""
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import encode_attachment

    with pytest.raises(MessageError, match="16 bytes"):
        encode_attachment(1, 2, bytes(size))


FAST_MAPPER = (
    "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 16}\n"
    "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
)


@pytest.mark.shared_data
def test_map_options_reach_the_mapper_and_the_summary_is_in_the_units_it_names(
    kitchen_bag, tmp_path, caplog, capsys
):
    """One short `map` run (3 frames, every 2nd held out) with --map-frame and --calibrate-color:
    the kitchen bag's TF has ``map``, so a map frame ``nowhere`` must make the mapper anchor at the
    first pose and say it has no frame 'nowhere' (the option reached it, not the default);
    --calibrate-color must estimate the colour camera (metrics.json's color_calibration is set);
    and the printed summary's 'depth L1 … cm' is metrics.json's depth_l1_m in centimetres, its PSNR
    the held-out PSNR."""
    import json
    import logging

    from gs_mapping.cli import main

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST_MAPPER)
    out = tmp_path / "m"
    argv = [
        "map",
        str(kitchen_bag),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--config",
        str(cfg),
        "--no-progress",
    ]
    argv += ["--max-frames", "3", "--holdout-every", "2", "--map-frame", "nowhere", "--calibrate-color"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert "TF has no frame 'nowhere'" in caplog.text
    m = json.loads((out / "metrics.json").read_text())
    assert m["color_calibration"] is not None
    h = m["heldout"]
    assert h["views"] == 1 and h["depth_l1_m"] is not None
    printed = capsys.readouterr().out
    assert f"depth L1 {100 * h['depth_l1_m']:.1f} cm" in printed, printed
    assert f"held-out PSNR {h['psnr']:.2f} dB" in printed, printed


def test_map_refuses_a_typo_in_a_node_section_of_its_parameter_file(kitchen_bag, tmp_path, capsys):
    """map reads the nodes' sections of --config too, as replay does, so 'a typo there is refused,
    not left unread': an unknown map_receiver_node parameter is a one-line error, exit 2, and no
    output."""
    from gs_mapping.cli import main

    cfg = tmp_path / "typo.yaml"
    cfg.write_text(FAST_MAPPER + "    map_receiver_node:\n      no_such_parameter: 1\n")
    out = tmp_path / "m"
    argv = ["map", str(kitchen_bag), "--out", str(out), "--device", "cpu", "--config", str(cfg)]
    assert main([*argv, "--max-frames", "1", "--holdout-every", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_parameter" in err[0], err
    assert not out.exists()


def test_replay_gives_the_mapper_node_the_cloud_it_found(tmp_path):
    """replay finds the mapper's topics as map does; --cloud-topic's rule '(default: used when the
    bag has one cloud and no depth image)': on a camera + /lidar/points bag the mapper_node is
    given that cloud (else it would wait for a depth image that never comes)."""
    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.nodes.registry import node_class

    types = {
        "/tf": "tf2_msgs/msg/TFMessage",
        "/cameras/front/image_raw": IMG,
        "/cameras/front/camera_info": CINFO,
        "/lidar/points": "sensor_msgs/msg/PointCloud2",
    }
    bag = _topics_only_bag(tmp_path / "bag", types)
    nodes = node_class("mapper_node").load_config(None)
    _discover_mapper_topics(bag, nodes)
    assert nodes["mapper_node"].cloud_topic == "/lidar/points"
    assert nodes["mapper"].topics.color == "/cameras/front/image_raw"


def _last_json(text: str) -> dict:
    import json

    return json.loads(text.strip().splitlines()[-1])


def test_replay_command_finds_the_mappers_camera_in_the_bag(tmp_path, capsys):
    """README: 'without --config the mapper's camera topics are found as map does': `replay --nodes
    mapper_node` on an Azure Kinect layout (topics.py: /rgb/image_raw, registered
    /depth_to_rgb/image_raw) subscribes the mapper to those topics, not to its defaults."""
    from gs_mapping.cli import main

    types = {
        "/tf": "tf2_msgs/msg/TFMessage",
        "/rgb/image_raw": IMG,
        "/rgb/camera_info": CINFO,
        "/depth_to_rgb/image_raw": IMG,
        "/depth_to_rgb/camera_info": CINFO,
    }
    bag = _topics_only_bag(tmp_path / "bag", types)
    assert main(["replay", str(bag), "--out", str(tmp_path / "out"), "--nodes", "mapper_node", "--json"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert {"/rgb/image_raw", "/rgb/camera_info", "/depth_to_rgb/image_raw"} <= set(report["matched_inputs"])


def test_replay_real_time_factor_is_bag_time_over_wall_time(tmp_path, capsys):
    """A real-time factor is bag seconds per wall second (README: 'replay … 0.11× real time' on a
    slow CPU): 1000 s of bag replayed in well under a second is far above 1, and equals
    bag_seconds / wall_seconds of the same report (up to its rounding)."""
    import numpy as np

    from gs_mapping.bag import BagWriter
    from gs_mapping.cli import main
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message

    bag = tmp_path / "bag"
    identity = Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    with BagWriter(bag) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        for stamp in (1_000_000_000, 1_001_000_000_000):  # 1000 s apart
            w.write(
                "/tf",
                stamp,
                transforms_to_tf_message([TransformStamped("map", "base_link", stamp, identity)]),
            )
    assert (
        main(["replay", str(bag), "--out", str(tmp_path / "out"), "--nodes", "map_receiver_node", "--json"])
        == 0
    )
    r = _last_json(capsys.readouterr().out)
    assert r["bag_seconds"] == 1000.0 and 0 < r["wall_seconds"] < 100
    assert r["real_time_factor"] > 10
    # rtf × wall = bag seconds, up to wall_seconds' rounding to 1 ms
    rtf = r["real_time_factor"]
    assert abs(rtf * r["wall_seconds"] - r["bag_seconds"]) <= rtf * 0.0005 + 0.01


# ------------------------------------------------------------------------------------------------
# runtime.dds: rmw_cyclonedds' QoS mapping, seen by a late joiner


def test_a_late_joiner_gets_as_many_latched_samples_as_the_writers_depth():
    """rmw_cyclonedds gives a transient-local writer a durability service with the writer's own
    keep-last depth: a subscriber that joins after three samples on a transient-local keep-last-5
    topic gets all three (tf2's /tf_static relies on it: one latched message per broadcaster), not
    only the last."""
    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    qos = QoS(reliable=True, transient_local=True, depth=5)
    pub_ctx = DdsContext("latcher", domain_id=181)
    pub = pub_ctx.create_publisher("/gs_test15/latched", "std_msgs/msg/String", qos)
    for text in ("a", "b", "c"):
        pub.publish(pub_ctx.factory.make("std_msgs/msg/String", data=text))
    sub_ctx = DdsContext("late", domain_id=181)
    got: list = []
    sub_ctx.create_subscription("/gs_test15/latched", "std_msgs/msg/String", qos, got.append)
    sub_ctx.spin(until=lambda: len(got) >= 3, timeout_s=5)
    sub_ctx.spin(timeout_s=0.3)  # (nothing more may come)
    assert [m.data for m in got] == ["a", "b", "c"]
    sub_ctx.close()
    pub_ctx.close()


def test_spin_once_counts_the_timer_callbacks_it_ran():
    """DdsContext.spin_once: 'dispatch what arrived; returns the number of callbacks run' — timer
    callbacks are callbacks: one due timer, no data, returns 1 (and the timer ran once)."""
    import time

    from gs_mapping.runtime.dds import DdsContext

    ctx = DdsContext("ticker", domain_id=181)
    fired: list = []
    ctx.create_timer(0.01, lambda: fired.append(1))
    time.sleep(0.05)
    assert ctx.spin_once(0.0) == 1 and fired == [1]
    ctx.close()


def test_spin_once_dispatches_everything_that_arrived():
    """spin_once: 'dispatch what arrived': three samples already in the reader's cache are three
    callbacks in one spin, not one per spin."""
    import time

    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.dds import DdsContext

    ctx = DdsContext("batch", domain_id=181)
    got: list = []
    ctx.create_subscription("/gs_test15/batch", "std_msgs/msg/String", RELIABLE_QOS, got.append)
    pub = ctx.create_publisher("/gs_test15/batch", "std_msgs/msg/String", RELIABLE_QOS)
    ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=5)
    for text in ("x", "y", "z"):
        pub.publish(ctx.factory.make("std_msgs/msg/String", data=text))
    time.sleep(0.5)  # delivered into the reader's cache by Cyclone's own threads
    assert ctx.spin_once(1.0) == 3
    assert [m.data for m in got] == ["x", "y", "z"]
    ctx.close()


# ------------------------------------------------------------------------------------------------
# runtime.dds_types: bounds of the ROS 2 definitions reach the wire types


def test_bounded_strings_and_sequences_keep_their_bounds_on_the_wire():
    """rosidl: ``string<=256 node_namespace`` (rmw_dds_common/NodeEntitiesInfo) and ``float64[<=3]
    dimensions`` (shape_msgs/SolidPrimitive) are bounded; the DDS type keeps the bound, so a value
    beyond it cannot be written (rmw_cyclonedds refuses it too), while one at the bound can."""
    from gs_mapping.runtime import dds_types as dt

    ok = dt.make("rmw_dds_common/msg/NodeEntitiesInfo", node_namespace="/" + "a" * 255, node_name="n")
    assert len(dt.serialize(ok)) > 256
    with pytest.raises(Exception, match="node_namespace"):
        dt.serialize(dt.make("rmw_dds_common/msg/NodeEntitiesInfo", node_namespace="/" + "a" * 256))
    assert dt.serialize(dt.make("shape_msgs/msg/SolidPrimitive", type=1, dimensions=[1.0, 2.0, 3.0]))
    with pytest.raises(Exception, match="dimensions"):
        dt.serialize(dt.make("shape_msgs/msg/SolidPrimitive", type=1, dimensions=[1.0, 2.0, 3.0, 4.0]))


def test_a_uint8_array_given_as_wider_numpy_ints_is_written_as_bytes():
    """uint8[] on the wire is one byte per element (CDR: uint32 length, then the bytes): node code
    that hands an int64 numpy array must still produce rosbags' bytes for those values."""
    import numpy as np
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.runtime import dds_types as dt

    values = [1, 2, 200, 255, 0]
    ours = dt.serialize(dt.make("std_msgs/msg/UInt8MultiArray", data=np.array(values, dtype=np.int64)))
    store = get_typestore(Stores.ROS2_HUMBLE)
    M = store.types["std_msgs/msg/UInt8MultiArray"]
    L = store.types["std_msgs/msg/MultiArrayLayout"]
    ref = store.serialize_cdr(
        M(layout=L(dim=[], data_offset=0), data=np.array(values, dtype=np.uint8)), M.__msgtype__
    )
    assert ours == bytes(ref)


@pytest.mark.parametrize("typename", ["sensor_msgs/Image", "a/msg/b/c"])
def test_a_type_name_not_of_three_parts_is_our_error(typename):
    """dds_types: 'message type … is not of the form pkg/msg/Name': a ROS 1 style name or one with
    a part too many is a MessageError, not an IndexError or a wrong DDS name."""
    from gs_mapping.errors import MessageError
    from gs_mapping.runtime.dds_types import dds_type_name

    with pytest.raises(MessageError, match="pkg/msg/Name"):
        dds_type_name(typename)


def test_a_byte_field_takes_exactly_one_byte():
    """rclpy represents a .msg ``byte`` as a 1-byte bytes object (DiagnosticStatus.level): b'\\x02' is
    level 2; two bytes are no byte — refused, not cut to the first."""
    from gs_mapping.errors import MessageError
    from gs_mapping.runtime import dds_types as dt

    assert dt.make("diagnostic_msgs/msg/DiagnosticStatus", level=b"\x02").level == 2
    with pytest.raises(MessageError, match="one byte"):
        dt.make("diagnostic_msgs/msg/DiagnosticStatus", level=b"\x02\x01")


# ------------------------------------------------------------------------------------------------
# runtime.spin_loop: wall-clock timers and the spin-until loop


def test_a_timer_is_not_due_before_its_period_and_says_how_long_to_wait():
    """A 1 s timer, 0.05 s after creation: not due, and the spin may wait the ~0.95 s left (less
    than its 2 s timeout, more than nothing)."""
    import time

    from gs_mapping.runtime.spin_loop import WallTimers

    timers = WallTimers()
    timers.add(1.0, lambda: None)
    time.sleep(0.05)
    assert timers.fire_due() == 0
    assert 0.5e9 < timers.wait_ns(2.0) <= 0.95e9


def test_a_stalled_timer_fires_once_not_in_a_burst():
    """rcl's timers skip the periods a stalled spin missed (rcl_timer_call moves the next call past
    now): a 50 ms timer after a 0.5 s stall runs once, and is not due again straight away."""
    import time

    from gs_mapping.runtime.spin_loop import WallTimers

    timers, fired = WallTimers(), []
    timers.add(0.05, lambda: fired.append(1))
    time.sleep(0.5)
    assert timers.fire_due() == 1
    assert timers.fire_due() == 0 and fired == [1]


def test_spin_with_a_timeout_returns_when_it_passes():
    """spin(timeout_s=0.2) with nothing to do: 'until … timeout_s passes' — back after about 0.2 s,
    not a second later."""
    import time

    from gs_mapping.runtime.spin_loop import spin_until

    calls: list = []
    t0 = time.monotonic()
    spin_until(lambda timeout: (calls.append(timeout), time.sleep(timeout)), None, 0.2)
    elapsed = time.monotonic() - t0
    assert 0.2 <= elapsed < 1.0 and calls


# ------------------------------------------------------------------------------------------------
# cli.play: which topics, with which QoS


def _state_bag(path):
    """/tf (2 messages) and a latched std_msgs/String state topic (1), as a world bag holds them."""
    import numpy as np

    from gs_mapping.bag import BagWriter
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message
    from gs_mapping.messages.factory import RosbagsFactory

    identity = Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    with BagWriter(path) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        w.add_topic("/ground_truth/map_json", "std_msgs/msg/String", latched=True)
        w.write("/ground_truth/map_json", 5, RosbagsFactory().make("std_msgs/msg/String", data="{}"))
        for stamp in (10, 20):
            w.write(
                "/tf",
                stamp,
                transforms_to_tf_message([TransformStamped("map", "base_link", stamp, identity)]),
            )
    return path


def test_play_latches_a_state_topic_the_bag_recorded_latched(tmp_path, monkeypatch):
    """play: tf2's QoS for /tf, 'other latched topics a state' (README: latched where the map is a
    state): a topic recorded transient-local is offered transient-local and reliable, so a
    subscriber that joins later still gets the state."""
    qos, sent, code = _run_play(monkeypatch, [str(_state_bag(tmp_path / "bag"))])
    assert code == 0 and sent == {"/tf": 2, "/ground_truth/map_json": 1}
    state = qos["/ground_truth/map_json"]
    assert state.transient_local and state.reliable
    assert not qos["/tf"].transient_local


def test_play_topics_option_takes_a_comma_and_space_separated_list(tmp_path, monkeypatch):
    """--topics 'comma-separated topics': ``/tf, /ground_truth/map_json`` (a space after the comma,
    as people type lists) plays both topics."""
    bag = _state_bag(tmp_path / "bag")
    qos, sent, code = _run_play(monkeypatch, [str(bag), "--topics", "/tf, /ground_truth/map_json"])
    assert code == 0 and sent == {"/tf": 2, "/ground_truth/map_json": 1}


def test_a_big_endian_cdr_sample_is_decoded_by_its_encapsulation_header():
    """CDR's 4-byte encapsulation header says the byte order (0x0000 big endian, 0x0001 little): a
    sample from a big-endian peer decodes to the same values (rosbags writes the reference)."""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.runtime import dds_types as dt

    store = get_typestore(Stores.ROS2_HUMBLE)
    msg = store.types["std_msgs/msg/String"](data="héllo, big end")
    be = bytes(store.serialize_cdr(msg, "std_msgs/msg/String", little_endian=False))
    assert be[:2] == b"\x00\x00"  # CDR_BE
    assert dt.deserialize(be, "std_msgs/msg/String").data == "héllo, big end"


# ------------------------------------------------------------------------------------------------
# cli.info: the TF tree comes from TF messages only


def test_info_reads_the_tf_tree_only_from_tfmessage_topics(tmp_path, capsys):
    """A bag whose /tf is not tf2_msgs/TFMessage (a String someone recorded under that name): info
    still lists every topic and says there is no TF tree, exit 0 — it does not try to read the
    String as transforms."""
    from gs_mapping.bag import BagWriter
    from gs_mapping.cli import main
    from gs_mapping.messages.factory import RosbagsFactory

    bag = tmp_path / "bag"
    with BagWriter(bag) as w:
        w.add_topic("/tf", "std_msgs/msg/String")
        w.write("/tf", 7, RosbagsFactory().make("std_msgs/msg/String", data="not a transform"))
    assert main(["info", str(bag), "--json"]) == 0
    info = _last_json(capsys.readouterr().out)
    assert info["topics"] == [{"name": "/tf", "type": "std_msgs/msg/String", "count": 1, "latched": False}]
    assert info["tf_frames"] == {} and info["tf_errors"] == []
