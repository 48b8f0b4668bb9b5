"""Outside review (session 25d): today's changes (4b85e9c..e317e8c) -- the Makefile's dead-venv
check (``venv_alive``/``fresh``: a venv judged dead has its ``.installed`` removed and is rebuilt with
``venv --clear``), ``make demo``'s ``--overwrite``, the LiDAR visibility rule of ``cloud_to_depth``
(``visible``, 5x5 window, 10 %) and the TF clearing rule (``TF_CLEAR_BACKWARD_S = 0.1``), each
against something outside the project: the REAL GNU make on a copy of the Makefile, pip's own script
writer (distlib's ``ScriptMaker``, vendored in pip, which writes a ``#!/bin/sh`` exec trampoline for
a path with a space or over 127 bytes), the kernel's view of a symlinked folder (``getcwd`` is the
physical path, ``sys.executable`` the path the interpreter was started by), a hand ray cast of a
ground plane, and tf2_ros's jump handling (rcl calls clock jump callbacks only when ROS time is
overridden, i.e. sim time: a system-clock step never clears a tf2_ros buffer).

Found here, and fixed (the LiDAR window rule by its removal; its two roof-LiDAR cases were fixed in session #27 by
:mod:`gs_mapping.mapping.lidar_visibility`):
- a clone whose path holds a single quote (``/home/o'brien/gs_mapping``): ``venv_alive`` pastes
  $(CURDIR) inside '...' of a shell command, the shell fails ("Unterminated quoted string"), every
  venv is judged dead: every ``make`` removes ``.installed`` and rebuilds ``.venv`` from scratch with
  ``venv --clear`` (minutes, the network, the user's extra packages gone);
- a healthy venv whose console script pip (re)wrote through a symlinked path to the clone
  (``~/link/gs_mapping/.venv/bin/python -m pip install -e .``, an IDE's interpreter setting): the
  script names the symlinked path, $(CURDIR) is the physical one, the venv is judged dead and wiped;
- ``make demo`` now always passes ``--overwrite``, and the demo's "nothing but a demo's outputs"
  check takes any ``*.png`` as a demo output: ``make demo OUT=figures`` with a folder of the user's
  own PNGs deletes them all (before today ``make demo`` refused any existing folder);
- ``cloud_to_depth``'s visibility rule drops visible points: a dense cloud of a ground plane taken
  from the camera's own origin (no occlusion is possible, every point lies on its own pixel's ray)
  loses every row within ~20 pixels of the horizon (beyond 75 m with fx = 1000, whatever the camera
  height): depth ratio between rows 2 apart exceeds 1.1 there;
- on a wall-clock runtime (the DDS and Zenoh runtimes, rclpy without sim time) a backward step of the
  system clock of 0.1 s or more (an NTP step: ntpd steps only for offsets over 128 ms and slews
  smaller ones) forgets every moving transform, where tf2_ros (C++ and Python) never clears on a
  system-clock step: a frame waiting for its pose across the step cannot be posed;
- with no Python 3.11+ on PATH, the numpy-1.26 venv rule's ``$(PYTHON) -m venv`` becomes ``-m venv``,
  which make reads as "ignore errors" + the command ``m``: "make: m: No such file or directory ...
  (ignored)" then a failed pip line, not the one-line message ``make venv`` gives;
- a VLP-16 on the roof beside a 1280x720 camera: every return the camera cannot see (ray cast: a
  board in front hides the wall) stays depth (rings ~35 px apart, never within the 5x5 window),
  where README says such points are dropped;
- ``venv_alive`` greps the clone's python path as a SUBSTRING of the script: a clone moved to a
  path that is a tail of its old one (``/home/u/gs_mapping`` -> ``/gs_mapping``, a container's bind
  mount) is taken as alive, and ``make demo`` runs the dead script (the case the change was for).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]
REPO = SRC.parent
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")
VENV_PREREQS = ("requirements.txt", "requirements-test.txt", "setup.py", "pyproject.toml")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "PIP_"))}
    env |= {"PYTHONDONTWRITEBYTECODE": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    env.update(extra)
    return env


def _pip_script(bindir: Path, executable: str) -> Path:
    """``gs-mapping`` as pip writes a console script: pip's vendored distlib ``ScriptMaker`` with the
    interpreter pip runs under (its ``sys.executable``)."""
    from pip._vendor.distlib.scripts import ScriptMaker

    maker = ScriptMaker(None, str(bindir), add_launchers=False)
    maker.executable = executable
    maker.variants = {""}
    maker.make("gs-mapping = gs_mapping.cli:main")
    return bindir / "gs-mapping"


def _clone(root: Path, executable_dir: Path | None = None) -> Path:
    """A clone after ``make venv``: the Makefile and its prerequisites, a real ``.venv`` (``python -m
    venv --without-pip``) whose ``gs-mapping`` pip wrote naming ``executable_dir/.venv/bin/python``
    (default: ``root``, the folder make ran in), ``.installed`` newer than every prerequisite."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Makefile", root / "Makefile")
    for name in VENV_PREREQS:
        shutil.copy(REPO / name, root / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    named = (executable_dir or root) / ".venv" / "bin" / "python"
    _pip_script(root / ".venv" / "bin", str(named))
    earlier = time.time() - 3600
    for name in VENV_PREREQS:
        os.utime(root / name, (earlier, earlier))
    (root / ".venv" / ".installed").touch()
    return root


def _make_n(cwd: Path, *args: str) -> str:
    p = subprocess.run(
        [MAKE, "--no-print-directory", "-n", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return p.stdout + p.stderr


def _healthy_kept(root: Path, out: str) -> None:
    assert (root / ".venv" / ".installed").exists(), f"a healthy venv was judged dead:\n{out[-600:]}"
    assert "-m venv" not in out and "--clear" not in out, out[-600:]


# --------------------------------------------------------------------------------------------------
# the Makefile's dead-venv check
# --------------------------------------------------------------------------------------------------


@needs_make
@pytest.mark.parametrize(
    "name",
    ["plain", "with space", "non-ascii \u00e9t\u00e9 \u8def", "long-" + "x" * 130],
    ids=["plain", "space", "non-ascii", "over-127-bytes"],
)
def test_a_healthy_venv_is_kept_in_paths_pip_writes_a_trampoline_for(tmp_path, name):
    """pip's distlib writes ``#!/bin/sh`` + ``'''exec' "PATH" "$0" "$@"`` for an interpreter path
    with a space or a shebang over 127 bytes, and a plain ``#!PATH`` otherwise (non-ASCII included,
    as UTF-8 bytes). Either way the script holds this clone's ``.venv/bin/python``: ``make -n venv``
    in such a clone must find nothing to do and leave ``.installed``."""
    root = _clone(tmp_path / name / "gs_mapping")
    _healthy_kept(root, _make_n(root, "venv"))


@needs_make
def test_make_c_from_another_folder_keeps_a_healthy_venv(tmp_path):
    """``make -C clone`` changes into the clone before reading the Makefile (GNU make manual, -C):
    $(CURDIR) is the clone, the venv is the clone's, nothing to do."""
    root = _clone(tmp_path / "clone")
    (tmp_path / "elsewhere").mkdir()
    _healthy_kept(root, _make_n(tmp_path / "elsewhere", "-C", str(root), "venv"))


@needs_make
def test_a_healthy_venv_in_a_path_with_a_quote_is_kept(tmp_path):
    """A home folder such as ``/home/o'brien`` is a legal, common path. A healthy venv there
    (interpreter runs, its script names this clone's python, as pip wrote it) must be kept: the
    check is about the venv, not about the shell quoting of the folder's name."""
    root = _clone(tmp_path / "o'brien" / "gs_mapping")
    _healthy_kept(root, _make_n(root, "venv"))


@needs_make
def test_a_healthy_venv_reinstalled_through_a_symlinked_path_is_kept(tmp_path):
    """The kernel's ``getcwd`` (make's $(CURDIR)) is the physical path; Python's ``sys.executable``
    is the path it was started by, a symlink left unresolved (checked here first). So
    ``~/link/gs_mapping/.venv/bin/python -m pip install -e .`` (an IDE's interpreter setting, a
    symlinked home) writes a script naming ``link/...``: the same, working interpreter (``-ef``).
    make must keep that venv, not rebuild it from scratch with ``venv --clear``."""
    real = tmp_path / "real"
    (tmp_path / "link").symlink_to(real)
    root = _clone(real / "gs_mapping", executable_dir=tmp_path / "link" / "gs_mapping")
    via_link = tmp_path / "link" / "gs_mapping" / ".venv" / "bin" / "python"
    exe = subprocess.run(
        [str(via_link), "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
    )
    assert exe.stdout.strip() == str(via_link)  # what pip would write
    assert os.path.samefile(via_link, root / ".venv" / "bin" / "python")
    _healthy_kept(root, _make_n(root, "venv"))


# --------------------------------------------------------------------------------------------------
# make demo --overwrite
# --------------------------------------------------------------------------------------------------


def _demo_args(out: Path):
    return SimpleNamespace(out=str(out), frames=40, seed=2026, overwrite=True)


def test_make_demos_overwrite_still_refuses_a_folder_with_a_users_notes(tmp_path, monkeypatch):
    """The Makefile's comment: "the CLI still refuses a folder that holds more than a demo's
    outputs". A folder with the user's ``notes.txt`` beside an earlier demo's files is refused, the
    notes kept (the demo's own build step replaced by a no-op: only the output check runs)."""
    from gs_mapping.cli import demo
    from gs_mapping.errors import OutputError

    monkeypatch.setattr(demo, "_build", lambda out, args: (out / "report.md").write_text("new\n"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old\n")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError):
        demo.run(_demo_args(out))
    assert (out / "notes.txt").read_text() == "mine\n"


def test_make_demo_into_a_folder_of_the_users_own_pictures_keeps_them(tmp_path, monkeypatch):
    """``make demo OUT=figures`` (README lets OUT be any folder) where ``figures`` holds the user's
    own PNGs and no demo ever ran (no ``demo_config.yaml``, no report): it is not "an earlier demo's
    results" (--overwrite's help), so the pictures must survive (refused, or kept)."""
    from gs_mapping.cli import demo
    from gs_mapping.errors import OutputError

    monkeypatch.setattr(demo, "_build", lambda out, args: (out / "report.md").write_text("new\n"))
    out = tmp_path / "figures"
    out.mkdir()
    (out / "holiday.png").write_bytes(b"\x89PNG\r\n\x1a\nmine")
    try:
        demo.run(_demo_args(out))
    except OutputError:
        pass
    assert (out / "holiday.png").exists(), sorted(p.name for p in out.iterdir())


# --------------------------------------------------------------------------------------------------
# cloud_to_depth's visibility rule against a hand ray cast
# --------------------------------------------------------------------------------------------------

W, H, F = 1280, 720, 1000.0
K = np.array([[F, 0, 640.0], [0, F, 360.0], [0, 0, 1.0]])


def _ground_ray_cast(height: float):
    """Every pixel below the horizon's ray hit on the ground plane ``y = height`` (camera frame, y
    down): the points and the true z-depth image (each point on its own pixel centre)."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    sel = v > 360
    rays = np.stack([(u[sel] - 640) / F, (v[sel] - 360) / F, np.ones(int(sel.sum()))], 1)
    pts = rays * (height / rays[:, 1])[:, None]
    truth = np.zeros((H, W), np.float32)
    truth[v[sel], u[sel]] = pts[:, 2]
    return pts, truth


def test_a_sparse_vlp16_ground_at_the_camera_keeps_every_return():
    """A VLP-16 (rings 2 deg apart, 0.2 deg azimuth steps) at the camera's origin looking at flat
    ground 1.5 m below: from one origin nothing can be hidden, so every return in front projects to
    its own depth (ray cast: depth = range * cos of the angles)."""
    from gs_mapping.mapping.depth_registration import cloud_to_depth

    el = np.deg2rad(np.arange(-15, 0, 2.0))  # rings below the horizon
    az = np.deg2rad(np.arange(-40, 40, 0.2))
    E, A = np.meshgrid(el, az)
    r = 1.5 / np.sin(-E)  # range to the ground
    keep = r < 100
    E, A, r = E[keep], A[keep], r[keep]
    pts = np.stack([r * np.cos(E) * np.sin(A), -r * np.sin(E), r * np.cos(E) * np.cos(A)], 1)
    out = cloud_to_depth(pts, np.eye(4), K, (W, H))
    uv = np.rint(pts[:, :2] / pts[:, 2:] * F + [640, 360])
    uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)]
    assert (out > 0).sum() == len(np.unique(uv, axis=0)) > 500


def test_a_dense_ground_cloud_from_the_cameras_origin_keeps_its_far_rows():
    """A dense cloud (accumulated or a Livox-style 100 ms scan; an RGB-D camera's /points) of flat
    ground, taken from the camera's own origin: a hand ray cast puts every point on its own pixel's
    ray, nothing in front of it, so every point is visible and must stay. The rule compares depths of
    rows 2 pixels apart; on ground ``z = fy * h / (v - cy)``, so their ratio is ``(d + 2) / d``,
    over 1.1 for every row d < 20 pixels below the horizon, whatever the height h."""
    from gs_mapping.mapping.depth_registration import cloud_to_depth

    pts, truth = _ground_ray_cast(1.5)
    out = cloud_to_depth(pts, np.eye(4), K, (W, H))
    lost = (truth > 0) & (out == 0)
    assert not lost.any(), (
        f"{int(lost.sum())} visible ground pixels dropped, from {truth[lost].min():.1f} m out"
    )


# --------------------------------------------------------------------------------------------------
# TF clearing on a wall clock
# --------------------------------------------------------------------------------------------------


def _tf_msg(stamp_ns: int, x: float):
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Time, Header = ts.types["builtin_interfaces/msg/Time"], ts.types["std_msgs/msg/Header"]
    V3, Q = ts.types["geometry_msgs/msg/Vector3"], ts.types["geometry_msgs/msg/Quaternion"]
    Tr, TS = ts.types["geometry_msgs/msg/Transform"], ts.types["geometry_msgs/msg/TransformStamped"]
    TFM = ts.types["tf2_msgs/msg/TFMessage"]
    hdr = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="odom")
    t = TS(
        header=hdr,
        child_frame_id="base_link",
        transform=Tr(translation=V3(x=x, y=0.0, z=0.0), rotation=Q(x=0.0, y=0.0, z=0.0, w=1.0)),
    )
    return TFM(transforms=[t])


def test_a_system_clock_step_back_keeps_tf_as_tf2_ros_does():
    """tf2_ros's Buffer clears on a clock jump callback; rcl calls those only when ROS time is
    overridden (``rcl_set_ros_time_override``: sim time, /clock). With the system clock (the DDS and
    Zenoh runtimes' ``time.time_ns()``, rclpy without use_sim_time) a step is never seen, and a
    frame stamped before the step is still posed from the 50 Hz TF around it. An NTP step is at
    least 128 ms (ntpd's step threshold; smaller offsets are slewed). Here: TF on the same host
    every 20 ms up to T0, the clock steps back 0.2 s, the next TF comes; the lookup at T0 - 50 ms
    (a camera frame waiting in the sync queue) must succeed."""
    from gs_mapping.nodes.base import NodeBase
    from gs_mapping.runtime.dds import DdsContext
    from gs_mapping.tf import TFBuffer

    # the DDS runtime's clock is the system clock, and says so (as the Zenoh runtime's, and rclpy's
    # without use_sim_time); the context here answers as it does
    assert DdsContext.ros_time(None) is False
    clock = {"now": 0}
    ctx = SimpleNamespace(
        now_ns=lambda: clock["now"],
        ros_time=lambda: False,
        logger=SimpleNamespace(warning=lambda *a, **k: None),
    )
    node = NodeBase.__new__(NodeBase)
    node.ctx, node._tf_clock_ns, node._tf_at_this_clock = ctx, -1, []
    tf = TFBuffer()
    t0 = 1_700_000_000 * 10**9
    for i in range(50, -1, -1):
        stamp = t0 - i * 20_000_000
        clock["now"] = stamp + 1_000_000  # received 1 ms after its stamp
        node.add_tf(tf, _tf_msg(stamp, stamp / 1e9 - t0 / 1e9), static=False)
    clock["now"] = t0 - 200_000_000 + 20_000_000  # the NTP step: 0.2 s back, then the next TF
    node.add_tf(tf, _tf_msg(clock["now"] - 1_000_000, 0.0), static=False)
    node.tf_follows_clock(tf)
    T = tf.lookup("odom", "base_link", t0 - 50_000_000)
    assert abs(T.matrix()[0, 3] - (-0.05)) < 1e-6


@needs_make
def test_make_venv_numpy1_without_python_311_says_so_in_one_line(tmp_path):
    """GNU make reads a recipe line that starts with '-' as "ignore this line's error" (manual,
    'Errors in Recipes'). With PYTHON empty (no Python 3.11+ on PATH: Ubuntu 22.04, ROS 2 Humble's
    machine; here a stand-in python3 that says 3.10) ``make venv-numpy1`` (and ``make test-numpy1``)
    must say what is missing, as ``make venv`` does ("need Python 3.11 or newer"), not run a program
    called ``m``, ignore that, and fail on the missing ``.venv-numpy1/bin/python``."""
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copy(REPO / "Makefile", root / "Makefile")
    for name in (*VENV_PREREQS, "requirements-numpy1.txt"):
        shutil.copy(REPO / name, root / name)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "rm", "grep", "touch"):
        (bindir / tool).symlink_to(shutil.which(tool))
    fake = bindir / "python3"
    fake.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.10.12" && exit 0\nexit 1\n')
    fake.chmod(0o755)
    p = subprocess.run(
        [MAKE, "--no-print-directory", "venv-numpy1"],
        cwd=root,
        env=_env(PATH=str(bindir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "(ignored)" not in out and "m: No such file" not in out, out[-600:]
    assert "3.11" in out, out[-600:]


def _roof_lidar_scene(el_step_deg: float, az_step_deg: float):
    """A LiDAR 0.4 m above the camera (same axes), a 2 m x 1 m board 5 m ahead, a wall at 12 m. Ray
    cast: the LiDAR's returns (in its frame), T_cam_lidar, and which returns the camera cannot see
    (its own ray to the point hits the board first)."""
    lid = np.array([0.0, -0.4, 0.0])

    def cast(o, d):
        tb = (5 - o[2]) / d[:, 2]
        pb = o + d * tb[:, None]
        onb = (np.abs(pb[:, 0]) <= 1) & (np.abs(pb[:, 1]) <= 0.5)
        return o + d * np.where(onb, tb, (12 - o[2]) / d[:, 2])[:, None]

    E, A = np.meshgrid(
        np.deg2rad(np.arange(-15, 16, el_step_deg)), np.deg2rad(np.arange(-30, 30, az_step_deg))
    )
    E, A = E.ravel(), A.ravel()
    pts = cast(lid, np.stack([np.cos(E) * np.sin(A), -np.sin(E), np.cos(E) * np.cos(A)], 1))
    hit = cast(np.zeros(3), pts / np.linalg.norm(pts, axis=1, keepdims=True))
    hidden = np.linalg.norm(hit, axis=1) < np.linalg.norm(pts, axis=1) - 1e-6
    T = np.eye(4)
    T[:3, 3] = lid
    u = np.rint(F * pts[:, 0] / pts[:, 2] + 640).astype(int)
    v = np.rint(F * pts[:, 1] / pts[:, 2] + 360).astype(int)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    return pts - lid, T, hidden & inside, pts[:, 2], u, v


def _hidden_kept(el_step: float, az_step: float) -> tuple[int, int]:
    from gs_mapping.mapping.depth_registration import cloud_to_depth

    cloud, T, hidden, z, u, v = _roof_lidar_scene(el_step, az_step)
    out = cloud_to_depth(cloud, T, K, (W, H))
    kept = np.abs(out[v[hidden], u[hidden]] - z[hidden]) < 1e-3
    return int(hidden.sum()), int(kept.sum())


def test_a_dense_roof_lidar_loses_the_wall_the_board_hides():
    """README: points the camera cannot see (hidden by a nearer surface the LiDAR sees past from its
    offset) are dropped. With beams 0.1 deg apart (under 2 px at fx = 1000) every return the hand ray
    cast finds hidden behind the board is gone."""
    hidden, kept = _hidden_kept(0.1, 0.1)
    assert hidden > 1000 and kept == 0


def test_a_vlp16_on_the_roof_loses_the_wall_the_board_hides():
    """The same scene with a VLP-16 (16 rings 2 deg apart, 0.2 deg azimuth), the most common LiDAR
    beside a 1280x720 camera: its rings are ~35 px apart in the image, so the 5x5 window around a
    hidden wall return holds no board return, and the ray cast's hidden returns must still not be
    depth (README's promise for LiDAR + camera)."""
    hidden, kept = _hidden_kept(2.0, 0.2)
    assert hidden > 50 and kept == 0, f"{kept} of {hidden} returns the camera cannot see are depth"


@needs_make
def test_a_clone_moved_to_a_tail_of_its_old_path_is_rebuilt(tmp_path):
    """The moved-clone case the change was made for (test_outside_setup): a venv whose script names
    another folder's interpreter is dead (the kernel fails the shebang with ENOENT). Moving a clone
    from ``/home/u/gs_mapping`` to ``/gs_mapping`` (a container's bind mount, ``mv ~/work/x /x``)
    leaves a script naming ``/home/u/gs_mapping/.venv/bin/python``, which CONTAINS the new
    ``/gs_mapping/.venv/bin/python``: grep -F finds it. Expected as for any moved clone: the venv is
    rebuilt (``.installed`` gone, ``-m venv --clear`` in ``make -n``)."""
    new = tmp_path / "gs_mapping"
    old = tmp_path / "home" / str(new).lstrip("/")
    _clone(old)
    shutil.move(str(old), str(new))
    script = (new / ".venv" / "bin" / "gs-mapping").read_text()
    assert str(old / ".venv" / "bin" / "python") in script  # names the old folder's interpreter
    assert not (old / ".venv" / "bin" / "python").exists()  # which is gone: ENOENT on exec
    out = _make_n(new, "venv")
    assert "-m venv --clear" in out, out[-600:]
