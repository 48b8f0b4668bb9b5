"""Uniform mutation survey (seed 38) of src/: tests for the mutants that survived the tests most
related to their module, each checked to fail with its mutant and pass without.

- merge.Spans: past MAX_SPANS, the two nearest earlier spans join, the last two included
  (docs/fleet.md, "Vehicles").
- frames.check_topics (read_frames, check_bag): a colour CameraInfo topic of another type is a
  ConfigError naming the type the bag records for it (read by rosbags).
- GaussianMap.add: explicit ids one short are refused (plyfile reads the saved map unchanged).
- demo.measure.delta_costs: snapshots, duplicates and stale ones pass; deltas counted at their size.
- world --supersample 2.5: argparse's own int refusal.
- gs-mapping params: every default equal to config/full.yaml's (mapper.keyframes,
  map_server_node.republish_on_start, ...).
- the registered-depth warning names options ``map`` has and keys full.yaml has.
- numpy_to_image: the refusal names the (H, W[, C]) layout the encoding needs.
- value_noise2: features of size ``scale`` along y as along x.
- PLY ``float64`` properties are 8 bytes, as plyfile reads them.
- gsmap_hd's metrics-log trim keeps the records past a garbled line.
- container.reseal follows a version 5 container's shorter header (CRC-32C by RFC 3720).
- ``gs-mapping --help info`` prints the top help, as argparse does.
- an interrupted predict_bag names the file its frames were rescued to (json reads it).
"""

from __future__ import annotations

import pytest


# -- gs_map_share/merge.py Spans.start: the nearest two join, wherever they are ------------------------
def test_past_the_bound_the_nearest_two_earlier_spans_join_when_they_are_the_last_two():
    """Outside: docs/fleet.md ("Vehicles"): "At most 64 earlier spans are kept per vehicle; beyond,
    the two nearest join". Spans 1000 apart but the last two only 9 apart, the vehicle restarting
    far above them all: the last two join (a sequence between them is then held, a replay), every
    other gap stays open. (The candidates' last gap left out, the first two joined instead.)"""
    from gs_map_share.merge import MAX_SPANS, Spans

    sp = Spans()
    sp.start(0, None)
    for k in range(1, MAX_SPANS):  # past: (1000 (k - 1), 1000 (k - 1) + 1)
        sp.start(1000 * k, 1000 * (k - 1) + 1)
    last = 1000 * (MAX_SPANS - 1)
    sp.start(last + 10, last + 1)  # span (last, last + 1), then one 9 above it
    assert len(sp.past) == MAX_SPANS
    sp.start(10**9, last + 11)  # MAX_SPANS + 1 earlier spans: the nearest two join
    assert len(sp.past) == MAX_SPANS
    assert sp.past[-1] == (last, last + 11)
    assert sp.in_past(last + 5)  # inside the joined span
    assert not sp.in_past(500) and not sp.in_past(last - 500)  # the 999-wide gaps stay open
    assert sp.past[0] == (0, 1)


# -- gs_mapping/mapping/frames.py check_topics: the colour CameraInfo topic's type ---------------------
def test_read_frames_refuses_a_camera_info_topic_of_another_type_naming_the_bags_own_type(kitchen_bag):
    """Outside: the real 7-Scenes kitchen bag, its topics' types as rosbags' own reader lists them.
    ``read_frames`` and ``check_bag`` (the Python API; the CLI's topic discovery checks first) given
    a colour CameraInfo topic of another type (the bag's /tf) refuse it with a ConfigError naming
    the topic and the type the bag records for it, before any frame. (Left out of check_topics,
    every frame was skipped for want of a CameraInfo, silently.)"""
    pytest.importorskip("torch")  # (gs_mapping.mapping imports it)
    from conftest import use_kitchen_topics
    from rosbags.rosbag2 import Reader

    from gs_mapping.errors import ConfigError
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import MapperConfig, TopicsConfig
    from gs_mapping.mapping.run import check_bag

    with Reader(kitchen_bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types["/tf"] != "sensor_msgs/msg/CameraInfo"
    want = f"camera_info topic /tf is {types['/tf']}, not sensor_msgs/msg/CameraInfo"
    topics = TopicsConfig()
    use_kitchen_topics(topics)
    topics.camera_info = "/tf"
    with pytest.raises(ConfigError, match=want):
        next(iter(read_frames(kitchen_bag, topics)))
    cfg = MapperConfig()
    cfg.topics = topics
    with pytest.raises(ConfigError, match=want):
        check_bag(kitchen_bag, cfg)


# -- gs_mapping/gaussians.py GaussianMap.add: explicit ids, one per Gaussian --------------------------
@pytest.mark.parametrize("extra", [-1, 1], ids=["one_short", "one_over"])
def test_add_refuses_explicit_ids_not_one_per_gaussian_and_the_saved_map_is_unchanged(tmp_path, extra):
    """Outside: plyfile, the reference PLY reader, reads the map saved with its ids after the
    refused add: the vertex count and the ``gs_mapping`` id column are the map's before it. ``ids``
    one fewer (or one more) than the Gaussians given is a MapError, nothing added. (Refused only
    when longer, a short list was taken: a map with fewer ids than Gaussians.)"""
    plyfile = pytest.importorskip("plyfile")
    import numpy as np

    from gs_mapping.gaussians import GaussianMap, MapError
    from gs_mapping.ply import save_ply

    g = GaussianMap(sh_degree=0)
    g.add(
        np.zeros((4, 3)), np.tile([0, 0, 0, 1.0], (4, 1)), np.zeros((4, 3)), np.zeros(4), np.zeros((4, 1, 3))
    )
    before = g.ids.copy()
    n = 3
    ids = np.arange(100, 100 + n + extra, dtype=np.uint64)
    with pytest.raises(MapError, match="explicit ids"):
        g.add(
            np.ones((n, 3)),
            np.tile([0, 0, 0, 1.0], (n, 1)),
            np.zeros((n, 3)),
            np.zeros(n),
            np.zeros((n, 1, 3)),
            ids=ids,
        )
    save_ply(g, tmp_path / "m.ply", keep_ids=True)
    ply = plyfile.PlyData.read(str(tmp_path / "m.ply"))
    assert ply["vertex"].count == 4
    assert ply["gs_mapping"]["id"].astype(np.uint64).tolist() == before.tolist()


# -- gs_mapping/demo/measure.py delta_costs: snapshots, duplicates and stale ones pass ----------------
def test_delta_costs_counts_each_applied_delta_as_a_real_bag_holds_it(tmp_path):
    """Outside: the bag's messages as rosbags' own reader deserialises them, and the synthetic map
    the sender started from. A mapper's bag (snapshot, two deltas, the first delta logged twice, the
    snapshot again late): ``delta_costs`` takes the snapshot, skips the duplicate and the stale
    snapshot, and counts each applied delta at its size in the bag; the map it ends with has the
    sender's Gaussians. (Its status check negated, the first snapshot raised 'a container of the
    sender was snapshot'.)"""
    pytest.importorskip("rosbags.rosbag2")
    import numpy as np
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.bag import BagWriter
    from gs_mapping.demo.measure import delta_costs
    from gs_mapping.messages import bytes_to_uint8_multiarray

    g = synthetic_map(300, 0, seed=38, extent=6.0)
    sender = MapSender.from_map(g, QuantParams.from_quality(3), map_id=7, first_seq=1)
    rng = np.random.default_rng(38)
    snap, deltas = sender.snapshot(), []
    for _ in range(2):
        ids = rng.choice(g.ids, 8, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + np.float32(0.5))
        deltas.append(sender.update(g, g.take_changes())[0])
    snap_t, delta_t = "/mapper_node/map_snapshot", "/mapper_node/map_delta"
    log = [(snap_t, snap), (delta_t, deltas[0]), (delta_t, deltas[0]), (delta_t, deltas[1]), (snap_t, snap)]
    path = tmp_path / "out"
    with BagWriter(path) as bag:
        for t in (snap_t, delta_t):
            bag.add_topic(t, "std_msgs/msg/UInt8MultiArray")
        for k, (t, data) in enumerate(log):
            bag.write(t, 1_000_000_000 + k * 1_000_000, bytes_to_uint8_multiarray(data))
    store = get_typestore(Stores.ROS2_HUMBLE)
    with Reader(path) as reader:
        read = [
            (c.topic, bytes(store.deserialize_cdr(raw, c.msgtype).data)) for c, _, raw in reader.messages()
        ]
    assert read == log
    costs = delta_costs(path)
    assert costs["keyframes"] == 2
    assert costs["delta_bytes"] == [len(d) for t, d in read[1:4:2]]
    assert costs["final_map_gaussians"] == len(g) == 300


# -- gs_mapping/cli/world.py: --supersample is a whole number --------------------------------------------
def test_world_refuses_a_fractional_supersample_as_argparse_refuses_a_non_integer(tmp_path, capsys):
    """Outside: Python's argparse, whose ``type=int`` refusal of '2.5' is the reference text.
    ``world --supersample 2.5`` is that one line, exit 2, no bag made: S x S samples per pixel
    needs a whole S. (Parsed as a float, 2.5 passed the 1..4 check and rendered at 2 unsaid.)"""
    import argparse

    from gs_mapping.cli import main

    ref = argparse.ArgumentParser(prog="x", exit_on_error=False)
    ref.add_argument("--supersample", type=int)
    with pytest.raises(argparse.ArgumentError) as exc:
        ref.parse_args(["--supersample", "2.5"])
    out = tmp_path / "w"
    try:
        rc = main(["world", "--out", str(out), "--frames", "1", "--size", "32x24", "--supersample", "2.5"])
    except SystemExit as stop:  # (argparse's usage errors leave through sys.exit)
        rc = stop.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert str(exc.value) in err, (str(exc.value), err)
    assert not out.exists()


# -- nodes' parameter defaults (mapper_config, map_server_node, ...): config/full.yaml value for value --
def test_params_prints_every_nodes_defaults_as_config_full_yaml_value_for_value(capsys):
    """Outside: config/full.yaml, the documented parameter file (docs and the README point to it):
    ``gs-mapping params`` (the defaults as the nodes declare them) prints every section it holds
    but the trainer's, every value equal. (A default changed in code alone, mapper.keyframes'
    min_translation_m 0.05 or map_server_node's republish_on_start 8, went unnoticed: the
    existing check compared the section names only.)"""
    from pathlib import Path

    import yaml

    from gs_mapping.cli import main

    assert main(["params"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["/**"]["ros__parameters"]
    full = Path(__file__).resolve().parents[1] / "config" / "full.yaml"
    expected = yaml.safe_load(full.read_text())["/**"]["ros__parameters"]
    expected.pop("hd_train")
    assert printed == expected


# -- mapping/frames.py: the options the registered-depth warning names exist --------------------------
def test_the_registered_depth_warning_names_options_map_has(caplog):
    """Outside: ``gs-mapping map``'s own argparse parser (its --help) and config/full.yaml's mapper
    keys. The once-a-process warning that a depth taken as registered names another frame points
    to options: each ``--option`` it names is one ``map`` accepts, each ``mapper.topics.<key>`` a
    key of full.yaml's mapper topics. (A misspelt option passed every test.)"""
    import logging
    import re
    from pathlib import Path

    import yaml

    from gs_mapping.cli import build_parser
    from gs_mapping.mapping import frames

    with caplog.at_level(logging.WARNING):
        frames._say_registered_in_another_frame("depth_frame_38", "color_frame_38")
    text = " ".join(r.getMessage() for r in caplog.records if "depth_frame_38" in r.getMessage())
    assert text, "no warning"
    sub = build_parser()._subparsers._group_actions[0].choices["map"]
    options = set(sub._option_string_actions)
    named = re.findall(r"--[a-z][a-z-]*", text)
    assert named and set(named) <= options, (named, sorted(options))
    full = Path(__file__).resolve().parents[1] / "config" / "full.yaml"
    topics = yaml.safe_load(full.read_text())["/**"]["ros__parameters"]["mapper"]["topics"]
    keys = re.findall(r"mapper\.topics\.([a-z_]+)", text)
    assert keys and set(keys) <= set(topics), (keys, sorted(topics))


# -- messages/image.py numpy_to_image: the shape an encoding needs -------------------------------------
@pytest.mark.parametrize(
    ("encoding", "shape", "want"), [("rgb8", (4, 5), "(H, W, 3)"), ("mono8", (4, 5, 3), "(H, W)")]
)
def test_an_array_of_the_wrong_shape_is_refused_naming_the_shape_the_encoding_needs(encoding, shape, want):
    """Outside: ROS' sensor_msgs/image_encodings.hpp (rgb8 has 3 channels, mono8 one; what
    cv_bridge checks): the refusal names the array's shape and the (H, W[, C]) layout the encoding
    needs. (The needed layout replaced by the array's own shape said nothing useful.)"""
    import numpy as np

    from gs_mapping.errors import MessageError
    from gs_mapping.messages import numpy_to_image

    with pytest.raises(MessageError) as exc:
        numpy_to_image(np.zeros(shape, np.uint8), encoding)
    msg = str(exc.value)
    assert f"which needs {want}" in msg and str(shape) in msg, msg


# -- world/render.py value_noise2: features of size ``scale`` along y as along x --------------------------
def test_value_noise_has_features_of_scale_metres_along_both_axes():
    """Outside: the noise's definition (its docstring; Perlin's value noise): ``value_noise2(x, y,
    s)`` is the unit-feature noise at (x / s, y / s), along y as along x, and swapping the axes of a
    lattice-symmetric point set keeps its statistics. (y left unscaled, the noise along y varied
    s times faster: streaks on the ground.)"""
    import numpy as np

    from gs_mapping.world.render import value_noise2

    rng = np.random.default_rng(38)
    x, y = rng.uniform(-50, 50, 2000), rng.uniform(-50, 50, 2000)
    for s in (0.7, 3.0, 8.0):
        np.testing.assert_allclose(value_noise2(x, y, s, 5), value_noise2(x / s, y / s, 1.0, 5), atol=1e-6)
    # along y, a step of a hundredth of the feature size changes the value little, as along x
    t = np.linspace(0, 40, 4001)
    along_y = np.abs(np.diff(value_noise2(np.zeros_like(t), t, 4.0, 5))).max()
    along_x = np.abs(np.diff(value_noise2(t, np.zeros_like(t), 4.0, 5))).max()
    assert along_y < 0.05 and along_x < 0.05, (along_x, along_y)


# -- ply.py _PLY_TYPES: the float64 alias is 8 bytes --------------------------------------------------------
@pytest.mark.parametrize("name", ["float64", "double"])
def test_a_binary_ply_with_float64_properties_reads_as_plyfile_reads_it(tmp_path, name):
    """Outside: plyfile, the reference PLY reader (and the PLY spec's type list: ``float64`` is
    ``double``, 8 bytes). A binary little-endian element typed ``float64`` reads, value for value,
    as plyfile reads it, and a following element stays in step. (Taken as 4 bytes, the rows were
    misread.)"""
    plyfile = pytest.importorskip("plyfile")
    import numpy as np

    from gs_mapping.ply import read_elements

    rng = np.random.default_rng(38)
    v = np.zeros(5, [("x", "<f8"), ("y", "<f8"), ("z", "<f8")])
    for c in "xyz":
        v[c] = rng.normal(0, 10, 5)
    extra = np.arange(3, dtype="<u4")
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 5\n"
        + "".join(f"property {name} {c}\n" for c in "xyz")
        + "element extra 3\nproperty uint k\nend_header\n"
    )
    path = tmp_path / "f.ply"
    path.write_bytes(header.encode() + v.tobytes() + extra.tobytes())
    ref = plyfile.PlyData.read(str(path))
    elements, _ = read_elements(path.read_bytes(), path)
    for c in "xyz":
        np.testing.assert_array_equal(np.asarray(elements["vertex"][c], np.float64), ref["vertex"][c])
    np.testing.assert_array_equal(np.asarray(elements["extra"]["k"]), ref["extra"]["k"])


# -- gsmap_hd/train.py _trim_metrics: a line that does not read goes, the rest stay ---------------------
def test_a_resumed_runs_metrics_log_keeps_every_record_up_to_its_step_past_a_garbled_line(tmp_path):
    """Outside: Python's json module reads each line as the log's readers do. A metrics log holding
    a line that does not read (a kill mid-write, then more records from a run resumed before this
    change) trimmed for a resume at step 4: every line json reads whose step is at most 4 stays, in
    order, the garbled line and the later steps go. (Stopping at the garbled line lost step 3.)"""
    pytest.importorskip("torch")
    import json

    from gsmap_hd.train import _trim_metrics

    lines = [
        '{"step": 1, "loss": 0.5}',
        '{"step": 2, "loss": 0.4}',
        '{"step": 3, "lo',
        '{"step": 3, "loss": 0.3}',
    ]
    lines += ['{"step": 5, "loss": 0.2}', '"not a record"', '{"step": 4, "loss": 0.25}']
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    _trim_metrics(path, 4)
    want = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec["step"] <= 4:
            want.append(line)
    assert [json.loads(x)["step"] for x in want] == [1, 2, 3, 4]
    assert path.read_text().splitlines() == want


# -- gs_map_share/container.py reseal: a version 4-5 container's layout ----------------------------------
def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit as RFC 3720 B.4 gives it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_reseal_follows_a_version_5_containers_shorter_header():
    """Outside: RFC 3720's CRC-32C (its check value for b'123456789' is 0xE3069283) and
    docs/format.md's layout (fixed header, chunk count, header CRC; TOC entries and their CRC;
    chunk bodies). A version 5 container (the older, shorter fixed header the decoder still reads)
    with every CRC zeroed is resealed: header, chunk and TOC CRCs are the CRC-32C of their bytes.
    (The version read from the header-length field took every container for version 6 or later:
    an older one's chunk count was read past its header and nothing was resealed.)"""
    import struct

    from gs_map_share.container import _FIXED5, _TOC, reseal

    assert _crc32c(b"123456789") == 0xE3069283
    fields = [0] * 25
    fields[0], fields[1] = b"GSMD", 5
    hlen = _FIXED5.size + 2 + 3 + 4  # fixed part, chunk count, 3 bytes (a frame id), header CRC
    fields[2] = hlen
    bodies = [b"first chunk body", b"second"]
    head = _FIXED5.pack(*fields) + struct.pack("<H", len(bodies)) + b"map" + b"\0" * 4
    toc = b"".join(_TOC.pack(k + 1, 0, 0, len(body), 0) for k, body in enumerate(bodies))
    data = head + toc + b"\0" * 4 + b"".join(bodies)
    out = reseal(data)
    assert len(out) == len(data)
    assert struct.unpack_from("<I", out, hlen - 4)[0] == _crc32c(out[: hlen - 4])
    for k, body in enumerate(bodies):
        assert _TOC.unpack_from(out, hlen + k * _TOC.size)[4] == _crc32c(body)
    toc_end = hlen + _TOC.size * len(bodies)
    assert struct.unpack_from("<I", out, toc_end)[0] == _crc32c(out[hlen:toc_end])


# -- cli/__init__.py _top_option: the top parser's own options before a command ------------------------
@pytest.mark.parametrize("option", ["-h", "--help", "--he"])
def test_the_top_help_before_a_command_prints_the_top_help_as_argparse_does(capsys, option):
    """Outside: Python's argparse: a parser with subcommands given ``-h`` (or ``--help``, or an
    abbreviation of it) before a command prints its own help and exits 0. ``gs-mapping --help
    info`` does as argparse does, the top parser's help, not the command's option error. (Every
    command has -h/--help too: not taken as the top parser's, it was called 'an option of the
    command info: put it after the command'.)"""
    from gs_mapping.cli import build_parser, main

    try:
        rc = main([option, "info"])
    except SystemExit as stop:
        rc = stop.code
    out, err = capsys.readouterr()
    assert rc in (0, None), err
    assert out == build_parser().format_help(), err


# -- gsmap_hd/predict_bag.py _rescue_predictions: the rescued file is named ------------------------------
def test_an_interrupted_prediction_names_the_file_its_frames_were_rescued_to(tmp_path, monkeypatch, caplog):
    """Outside: Python's json module reads the file the one warning line names. Interrupted,
    predict_bag saves the frames predicted so far to a temporary file and says where, in one
    warning naming the frame count and that nothing went to the output. (Without the line, the
    rescued predictions sat in the temp directory unsaid.)"""
    pytest.importorskip("torch")
    import json
    import logging
    import re
    import tempfile

    from gsmap_hd.predict_bag import _rescue_predictions

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    doc = {"frames": [{"stamp_ns": 1, "elements": []}, {"stamp_ns": 2, "elements": []}], "interrupted": True}
    out = tmp_path / "pred.json"
    with caplog.at_level(logging.WARNING):
        _rescue_predictions(lambda interrupted: (doc,), 2, out)
    lines = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(lines) == 1, lines
    m = re.search(
        r"the 2 frame\(s\) predicted so far were saved to (\S+) \(nothing written to (\S+)\)", lines[0]
    )
    assert m and m.group(2) == str(out), lines[0]
    assert json.loads(open(m.group(1), encoding="utf-8").read()) == doc
    assert not out.exists()
