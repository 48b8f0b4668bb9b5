"""The bag path of the HD model sees what the direct path sees.

The shipped checkpoint was trained on front-camera world frames rendered at the model's input size
(256×128, 2:1, fx = fy). A drive written by ``gs-mapping world`` has 640×360 (16:9) images; the same
world frame must reach the model as (nearly) the same input tensor and intrinsics either way — before
the fix the 16:9 image was squashed to 2:1 (fy ≠ fx) and low-pass filtered, and through-bag Chamfer
mAP was half the direct one (bench/results/hd_bag.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.world import Drive
from gs_mapping.world.record import write_bag
from gsmap_hd.data import fit_to_aspect, images_to_model
from gsmap_hd.errors import HDInputError
from gsmap_hd.infer import Predictor
from gsmap_hd.predict_bag import SHIPPED, predict_bag

SEED, FRAMES, RATE = 2026, 2, 2.0
BAG_SIZE, MODEL_SIZE = (640, 360), (256, 128)


@pytest.fixture(scope="module")
def predictor():
    torch.set_num_threads(1)
    return Predictor.from_checkpoint(SHIPPED, score_threshold=0.05)


@pytest.fixture(scope="module")
def drives():
    return (
        Drive.make(SEED, FRAMES, "front", BAG_SIZE, rate_hz=RATE),
        Drive.make(SEED, FRAMES, "front", MODEL_SIZE, rate_hz=RATE),
    )


@pytest.fixture(scope="module")
def bag(drives, tmp_path_factory):
    out = tmp_path_factory.mktemp("hd_bag") / "drive"
    write_bag(drives[0], out, progress=False)
    return out


def _inputs(pred, drive, i):
    cam = drive.cameras[0]
    rgb, _ = drive.frame(i).images["front"]
    return pred.model_inputs([rgb], [cam], [cam.T_map_cam])


def test_bag_frame_gives_the_direct_model_input(predictor, drives):
    big, small = drives
    for i in range(FRAMES):
        xb, Kb, Tb = _inputs(predictor, big, i)
        xs, Ks, Ts = _inputs(predictor, small, i)
        assert xb.shape == xs.shape == (1, 3, 128, 256)
        # the same pinhole: square pixels, the same focal length and principal point
        torch.testing.assert_close(Kb, Ks, atol=1e-3, rtol=0)
        torch.testing.assert_close(Tb, Ts)
        # the same pixels up to resampling: mean |Δ| 0.011 here; cropped but low-pass filtered 0.016,
        # squashed and filtered (the old path) 0.040-0.043
        assert float((xb - xs).abs().mean()) < 0.0135
    # the old preprocessing fails this check: squashing makes fy ≠ fx
    old = Predictor(predictor.model, fit="stretch", antialias=True)
    _, K_old, _ = _inputs(old, big, 0)
    assert abs(float(K_old[0, 1, 1] - Ks[0, 1, 1])) > 10


def test_predict_bag_matches_predictor_on_the_same_frames(predictor, drives, bag, tmp_path):
    """Decoding, TF extrinsics and GT pairing of the bag path add nothing: the bag's predictions
    equal the Predictor's on the rendered frames, and each frame's GT is that frame's lanes."""
    big = drives[0]
    out = tmp_path / "pred.json"
    summary = predict_bag(bag, out, progress=False, score_threshold=predictor.score_threshold)
    assert summary["frames"] == FRAMES and summary["with_gt"]
    assert summary["skipped_frames"] == 0 and summary["frames_without_gt"] == 0
    doc = json.loads(out.read_text())
    for i, (res, gt) in enumerate(zip(doc["results"], doc["GTs"], strict=False)):
        fr = big.frame(i)
        assert res["stamp_ns"] == fr.stamp_ns
        cam = big.cameras[0]
        want = predictor.predict([fr.images["front"][0]], [cam], [cam.T_map_cam])
        got = res["vectors"]
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=False):
            assert g["type"] == w.cls
            assert g["confidence_level"] == pytest.approx(w.score, abs=1e-5)
            np.testing.assert_allclose(g["pts"], w.points, atol=1e-4)
        # the GT is cut from the bag's map at the frame's TF pose (over the model's patch, which is
        # the recorded --bev-range here): the frame's lanes up to TF's float round trip
        lanes = json.loads(json.dumps([e.to_json() for e in fr.lanes]))
        assert [v["type"] for v in gt["vectors"]] == [v["type"] for v in lanes]
        for g, w in zip(gt["vectors"], lanes, strict=True):
            np.testing.assert_allclose(g["pts"], w["pts"], atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    h0=st.integers(20, 700),
    w0=st.integers(20, 900),
    h=st.integers(8, 128),
    w=st.integers(8, 256),
    fx=st.floats(50, 2000),
    cxf=st.floats(0.3, 0.7),
    cyf=st.floats(0.3, 0.7),
    px=st.floats(0.05, 0.95),
    py=st.floats(0.05, 0.95),
    fit=st.sampled_from(["crop", "stretch"]),
)
def test_resized_intrinsics_follow_the_pixels(h0, w0, h, w, fx, cxf, cyf, px, py, fit):
    """A point that K projects to source pixel centre (u, v) is projected by the output K to where
    the resize puts that pixel; "crop" keeps pixels square up to the crop's integer rounding."""
    K = np.array([[fx, 0, cxf * w0], [0, fx, cyf * h0], [0, 0, 1.0]])
    img = np.zeros((1, h0, w0, 3), np.uint8)
    x, K2 = images_to_model(img, K[None], (h, w), fit=fit)
    assert x.shape == (1, 3, h, w)
    top, left, hc, wc = fit_to_aspect(h0, w0, h, w) if fit == "crop" else (0, 0, h0, w0)
    u, v = left + px * (wc - 1), top + py * (hc - 1)  # a source pixel inside the used window
    ray = np.linalg.solve(K, [u, v, 1.0])
    p = K2[0].double().numpy() @ ray
    sx, sy = w / wc, h / hc
    np.testing.assert_allclose(
        p[:2] / p[2], [(u - left + 0.5) * sx - 0.5, (v - top + 0.5) * sy - 0.5], rtol=1e-5, atol=1e-3
    )
    if fit == "crop":
        # square pixels stay square up to the crop's integer rounding (half a source pixel)
        assert abs(sx / sy - 1) <= 0.5 / min(hc, wc) * 2 + 1e-9


def test_crop_window_has_the_model_aspect():
    assert fit_to_aspect(360, 640, 128, 256) == (20, 0, 320, 640)
    assert fit_to_aspect(216, 384, 128, 256) == (12, 0, 192, 384)
    assert fit_to_aspect(128, 400, 128, 256) == (0, 72, 128, 256)
    assert fit_to_aspect(128, 256, 128, 256) == (0, 0, 128, 256)


def test_unknown_fit_is_refused(predictor):
    with pytest.raises(HDInputError, match="fit"):
        Predictor(predictor.model, fit="pad")


def test_camera_info_logged_after_its_images_loses_no_frame(predictor, bag, tmp_path):
    """image_transport's CameraPublisher logs a frame's CameraInfo just after its image (same header
    stamp): the first frame waited for a CameraInfo that had come, and was skipped. The bag rewritten
    that way gives the same predictions as the bag itself."""
    from gs_mapping.bag import BagReader, BagWriter

    late = tmp_path / "late"
    with BagReader(bag) as r, BagWriter(late) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        msgs = list(r.messages())
        for topic, stamp, msg in sorted(
            msgs, key=lambda m: (m[1] + (1 if m[0].endswith("camera_info") else 0))
        ):
            w.write(topic, stamp + (1 if topic.endswith("camera_info") else 0), msg)
    a = predict_bag(bag, tmp_path / "a.json", progress=False, score_threshold=predictor.score_threshold)
    b = predict_bag(late, tmp_path / "b.json", progress=False, score_threshold=predictor.score_threshold)
    assert b["frames"] == a["frames"] == FRAMES and b["skipped_frames"] == 0
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())
