"""Ctrl-C while numba compiles (session 37).

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is; inside llvmlite's
ctypes callbacks (numba compiling a codec loop) ctypes prints "Exception ignored on calling ctypes
callback" and goes on. Seen with `gs-mapping run map_server_node` restarting on a fleet store with a
cold numba cache: the server kept running, died by SIGSEGV, or reported its store as malformed
("no compiled object yet"). The CLI's handler (gs_mapping.ctrl_c) raises only outside numba's
and llvmlite's code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("numba")

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{HERE}", PYTHONDONTWRITEBYTECODE="1", **extra)


# A real numba compilation with SIGINT raised exactly inside llvmlite's ctypes callback (the object
# cache's notify hook, called by LLVM for every module numba compiles): the race made deterministic.
_IN_CALLBACK = textwrap.dedent(
    """
    import signal, sys, time
    import numba
    from gs_mapping import ctrl_c

    if sys.argv[1] == "cli":
        ctrl_c.install()
    sent = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_raw_object_cache_notify" and not sent:
            sent.append(1)
            signal.raise_signal(signal.SIGINT)

    @numba.njit
    def add(x):
        return x + 1

    try:
        sys.setprofile(profile)
        add(1)
        sys.setprofile(None)
        print("compiled", len(sent), flush=True)
        for _ in range(200):
            time.sleep(0.01)
        print("ran on", flush=True)
    except KeyboardInterrupt:
        print("interrupted", len(sent), flush=True)
    finally:
        ctrl_c.caught()  # (as cli.main does: the interrupt may have left an exec() in numba's imports)
    """
)


def test_a_ctrl_c_inside_llvmlite_callback_interrupts_once_out_of_it(tmp_path):
    """The CLI's handler: the SIGINT that lands in the callback interrupts the program once out
    of it, and nothing is printed as ignored (with Python's own handler: "ran on")."""
    p = subprocess.run(
        [sys.executable, "-c", _IN_CALLBACK, "cli"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(NUMBA_CACHE_DIR=str(tmp_path / "numba")),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    # (after the compilation, or in numba's own Python code once out of the callback)
    assert p.stdout.split()[-2:] == ["interrupted", "1"], (p.stdout, p.stderr[-2000:])
    assert "Exception ignored" not in p.stderr, p.stderr[-2000:]


def test_the_handler_leaves_an_ignored_sigint_and_restores():
    """A SIGINT ignored at start (a background job's) stays ignored; install/restore pair up."""
    from gs_mapping import ctrl_c

    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert ctrl_c.install() is None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        previous = ctrl_c.install()
        assert signal.getsignal(signal.SIGINT) is ctrl_c.on_ctrl_c
        ctrl_c.restore(previous)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def _seed_store(path: Path) -> None:
    """A fleet store holding a global map of 3000 Gaussians (the server decodes and re-encodes it
    when it starts: seconds of numba compilation on a cold cache). Written with the plain paths."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from synthetic_maps import synthetic_map
        from gs_map_share.fleet_store import FleetStore, Row, identity
        from gs_map_share.quantize import QuantParams, to_qmap
        from gs_map_share.snapshot import encode_snapshot

        params = QuantParams.from_quality(3)  # map_server_node's defaults
        q = to_qmap(synthetic_map(3000, 0, seed=5), params)
        q.ids = np.arange(1, len(q) + 1, dtype=np.uint64)
        data = encode_snapshot(q, params, map_id=1000000, seq=100, n_levels=5, frame_id="map")[0]
        store = FleetStore(sys.argv[1], identity(1000000, "map", params, 0))
        store.compact_global(Row(100, 0, data), 0)
        store.close()
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=_env(GS_MAP_SHARE_NUMBA="0"))


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5, 4.0, 6.0, 9.0, None])  # None: once ready
def test_ctrl_c_stops_the_map_server_while_it_compiles(tmp_path, delay):
    """`gs-mapping run map_server_node` restarting on its store with a cold numba cache (a new
    install, a fresh NUMBA_CACHE_DIR), Ctrl-C at several moments of its start: it ends within a
    bounded time every time, during the start as "interrupted" (130), after "ready" with its
    summary (0); never a store called malformed, never ignored. The moments count from its Zenoh
    session's warning (the node is built, and its loops compiled, right after): counted from the
    launch, a loaded machine could still be importing gs_mapping.cli, before any handler of ours."""
    pytest.importorskip("zenoh")
    store = tmp_path / "fleet.sqlite3"
    _seed_store(store)
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(f"/**:\n  ros__parameters:\n    map_server_node:\n      store_path: {store}\n")
    argv = [sys.executable, "-m", "gs_mapping", "run", "map_server_node", "--transport", "zenoh",
            "--listen", "tcp/127.0.0.1:0", "--connect", "tcp/127.0.0.1:1", "--domain-id", "37",
            "--config", str(cfg)]  # fmt: skip
    p = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(NUMBA_CACHE_DIR=str(tmp_path / "numba")),
        # (a test runner may start its children with SIGINT ignored; a shell's foreground job takes it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err_lines: list[str] = []
    session_open = threading.Event()

    def read_stderr():
        for line in p.stderr:
            err_lines.append(line)
            if "no Zenoh router reachable" in line:
                session_open.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if delay is None:
        assert p.stdout.readline() == "map_server_node: ready\n"
    else:
        assert session_open.wait(120), "".join(err_lines)[-2000:]
        time.sleep(delay)
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)  # (its stdout is a few lines: the pipe cannot fill)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail(f"still running 60 s after Ctrl-C: {''.join(err_lines)[-2000:]}")
    out = p.stdout.read()
    reader.join(10)
    err = "".join(err_lines)
    assert "Exception ignored" not in err and "Traceback" not in err, err[-2000:]
    if delay is None or "ready" in out:
        assert p.returncode == 0 and "summary: " in out, (p.returncode, err[-2000:])
    else:
        assert p.returncode == 130 and err.rstrip().endswith("gs-mapping run: interrupted"), (
            p.returncode,
            err[-2000:],
        )
