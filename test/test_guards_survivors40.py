"""Guards for code whose breakage no test noticed (mutation testing by randomly drawn lines, seed
2512051, 40 lines). Each test compares the project with something outside it: rosbags' own
reading and writing of a bag, a PLY written by plyfile, scipy's quaternion rotations, the shell's
128 + N exit status of a process ended by signal N, docs/world.md's building heights, a hand
computation, or the rule a docstring states; each fails on the mutant it was written for."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# cli/replay.py: the --json report


def _tf_bag(path, stamps=(1_000_000_000, 1_500_000_000, 2_000_000_000)) -> int:
    """A small rosbag2 of /tf messages; returns how many messages rosbags (an independent reader)
    finds in it."""
    from rosbags.highlevel import AnyReader

    from gs_mapping.bag import BagWriter
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message

    identity = Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
    with BagWriter(path) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        for stamp in stamps:
            w.write(
                "/tf",
                stamp,
                transforms_to_tf_message([TransformStamped("map", "base_link", stamp, identity)]),
            )
    with AnyReader([path]) as r:
        return sum(1 for _ in r.messages())


def test_replay_json_report_names_its_input_and_output_bags_and_counts_what_rosbags_reads(tmp_path, capsys):
    """``gs-mapping replay --json``'s report: 'input' is the bag given, 'output' the --out folder, and
    'input_messages' the number of messages rosbags (an independent reader) finds in the bag. A
    report naming the output as its input would send a script reading it to the wrong bag."""
    from gs_mapping.cli import main

    bag, out = tmp_path / "in_bag", tmp_path / "out_bag"
    n_rosbags = _tf_bag(bag)
    assert main(["replay", str(bag), "--out", str(out), "--nodes", "map_receiver_node", "--json"]) == 0
    rep = _last_json(capsys.readouterr().out)
    assert rep["input"] == str(bag)
    assert rep["output"] == str(out)
    assert rep["input_messages"] == n_rosbags == 3


# ------------------------------------------------------------------------------------------------
# demo/report.py: the report's mapping lines


def test_demo_report_puts_each_psnr_beside_its_own_label(tmp_path):
    """The demo report's mapping section says two held-out PSNRs: over all pixels and within the
    mapped range (README's demo). Each number must be the one measured for its label, rounded to
    2 decimals as written by hand here; the two swapped (or one shown twice) would report the
    in-range figure, the higher one, as the whole view's."""
    pytest.importorskip("PIL")
    from gs_mapping.demo.measure import MAPPED_RANGE_M
    from gs_mapping.demo.report import write_report

    metrics = {
        "world": {"frames": 3, "size": "small", "seed": 1},
        "device": "cpu",
        "seconds": {"total": 1.0},
        "mapping": {"gaussians": 10, "keyframes": 2, "psnr_all": 18.2349, "psnr_in_range": 27.8912},
    }
    write_report(tmp_path, metrics, [], [], [], [])
    text = (tmp_path / "report.md").read_text()
    line = next(l for l in text.splitlines() if "held-out PSNR" in l)
    assert "18.23 dB over all pixels" in line
    assert f"27.89 dB within {MAPPED_RANGE_M:.0f} m" in line


# ------------------------------------------------------------------------------------------------
# ply.py: Mip-Splatting's filter_3D


def _plyfile_scene(path, n: int, extra: dict) -> None:
    """A standard 3DGS PLY written by plyfile (the reference PLY library), not by the project."""
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(3)
    cols = {
        "x": rng.normal(size=n),
        "y": rng.normal(size=n),
        "z": rng.normal(size=n),
        "f_dc_0": rng.normal(size=n),
        "f_dc_1": rng.normal(size=n),
        "f_dc_2": rng.normal(size=n),
        "opacity": rng.normal(size=n),
        "scale_0": np.full(n, -3.0),
        "scale_1": np.full(n, -3.0),
        "scale_2": np.full(n, -3.0),
        "rot_0": np.ones(n),
        "rot_1": np.zeros(n),
        "rot_2": np.zeros(n),
        "rot_3": np.zeros(n),
    }
    cols.update(extra)
    dt = [(k, "<f4") for k in cols]
    arr = np.empty(n, dt)
    for k, v in cols.items():
        arr[k] = v
    plyfile.PlyData([plyfile.PlyElement.describe(arr, "vertex")]).write(str(path))


def test_a_bad_filter_3d_is_reported_at_its_first_row(tmp_path):
    """A scene with two invalid 'filter_3D' values (rows 2 and 5, as plyfile wrote them) is refused
    naming the first one, row 2, as every other per-Gaussian error of the readers does (the
    first bad row in file order)."""
    from gs_mapping.errors import MapError
    from gs_mapping.ply import load_ply

    f = np.full(8, 0.01, np.float32)
    f[2], f[5] = -0.5, np.nan
    _plyfile_scene(tmp_path / "mip.ply", 8, {"filter_3D": f})
    with pytest.raises(MapError, match=r"'filter_3D' of Gaussian 2 \(row in file\) is -0\.5"):
        load_ply(tmp_path / "mip.ply")


# ------------------------------------------------------------------------------------------------
# output_files.py: check_output's ``allowed``


def test_check_output_without_allowed_accepts_a_full_directory_with_overwrite(tmp_path):
    """check_output's docstring: ``allowed`` names what an existing directory may hold to be
    replaced; given none, a directory output that exists is accepted with ``overwrite`` whatever it
    holds (and, without overwrite, refused as existing). Given an empty ``allowed`` list, the same
    directory is refused: it holds something not listed. The check itself deletes nothing."""
    from gs_mapping.output_files import OutputError, check_output

    d = tmp_path / "out"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    assert check_output(d, overwrite=True, directory=True) == d
    with pytest.raises(OutputError, match="exists already"):
        check_output(d, directory=True)
    with pytest.raises(OutputError, match=r"holds \['notes.txt'\]"):
        check_output(d, overwrite=True, directory=True, allowed=[])
    assert (d / "notes.txt").read_text() == "x"


# ------------------------------------------------------------------------------------------------
# bag.py: an index error keeps its own message


def test_a_topic_with_two_types_is_refused_as_such_not_as_a_corrupt_index(tmp_path):
    """A rosbag2 written by rosbags (the reference reader/writer) with one topic under two message
    types is a readable bag (rosbags opens it and reads both messages); BagReader refuses it with
    its own precise reason ('several message types'), and must not re-label that as a corrupt bag
    index, which would send the user looking for file damage that is not there."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.bag import BagError, BagReader

    ts = get_typestore(Stores.ROS2_HUMBLE)
    path = tmp_path / "bag"
    with Writer(path, version=8) as w:
        a = w.add_connection("/x", "std_msgs/msg/String", typestore=ts)
        b = w.add_connection("/x", "std_msgs/msg/Int32", typestore=ts)
        w.write(a, 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
        w.write(b, 2, ts.serialize_cdr(ts.types["std_msgs/msg/Int32"](data=3), "std_msgs/msg/Int32"))
    with AnyReader([path], default_typestore=ts) as r:
        assert sum(1 for _ in r.messages()) == 2
    with pytest.raises(BagError) as e:
        with BagReader(path):
            pass
    assert "several message types" in str(e.value)
    assert "corrupt" not in str(e.value)


# ------------------------------------------------------------------------------------------------
# world/scene.py: building heights (docs/world.md)


def test_buildings_stand_on_the_ground_and_span_the_documented_heights():
    """docs/world.md: 'buildings (boxes, 4.5–32 m tall …)', urban streets 'dense, tall buildings'.
    Every building box of a few seeded worlds stands on z = 0 with its top within 4.5–32 m, and the
    tall half of that range is used (a world whose buildings all stay under 16 m would not be the
    documented one: the occlusion and sky tests rest on tall facades)."""
    pytest.importorskip("shapely")
    from gs_mapping.world.roads import generate_network
    from gs_mapping.world.scene import BUILDING, populate

    tops = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        b = populate(generate_network(rng), rng).boxes
        bld = b.material == BUILDING
        assert np.all(b.z0[bld] == 0.0)
        tops += list(b.z1[bld])
    tops = np.array(tops)
    assert len(tops) >= 10
    assert tops.min() >= 4.5 and tops.max() <= 32.0
    assert tops.max() > 20.0


# ------------------------------------------------------------------------------------------------
# cli/__init__.py: the exit status of a command ended by a signal


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGTERM"])
def test_a_command_ended_by_a_signal_exits_128_plus_that_signals_number(signame, monkeypatch, capsys):
    """POSIX shells report a process ended by signal N as status 128 + N (SIGHUP: 129, SIGTERM:
    143), and Terminated's docstring promises args[0] is the signal received. A command that gets
    SIGHUP while it runs (its terminal went away) must exit 129 and say 'hangup', not 143."""
    import os
    import signal
    import time

    import gs_mapping.cli.info as info_cmd
    from gs_mapping.cli import main

    sig = getattr(signal, signame, None)
    if sig is None:
        pytest.skip(f"no {signame} here")

    def run(_args):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # (the handler raises first)
        return 0

    monkeypatch.setattr(info_cmd, "run", run)
    # (a test run started under nohup inherits SIGHUP ignored, which main() rightly keeps ignored:
    # the signal's default disposition is what a command started from a terminal has)
    previous = signal.signal(sig, signal.SIG_DFL)
    try:
        assert main(["info", "nothing.bag"]) == 128 + int(sig)
    finally:
        signal.signal(sig, previous)
    err = capsys.readouterr().err
    assert ("hangup" if signame == "SIGHUP" else "terminated") in err


# ------------------------------------------------------------------------------------------------
# cli/info.py: the text summary's header lines


def test_info_text_says_the_message_count_and_times_rosbags_reads(tmp_path, capsys):
    """``gs-mapping info BAG`` (text form): its 'messages:' line is the bag's message count and its
    'start:'/'end:' lines the first and last stamps, all as rosbags (an independent reader) reads
    them: 3 /tf messages on one topic are 'messages: 3', not the number of topics."""
    from rosbags.highlevel import AnyReader

    from gs_mapping.cli import main

    bag = tmp_path / "bag"
    n = _tf_bag(bag, stamps=(1_000_000_000, 1_250_000_000, 4_000_000_000))
    with AnyReader([bag]) as r:
        start, end = r.start_time, r.end_time
    assert main(["info", str(bag)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fields = {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in lines[:5] if ":" in l}
    assert fields["messages"] == str(n) == "3"
    assert fields["start"].split()[0] == str(start)
    # rosbag2 metadata's end is the last stamp (rosbags' end_time is one past it)
    assert int(fields["end"].split()[0]) in (end, end - 1)
    assert fields["duration"].startswith("3.000")


# ------------------------------------------------------------------------------------------------
# render/reference.py: the plain rasteriser's quaternion → rotation matrix


def test_reference_rasteriser_rotation_matches_scipy_for_xyzw_quaternions():
    """The reference rasteriser (the specification the CPU backend is tested against) reads a
    Gaussian's rotation as a quaternion (x, y, z, w), scalar last: scipy's Rotation.from_quat uses
    the same order. Its matrix must equal scipy's for random unnormalised quaternions (a transposed
    matrix is the inverse rotation: every anisotropic Gaussian would be drawn mirrored), and a
    90° turn about z must send x to y (by hand)."""
    torch = pytest.importorskip("torch")
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    from gs_mapping.render.reference import _rotmat

    q = np.random.default_rng(5).normal(size=(64, 4)) * 3.0
    got = _rotmat(torch.tensor(q, dtype=torch.float64)).numpy()
    assert np.allclose(got, Rotation.from_quat(q).as_matrix(), atol=1e-12)
    s = np.sqrt(0.5)
    r = _rotmat(torch.tensor([[0.0, 0.0, s, s]], dtype=torch.float64)).numpy()[0]
    assert np.allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
