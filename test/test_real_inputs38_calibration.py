"""A CameraInfo whose K was written transposed (column-major: cx, cy in its last row, as a matrix
library's default order makes it) in the real RealSense kitchen bag: the mapper ignores it as it
ignores an uncalibrated camera's (one line, then a total), by the same rule hd-predict applies
(:func:`gs_mapping.messages.camera_info.pinhole_k_problem`). Expected frames: the original bag's."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA  # noqa: E402

from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.say_once import forget  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"
INFO = "/camera/camera/color/camera_info"


def _rewrite(out, transposed):
    """The real bag with the ``transposed(i)`` colour CameraInfos' K written column-major."""
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    i = -1
    with Reader(SOURCE) as r, Writer(out, version=8) as w:
        cs = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        for c, t, data in r.messages():
            if c.topic == INFO:
                i += 1
                if transposed(i):
                    m = ts.deserialize_cdr(data, c.msgtype)
                    m.k = np.ascontiguousarray(m.k.reshape(3, 3).T).reshape(-1)
                    data = ts.serialize_cdr(m, c.msgtype)
            w.write(cs[c.topic], t, data)
    return out


def _frames(path):
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    with BagReader(path) as b:
        f = discover({t.name: t.type for t in b.topics})
    return list(read_frames(path, TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)))


def test_transposed_k_is_no_camera_for_map(tmp_path, capsys, caplog, shared_data):
    """Every CameraInfo transposed: `map` ends in one line saying so (exit 2), the reason said once
    and a total, as for an uncalibrated camera (was: mapped with cx = cy = 0, fx, fy as given)."""
    pytest.importorskip("torch")
    from gs_mapping.cli import main

    bag = _rewrite(tmp_path / "transposed", lambda i: True)
    forget()
    caplog.set_level(logging.WARNING)
    rc = main(["map", str(bag), "--out", str(tmp_path / "out"), "--no-progress"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "no usable frame" in last and "transposed?" in last, last
    assert "[[fx, s, cx], [0, fy, cy], [0, 0, 1]]" in last and "[319.5, 239.5, 1.0]" in last
    lines = [r.getMessage() for r in caplog.records]
    said = [x for x in lines if f"{INFO}: bad CameraInfo ignored" in x]
    assert len(said) == 1 and "transposed?" in said[0]
    assert sum(f"{INFO}: 50 of 50 CameraInfo messages ignored" in x for x in lines) == 1
    assert len(lines) < 10, lines
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_transposed_k_ignored_the_others_used(tmp_path, caplog, shared_data):
    """Half the CameraInfos transposed (a calibration re-published wrong mid-drive): those ignored
    in one line and a total; every frame is the original bag's, with its K."""
    bag = _rewrite(tmp_path / "half", lambda i: i % 2 == 1)
    forget()
    caplog.set_level(logging.WARNING)
    got, want = _frames(bag), _frames(SOURCE)
    assert len(got) == len(want) == 50
    for a, b in zip(got, want, strict=True):
        assert a.stamp_ns == b.stamp_ns and np.array_equal(a.camera.K, b.camera.K)
        assert np.array_equal(a.camera.T_map_cam, b.camera.T_map_cam) and np.array_equal(a.rgb, b.rgb)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(f"{INFO}: bad CameraInfo ignored" in x and "transposed?" in x for x in lines) == 1
    assert sum(f"{INFO}: 25 of 50 CameraInfo messages ignored" in x for x in lines) == 1


def test_one_rule_for_hd_predict_and_the_mapper(shared_data):
    """The same K refused by both, with the same reason (one rule: pinhole_k_problem)."""
    pytest.importorskip("torch")
    from gs_mapping.errors import MessageError
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_intrinsics

    K = np.array([[585.0, 0, 319.5], [0, 585.0, 239.5], [0, 0, 1]])
    for bad in (K.T, K * 2.0):
        with pytest.raises(MessageError) as a:
            CameraIntrinsics(640, 480, bad)
        with pytest.raises(HDInputError) as b:
            check_intrinsics(bad, "camera 0")
        assert str(a.value).split("(got rows")[1] == str(b.value).split("(got rows")[1]
    CameraIntrinsics(640, 480, K)
    check_intrinsics(K, "camera 0")
