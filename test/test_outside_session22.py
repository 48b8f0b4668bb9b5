"""Outside review of session 22's changes (commits 7c96de1, d9938a5 on bcd1ea5): what the new code
does to inputs, configs and setups that worked before, and to the edge cases of its new rules.

Each test compares the suite with something outside it:

- rcl itself (ros2/rcl ``rcl/test/rcl/test_expand_topic_name.cpp`` and ``validate_topic_name.c``):
  the names rcl accepts and what it expands them to, for the runtimes that now check names as rcl
  does (``nodes.context.check_topic_name`` / ``resolve_topic``), and the namespaces rcl takes for a
  node (``rmw_validate_namespace``: ``/`` is the root namespace, where a node started without
  ``--ros-args -r __ns:=…`` lives);
- the previous release (bcd1ea5) where it was right, each checked by hand on a checkout of it:
  ``hd-train --overwrite`` of a run folder reached through a symbolic link, named ``.``, or that is
  a mount point (a Docker bind mount) replaced the run; ``hd-train`` into a writable folder under a
  read-only parent trained; a map server took a vehicle in the root namespace; the colour/depth
  pairing of a recording whose clock steps back, or whose depth images arrive swapped, paired every
  frame (message_filters' ApproximateTime);
- a hand count or computation of the recording (which depth belongs to which colour image; the
  robot's odometry, on ``/robot1/tf`` or at 10 Hz under a 30 Hz camera: x = speed × t, as tf2
  interpolates it and tf2_ros's MessageFilter waits for it);
- the file system itself: two names of one folder (``os.path.samefile``) for the run lock;
- RFC 8878 / the reference zstd decoder (``ZSTD_decompress`` reads concatenated frames in time linear
  in the input).

The hd-train tests run the CLI as test_outside_nothing_lost4.py does (one-step runs, ~5 s each);
the mount tests need ``unshare -rm`` (a private user + mount namespace) and skip without it. Known
bugs are ``xfail(strict=True)`` whose reason names the bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

MS = 1_000_000
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")


# ------------------------------------------------------------------------------------------------
# topic names: rcl's substitutions


# rcl/test/rcl/test_expand_topic_name.cpp (ros2/rcl, rolling; the same table since foxy):
# {"input_topic", "node_name", "/namespace", "expected result"}
RCL_EXPANSIONS = [
    ("/chatter", "my_node", "/my_ns", "/chatter"),
    ("chatter", "my_node", "/my_ns", "/my_ns/chatter"),
    ("{node}/chatter", "my_node", "/my_ns", "/my_ns/my_node/chatter"),
    ("/{node}", "my_node", "/my_ns", "/my_node"),
    ("{node}", "my_node", "/my_ns", "/my_ns/my_node"),
    ("{ns}", "my_node", "/my_ns", "/my_ns"),
    ("{namespace}", "my_node", "/my_ns", "/my_ns"),
    ("{namespace}/{node}/chatter", "my_node", "/my_ns", "/my_ns/my_node/chatter"),
    ("ping", "my_node", "/", "/ping"),
    ("~", "my_node", "/", "/my_node"),
    ("~", "my_node", "/my_ns", "/my_ns/my_node"),
    ("~/ping", "my_node", "/my_ns", "/my_ns/my_node/ping"),
]


def test_resolve_topic_agrees_with_rcl_expand_topic_name_on_plain_names():
    """The rows of rcl's own expansion table without a substitution: the non-rclpy runtimes
    (replay, DDS, Zenoh) resolve them as rclpy's ``resolve_topic_name`` does."""
    from gs_mapping.nodes.context import resolve_topic

    for name, node, ns, want in RCL_EXPANSIONS:
        if "{" not in name:
            assert resolve_topic(name, node, ns) == want, name


def test_resolve_topic_expands_rcls_substitutions_as_rclpy_does():
    """Today's change checks every topic parameter 'as rcl does for every runtime, so a parameter
    means one thing everywhere' (context.check_topic_name). rcl_validate_topic_name accepts ``{…}``
    substitutions (validate_topic_name.c: alphanumerics and '_' inside balanced braces) and
    rcl_expand_topic_name replaces ``{node}``, ``{ns}`` and ``{namespace}``; under rclpy a
    ``hd_map_node.cameras: ['{node}/image']`` or ``delta_topic: '{ns}/map_delta'`` works. The other
    runtimes must expand them the same way (the rows of rcl's table), not refuse them as
    'not a ROS 2 topic name'."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import resolve_topic

    wrong = {}
    for name, node, ns, want in RCL_EXPANSIONS:
        try:
            got = resolve_topic(name, node, ns)
        except ConfigError as exc:
            got = f"refused: {exc}"
        if got != want:
            wrong[name] = got
    assert not wrong, wrong


# ------------------------------------------------------------------------------------------------
# map_server_node: a vehicle in the root namespace


def test_a_vehicle_in_the_root_namespace_is_still_served(tmp_path):
    """rmw_validate_namespace takes ``/`` (rmw's test_validate_namespace.cpp: "/" is valid; it is
    every node's namespace when none is given), and rcl expands the relative
    ``mapper_node/map_delta`` in ``/`` to ``/mapper_node/map_delta`` (rcl's expansion table:
    "ping" in "/" -> "/ping"). A single vehicle whose ``gs-mapping run mapper_node`` has no
    ``--namespace`` publishes there; bcd1ea5's server took ``vehicles: ['/']`` and subscribed it.
    Today's namespace check (``_check_distinct_namespaces``) refuses ``/`` with a message that says
    it is not a ROS namespace."""
    from gs_mapping.nodes.context import resolve_topic
    from gs_mapping.nodes.map_server_node import MapServerNode

    f = tmp_path / "server.yaml"
    f.write_text('/**:\n  ros__parameters:\n    map_server_node: {vehicles: ["/"]}\n')
    cfg = MapServerNode.load_config(str(f))["map_server_node"]
    assert resolve_topic(cfg.delta_topic, "", cfg.vehicles[0]) == "/mapper_node/map_delta"


# ------------------------------------------------------------------------------------------------
# map: a recording whose clock steps back


def _two_takes_bag(path: Path, jump_ns: int):
    """A RealSense-layout recording whose header clock steps back ``jump_ns`` after four frames
    (a camera's clock re-synchronised by PTP/NTP mid-recording, or two takes merged with
    ``ros2 bag convert``): four frames at T0 + k·100 ms, then four at T0 − jump + k·100 ms, each
    colour with its depth 1 µs later and its CameraInfo, TF covering both takes. Log times only
    grow (the recorder's own clock)."""
    import test_hostile_robot_inputs as rb

    color, depth, info = (
        "/camera/color/image_raw",
        "/camera/aligned_depth_to_color/image_raw",
        "/camera/color/camera_info",
    )
    topics = {color: rb.IMG, depth: rb.IMG, info: rb.CINFO, "/tf": rb.TFM, "/tf_static": rb.TFM}
    cfid = "camera_color_optical_frame"
    T0, DT = rb.T0, rb.DT
    log = T0
    msgs = [
        (log, "/tf_static", rb.T[rb.TFM](transforms=[
            rb._tf(T0, "base_link", "camera_link", (0.1, 0, 0.2)), rb._tf(T0, "camera_link", cfid, q=rb.OPT_Q)]))
    ]  # fmt: skip
    for take, start in enumerate((T0, T0 - jump_ns)):
        for i in range(-1, 5):
            log += 1000
            ns = start + i * DT
            msgs.append((log, "/tf", rb.T[rb.TFM](transforms=[rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.02 * i, 0, 0))])))  # fmt: skip
        for i in range(4):
            ns = start + i * DT
            rgb, d = rb._scene(i)
            log += 1000
            msgs.append((log, color, rb._image(ns, cfid, rgb, "rgb8")))
            msgs.append((log + 1, depth, rb._image(ns + 1000, cfid, (d * 1000 + 10 * (4 * take + i)).astype(np.uint16), "16UC1")))  # fmt: skip
            msgs.append((log + 2, info, rb._info(ns, cfid)))
    return rb._write(path, topics, msgs)


def test_map_pairs_every_frame_of_a_recording_whose_clock_steps_back(tmp_path):
    """Eight colour images, each with a depth of its own stamp (+1 µs) and nothing else within the
    default slop: a hand count says eight pairs, the k-th colour with the k-th depth (its depth
    value carries k). bcd1ea5 (message_filters' ApproximateTime) made all eight; `map`'s new
    mutually-nearest pairing (sync.RecordingPairer: 'each stream's stamps are taken to arrive in
    order') keeps the first take's last message waiting and pairs every message of the second
    take against it, out of slop: dropped."""
    pytest.importorskip("rosbags.rosbag2")
    import test_hostile_robot_inputs as rb

    bag = _two_takes_bag(tmp_path / "b", jump_ns=10_000 * MS)
    frames = rb._frames(bag)
    got = [int(round((float(f.depth[0, 0]) - 1.5) / 0.01)) for f in frames]
    assert sorted(got) == list(range(8)), got


def test_recording_pairer_pairs_two_depth_images_logged_swapped():
    """Ten colour images at 30 Hz, each with one depth image 1 ms after it; depth 3 and 4 reach
    the recorder swapped (a driver publishing from two threads). By hand each colour has exactly
    one depth within the 20 ms slop and it is mutually nearest: ten pairs, colour k with depth k.
    The class says 'a message out of order still pairs if its partner is waiting'; bcd1ea5's
    ApproximateTime made all ten."""
    from gs_mapping.sync import RecordingPairer

    color = [(0, k * 33 * MS, f"c{k}") for k in range(10)]
    depth = [(1, k * 33 * MS + MS, f"d{k}") for k in range(10)]
    depth[3], depth[4] = depth[4], depth[3]
    pairer = RecordingPairer(20 * MS)
    pairs = []
    for c, d in zip(color, depth, strict=True):
        pairs += pairer.add(*c)
        pairs += pairer.add(*d)
    pairs += pairer.finish()
    assert sorted(pairs) == [(f"c{k}", f"d{k}") for k in range(10)], pairs


# ------------------------------------------------------------------------------------------------
# map: a recording with /tf_static and the robot's own /robot1/tf


def test_map_reads_the_robots_namespaced_tf_beside_a_global_tf_static(tmp_path):
    """A recording whose static transforms are on the global ``/tf_static`` (one
    robot_state_publisher) and whose odometry is on the robot's namespaced ``/robot1/tf`` (the
    base driver remapped, as Clearpath and Nav2 multi-robot launches do). The robot drives 0.02 m
    a frame along x (the recording itself, by hand). Today's namespaced-TF discovery
    (frames._tf_topics) looks for ``/robot1/tf`` only when neither ``/tf`` nor ``/tf_static``
    exists; here it reads ``/tf_static`` alone, and all frames get the first frame's pose (the log
    says 'TF has no frame map'). The poses must move as the robot did, or `map` must say which TF
    topic it left out."""
    pytest.importorskip("rosbags.rosbag2")
    import test_hostile_robot_inputs as rb
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    src, bag = rb.robot_bag(tmp_path / "src"), tmp_path / "ns"
    with AnyReader([src]) as r, Writer(bag, version=8) as w:
        conns = {
            c.topic: w.add_connection(
                "/robot1/tf" if c.topic == "/tf" else c.topic, c.msgtype, typestore=rb.TS
            )
            for c in r.connections
        }
        for c, t, raw in r.messages():
            w.write(conns[c.topic], t, raw)
    try:
        frames = rb._frames(bag)
    except Exception as exc:  # noqa: BLE001 - an error naming the TF left out is fine
        assert "/robot1/tf" in str(exc), exc
        return
    xs = [float(f.camera.T_map_cam[0, 3]) for f in frames]
    steps = np.diff(xs)
    assert len(xs) == 4 and np.allclose(steps, 0.02, atol=1e-6), xs


# ------------------------------------------------------------------------------------------------
# zstd streams of several frames: linear time, as the reference decoder


def test_zstd_inflate_of_many_frames_is_linear_like_zstd_decompress(tmp_path):
    """RFC 8878 §3.1: a zstd stream is frames one after another; the reference ``ZSTD_decompress``
    walks them in time linear in the input (zstd.h: "multiple concatenated frames"). A stream of
    a thousand empty frames and one with data reads as the reference decoder reads it. ``inflate``
    made ``unused_data`` (a copy of everything after the frame) for each frame: quadratic, ~30 s
    for 250,000 empty frames (2.25 MB), ~50 min for 22 MB. Each frame still costs ~20 µs (a
    decompressor of its own: 800,000 frames in 16 s, session #30's bomb30 probe), so a stream of
    more than ``MAX_FRAMES`` is refused (no writer makes one: Niantic's one frame a stream, rosbag2's
    one a message); the 250,000 frames give that one error at the first frame past it."""
    from gs_mapping.zstd_frames import MAX_FRAMES, ZstdError, inflate, zstd

    sample = zstd.compress(b"") * 1000 + zstd.compress(b"x")
    if shutil.which("zstd"):  # the reference decoder takes such a stream
        (tmp_path / "sample.zst").write_bytes(sample)
        r = subprocess.run(
            ["zstd", "-d", "-c", str(tmp_path / "sample.zst")], capture_output=True, timeout=30
        )
        assert r.returncode == 0 and r.stdout == b"x"
    assert inflate(sample, 1 << 20) == b"x"
    assert MAX_FRAMES < 250_000
    with pytest.raises(ZstdError, match=f"more than {MAX_FRAMES} zstd frames"):
        inflate(zstd.compress(b"") * 250_000, 1 << 20)


# ------------------------------------------------------------------------------------------------
# hd-train --overwrite: the run folder reached through a link, or a mount point

TRAIN = [
    "hd-train", "--frames", "1", "--batch-size", "1", "--eval-every", "0", "--threads", "1",
    "--no-progress", "--steps", "1",
]  # fmt: skip


def _cli(argv, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory) -> Path:
    """A finished one-step hd-train run (config.json, last.pt, model.pt, metrics.jsonl)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("outside22_run")
    r = _cli([*TRAIN, "--out", d / "run"])
    assert r.returncode == 0, r.stderr[-600:]
    return d / "run"


@pytest.mark.parametrize("named", ["symlink", "dot"])
def test_hd_train_overwrite_of_a_run_folder_named_another_way_replaces_the_run(one_step_run, tmp_path, named):
    """``runs/latest -> ../experiments/exp7`` is how many keep runs, and ``cd runs/exp7;
    gs-mapping hd-train --out . --overwrite`` is how others start one over. bcd1ea5 staged the new
    run inside the folder and renamed its files over the old ones: both worked (checked by hand).
    Today's whole-folder swap (``_RunFiles.checkpointed`` -> ``install_directory``) refuses a
    symlinked target ('is a symbolic link ...; give that directory itself') and ``.`` ('not a
    usable output name'), but only after the new run has trained up to its first checkpoint. The
    new run's config (``--lr 0.0003``, read back with json) must be in the folder meant."""
    import json

    real = tmp_path / "experiments" / "exp7"
    real.parent.mkdir()
    shutil.copytree(one_step_run, real)
    if named == "symlink":
        (tmp_path / "runs").mkdir()
        out, cwd = tmp_path / "runs" / "latest", None
        out.symlink_to(Path("..") / "experiments" / "exp7")
    else:
        out, cwd = Path("."), real
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *TRAIN, "--out", str(out), "--overwrite", "--lr", "0.0003"],
        capture_output=True, text=True, timeout=180, env=ENV, cwd=cwd,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.strip().splitlines()[-1:]
    assert json.loads((real / "config.json").read_text())["lr"] == 0.0003
    assert named != "symlink" or out.is_symlink()


def _unshare_ok() -> bool:
    exe = shutil.which("unshare")
    if not exe:
        return False
    r = subprocess.run(
        [exe, "-rm", "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || exit 3"], capture_output=True
    )
    return r.returncode == 0


def test_hd_train_overwrite_on_a_mounted_run_folder_replaces_the_run(one_step_run, tmp_path):
    """``docker run -v $PWD/out:/out … hd-train --out /out --overwrite``: the run folder is a
    mount point. bcd1ea5 staged inside it and renamed file by file (same file system): it worked
    (checked by hand). Today the staging folder is made beside it (another file system), the old
    folder's other files are hard-linked in (EXDEV) and the folder swapped with renameat2 (a mount
    point cannot be renamed): the run trains, then stops with 'Invalid cross-device link', naming
    no path. Made real here with a tmpfs mounted in a private user+mount namespace
    (``unshare -rm``), skipped where that is not allowed."""
    if not _unshare_ok():
        pytest.skip("unshare -rm (user + mount namespace) is not available here")
    mnt = tmp_path / "out"
    mnt.mkdir()
    script = textwrap.dedent(
        f"""
        set -e
        mount -t tmpfs none {mnt}
        cp -a {one_step_run}/. {mnt}/
        echo 'my notes' > {mnt}/notes.txt
        {sys.executable} -m gs_mapping {" ".join(TRAIN)} --out {mnt} --overwrite --lr 0.0003
        {sys.executable} -c "import json,sys; c=json.load(open('{mnt}/config.json')); sys.exit(0 if c['lr']==0.0003 else 5)"
        cat {mnt}/notes.txt
        """
    )
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=180, env=ENV
    )
    assert r.returncode == 0 and "my notes" in r.stdout, (r.returncode, r.stderr.strip().splitlines()[-1:])


def test_hd_train_into_a_writable_folder_under_a_read_only_parent(tmp_path):
    """``docker run --read-only -v vol:/out … hd-train --out /out``: the run folder is writable, its
    parent (the container's root) is not. Nothing of a run belongs outside its folder, and bcd1ea5
    trained there (checked by hand). Today's lock (``_lock_run``: ``.NAME.hd-train.lock`` beside the
    folder) cannot be created and the run is refused before it starts. Made real with tmpfs mounts
    in a private user+mount namespace (``unshare -rm``), the parent remounted read-only; skipped
    where that is not allowed."""
    pytest.importorskip("torch")
    if not _unshare_ok():
        pytest.skip("unshare -rm (user + mount namespace) is not available here")
    top = tmp_path / "root"
    top.mkdir()
    script = textwrap.dedent(
        f"""
        set -e
        mount -t tmpfs none {top}
        mkdir {top}/out
        mount -t tmpfs none {top}/out
        mount -o remount,bind,ro {top}
        if touch {top}/probe 2>/dev/null; then exit 7; fi
        {sys.executable} -m gs_mapping {" ".join(TRAIN)} --out {top}/out
        ls {top}/out
        """
    )
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=180, env=ENV
    )
    if r.returncode == 7:
        pytest.skip("the parent could not be made read-only here")
    assert r.returncode == 0 and "model.pt" in r.stdout, (r.returncode, r.stderr.strip().splitlines()[-1:])


# ------------------------------------------------------------------------------------------------
# live mapper_node: a camera faster than its odometry


def test_live_mapper_poses_every_frame_of_a_camera_faster_than_tf_as_tf2s_message_filter(
    monkeypatch, tmp_path
):
    """tf2 never extrapolates into the future, and tf2_ros's MessageFilter (ros2/geometry2
    ``message_filter.h``) keeps up to ``queue_size`` messages waiting for their transform, each
    looked up (interpolated) once it can be. mapper_node's tf_wait_s says it waits 'as tf2's message
    filter does', but keeps one frame: 'a newer frame makes the waiting one go with the TF there is',
    i.e. the last sample within tf_tolerance_s (0.05 s), not interpolated. A 30 Hz camera on a robot
    whose odometry is 10 Hz (visual odometry, robot_localization, a GNSS/INS at 10 Hz) driving at
    1 m/s: frames 10, 43 and 76 ms after each odometry sample, each image logged 5 ms after its
    stamp, each sample 1 ms after its. Every frame's pose must be tf2's interpolated one (by hand:
    x = 1 m/s × t), not the sample up to 43 ms (4.3 cm) before it."""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("scipy")
    import test_hostile_robot_inputs as rb
    import test_outside_recordings4 as r4

    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import replay_bag

    T0 = rb.T0
    msgs = [(T0 - 1, "/tf_static", r4._tfm(rb._tf(T0, "base_link", "cam", q=rb.OPT_Q)))]
    for k in range(-1, 6):
        ns = T0 + k * 100 * MS
        msgs.append((ns + MS, "/tf", r4._tfm(rb._tf(ns, "map", "base_link", (k * 0.1, 0.0, 0.0)))))
    stamps = [T0 + k * 100 * MS + off * MS for k in range(4) for off in (10, 43, 76)]
    for i, ns in enumerate(stamps):
        rgb, _ = rb._scene(i)
        msgs += [(ns + 5 * MS, r4.COLOR, rb._image(ns, "cam", rgb, "rgb8")),
                 (ns + 5 * MS, r4.DEPTH, rb._image(ns, "cam", r4._wall_depth(), "16UC1")),
                 (ns + 5 * MS, r4.INFO, rb._info(ns, "cam"))]  # fmt: skip
    bag = rb._write(tmp_path / "b", r4.TOPICS, msgs)
    seen = r4._spy_frames(monkeypatch)
    cfg = tmp_path / "nodes.yaml"
    cfg.write_text(rb.FAST + r4.NODE_TOPICS)
    mapper = node_class("mapper_node")
    replay_bag(bag, tmp_path / "out", [mapper], [mapper.load_config(str(cfg))])
    got = {s: round(float(T[0, 3]), 4) for s, T in seen}
    want = {s: round((s - T0) / 1e9, 4) for s in stamps}
    assert got == want


@pytest.mark.parametrize("alias", ["symlink", "dot"])
def test_hd_train_run_lock_holds_for_the_folder_whatever_its_name(tmp_path, monkeypatch, alias):
    """Today's lock: 'One hd-train a run folder: an exclusive flock ... held for the whole run
    (two runs on one --out interleaved their checkpoints and logs)'. ``runs/latest`` (a symlink
    to ``experiments/exp7``) and ``.`` inside it are that folder (os.path.samefile says so); a
    second run started through either must be refused while the first holds the lock, as it is
    when both give the same spelling."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDDataError
    from gsmap_hd.train import _lock_run

    real = tmp_path / "experiments" / "exp7"
    real.mkdir(parents=True)
    if alias == "symlink":
        (tmp_path / "runs").mkdir()
        other = tmp_path / "runs" / "latest"
        other.symlink_to(Path("..") / "experiments" / "exp7")
    else:
        monkeypatch.chdir(real)
        other = Path(".")
    assert os.path.samefile(real, other)
    first = _lock_run(real)
    try:
        with pytest.raises(HDDataError):
            os.close(_lock_run(other))
    finally:
        os.close(first)
