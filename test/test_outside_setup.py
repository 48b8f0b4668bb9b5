"""Outside review (setup) of issue 2's promise "two set-up commands on a fresh clone" (README "Set up
and run": ``make demo``, ``make test``) under the conditions users really have: the command run a
second time, an output folder with a space in its name, pip configured as Debian users configure it,
a clone moved to another folder, the package built as pip builds it.

Each test runs the REAL ``make`` (GNU make) on the project's real Makefile, copied with the files its
venv rule depends on into tmp_path, and compares with something outside the project: GNU make's own
option parsing, POSIX sh word splitting, pip's documented ``PIP_<OPTION>`` environment variables, the
kernel's shebang rule, pip's PEP 517 wheel and the wheel format (PEP 427: ``*.data/data`` is
installed under the prefix). Where ``make demo`` would go on to the full demo (minutes), the test
stops it once it is past the point under test, so the file stays fast.

Found here, and fixed:
- ``make demo`` a second time fails: ``out: exists already (pass --overwrite to replace it)``, which a
  ``make`` user cannot pass (``make demo --overwrite`` is GNU make's "unrecognized option");
- ``make demo OUT='my demo'`` splits the folder name: ``--out my demo`` (the Makefile does not quote
  ``$(OUT)``), argparse's "unrecognized arguments: demo";
- ``make clean OUT='my demo'`` runs ``rm -rf … my demo …``: two other folders go, the named one stays;
- README "Linux, Python 3.10+", but requirements.txt pins numpy 2.4.6, scipy 1.17.1, pillow 13.0.0,
  shapely 2.2.0 and onnxruntime 1.31.1, whose Requires-Python is >=3.11: on Ubuntu 22.04 (Humble's
  python3 3.10) ``make demo`` ends in pip's "No matching distribution found for numpy==2.4.6";
- ``PIP_USER=1`` (pip's environment twin of ``user = true`` in pip.conf, as Debian users set it to keep
  pip off the system) stops ``make venv`` at its first pip line: pip refuses ``--user`` in a venv;
- a clone moved or renamed after ``make demo`` (or a pyenv Python removed) keeps a ``.venv`` whose
  interpreter is gone; ``.venv/.installed`` still looks up to date, so ``make demo`` runs the dead
  console script: ``make: .venv/bin/gs-mapping: No such file or directory`` (a file that is there;
  ENOENT is its shebang's interpreter), exit 127, no hint.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]
REPO = SRC.parent
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")
# what the venv rule of the Makefile depends on (copied so the rule sees an up-to-date venv)
VENV_PREREQS = ("requirements.txt", "requirements-test.txt", "setup.py", "pyproject.toml")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "PIP_"))}
    env |= {"PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "PIP_CONFIG_FILE": os.devnull}
    env.update(extra)
    return env


def _project(root: Path, *, venv: bool = True) -> Path:
    """The project's Makefile and the files its venv rule depends on, in ``root``. With ``venv``: an
    installed ``.venv`` as ``make venv`` leaves it, whose console script ``gs-mapping`` runs the real
    CLI of this checkout (a shebang to the venv's own python, as pip writes it)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Makefile", root / "Makefile")
    for name in VENV_PREREQS:
        shutil.copy(REPO / name, root / name)
    if venv:
        bindir = root / ".venv" / "bin"
        bindir.mkdir(parents=True)
        # the interpreter as venv links it: .venv/bin/python -> the base python
        (bindir / "python").symlink_to(sys.executable)
        script = bindir / "gs-mapping"
        script.write_text(
            f"#!{bindir / 'python'}\n"
            "import sys\n"
            f"sys.path[:0] = {[str(SRC), *[p for p in sys.path if p]]!r}\n"
            "from gs_mapping.cli import main\n"
            "sys.exit(main())\n"
        )
        script.chmod(0o755)
        earlier = time.time() - 3600  # every prerequisite older than the stamp, as after `make venv`
        for name in VENV_PREREQS:
            os.utime(root / name, (earlier, earlier))
        (root / ".venv" / ".installed").touch()
    return root


def _make(root: Path, *args: str, env=None, timeout: float = 60, stop_after: float | None = None):
    """``make -C root ARGS`` in its own process group. ``stop_after``: a run still going after that
    many seconds is past the point under test: Ctrl-C to its group (as a terminal sends it), and
    ``None`` is returned as its return code."""
    p = subprocess.Popen(
        [MAKE, "--no-print-directory", "-C", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or _env(),
        start_new_session=True,
        # a terminal's Ctrl-C reaches make whatever this process inherited (a background job's
        # SIGINT is ignored, and an ignored signal stays ignored across exec)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        out, _ = p.communicate(timeout=stop_after or timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        if stop_after is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    os.killpg(p.pid, signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
    return None, out


def _previous_demo(out: Path) -> dict[str, bytes]:
    """``out`` as a finished earlier demo left it (the names README's table lists)."""
    (out / "world_bag").mkdir(parents=True)
    (out / "replay_bag").mkdir()
    files = {
        "report.md": b"# earlier demo\n",
        "metrics.json": b"{}\n",
        "demo_config.yaml": b"/**: {}\n",
        "lanes_bev.png": b"\x89PNG\r\n\x1a\n",
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


# --------------------------------------------------------------------------------------------------
# make demo, a second time
# --------------------------------------------------------------------------------------------------


@needs_make
def test_gnu_make_has_no_overwrite_option_to_pass_on(tmp_path):
    """The reference for the next test: GNU make parses every ``--word`` on its own command line as
    one of its options; ``make demo --overwrite`` is 'unrecognized option', so advice to 'pass
    --overwrite' can only be followed by bypassing make."""
    r = subprocess.run([MAKE, "demo", "--overwrite"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "unrecognized option" in r.stderr and "--overwrite" in r.stderr


@needs_make
def test_make_demo_a_second_time_redoes_the_demo_or_says_a_make_command(tmp_path):
    """README: ``make demo`` leaves its results in ``out/``. A user runs it again (after a ``git
    pull``, to see it once more): it should redo the demo (the CLI replaces a folder only when it
    holds nothing but a demo's outputs, which this one does), or fail in one line naming something
    a make user can run. Reference: GNU make itself, which refuses ``make demo --overwrite`` (the
    previous test). The run is stopped with Ctrl-C once it is under way; the earlier results must
    then still be there, whole (an interrupted demo leaves the previous results, cli/demo.py)."""
    pytest.importorskip("torch")  # the demo itself runs once it is let through (not in the Humble venv)
    root = _project(tmp_path / "clone")
    old = _previous_demo(root / "out")
    rc, out = _make(root, "demo", stop_after=15)
    if rc is None:  # redoing it: stopped mid-way, the earlier results are kept
        for name, data in old.items():
            assert (root / "out" / name).read_bytes() == data
        assert not [p.name for p in root.iterdir() if p.name.startswith(".out.tmp")]
        return
    said = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(("make:", "make["))]
    assert rc == 0 or "make " in said[-1] or "rm -r" in said[-1], out[-1500:]


# --------------------------------------------------------------------------------------------------
# make demo OUT=...
# --------------------------------------------------------------------------------------------------


@needs_make
def test_make_demo_out_with_a_space_is_one_folder(tmp_path):
    """``make demo OUT='my demo'``: make takes ``OUT=my demo`` as one variable (GNU make manual,
    'Overriding Variables'), and the recipe is a POSIX sh command line, where an unquoted expansion
    is split at blanks. The folder given must reach the CLI whole. Here it already holds a file of
    the user's, so the real CLI refuses it at once, naming it, whatever else the fix does."""
    root = _project(tmp_path / "clone")
    mine = root / "my demo"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    rc, out = _make(root, "demo", "OUT=my demo", stop_after=25)
    assert "unrecognized arguments" not in out, out[-800:]
    assert rc not in (None, 0), out[-800:]
    said = [ln for ln in out.splitlines() if ln.startswith("gs-mapping")]  # the CLI's own line
    assert said and "my demo" in said[-1], out[-800:]
    assert (mine / "notes.txt").read_text() == "mine\n"


@needs_make
def test_make_c_from_another_folder_works_in_the_clone_and_leaves_the_callers_out(tmp_path):
    """``make -C clone demo`` from the folder above (what a script, an IDE or a CI step runs): GNU
    make changes into the clone before reading the Makefile (manual, 'Options Summary', -C), so the
    relative ``.venv`` and ``out`` are the clone's, and an ``out`` in the caller's folder is never
    touched. The clone's ``out`` holds a file of the user's, so the real CLI stops at once."""
    root = _project(tmp_path / "clone")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("caller's\n")
    (root / "out").mkdir()
    (root / "out" / "notes.txt").write_text("clone's\n")
    p = subprocess.run(
        [MAKE, "--no-print-directory", "-C", "clone", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert p.returncode != 0
    assert "gs-mapping demo: error: out: " in p.stderr, (p.stdout + p.stderr)[-800:]
    assert "Traceback" not in p.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "caller's\n"
    assert (root / "out" / "notes.txt").read_text() == "clone's\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clone", "out"]


@needs_make
def test_make_clean_with_out_holding_a_space_removes_that_folder_only(tmp_path):
    """``make clean`` removes ``$(OUT)`` with ``rm -rf``; the recipe is a POSIX sh command line, where
    an unquoted expansion is split at blanks, so ``OUT='my demo'`` would name ``my`` and ``demo``:
    two folders of the user's that are no demo output. Only the folder named goes."""
    root = _project(tmp_path / "clone", venv=False)
    for name in ("my", "demo", "my demo"):
        (root / name).mkdir()
        (root / name / "f.txt").write_text(name)
    rc, out = _make(root, "clean", "OUT=my demo")
    assert rc == 0, out[-800:]
    assert (root / "my" / "f.txt").read_text() == "my", out[-800:]
    assert (root / "demo" / "f.txt").read_text() == "demo", out[-800:]
    assert not (root / "my demo").exists(), out[-800:]


# --------------------------------------------------------------------------------------------------
# pip as users configure it
# --------------------------------------------------------------------------------------------------


@needs_make
def test_make_venv_with_pip_user_set_gets_past_its_first_pip_line(tmp_path):
    """pip reads every option from ``PIP_<NAME>`` (pip docs, 'Configuration: Environment
    Variables'); ``PIP_USER=1`` is ``user = true`` in pip.conf, which Debian/Ubuntu users set so that
    a bare ``pip install`` never touches the system. pip then refuses any install inside a venv
    ('Can not perform a '--user' install. User site-packages are not visible in this virtualenv').
    A Makefile that builds its own venv has to turn it off for its pip lines (PIP_USER=0 wins over
    the file). Run offline (no index, empty requirement files in the copy): the rule must get past
    ``pip install --upgrade pip`` and on to its later lines, as it does without PIP_USER."""
    root = _project(tmp_path / "clone", venv=False)
    for name in ("requirements.txt", "requirements-test.txt"):
        (root / name).write_text("")
    links = tmp_path / "no_wheels"
    links.mkdir()
    env = _env(PIP_USER="1", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links), PIP_DISABLE_PIP_VERSION_CHECK="1")
    rc, out = _make(root, "venv", f"PYTHON={sys.executable}", env=env, timeout=120)
    assert "--user' install" not in out, out[-1200:]
    assert "nuscenes-devkit" in out, out[-1200:]  # make echoed the third pip line: the first two passed


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        req = line.split("#")[0].strip()
        if "==" in req and ";" not in req:
            name, version = req.split("==")
            pins[name.strip()] = version.strip()
    return pins


def test_the_pinned_requirements_install_on_the_python_the_readme_names():
    """README 'Set up and run': 'On a fresh clone (Linux, Python 3.10+ …)' — and Python 3.10 is what
    ``python3`` is on Ubuntu 22.04, ROS 2 Humble's platform. ``make venv`` installs requirements.txt
    with that ``python3``; pip skips every release whose ``Requires-Python`` (core metadata, PEP 345 /
    PEP 440 specifier, read here from the packages themselves as installed at the pinned versions)
    excludes the running Python, and then fails 'No matching distribution found'. Every pin must
    admit the README's least Python (or the README name the Python the pins need)."""
    import re
    from importlib import metadata

    specifiers = pytest.importorskip("packaging.specifiers")
    readme = (REPO / "README.md").read_text()
    (least,) = re.findall(r"On a fresh clone \(Linux, Python (3\.\d+)\+", readme)  # the promise under test
    pins = _pins(REPO / "requirements.txt")
    try:
        here = {name: metadata.version(name).split("+")[0] for name in ("numpy", "scipy", "torch")}
    except metadata.PackageNotFoundError:
        here = {}
    if not here or any(here[name] != pins[name] for name in here):
        pytest.skip(
            "this venv does not hold requirements.txt's pinned numpy, scipy and torch (the Humble one)"
        )
    excluded = []
    for name, version in pins.items():
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        requires = meta.get("Requires-Python")
        if meta["Version"].split("+")[0] == version and requires:
            if not specifiers.SpecifierSet(requires).contains(f"{least}.0"):
                excluded.append(f"{name}=={version} (Requires-Python {requires})")
    assert not excluded, f"pinned in requirements.txt, not installable on Python {least}: {excluded}"


# --------------------------------------------------------------------------------------------------
# a moved clone
# --------------------------------------------------------------------------------------------------


@needs_make
def test_make_demo_in_a_moved_clone_rebuilds_the_venv_or_says_so(tmp_path):
    """A venv is not relocatable: its console scripts start with ``#!<absolute path>/.venv/bin/python``
    (pip writes the interpreter's absolute path) and the kernel runs that path or fails with ENOENT
    ('bad interpreter: No such file or directory'). Users rename or move clones, and pyenv users
    uninstall an old Python. ``.venv/.installed`` is still newer than every requirement file, so
    make takes the dead venv as installed, and make's exec of the script fails with ENOENT
    ('make: .venv/bin/gs-mapping: No such file or directory', exit 127, of a file that is there).
    Expected: the venv is rebuilt (the rule's ``-m venv``
    runs; stopped here, pip is offline) or one line says to run ``make clean`` / remove ``.venv``."""
    root = _project(tmp_path / "clone")
    moved = tmp_path / "renamed clone"
    root.rename(moved)
    (moved / "out").mkdir()
    (moved / "out" / "notes.txt").write_text("stop the real CLI at once if it runs\n")
    env = _env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path))
    rc, out = _make(moved, "demo", env=env, stop_after=30)
    for kernel_says in (
        "bad interpreter",
        "required file not found",
        "gs-mapping: No such file or directory",
    ):
        assert kernel_says not in out, out[-800:]
    assert "-m venv" in out or "make clean" in out or ".venv" in out.splitlines()[-1], out[-800:]


# --------------------------------------------------------------------------------------------------
# the package as pip builds it
# --------------------------------------------------------------------------------------------------


def test_pip_wheel_holds_launch_config_checkpoints_and_console_scripts(tmp_path):
    """``pip wheel .`` / ``pip install .`` (PEP 517 through pyproject.toml's setuptools backend; not
    colcon's ``setup.py install``, checked elsewhere): by the wheel format (PEP 427) ``*.data/data/X``
    installs to ``<prefix>/X``, so ``ros2 launch gs_mapping …`` and ament_index find
    share/gs_mapping/{launch,config} and the package marker; the shipped HD checkpoints travel as
    package data and the console scripts as entry points. Compared with the tree's own files."""
    import importlib.util

    # (looked up, not imported: setuptools imported here, after another test loaded the standard
    # library's distutils into this process, fails its own distutils check; pip builds in a child,
    # with setuptools' own bdist_wheel)
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here")
    work = tmp_path / "src_copy"
    shutil.copytree(
        REPO,
        work,
        ignore=shutil.ignore_patterns(
            ".venv*", ".git", "out", "build", "*.egg-info", "__pycache__", ".hypothesis"
        ),
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "w"),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=_env(PIP_NO_INDEX="1"),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-1500:]
    (whl,) = (tmp_path / "w").glob("gs_mapping-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    data = next(n.split("/")[0] for n in names if n.endswith(".data/data/share/gs_mapping/package.xml"))
    share = f"{data}/data/share"
    for f in sorted((REPO / "launch").glob("*.launch.py")):
        assert f"{share}/gs_mapping/launch/{f.name}" in names
    for f in sorted([*(REPO / "config").glob("*.yaml"), *(REPO / "config").glob("*.rviz")]):
        assert f"{share}/gs_mapping/config/{f.name}" in names
    assert f"{share}/ament_index/resource_index/packages/gs_mapping" in names
    for f in sorted((SRC / "gsmap_hd" / "assets").glob("*.pt")):
        assert f"gsmap_hd/assets/{f.name}" in names
        assert zipfile.ZipFile(whl).read(f"gsmap_hd/assets/{f.name}") == f.read_bytes()
    ep = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in ("gs-mapping", "hd_map_node", "mapper_node", "map_receiver_node", "map_server_node"):
        assert f"\n{script} = " in "\n" + ep
