"""Gaussian splatting renderer: gsplat on CUDA, our own differentiable PyTorch rasteriser on CPU.

``rasterize(...)`` takes tensors and is differentiable; ``render(map, camera)`` is the no-grad
convenience for evaluation. Conventions are documented in ``api.py``.
"""

from .api import BACKENDS, RenderError, RenderOutput, rasterize, render, resolve_backend
from .sh import SH_C0, sh_basis, sh_to_color

__all__ = [
    "BACKENDS",
    "RenderError",
    "RenderOutput",
    "rasterize",
    "render",
    "resolve_backend",
    "SH_C0",
    "sh_basis",
    "sh_to_color",
]
