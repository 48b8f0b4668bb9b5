"""Pure-PyTorch tile rasteriser with an analytic backward (the CPU backend).

Given projected Gaussians (``projection.py``) and per-Gaussian features ``F`` (C channels), it
computes, for every pixel, ``out = Σ_j w_j F_j`` over the Gaussians ``j`` sorted front to back by
depth, with ``w_j = α_j Π_{k<j} (1 - α_k)`` and, exactly as gsplat's "classic" kernel:

* ``α_j = min(0.999, o_j exp(-σ_j(pixel)))``, and Gaussians with ``α_j < 1/255`` (or σ < 0) skipped;
* a pixel stops at the first Gaussian that would bring its transmittance to ``≤ 1e-4`` (that one is
  excluded);
* pixel centres at ``(col + 0.5, row + 0.5)``.

How: the image is cut into square tiles; each visible Gaussian is listed in every tile its bounding
box touches; the (tile, depth)-sorted lists are padded per chunk of tiles of similar list length into
``(tiles, L, pixels-per-tile)`` blocks and composited with cumprod / bmm. Memory is bounded by the
chunk budget, never pixels × Gaussians for the whole image. The backward pass recomputes alphas per
chunk (nothing image-sized is saved) and uses the closed form

    dL/dα_j = T_j g_j − (Σ_{k>j} w_k g_k) / (1 − α_j),   g_j = F_j · dL/dout

then chains through α = o·exp(−σ) to the 2D mean, conic and opacity; per-pair gradients are summed
per Gaussian with ``index_add_``.
"""
from __future__ import annotations

import math

import torch

from .projection import ALPHA_THRESHOLD

T_MIN = 1e-4
ALPHA_MAX = 0.999
# Elements (tiles × list length × pixels per tile) composited at once; bounds the working memory.
CHUNK_BUDGET = 1 << 21


class _Bins:
    """Tile lists: which Gaussians (rows of the visible set) touch which tile, front to back."""

    def __init__(self, means2d, radii, depths, width, height, tile):
        self.tile, self.width, self.height = tile, width, height
        self.tw = math.ceil(width / tile)
        self.th = math.ceil(height / tile)
        m = means2d.shape[0]
        mx, my = means2d[:, 0], means2d[:, 1]
        rx, ry = radii[:, 0].to(means2d.dtype), radii[:, 1].to(means2d.dtype)
        x0 = torch.floor((mx - rx) / tile).clamp(0, self.tw).long()
        x1 = torch.ceil((mx + rx) / tile).clamp(0, self.tw).long()
        y0 = torch.floor((my - ry) / tile).clamp(0, self.th).long()
        y1 = torch.ceil((my + ry) / tile).clamp(0, self.th).long()
        nx = x1 - x0
        n = nx * (y1 - y0)
        total = int(n.sum())
        g = torch.repeat_interleave(torch.arange(m), n)
        k = torch.arange(total) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        tiles = (y0[g] + k // nx[g]) * self.tw + x0[g] + k % nx[g]
        # Sort by (tile, depth): rank Gaussians by depth first (stable), then sort the pair keys.
        rank = torch.empty(m, dtype=torch.long)
        rank[torch.argsort(depths, stable=True)] = torch.arange(m)
        order = torch.argsort(tiles * max(m, 1) + rank[g])
        self.gids = g[order]
        counts = torch.bincount(tiles, minlength=self.tw * self.th)
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        self.n_pairs = total

    def chunks(self, budget):
        """Groups of non-empty tiles with similar list length: (tile ids, L) with tiles·L·P ≤ budget."""
        P = self.tile * self.tile
        nz = torch.nonzero(self.counts).flatten()
        nz = nz[torch.argsort(self.counts[nz], descending=True, stable=True)]
        cl = self.counts[nz].tolist()
        out, i = [], 0
        while i < len(cl):
            L = cl[i]
            b = max(1, budget // (L * P))
            out.append((nz[i:i + b], L))
            i += b
        return out


def _pixel_grid(tile, dtype):
    ly, lx = torch.meshgrid(torch.arange(tile, dtype=dtype), torch.arange(tile, dtype=dtype), indexing="ij")
    return lx.flatten() + 0.5, ly.flatten() + 0.5


class _Chunk:
    """Per-chunk gathered quantities and the forward compositing (recomputed in backward)."""

    def __init__(self, bins, tiles, L, means2d, conics, opac, dummy, dtype):
        tile = bins.tile
        ar = torch.arange(L)
        pos = bins.starts[tiles][:, None] + ar
        inb = ar < bins.counts[tiles][:, None]
        self.g = torch.where(inb, bins.gids[pos.clamp(max=max(bins.n_pairs - 1, 0))], dummy)  # (B, L)
        lx, ly = _pixel_grid(tile, dtype)
        ox = ((tiles % bins.tw) * tile).to(dtype)
        oy = ((tiles // bins.tw) * tile).to(dtype)
        m = means2d[self.g]
        # dx, dy relative to the tile origin keeps float32 rounding small.
        self.dx = lx[None, None, :] - (m[..., 0] - ox[:, None])[..., None]  # (B, L, P)
        self.dy = ly[None, None, :] - (m[..., 1] - oy[:, None])[..., None]
        c = conics[self.g]
        self.a, self.b, self.c = c[..., 0, None], c[..., 1, None], c[..., 2, None]
        self.o = opac[self.g][..., None]
        # Pixels of edge tiles that fall outside the image (they get no gradient either).
        self.inside = (((lx[None] + ox[:, None]) < bins.width) & ((ly[None] + oy[:, None]) < bins.height)).to(dtype)

    def composite(self):
        dx, dy = self.dx, self.dy
        sigma = 0.5 * (self.a * dx * dx + self.c * dy * dy) + self.b * dx * dy
        e = torch.exp(-sigma)
        v = self.o * e
        alpha = torch.clamp_max(v, ALPHA_MAX)
        alpha = torch.where((alpha >= ALPHA_THRESHOLD) & (sigma >= 0), alpha, torch.zeros_like(alpha))
        om = 1.0 - alpha
        t_after = torch.cumprod(om, dim=1)
        keep = t_after > T_MIN
        t_before = torch.ones_like(t_after)
        t_before[:, 1:] = t_after[:, :-1]
        w = alpha * t_before * keep
        return sigma, e, v, alpha, om, keep, t_before, w


class _RasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opac, feats, bins, width, height, budget):
        dtype = means2d.dtype
        C = feats.shape[1]
        tile = bins.tile
        P = tile * tile
        m = means2d.shape[0]
        # One dummy row (opacity 0) fills the padding of shorter tile lists.
        m2 = torch.cat([means2d, means2d.new_zeros(1, 2)])
        cn = torch.cat([conics, conics.new_zeros(1, 3)])
        op = torch.cat([opac, opac.new_zeros(1)])
        ft = torch.cat([feats, feats.new_zeros(1, C)])
        canvas = torch.zeros(bins.tw * bins.th, P, C, dtype=dtype)
        wsum = torch.zeros(m + 1, dtype=dtype)
        for tiles, L in bins.chunks(budget):
            ch = _Chunk(bins, tiles, L, m2, cn, op, m, dtype)
            w = ch.composite()[-1]
            canvas[tiles] = torch.bmm(w.transpose(1, 2), ft[ch.g])
            wsum.index_add_(0, ch.g.flatten(), torch.bmm(w, ch.inside[..., None]).flatten())
        ctx.save_for_backward(m2, cn, op, ft)
        ctx.bins, ctx.budget, ctx.size = bins, budget, (width, height)
        img = canvas.reshape(bins.th, bins.tw, tile, tile, C).permute(0, 2, 1, 3, 4)
        wsum = wsum[:m]
        ctx.mark_non_differentiable(wsum)
        return img.reshape(bins.th * tile, bins.tw * tile, C)[:height, :width].contiguous(), wsum

    @staticmethod
    def backward(ctx, grad_out, _grad_wsum):
        m2, cn, op, ft = ctx.saved_tensors
        bins, budget = ctx.bins, ctx.budget
        width, height = ctx.size
        tile = bins.tile
        P = tile * tile
        C = ft.shape[1]
        dtype = m2.dtype
        m = m2.shape[0] - 1
        gpad = grad_out.new_zeros(bins.th * tile, bins.tw * tile, C)
        gpad[:height, :width] = grad_out
        gcan = gpad.reshape(bins.th, tile, bins.tw, tile, C).permute(0, 2, 1, 3, 4).reshape(-1, P, C)
        g_m2 = torch.zeros_like(m2)
        g_cn = torch.zeros_like(cn)
        g_op = torch.zeros_like(op)
        g_ft = torch.zeros_like(ft)
        for tiles, L in bins.chunks(budget):
            ch = _Chunk(bins, tiles, L, m2, cn, op, m, dtype)
            sigma, e, v, alpha, om, keep, t_before, w = ch.composite()
            G = gcan[tiles]  # (B, P, C)
            f = ft[ch.g]  # (B, L, C)
            flat = ch.g.flatten()
            g_ft.index_add_(0, flat, torch.bmm(w, G).reshape(-1, C))
            gw = torch.bmm(f, G.transpose(1, 2))  # (B, L, P) dL/dw_j
            wg = w * gw
            suffix = wg.sum(1, keepdim=True) - torch.cumsum(wg, 1)  # Σ_{k>j} w_k g_k
            g_alpha = (gw * t_before - suffix / om) * keep
            g_v = g_alpha * ((alpha > 0) & (v < ALPHA_MAX))
            g_op.index_add_(0, flat, (g_v * e).sum(2).flatten())
            g_sig = -g_v * v
            dx, dy = ch.dx, ch.dy
            g_a = 0.5 * (g_sig * dx * dx).sum(2)
            g_c = 0.5 * (g_sig * dy * dy).sum(2)
            g_b = (g_sig * dx * dy).sum(2)
            # σ depends on dx = px − mx, so dσ/dmx = −(a dx + b dy).
            g_mx = -(g_sig * (ch.a * dx + ch.b * dy)).sum(2)
            g_my = -(g_sig * (ch.c * dy + ch.b * dx)).sum(2)
            g_cn.index_add_(0, flat, torch.stack([g_a, g_b, g_c], -1).reshape(-1, 3))
            g_m2.index_add_(0, flat, torch.stack([g_mx, g_my], -1).reshape(-1, 2))
        return g_m2[:m], g_cn[:m], g_op[:m], g_ft[:m], None, None, None, None


def rasterize_tiles(means2d, conics, opacities, feats, radii, depths, width, height, *,
                    tile=16, budget=None):
    """Composite visible Gaussians (all rows must have radii > 0). Returns ``(out (H, W, C), bins,
    weight_sum (M,))`` where ``weight_sum`` is each Gaussian's Σ_pixels w (no gradient)."""
    budget = CHUNK_BUDGET if budget is None else budget
    with torch.no_grad():
        bins = _Bins(means2d.detach(), radii, depths.detach(), width, height, tile)
    out, wsum = _RasterizeFn.apply(means2d, conics, opacities, feats, bins, width, height, budget)
    return out, bins, wsum
