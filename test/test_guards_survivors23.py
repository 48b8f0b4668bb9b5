"""Guards for behaviours a mutation-testing pass (23rd round) found unguarded in the parameter-file
reader (rcl_yaml_param_parser's typing of a plain scalar, node keys, dotted names), the nodes' time
jump rule, temp names beside a long output, the numeric CLI options' edges (play --rate, hd-eval
--indent, --duration), the fleet merge's sequence bound and the map server's restore of a vehicle
log, hd-eval regions, the bag reader's storage counts, the PLY reader's float32 notice,
hd-predict's ground-truth stamps, the Predictor's undistortion and hd_map_node.tf_wait_s.
Each test compares the component with an independent reference (rcl's ``get_value`` re-done with
glibc's own strtoll/strtod through ctypes, OpenCV's undistort, numpy's float32 rounding, the rule a
docstring, parameter description or option message states, or a hand-computed answer), so that
breaking the line it guards makes it fail. Three of them found where the reader differed from rcl
(a hex double beyond range, an underflow, ``nan(n)``), fixed since."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math

import pytest

# ------------------------------------------------------------------------------------------------
# config_file: a plain scalar typed as rcl types it (parse.c get_value), against C's own parsers

# parse.c's word lists, copied from get_value
_RCL_TRUE = ("Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
_RCL_FALSE = ("N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
_RCL_YAML_FLOATS = tuple(f"{s}.{w}" for s in ("", "+", "-") for w in ("inf", "Inf", "INF")) + (
    ".nan",
    ".NaN",
    ".NAN",
)


def _libc():
    name = ctypes.util.find_library("c")
    if name is None or "libc.so" not in name:  # glibc's strtoll/strtod: what rcl links on Linux
        pytest.skip("glibc not found")
    libc = ctypes.CDLL(name, use_errno=True)
    libc.strtoll.restype, libc.strtod.restype = ctypes.c_longlong, ctypes.c_double
    libc.strtoll.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    libc.strtod.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    return libc


def _rcl_get_value(text: str):
    """parse.c ``get_value`` for a plain scalar, re-done step by step with glibc's strtoll(…, 0) and
    strtod: a value only when errno stays 0 and the whole text is consumed."""
    if text in _RCL_TRUE or text in _RCL_FALSE:
        return text in _RCL_TRUE
    libc, raw = _libc(), text.encode()

    def whole(fn, arg, *extra):
        buf = ctypes.create_string_buffer(arg)
        end = ctypes.c_char_p()
        ctypes.set_errno(0)
        value = fn(buf, ctypes.byref(end), *extra)
        consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buf)
        return value, ctypes.get_errno() == 0 and raw != b"" and 0 < consumed == len(arg)

    value, ok = whole(libc.strtoll, raw, 0)
    if ok:
        return int(value)
    if text in _RCL_YAML_FLOATS:  # strtod of the letters after the dot, the sign put back
        value = libc.strtod(text.lstrip("+-.").encode(), None)
        return -value if text.startswith("-") else value
    value, ok = whole(libc.strtod, raw)
    return float(value) if ok else text


# plain scalars where each of _rcl_scalar's branches decides: strtoll's bases and sign, int64's
# edges, YAML's .inf/.nan words, strtod's decimal and hex forms
_PLAIN = [
    "0x1A",
    "0X1f",
    "-0x10",
    "017",
    "-017",
    "0",
    "08",
    "-42",
    "+7",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "0x7fffffffffffffff",
    "0x8000000000000000",
    ".inf",
    "-.Inf",
    "+.INF",
    ".NaN",
    "5e-4",
    "1.5",
    ".5",
    "1e308",
    "inf",
    "-Infinity",
    "0x1p-2",
    "0x1.8p1",
    "-0x.8",
    "1e999",
    "abc",
    "0x",
    "1_000",
    *_RCL_TRUE,
    *_RCL_FALSE,
    "yES",
    "t",
]


@pytest.mark.parametrize("text", _PLAIN)
def test_a_plain_scalar_is_typed_as_rcl_get_value_types_it(text):
    from gs_mapping.config_file import rcl_yaml

    got = rcl_yaml(f"v: {text}")["v"]
    want = _rcl_get_value(text)
    assert type(got) is type(want), (text, got, want)
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want, (text, got, want)


def test_a_double_that_underflows_is_a_string_as_rcl_reads_it():
    from gs_mapping.config_file import rcl_yaml

    # glibc strtod("1e-400") returns 0 with errno ERANGE, so get_value falls through to a string
    assert _rcl_get_value("1e-400") == "1e-400"
    assert rcl_yaml("v: 1e-400")["v"] == "1e-400"
    # so does an inexact subnormal result (glibc: ERANGE below DBL_MIN when rounded)
    assert _rcl_get_value("1e-310") == "1e-310"
    assert rcl_yaml("v: 1e-310")["v"] == "1e-310"


def test_strtods_nan_with_a_payload_is_a_double_as_rcl_reads_it():
    from gs_mapping.config_file import rcl_yaml

    assert math.isnan(_rcl_get_value("nan(123)"))  # C99 strtod: NAN(n-char-sequence)
    assert isinstance(rcl_yaml("v: nan(123)")["v"], float)


def test_a_hex_double_beyond_float_range_is_read_not_a_traceback(tmp_path):
    from gs_mapping.config_file import read_parameters

    assert _rcl_get_value("0x1p99999") == "0x1p99999"  # strtod's ERANGE: rcl keeps the string
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    v: 0x1p99999\n")
    assert read_parameters(p) == {"v": "0x1p99999"}


def test_an_empty_value_is_none_and_null_words_and_quoted_ones_stay_strings():
    """_RclLoader's docstring: an empty value that is not quoted is None (rcl: "No value"); rcl has
    no null, so ``~`` and ``null`` are strings; quoted scalars stay strings. (This asserted ``~`` and
    ``null`` as None before: rcl_yaml_param_parser reads the strings, test_outside_ros2_real5.py.)"""
    from gs_mapping.config_file import rcl_yaml

    assert rcl_yaml("a:\nb: ~\nc: ''\nd: '5'\ne: !!str abc\nf: null\ng: \"\"") == {
        "a": None,
        "b": "~",
        "c": "",
        "d": "5",
        "e": "abc",
        "f": "null",
        "g": "",
    }


def test_keys_stay_the_strings_written():
    """rcl reads names as written: a parameter called ``on``, ``y`` or ``1`` is that name, not a
    bool's or an int's spelling."""
    from gs_mapping.config_file import rcl_yaml

    assert rcl_yaml("on: 1\ny: 2\n1: 3\n0x10: 4") == {"on": 1, "y": 2, "1": 3, "0x10": 4}
    f = rcl_yaml("/**:\n  ros__parameters:\n    no: {yes: 1}\n")
    assert f == {"/**": {"ros__parameters": {"no": {"yes": 1}}}}


# ------------------------------------------------------------------------------------------------
# config_file: node keys and dotted names, as rclpy applies them


def test_a_node_key_without_its_leading_slash_names_the_same_node():
    """rclpy (node.cpp): a key's leading '/' is implied — ``mapper_node:`` is ``/mapper_node``."""
    from gs_mapping.config_file import node_key_matches

    assert node_key_matches("mapper_node", "/mapper_node")
    assert node_key_matches("car1/mapper_node", "/car1/mapper_node")
    assert node_key_matches("**", "/car1/mapper_node")
    assert not node_key_matches("mapper_node", "/car1/mapper_node")


def test_a_single_star_is_exactly_one_name_token():
    """rclpy: ``/*`` stands for one token, ``/**`` for any number (none included)."""
    from gs_mapping.config_file import node_key_matches

    assert node_key_matches("/*/mapper_node", "/a/mapper_node")
    assert not node_key_matches("/*/mapper_node", "/a/b/mapper_node")
    assert not node_key_matches("/*/mapper_node", "/mapper_node")
    assert node_key_matches("/**/mapper_node", "/a/b/mapper_node")
    assert node_key_matches("/**/mapper_node", "/mapper_node")


def test_dotted_names_nest_at_any_depth(tmp_path):
    """unflatten_nested: dotted names are nested ones at any depth (rcl reads both)."""
    from gs_mapping.config_file import read_parameters

    p = tmp_path / "p.yaml"
    p.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      optim.lr_means: 0.5\n"
        "      keyframe: {max.gap: 4}\n    mapper.seeding.stride: 8\n"
    )
    assert read_parameters(p) == {
        "mapper": {"optim": {"lr_means": 0.5}, "keyframe": {"max": {"gap": 4}}, "seeding": {"stride": 8}}
    }


def test_a_node_key_holding_an_empty_mapping_is_refused(tmp_path):
    """A node key must lead down to a ``ros__parameters`` mapping; an empty one holds none."""
    from gs_mapping.config_file import read_parameters
    from gs_mapping.errors import ConfigError

    p = tmp_path / "p.yaml"
    p.write_text("/car1: {}\n/**:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ConfigError, match="/car1"):
        read_parameters(p)


# ------------------------------------------------------------------------------------------------
# nodes.base.time_went_back: OLDER_IN_A_ROW frames in a row "each not after the last one taken"


def test_frames_with_the_same_stamp_count_as_not_after_the_last():
    """A second frame in a row whose stamp equals the last one taken is not after it: time went
    back (a bag shorter than TIME_JUMP_S looping onto the same stamps)."""
    from test_guards_survivors9 import _receiver

    from gs_mapping.runtime.replay import ReplayBus

    rx = _receiver(ReplayBus())
    last = 10 * 10**9
    assert rx.time_went_back(last, last) is False  # the first: a late (duplicate) message alone
    assert rx.time_went_back(last, last) is True  # the second in a row: the stamps start over
    assert rx.diag.values["time_jumps"] == 1


def test_after_a_time_jump_the_count_of_older_frames_starts_again():
    """Once time went back, the next older frame is again a lone late message, not a second jump."""
    from test_guards_survivors9 import _receiver

    from gs_mapping.runtime.replay import ReplayBus

    rx = _receiver(ReplayBus())
    last = 10 * 10**9
    assert [rx.time_went_back(last - k * 10**6, last) for k in (1, 2)] == [False, True]
    assert rx.time_went_back(last - 3 * 10**6, last) is False  # counting from 0 again: 1 < 2
    assert rx.diag.values["time_jumps"] == 1


# ------------------------------------------------------------------------------------------------
# output_files.temp_prefix: a name cut inside a multi-byte character


def test_a_long_non_ascii_output_name_is_written_and_its_temp_name_stays_legal(tmp_path):
    """temp_prefix cuts the name in bytes (NAME_MAX = 255); a cut inside a 2-byte character must drop
    the half, not put a 3-byte U+FFFD in its place (the temp name would pass 255 bytes)."""
    from gs_mapping.output_files import temp_prefix, write_bytes

    out = tmp_path / ("\u00e9" * 125 + ".ply")  # 254 bytes: a legal name
    assert len(out.name.encode()) == 254
    prefix = temp_prefix(out, ".", ".tmp.ply")
    assert ("." + out.name).startswith(prefix[:-1]) and "\ufffd" not in prefix
    assert len(prefix.encode()) + 8 + len(b".tmp.ply") <= 255  # tempfile's 8 random characters
    write_bytes(out, b"data")
    assert out.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp left beside it


# ------------------------------------------------------------------------------------------------
# numeric CLI options at their edges: the ranges their messages state


@pytest.mark.parametrize("rate", [1000.5, 1e6, math.inf])
def test_play_rate_above_1000_is_refused_naming_it(rate):
    """play: '--rate: must be in [0.001, 1000]' (a faster rate would only spin)."""
    from gs_mapping.cli import play
    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError, match="--rate"):
        play.run(argparse.Namespace(rate=rate, wait_for_subscribers=0))


@pytest.mark.parametrize("indent", [0, 16])
def test_hd_eval_indent_accepts_both_ends_of_0_to_16(tmp_path, indent):
    """hd-eval --indent: 'indent the printed JSON by 0..16 spaces' — both ends included; the
    output is json.dumps's with that indent."""
    import json
    import os
    import subprocess
    import sys

    from hostile_cases import hd_doc

    f = tmp_path / "sub.json"
    f.write_text(json.dumps(hd_doc()))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "hd-eval", str(f), "--indent", str(indent)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-400:]
    assert r.stdout.strip() == json.dumps(json.loads(r.stdout), indent=indent)


@pytest.mark.parametrize("duration", [0.0, -0.0, math.inf, 1e9])
def test_duration_zero_or_unbounded_is_refused(duration):
    """check_duration: 'None (run until stopped) or seconds > 0' — 0 is no run, and an infinite
    (or 30-year) duration is what None says; a timer of inf seconds is no number of nanoseconds."""
    from gs_mapping.cli.run_node import check_duration
    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError, match="--duration"):
        check_duration(duration)
    check_duration(None)
    check_duration(1e-3)


# ------------------------------------------------------------------------------------------------
# gs_map_share.merge: sequences the fleet store (SQLite's signed 64-bit INTEGER) can record


def _header(seq: int, base_seq: int):
    from gs_map_share.container import Header
    from gs_map_share.quantize import QuantParams

    return Header(
        map_id=1,
        seq=seq,
        base_seq=base_seq,
        gaussians=10,
        state_crc=0,
        sh_degree=0,
        n_levels=1,
        params=QuantParams.from_quality(3),
    )


def test_a_sequence_up_to_sqlites_largest_integer_is_merged_one_beyond_refused():
    from gs_map_share.merge import FleetMerge
    from gs_map_share.quantize import QuantParams

    fm = FleetMerge(QuantParams.from_quality(3), global_map_id=1000000)
    largest = 2**63 - 1  # SQLite INTEGER: signed 8 bytes
    assert fm._check(_header(largest, 0)) is None
    assert fm._check(_header(largest, largest - 1)) is None
    assert "beyond the fleet store" in fm._check(_header(largest + 1, 0))
    # the base sequence is stored too: a (hostile) delta whose base is beyond it is refused
    assert "beyond the fleet store" in fm._check(_header(5, largest + 1))


# ------------------------------------------------------------------------------------------------
# gsmap_hd.region: Region.from_coords refuses what is not its form


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_region_ring_with_a_non_finite_point_is_a_value_error(bad):
    """from_coords: 'ValueError for anything that is not its form' — a point [x, y] of numbers."""
    from gsmap_hd.region import Region

    with pytest.raises(ValueError):
        Region.from_coords("file", [[[0.0, 0.0], [1.0, bad], [1.0, 1.0]]])
    assert Region.from_coords("file", [[[0.0, 0.0], [2.0, 0.0], [2.0, 1.0]]]).area == pytest.approx(1.0)


def test_a_part_without_holes_is_written_as_its_bare_ring():
    """Region.coords: 'one entry per part: its ring [[x, y], ...], or [ring, hole, ...] for a part
    with holes' — hand-built square (closed ring: shapely repeats the first point) and one with a
    hole."""
    from shapely.geometry import Polygon

    from gsmap_hd.region import Region

    sq = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]]
    hole = [[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0], [1.0, 1.0]]
    assert Region("r", Polygon(sq)).coords() == [sq]
    assert Region("r", Polygon(sq, [hole])).coords() == [[sq, hole]]
    assert Region.from_coords("r", [[sq, hole]]).area == pytest.approx(16.0 - 1.0)


# ------------------------------------------------------------------------------------------------
# bag: the storage's own counts, and metadata naming a topic of no message


def _db3(path, topics, messages):
    """A rosbag2 sqlite3 storage file by hand: topics [(id, name, type)], messages [(topic id, t)]."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE topics (id INTEGER PRIMARY KEY, name TEXT, type TEXT)")
    con.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, topic_id INTEGER, timestamp INTEGER)")
    con.executemany("INSERT INTO topics VALUES (?, ?, ?)", topics)
    con.executemany("INSERT INTO messages (topic_id, timestamp) VALUES (?, ?)", messages)
    con.commit()
    con.close()
    return path


def test_a_split_bags_later_file_without_rows_of_a_topic_keeps_its_times(tmp_path):
    """_storage_counts: 'a file in which the topic has no message says nothing of its times' — a
    split bag's second file lists /tf_static with no rows (its MIN is NULL)."""
    from gs_mapping.bag import _storage_counts

    tf, cam = "tf2_msgs/msg/TFMessage", "sensor_msgs/msg/Image"
    a = _db3(tmp_path / "b_0.db3", [(1, "/tf_static", tf), (2, "cam", cam)], [(1, 5), (2, 10), (2, 20)])
    b = _db3(tmp_path / "b_1.db3", [(1, "/tf_static", tf), (2, "cam", cam)], [(2, 30)])
    counts, types = _storage_counts([a, b])
    # hand-computed: (messages, first stamp, last stamp); "cam" is ROS 2's /cam
    assert counts == {"/tf_static": (1, 5, 5), "/cam": (3, 10, 30)}
    assert types == {"/tf_static": tf, "cam": cam}


@pytest.mark.parametrize("size", [0, 7, 8, 20, 36, 45])
def test_a_file_too_short_for_an_mcap_footer_has_no_statistics(tmp_path, size):
    """MCAP: magic (8) + Footer record (9 + 20) + magic (8): a shorter file has no summary to read
    — no statistics, not an error."""
    from gs_mapping.bag import _mcap_statistics

    f = tmp_path / "x.mcap"
    f.write_bytes(b"\x02" * size)
    assert _mcap_statistics(f) == (None, {})


def test_metadata_naming_a_topic_of_no_message_the_storage_lacks_reads_the_bag(tmp_path):
    """_check_names_and_types refuses a topic the storage does not hold only where metadata.yaml
    gives it messages (nothing could be lost): a stale topic of count 0 reads the bag whole."""
    import sqlite3

    import yaml
    from hostile_cases import _tf_bag

    from gs_mapping.bag import BagReader

    bag = _tf_bag(tmp_path / "bag", "sqlite3")
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    topics = meta["rosbag2_bagfile_information"]["topics_with_message_count"]
    stale = {**topics[0], "message_count": 0}
    stale["topic_metadata"] = {**topics[0]["topic_metadata"], "name": "/stale"}
    topics.append(stale)
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    (db,) = bag.glob("*.db3")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    with BagReader(bag) as b:
        assert sum(1 for _ in b.raw_messages()) == rows


# ------------------------------------------------------------------------------------------------
# map_server_node._restore: a vehicle log that does not chain is one store error


@pytest.mark.parametrize(
    "tamper, why",
    [
        ("DELETE FROM vehicle_log WHERE base_seq = 0", "no snapshot to start from"),
        (
            "DELETE FROM vehicle_log WHERE seq = (SELECT min(seq) FROM vehicle_log WHERE base_seq != 0)",
            "applies to",
        ),
    ],
    ids=["no_snapshot", "gap"],
)
def test_a_vehicle_log_that_does_not_chain_is_one_store_error(tmp_path, tamper, why):
    """docs/fleet.md, Restart: every vehicle map is rebuilt from its log — a snapshot, then deltas
    each on the sequence before it. A log without its snapshot, or with a delta missing, cannot
    rebuild the map: one FleetStoreError naming the file, not a wrong map."""
    import sqlite3

    from test_outside_fleet import _server, _store_with_vehicle

    from gs_map_share.fleet_store import FleetStoreError
    from gs_mapping.runtime.replay import ReplayBus

    store, _ = _store_with_vehicle(tmp_path)
    db = sqlite3.connect(store)
    assert db.execute(tamper).rowcount == 1
    db.commit()
    db.close()
    with pytest.raises(FleetStoreError, match=why) as exc:
        _server(ReplayBus(), store)
    assert store.name in str(exc.value)


# ------------------------------------------------------------------------------------------------
# predict_bag._ground_truth: a ground-truth String's stamp is a ROS time (int64 nanoseconds >= 0)


@pytest.mark.parametrize(
    "doc",
    [
        {"stamp_ns": True, "vectors": []},
        {"stamp_ns": -1, "vectors": []},
        {"stamp_ns": 2**63, "vectors": []},
        {"stamp_ns": 1.5, "vectors": []},
        {"stamp_ns": 5, "vectors": {"pts": []}},
        [1, 2],
    ],
    ids=["bool", "negative", "beyond_int64", "fraction", "vectors_not_a_list", "not_an_object"],
)
def test_a_ground_truth_string_that_lies_is_a_message_error(doc):
    from gs_mapping.errors import MessageError
    from gsmap_hd.predict_bag import GT_TOPIC, _ground_truth

    with pytest.raises(MessageError, match=GT_TOPIC):
        _ground_truth(doc)


def test_a_ground_truth_stamp_written_as_a_whole_float_is_that_integer():
    """JSON writers that keep every number a double write 5 as 5.0: the same stamp; int64's ends
    are kept exactly."""
    from gsmap_hd.predict_bag import _ground_truth

    vec = [{"pts": [[0, 0], [1, 0]], "type": 0}]
    assert _ground_truth({"stamp_ns": 5.0, "vectors": vec}) == (5, vec)
    assert _ground_truth({"stamp_ns": 2**63 - 1, "vectors": []}) == (2**63 - 1, [])
    assert _ground_truth({"stamp_ns": 0, "vectors": []}) == (0, [])


# ------------------------------------------------------------------------------------------------
# ply: positions' float32 loss said (more than 1 mm), non-finite ones left to clamp_nonfinite;
# unit_rotations of no Gaussian


def _double_ply(path, x):
    plyfile = pytest.importorskip("plyfile")
    import numpy as np

    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    v = np.zeros(len(x), [(m, "<f8") for m in names])
    v["x"] = x
    v["scale_0"] = v["scale_1"] = v["scale_2"] = -3.0
    v["rot_0"] = 1.0
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(path))
    return path


def _float32_loss_said(caplog, path) -> bool:
    import logging

    from gs_mapping.ply import load_ply

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_ply(path)
    return any("in float32" in r.getMessage() for r in caplog.records)


def test_double_positions_losing_a_few_millimetres_in_float32_are_said(tmp_path, caplog):
    """warn_float32_positions: 'lose more than a millimetre' is said. Near 1e5 m float32 keeps steps
    of 2**-7 m (numpy: the loss below is 3.9 mm); near 1 m it keeps 1e-7 m (nothing said)."""
    import numpy as np

    far = 1e5 + np.array([0.0, 0.0039, 0.5, 0.7])
    assert np.abs(far.astype(np.float32) - far).max() > 1e-3  # the reference, by numpy
    assert _float32_loss_said(caplog, _double_ply(tmp_path / "far.ply", far))
    near = 1.0 + np.array([0.0, 0.0039, 0.5, 0.7])
    assert np.abs(near.astype(np.float32) - near).max() < 1e-6
    assert not _float32_loss_said(caplog, _double_ply(tmp_path / "near.ply", near))


def test_a_double_position_beyond_float32_is_not_a_float32_precision_loss(tmp_path, caplog):
    """'(beyond float32: clamp_nonfinite's to say)': a 1e40 among exact positions is refused by that
    rule (one MapError naming the Gaussian), not said as positions that lose precision."""
    import logging

    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply

    path = _double_ply(tmp_path / "big.ply", [0.0, 1.5, 2.25, 1e40])
    with caplog.at_level(logging.WARNING), pytest.raises(MapError, match="Gaussian 3"):
        load_ply(path)
    assert not any("in float32" in r.getMessage() for r in caplog.records)


def test_unit_rotations_of_no_gaussian_is_empty():
    """An empty scene (0 vertices) has no rotation to refuse: an empty (0, 4) float32 array."""
    import numpy as np

    from gs_mapping.ply import unit_rotations

    out = unit_rotations(np.zeros((0, 4)), "empty.ply")
    assert out.shape == (0, 4) and out.dtype == np.float32


# ------------------------------------------------------------------------------------------------
# hd_map_node.tf_wait_s: '0: no wait'


def test_hd_lanes_with_tf_wait_0_do_not_wait_for_a_pose_served_after_the_image(tmp_path):
    """hd_map_node.tf_wait_s's description: 'A frame whose map pose has not arrived yet waits this
    long ... 0: no wait'. /tf served after the image of its stamp (rclpy's executor order): with 0
    no frame's lanes wait for it — each is counted as without a map pose, none is fused."""
    from test_guards_survivors22 import _bag_messages
    from test_outside_ros2_nodes import _hd_lane_deltas, _tf_after_images

    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    write_bag(Drive.make(3, 3, "front", (256, 144)), tmp_path / "w", progress=False)
    msgs = _bag_messages(tmp_path / "w")
    hd, deltas = _hd_lane_deltas(_tf_after_images(msgs), tf_wait_s=0.0)
    frames = sum(1 for t, _, _ in msgs if t.endswith("image_raw"))
    assert frames == 3
    assert hd.diag.dropped["lane_map_no_map_pose"] == frames and deltas == []


# ------------------------------------------------------------------------------------------------
# gsmap_hd.infer._pinhole: a distorted camera's raw image made pinhole (OpenCV's undistort as the
# reference), a pinhole one's kept


def _smooth_image():
    import numpy as np

    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    return cv2, cv2.GaussianBlur((rng.random((120, 160, 3)) * 255).astype(np.uint8), (9, 9), 3)


def test_a_camera_info_without_a_model_is_plumb_bob_as_opencv_undistorts_it():
    """CameraInfo's usual model (and the default where a calibration names none) is plumb_bob, which
    is OpenCV's k1 k2 p1 p2 k3: cv2.undistort with the same K is the reference."""
    import numpy as np

    from gsmap_hd.infer import _pinhole

    cv2, im = _smooth_image()
    K = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
    d = np.array([-0.2, 0.05, 0.001, -0.001, 0.0])
    out = _pinhole(im, {"D": list(d)}, K, 0)
    ref = cv2.undistort(im, K, d)
    diff = np.abs(out.astype(int) - ref.astype(int))[10:-10, 10:-10]
    assert diff.max() <= 2 and diff.mean() < 0.2  # (the raw image differs from it by ~4 on average)
    assert np.abs(im.astype(int) - ref.astype(int))[10:-10, 10:-10].mean() > 2


def test_a_camera_with_all_zero_distortion_is_kept_as_it_is():
    """_pinhole: 'a pinhole camera's image as it is' — D all zeros is a pinhole camera (ROS
    CameraInfo of a rectified stream), not an error."""
    import numpy as np

    from gsmap_hd.infer import _pinhole

    _, im = _smooth_image()
    K = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
    for cam in ({"D": [0.0] * 5, "distortion_model": "plumb_bob"}, {"d": []}, {}):
        assert np.array_equal(_pinhole(im, cam, K, 0), im)


def test_ros_parameters_at_the_top_level_without_a_node_key_is_refused(tmp_path):
    """rcl's layout: node names (and namespaces) down to ``ros__parameters``; a file that starts
    with ``ros__parameters:`` names no node (rcl refuses it) and is one ConfigError."""
    from gs_mapping.config_file import read_parameters
    from gs_mapping.errors import ConfigError

    p = tmp_path / "p.yaml"
    p.write_text("ros__parameters:\n  mapper: {max_gaussians: 5}\n")
    with pytest.raises(ConfigError, match=str(p)):
        read_parameters(p)
