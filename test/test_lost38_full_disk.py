"""Nothing lost (issue 21) for the writers test_outside_lost37 did not run: `hd-predict --out`,
`hd-export` and `demo`, on a disk that really fills up (a tmpfs, as root; skipped elsewhere). Each
first writes its output on the disk with room; then the disk is filled to its last byte and the same
command run again with --overwrite: exit 2, one line naming the output and the cause, the earlier
output byte for byte, no temp file or folder beside it. References: the kernel's own ENOSPC and the
earlier output's bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_fs import _mount, _umount

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


def _cli(argv, timeout=500, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=cwd,
    )


def _tree(d: Path) -> dict[str, bytes]:
    if d.is_file():
        return {d.name: d.read_bytes()}
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _fill(disk: Path) -> None:
    """Take every byte of ``disk`` left."""
    st = os.statvfs(disk)
    with open(disk / ".filler", "wb", buffering=0) as f:
        try:
            f.write(b"\0" * (st.f_bavail * st.f_frsize))
            while f.write(b"\0" * 512):  # (what a page's rounding left)
                pass
        except OSError:
            pass


@pytest.fixture()
def disk(tmp_path):
    where = tmp_path / "disk"
    if not _mount(where, "size=48m,mode=0755"):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): no real full disk")
    yield where
    _umount(where)


@pytest.fixture(scope="module")
def hd_bag(tmp_path_factory):
    pytest.importorskip("torch")
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("lost38") / "world"
    write_bag(Drive.make(3, 3, "front", (256, 144)), out, progress=False)
    return out


def _full_disk_keeps(disk: Path, argv: list, name: str, cwd=None) -> None:
    out = disk / name
    argv = [out if a == "OUT" else a for a in argv]
    first = _cli(argv, cwd=cwd)
    assert first.returncode == 0, first.stderr[-2000:]
    before = _tree(out)
    assert before
    _fill(disk)
    p = _cli([*argv, "--overwrite"], cwd=cwd)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("gs-mapping")]
    assert len(errors) == 1 and str(out) in errors[0], p.stderr[-2000:]
    assert "no space left on device" in errors[0], errors
    assert sorted(x.name for x in disk.iterdir()) == sorted([".filler", name])  # no temp beside it
    assert _tree(out) == before  # the earlier output, byte for byte


def test_hd_predict_out_on_a_full_disk(disk, hd_bag):
    _full_disk_keeps(disk, ["hd-predict", hd_bag, "--out", "OUT", "--no-progress"], "pred.json")


def test_hd_export_on_a_full_disk(disk):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    _full_disk_keeps(disk, ["hd-export", "--onnx", "OUT"], "model.onnx")


@pytest.mark.slow
def test_demo_on_a_full_disk(disk, tmp_path):
    pytest.importorskip("torch")
    _full_disk_keeps(disk, ["demo", "--frames", "5", "--out", "OUT"], "demo", cwd=tmp_path)
