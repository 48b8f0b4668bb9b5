"""Outside review of issue 18 (GSMap that holds up), run by run and as deployed: a training run
interrupted and resumed against the same run made in one go (docs/hd_model.md: ``train.py`` "exact
resume"; the recipe's own history resumes runs), ``hd-train --resume`` as the docs write it after a
recipe run, and the ONNX export run by onnxruntime against torch on a batch of different rigs.

Each test says what independent thing it compares with: a straight run of the same config and seed
(what "exact resume" promises), the recipe YAML a run was started with, the documented warm-up +
cosine schedule computed by hand, and the torch model run one frame at a time."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hd_model_train import TINY, _cfg  # the suite's tiny model on flat roads

from gsmap_hd import checkpoint as ckpt
from gsmap_hd.checkpoint import load_model
from gsmap_hd.train import train

torch.set_num_threads(1)


class _Killed(Exception):
    """Stands in for the process being killed (Ctrl-C, the OOM killer, pre-emption)."""


def _run(out: Path, kill_after_checkpoint: int | None = None, resume: bool = False, monkeypatch=None, **kw):
    """``train`` of ``_cfg(**kw)`` into ``out``; with ``kill_after_checkpoint`` the run dies right
    after ``last.pt`` of that step is on disk (the real save, then the kill)."""
    if kill_after_checkpoint is not None:
        real = ckpt.save

        def save(path, model, cfg, step=0, *a, **k):
            p = real(path, model, cfg, step, *a, **k)
            if Path(path).name == "last.pt" and step == kill_after_checkpoint:
                raise _Killed()
            return p

        monkeypatch.setattr(ckpt, "save", save)
    try:
        return train(_cfg(**kw), out, resume=resume, progress=False)
    except _Killed:
        return None
    finally:
        if kill_after_checkpoint is not None:
            monkeypatch.undo()


def _losses(run: Path) -> list[tuple[int, float]]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if "loss" in r]


def _max_weight_difference(a: Path, b: Path) -> float:
    ma, _, _ = load_model(a / "last.pt")
    mb, _, _ = load_model(b / "last.pt")
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


# the schedule out of its warm-up (warmup_steps 1): the cosine decides the lr of every step, so a
# resumed run that used other learning rates than the straight one would show (the suite's own
# resume test runs 4 steps inside a 50-step warm-up)
RUN = dict(steps=6, warmup_steps=1, eval_every=0)


def test_a_run_killed_after_a_checkpoint_and_resumed_logs_what_the_straight_run_logs(tmp_path, monkeypatch):
    """docs/hd_model.md: ``train.py`` has an "exact resume" and logs ``metrics.jsonl``; the recipe's
    own stage 1 was "paused at step 1,690 … then resumed". The yardstick is the same config and
    seed run straight through: 6 steps, a log line every 2 steps (the mean loss of those 2 steps),
    a checkpoint every 3. The second run is killed right after its step-3 checkpoint and resumed
    with the same config. Its weights equal the straight run's (checked: batches are a function of
    the step), and so must its log: the line of step 4 is the mean of steps 3 and 4 in the straight
    run, but the resumed run lost step 3's share with the process and logs step 4 alone."""
    kw = dict(RUN, log_every=2, checkpoint_every=3)
    _run(tmp_path / "straight", **kw)
    _run(tmp_path / "resumed", kill_after_checkpoint=3, monkeypatch=monkeypatch, **kw)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["step"] == 3
    _run(tmp_path / "resumed", resume=True, **kw)
    assert _max_weight_difference(tmp_path / "straight", tmp_path / "resumed") < 1e-5
    a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert [s for s, _ in b] == [s for s, _ in a] and 4 in [s for s, _ in a]
    for (step, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, rel=1e-5), f"step {step}: straight {la}, resumed {lb}"


def test_a_resumed_run_with_dropout_equals_the_straight_run(tmp_path, monkeypatch):
    """``ModelConfig.dropout`` is a checked field (0 … 0.99) used by the decoder's attention and FFN
    (nn.Dropout draws from torch's global generator). "Exact resume" must then hold with dropout as
    without: the same config and seed, 6 steps straight against 3 + a kill + resume, weights equal
    within float noise (without dropout they are equal to 0.0 here). The resumed process starts
    with ``torch.manual_seed(cfg.seed)`` and last.pt holds no generator state, so steps 4–6 draw the
    masks steps 1–3 drew."""
    kw = dict(RUN, log_every=3, checkpoint_every=3, model={**TINY, "dropout": 0.2})
    _run(tmp_path / "straight", **kw)
    _run(tmp_path / "resumed", kill_after_checkpoint=3, monkeypatch=monkeypatch, **kw)
    _run(tmp_path / "resumed", resume=True, **kw)
    assert _max_weight_difference(tmp_path / "straight", tmp_path / "resumed") < 1e-5


def _lr_factor_by_hand(step: int, steps: int, warmup: int) -> float:
    """docs/hd_model.md's schedule: linear warm-up, then cosine to 0.1 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(1, steps - warmup), 1.0)
    return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * t))


def test_a_learning_rate_given_on_resume_is_the_one_used_or_refused(tmp_path, monkeypatch):
    """``hd-train --lr`` on a ``--resume``: the run's config (config.json, last.pt's config, which
    ``describe_training`` and fine-tuning read later) then says lr 0.01. Either the resume refuses
    the change in one line, or the steps after it use it: the lr that metrics.jsonl logs after step
    s is lr × the documented schedule at s (warm-up 1, cosine over 6 steps), computed here by hand.
    (``--steps`` on resume is applied this way: the cosine is recomputed, docs/hd_model.md.) Today
    the resumed steps log 6e-4's schedule under a config that says 0.01."""
    from gs_mapping.errors import GsMappingError

    kw = dict(RUN, log_every=1, checkpoint_every=3)
    _run(tmp_path / "run", kill_after_checkpoint=3, monkeypatch=monkeypatch, **kw)
    try:
        _run(tmp_path / "run", resume=True, **{**kw, "lr": 1e-2})
    except GsMappingError as exc:  # refused: one line naming lr is as good
        assert "lr" in str(exc) and "\n" not in str(exc)
        return
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["lr"]
    assert recorded == 1e-2
    logged = {
        r["step"]: r["lr"]
        for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
        if "lr" in r
    }
    for step in (4, 5):
        assert logged[step] == pytest.approx(recorded * _lr_factor_by_hand(step, 6, 1), rel=1e-6), (
            step,
            logged[step],
        )


def test_hd_train_resume_without_config_continues_the_run_it_resumes(tmp_path, monkeypatch):
    """docs/hd_model.md, Use: ``gs-mapping hd-train --out runs/hd --resume  # continue from
    runs/hd/last.pt``; the recipe runs are started with ``--config config/hd_front.yaml`` (or
    ``hd_surround.yaml``: another rig, batch, lr, region). A run started from a YAML (the small
    model, so the model-config check on resume passes, flat roads, region ``patch``, mirror
    augmentation 0.5, batch 1, lr 1e-3) is killed after its first checkpoint and resumed as the docs
    write it, with only ``--steps``/``--frames`` given. The yardstick is the YAML the run was
    started with: what the resumed run records (last.pt's config, config.json) and trains on must
    be those values, except the options given; or the resume is refused in one line. Today it
    silently continues on the preset's world data, ``auto`` region, no augmentation, batch 4 and lr
    6e-4 (for hd_surround.yaml: on the front camera)."""
    from gs_mapping.cli import main

    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(
        "/**:\n  ros__parameters:\n    hd_train:\n"
        "      data: flat\n      rig: front\n      region: patch\n      augment_flip: 0.5\n"
        "      batch_size: 1\n      lr: 0.001\n      warmup_steps: 1\n      train_frames: 2\n"
        "      steps: 2\n      checkpoint_every: 1\n      log_every: 1\n      eval_every: 0\n"
    )
    out = tmp_path / "run"
    base = ["hd-train", "--out", str(out), "--threads", "1", "--no-progress"]
    real = ckpt.save

    def save(path, model, cfg, step=0, *a, **k):
        p = real(path, model, cfg, step, *a, **k)
        if Path(path).name == "last.pt" and step == 1:
            raise _Killed()
        return p

    monkeypatch.setattr(ckpt, "save", save)
    with pytest.raises(_Killed):
        main([*base, "--config", str(yaml_file)])
    monkeypatch.undo()
    started = ckpt.config_of(ckpt.load_state(out / "last.pt"), out / "last.pt")
    assert (started.data, started.region, started.batch_size) == ("flat", "patch", 1)

    rc = main([*base, "--resume", "--steps", "2", "--frames", "2"])
    if rc == 2:  # refused (one line on stderr): as good as continuing the run as it was
        return
    assert rc in (0, None)
    state = ckpt.load_state(out / "last.pt")
    assert state["step"] == 2
    resumed = ckpt.config_of(state, out / "last.pt")
    recorded = json.loads((out / "config.json").read_text())
    for field in ("data", "rig", "region", "augment_flip", "batch_size", "lr", "warmup_steps"):
        assert getattr(resumed, field) == getattr(started, field), (field, getattr(resumed, field))
        assert recorded[field] == getattr(started, field), field


def test_onnx_runs_a_batch_of_different_rigs_as_torch_runs_each_frame_alone(tmp_path):
    """The exported graph (``export_onnx``, what ``hd-export --onnx`` writes) under onnxruntime,
    against the torch model run one frame at a time: a batch of 3 frames of the six-camera model,
    every camera of every frame with its own focal length, principal point, yaw, height and offset
    (one frame's cameras all looking at the sky: no BEV cell is seen), at 1 and 6 cameras. The
    suite compares batches whose frames share K and T; a graph that traced a batch- or camera-sized
    constant, or mixed frames of a batch (a reshape over B·N), gives each frame another frame's
    output here. Tolerance: the docs' 1e-4 (logits; x, y over the patch; sx, sy over their range)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from gsmap_hd.onnx_export import OnnxModel, export_onnx, output_difference
    from gsmap_hd.predict_bag import SHIPPED_SURROUND

    model, cfg, _ = load_model(SHIPPED_SURROUND)
    om = OnnxModel(export_onnx(model, cfg, tmp_path / "surround.onnx"))
    h, w = model.cfg.image_size
    g = np.random.default_rng(7)
    base_R = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # optical z forward along base x
    sky_R = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])  # columns: camera x, y, z; optical axis up
    for B, N in ((3, 1), (3, 6)):
        im = torch.from_numpy(g.random((B, N, 3, h, w), dtype=np.float32))
        K = torch.zeros(B, N, 3, 3)
        T = torch.eye(4).repeat(B, N, 1, 1)
        for b in range(B):
            for n in range(N):
                f = g.uniform(80, 300)
                K[b, n] = torch.tensor(
                    [[f, 0, (w - 1) / 2 + g.normal(0, 8)], [0, f, (h - 1) / 2 + g.normal(0, 4)], [0, 0, 1]]
                )
                yaw = g.uniform(-np.pi, np.pi)
                Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
                R = Rz @ base_R if b != 1 else sky_R
                T[b, n, :3, :3] = torch.from_numpy(R).float()
                T[b, n, :3, 3] = torch.tensor([g.normal(0, 1), g.normal(0, 0.3), g.uniform(1.2, 2.2)])
        assert torch.allclose(torch.det(T[..., :3, :3]), torch.ones(B, N), atol=1e-5)
        out = om(im, K, T)
        for b in range(B):
            with torch.no_grad():
                ref = model(im[b : b + 1], K[b : b + 1], T[b : b + 1])
            mine = {"logits": [out["logits"][0][b : b + 1]], "params": [out["params"][0][b : b + 1]]}
            d = output_difference(model.cfg, ref, mine)
            assert d["max_normalised"] < 1e-4, (B, N, b, d)


def test_resume_with_fewer_steps_than_the_checkpoint_is_refused_or_labels_its_weights_truly(tmp_path):
    """The recipe's history resumes runs with another ``--steps`` (docs/hd_model.md: "resumed at step
    300 with --steps 2400 and at step 400 with --steps 1900"); a number below the checkpoint's step
    is an easy slip. The yardstick is the checkpoint itself: last.pt says step 4 (torch.load). What
    the run then writes must say what it holds: either the resume is refused in one line (nothing
    to train), or model.pt's step is the 4 steps its weights were trained, not the 2 asked for;
    ``describe_training`` and ``hd_map_node``'s start log read that step."""
    from gs_mapping.errors import GsMappingError

    out = tmp_path / "run"
    train(_cfg(steps=4, checkpoint_every=2, eval_every=0), out, progress=False)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    before = (out / "model.pt").read_bytes()
    try:
        train(_cfg(steps=2, checkpoint_every=2, eval_every=0), out, resume=True, progress=False)
    except GsMappingError as exc:
        assert "\n" not in str(exc) and (out / "model.pt").read_bytes() == before
        return
    final = torch.load(out / "model.pt", weights_only=True)
    trained, _, _ = load_model(out / "last.pt")
    written, _, _ = load_model(out / "model.pt")
    assert all(
        torch.allclose(a.float(), b.float(), atol=1e-2)
        for a, b in zip(trained.state_dict().values(), written.state_dict().values(), strict=True)
    )  # the weights are last.pt's (step 4) ...
    assert final["step"] == 4  # ... and so must the label be


def test_hd_eval_chamfer_ap_equals_a_hand_computation(tmp_path, capsys):
    """MapTR's Chamfer AP (docs: thresholds 0.5 / 1.0 / 1.5 m; predictions ranked by score, each
    matched greedily to the unmatched GT of lowest Chamfer distance under the threshold; VOC
    all-point ("area") AP; mAP over the three classes, a class without GT counting 0) worked by hand.
    Parallel straight dividers of the same extent are at a Chamfer distance equal to their offset,
    whatever the resampling. GT: dividers at x = 0 and x = 5 (MapTR's frame: x right, y forward),
    y from 0 to 10. Predictions: x = 0.3 (score 0.9, 0.3 m from the first), x = 1.2 (0.8; 1.2 m from
    the first, already taken), x = 5.7 (0.7; 0.7 m from the second), x = 2.5 (0.6; 2.5 m from both).
    At 0.5 m: TP FP FP FP, recall 1/2 at precision 1: AP 0.5. At 1.0 and 1.5 m: TP FP TP FP,
    recalls ½, ½, 1, 1 with precisions 1, ½, ⅔, ½: AP ½·1 + ½·⅔ = ⅚. Divider AP (0.5 + ⅚ + ⅚)/3,
    mAP a third of it."""
    from gs_mapping.cli import main

    def line(x, score=None):
        v = {"pts": [[x, 0.0], [x, 10.0]], "type": 0}
        if score is not None:
            v["confidence_level"] = score
        return v

    doc = {
        "results": [{"vectors": [line(0.3, 0.9), line(1.2, 0.8), line(5.7, 0.7), line(2.5, 0.6)]}],
        "GTs": [{"vectors": [line(0.0), line(5.0)]}],
    }
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(doc))
    assert main(["hd-eval", str(path), "--no-raster"]) == 0
    res = json.loads(capsys.readouterr().out)["chamfer"]
    assert res["thresholds"] == [0.5, 1.0, 1.5]
    div = [row[0] for row in res["ap"]]
    assert div == pytest.approx([0.5, 5 / 6, 5 / 6], abs=1e-5)
    assert res["mAP"] == pytest.approx((0.5 + 5 / 6 + 5 / 6) / 3 / 3, abs=1e-5)


def test_a_run_killed_while_writing_its_checkpoint_resumes_from_the_one_before(tmp_path, monkeypatch):
    """A kill (Ctrl-C, the OOM killer) half-way through writing last.pt: torch.save has put half of
    the step-4 checkpoint's bytes on disk when the process dies. docs/hd_model.md: "atomic
    ``last.pt``, exact resume". The yardstick is torch.load itself and a straight run of the same
    config: the folder then holds the step-2 checkpoint whole (no partial file under its name, no
    temp left behind), and ``--resume`` from it ends with the straight run's weights (to 0) and the
    same loss lines (step 4 was logged before the kill: logged once, not twice)."""

    class Kill(BaseException):
        pass

    kw = dict(RUN, log_every=2, checkpoint_every=2)
    _run(tmp_path / "straight", **kw)
    real = torch.save

    def half_written(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("step") == 4 and "optimizer" in obj:
            buf = io.BytesIO()
            real(obj, buf)
            data = buf.getvalue()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2])
            raise Kill()
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(Kill):
        _run(tmp_path / "resumed", **kw)
    monkeypatch.undo()
    run = tmp_path / "resumed"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "last.pt", "metrics.jsonl"]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    _run(run, resume=True, **kw)
    assert _max_weight_difference(tmp_path / "straight", run) == 0.0
    a, b = _losses(tmp_path / "straight"), _losses(run)
    assert [s for s, _ in b] == [s for s, _ in a] and 4 in [s for s, _ in a]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=1e-6)


def test_an_onnx_export_given_as_a_checkpoint_is_named_as_one(tmp_path, capsys):
    """Deploying for a Jetson (docs/hd_model.md) a user holds ``model.pt`` and ``model.onnx``; giving
    the ONNX file where a checkpoint goes (``hd_map_node.checkpoint`` instead of ``onnx_model``,
    ``hd-predict --checkpoint``) is the slip to expect. The onnx library reads the file as a valid
    model (the yardstick of what it is), and torch.load with ``weights_only=False`` fails on it
    ("invalid load key"): the error must not advise that, and should say the file is an ONNX model."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from gs_mapping.cli import main
    from gsmap_hd.errors import CheckpointError

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), path)
    onnx.checker.check_model(onnx.load(path))  # an ONNX model, as onnx reads it
    with pytest.raises(Exception, match="load key"):  # what the advice would give
        torch.load(path, map_location="cpu", weights_only=False)

    with pytest.raises(CheckpointError) as exc:
        load_model(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert "weights_only" not in msg, msg
    assert "onnx" in msg.lower().replace(str(path).lower(), ""), msg
    assert main(["hd-export", "--onnx", str(tmp_path / "out.onnx"), "--checkpoint", str(path)]) == 2
    assert "weights_only" not in capsys.readouterr().err


def _clip_to_region(vectors: list[dict], region: list) -> list[dict]:
    """Each vector cut to the frame's region by shapely (lines: every run inside its own element, as
    MapTR clips to its patch; crossings: each part's outline), scored 1.0."""
    from shapely.geometry import LineString, Polygon
    from shapely.ops import unary_union

    def polygon(part):  # docs: one ring [[x, y], …] per part, [ring, hole, …] for a part with holes
        return Polygon(part) if isinstance(part[0][0], (int, float)) else Polygon(part[0], part[1:])

    area = unary_union([polygon(part) for part in region])
    out = []
    for v in vectors:
        pts = np.asarray(v["pts"], float)
        if v["type"] == 1:
            g = Polygon(pts).intersection(area)
            parts = [
                p.exterior for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and not p.is_empty
            ]
        else:
            g = LineString(pts).intersection(area)
            parts = [p for p in getattr(g, "geoms", [g]) if p.geom_type == "LineString" and not p.is_empty]
        out += [
            {"pts": np.asarray(p.coords).tolist(), "type": v["type"], "confidence_level": 1.0} for p in parts
        ]
    return out


def test_a_long_range_checkpoint_is_scored_against_ground_truth_over_its_patch(tmp_path, capsys):
    """docs/hd_model.md: "A config may set another patch (model.x_range, y_range): training and its
    evaluation then take the ground truth … over that patch". A long-range model (x ±50 m, y ±25
    m, the six-camera rig: region ``patch``) run by ``hd-predict`` on a drive recorded with
    ``gs-mapping world`` as the docs' Use section does (default ``--bev-range 30 15``), then
    ``hd-eval``. The yardstick is the world itself: the same seed recorded with ``--bev-range 50
    25`` gives the true lanes over the model's patch; put in as the predictions (clipped by shapely
    to the region the file declares, score 1), they must score as the true map does on the short
    patch (AP 1 for each class present) — or hd-predict must refuse the mismatch (exit 2). Today
    the file's region is the ±50 m patch, its GT stops at 30 m, and the true map scores 0."""
    from gs_mapping.bag import BagReader
    from gs_mapping.cli import main
    from gsmap_hd.checkpoint import save
    from gsmap_hd.model import GSMapModel

    bags = {}
    for x, y in ((30, 15), (50, 25)):
        bags[x] = tmp_path / f"drive_{x}"
        world = ["world", "--out", str(bags[x]), "--frames", "1", "--rig", "surround", "--size", "64x32"]
        assert main([*world, "--bev-range", str(x), str(y), "--workers", "1", "--no-progress"]) == 0
    torch.manual_seed(0)
    cfg = _cfg(
        model={**TINY, "x_range": [-50.0, 50.0], "y_range": [-25.0, 25.0]}, rig="surround", region="patch"
    )
    save(tmp_path / "long.pt", GSMapModel(cfg.model), cfg, 1, weights_only=True)
    pred = tmp_path / "pred.json"
    rc = main(["hd-predict", str(bags[30]), "--checkpoint", str(tmp_path / "long.pt"), "--out", str(pred)])
    capsys.readouterr()
    if rc == 2:  # refused: the bag's GT does not cover the model's patch
        return
    assert rc in (0, None)
    doc = json.loads(pred.read_text())
    with BagReader(bags[50]) as bag:
        true = {
            json.loads(m.data)["stamp_ns"]: json.loads(m.data)["vectors"]
            for _, _, m in bag.messages(["/ground_truth/lanes_json"])
        }
    present = set()
    for fr in doc["results"]:
        fr["vectors"] = _clip_to_region(true[fr["stamp_ns"]], fr["region"])
        present |= {v["type"] for v in fr["vectors"]}
    assert present
    pred.write_text(json.dumps(doc))
    assert main(["hd-eval", str(pred), "--no-raster"]) == 0
    ap = json.loads(capsys.readouterr().out)["chamfer"]["ap"]
    for c in sorted(present):
        assert [row[c] for row in ap] == pytest.approx([1.0, 1.0, 1.0]), (c, ap)
