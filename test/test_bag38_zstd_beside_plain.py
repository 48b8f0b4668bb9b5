"""A killed `--compression-mode file` recording where a split's ``.zstd`` lies beside its plain
file: rosbag2's compressor removes ``rec_N.db3`` only after writing ``rec_N.db3.zstd`` (killed in
between: the plain one whole, the ``.zstd`` cut), and ``zstd -d`` keeps the ``.zstd`` it inflates.
The plain file is read, and never written: the inflated copy used to be written through the copy
folder's link to it (truncating the user's only whole split where the ``.zstd`` was cut). Files are
the real RealSense kitchen bag; expected messages are the source bag's as rosbags reads it."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
pytest.importorskip("zstandard")

from test_bag38_file_compression import SOURCE, _compress, _write  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402


@pytest.fixture(scope="module")
def source(shared_data):
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        conns = [(c.topic, c.msgtype) for c in r.connections]
        msgs = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    return conns, msgs


def _state(f):
    return f.stat().st_mtime_ns, f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest()


def _recording(tmp_path, source, twin_cut: bool):
    """rec_0.db3.zstd, rec_1.db3 and rec_1.db3.zstd (cut in half or whole), rec_2.db3; no metadata."""
    conns, msgs = source
    bag = tmp_path / "rec"
    bag.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(msgs)), 3)):
        f, _ = _write(tmp_path / f"p{i}", conns, [msgs[k] for k in part], "SQLITE3")
        if i == 0:
            _compress(f, bag / "rec_0.db3.zstd")
            continue
        if i == 1:
            z = _compress(f, bag / "rec_1.db3.zstd")
            if twin_cut:
                z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
        f.rename(bag / f"rec_{i}.db3")
    os.chmod(bag / "rec_1.db3", 0o444)  # (as root, a read-only file is written all the same)
    return bag


@pytest.mark.parametrize("twin_cut", [True, False], ids=["killed_while_compressing", "zstd_d_kept_it"])
def test_a_plain_split_beside_its_zstd_is_read_and_left_untouched(source, tmp_path, twin_cut):
    bag = _recording(tmp_path, source, twin_cut)
    plain = bag / "rec_1.db3"
    before = _state(plain)
    with BagReader(bag) as b:
        got = list(b.raw_messages())
    assert got == source[1]  # every source message (topic, log time, bytes) in order
    assert _state(plain) == before  # not truncated, not rewritten
