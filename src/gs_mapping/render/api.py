"""``rasterize`` (tensors in, differentiable) and ``render`` (a GaussianMap and a Camera, no grad).

Conventions shared by every backend (see ``projection.py`` and ``cpu.py`` for the details):

* ``viewmat`` is ``T_cam_map`` (world → camera, REP-103 optical frame: z forward, x right, y down);
  ``K`` are OpenCV/ROS intrinsics: pixel ``(col, row)`` has its centre at ``u = col, v = row``
  (the same as :class:`gs_mapping.camera.Camera`). Internally the principal point is shifted by
  +0.5 to gsplat's convention (centres at ``col + 0.5``), so both backends see identical inputs.
* ``color = Σ_j w_j c_j + (1 − alpha) · background`` with ``w_j = α_j Π_{k<j}(1 − α_k)`` over
  Gaussians sorted front to back by camera z; ``c_j = max(SH_j(dir) + 0.5, 0)``, ``dir`` = camera
  centre → mean (gsplat's basis and signs, ``sh.py``).
* ``alpha = Σ_j w_j = 1 − T_final`` (accumulated opacity).
* ``depth`` is gsplat's "ED" (expected depth): ``Σ_j w_j z_j / max(alpha, 1e-10)`` with ``z_j`` the
  camera-frame z of Gaussian j's mean. It is 0 exactly where no Gaussian touches the pixel
  (alpha = 0); where alpha is small but positive it is still the weighted mean z, so callers that
  need a confident depth should also threshold ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import GsMappingError
from .cpu import rasterize_tiles
from .cuda import gsplat_available, rasterize_gsplat
from .projection import candidates, project
from .reference import rasterize_reference
from .sh import sh_to_color

BACKENDS = ("auto", "cpu", "cuda", "reference")
EPS2D = 0.3  # px², gsplat's "classic" low-pass filter
REFERENCE_MAX_ELEMENTS = 50_000_000


class RenderError(GsMappingError):
    """Bad renderer input (shapes, SH size, backend)."""


@dataclass
class RenderOutput:
    color: torch.Tensor  # (H, W, 3)
    depth: torch.Tensor  # (H, W) expected depth "ED", metres; 0 where alpha = 0
    alpha: torch.Tensor  # (H, W) accumulated opacity in [0, 1]
    meta: dict = field(default_factory=dict)

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(color, depth, alpha)`` as float32 numpy arrays (detached, on the CPU)."""
        return tuple(t.detach().cpu().to(torch.float32).numpy() for t in (self.color, self.depth, self.alpha))


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise RenderError(f"unknown render backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cuda" if gsplat_available() else "cpu"
    if backend == "cuda" and not gsplat_available():
        raise RenderError("render backend 'cuda' needs a CUDA device and the gsplat package")
    return backend


def _as_tensor(x, dtype, name, shape):
    """A tensor of ``dtype`` (no copy, and gradients kept, when it already is one)."""
    t = torch.as_tensor(x)
    if tuple(t.shape) != shape:
        raise RenderError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    return t.to(dtype)


def rasterize(
    means,
    quats,
    scales,
    opacities,
    sh,
    viewmat,
    K,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    background=None,
    backend: str = "auto",
    near: float = 0.01,
    far: float = 1e4,
) -> RenderOutput:
    """Render N Gaussians into a ``height × width`` pinhole image.

    Args (torch tensors; gradients flow to means, quats, scales, opacities, sh and viewmat):
        means (N, 3) map frame; quats (N, 4) (x, y, z, w), normalised here; scales (N, 3) standard
        deviations (activated); opacities (N,) in [0, 1] (activated); sh (N, K, 3) SH coefficients,
        K = (d + 1)²; viewmat (4, 4) T_cam_map; K (3, 3) OpenCV intrinsics.
        sh_degree: bands to use (default: all of ``sh``); background: (3,) RGB or None (black).
        backend: "auto" (gsplat on CUDA when available, else "cpu"), "cpu", "cuda", "reference".
        near, far: Gaussians with camera z outside [near, far] are not drawn.

    Returns :class:`RenderOutput` (color (H, W, 3), depth (H, W), alpha (H, W), meta), on the
    inputs' device ("cuda" moves CPU inputs to the GPU and returns GPU tensors). ``meta``
    has ``backend``, ``radii`` (N, 2) int (0 = culled), ``means2d``: the projected means in gsplat's
    pixel convention as the autograd node the image depends on, so ``retain_grad()`` before
    ``backward()`` gives the 2D gradients used for densification — shape (N, 2) on the CPU, gsplat's
    (1, N, 2) on CUDA (use ``means2d.grad.reshape(-1, 2)``; on the CPU rows of culled Gaussians
    are 0); ``depths`` (N,) camera z of the means (no grad); ``visible`` (N,) bool; ``n_isects``
    (tile–Gaussian pairs; 4×4-pixel tiles on the CPU, 16×16 in gsplat) and ``weight_sum`` (N,):
    each Gaussian's total blending weight Σ_pixels w over the image (no grad;
    None on CUDA).
    """
    backend = resolve_backend(backend)
    if int(width) <= 0 or int(height) <= 0:
        raise RenderError(f"image size must be positive, got {width}x{height}")
    width, height = int(width), int(height)
    means = torch.as_tensor(means)
    if means.ndim != 2 or means.shape[1] != 3:
        raise RenderError(f"means has shape {tuple(means.shape)}, expected (N, 3)")
    dtype = means.dtype if means.is_floating_point() else torch.float32
    means = means.to(dtype)
    n = means.shape[0]
    quats = _as_tensor(quats, dtype, "quats", (n, 4))
    scales = _as_tensor(scales, dtype, "scales", (n, 3))
    opacities = _as_tensor(opacities, dtype, "opacities", (n,))
    sh = torch.as_tensor(sh).to(dtype)
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise RenderError(f"sh has shape {tuple(sh.shape)}, expected (N, K, 3) with N = {n}")
    k = sh.shape[1]
    if sh_degree is None:
        sh_degree = math.isqrt(k) - 1
        if (sh_degree + 1) ** 2 != k or sh_degree > 3:
            raise RenderError(f"sh has K = {k} coefficients; expected (d + 1)² for a degree d in 0..3")
    if not 0 <= sh_degree <= 3 or (sh_degree + 1) ** 2 > k:
        raise RenderError(f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} coefficients, sh has {k}")
    viewmat = _as_tensor(viewmat, dtype, "viewmat", (4, 4))
    K = _as_tensor(K, dtype, "K", (3, 3))
    bg = None if background is None else _as_tensor(background, dtype, "background", (3,))
    Kp = K.clone()
    Kp[0, 2] = Kp[0, 2] + 0.5
    Kp[1, 2] = Kp[1, 2] + 0.5

    if backend == "cuda":
        color, depth, alpha, gmeta = rasterize_gsplat(
            means,
            quats,
            scales,
            opacities,
            sh,
            viewmat,
            Kp,
            width,
            height,
            sh_degree=sh_degree,
            background=bg,
            near=near,
            far=far,
            eps2d=EPS2D,
        )
        radii = gmeta["radii"][0]
        if radii.ndim == 1:  # older gsplat: one radius per Gaussian
            radii = radii[:, None].expand(-1, 2)
        # means2d stays gsplat's own (1, N, 2) tensor: a view of it would get no gradient.
        meta = {
            "backend": "cuda",
            "radii": radii,
            "means2d": gmeta["means2d"],
            "depths": gmeta["depths"][0],
            "visible": (radii > 0).all(-1),
            "n_isects": int(gmeta["isect_ids"].numel()),
            "weight_sum": None,
            "gsplat": gmeta,
        }
        return RenderOutput(color, depth, alpha, meta)

    # Camera centre in the map frame: -Rᵀ t (differentiable in viewmat).
    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    if backend == "reference":
        if n * width * height > REFERENCE_MAX_ELEMENTS:
            raise RenderError(
                f"render backend 'reference' is dense (N × H × W = {n * width * height:,} "
                f"values here); it is meant for tests: use 'cpu'"
            )
        colors = sh_to_color(sh_degree, means - campos, sh)
        rgb, acc_depth, acc = rasterize_reference(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmat,
            Kp,
            width,
            height,
            background=bg,
            near=near,
            far=far,
            eps2d=EPS2D,
        )
        return RenderOutput(rgb, acc_depth / acc.clamp_min(1e-10), acc, {"backend": "reference"})

    if means.device.type != "cpu":
        raise RenderError(f"render backend 'cpu' needs CPU tensors, got {means.device}")
    # Cull conservatively without autograd first (cheap), then project differentiably only what may be
    # seen: in a large map most Gaussians are out of view, and autograd over all would dominate.
    cand = candidates(
        means.detach(),
        scales.detach(),
        opacities.detach(),
        viewmat.detach(),
        Kp,
        width,
        height,
        near=near,
        far=far,
        eps2d=EPS2D,
    )

    def rows(t, i):  # index_select: faster than t[i] on CPU
        return torch.index_select(t, 0, i)

    proj = project(
        rows(means, cand),
        rows(quats, cand),
        rows(scales, cand),
        rows(opacities, cand),
        viewmat,
        Kp,
        width,
        height,
        near=near,
        far=far,
        eps2d=EPS2D,
    )
    # (N, 2) projected means with autograd, so that meta["means2d"].retain_grad() works as in gsplat.
    means2d = torch.zeros(n, 2, dtype=dtype).index_copy(0, cand, proj.means2d)
    vis = rows(cand, torch.nonzero(proj.valid).flatten())  # rows of the visible Gaussians
    sel = torch.nonzero(proj.valid).flatten()  # the same, within the candidates
    colors = sh_to_color(sh_degree, rows(means, vis) - campos, rows(sh, vis))
    depths = rows(proj.depths, sel)
    feats = [colors if bg is None else colors - bg, depths[:, None], torch.ones_like(depths)[:, None]]
    out, n_pairs, wsum = rasterize_tiles(
        rows(means2d, vis),
        rows(proj.conics, sel),
        rows(opacities, vis),
        torch.cat(feats, dim=1),
        rows(proj.radii, sel),
        depths,
        width,
        height,
    )
    color = out[..., :3] if bg is None else out[..., :3] + bg
    alpha = out[..., 4]
    depth = out[..., 3] / alpha.clamp_min(1e-10)
    weight_sum = torch.zeros(n, dtype=dtype).index_copy_(0, vis, wsum)
    radii = torch.zeros(n, 2, dtype=torch.int32).index_copy_(0, vis, rows(proj.radii, sel))
    visible = torch.zeros(n, dtype=torch.bool).index_fill_(0, vis, True)
    with torch.no_grad():
        depths_all = means.detach() @ viewmat.detach()[2, :3] + viewmat.detach()[2, 3]
    meta = {
        "backend": "cpu",
        "radii": radii,
        "means2d": means2d,
        "depths": depths_all,
        "visible": visible,
        "n_isects": n_pairs,
        "weight_sum": weight_sum,
    }
    return RenderOutput(color, depth, alpha, meta)


def render(gmap, camera, *, backend: str = "auto", background=None) -> RenderOutput:
    """Render a :class:`~gs_mapping.gaussians.GaussianMap` from a :class:`~gs_mapping.camera.Camera`
    (float32, no gradients). Results are CPU tensors whatever the backend; ``.numpy()`` gives arrays."""
    with torch.no_grad():
        out = rasterize(
            torch.from_numpy(np.ascontiguousarray(gmap.means, np.float32)),
            torch.from_numpy(np.ascontiguousarray(gmap.quats, np.float32)),
            torch.from_numpy(np.exp(gmap.log_scales.astype(np.float32))),
            torch.sigmoid(torch.from_numpy(np.ascontiguousarray(gmap.opacity_logits, np.float32))),
            torch.from_numpy(np.ascontiguousarray(gmap.sh, np.float32)),
            torch.from_numpy(camera.T_cam_map.astype(np.float32)),
            torch.from_numpy(camera.K.astype(np.float32)),
            camera.width,
            camera.height,
            sh_degree=gmap.sh_degree,
            background=background,
            backend=backend,
        )
    if out.color.device.type != "cpu":
        out = RenderOutput(out.color.cpu(), out.depth.cpu(), out.alpha.cpu(), out.meta)
    return out
