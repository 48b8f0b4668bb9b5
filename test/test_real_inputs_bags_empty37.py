"""A split recording without metadata.yaml whose recorder was killed right after it opened a new
split (``rec_N.mcap`` / ``.db3`` of 0 bytes, or cut within its magic), from the real kitchen bag:
one such file stopped the whole read ("one of N split files, unreadable: … seems to be empty").
It holds nothing, so it is skipped, said once, and the rest read: the frames are the source's. A
damaged file with something in it is still refused in one line; all of them empty is one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from test_real_inputs_bags37 import SOURCE, _killed_split_recording  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def source(shared_data):
    """(connections, [(topic, log time, cdr)]) of the real bag, as rosbags reads it."""
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        return [(c.topic, c.msgtype) for c in r.connections], [
            (c.topic, t, bytes(d)) for c, t, d in r.messages()
        ]


def _with_empty(folder, source, parts, storage, empty_at: list[int], content=b""):
    """The killed split recording of ``parts`` files with empty files inserted at the split
    numbers ``empty_at`` (the files after each renumbered, as the recorder numbers them)."""
    ext = ".mcap" if storage == "MCAP" else ".db3"
    bag = _killed_split_recording(folder, source, parts, storage)
    n = parts
    for k in sorted(empty_at):
        for i in range(n - 1, k - 1, -1):
            (bag / f"rec_{i}{ext}").rename(bag / f"rec_{i + 1}{ext}")
        (bag / f"rec_{k}{ext}").write_bytes(content)
        n += 1
    return bag


def _frames(path):
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    with BagReader(path) as b:
        f = discover({t.name: t.type for t in b.topics})
    return list(read_frames(path, TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)))


@pytest.mark.parametrize(
    "storage, parts, empty_at, content",
    [
        ("MCAP", 6, [2, 7], b""),  # an empty middle and an empty last file
        ("MCAP", 3, [3], b"\x89MCA"),  # the last cut within its magic
        ("SQLITE3", 3, [1, 4], b""),
    ],
    ids=["mcap", "mcap-magic", "sqlite3"],
)
def test_an_empty_split_file_is_skipped_and_the_frames_are_the_sources(
    storage, parts, empty_at, content, source, tmp_path, caplog
):
    bag = _with_empty(tmp_path / "rec", source, parts, storage, empty_at, content)
    _, msgs = source
    caplog.set_level(logging.WARNING)
    with BagReader(bag) as b:
        got = [(topic, t) for topic, t, _ in b.raw_messages()]
    assert got == [(m[0], m[1]) for m in msgs]  # every message, in time order
    ext = ".mcap" if storage == "MCAP" else ".db3"
    said = [r.getMessage() for r in caplog.records if "empty split file" in r.getMessage()]
    assert sorted(said) == sorted(
        f"{bag / f'rec_{k}{ext}'}: an empty split file (its recorder stopped as it opened it): skipped"
        for k in empty_at
    ), said
    # an empty split skipped is no part missing (review37's gap line): nothing else is said
    assert not [r.getMessage() for r in caplog.records if "no split file numbered" in r.getMessage()]
    if storage == "MCAP" and parts == 6:  # (what `map` reads: the source's frames)
        got, want = _frames(bag), _frames(SOURCE)
        assert len(got) == len(want) == 50
        for a, b in zip(got, want, strict=True):
            assert a.stamp_ns == b.stamp_ns
            assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth, equal_nan=True)
            assert np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam)


def test_a_damaged_split_with_something_in_it_or_all_empty_is_one_line(source, tmp_path, capsys):
    """Only a file with nothing in it is skipped: one with bytes that are not a bag (past the
    magic) is refused as before, naming it; a folder of empty split files is one line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for i in range(2):
        (empty / f"rec_{i}.mcap").write_bytes(b"")
    assert main(["info", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gs-mapping info: error: {empty}: no metadata.yaml, and its 2 split files are all empty"]
    bag = _with_empty(tmp_path / "rec", source, 3, "MCAP", [1], b"\x89MCAP0\r\n" + b"\x00" * 64)
    assert main(["info", str(bag)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "header record is missing or damaged" in err[-1]
    assert err[-1].startswith(f"gs-mapping info: error: {bag / 'rec_1.mcap'}: ") and "Traceback" not in str(
        err
    )
