"""Session 37, GSMap inputs and checkpoints a user can get wrong without noticing.

Calibration read in the wrong memory order (a column-major K or T_ego_cam read row-major: the
translation lands in the last row, cx/cy in K's) passed the Predictor's checks, which looked at the
rotation block and the focal lengths only, and gave predictions for a camera at the car's origin
looking the inverse way. Image arrays of a dtype whose scale is neither 0..255 nor [0, 1] (16-bit,
bool) and empty images ended in a misleading line or a torch traceback. Each is now one line
naming the camera and what is wrong (a CLI: exit 2), while a T_ego_cam computed as an inverse
(round-off in its last row) still passes and predicts what the exact one does.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

FRONT_INFO = "/cameras/front/camera_info"


def _frame():
    """One synthetic front frame at the tiny model's size: image, CameraInfo-like dict, T_ego_cam."""
    from gsmap_hd.synthetic import generate

    s = generate(3, "front", 64, 32)
    return s.images[0], {"K": s.K[0], "width": 64, "height": 32}, np.asarray(s.T_ego_cam[0], np.float64)


def _predictor():
    from hd_tiny import tiny_config

    from gsmap_hd.infer import Predictor
    from gsmap_hd.model import GSMapModel

    torch.manual_seed(0)
    return Predictor(GSMapModel(tiny_config()))


def _transposed_T(im, cam, T):
    return [im], [cam], [T.T]


def _transposed_K(im, cam, T):
    return [im], [{**cam, "K": np.asarray(cam["K"]).T}], [T]


def _scaled_K(im, cam, T):  # homogeneous K times 2: projects the same rays, yet not a pinhole K
    return [im], [{**cam, "K": 2 * np.asarray(cam["K"])}], [T]


@pytest.mark.parametrize(
    "mutate,match",
    [
        (_transposed_T, r"camera 0: extrinsic T_ego_cam's last row must be \[0, 0, 0, 1\].*transposed"),
        (_transposed_K, r"camera 0: intrinsics K must be \[\[fx, s, cx\], \[0, fy, cy\], \[0, 0, 1\]\]"),
        (_scaled_K, r"intrinsics K must be .*\[0.0, 0.0, 2.0\]"),
        (lambda im, cam, T: ([im], [{**cam, "K": np.eye(2)}], [T]), "intrinsics K must be 9 numbers"),
        (lambda im, cam, T: ([im], [cam], [[[1, 0], [0]]]), "T_ego_cam must be a 4x4 matrix of numbers"),
        (lambda im, cam, T: ([im.astype(np.uint16) * 257], [cam], [T]), "image dtype uint16: pass uint8"),
        (lambda im, cam, T: ([im > 128], [cam], [T]), "image dtype bool: pass uint8"),
        (
            lambda im, cam, T: ([im[:0, :0]], [{**cam, "width": 0, "height": 0}], [T]),
            r"camera 0: image is empty \(0x0\)",
        ),
    ],
    ids=["T-transposed", "K-transposed", "K-scaled", "K-2x2", "T-ragged", "uint16", "bool", "empty"],
)
def test_calibration_in_the_wrong_order_and_odd_images_are_one_line(mutate, match):
    from gsmap_hd.errors import HDInputError

    im, cam, T = _frame()
    p = _predictor()
    assert p.predict([im], [cam], [T])  # the frame as it is predicts
    with pytest.raises(HDInputError, match=match):
        p.predict(*mutate(im, cam, T))


def test_an_extrinsic_computed_as_an_inverse_is_taken_as_the_exact_one():
    """T_ego_cam = inv(T_cam_ego): float round-off in its last row (1e-17-ish) is not a transposed
    matrix; it predicts what the exact T predicts."""
    im, cam, T = _frame()
    T_inv = np.linalg.inv(np.linalg.inv(T))
    T_inv[3, :3] += 1e-12  # (as an inverse's round-off may leave it)
    p = _predictor()
    a, b = p.predict([im], [cam], [T]), p.predict([im], [cam], [T_inv])
    assert len(a) == len(b) and all(
        x.cls == y.cls and np.allclose(x.points, y.points, atol=1e-4) for x, y in zip(a, b, strict=True)
    )


def _bag_with_info_transposed(src, out, which):
    """``src`` (depth left out) with the CameraInfos numbered in ``which`` carrying K column-major."""
    from gs_mapping.bag import BagReader, BagWriter

    with BagReader(src) as r:
        keep = [t.name for t in r.topics if "depth" not in t.name]
        types = {t: r.topic(t).type for t in keep}
        rows, n = [], 0
        for topic, t, m in r.messages(keep):
            if topic == FRONT_INFO:
                if n in which:
                    m = dataclasses.replace(
                        m, k=np.asarray(m.k, np.float64).reshape(3, 3).T.reshape(-1).copy()
                    )
                n += 1
            rows.append((t, topic, m))
    with BagWriter(out) as w:
        for t in types:
            w.add_topic(t, types[t], latched=t == "/tf_static")
        for t, topic, m in rows:
            w.write(topic, t, m)
    return out


def _predicted(path) -> dict:
    import json

    return {r["stamp_ns"]: r["vectors"] for r in json.loads(path.read_text())["results"]}


def test_hd_predict_skips_a_camera_info_with_k_transposed_as_an_uncalibrated_one(tmp_path, capsys, caplog):
    """A recording whose CameraInfo carries K column-major (cx, cy in k[6], k[7]): before, hd-predict
    wrote predictions made with cx = cy = 0 and a projective last row. Now such a CameraInfo is
    refused as an uncalibrated one is (image_proc's way: skipped, said once): one of three in a
    drive leaves the other frames as the clean drive predicts them; all of them end hd-predict with
    exit 2 and no file, the warning naming the transposed K."""
    from gs_mapping.cli import main
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    src = tmp_path / "drive"
    write_bag(Drive.make(3, 3, "front", (128, 64)), src, progress=False)
    assert main(["hd-predict", str(src), "--out", str(tmp_path / "good.json"), "--no-progress"]) == 0
    good = _predicted(tmp_path / "good.json")
    assert len(good) == 3
    assert "transposed" not in caplog.text

    one = _bag_with_info_transposed(src, tmp_path / "one", {1})
    assert main(["hd-predict", str(one), "--out", str(tmp_path / "one.json"), "--no-progress"]) == 0
    assert "intrinsics K must be" in caplog.text and "transposed" in caplog.text, caplog.text
    got = _predicted(tmp_path / "one.json")
    assert len(got) >= 2 and all(got[s] == good[s] for s in got if s != sorted(good)[1]), sorted(got)

    # hd_map_node: that CameraInfo refused as an uncalibrated one (the previous calibration kept),
    # not the frame rejected at prediction: every frame published, as over the clean drive
    from test_outside_hd_map4 import _run_node

    assert _run_node(src) == 3
    assert _run_node(one) == 3

    every = _bag_with_info_transposed(src, tmp_path / "every", {0, 1, 2})
    out = tmp_path / "every.json"
    assert main(["hd-predict", str(every), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no valid" in err[0] and "refused" in err[0], err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# checkpoints: another version's, a GPU run's, files that are not ours


def _tiny_checkpoint(path, **save_kw):
    from hd_tiny import tiny_config

    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import TrainConfig

    torch.manual_seed(0)
    model = GSMapModel(tiny_config())
    return ckpt.save(path, model, TrainConfig(model=tiny_config()), 3, weights_only=True, **save_kw), model


def _rewritten(src, dst, change):
    """``src``'s contents changed by ``change(state)`` and saved with torch.save as ``dst``."""
    state = torch.load(src, weights_only=True)
    torch.save(change(dict(state)), dst)
    return dst


def test_checkpoints_another_version_or_tool_wrote_are_named_in_one_line(tmp_path, capsys):
    """What a user may hand hd-predict / hd-export instead of a model.pt: a later version's format,
    a later version's config field, a bare state_dict, a whole pickled model, a truncated copy.
    Each is one line saying which it is (exit 2), never torch's page of advice to allow-list the
    pickled class (loading that runs code the file holds)."""
    from gs_mapping.cli import main

    good, model = _tiny_checkpoint(tmp_path / "model.pt")

    def later_config(s):
        s["config"] = {**s["config"], "model": {**s["config"]["model"], "a_later_option": 1}}
        return s

    files = {
        "newer": (
            _rewritten(good, tmp_path / "v2.pt", lambda s: {**s, "format": "gsmap_hd/2"}),
            "a gsmap_hd checkpoint of format 'gsmap_hd/2', newer than the 'gsmap_hd/1' this version reads",
        ),
        "later config": (
            _rewritten(good, tmp_path / "later.pt", later_config),
            "unknown key 'a_later_option'.*written by a later gs_mapping",
        ),
        "state_dict": (tmp_path / "sd.pt", "a bare state_dict .*lacks the training config"),
        "whole model": (tmp_path / "whole.pt", r"a whole model pickled with torch.save\(model\)"),
        "object": (tmp_path / "obj.pt", r"it holds a pickled pathlib\.\w*PosixPath object"),
        "truncated": (tmp_path / "cut.pt", "truncated or damaged"),
    }
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save(model, tmp_path / "whole.pt")
    torch.save({"format": "gsmap_hd/1", "x": pathlib.PurePosixPath("a")}, tmp_path / "obj.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name, (path, match) in files.items():
        rc = main(["hd-export", "--onnx", str(tmp_path / f"{name}.onnx"), "--checkpoint", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, (name, rc, err)
        assert re.search(match, err[0]) and "safe_globals" not in err[0], (name, err[0])
        assert not (tmp_path / f"{name}.onnx").exists()


def test_extra_of_numpy_values_saves_a_checkpoint_that_loads(tmp_path):
    """``save(extra=…)`` with numpy numbers (what metrics and benches compute) wrote a file that
    its own weights-only loader refused ("Unsupported global: numpy…scalar"); they are saved as
    Python numbers, and an object that is not plain data is refused before anything is written."""
    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.errors import CheckpointError

    held = {"chamfer_mAP": np.float64(0.5), "class_ap": np.array([0.25, 0.5, 0.75], np.float32)}
    path, _ = _tiny_checkpoint(tmp_path / "m.pt", extra={"heldout_eval": held, "steps": np.int64(3)})
    state = ckpt.load_state(path)
    assert state["extra"] == {"heldout_eval": {"chamfer_mAP": 0.5, "class_ap": [0.25, 0.5, 0.75]}, "steps": 3}
    with pytest.raises(CheckpointError, match=r"extra.when: a object is not plain data"):
        _tiny_checkpoint(tmp_path / "bad.pt", extra={"when": object()})
    assert not (tmp_path / "bad.pt").exists()


def test_a_run_checkpointed_on_a_gpu_resumes_on_a_cpu_as_the_straight_run(tmp_path):
    """A run's last.pt written on a GPU (its tensors' storages tagged 'cuda:0', what torch.save
    writes for CUDA tensors, and the loop's CUDA RNG state beside the CPU one) continued with
    ``--resume`` on a machine without CUDA: the resumed run ends with the weights the straight
    run on the CPU ends with (the straight run's own yardstick: its two halves on one device)."""
    import torch.serialization as ser
    from test_hd_model_train import _cfg

    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.train import train

    torch.set_num_threads(1)
    run = dict(steps=4, warmup_steps=1, eval_every=0, checkpoint_every=2)
    train(_cfg(**run), tmp_path / "straight", progress=False)
    train(_cfg(**{**run, "steps": 2}), tmp_path / "gpu", progress=False)
    last = tmp_path / "gpu" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["loop"]["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)  # (a CUDA generator's state)
    state["config"] = {**state["config"], "device": "cuda"}

    def as_cuda(obj):  # the location tag torch.save gives a CUDA tensor's storage
        return "cuda:0" if getattr(obj, "device", None) is not None and obj.device.type == "cpu" else None

    ser.register_package(1, as_cuda, lambda obj, location: None)
    try:
        torch.save(state, last)
    finally:
        ser._package_registry[:] = [p for p in ser._package_registry if p[1] is not as_cuda]
    with pytest.raises(RuntimeError, match="CUDA"):  # (the file is a GPU run's: torch.load alone fails)
        torch.load(last, weights_only=True)
    train(_cfg(**run), tmp_path / "gpu", resume=True, progress=False)
    a = ckpt.load_model(tmp_path / "straight" / "last.pt")[0].state_dict()
    b = ckpt.load_model(tmp_path / "gpu" / "last.pt")[0].state_dict()
    assert ckpt.load_state(tmp_path / "gpu" / "last.pt")["step"] == 4
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-6


def test_numpy_numbers_as_threshold_and_count_act_as_python_ones():
    """``Predictor(score_threshold=np.float32(0.3))`` (a value read from a numpy config or array) was
    refused as "must be a number in [0, 1]" (np.float32 is no Python float), and
    ``max_elements=2.5`` failed inside torch.topk: numpy numbers now act as the Python numbers they
    hold, and a count that is no integer is one line."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import Predictor

    im, cam, T = _frame()
    p = _predictor()
    scores = [e.score for e in p.predict([im], [cam], [T])]  # (a random tiny model: low scores)
    thr = np.float32(scores[3] * 0.999)  # keeps the top 4, max_elements 2 of them
    ref = Predictor(p.model, score_threshold=float(thr), max_elements=2).predict([im], [cam], [T])
    got = Predictor(p.model, score_threshold=thr, max_elements=np.int64(2)).predict([im], [cam], [T])
    assert 0 < len(got) == len(ref) <= 2 and all(
        a.cls == b.cls and a.score == b.score and np.array_equal(a.points, b.points)
        for a, b in zip(got, ref, strict=True)
    )
    with pytest.raises(HDInputError, match=r"max_elements must be at least 1 \(an integer\), got 2.5"):
        Predictor(p.model, max_elements=2.5)
    for bad in (np.float32("nan"), np.bool_(True), True):
        with pytest.raises(HDInputError, match="score threshold must be a number in"):
            Predictor(p.model, score_threshold=bad)


def test_a_device_this_machine_lacks_is_one_line_from_the_python_api(tmp_path):
    """``Predictor.from_checkpoint(path, device="cuda")`` on a machine without CUDA ended in torch's
    AssertionError "Torch not compiled with CUDA enabled", and ``device="gpu"`` in a RuntimeError
    listing 20 device types; the CLI and the node resolve the device first (cpu, cuda[:N], auto).
    Now the Python API does too: one HDInputError line, and ``auto`` is the CPU here."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import Predictor

    path, model = _tiny_checkpoint(tmp_path / "m.pt")
    assert Predictor.from_checkpoint(path, device="auto").device == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    bad = ["gpu", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:1"])
    for device in bad:
        with pytest.raises(HDInputError, match=f"device '{device}': ") as err:
            Predictor.from_checkpoint(path, device=device)
        assert "\n" not in str(err.value)
        with pytest.raises(HDInputError, match=f"device '{device}': "):
            Predictor(model, device=device)


def test_a_batch_of_no_frames_predicts_nothing():
    """``predict_batch([])`` (the frames a caller's filter left: none) ended in torch's "stack
    expects a non-empty TensorList"; it is an empty list of frames, as each frame is a list."""
    p = _predictor()
    im, cam, T = _frame()
    p.predict([im], [cam], [T])
    assert p.predict_batch([]) == [] and p.last_regions == []
