"""Image quality metrics (PSNR, SSIM) and the differentiable D-SSIM used in the loss.

SSIM follows Wang et al. 2004: 11×11 Gaussian window (σ = 1.5), C1 = (0.01)², C2 = (0.03)² for
images in [0, 1], averaged over pixels and channels ("valid" windows only, no padding artefacts).

Its gradient is written out (:class:`_SsimFn`): SSIM is a function of three blurred moments of the
image, so the gradient is three blurs back (the blur's adjoint is the same blur, the kernel being
symmetric): the loss's SSIM, forward and backward, costs about 2.5x less than through autograd on
the CPU. The blur is 11 shifted multiply-adds per axis, faster than a depthwise convolution for 1-3
channels (on the kitchen images it gives the float32 values the convolution gave, bit for bit).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

C1, C2 = 0.01**2, 0.03**2

_WINDOWS: dict[tuple, torch.Tensor] = {}


def _window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    key = (size, sigma, dtype, str(device))
    if key not in _WINDOWS:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-x * x / (2 * sigma * sigma))
        _WINDOWS[key] = (g / g.sum()).to(dtype=dtype, device=device)
    return _WINDOWS[key]


def _blur(x: torch.Tensor, g: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """Separable filter ``g`` (odd length) of (B, C, H, W): the valid region, or with zero padding
    of ``pad``. Each output is Σ_k g[k] x[i + k] in the order of k, per axis (W, then H)."""
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    taps = g.tolist()
    n = len(taps)
    w, h = x.shape[-1] - n + 1, x.shape[-2] - n + 1
    out = x[..., :w] * taps[0]
    for k in range(1, n):
        out = out.add_(x[..., k : k + w], alpha=taps[k])
    rows = out
    out = rows[..., :h, :] * taps[0]
    for k in range(1, n):
        out = out.add_(rows[..., k : k + h, :], alpha=taps[k])
    return out


class _SsimFn(torch.autograd.Function):
    """Per-pixel SSIM of ``x`` against ``y`` given y's blurred mean ``mu_y`` and variance ``var_y``,
    with its gradient in closed form. With μx = blur(x), Exx = blur(x²), Exy = blur(xy):

        S = A1 A2 / (B1 B2),  A1 = 2 μx μy + C1,  A2 = 2 (Exy − μx μy) + C2,
                              B1 = μx² + μy² + C1,  B2 = Exx − μx² + var_y + C2
        ∂S/∂μx = 2S (μy/A1 − μy/A2 − μx/B1 + μx/B2),  ∂S/∂Exx = −S/B2,  ∂S/∂Exy = 2S/A2
        ∂S/∂μy = 2S (μx/A1 − μx/A2 − μy/B1),  ∂S/∂var_y = −S/B2

    and dL/dx = blurᵀ(dL/dμx) + 2x blurᵀ(dL/dExx) + y blurᵀ(dL/dExy), dL/dy (through Exy only:
    μy and var_y are inputs of their own) = x blurᵀ(dL/dExy)."""

    @staticmethod
    def forward(ctx, x, y, mu_y, var_y, g, pad):
        mu_x = _blur(x, g, pad)
        sxx = _blur(x * x, g, pad) - mu_x * mu_x
        sxy = _blur(x * y, g, pad) - mu_x * mu_y
        a1, a2 = 2 * mu_x * mu_y + C1, 2 * sxy + C2
        b1, b2 = mu_x**2 + mu_y**2 + C1, sxx + var_y + C2
        s = (a1 * a2) / (b1 * b2)
        ctx.save_for_backward(x, y, mu_x, mu_y, a1, a2, b1, b2, s, g)
        ctx.pad = pad
        return s

    @staticmethod
    def backward(ctx, grad):
        x, y, mu_x, mu_y, a1, a2, b1, b2, s, g = ctx.saved_tensors
        back = len(g) - 1 - ctx.pad  # the adjoint of the blur: the same blur with this padding
        gs = grad * s
        d_xy = 2 * gs / a2
        d_xx = -gs / b2
        need_x, need_y, need_mu, need_var = ctx.needs_input_grad[:4]
        g_x = g_y = g_mu = None
        t_xy = _blur(d_xy, g, back) if need_x or need_y else None
        if need_x:
            d_mx = 2 * gs * (mu_y / a1 - mu_y / a2 - mu_x / b1 + mu_x / b2)
            g_x = _blur(d_mx, g, back).add_(2 * x * _blur(d_xx, g, back)).add_(y * t_xy)
        if need_y:
            g_y = x * t_xy
        if need_mu:
            g_mu = 2 * gs * (mu_x / a1 - mu_x / a2 - mu_y / b1)
        return g_x, g_y, g_mu, d_xx if need_var else None, None, None


class SsimTarget:
    """The target's half of SSIM: its windowed mean and variance, (B, C, H', W'). They are the same
    for every image compared with this target, so a loss that compares many renders with one view
    computes them once (the optimiser keeps one per training view)."""

    def __init__(self, y: torch.Tensor, size: int = 11, sigma: float = 1.5, zero_pad: bool = False):
        """``y``: (B, C, H, W) in [0, 1]; ``size``, ``sigma``, ``zero_pad`` as :func:`ssim_nchw`."""
        self.y = y
        self.g = _window(size, sigma, y.dtype, y.device)
        self.pad = size // 2 if zero_pad else 0
        self.mu = _blur(y, self.g, self.pad)
        self.var = _blur(y * y, self.g, self.pad) - self.mu * self.mu

    @classmethod
    def of_image(cls, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> SsimTarget:
        """The target of an (H, W, 3) image, for :func:`ssim_map`."""
        return cls(b.permute(2, 0, 1).unsqueeze(0), size, sigma)

    def ssim(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel SSIM of ``x`` (the target's shape) against the target."""
        return _SsimFn.apply(x, self.y, self.mu, self.var, self.g, self.pad)


def ssim_nchw(
    x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5, zero_pad: bool = False
) -> torch.Tensor:
    """Per-pixel SSIM of two (B, C, H, W) batches in [0, 1] → (B, C, H', W'): valid windows only
    (H' = H - size + 1), or with ``zero_pad`` the same size as the input (zeros beyond the border;
    the HD model's mask loss)."""
    return SsimTarget(y, size, sigma, zero_pad).ssim(x)


def ssim_map(
    a: torch.Tensor, b: torch.Tensor | SsimTarget, size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-pixel SSIM of two (H, W, 3) images in [0, 1] → (H-size+1, W-size+1) (channel mean);
    ``b`` may be given as its :meth:`SsimTarget.of_image` (made with the same ``size``, ``sigma``)."""
    target = b if isinstance(b, SsimTarget) else SsimTarget.of_image(b, size, sigma)
    return target.ssim(a.permute(2, 0, 1).unsqueeze(0))[0].mean(0)


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
