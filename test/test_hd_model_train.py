"""Training loop (checkpoints, resume, metrics), hd-train / hd-predict CLIs, inference API errors."""

import importlib.util
import json
import subprocess
import sys

import hd_tiny
import numpy as np
import pytest
import torch
import yaml

from gs_mapping.camera import Camera
from gsmap_hd.checkpoint import load_model, save
from gsmap_hd.errors import CheckpointError, HDInputError
from gsmap_hd.infer import Predictor, postprocess
from gsmap_hd.model import GSMapModel
from gsmap_hd.model_config import ModelConfig, TrainConfig
from gsmap_hd.synthetic import camera_rig, generate
from gsmap_hd.train import train

torch.set_num_threads(1)
# hd_tiny's sizes as a parameter file gives them (sequences as lists: they are written to YAML too)
TINY = {k: list(v) if isinstance(v, tuple) else v for k, v in hd_tiny.TINY.items()}
TINY_LOSS = dict(raster_res=1.5, iou_cost_res=3.0, raster_warmup_steps=2)


def _cfg(**kw) -> TrainConfig:
    from gs_mapping.config_file import from_dict

    base = {
        "model": TINY,
        "loss": TINY_LOSS,
        "steps": 4,
        "batch_size": 2,
        "train_frames": 4,
        "data": "flat",
        "log_every": 2,
        "checkpoint_every": 2,
        "eval_every": 4,
        "eval_frames": 2,
    }
    base.update(kw)
    return from_dict(TrainConfig, base)


def test_train_checkpoints_resume_and_metrics(tmp_path):
    full = train(_cfg(steps=4), tmp_path / "a", progress=False)
    train(_cfg(steps=2), tmp_path / "b", progress=False)
    resumed = train(_cfg(steps=4), tmp_path / "b", resume=True, progress=False)
    # resuming gives the same model as training straight through (batches are a function of the step)
    a, _, _ = load_model(tmp_path / "a" / "last.pt")
    b, _, sb = load_model(tmp_path / "b" / "last.pt")
    assert sb["step"] == 4
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=False):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-4)
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [2, 4]
    ev = [x for x in lines if "eval" in x]
    assert ev and 0.0 <= ev[-1]["eval"]["chamfer"]["mAP"] <= 1.0
    assert (tmp_path / "a" / "model.pt").stat().st_size < (tmp_path / "a" / "last.pt").stat().st_size


def test_resume_with_another_model_config_is_refused(tmp_path):
    train(_cfg(steps=2), tmp_path, progress=False)
    other = _cfg(steps=4, model={**TINY, "num_points": 8})
    with pytest.raises(CheckpointError, match="num_points"):
        train(other, tmp_path, resume=True, progress=False)


def test_init_from_fine_tunes_from_the_checkpoint_weights(tmp_path):
    train(_cfg(steps=2), tmp_path / "base", progress=False)
    base, _, _ = load_model(tmp_path / "base" / "model.pt")
    # lr 0: the fine-tuned model is the checkpoint it started from; a fresh schedule (step 0)
    tuned = _cfg(steps=2, lr=0.0, seed=5, init_from=str(tmp_path / "base" / "model.pt"))
    train(tuned, tmp_path / "ft", progress=False)
    ft, _, state = load_model(tmp_path / "ft" / "model.pt")
    assert state["step"] == 2
    for (k, a), b in zip(base.named_parameters(), ft.parameters(), strict=True):  # BN stats do move
        assert torch.equal(a, b), k
    scratch = _cfg(steps=2, lr=0.0, seed=5)  # the same run without init_from: other weights
    train(scratch, tmp_path / "s", progress=False)
    s, _, _ = load_model(tmp_path / "s" / "model.pt")
    assert not all(torch.equal(a, b) for a, b in zip(base.parameters(), s.parameters(), strict=True))
    with pytest.raises(CheckpointError, match="num_points"):
        train(
            _cfg(model={**TINY, "num_points": 8}, init_from=str(tmp_path / "base" / "model.pt")),
            tmp_path / "x",
        )


def test_checkpoint_errors(tmp_path):
    cfg = _cfg()
    model = GSMapModel(cfg.model)
    path = save(tmp_path / "m.pt", model, cfg, weights_only=True)
    with pytest.raises(CheckpointError, match="another model config.*bev_h: 50 != 20"):
        load_model(path, expect=ModelConfig())
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(tmp_path / "bad.pt")
    m2, _, _ = load_model(path, expect=cfg.model)
    assert all(
        torch.allclose(a.float(), b.float(), atol=1e-2)
        for a, b in zip(m2.state_dict().values(), model.state_dict().values(), strict=False)
    )


def _predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(GSMapModel(_cfg().model))


def test_predict_api_with_camera_objects_and_resizing():
    s = generate(1, "surround", 128, 64)  # 6 cameras at twice the model's input size
    cams = [Camera(K, 128, 64) for K in s.K]
    els = _predictor().predict(list(s.images), cams, list(s.T_ego_cam))
    assert len(els) == 6 and els[0].score >= els[-1].score
    e = els[0]
    assert (
        e.points.shape == (6, 2)
        and e.gaussians.shape == (6, 5)
        and e.label in ("divider", "ped_crossing", "boundary")
    )
    dicts = [{"k": K.ravel().tolist(), "width": 128, "height": 64} for K in s.K]  # CameraInfo-like
    again = _predictor().predict(list(s.images), dicts, list(s.T_ego_cam))
    assert np.allclose(again[0].points, e.points)


def test_polygons_come_out_closed():
    logits = torch.full((2, 3), -5.0)
    logits[0, 1] = 5.0
    params = torch.rand(2, 6, 5)
    (top, *_) = postprocess(logits, params)
    assert top.cls == 1 and np.allclose(top.points[0], top.points[-1])


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda im, ci, T: ([None], ci, T), "camera 0: image is missing"),
        (lambda im, ci, T: ([im[0][:32]], ci, T), "image is 64x32 but its CameraInfo says 64x48"),
        (lambda im, ci, T: (im, [{"K": np.full((3, 3), np.nan), "width": 64, "height": 48}], T), "NaN"),
        (lambda im, ci, T: (im, ci, [np.full((4, 4), np.nan)]), "extrinsic T_ego_cam contains NaN"),
        (lambda im, ci, T: (im, ci, [np.diag([2.0, 1, 1, 1])]), "not a rotation"),
        (lambda im, ci, T: (im + im, ci, T), "got 2 images, 1 camera infos"),
        (lambda im, ci, T: ([im[0][..., :1]], ci, T), r"RGB \(H, W, 3\)"),
        (
            lambda im, ci, T: ([im[0].astype(np.float32) + 255], ci, T),
            r"float images must be RGB in \[0, 1\]",
        ),
    ],
)
def test_predict_input_errors(mutate, match):
    K, T = camera_rig("front", 64, 48)
    im = [np.zeros((48, 64, 3), np.uint8)]
    ci = [{"K": K[0], "width": 64, "height": 48}]
    with pytest.raises(HDInputError, match=match):
        _predictor().predict(*mutate(im, ci, [T[0]]))


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_cli_train_and_predict_on_a_world_bag(tmp_path, capsys):
    params = {
        "/**": {
            "ros__parameters": {
                "hd_train": {"model": TINY, "loss": TINY_LOSS, "eval_every": 0, "log_every": 1}
            }
        }
    }
    (tmp_path / "hd.yaml").write_text(yaml.safe_dump(params))
    r = _cli(
        "hd-train",
        "--out",
        str(tmp_path / "run"),
        "--config",
        str(tmp_path / "hd.yaml"),
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--frames",
        "2",
        "--data",
        "world",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 2
    r = _cli("world", "--out", str(tmp_path / "bag"), "--frames", "2", "--size", "96x48", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pred.json"
    r = _cli(
        "hd-predict",
        str(tmp_path / "bag"),
        "--checkpoint",
        str(tmp_path / "run" / "model.pt"),
        "--out",
        str(out),
        "--score-threshold",
        "0",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert len(doc["results"]) == 2 == len(doc["GTs"]) and doc["GTs"][0]["vectors"]
    # a front checkpoint declares the camera's frustum: predictions are clipped to it, and each frame
    # carries it so that hd-eval clips the GT the same way
    assert doc["region"] == "frustum" and all(len(r["region"]) == 1 for r in doc["results"])
    r = _cli("hd-eval", str(out), "--frame", "rep103")
    assert r.returncode == 0, r.stderr
    assert "chamfer" in json.loads(r.stdout) and json.loads(r.stdout)["region_clipped_frames"] == 2
    r = _cli(
        "hd-predict",
        str(tmp_path / "bag"),
        "--checkpoint",
        str(tmp_path / "nope.pt"),
        "--out",
        str(out) + "2",
    )
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    r = _cli("hd-train", "--out", str(tmp_path / "run"), "--steps", "0")
    assert r.returncode == 2 and "--steps" in r.stderr
    _hostile_hd_commands(tmp_path, tmp_path / "bag", tmp_path / "run" / "model.pt", doc, capsys)


def _hostile_hd_commands(tmp_path, bag, model, full, capsys):
    """The commands' hostile inputs (in process: the model and the bag are made once above)."""
    from gs_mapping.cli import main

    def fails(*args, naming):
        capsys.readouterr()
        code = main([*args])
        err = capsys.readouterr()
        assert code == 2 and naming in err.err and len(err.err.strip().splitlines()) == 1, (args, err)
        assert not err.out, args  # refused before any result is printed

    # --max-frames keeps each predicted frame's GT (logged after its images), and must be ≥ 1
    one = tmp_path / "one.json"
    assert main(["hd-predict", str(bag), "--checkpoint", str(model), "--out", str(one), "--max-frames", "1",
                 "--score-threshold", "0", "--no-progress"]) == 0  # fmt: skip
    assert json.loads(one.read_text())["GTs"] == full["GTs"][:1]
    base = ["hd-predict", str(bag), "--checkpoint", str(model), "--no-progress", "--out"]
    cam = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cameras"][0]
    fails(*base, str(tmp_path / "a.json"), "--max-frames", "0", naming="max_frames")
    fails(*base, str(tmp_path / "a.json"), "--score-threshold", "nan", naming="score threshold")
    fails(*base, str(tmp_path / "a.json"), "--cameras", cam, cam, naming="given twice")
    info = cam.rsplit("/", 1)[0] + "/camera_info"
    fails(*base, str(tmp_path / "a.json"), "--cameras", info, naming="not a camera image topic")
    assert not (tmp_path / "a.json").exists()
    # hd-eval: files that are not evaluation JSON, a ring that crosses itself, an output refused first
    pred = tmp_path / "pred.json"
    cases = {
        "binary.json": model.read_bytes()[:4096],
        "deep.json": b"[" * 100000 + b"]" * 100000,
        "huge.json": json.dumps(
            {
                **full,
                "results": [{"vectors": [{"pts": [[0, 0], [1, 1]], "type": 10**400, "confidence_level": 1}]}]
                * len(full["results"]),
            }
        ).encode(),  # fmt: skip
        "ring.json": json.dumps(
            {
                **full,
                "results": [{**r, "region": [[[0, 0], [10, 10], [10, 0], [0, 10]]]} for r in full["results"]],
            }
        ).encode(),  # fmt: skip
    }
    naming = {"binary.json": "not UTF-8", "deep.json": "nested too deeply", "huge.json": "unknown class",
              "ring.json": "not a valid polygon"}  # fmt: skip
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        fails("hd-eval", str(tmp_path / name), naming=naming[name])
    (tmp_path / "kept.json").write_text("keep")
    fails("hd-eval", str(pred), "--out", str(tmp_path / "kept.json"), naming="exists")
    assert (tmp_path / "kept.json").read_text() == "keep"
    # hd-export: a tolerance that is not a number ≥ 0; its check file never takes another's name
    fails("hd-export", "--onnx", str(tmp_path / "m.onnx"), "--checkpoint", str(model), "--tolerance", "nan",
          naming="--tolerance")  # fmt: skip
    (tmp_path / ".m.onnx.check").write_text("someone else's")
    if importlib.util.find_spec("onnx") is None:  # (the numpy 1.26 venv has no onnx: one line, exit 2)
        fails("hd-export", "--onnx", str(tmp_path / "m.onnx"), "--checkpoint", str(model), naming="'onnx'")
        assert (
            not (tmp_path / "m.onnx").exists()
            and (tmp_path / ".m.onnx.check").read_text() == "someone else's"
        )
        return
    assert main(["hd-export", "--onnx", str(tmp_path / "m.onnx"), "--checkpoint", str(model)]) == 0
    assert (tmp_path / ".m.onnx.check").read_text() == "someone else's" and (
        tmp_path / "m.onnx"
    ).stat().st_size
    assert sorted(p.name for p in tmp_path.glob(".m.onnx*")) == [".m.onnx.check"]


def test_predict_bag_on_the_real_kitchen_bag(kitchen_bag, tmp_path):
    """Real recorded bag (rgb8 320x240, CameraInfo, TF base_link -> optical): the reading path works end
    to end (the predictions themselves are meaningless indoors); no GT topic, so no GTs."""
    from gsmap_hd.predict_bag import predict_bag

    cfg = _cfg()
    ckpt = save(tmp_path / "m.pt", GSMapModel(cfg.model), cfg, weights_only=True)
    summary = predict_bag(
        kitchen_bag,
        tmp_path / "p.json",
        checkpoint=ckpt,
        max_frames=2,
        score_threshold=0.0,
        progress=False,
        region="patch",  # unclipped: all 2 x 3 (instance, class) pairs
    )
    doc = json.loads((tmp_path / "p.json").read_text())
    assert summary["cameras"] == ["/camera/color/image_raw"] and summary["frames"] == 2
    assert len(doc["results"]) == 2 and "GTs" not in doc
    assert all(len(f["vectors"]) == 6 for f in doc["results"])


def test_the_recipe_configs_load_and_chain():
    from pathlib import Path

    from gs_mapping.cli.hd_train import config_from_file

    cfg_dir = Path(__file__).resolve().parent.parent / "config"
    front = config_from_file(str(cfg_dir / "hd_front.yaml"))
    ft = config_from_file(str(cfg_dir / "hd_front_finetune.yaml"))
    sur = config_from_file(str(cfg_dir / "hd_surround.yaml"))
    sur2 = config_from_file(str(cfg_dir / "hd_surround_finetune.yaml"))
    assert (front.rig, front.region, front.init_from) == ("front", "frustum", "")
    # stage 2 starts from stage 1 (docs/hd_model.md: --out runs/front), on other worlds, more gently
    assert (ft.rig, ft.region, ft.init_from) == ("front", "frustum", "runs/front/model.pt")
    assert ft.data_seed != front.data_seed and ft.lr < front.lr
    assert (sur.rig, sur.region, sur.init_from) == ("surround", "patch", "runs/front_ft/model.pt")
    assert (sur2.rig, sur2.region, sur2.init_from) == ("surround", "patch", "runs/surround/model.pt")
    assert sur2.data_seed not in (sur.data_seed, ft.data_seed, front.data_seed) and sur2.lr < sur.lr
    assert front.model == ft.model == sur.model == sur2.model  # one architecture: weights carry over
    # the shipped surround model is stage 2 as written (its recorded config, the start aside)
    from dataclasses import replace

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.predict_bag import SHIPPED_SURROUND

    shipped = load_model(SHIPPED_SURROUND)[1]
    keep = dict(device=shipped.device, num_threads=shipped.num_threads)
    assert replace(shipped, **keep) == replace(sur2, **keep)


# -- hostile options, checkpoints and files (a hostile review of the HD commands) ----------------------
@pytest.mark.parametrize(
    "kw, field",
    [
        ({"lr": float("nan")}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"data_seed": -1}, "data_seed"),
        ({"log_every": 0}, "log_every"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"augment_flip": 5.0}, "augment_flip"),
        ({"augment_color": float("nan")}, "augment_color"),
        ({"loss": {**TINY_LOSS, "raster_weight": float("nan")}}, "raster_weight"),
        ({"model": {**TINY, "x_range": [float("nan"), 30.0]}}, "x_range"),
        ({"model": {**TINY, "image_size": [-4, 0]}}, "image_size"),
    ],
)
def test_every_number_of_a_training_config_is_checked(kw, field):
    """From a file (from_dict) and from an option (dataclasses.replace): one ConfigError naming the
    field, before anything is trained or written."""
    import dataclasses

    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        _cfg(**kw)
    if "model" not in kw and "loss" not in kw:
        with pytest.raises(ConfigError, match=field):
            dataclasses.replace(_cfg(), **kw)


def test_a_diverging_run_stops_and_keeps_its_checkpoints(tmp_path, monkeypatch):
    """The loss turns NaN at step 3 of a resumed run: training stops with one error, and last.pt
    and model.pt stay the step-2 files (a NaN checkpoint never replaces them)."""
    from gsmap_hd import train as train_mod
    from gsmap_hd.errors import HDDataError

    train(_cfg(steps=2), tmp_path, progress=False)
    before = {n: (tmp_path / n).read_bytes() for n in ("last.pt", "model.pt")}
    real = train_mod.GSMapCriterion.__call__

    def poisoned(self, out, targets, step):
        losses = real(self, out, targets, step)
        if step >= 2:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(train_mod.GSMapCriterion, "__call__", poisoned)
    with pytest.raises(HDDataError, match="diverged.*step 3"):
        train(_cfg(steps=4), tmp_path, resume=True, progress=False)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    # weights that became non-finite in the update before a checkpoint are caught before it is written
    monkeypatch.setattr(train_mod.GSMapCriterion, "__call__", real)
    real_step, calls = torch.optim.AdamW.step, []

    def blow_up(self, *a, **k):
        real_step(self, *a, **k)
        calls.append(1)
        if len(calls) == 2:  # the update of step 4, whose end writes a checkpoint
            with torch.no_grad():
                self.param_groups[1]["params"][0].fill_(float("inf"))

    monkeypatch.setattr(torch.optim.AdamW, "step", blow_up)
    with pytest.raises(HDDataError, match="diverged"):
        train(_cfg(steps=4), tmp_path, resume=True, progress=False)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def test_checkpoint_structure_and_weights_are_checked(tmp_path):
    cfg = _cfg()
    path = save(tmp_path / "m.pt", GSMapModel(cfg.model), cfg, step=3)
    good = torch.load(path, weights_only=True)
    first = next(iter(good["model"]))
    cases = {
        "no model": ({k: v for k, v in good.items() if k != "model"}, "without its weights"),
        "model 5": ({**good, "model": 5}, "without its weights"),
        "not tensors": ({**good, "model": {first: [1.0]}}, "without its weights"),
        "step text": ({**good, "step": "abc"}, "'step' is not a int"),
        "extra list": ({**good, "extra": [1]}, "'extra' is not a dict"),
        "NaN weight": (
            {**good, "model": {**good["model"], first: good["model"][first] * float("nan")}},
            f"weight '{first}' has .* non-finite",
        ),
        "missing key": (
            {**good, "model": {k: v for k, v in good["model"].items() if k != first}},
            f"do not fit.*{first}",
        ),
    }
    for name, (state, match) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.pt"
        torch.save(state, bad)
        with pytest.raises(CheckpointError, match=match):
            load_model(bad)
        if name != "missing key":  # (resume reads the state with the same checks)
            run = tmp_path / f"run_{name.replace(' ', '_')}"
            run.mkdir()
            (run / "last.pt").write_bytes(bad.read_bytes())
            with pytest.raises(CheckpointError):
                train(_cfg(), run, resume=True, progress=False)


def test_a_failed_run_leaves_its_directory_as_it_was(tmp_path):
    """A run refused before training (a bad --init-from) writes nothing: an existing run keeps its
    config.json, a new one is not created; an --out that is a file is refused."""
    from gsmap_hd.errors import HDDataError

    train(_cfg(steps=2), tmp_path / "run", progress=False)
    before = {n: (tmp_path / "run" / n).read_bytes() for n in ("config.json", "last.pt", "model.pt")}
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for out in ("run", "new"):
        with pytest.raises(CheckpointError):
            train(
                _cfg(steps=7, init_from=str(tmp_path / "junk.pt")),
                tmp_path / out,
                progress=False,
                overwrite=True,
            )
    # a second run into a trained one, neither resumed nor overwriting: refused, the run kept
    with pytest.raises(HDDataError, match="holds a run already.*--overwrite"):
        train(_cfg(steps=2), tmp_path / "run", progress=False)
    assert {n: (tmp_path / "run" / n).read_bytes() for n in before} == before
    assert not (tmp_path / "new").exists()
    with pytest.raises(HDDataError, match="not a run directory"):
        train(_cfg(), tmp_path / "junk.pt", progress=False)
