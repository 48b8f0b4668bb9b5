"""Safe output files (gs_mapping.output_files): temp + rename, no clobber, never an input, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hostile_fs import full_disk_dir, read_only_dir

from gs_mapping.errors import OutputError
from gs_mapping.output_files import (
    check_output,
    open_output,
    output_directory,
    output_path,
    write_bytes,
    write_text,
)


def test_write_new_and_refuse_existing_without_overwrite(tmp_path):
    p = tmp_path / "sub" / "a.bin"
    write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(OutputError, match="exists already.*--overwrite"):
        write_bytes(p, b"two")
    assert p.read_bytes() == b"one"
    write_bytes(p, b"two", overwrite=True)
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.bin"]  # no temp left behind


def test_never_the_input_even_with_overwrite(tmp_path):
    inp = tmp_path / "in.gsd"
    inp.write_bytes(b"input")
    link = tmp_path / "hard.gsd"
    os.link(inp, link)
    sym = tmp_path / "sym.gsd"
    sym.symlink_to(inp)
    for out in (inp, link, sym, tmp_path / "." / "in.gsd"):
        with pytest.raises(OutputError, match="input"):
            write_bytes(out, b"x", overwrite=True, inputs=[inp])
    assert inp.read_bytes() == b"input"
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("m")
    with pytest.raises(OutputError, match="inside the input"):
        write_bytes(bag / "metadata.yaml", b"x", overwrite=True, inputs=[bag])
    with pytest.raises(OutputError, match="input"):
        check_output(bag, overwrite=True, inputs=[bag / "metadata.yaml"], directory=True)


def test_directory_as_output_and_file_as_parent(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        write_bytes(d, b"x", overwrite=True)
    f = tmp_path / "afile"
    f.write_bytes(b"keep")
    with pytest.raises(OutputError, match="parent is not a directory"):
        write_bytes(f / "out.ply", b"x")
    with pytest.raises(OutputError, match="parent is not a directory"):
        write_bytes(f / "deeper" / "out.ply", b"x")
    assert f.read_bytes() == b"keep"


def test_read_only_file_system(tmp_path):
    with read_only_dir(tmp_path, {"old.ply": b"old"}) as ro:
        with pytest.raises(OutputError) as e:
            write_bytes(ro / "old.ply", b"new", overwrite=True)
        assert str(e.value).startswith(str(ro / "old.ply")) and "\n" not in str(e.value)
        assert "read-only" in str(e.value) or "permission" in str(e.value)
        assert (ro / "old.ply").read_bytes() == b"old"


def test_full_disk_keeps_previous_file(tmp_path):
    old = b"previous" * 100
    with full_disk_dir(tmp_path, 64 * 1024, {"map.ply": old}) as (d, kind):
        with pytest.raises(OutputError) as e:
            write_bytes(d / "map.ply", b"\0" * (512 * 1024), overwrite=True)
        msg = str(e.value)
        assert (d / "map.ply").read_bytes() == old
        assert sorted(x.name for x in d.iterdir()) == ["map.ply"]
    assert ("no space" in msg) if kind == "tmpfs" else ("too large" in msg)


def test_error_inside_block_keeps_old(tmp_path):
    p = tmp_path / "m.json"
    write_text(p, "old")
    with pytest.raises(RuntimeError), open_output(p, "w", overwrite=True) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    with output_path(p, overwrite=True) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == p.parent
        tmp.write_text("new")
    assert p.read_text() == "new"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json"]


def test_output_directory_swaps_whole(tmp_path):
    out = tmp_path / "run"
    with output_directory(out) as d:
        (d / "map.ply").write_text("1")
        (d / "metrics.json").write_text("1")
    with pytest.raises(OutputError, match="exists already"), output_directory(out) as d:
        pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with output_directory(empty) as d:  # an empty directory holds nothing to lose: no --overwrite needed
        (d / "map.ply").write_text("e")
    assert (empty / "map.ply").read_text() == "e"
    empty_after = sorted(x.name for x in tmp_path.iterdir())
    assert empty_after == ["empty", "run"]
    (empty / "map.ply").unlink()
    empty.rmdir()
    with pytest.raises(RuntimeError), output_directory(out, overwrite=True) as d:
        (d / "map.ply").write_text("2")
        raise RuntimeError
    assert (out / "map.ply").read_text() == "1" and (out / "metrics.json").read_text() == "1"
    with output_directory(out, overwrite=True, allowed=["map.ply", "metrics.json"]) as d:
        (d / "map.ply").write_text("3")
    assert sorted(x.name for x in out.iterdir()) == ["map.ply"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]
    (out / "precious.txt").write_text("mine")
    with (
        pytest.raises(OutputError, match="precious"),
        output_directory(out, overwrite=True, allowed=["map.ply"]),
    ):
        pass
    assert (out / "precious.txt").read_text() == "mine"


_KILL_CHILD = textwrap.dedent(
    """
    import sys, pathlib
    from gs_mapping.output_files import output_directory
    out = pathlib.Path(sys.argv[1]); n = int(sys.argv[2])
    while True:
        with output_directory(out, overwrite=True) as d:
            (d / "map.ply").write_bytes(str(n).encode() * 20000)
            (d / "metrics.json").write_text(str(n))
        n += 1
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.29, 0.41])
def test_kill_minus_9_leaves_old_or_new_never_a_mix(tmp_path, delay):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(out), "1"], env=env)
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)  # somewhere inside a later rewrite
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    n = (out / "metrics.json").read_text()
    assert int(n) >= 1
    assert (out / "map.ply").read_bytes() == n.encode() * 20000


def test_a_device_pipe_or_socket_is_never_replaced_even_with_overwrite(tmp_path, capsys):
    """--overwrite replaces an earlier output file; the rename would also put a file in place of a
    FIFO or a socket (as root, of /dev/null itself). Refused by name, the node left as it was —
    here and through a command (`export … --overwrite`)."""
    import socket
    import stat

    from synthetic_maps import synthetic_map

    from gs_mapping.cli import main
    from gs_mapping.ply import save_ply

    fifo = tmp_path / "out.spz"
    os.mkfifo(fifo)
    sock_path = tmp_path / "out.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for target in (fifo, sock_path):
            with pytest.raises(OutputError, match="is not a regular file"):
                write_bytes(target, b"x", overwrite=True)
        assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_ISSOCK(sock_path.lstat().st_mode)
        save_ply(synthetic_map(50, 0, seed=1), tmp_path / "a.ply")
        rc = main(["export", str(tmp_path / "a.ply"), str(fifo), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and f"{fifo}: is not a regular file" in err and err.count("\n") == 1
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
    finally:
        sock.close()
    # a link to one (/dev/stdout -> /proc/self/fd/1) is refused too: a user naming it means the pipe,
    # and replacing the link itself would say success while nothing went down it
    link = tmp_path / "link.spz"
    link.symlink_to(fifo)
    with pytest.raises(OutputError, match=f"is not a regular file .*a link to {fifo}"):
        write_bytes(link, b"x", overwrite=True)
    assert os.readlink(link) == str(fifo) and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_file_output_named_with_a_trailing_slash_is_refused(tmp_path):
    """'out.ply/' names a directory; Path() drops the slash and a file 'out.ply' was written."""
    with pytest.raises(OutputError, match="ends with '/', a directory's name"):
        write_bytes(f"{tmp_path}/out.ply/", b"x")
    assert not (tmp_path / "out.ply").exists()
    with output_directory(f"{tmp_path}/run/") as d:  # a directory output may say so
        (d / "a").write_text("a")
    assert (tmp_path / "run" / "a").read_text() == "a"
