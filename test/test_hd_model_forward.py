"""Model forward for 1 and 6 cameras, geometric lifting, deformable attention, training step."""

import numpy as np
import pytest
import torch
from hd_tiny import tiny_config

from gsmap_hd.bev import bev_points, lift
from gsmap_hd.data import collate
from gsmap_hd.decoder import DeformableAttention
from gsmap_hd.gaussians2d import BEVGrid
from gsmap_hd.losses import GSMapCriterion
from gsmap_hd.model import GSMapModel, count_parameters
from gsmap_hd.model_config import LossConfig, paper
from gsmap_hd.synthetic import camera_rig, generate

torch.set_num_threads(1)
TINY = tiny_config()
TINY_LOSS = LossConfig(raster_res=1.5, iou_cost_res=3.0)


def _inputs(rig: str, b: int = 1):
    K, T = camera_rig(rig, 64, 32)
    n = len(K)
    return (
        torch.rand(b, n, 3, 32, 64),
        torch.tensor(K, dtype=torch.float32).expand(b, n, 3, 3),
        torch.tensor(T, dtype=torch.float32).expand(b, n, 4, 4),
    )


@pytest.mark.parametrize("rig,n", [("front", 1), ("surround", 6)])
def test_forward_shapes(rig, n):
    torch.manual_seed(0)
    model = GSMapModel(TINY).eval()
    im, K, T = _inputs(rig, b=2)
    assert im.shape[1] == n
    with torch.no_grad():
        out = model(im, K, T)
    assert len(out["logits"]) == TINY.num_layers
    assert out["logits"][-1].shape == (2, 6, 3)
    p = out["params"][-1]
    assert p.shape == (2, 6, 6, 5) and torch.isfinite(p).all()
    assert (p[..., 0].abs() <= 30).all() and (p[..., 1].abs() <= 15).all()
    assert (p[..., 2:4] >= TINY.scale_min).all() and (p[..., 2:4] <= TINY.scale_max).all()


def test_wrong_image_size_is_refused():
    model = GSMapModel(TINY)
    im, K, T = _inputs("front")
    with pytest.raises(ValueError, match="the model takes"):
        model(im[..., :16, :], K, T)


def test_lifting_places_a_ground_feature_where_the_camera_sees_it():
    """A bright pixel in a 1-channel 'feature map' lands at the BEV cell that projects onto it."""
    K, T = camera_rig("front", 64, 32)
    K, T = torch.tensor(K, dtype=torch.float32), torch.tensor(T, dtype=torch.float32)
    ground = torch.tensor([12.0, -3.0, 0.0])
    pc = torch.linalg.inv(T[0]) @ torch.cat([ground, torch.ones(1)])
    uv = K[0] @ pc[:3] / pc[2]
    feat = torch.zeros(1, 1, 1, 32, 64)
    feat[..., int(round(float(uv[1]))), int(round(float(uv[0])))] = 1.0
    grid = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 60, 30)
    bev = lift(feat, K[None], T[None], (32, 64), bev_points(grid, torch.tensor([0.0])))[0, 0]
    r, c = np.unravel_index(int(bev.argmax()), bev.shape)
    x, y = grid.pixel_centres()[r, c].tolist()
    assert abs(x - 12.0) < 3.0 and abs(y + 3.0) < 1.5
    assert bev[grid.pixel_centres()[..., 0] < 0].abs().max() == 0  # behind the front camera: nothing


def test_deformable_attention_reads_the_reference_location():
    """Zero offsets and a constant value projection: the output is the BEV value at the reference."""
    att = DeformableAttention(8, 2, 1)
    with torch.no_grad():
        att.offsets.bias.zero_()
        att.value.weight.copy_(torch.eye(8))
        att.out.weight.copy_(torch.eye(8))
    bev = torch.zeros(1, 8, 10, 10)
    bev[0, :, 2, 7] = 1.0  # row 2 (front part), col 7 (right part)
    g = BEVGrid((0.0, 10.0), (0.0, 10.0), 10, 10)
    uv = g.normalize(g.pixel_centres()[2, 7])[None, None]
    out = att(torch.zeros(1, 1, 8), uv, bev)
    assert torch.allclose(out, torch.ones(1, 1, 8), atol=1e-5)


def test_one_training_step_decreases_the_loss():
    torch.manual_seed(0)
    model = GSMapModel(TINY)
    crit = GSMapCriterion(TINY, TINY_LOSS)
    batch = collate([generate(i, "front", 64, 32) for i in range(2)], TINY, TINY_LOSS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        out = model(*batch[:3])
        loss = crit(out, batch[3])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_surround_batch_trains():
    """Six cameras: every camera's image reaches the loss (a camera dropped from the BEV lifting has a
    zero gradient), and a few steps on the batch lower the loss."""
    torch.manual_seed(0)
    model = GSMapModel(TINY)
    crit = GSMapCriterion(TINY, TINY_LOSS)
    batch = collate([generate(3, "surround", 64, 32)], TINY, TINY_LOSS)
    images = batch[0].clone().requires_grad_(True)
    assert images.shape[:2] == (1, 6)
    model.eval()  # batch-norm statistics would couple the cameras' gradients
    loss = crit(model(images, *batch[1:3]), batch[3])["loss"]
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    per_camera = images.grad.abs().flatten(2).sum(-1)[0]
    assert (per_camera > 1e-3 * per_camera.max()).all(), f"cameras without gradient: {per_camera.tolist()}"
    model.train()
    model.zero_grad()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = crit(model(*batch[:3]), batch[3])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_paper_config_is_paper_sized():
    cfg = paper().model
    assert (cfg.num_instances, cfg.num_points, cfg.num_layers, cfg.bev_h, cfg.bev_w) == (50, 20, 6, 200, 100)
    model = GSMapModel(cfg)
    n = count_parameters(model)
    assert 23e6 < n["backbone"] < 26e6  # ResNet-50 body ~23.5 M + projection


def test_overfits_one_tiny_batch():
    """Sanity: on one synthetic frame the vector loss falls several-fold and the top predictions take
    the GT classes (the ≥ 0.95 Chamfer mAP overfit on world frames is in bench/hd.py)."""
    torch.manual_seed(0)
    m = tiny_config()
    loss_cfg = LossConfig(raster_res=1.5, iou_cost_res=3.0, raster_warmup_steps=40)
    model = GSMapModel(m)
    crit = GSMapCriterion(m, loss_cfg)
    sample = generate(11, "front", 64, 32)
    batch = collate([sample], m, loss_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for step in range(80):
        out = crit(model(*batch[:3]), batch[3], step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["pts"])
    assert float(out["pts"]) < first / 3
    model.eval()
    with torch.no_grad():
        logits = model(*batch[:3])["logits"][-1][0]
    n = batch[3][0].labels.numel()
    top = logits.sigmoid().max(1).values.topk(n).indices
    assert sorted(logits[top].argmax(1).tolist()) == sorted(batch[3][0].labels.tolist())
