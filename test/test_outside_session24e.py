"""Outside review (session 24e): the last command-line and launch changes (a missing dependency named
in one line, status lines to a gone terminal, ``router``/``run`` stopping cleanly on every unwinding
signal, the namespaced RViz config as one file per namespace in the user's runtime folder), each
against something outside the project: Python's own import system (``importlib.util.find_spec``),
the XDG Base Directory specification, a real pseudo-terminal that goes away (Python's pty module),
several real processes writing at once, PyYAML's reading of the file RViz is handed, Python's
documented ``os.path.expanduser`` without a home.

Found here (xfail strict until fixed):
- a ModuleNotFoundError for a submodule of an installed package (``import numpy.x``, a bug of ours,
  or a package of another version) ends in "needs the Python package 'numpy', which is not installed
  here", exit 2, with no traceback: the message is false and the bug hidden;
- ``rviz_config_dir`` uses $XDG_RUNTIME_DIR whoever owns it: run as root with another user's
  runtime dir (``sudo -E ros2 launch``) it leaves a root-owned 0700 ``gs_mapping`` folder there, and
  that user's own launches with a namespace then fail (OutputError: permission denied);
- ``run NODE`` on a real hang-up (the terminal gone, stdout on it) exits 2, not the 0 README promises
  ("``router`` and ``run`` stop cleanly, exit 0, on all three"): its closing "summary:" line raises
  EIO on the gone terminal, which main() reports as an output error;
- with $HOME unset and no passwd entry for the uid (``docker run --user 12345``) rviz_config_dir
  makes a literal ``~/.ros/gs_mapping`` folder in the launch's working directory and hands RViz that
  relative path (``os.path.expanduser`` returns '~/.ros' unchanged).
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]  # src/ (gs_mapping, gs_map_share, gsmap_hd)
REPO = SRC.parent
RVIZ = REPO / "config" / "gs_mapping.rviz"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(SRC))
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# the ModuleNotFoundError branch of main()
# --------------------------------------------------------------------------------------------------


def test_a_missing_submodule_of_an_installed_package_is_not_called_not_installed(monkeypatch, capsys):
    """Python's import system (``importlib.util.find_spec``) finds numpy installed here. A command
    whose code imports a submodule that does not exist (a bug of ours, a typo, or a dependency of
    another version than the one the code was written for: ``zenoh.ext``, ``shapely.x``) raises
    ModuleNotFoundError with ``name == 'numpy.not_a_submodule_of_numpy'``. main() cuts the name at its
    first dot and says "needs the Python package 'numpy', which is not installed here" (exit 2, no
    traceback): false, and the bug it hides is never seen. What is missing is not the package, so
    main() should raise as it does for a module of ours (or at least name what is missing)."""
    assert importlib.util.find_spec("numpy") is not None  # (the outside fact: numpy is installed)
    import gs_mapping.cli as cli

    router = importlib.import_module("gs_mapping.cli.router")

    def run(_args):
        import numpy.not_a_submodule_of_numpy  # noqa: F401

    monkeypatch.setattr(router, "run", run)
    try:
        rc = cli.main(["router", "--duration", "0.1"])
    except ModuleNotFoundError:
        return  # (raised: a traceback a developer sees, as for a module of ours)
    err = capsys.readouterr().err
    assert "'numpy', which is not installed" not in err, (rc, err)


# --------------------------------------------------------------------------------------------------
# rviz_config_dir: $XDG_RUNTIME_DIR of another user
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root (chown)")
def test_rviz_config_is_not_put_in_another_users_runtime_dir(tmp_path, monkeypatch):
    """XDG Base Directory Specification: '$XDG_RUNTIME_DIR defines the base directory relative to
    which user-specific non-essential runtime files … should be stored. The directory MUST be owned
    by the user, and he MUST be the only one having read and write access to it. Its Unix access
    mode MUST be 0700.' ``sudo -E`` (and ``su`` without ``-``) keeps the login user's
    XDG_RUNTIME_DIR (/run/user/1000) for root. rviz_config_dir() takes it as is: root's launch makes
    a root-owned 0700 ``gs_mapping`` folder in that user's runtime dir, and every later namespaced
    launch of that user fails ('cannot use this output: permission denied', seen running as uid
    65534 after root). A runtime dir not owned by this user is not this user's: fall back to
    $ROS_HOME (or ~/.ros) and leave the other user's folder as it was."""
    other = tmp_path / "run_user_65534"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(other))
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    out = Path(rviz_config_for_namespace(RVIZ, "/robot1"))
    assert out.read_text()  # (a config RViz can read, wherever it is)
    assert list(other.iterdir()) == [], "something of root's left in another user's runtime dir"


# --------------------------------------------------------------------------------------------------
# rviz_config_for_namespace: two launches at once with the same namespace
# --------------------------------------------------------------------------------------------------


def _launch_many(args) -> list[str]:
    folder, rounds = args
    import yaml

    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    problems = []
    for _ in range(rounds):
        try:
            path = rviz_config_for_namespace(RVIZ, "/robot1", folder)
            doc = yaml.safe_load(Path(path).read_text())
            if "/robot1/" not in str(doc):
                problems.append("a config without the namespace")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def test_launches_at_once_with_one_namespace_always_hand_rviz_a_whole_config(tmp_path):
    """Two launches (or a multi-robot file's includes) under one namespace at the same moment write
    the same file. Each must still hand RViz a whole config: here 3 real processes write and read it
    back 25 times each, and every read is a YAML document PyYAML parses (RViz's format), with the
    namespaced topics; afterwards the folder holds that one file, no temp file left beside it."""
    yaml = pytest.importorskip("yaml")
    assert yaml
    folder = tmp_path / "rviz"
    folder.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        problems = sum(pool.map(_launch_many, [(str(folder), 25)] * 3), [])
    assert problems == []
    assert sorted(p.name for p in folder.iterdir()) == ["gs_mapping_robot1.rviz"]


# --------------------------------------------------------------------------------------------------
# run NODE on a real hang-up
# --------------------------------------------------------------------------------------------------


def test_run_on_a_real_hangup_stops_cleanly_with_exit_0(tmp_path):
    """A hang-up as the kernel makes it (POSIX, General Terminal Interface: the modem disconnect
    sends SIGHUP to the controlling process; afterwards writes on the terminal fail, Linux answers
    EIO): ``gs-mapping run map_server_node --transport zenoh`` runs with stdout and stderr on a
    pseudo-terminal (Python's pty module) whose master side is then closed, and SIGHUP comes.
    README: 'SIGTERM and SIGHUP … unwind a command …; ``router`` and ``run`` stop cleanly, exit 0, on
    all three'. ``router`` does (exit 0); ``run`` stops its loop, then prints its "summary:" line to
    the gone terminal in its finally block, the write raises EIO and main() exits 2 ('error:
    Input/output error', itself unwritable)."""
    pytest.importorskip("zenoh")
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", "run", "map_server_node", "--transport", "zenoh"]
        + ["--listen", "tcp/127.0.0.1:0"],
        cwd=tmp_path,  # (the fleet store's file)
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"ready" not in seen and time.monotonic() < deadline and p.poll() is None:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        assert b"ready" in seen, seen.decode(errors="replace")[-1000:]
        os.close(master)  # the terminal goes away
        master = -1
        time.sleep(0.3)
        p.send_signal(signal.SIGHUP)
        rc = p.wait(timeout=60)
    finally:
        if master >= 0:
            os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    # (the gone terminal (EIO) may stop the node before the SIGHUP comes; the signal then finds the
    # process past its handlers, ending it by the hang-up itself: a shell shows 129 either way)
    assert rc in (0, -signal.SIGHUP), rc


# --------------------------------------------------------------------------------------------------
# rviz_config_dir: no $HOME and no passwd entry (docker run --user 12345)
# --------------------------------------------------------------------------------------------------


def test_no_home_makes_no_literal_tilde_folder_in_the_working_directory(tmp_path, monkeypatch):
    """Python's ``os.path.expanduser`` (its documentation: 'If the expansion fails or if the path does
    not begin with a tilde, the path is returned unchanged'; without $HOME it asks the password
    database, which has no entry for a uid given by ``docker run --user 12345``). rviz_config_dir()
    then mkdirs the relative ``~/.ros/gs_mapping`` in the launch's working directory and hands RViz
    ``~/.ros/gs_mapping/gs_mapping_robot1.rviz`` (seen for real as uid 12345 with HOME unset). The
    password database's answer is stood in for here (KeyError, as ``pwd.getpwuid`` raises for an
    unknown uid). No folder named ``~`` may appear in the working directory; the path is absolute
    (or a one-line error says where no folder could be found, as rcl's logging does without a home)."""
    import pwd

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("ROS_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert os.path.expanduser("~/.ros") == "~/.ros"  # (the outside fact: Python leaves it unexpanded)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    try:
        out = rviz_config_for_namespace(RVIZ, "/robot1")
    except GsMappingError:
        out = None
    assert not (cwd / "~").exists()
    assert out is None or os.path.isabs(out), out
