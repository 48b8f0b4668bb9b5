"""CPU backend vs gsplat on the same scene (only where a CUDA GPU and gsplat are available)."""

from __future__ import annotations

import pytest
import torch

from gs_mapping.render.cuda import gsplat_available

pytestmark = pytest.mark.skipif(not gsplat_available(), reason="needs a CUDA GPU and gsplat")


def test_cpu_matches_gsplat():
    from test_render_cpu import K_for, random_scene

    from gs_mapping.render import rasterize

    params, view = random_scene(4, n=400, sh_degree=3, dtype=torch.float32)
    K = K_for(160, 120, torch.float32)
    bg = torch.tensor([0.1, 0.2, 0.3])
    cpu = rasterize(*params, view, K, 160, 120, backend="cpu", background=bg)
    gpu = rasterize(
        *[p.cuda() for p in params], view.cuda(), K.cuda(), 160, 120, backend="cuda", background=bg.cuda()
    )
    for name in ("color", "alpha"):
        diff = (getattr(cpu, name) - getattr(gpu, name).cpu()).abs().mean().item()
        assert diff <= 1e-3, (name, diff)
    mask = cpu.alpha > 0.5
    assert (cpu.depth[mask] - gpu.depth.cpu()[mask]).abs().mean().item() <= 1e-3
