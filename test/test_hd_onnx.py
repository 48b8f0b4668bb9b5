"""The GSMap network exported as ONNX (deformable attention and camera lifting as GridSample) and run by
onnxruntime gives torch's outputs on world frames and on the real camera frames in ../shared/data."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gsmap_hd.checkpoint import load_model
from gsmap_hd.errors import CheckpointError
from gsmap_hd.onnx_export import OnnxModel, compare_on_bag, compare_on_world, export_onnx
from gsmap_hd.predict_bag import SHIPPED

TOL = 1e-4  # logits; x/y relative to the patch, sx/sy to the scale range; θ radians


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, cfg, _ = load_model(SHIPPED)
    path = export_onnx(model, cfg, tmp_path_factory.mktemp("onnx") / "gsmap.onnx")
    return model, cfg, path


def test_onnx_equals_torch_on_world_frames(exported):
    model, cfg, path = exported
    # the export leaves the caller's model as it was: in eval mode (BatchNorm on running statistics)
    assert not any(m.training for m in model.modules())
    d = compare_on_world(model, cfg, path, frames=2)
    assert d["max_normalised"] < TOL, d
    assert d["xy_m"] < 2e-3  # metres: float32 rounding on a 60 m patch


def test_onnx_takes_any_batch_and_camera_count(exported):
    model, _, path = exported
    h, w = model.cfg.image_size
    g = torch.Generator().manual_seed(0)
    im = torch.rand(2, 3, 3, h, w, generator=g)
    K = torch.tensor([[150.0, 0, (w - 1) / 2], [0, 150.0, (h - 1) / 2], [0, 0, 1]]).expand(2, 3, 3, 3)
    T = torch.eye(4).repeat(2, 3, 1, 1)
    T[..., :3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    T[..., 2, 3] = 1.5
    out = OnnxModel(path)(im, K, T)
    with torch.no_grad():
        ref = model(im, K, T)
    assert out["logits"][0].shape == ref["logits"][-1].shape == (2, model.cfg.num_instances, 3)
    assert (out["logits"][0] - ref["logits"][-1]).abs().max() < TOL


@pytest.mark.parametrize("name", ["7scenes_kitchen_rgbd", "realsense_kitchen_rgbd"])
def test_onnx_equals_torch_on_real_camera_frames(exported, shared_data, name):
    model, _, path = exported
    d = compare_on_bag(model, OnnxModel(path), shared_data / name, max_frames=2)
    assert d["frames"] == 2
    assert d["max_normalised"] < TOL, d


def test_bad_onnx_files_are_named(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bad.onnx"):
        OnnxModel(bad)
    with pytest.raises(CheckpointError, match="not found"):
        OnnxModel(tmp_path / "missing.onnx")


def test_hd_export_cli(tmp_path):
    def cli(*a):
        return subprocess.run(
            [sys.executable, "-m", "gs_mapping", "hd-export", *a], capture_output=True, text=True, timeout=300
        )

    out = tmp_path / "m.onnx"
    r = cli("--onnx", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 100_000 and "max_normalised" in r.stdout
    before = out.read_bytes()
    r = cli("--onnx", str(out))
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == before  # nothing good lost
    r = cli("--onnx", str(tmp_path / "x.onnx"), "--checkpoint", str(tmp_path / "nope.pt"))
    assert r.returncode == 2 and "nope.pt" in r.stderr and not (tmp_path / "x.onnx").exists()
    r = cli("--onnx", "/proc/x.onnx")  # a place nothing can be written: the line names it
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "/proc/x.onnx: cannot write: no such file or directory"
    )
