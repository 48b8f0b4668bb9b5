"""The mapper's working copy of the Gaussians as torch leaf tensors, and its sync into a GaussianMap.

Optimisation needs torch tensors with gradients; the rest of the suite (codec, PLY, ROS) needs the
one container, :class:`~gs_mapping.gaussians.GaussianMap`, with stable ids and change tracking. The
mapper edits the torch copy freely during a keyframe (steps, new seeds, clones, prunes) and calls
:meth:`TorchGaussians.sync_to` once per keyframe, which turns the difference into ``add`` /
``update`` / ``remove`` calls by id, so ``take_changes()`` yields exactly what the codec must send.

Row order invariant: rows with an id come first, in ascending id order (as in the map); rows added
since the last sync (id 0) follow in creation order. Pruning keeps order, appends go last, so after
the map removes the pruned ids and appends the new rows, map rows and torch rows line up again.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MapError
from ..gaussians import GaussianMap, unit_quaternions
from ..geometry import matrix_to_quat, quat_multiply
from ..render.sh import sh_rotation

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _turned(x: torch.Tensor, M: np.ndarray, offset: np.ndarray | None = None) -> torch.Tensor:
    """Rows of ``x`` (N, k, …) with ``M`` (k, k) applied to their coordinates (axis 1), plus
    ``offset`` (k,), in float64."""
    out = torch.einsum("kj,nj...->nk...", torch.as_tensor(M, device=x.device), x.double())
    if offset is not None:
        out = out + torch.as_tensor(offset, device=x.device)
    return out.to(x.dtype)


class TorchGaussians:
    def __init__(self, sh_degree: int, device: str | torch.device = "cpu"):
        self.sh_degree = sh_degree
        self.num_sh = (sh_degree + 1) ** 2
        self.device = torch.device(device)
        z = lambda *s: torch.zeros(s, dtype=torch.float32, device=self.device)  # noqa: E731
        self.means, self.quats, self.log_scales = z(0, 3), z(0, 4), z(0, 3)
        self.opacity_logits, self.sh = z(0), z(0, self.num_sh, 3)
        self.levels = np.zeros(0, np.uint8)
        self.ids = np.zeros(0, np.uint64)  # 0 = not yet in the map
        # Largest blending weight seen in an optimised view (inf = not rendered yet); for the cap.
        self.contrib = np.zeros(0)
        # Rows with these ids are not drawn (:meth:`activated` gives them opacity 0, which every
        # renderer culls): no view is explained by them, no gradient reaches them (see IncrementalMapper.hold_apart).
        self.hidden_ids = np.zeros(0, np.uint64)
        # Adam moments and per-row step counts, kept across keyframes and carried through
        # append/keep (see RowAdam).
        self.adam_m = {n: torch.zeros_like(getattr(self, n)).detach() for n in FIELDS}
        self.adam_v = {n: torch.zeros_like(getattr(self, n)).detach() for n in FIELDS}
        self.adam_t = torch.zeros(0, device=self.device)
        for name in FIELDS:
            getattr(self, name).requires_grad_(True)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_map(cls, gmap: GaussianMap, device="cpu") -> TorchGaussians:
        out = cls(gmap.sh_degree, device)
        out._set({n: torch.as_tensor(getattr(gmap, n).copy(), device=out.device) for n in FIELDS})
        out.ids = gmap.ids.copy()
        out.levels = gmap.levels.copy()
        out.contrib = np.full(len(gmap), np.inf)
        out._reset_adam()
        return out

    def _reset_adam(self) -> None:
        self.adam_m = {n: torch.zeros_like(getattr(self, n)).detach() for n in FIELDS}
        self.adam_v = {n: torch.zeros_like(getattr(self, n)).detach() for n in FIELDS}
        self.adam_t = torch.zeros(len(self), device=self.device)

    def parameters(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in FIELDS}

    def _set(self, values: dict[str, torch.Tensor]) -> None:
        for name in FIELDS:
            t = values[name].detach().to(self.device, torch.float32).contiguous()
            setattr(self, name, t.requires_grad_(True))

    def activated(self) -> tuple[torch.Tensor, ...]:
        """(means, unit quats xyzw, scales, opacities, sh) as the renderer takes them."""
        q = self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        opacity = torch.sigmoid(self.opacity_logits)
        if len(self.hidden_ids):
            opacity = opacity * torch.as_tensor(~np.isin(self.ids, self.hidden_ids), device=self.device)
        return self.means, q, torch.exp(self.log_scales), opacity, self.sh

    # -- structural edits (between optimisation steps; optimisers must be rebuilt after) -----------
    def append(self, means, quats, log_scales, opacity_logits, sh) -> None:
        new = {
            "means": means,
            "quats": quats,
            "log_scales": log_scales,
            "opacity_logits": opacity_logits,
            "sh": sh,
        }
        n = len(np.asarray(means))
        if n == 0:
            return
        with torch.no_grad():
            self._set(
                {
                    k: torch.cat(
                        [
                            getattr(self, k).detach(),
                            torch.as_tensor(np.asarray(v), dtype=torch.float32, device=self.device).reshape(
                                (n,) + tuple(getattr(self, k).shape[1:])
                            ),
                        ]
                    )
                    for k, v in new.items()
                }
            )
        self.ids = np.concatenate([self.ids, np.zeros(n, np.uint64)])
        self.levels = np.concatenate([self.levels, np.zeros(n, np.uint8)])
        self.contrib = np.concatenate([self.contrib, np.full(n, np.inf)])
        for st in (self.adam_m, self.adam_v):
            for k in FIELDS:
                st[k] = torch.cat([st[k], torch.zeros((n,) + st[k].shape[1:], device=self.device)])
        self.adam_t = torch.cat([self.adam_t, torch.zeros(n, device=self.device)])

    def keep(self, mask) -> None:
        """Keep rows where ``mask`` is true (order preserved)."""
        m = np.asarray(mask, bool)
        if m.all():
            return
        tm = torch.as_tensor(m, device=self.device)
        self._set({n: getattr(self, n).detach()[tm] for n in FIELDS})
        self.ids = self.ids[m]
        self.levels = self.levels[m]
        self.contrib = self.contrib[m]
        for st in (self.adam_m, self.adam_v):
            for k in FIELDS:
                st[k] = st[k][tm]
        self.adam_t = self.adam_t[tm]

    @torch.no_grad()
    def move(self, T_new_old: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Move every Gaussian (or those where the mask ``rows`` is true; the others stay as they
        are) into another frame by the rigid transform ``T_new_old`` (4x4): means,
        rotations and SH coefficients (the view-dependent colour turns with the scene), and their
        Adam state. The first moment is a running mean of the gradients, linear in them: it turns
        as they do, exactly. The second is per coordinate, which a rotation mixes: each coordinate
        of a row gets the sum over the ones mixed with it (a squared norm bounds every rotated
        coordinate's square), so no step after the move is larger than Adam would take with the
        true moment; a reset would give m / √v with v = 0, a step of lr · 10¹⁵."""
        R, t = np.asarray(T_new_old, np.float64)[:3, :3], np.asarray(T_new_old, np.float64)[:3, 3]
        q_R = matrix_to_quat(R)
        bands = [slice(b * b, (b + 1) ** 2) for b in range(self.sh_degree + 1)]
        turns = {  # field → (matrix acting on its coordinates, the groups of coordinates it mixes)
            "means": (R, [slice(0, 3)]),
            "quats": (quat_multiply(q_R, np.eye(4)).T, [slice(0, 4)]),  # L @ q = q_R ⊗ q
            "sh": (sh_rotation(self.sh_degree, R), bands),
        }
        moving = torch.ones(len(self), dtype=torch.bool, device=self.device)
        if rows is not None:
            moving = torch.as_tensor(np.asarray(rows, bool), device=self.device)
        values = {n: getattr(self, n).detach() for n in FIELDS}
        for name, (M, groups) in turns.items():
            x, m, v = values[name].clone(), self.adam_m[name].clone(), self.adam_v[name][moving]
            x[moving] = _turned(values[name][moving], M, t if name == "means" else None)
            m[moving] = _turned(m[moving], M)
            for g in groups:
                v[:, g] = v[:, g].sum(dim=1, keepdim=True).expand_as(v[:, g])
            values[name], self.adam_m[name] = x, m
            self.adam_v[name] = self.adam_v[name].clone()
            self.adam_v[name][moving] = v
        self._set(values)

    def numpy(self, name: str) -> np.ndarray:
        return getattr(self, name).detach().cpu().numpy()

    # -- sync ---------------------------------------------------------------------------------------
    def sync_to(self, gmap: GaussianMap) -> dict[str, int]:
        """Make ``gmap`` equal to this working copy through add/update/remove by id."""
        known = self.ids != 0
        if np.any(~known[:-1] & known[1:]) if len(known) > 1 else False:
            raise MapError("mapper rows out of order: new Gaussians must follow mapped ones")
        live = self.ids[known]
        removed = np.setdiff1d(gmap.ids, live, assume_unique=True)
        if len(removed):
            gmap.remove(removed)
        if not np.array_equal(gmap.ids, live):
            raise MapError("mapper working copy holds ids the map does not know")
        values = {n: self.numpy(n) for n in FIELDS}
        # The container stores unit rotations; compare like with like, or every row looks changed.
        values["quats"] = unit_quaternions(values["quats"], len(values["quats"]))
        n_known = int(known.sum())
        changed = np.zeros(n_known, bool)
        for name in FIELDS:
            a = values[name][:n_known].reshape(n_known, -1 if n_known else 1)
            b = getattr(gmap, name).reshape(n_known, -1 if n_known else 1)
            changed |= np.any(a != b, axis=1)
        if changed.any():
            gmap.update(live[changed], **{n: values[n][:n_known][changed] for n in FIELDS})
        new_ids = gmap.add(*(values[n][n_known:] for n in FIELDS), levels=self.levels[n_known:])
        self.ids[n_known:] = new_ids
        return {"added": len(new_ids), "updated": int(changed.sum()), "removed": len(removed)}


class RowAdam:
    """Adam whose state lives in the :class:`TorchGaussians` rows and survives keyframes.

    Two differences from ``torch.optim.Adam``, both for incremental mapping: (1) the moments are
    kept from keyframe to keyframe and follow rows through seeding, densification and pruning — a
    fresh Adam per keyframe would take its bias-corrected first steps (≈ lr · sign(grad)) on every
    Gaussian again and again, a random walk that slowly ruins regions the window no longer sees;
    (2) a step only touches rows with a non-zero gradient (visible in the rendered view) and counts
    steps per row, so unseen Gaussians do not drift on stale momentum and new ones start with
    their own bias correction (gsplat's "selective Adam" idea)."""

    def __init__(self, params: TorchGaussians, lrs: dict[str, float], betas=(0.9, 0.999), eps=1e-15):
        self.p = params
        self.lrs = lrs
        self.b1, self.b2 = betas
        self.eps = eps

    def zero_grad(self) -> None:
        for n in FIELDS:
            getattr(self.p, n).grad = None

    @torch.no_grad()
    def step(self) -> None:
        p = self.p
        grads = {n: getattr(p, n).grad for n in FIELDS}
        rows = torch.zeros(len(p), dtype=torch.bool, device=p.device)
        for g in grads.values():
            if g is not None:
                rows |= g.reshape(len(p), -1).ne(0).any(dim=1)
        if not rows.any():
            return
        idx = torch.nonzero(rows).flatten()
        p.adam_t[idx] += 1
        t = p.adam_t[idx]
        c1 = 1 - self.b1**t
        c2 = 1 - self.b2**t
        for n in FIELDS:
            g = grads[n]
            lr = self.lrs.get(n, 0.0)
            if g is None or lr == 0:
                continue
            g = g[idx]
            shape = (-1,) + (1,) * (g.ndim - 1)
            m = p.adam_m[n][idx] * self.b1 + (1 - self.b1) * g
            v = p.adam_v[n][idx] * self.b2 + (1 - self.b2) * g * g
            p.adam_m[n][idx] = m
            p.adam_v[n][idx] = v
            upd = (m / c1.view(shape)) / ((v / c2.view(shape)).sqrt() + self.eps)
            getattr(p, n).data[idx] -= lr * upd
