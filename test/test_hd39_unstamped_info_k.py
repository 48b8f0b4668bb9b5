"""hd-predict times an unstamped camera's CameraInfo by log time, as its images (review38's surviving
mutant: the CameraInfo timed by its header stamp, zero). It shows only where K changes over time: a
camera that zooms (or a driver that reloads its calibration) mid-bag. The real RealSense kitchen bag
with the colour camera's K (and P) changed from its 4th CameraInfo on, recorded twice: stamped as the
original, and by a driver that does not stamp (every /camera/ header stamp zero; log times, which in
this bag equal the stamps, kept). Expected: hd-predict's output on the unstamped bag is the stamped
bag's, frame for frame (the same stamps: log times), the 4th frame with the new K (its image is
logged just before its CameraInfo of the same time: it waits for it, as image_transport pairs them),
and that K is seen (the 4th frame's prediction differs from the original bag's)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("rosbags.rosbag2")

from conftest import SHARED_DATA, rewrite_camera_messages, zero_stamp  # noqa: E402

SOURCE = SHARED_DATA / "realsense_kitchen_rgbd"
INFO = "/camera/camera/color/camera_info"
CHANGE_AT = 3  # the first CameraInfo (and frame) with the new K


def _rewrite(out, zero_stamps: bool):
    def edit(topic, i, m):
        zoom = topic == INFO and i >= CHANGE_AT
        if zoom:  # zoomed in by 15 %
            m.k = m.k.copy()
            m.k[[0, 4]] *= 1.15
            m.p = m.p.copy()
            m.p[[0, 5]] *= 1.15
        return (zero_stamps and zero_stamp(m)) or zoom

    return rewrite_camera_messages(SOURCE, out, edit)


def test_an_unstamped_cameras_changing_k_is_taken_at_its_log_time(tmp_path, shared_data):
    from gs_mapping.cli import main

    docs = {}
    for name, path in (
        ("orig", SOURCE),
        ("stamped", _rewrite(tmp_path / "stamped", False)),
        ("zero", _rewrite(tmp_path / "zero", True)),
    ):
        out = tmp_path / f"{name}.json"
        assert main(["hd-predict", str(path), "--out", str(out), "--no-progress", "--max-frames", "6"]) == 0
        docs[name] = json.loads(out.read_text())
    orig, stamped, zero = (docs[k]["results"] for k in ("orig", "stamped", "zero"))
    assert len(stamped) == 6
    assert stamped[:CHANGE_AT] == orig[:CHANGE_AT]  # (the old K: the original's frames)

    def pts(r):
        return [np.asarray(v["pts"]) for v in r["vectors"]]

    a, b = pts(stamped[CHANGE_AT]), pts(orig[CHANGE_AT])
    assert len(a) != len(b) or any(
        x.shape != y.shape or not np.allclose(x, y) for x, y in zip(a, b, strict=False)
    )
    assert [r["stamp_ns"] for r in zero] == [r["stamp_ns"] for r in stamped]
    for i, (z, s) in enumerate(zip(zero, stamped, strict=True)):
        assert z == s, f"frame {i} differs from the stamped bag's"
    assert docs["zero"] == docs["stamped"]
