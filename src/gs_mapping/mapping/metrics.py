"""Image quality metrics (PSNR, SSIM) and the differentiable D-SSIM used in the loss.

SSIM follows Wang et al. 2004: 11×11 Gaussian window (σ = 1.5), C1 = (0.01)², C2 = (0.03)² for
images in [0, 1], averaged over pixels and channels ("valid" windows only, no padding artefacts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_WINDOWS: dict[tuple, torch.Tensor] = {}


def _window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    key = (size, sigma, dtype, str(device))
    if key not in _WINDOWS:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-x * x / (2 * sigma * sigma))
        _WINDOWS[key] = (g / g.sum()).to(dtype=dtype, device=device)
    return _WINDOWS[key]


def _blur(x: torch.Tensor, g: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """Separable Gaussian filter of (B, C, H, W): the valid region, or zero padding of ``pad``."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, padding=(0, pad))
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, padding=(pad, 0))


def ssim_nchw(
    x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5, zero_pad: bool = False
) -> torch.Tensor:
    """Per-pixel SSIM of two (B, C, H, W) batches in [0, 1] → (B, C, H', W'): valid windows only
    (H' = H - size + 1), or with ``zero_pad`` the same size as the input (zeros beyond the border;
    the HD model's mask loss)."""
    g = _window(size, sigma, x.dtype, x.device)
    pad = size // 2 if zero_pad else 0
    mu_x, mu_y = _blur(x, g, pad), _blur(y, g, pad)
    sxx = _blur(x * x, g, pad) - mu_x * mu_x
    syy = _blur(y * y, g, pad) - mu_y * mu_y
    sxy = _blur(x * y, g, pad) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two (H, W, 3) images in [0, 1] → (H-size+1, W-size+1) (channel mean)."""
    x = a.permute(2, 0, 1).unsqueeze(0)
    y = b.permute(2, 0, 1).unsqueeze(0)
    return ssim_nchw(x, y, size, sigma)[0].mean(0)


def ssim(a, b) -> float:
    """Mean SSIM of two (H, W, 3) images in [0, 1] (numpy or torch)."""
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a, dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b, dtype=torch.float64)
    with torch.no_grad():
        return float(ssim_map(a, b).mean())


PSNR_CAP_DB = 100.0  # what reports write for identical images (JSON has no infinity)


def psnr(a, b, mask=None, cap_db: float | None = None) -> float:
    """PSNR in dB of two images in [0, 1] (peak 1), over the pixels of ``mask`` (H, W) if given;
    identical images give infinity, or ``cap_db`` when given (reports pass :data:`PSNR_CAP_DB`)."""
    a = np.asarray(a.detach().cpu() if torch.is_tensor(a) else a, np.float64)
    b = np.asarray(b.detach().cpu() if torch.is_tensor(b) else b, np.float64)
    err = (np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2
    if mask is not None:
        if not np.any(mask):
            return math.nan
        err = err[np.asarray(mask, bool)]
    mse = float(np.mean(err))
    value = math.inf if mse == 0 else -10.0 * math.log10(mse)
    return value if cap_db is None else min(value, cap_db)


def depth_l1(rendered, measured) -> float:
    """Mean |rendered − measured| in metres over pixels with valid (> 0, finite) measured depth."""
    r = np.asarray(rendered.detach().cpu() if torch.is_tensor(rendered) else rendered, np.float64)
    m = np.asarray(measured.detach().cpu() if torch.is_tensor(measured) else measured, np.float64)
    valid = np.isfinite(m) & (m > 0)
    if not valid.any():
        return math.nan
    return float(np.mean(np.abs(r[valid] - m[valid])))
