"""Hostile bags: flipped bits in bags we wrote are errors (chunk/data/summary CRCs), one undecodable
message is counted, logged once and skipped (``strict``: an error), a bag never replaces an input."""

from __future__ import annotations

import logging
import random

import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, DataEnd, Footer
from mcap.stream_reader import StreamReader

from gs_mapping.bag import BagReader, BagWriter, default_typestore
from gs_mapping.errors import BagError


def _string_bag(path, n=120, compress=False, bad_at=()):
    ts = default_typestore()
    String = ts.types["std_msgs/msg/String"]
    with BagWriter(path, compress=compress) as bag:
        bag.add_topic("/s", "std_msgs/msg/String")
        for i in range(n):
            if i in bad_at:
                bag.write_raw("/s", 1000 + i, b"\x00\x01\x00\x00\xff\xff\xff\x7fjunk")  # length 2^31
            else:
                bag.write("/s", 1000 + i, String(data=f"message {i} " * 4))
    return path


def _read(path, strict=True):
    with BagReader(path, strict=strict) as bag:
        return [m.data for _, _, m in bag.messages()], dict(bag.bad_messages)


def test_our_mcap_carries_crcs_the_mcap_library_checks(tmp_path):
    bag = _string_bag(tmp_path / "b")
    f = next(bag.glob("*.mcap"))
    with f.open("rb") as fh:
        reader = make_reader(fh, validate_crcs=True)
        assert sum(1 for _ in reader.iter_messages()) == 120
    with f.open("rb") as fh:
        records = list(StreamReader(fh, emit_chunks=True, validate_crcs=True).records)
    chunk_crcs = [r.uncompressed_crc for r in records if isinstance(r, Chunk)]
    assert chunk_crcs and all(chunk_crcs)
    assert [r.data_section_crc for r in records if isinstance(r, DataEnd)][0] != 0
    assert [r.summary_crc for r in records if isinstance(r, Footer)][0] != 0


@pytest.mark.parametrize("compress", [False, True])
def test_flipped_bits_in_our_bag_are_errors_never_a_different_reading(tmp_path, compress):
    bag = _string_bag(tmp_path / "b", compress=compress)
    f = next(bag.glob("*.mcap"))
    raw = f.read_bytes()
    ref, _ = _read(bag)
    rng = random.Random(21 + compress)
    outcomes = {"error": 0, "same": 0}
    for _ in range(30):
        data = bytearray(raw)
        for _ in range(3):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(data))
        try:
            got, _ = _read(bag)
        except BagError as exc:
            assert str(bag) in str(exc) and "\n" not in str(exc)
            outcomes["error"] += 1
            continue
        assert got == ref  # read means: read exactly the same messages
        outcomes["same"] += 1
    assert outcomes["error"] >= 25


def test_undecodable_message_is_counted_logged_once_and_skipped(tmp_path, caplog):
    bag = _string_bag(tmp_path / "b", n=50, bad_at=(3, 17, 40))
    with caplog.at_level(logging.WARNING, logger="gs_mapping.bag"):
        got, bad = _read(bag, strict=False)
    assert len(got) == 47 and got[3] == "message 4 " * 4
    assert bad == {"/s (std_msgs/msg/String)": 3}
    warnings = [r for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(warnings) == 1 and "/s" in warnings[0].getMessage()
    with pytest.raises(BagError, match=r"topic /s: message 3 \(stamp 1003 ns\): cannot decode"):
        _read(bag, strict=True)


def test_bag_writer_refuses_its_input(tmp_path):
    bag = _string_bag(tmp_path / "in", n=5)
    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    with pytest.raises(BagError, match="input"):
        BagWriter(bag, overwrite=True, inputs=[bag]).open()
    with pytest.raises(BagError, match="refusing"):
        BagWriter(tmp_path, overwrite=True, inputs=[bag]).open()
    assert {p.name: p.read_bytes() for p in bag.iterdir()} == before


def _with_one_bad_message(src, dst, topic, typename=None):
    """A copy of bag ``src`` (our writer) with one undecodable message added on ``topic`` (a new
    topic of ``typename`` when given)."""
    with BagReader(src) as bag:
        types = {t.name: (t.type, t.latched) for t in bag.topics}
        msgs = list(bag.raw_messages())
    if typename:
        types[topic] = (typename, False)
        msgs.insert(len(msgs) // 2, (topic, msgs[len(msgs) // 2][1], b"\x00\x01"))
    with BagWriter(dst) as out:
        for name, (type_of, latched) in types.items():
            out.add_topic(name, type_of, latched=latched)
        done = False
        for name, stamp, data in msgs:
            out.write_raw(name, stamp, data)
            if name == topic and not done and not typename:
                out.write_raw(name, stamp + 1, b"\x00\x01\x00\x00\xff\xff\xff\x7f")
                done = True
    return dst


@pytest.mark.shared_data
def test_one_bad_message_is_skipped_by_map_and_replay_and_strict_refuses(kitchen_bag, tmp_path):
    import json

    from hostile_cases import run_cli

    bag = _with_one_bad_message(kitchen_bag, tmp_path / "bad_bag", "/camera/color/image_raw")
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 8}\n"
        "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
    )
    base = [
        "map",
        bag,
        "--device",
        "cpu",
        "--config",
        cfg,
        "--max-frames",
        "3",
        "--no-progress",
        "--holdout-every",
        "0",
    ]
    o = run_cli([*base, "--out", tmp_path / "m"], "bag-bad-message", inputs=[bag])
    assert not o.violation and o.result == "ok", o.stderr
    assert "skipped 1 undecodable message(s): /camera/color/image_raw" in o.stdout
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["undecodable_messages"] == {"/camera/color/image_raw (sensor_msgs/msg/Image)": 1}
    o = run_cli(
        [*base, "--out", tmp_path / "m2", "--strict"],
        "bag-bad-message",
        inputs=[bag],
        must_name=["image_raw"],
    )
    assert not o.violation and o.result == "error" and not (tmp_path / "m2").exists()
    bag = _with_one_bad_message(
        kitchen_bag, tmp_path / "bad2", "/mapper_node/map_delta", "std_msgs/msg/UInt8MultiArray"
    )
    r = ["replay", bag, "--nodes", "map_receiver_node", "--json"]
    o = run_cli([*r, "--out", tmp_path / "r"], "bag-bad-message", inputs=[bag])
    assert not o.violation and o.result == "ok"
    assert json.loads(o.stdout.strip().splitlines()[-1])["undecodable"] == {
        "/mapper_node/map_delta (std_msgs/msg/UInt8MultiArray)": 1
    }
    o = run_cli(
        [*r, "--out", tmp_path / "r2", "--strict"], "bag-bad-message", inputs=[bag], must_name=["map_delta"]
    )
    assert not o.violation and o.result == "error"
