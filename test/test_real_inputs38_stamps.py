"""A camera driver that does not stamp (header stamps all zero) recorded with the real RealSense
kitchen bag: its frames are timed by log time (when each message was recorded) and posed by TF at
it, as the original bag's frames are at their stamps. Expected values are the original bag's frames
(its log times equal its stamps, so the rewritten bag gives the very same frames); a driver's first
few unstamped messages among stamped ones are skipped, said once."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA, rewrite_camera_messages, zero_stamp  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.say_once import forget  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"
COLOR = "/camera/camera/color/image_raw/compressed"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth"


def _rewrite(out, zero, log_shift_ns=0):
    """The real bag with ``zero(topic, i)`` camera messages' header stamps set to 0 (the i-th of
    its topic), logged ``log_shift_ns`` later (a recorder's latency)."""
    edit = lambda topic, i, m: zero(topic, i) and zero_stamp(m)  # noqa: E731
    return rewrite_camera_messages(SOURCE, out, edit, log_shift_ns)


def _frames(path):
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    with BagReader(path) as b:
        f = discover({t.name: t.type for t in b.topics})
    return list(read_frames(path, TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)))


@pytest.fixture(scope="module")
def original(shared_data):
    return _frames(SOURCE)


def test_a_camera_that_does_not_stamp_maps_by_log_time(original, tmp_path, caplog):
    bag = _rewrite(tmp_path / "unstamped", lambda topic, i: True)
    forget()
    caplog.set_level(logging.WARNING)
    got = _frames(bag)
    assert len(original) == len(got) == 50
    for a, b in zip(got, original, strict=True):
        assert a.stamp_ns == b.stamp_ns and a.index == b.index
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth, equal_nan=True)
        assert np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam)
        assert np.array_equal(a.camera.K, b.camera.K)
    lines = [r.getMessage() for r in caplog.records]
    said = [x for x in lines if "every header stamp is zero" in x]
    assert len(said) == 1 and COLOR in said[0] and DEPTH in said[0] and "log time" in said[0], lines
    assert len(lines) == 1, lines


def test_unstamped_with_a_recorders_latency_gives_nearly_the_same_poses(original, tmp_path):
    """Logged 8 ms after capture, as a recorder on the robot logs: each frame posed by TF 8 ms later,
    within the camera's motion over those 8 ms of its true pose (this kitchen sequence moves < 1 cm
    and < 1 degree a frame of 67 ms)."""
    bag = _rewrite(tmp_path / "late", lambda topic, i: True, log_shift_ns=8_000_000)
    got = _frames(bag)
    assert len(got) == 50
    for a, b in zip(got, original, strict=True):
        assert a.stamp_ns == b.stamp_ns + 8_000_000
        assert np.array_equal(a.rgb, b.rgb)
        Ta, Tb = a.camera.T_map_cam, b.camera.T_map_cam
        assert np.linalg.norm(Ta[:3, 3] - Tb[:3, 3]) < 0.002
        cos = np.clip((np.trace(Ta[:3, :3].T @ Tb[:3, :3]) - 1) / 2, -1, 1)
        assert np.degrees(np.arccos(cos)) < 0.2


def test_a_drivers_first_unstamped_messages_are_skipped_the_others_kept(original, tmp_path, caplog):
    """The first 3 colour images unstamped (the driver's clock not up yet): those 3 skipped, said in
    one line with their count; every other frame is the original's, at its own stamp."""
    bag = _rewrite(tmp_path / "first", lambda topic, i: topic == COLOR and i < 3)
    forget()
    caplog.set_level(logging.WARNING)
    got = _frames(bag)
    assert [f.stamp_ns for f in got] == [f.stamp_ns for f in original[3:]]
    for a, b in zip(got, original[3:], strict=True):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam)
    lines = [r.getMessage() for r in caplog.records]
    said = [x for x in lines if "zero header stamp" in x]
    assert said == [f"{COLOR}: 3 of 50 messages have a zero header stamp among stamped ones (unstamped, as a driver's first messages): skipped"]  # fmt: skip
    assert not [x for x in lines if "every header stamp is zero" in x]


def test_map_of_an_unstamped_camera_runs(tmp_path, capsys, shared_data):
    """`map` end to end on it: exit 0 and a map of the 50 frames (was: 'no usable frame')."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main

    bag = _rewrite(tmp_path / "unstamped", lambda topic, i: True)
    fast = tmp_path / "fast.yaml"
    fast.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 16}\n"
        "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
    )
    out = tmp_path / "out"
    rc = main(["map", str(bag), "--out", str(out), "--no-progress", "--config", str(fast)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (out / "map.ply").stat().st_size > 0 and "no usable frame" not in err


def test_hd_predict_of_an_unstamped_camera_is_the_originals(tmp_path, shared_data):
    """hd-predict shares the camera rule: its predictions on the rewritten bag are the original
    bag's, frame for frame (the same stamps: its log times are its stamps)."""
    pytest.importorskip("torch")
    import json

    from gs_mapping.cli import main

    bag = _rewrite(tmp_path / "unstamped", lambda topic, i: True)
    docs = []
    for name, path in (("orig", SOURCE), ("zero", bag)):
        out = tmp_path / f"{name}.json"
        assert main(["hd-predict", str(path), "--out", str(out), "--no-progress", "--max-frames", "4"]) == 0
        docs.append(json.loads(out.read_text()))
    assert len(docs[0]["results"]) == 4 and docs[1] == docs[0]
