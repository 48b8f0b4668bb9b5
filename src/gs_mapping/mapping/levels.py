"""Octree levels of detail (ProGS's coarse-to-fine idea), for progressive sharing.

Level l (0 = coarsest) has voxels of edge ``base_voxel_m / 2^l`` on a fixed grid in the map frame,
so every level-(l+1) voxel lies in exactly one level-l voxel (an octree: a child is its parent plus
an octant). A level-l voxel holds at most one level-l Gaussian: a new Gaussian takes the coarsest
level whose voxel around it has none yet, else the finest level (which is unbounded). So level l
holds about one Gaussian per occupied voxel of its size, the coarse levels are sparse and spread
evenly over the surfaces, and a receiver that decodes levels 0..l first gets an even, sparse
cover of the whole map — the prefix a progressive codec sends first.

Among several new Gaussians falling in the same free voxel, the one nearest the voxel centre takes
it (ties: the earlier row), so the assignment is deterministic and the coarse set is regular.
Occupancy is recomputed from the current positions of the existing Gaussians (they move during
optimisation; a pruned coarse Gaussian frees its voxel for later seeds).

A coarse seed on a surface hands its level to an extra disc at its place (:func:`coarse_discs`) and
goes to the finest level itself, so the full map keeps every seed as seeded, the discs besides.

Densification (densify.py): a clone is a new Gaussian one level finer than its source (the source
keeps its own level); a split's first child inherits the parent's level (it takes the parent's
place) and the second goes one level finer, so densifying never changes how many Gaussians the
coarse levels hold.

The multi-level loss (optimizer.py) renders :class:`LevelSubset` views of the working copy: only the
rows of levels <= l, as index views of the same leaf tensors, so gradients reach only those rows.
"""

from __future__ import annotations

import numpy as np
import torch

from .mapper_config import LevelsConfig


def voxel_keys(means: np.ndarray, voxel: float) -> np.ndarray:
    """(N, 3) → (N,) int64 keys of the cells floor(mean / voxel) (21 bits per axis)."""
    ijk = np.floor(np.asarray(means, np.float64) / voxel).astype(np.int64)
    u = (ijk + (1 << 20)) & ((1 << 21) - 1)
    return (u[:, 0] << 42) | (u[:, 1] << 21) | u[:, 2]


def assign_levels(
    new_means: np.ndarray,
    cfg: LevelsConfig,
    existing_means: np.ndarray | None = None,
    existing_levels: np.ndarray | None = None,
) -> np.ndarray:
    """Levels (uint8) of new Gaussians at ``new_means`` given the map's existing Gaussians."""
    n = len(new_means)
    out = np.full(n, cfg.count - 1, np.uint8)
    if n == 0 or cfg.count <= 1:
        return np.zeros(n, np.uint8) if cfg.count <= 1 else out
    new_means = np.asarray(new_means, np.float64)
    free = np.ones(n, bool)  # not yet given a coarse level
    for lvl in range(cfg.count - 1):
        idx = np.nonzero(free)[0]
        if len(idx) == 0:
            break
        voxel = cfg.base_voxel_m / 2**lvl
        keys = voxel_keys(new_means[idx], voxel)
        if existing_means is not None and len(existing_means):
            taken = voxel_keys(np.asarray(existing_means)[np.asarray(existing_levels) == lvl], voxel)
            ok = ~np.isin(keys, taken)
            idx, keys = idx[ok], keys[ok]
        if len(idx) == 0:
            continue
        centre = (np.floor(new_means[idx] / voxel) + 0.5) * voxel
        dist = np.linalg.norm(new_means[idx] - centre, axis=1)
        order = np.lexsort((idx, dist, keys))  # by voxel, then nearest the centre, then row
        first = np.ones(len(order), bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        winners = idx[order[first]]
        out[winners] = lvl
        free[winners] = False
    return out


def depth_normals(depth: np.ndarray, camera, step: int) -> np.ndarray:
    """(H, W, 3) unit surface normals in the map frame from a depth image (central differences
    ``step`` pixels apart; zero where a neighbour has no depth)."""
    pts = camera.backproject(depth)
    valid = depth > 0
    k = max(int(step), 1)
    du = np.zeros_like(pts)
    dv = np.zeros_like(pts)
    du[:, k:-k] = pts[:, 2 * k :] - pts[:, : -2 * k]
    dv[k:-k] = pts[2 * k :] - pts[: -2 * k]
    ok = np.zeros_like(valid)
    ok[k:-k, k:-k] = (
        valid[k:-k, 2 * k :] & valid[k:-k, : -2 * k] & valid[2 * k :, k:-k] & valid[: -2 * k, k:-k]
    )
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok &= norm[..., 0] > 0
    return np.where(ok[..., None], n / np.maximum(norm, 1e-12), 0.0)


def coarse_discs(
    seeds: dict[str, np.ndarray], levels: np.ndarray, normals: np.ndarray, cfg: LevelsConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Seeds and levels with one extra Gaussian per coarse seed (level < count-1) that has a normal:
    a disc at the seed's place and colour, in the surface plane (normal from depth), with in-plane
    standard deviation ``coarse_scale`` · its voxel edge and opacity ``coarse_opacity``, taking the
    seed's coarse level; the seed itself keeps its shape and goes to the finest level. So levels
    <= l alone cover the surfaces (the multi-level loss raises the discs' opacity where they must),
    while the full map keeps every seed as it was: a disc replacing its seed at the seed's opacity
    put its far half in front of the surface (the rasteriser sorts by, and renders, a Gaussian's
    centre depth over its whole footprint), the full render's depth biased toward the camera. The
    disc's thickness is the seed's; seeds without a normal (depth edges) stay as they are."""
    if cfg.coarse_scale <= 0 or cfg.count <= 1:
        return seeds, levels
    rows = np.nonzero((levels < cfg.count - 1) & (np.linalg.norm(normals, axis=1) > 0.5))[0]
    if len(rows) == 0:
        return seeds, levels
    n = normals[rows] * np.where(normals[rows, 2:3] < 0, -1.0, 1.0)  # a disc is symmetric; keep n_z >= 0
    # rotation taking the local z axis onto n: axis z × n, quaternion (x, y, z, w) ∝ (-n_y, n_x, 0, 1 + n_z)
    q = np.stack([-n[:, 1], n[:, 0], np.zeros(len(n)), 1.0 + n[:, 2]], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    voxel = cfg.base_voxel_m / 2.0 ** levels[rows].astype(np.float64)
    thick = seeds["log_scales"][rows, 2]
    plane = np.maximum(np.log(cfg.coarse_scale * voxel), thick)
    disc = {k: v[rows].copy() for k, v in seeds.items()}
    disc["quats"] = q.astype(np.float32)
    disc["log_scales"] = np.stack([plane, plane, thick], axis=1).astype(np.float32)
    disc["opacity_logits"][:] = np.log(cfg.coarse_opacity / (1.0 - cfg.coarse_opacity))
    out = np.array(levels, copy=True)
    out[rows] = cfg.count - 1
    return {k: np.concatenate([seeds[k], disc[k]]) for k in seeds}, np.concatenate([out, levels[rows]])


def finer(levels: np.ndarray, count: int) -> np.ndarray:
    """One level finer (capped at the finest)."""
    return np.minimum(np.asarray(levels, np.int64) + 1, max(count - 1, 0)).astype(np.uint8)


class LevelSubset:
    """The rows of a :class:`~.params.TorchGaussians` with level <= ``max_level``, renderable like
    the whole (``activated()``); indexing keeps the graph, so gradients reach only these rows."""

    def __init__(self, params, max_level: int):
        self.params = params
        rows = np.nonzero(params.levels <= max_level)[0]
        self.index = torch.as_tensor(rows, dtype=torch.long, device=params.device)

    def __len__(self) -> int:
        return len(self.index)

    def activated(self) -> tuple[torch.Tensor, ...]:
        return tuple(t[self.index] for t in self.params.activated())


def level_fractions(levels: np.ndarray, count: int) -> list[float]:
    """Fraction of the Gaussians at each level 0..count-1."""
    n = max(len(levels), 1)
    return [float(np.sum(np.asarray(levels) == lvl)) / n for lvl in range(count)]
