"""Mutation round 41 (bag_repair): a breakage that passed every test, and the bug behind it. A killed MCAP split cut
within its 8-byte magic is an empty split (test_real_inputs_bags_empty37 cuts it at 5 bytes); one
cut just after the whole magic, before its header record, holds nothing either, as
bag_repair.empty_split_why says (a prefix of the magic, the whole magic included). Yet the mutant
``len(head) < len(magic)`` passed every test: cut_short took such a file for an MCAP cut short and
its repair refused the recording ('header record is missing or damaged') before the empty-split
rule was asked. cut_short now leaves empty splits to that rule."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("rosbags.rosbag2")

from test_real_inputs_bags_empty37 import _with_empty, source  # noqa: E402, F401

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.say_once import forget  # noqa: E402

MCAP_MAGIC = b"\x89MCAP0\r\n"  # (the MCAP specification's magic, written first by a recorder)


def test_a_split_of_exactly_the_mcap_magic_is_an_empty_split(source, tmp_path, caplog):  # noqa: F811
    bag = _with_empty(tmp_path / "rec", source, 3, "MCAP", [3], MCAP_MAGIC)
    _, msgs = source
    forget()
    caplog.set_level(logging.WARNING)
    with BagReader(bag) as b:
        got = [(topic, t) for topic, t, _ in b.raw_messages()]
    assert got == [(m[0], m[1]) for m in msgs]  # every message of the source, in time order
    said = [r.getMessage() for r in caplog.records if "empty split file" in r.getMessage()]
    assert said == [
        f"{bag / 'rec_3.mcap'}: an empty split file (its recorder stopped as it opened it): skipped"
    ]


def test_given_alone_it_is_named_an_empty_recording_file(tmp_path, capsys):
    from gs_mapping.cli import main

    f = tmp_path / "rec_0.mcap"
    f.write_bytes(MCAP_MAGIC)
    assert main(["info", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gs-mapping info: error: {f}: an empty recording file (its recorder stopped as it opened it): "
        "no messages in it"
    ], err
