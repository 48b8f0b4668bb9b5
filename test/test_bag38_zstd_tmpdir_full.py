"""A `--compression-mode file` storage file read through its inflated copy in a small or full
$TMPDIR (a real tmpfs, as root; skipped elsewhere). Under 64 MiB free but room for the copy: read
whole (was: 'cannot open bag (truncated or corrupt?): IndexError', from the repairs' room check,
which has no broken file to name here). Without room for it: exit 2, one line naming the file, the kernel's 'No
space left on device', TMPDIR and `zstd -d`; no copy left. Expected messages: rosbags' reading of the
real RealSense kitchen bag."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("rosbags.rosbag2")
zstandard = pytest.importorskip("zstandard")

from conftest import SHARED_DATA  # noqa: E402
from hostile_fs import _mount, _umount  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"


@pytest.fixture()
def disk(tmp_path):
    where = tmp_path / "disk"
    if not _mount(where, "size=48m,mode=0777"):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): no real full disk")
    yield where
    _umount(where)


@pytest.fixture()
def packed(tmp_path, shared_data):
    src = next(SOURCE.glob("*.mcap"))
    z = tmp_path / "drive.mcap.zstd"
    z.write_bytes(zstandard.ZstdCompressor(level=1).compress(src.read_bytes()))
    return z


def test_read_through_a_tmpdir_with_under_64_mib_free(disk, packed, monkeypatch):
    from rosbags.rosbag2 import Reader

    with Reader(SOURCE) as r:
        want = [(c.topic, t, bytes(d)) for c, t, d in r.messages()]
    monkeypatch.setattr(tempfile, "tempdir", str(disk))
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize < 64 << 20
    with BagReader(packed) as b:
        assert list(b.raw_messages()) == want
    assert list(disk.iterdir()) == []  # the copy removed


def test_a_full_tmpdir_is_one_line(disk, packed):
    # 1 MiB left for the 6 MB bag (a TMPDIR with none left at all Python's tempfile passes over)
    st = os.statvfs(disk)
    (disk / ".filler").write_bytes(bytes(st.f_bavail * st.f_frsize - (1 << 20)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TMPDIR=str(disk), OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "info", str(packed)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("gs-mapping")]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"gs-mapping info: error: {packed}: read through an inflated copy in {disk}, ")
    assert "No space left on device" in lines[0] and f"zstd -d {packed}" in lines[0] and "TMPDIR" in lines[0]
    assert [x.name for x in disk.iterdir()] == [".filler"]  # no copy left
