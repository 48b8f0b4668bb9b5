"""`ros2 bag record --compression-mode file` storage read without the metadata.yaml that says so:
a ``.db3.zstd`` / ``.mcap.zstd`` given alone, and a killed recorder's folder of compressed splits
beside the open plain one. Each is inflated into a temporary copy (said once) and read whole. The
files are the real RealSense kitchen bag, compressed by the zstandard package (the reference
library's binding, not the reader's backports.zstd); expected messages are the source bag's as
rosbags reads it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")
zstandard = pytest.importorskip("zstandard")

from conftest import SHARED_DATA  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.cli import main  # noqa: E402
from gs_mapping.errors import BagError  # noqa: E402
from gs_mapping.say_once import forget  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"


@pytest.fixture(scope="module")
def source(shared_data):
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        conns = [(c.topic, c.msgtype) for c in r.connections]
        msgs = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    return conns, msgs


def _write(folder: Path, conns, msgs, storage: str) -> Path:
    """One storage file of ``msgs`` (rosbags' writer), moved out of its bag folder; its path."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    tmp = folder.parent / (folder.name + ".w")
    with Writer(tmp, version=8, storage_plugin=getattr(StoragePlugin, storage)) as w:
        cs = {t: w.add_connection(t, mt, typestore=ts) for t, mt in conns}
        for topic, t, data in msgs:
            w.write(cs[topic], t, data)
    f = next(x for x in tmp.iterdir() if x.suffix in (".db3", ".mcap"))
    return f, tmp


def _compress(f: Path, dst: Path) -> Path:
    """``f`` as rosbag2's zstd file compressor leaves it: one zstd stream, ``<name>.zstd``."""
    dst.write_bytes(zstandard.ZstdCompressor(level=1).compress(f.read_bytes()))
    return dst


def _copies() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("gs_mapping_bag_*")}


@pytest.mark.parametrize("storage, ext", [("SQLITE3", ".db3"), ("MCAP", ".mcap")])
def test_a_compressed_storage_file_given_alone_is_read_whole(storage, ext, source, tmp_path, caplog):
    conns, msgs = source
    f, _ = _write(tmp_path / "w", conns, msgs, storage)
    z = _compress(f, tmp_path / f"drive{ext}.zstd")
    forget()
    caplog.set_level(logging.WARNING)
    before = _copies()
    with BagReader(z) as b:
        got = list(b.raw_messages())
    assert _copies() <= before  # the inflated copy removed on close
    assert got == msgs  # every message, its log time and bytes
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{z}: a zstd-compressed storage file (ros2 bag record --compression-mode file): read through "
        f"an inflated temporary copy in {tempfile.gettempdir()}"
    ]


def test_a_killed_file_compressed_split_recording_maps_to_the_source_frames(source, tmp_path, caplog):
    """rec_0.db3.zstd, rec_1.db3.zstd (compressed at each split) and the open rec_2.db3, no
    metadata.yaml: every message in time order, and `map`'s frames are the source bag's."""
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    conns, msgs = source
    bag = tmp_path / "rec"
    bag.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(msgs)), 3)):
        f, _ = _write(tmp_path / f"p{i}", conns, [msgs[k] for k in part], "SQLITE3")
        if i < 2:
            _compress(f, bag / f"rec_{i}.db3.zstd")
        else:
            f.rename(bag / "rec_2.db3")
    forget()
    caplog.set_level(logging.WARNING)
    with BagReader(bag) as b:
        assert [(t, s) for t, s, _ in b.raw_messages()] == [(m[0], m[1]) for m in msgs]
    said = [r.getMessage() for r in caplog.records]
    assert f"{bag}: 2 zstd-compressed split files (ros2 bag record --compression-mode file): read through an inflated temporary copy in {tempfile.gettempdir()}" in said  # fmt: skip

    def frames(path):
        with BagReader(path) as b:
            f = discover({t.name: t.type for t in b.topics})
        return list(read_frames(path, TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)))

    got, want = frames(bag), frames(SOURCE)
    assert len(got) == len(want) == 50
    for a, b in zip(got, want, strict=True):
        assert a.stamp_ns == b.stamp_ns and np.array_equal(a.rgb, b.rgb)
        assert np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam)


def test_a_cut_compressed_file_is_one_line_naming_it(source, tmp_path, capsys):
    """A .db3.zstd cut short (copied while written, a full disk): exit 2, one line naming the file
    and that it does not inflate; no copy left."""
    conns, msgs = source
    f, _ = _write(tmp_path / "w", conns, msgs, "SQLITE3")
    z = _compress(f, tmp_path / "drive.db3.zstd")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    before = _copies()
    assert main(["info", str(z)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"gs-mapping info: error: {z}: a zstd-compressed storage file that does not inflate (damaged?): "
    ), err
    assert _copies() <= before
    with pytest.raises(BagError):
        BagReader(z).open()


def test_a_killed_file_compressed_mcap_recording_with_its_last_file_cut_is_read_whole(source, tmp_path):
    """MCAP alike: rec_0.mcap.zstd, rec_1.mcap.zstd and the open rec_2.mcap cut before its summary
    (test_real_inputs_bags37's killed recording): the compressed splits inflated, the cut one
    scanned, every source message in order."""
    from test_real_inputs_bags37 import _killed_split_recording

    bag = _killed_split_recording(tmp_path / "rec", source, 3, "MCAP")
    for i in range(2):
        f = bag / f"rec_{i}.mcap"
        _compress(f, bag / f"rec_{i}.mcap.zstd")
        f.unlink()
    with BagReader(bag) as b:
        assert [(t, s) for t, s, _ in b.raw_messages()] == [(m[0], m[1]) for m in source[1]]
