"""Session 37: one bad frame in a long drive no longer ends ``gs-mapping hd-predict``.

An image whose size disagrees with its CameraInfo passed the reader and reached the Predictor,
whose one-line refusal ended the whole run: the predictions of every good frame were lost. Such a
frame is now skipped as the 3DGS ``map`` skips its bad frames (said once a reason, a total at the
end), beside the images that do not decode and the messages that do not deserialise (skipped
before); ``--strict`` keeps the refusal an error; a drive where every frame is bad is one line,
exit 2, and no file.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("torch")

IMG = "/cameras/front/image_raw"


def _damaged(src, out, change):
    """``src`` (depth left out) with the front images numbered in ``change`` replaced by what
    ``change[n](msg)`` gives: a message, or raw bytes written as they are (not CDR)."""
    from gs_mapping.bag import BagReader, BagWriter

    with BagReader(src) as r:
        keep = [t.name for t in r.topics if "depth" not in t.name]
        types = {t: r.topic(t).type for t in keep}
        rows, n = [], 0
        for topic, t, m in r.messages(keep):
            if topic == IMG:
                m = change[n](m) if n in change else m
                n += 1
            rows.append((t, topic, m))
    with BagWriter(out) as w:
        for t in types:
            w.add_topic(t, types[t], latched=t == "/tf_static")
        for t, topic, m in rows:
            (w.write_raw if isinstance(m, bytes) else w.write)(topic, t, m)
    return out


def _half_size(m):  # the image at half size, its CameraInfo unchanged (a resizing stage's slip)
    a = np.asarray(m.data, np.uint8).reshape(m.height, m.width, 3)[::2, ::2].copy()
    return dataclasses.replace(
        m, height=a.shape[0], width=a.shape[1], step=3 * a.shape[1], data=a.reshape(-1)
    )


def _short(m):  # data cut short: the image does not decode
    return dataclasses.replace(m, data=np.asarray(m.data, np.uint8)[:100].copy())


def _corrupt(m):  # not a CDR Image at all: the message does not deserialise
    return b"\x00\x01\x00\x00" + b"\xff" * 40


def _by_stamp(path) -> dict:
    doc = json.loads(path.read_text())
    return {r["stamp_ns"]: (r, gt) for r, gt in zip(doc["results"], doc["GTs"], strict=True)}


def test_a_bad_frame_is_skipped_and_the_good_frames_predict_as_in_the_clean_drive(tmp_path, capsys, caplog):
    from gs_mapping.cli import main
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    src = tmp_path / "drive"
    write_bag(Drive.make(5, 5, "front", (128, 64)), src, progress=False)
    assert main(["hd-predict", str(src), "--out", str(tmp_path / "good.json"), "--no-progress"]) == 0
    good = _by_stamp(tmp_path / "good.json")
    assert len(good) == 5
    stamps = sorted(good)

    # frame 1 of a size its CameraInfo does not say, frame 3 not decoding, frame 4 not a message
    bad = _damaged(src, tmp_path / "bad", {1: _half_size, 3: _short, 4: _corrupt})
    caplog.clear()
    out = tmp_path / "bad.json"
    assert main(["hd-predict", str(bad), "--out", str(out), "--no-progress"]) == 0
    got = _by_stamp(out)
    assert sorted(got) == [stamps[0], stamps[2]]
    assert all(got[s] == good[s] for s in got)  # predictions, regions and GTs alike
    text = caplog.text
    assert text.count("image is 64x32 but its CameraInfo says 128x64: skipped (and any like it)") == 1, text
    assert f"frame at {stamps[1]} ns: camera {IMG}: image is 64x32" in text, text
    assert "3 frame(s) skipped in all" in text, text  # (refused, undecodable, not deserialised)
    assert "Traceback" not in capsys.readouterr().err

    # --strict: the refusal is the error it was, naming the frame
    assert main(["hd-predict", str(bad), "--out", str(tmp_path / "s.json"), "--no-progress", "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CameraInfo says 128x64" in err[-1], err
    assert not (tmp_path / "s.json").exists()

    # every frame bad: one line, exit 2, no output file
    every = _damaged(src, tmp_path / "every", dict.fromkeys(range(5), _half_size))
    out = tmp_path / "every.json"
    caplog.clear()
    assert main(["hd-predict", str(every), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no frame predicted" in err[0] and "CameraInfo says 128x64" in err[0], err
    assert not out.exists()
    assert caplog.text.count("skipped (and any like it)") == 1, caplog.text  # (said once a reason)
