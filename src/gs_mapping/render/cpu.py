"""Pure-PyTorch tile rasteriser with an analytic backward (the CPU backend).

Given projected Gaussians (``projection.py``) and per-Gaussian features ``F`` (C channels), it
computes, for every pixel, ``out = Σ_j w_j F_j`` over the Gaussians ``j`` sorted front to back by
depth, with ``w_j = α_j Π_{k<j} (1 - α_k)`` and, exactly as gsplat's "classic" kernel:

* ``α_j = min(0.999, o_j exp(-σ_j))``, ``σ_j = ½(a dx² + c dy²) + b dx dy`` (conic ``(a, b, c)``,
  ``(dx, dy)`` pixel centre − projected mean), Gaussians with ``α_j < 1/255`` skipped (here
  ``α_j ≤ 1/255``: the two differ only at exact equality);
* a pixel stops at the first Gaussian that would bring its transmittance to ``≤ 1e-4`` (that one is
  excluded);
* pixel centres at ``(col + 0.5, row + 0.5)``.
(gsplat also skips σ < 0, which only rounding can produce for a positive-definite conic; not here.)

How (CPU-friendly, all vectorised):

* The image is cut into small square tiles (4×4 px by default: on a CPU, evaluating a Gaussian on a
  16×16 tile it barely touches wastes most of the work). Each visible Gaussian is listed in every tile
  its bounding box touches (a *pair*), minus the tiles that the ellipse {α ≥ 1/255} provably misses
  (box corners, thin rotated splats); pairs are sorted by (tile, depth). The bounding box contains
  every pixel where α ≥ 1/255, so the result does not depend on the tile size.
* Per pair, ``log α`` before clamping is a quadratic polynomial of the pixel position inside the tile:
  ``s = log o − σ = q · [1, x, y, x², y², xy]``. One matrix product ``(pairs, 6) @ (6, pixels)`` and
  one ``exp`` give every pair's unclamped alpha on its tile.
* Tiles with similar list lengths are composited together as padded ``(tiles, L, pixels)`` blocks that
  fit in cache (``CHUNK_BUDGET`` elements): cumprod for the transmittance, bmm for the sums. Long lists
  go front to back in blocks of ``BLOCK`` entries carrying the transmittance, and a tile stops once all
  its pixels are saturated (gsplat's early exit); the backward then only revisits the entries each tile
  reached. Memory is bounded by the chunk size, never pixels × Gaussians for the whole image.
* Chunks write disjoint tiles and pairs, so they are composited on worker threads (set_workers;
  torch ops release the GIL); the result does not depend on the number of workers.
* Backward recomputes each chunk (nothing image-sized is saved) and uses the closed form

      dL/dα_j = T_j g_j − (Σ_{k>j} w_k g_k) / (1 − α_j),   g_j = F_j · dL/dout

  then ``dL/ds = dL/dα · α`` where not clamped, and ``dL/dq = (dL/ds) @ monomialsᵀ``, a second small
  matrix product; the chain rule from ``q`` to mean, conic and opacity is per pair.
"""

from __future__ import annotations

import math
import os

import torch

from .projection import ALPHA_THRESHOLD

T_MIN = 1e-4
ALPHA_MAX = 0.999
# Elements (tiles × list length × pixels per tile) composited at once: small enough to stay in cache.
CHUNK_BUDGET = 1 << 17
TILE_SIZE = 4
# Long tile lists are composited front to back in blocks of this many entries, stopping once every
# pixel of a tile is saturated (as gsplat's per-pixel early exit).
BLOCK = 32
_DUMMY_LOG = -1e4  # log-alpha of padding entries: skipped (below the floor, so below 1/255)
# Floor of log α before exp(): below about -87 exp() gives subnormal floats (or underflows), which
# x86 computes ~100x slower, and any α under 1/255 is skipped anyway, so this changes no result.
_LOG_ALPHA_FLOOR = -80.0

# Tile chunks are independent (each writes only its own tiles' rows and pairs), so several threads
# can composite them at once: torch ops release the GIL. See set_workers().
_workers = None  # None: default_raster_workers() (every usable core, capped), resolved on first use
_pool = None
_pool_pid = None


def set_workers(n: int) -> None:
    """Composite tile chunks on ``n`` threads (1 = in the calling thread). Results do not depend on
    ``n`` (bit for bit). Best with torch's intra-op threads at 1 (see ``gs_mapping.cpu_threads``)."""
    global _workers
    _workers = max(1, int(n))


def get_workers() -> int:
    global _workers
    if _workers is None:
        from ..cpu_threads import default_raster_workers

        _workers = default_raster_workers()
    return _workers


def _for_each(fn, chunks) -> None:
    """fn(chunk) for every chunk, on the worker threads; a worker's exception is re-raised here."""
    global _pool, _pool_pid
    if get_workers() <= 1:
        for c in chunks:
            fn(c)
        return
    if _pool is None or _pool._max_workers != _workers or _pool_pid != os.getpid():
        # (a forked child inherits the pool object but not its threads: make a new one)
        from concurrent.futures import ThreadPoolExecutor

        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=False)
        _pool, _pool_pid = ThreadPoolExecutor(_workers, thread_name_prefix="gs-raster"), os.getpid()
    for f in [_pool.submit(fn, c) for c in chunks]:
        f.result()


def _monomials(tile, dtype):
    """(6, P): [1, x, y, x², y², xy] of each pixel centre, relative to the tile centre."""
    c = torch.arange(tile, dtype=dtype) + 0.5 - tile / 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    x, y = x.flatten(), y.flatten()
    return torch.stack([torch.ones_like(x), x, y, x * x, y * y, x * y])


class _Pairs:
    """Tile lists: which Gaussians touch which tile, front to back, plus each pair's polynomial."""

    def __init__(self, means2d, conics, opac, radii, depths, width, height, tile):
        self.tile, self.width, self.height = tile, width, height
        self.tw = math.ceil(width / tile)
        self.th = math.ceil(height / tile)
        dt = means2d.dtype
        # Gaussians in depth order (stable); their pairs are generated in that order and a stable
        # sort by tile id (small integers: fast) then gives every tile's list front to back.
        by_depth = torch.argsort(depths, stable=True)
        m2, cn, op, rad = (_sel(t, by_depth) for t in (means2d, conics, opac, radii.to(dt)))
        mx, my = m2.T.contiguous()  # (contiguous: gathered per pair below)
        a, b, c = cn.T.contiguous()
        x0 = torch.floor((mx - rad[:, 0]) / tile).clamp(0, self.tw).int()
        x1 = torch.ceil((mx + rad[:, 0]) / tile).clamp(0, self.tw).int()
        y0 = torch.floor((my - rad[:, 1]) / tile).clamp(0, self.th).int()
        y1 = torch.ceil((my + rad[:, 1]) / tile).clamp(0, self.th).int()
        nx = x1 - x0
        n = (nx * (y1 - y0)).long()
        total = int(n.sum())
        r = torch.repeat_interleave(torch.arange(len(n)), n)
        k = (torch.arange(total) - _sel(torch.cumsum(n, 0) - n, r)).int()
        nxr = _sel(nx, r)
        row = torch.div(k, nxr, rounding_mode="floor")
        tx = _sel(x0, r) + (k - row * nxr)
        ty = _sel(y0, r) + row
        # Mean relative to the tile centre.
        half = tile / 2
        dx = _sel(mx, r) - (tx * tile).to(dt) - half
        dy = _sel(my, r) - (ty * tile).to(dt) - half
        # Drop pairs whose tile the ellipse {α ≥ 1/255} misses (bounding-box corners, thin rotated
        # splats). With the norm ‖d‖_Q = sqrt(dᵀ Q d) (Q = conic), every pixel centre p of the tile has
        # ‖p − μ‖_Q ≥ ‖centre − μ‖_Q − sqrt(λmax(Q))·(tile − 1)/√2, and α ≥ 1/255 needs
        # ‖p − μ‖_Q ≤ sqrt(2 ln(255 o)). Conservative (with a margin for rounding): exact result.
        lam = 0.5 * (a + c) + torch.sqrt(0.25 * (a - c) ** 2 + b * b)
        reach = torch.sqrt(2.0 * torch.log(op * 255.0).clamp_min(0)) + torch.sqrt(lam) * (
            (tile - 1) / math.sqrt(2)
        )
        reach2 = (reach * 1.001 + 1e-3) ** 2
        br = _sel(b, r)
        qx = _sel(a, r) * dx + br * dy  # (Q d)_x
        qy = _sel(c, r) * dy + br * dx
        dist2 = dx * qx + dy * qy  # dᵀ Q d = 2σ at the tile centre
        hit = torch.nonzero(dist2 <= _sel(reach2, r)).flatten()
        key_dtype = torch.int16 if self.tw * self.th < (1 << 15) else torch.int32
        tiles = _sel(ty * self.tw + tx, hit).to(key_dtype)
        order = _sel(hit, torch.argsort(tiles, stable=True))
        self.n = len(order)

        def take(t):
            return torch.index_select(t, 0, order)

        ro = take(r)
        self.gids = _sel(by_depth, ro)
        counts = torch.bincount(tiles, minlength=self.tw * self.th)
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        # Per pair: log α before clamping = q · [1, x, y, x², y², xy] (pixel offset (x, y) from the
        # tile centre): log o − ½ (p − d)ᵀ Q (p − d). One row per pair, plus the dummy's last: a
        # block gathers whole rows (much faster than gathering 6 separate columns).
        self.a, self.b, self.c = _sel(a, ro), _sel(b, ro), _sel(c, ro)
        self.mx, self.my = take(dx), take(dy)
        self.o = _sel(op, ro)
        q = torch.empty(self.n + 1, 6, dtype=dt)
        torch.sub(torch.log(self.o), 0.5 * take(dist2), out=q[:-1, 0])
        q[:-1, 1] = take(qx)
        q[:-1, 2] = take(qy)
        torch.mul(self.a, -0.5, out=q[:-1, 3])
        torch.mul(self.c, -0.5, out=q[:-1, 4])
        torch.neg(self.b, out=q[:-1, 5])
        q[-1] = 0.0
        q[-1, 0] = _DUMMY_LOG
        self.q = q

    def chunks(self, budget, counts, cap=None):
        """Groups of non-empty tiles with similar list length ``counts`` (per tile, ≤ self.counts):
        (tile ids, pair index (B, L) padded with the dummy pair). ``cap``: the list length the budget
        is computed for (the forward composites long lists in blocks of ``cap``)."""
        P = self.tile * self.tile
        nz = torch.nonzero(counts).flatten()
        nz = _sel(nz, torch.argsort(_sel(counts, nz), descending=True, stable=True))
        cnt, start = _sel(counts, nz), _sel(self.starts, nz)  # in chunk order: sliced, not gathered
        cl = cnt.tolist()
        i = 0
        while i < len(cl):
            L = cl[i]
            b = max(1, budget // (min(L, cap or L) * P))
            ar = torch.arange(L)
            pos = start[i : i + b, None] + ar
            yield nz[i : i + b], torch.where(ar < cnt[i : i + b, None], pos, self.n)
            i += b


def _alphas(q, idx, mono):
    """Pairs ``idx`` (B, L) → their alpha on their tile's pixels (B, L, P)."""
    B, L = idx.shape
    log_alpha = torch.mm(torch.index_select(q, 0, idx.reshape(-1)), mono).clamp_min_(_LOG_ALPHA_FLOOR)
    alpha = torch.exp(log_alpha).reshape(B, L, -1)
    # Skip α < 1/255 (threshold_ keeps x > 1/255: differs from gsplat's ≥ only at exact equality),
    # then clamp to 0.999.
    torch.nn.functional.threshold_(alpha, ALPHA_THRESHOLD, 0.0)
    return alpha.clamp_max_(ALPHA_MAX)


def _composite(alpha, t0=None):
    """Alphas (B, L, P) of tile lists → transmittance after each entry and weights (both (B, L, P)).
    ``t0`` (B, 1, P): transmittance in front of the first entry (default 1)."""
    t_after = torch.cumprod(1.0 - alpha, dim=1)
    t_before = torch.empty_like(t_after)  # t_after shifted by one entry (torch.cat is slow here)
    if t0 is None:
        t_before[:, 0] = 1.0
    else:
        t_after.mul_(t0)
        t_before[:, :1] = t0
    t_before[:, 1:] = t_after[:, :-1]
    w = alpha * t_before
    if bool((t_after[:, -1] <= T_MIN).any()):  # some pixel reaches the cut in this block
        w.masked_fill_(t_after <= T_MIN, 0.0)
    return t_after, w


def _sel(x, idx):
    """x[idx] along dim 0 for a 1-D index (index_select is faster than advanced indexing on CPU)."""
    return torch.index_select(x, 0, idx)


def _take(x, idx):
    """Rows of x at a (B, L) index → (B, L, …) (index_select: faster than advanced indexing)."""
    return torch.index_select(x, 0, idx.reshape(-1)).reshape(idx.shape + x.shape[1:])


class _RasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opac, feats, radii, depths, width, height, tile, budget):
        dtype = means2d.dtype
        C = feats.shape[1]
        P = tile * tile
        pairs = _Pairs(means2d, conics, opac, radii, depths, width, height, tile)
        mono = _monomials(tile, dtype)
        f_pairs = torch.cat([_sel(feats, pairs.gids), feats.new_zeros(1, C)])
        inside = _inside_mask(pairs, dtype)
        canvas = torch.zeros(pairs.tw * pairs.th, P, C, dtype=dtype)
        w_pairs = torch.zeros(pairs.n + 1, dtype=dtype)
        # Per tile, how far down its list compositing went before every pixel's transmittance hit
        # the cut (later entries have no weight and no gradient): the backward only visits those.
        reached = pairs.counts.clone()

        def one_chunk(chunk):  # writes only its own tiles' rows and pairs: chunks may run concurrently
            tiles, idx = chunk
            L = idx.shape[1]
            t0, acc, live = None, None, None  # live: rows of the chunk not yet saturated
            for s0 in range(0, L, BLOCK):
                blk = idx[:, s0 : s0 + BLOCK] if live is None else idx[live, s0 : s0 + BLOCK]
                t_after, w = _composite(_alphas(pairs.q, blk, mono), t0)
                part = torch.bmm(w.transpose(1, 2), _take(f_pairs, blk))
                tl = tiles if live is None else tiles[live]
                w_in = torch.bmm(w, _take(inside, tl)[..., None])  # Σ over in-image pixels
                w_pairs.index_copy_(0, blk.reshape(-1), w_in.reshape(-1))
                if s0 + BLOCK >= L:
                    acc = part if live is None else acc.index_add_(0, live, part)
                    break
                # Carry the running product (not T0 − Σw): past the cut it keeps every later entry out.
                t_end = t_after[:, -1:]
                if live is None:
                    acc, t0, live = part, t_end, torch.arange(len(tiles))
                else:
                    acc.index_add_(0, live, part)
                    t0 = t_end
                done = (t0 <= T_MIN).all(dim=2).flatten()
                if done.any():
                    reached[tl[done]] = s0 + BLOCK
                    keep = ~done
                    live, t0 = live[keep], t0[keep]
                    if len(live) == 0:
                        break
            canvas.index_copy_(0, tiles, acc)

        _for_each(one_chunk, pairs.chunks(budget, pairs.counts, cap=BLOCK))
        reached = torch.minimum(reached, pairs.counts)
        wsum = torch.zeros(means2d.shape[0], dtype=dtype).index_add_(0, pairs.gids, w_pairs[:-1])
        ctx.save_for_backward(f_pairs)
        ctx.pairs, ctx.budget, ctx.mono, ctx.n_feats = pairs, budget, mono, means2d.shape[0]
        ctx.reached = reached
        img = canvas.reshape(pairs.th, pairs.tw, tile, tile, C).permute(0, 2, 1, 3, 4)
        img = img.reshape(pairs.th * tile, pairs.tw * tile, C)[:height, :width].contiguous()
        n_pairs = torch.tensor(pairs.n)
        ctx.mark_non_differentiable(wsum, n_pairs)
        return img, wsum, n_pairs

    @staticmethod
    def backward(ctx, grad_out, _grad_wsum, _grad_n):
        (f_pairs,) = ctx.saved_tensors
        pairs, mono = ctx.pairs, ctx.mono
        tile = pairs.tile
        P = tile * tile
        C = f_pairs.shape[1]
        m = ctx.n_feats
        gpad = grad_out.new_zeros(pairs.th * tile, pairs.tw * tile, C)
        gpad[: pairs.height, : pairs.width] = grad_out
        gcan = gpad.reshape(pairs.th, tile, pairs.tw, tile, C).permute(0, 2, 1, 3, 4).reshape(-1, P, C)
        n, dt = pairs.n, f_pairs.dtype
        # Per pair (columns; the dummy's last): dL/dq, and dL/d(mean x, mean y, a, b, c, opacity,
        # features); entries no tile reached keep 0.
        g_q = torch.zeros(6, n + 1, dtype=dt)
        g_pair = torch.zeros(6 + C, n + 1, dtype=dt)
        g_f = g_pair[6:]

        def one_chunk(chunk):
            tiles, idx = chunk
            B, L = idx.shape
            alpha = _alphas(pairs.q, idx, mono)
            t_after, w = _composite(alpha)
            G = _take(gcan, tiles)  # (B, P, C)
            flat = idx.reshape(-1)
            g_f.index_copy_(1, flat, torch.bmm(w, G).reshape(-1, C).T)
            gw = torch.bmm(_take(f_pairs, idx), G.transpose(1, 2))  # (B, L, P): dL/dw_j
            wg = w * gw
            suffix = wg.sum(1, keepdim=True) - torch.cumsum(wg, 1)  # Σ_{k>j} w_k g_k
            # dL/dα_j = T_j gw_j − suffix_j / (1 − α_j) and dα/ds = α where 1/255 ≤ α < 0.999 (else 0);
            # with w_j = α_j T_j (0 where skipped or cut) and T_j (1 − α_j) = t_after_j this is
            # dL/ds_j = (gw_j − suffix_j / t_after_j) · w_j. t_after is clamped: it underflows to 0 only
            # after the cut, where w = 0.
            g_s = torch.addcdiv(gw, suffix, t_after.clamp_min_(1e-30), value=-1.0).mul_(w)
            if bool(alpha.max() >= ALPHA_MAX):
                g_s.masked_fill_(alpha >= ALPHA_MAX, 0.0)
            g_q.index_copy_(1, flat, torch.mm(g_s.reshape(B * L, P), mono.T).T)

        _for_each(one_chunk, pairs.chunks(ctx.budget, ctx.reached))
        # s = log o − ½a(x−mx)² − ½c(y−my)² − b(x−mx)(y−my), expanded in monomials of (x, y):
        #   dL/dmx = −g0 (a mx + b my) + g1 a + g2 b      dL/dmy = −g0 (c my + b mx) + g1 b + g2 c
        #   dL/da = −½ g0 mx² + g1 mx − ½ g3             dL/dc = −½ g0 my² + g2 my − ½ g4
        #   dL/db = −g0 mx my + g1 my + g2 mx − g5         dL/do = g0 / o
        # evaluated term by term in this order (the same roundings as the formulas), in place on
        # contiguous rows (one per quantity, a column per pair), into g_pair's first six.
        a, b, c, mx, my = pairs.a, pairs.b, pairs.c, pairs.mx, pairs.my
        g0, g1, g2, g3, g4, g5 = g_q[:, :n]
        r_mx, r_my, r_a, r_b, r_c, r_o = g_pair[:6, :n]
        ng0, half_g0, t = -g0, g0 * -0.5, torch.empty_like(g0)
        torch.mul(a, mx, out=r_mx).add_(torch.mul(b, my, out=t)).mul_(ng0)
        r_mx.add_(torch.mul(g1, a, out=t)).add_(torch.mul(g2, b, out=t))
        torch.mul(c, my, out=r_my).add_(torch.mul(b, mx, out=t)).mul_(ng0)
        r_my.add_(torch.mul(g1, b, out=t)).add_(torch.mul(g2, c, out=t))
        torch.mul(half_g0, mx, out=r_a).mul_(mx).add_(torch.mul(g1, mx, out=t))
        r_a.sub_(torch.mul(g3, 0.5, out=t))
        torch.mul(half_g0, my, out=r_c).mul_(my).add_(torch.mul(g2, my, out=t))
        r_c.sub_(torch.mul(g4, 0.5, out=t))
        torch.mul(ng0, mx, out=r_b).mul_(my).add_(torch.mul(g1, my, out=t))
        r_b.add_(torch.mul(g2, mx, out=t)).sub_(g5)
        torch.div(g0, pairs.o, out=r_o)
        g = torch.zeros(6 + C, m, dtype=dt).index_add_(1, pairs.gids, g_pair[:, :n])  # one scatter
        return g[0:2].T, g[2:5].T, g[5], g[6:].T, None, None, None, None, None, None


def _inside_mask(pairs, dtype):
    """(tiles, P) 1 for pixels inside the image (edge tiles may stick out)."""
    t = pairs.tile
    ar = torch.arange(t)
    cols = torch.arange(pairs.tw)[:, None] * t + ar  # (tw, t)
    rows = torch.arange(pairs.th)[:, None] * t + ar
    ok = (rows[:, None, :, None] < pairs.height) & (cols[None, :, None, :] < pairs.width)  # (th, tw, t, t)
    return ok.reshape(pairs.th * pairs.tw, t * t).to(dtype)


def rasterize_tiles(
    means2d, conics, opacities, feats, radii, depths, width, height, *, tile=None, budget=None
):
    """Composite visible Gaussians (every row must have radii > 0 and opacity ≥ 1/255).

    Returns ``(out (H, W, C), n_pairs, weight_sum (M,))``; ``weight_sum`` is each Gaussian's total
    blending weight over the image's pixels (no gradient)."""
    tile = TILE_SIZE if tile is None else tile
    budget = CHUNK_BUDGET if budget is None else budget
    out, wsum, n = _RasterizeFn.apply(
        means2d, conics, opacities, feats, radii, depths.detach(), width, height, tile, budget
    )
    return out, int(n), wsum
