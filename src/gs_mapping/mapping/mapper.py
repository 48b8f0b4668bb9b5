"""The incremental mapper: frames in, a growing GaussianMap out.

Per mapping frame: validate depth → keyframe decision → (keyframe) seed new Gaussians where the map
does not explain the frame → optimise the sliding window → densify / prune / cap → sync the torch
working copy into :attr:`IncrementalMapper.gmap` (add / update / remove by id), so
``mapper.gmap.take_changes()`` yields exactly what changed for the codec.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..camera import Camera
from ..device import resolve_device
from ..gaussians import GaussianMap
from .densify import GradAccumulator, densify, enforce_cap, prune
from .frames import Frame
from .keyframes import INVALID_DEPTH, KeyframeDecision, KeyframeSelector
from .levels import LevelSubset, assign_levels, coarse_discs, depth_normals
from .mapper_config import MapperConfig
from .metrics import depth_l1, psnr, ssim
from .optimizer import TrainView, WindowOptimizer, make_view
from .params import TorchGaussians
from .seeding import fill_holes, seed_gaussians, seed_pixels, spatial_order, unexplained_mask
from .virtual_views import virtual_views

log = logging.getLogger(__name__)


@dataclass
class MapperStats:
    frames: int = 0
    keyframes: int = 0
    skipped_invalid_depth: int = 0
    invalid_depth_reason: str = ""  # the first skipped frame's
    rejected_steps: int = 0
    steps: int = 0
    seeded: int = 0
    cloned: int = 0
    split: int = 0
    pruned: int = 0
    capped: int = 0
    keyframe_seconds: list[float] = field(default_factory=list)
    # Process CPU time per keyframe: on a shared machine wall time overstates the cost; with one
    # torch thread this is what the keyframe costs on an idle core.
    keyframe_cpu_seconds: list[float] = field(default_factory=list)
    refine_seconds: float = 0.0


class IncrementalMapper:
    def __init__(self, cfg: MapperConfig | None = None, device: str | None = None, rasterize=None):
        self.cfg = cfg or MapperConfig()
        self.device = resolve_device(device or self.cfg.device)
        if rasterize is None:
            from ..render import rasterize  # the suite's renderer (gsplat on CUDA, ours on CPU)
        self._rasterize = rasterize
        self.gmap = GaussianMap(self.cfg.sh_degree, self.cfg.tile_size)
        self.params = TorchGaussians(self.cfg.sh_degree, self.device)
        self.selector = KeyframeSelector(self.cfg.keyframe)
        self.window: deque[TrainView] = deque(maxlen=self.cfg.optim.window)
        self.history: deque[TrainView] = deque(maxlen=max(1, self.cfg.optim.refine_keep))
        vv = self.cfg.virtual_views
        self.virtual: deque[list[TrainView]] = deque(maxlen=vv.keep)  # per keyframe, its virtual views
        self.optimizer = WindowOptimizer(self.cfg.optim, self.render_params, self.cfg.levels)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.stats = MapperStats()

    def load_map(self, gmap: GaussianMap) -> None:
        """Continue mapping from a saved map (ids kept, so deltas stay meaningful to receivers)."""
        from ..errors import MapError

        if gmap.sh_degree != self.cfg.sh_degree:
            raise MapError(
                f"map has SH degree {gmap.sh_degree}, the mapper is configured for "
                f"{self.cfg.sh_degree} (mapper.sh_degree)"
            )
        gmap.tile_size = self.cfg.tile_size
        self.gmap = gmap
        self.params = TorchGaussians.from_map(gmap, self.device)

    # -- rendering ---------------------------------------------------------------------------------
    def render_params(self, params: TorchGaussians, camera: Camera):
        """Differentiable render of the working copy (RenderOutput: colour, depth, alpha, meta).
        Depth is the expected depth (Σ wᵢ zᵢ / Σ wᵢ): z where the map is, whatever its coverage."""
        means, quats, scales, opac, sh = params.activated()
        out = self._rasterize(
            means,
            quats,
            scales,
            opac,
            sh,
            torch.as_tensor(camera.T_cam_map.copy(), dtype=torch.float32, device=self.device),
            torch.as_tensor(camera.K.copy(), dtype=torch.float32, device=self.device),
            camera.width,
            camera.height,
            sh_degree=self.cfg.sh_degree,
            backend=self.cfg.backend,
        )
        return out

    def render(
        self, camera: Camera, max_level: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render the current map (numpy colour, depth, alpha), or only its levels <= ``max_level``;
        blank for an empty map."""
        params = self.params if max_level is None else LevelSubset(self.params, max_level)
        if len(params) == 0:
            h, w = camera.height, camera.width
            return np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        with torch.no_grad():
            out = self.render_params(params, camera)
        return (out.color.clamp(0, 1).cpu().numpy(), out.depth.cpu().numpy(), out.alpha.cpu().numpy())

    # -- mapping -----------------------------------------------------------------------------------
    def depth_is_valid(self, frame: Frame) -> bool:
        return self.depth_problem(frame) is None

    def depth_problem(self, frame: Frame) -> str | None:
        """Why a frame's depth cannot be mapped (too few pixels within [min_depth_m, max_depth_m]),
        or None."""
        d, cfg = frame.depth, self.cfg
        if d.shape != frame.rgb.shape[:2]:
            return (
                f"depth image is {d.shape[1]}x{d.shape[0]}, colour {frame.rgb.shape[1]}x{frame.rgb.shape[0]}"
            )
        ok = np.isfinite(d) & (d >= cfg.min_depth_m) & (d <= cfg.max_depth_m)
        if ok.mean() >= cfg.min_valid_depth_fraction:
            return None
        why = (
            f"{100 * float(ok.mean()):.0f}% of its pixels within [{cfg.min_depth_m}, {cfg.max_depth_m}] m "
            f"(mapper.min_valid_depth_fraction {cfg.min_valid_depth_fraction})"
        )
        measured = d[np.isfinite(d) & (d > 0)]
        if measured.size:
            median = float(np.median(measured))
            why += f"; median depth {median:.3g} m"
            if median > 100 * cfg.max_depth_m:
                why += " (millimetres in a 32FC1 image? 32FC1 depth is metres, 16UC1 millimetres)"
        return why

    def add_frame(self, frame: Frame) -> KeyframeDecision:
        """Feed one mapping frame (never a held-out one). Invalid depth: skipped and counted."""
        problem = self.depth_problem(frame)
        if problem is not None:
            self.stats.skipped_invalid_depth += 1
            self.stats.invalid_depth_reason = self.stats.invalid_depth_reason or problem
            # counted here, said by the caller once (map's summary, the node's /diagnostics): a
            # camera with the wrong depth unit would otherwise log a line a frame
            log.debug(f"frame at {frame.stamp_ns} ns: depth unusable: {problem}: skipped")
            return KeyframeDecision(False, f"{INVALID_DEPTH}: {problem}")
        self.stats.frames += 1
        depth = self._clean_depth(frame.depth)
        decision = self.selector.decide(frame.camera, depth)
        if decision.is_keyframe:
            t0, c0 = time.perf_counter(), time.process_time()
            self._map_keyframe(frame, depth)
            self.stats.keyframe_seconds.append(time.perf_counter() - t0)
            self.stats.keyframe_cpu_seconds.append(time.process_time() - c0)
            self.stats.keyframes += 1
        return decision

    def _clean_depth(self, depth: np.ndarray) -> np.ndarray:
        ok = np.isfinite(depth) & (depth >= self.cfg.min_depth_m) & (depth <= self.cfg.max_depth_m)
        return np.where(ok, depth, 0.0).astype(np.float32)

    def _map_keyframe(self, frame: Frame, depth: np.ndarray) -> None:
        cfg = self.cfg
        # 1. seed where the map does not explain this view
        sdepth = fill_holes(depth, cfg.seeding.fill_holes_px)
        if len(self.params):
            _, rd, alpha = self.render(frame.camera)
            mask = unexplained_mask(alpha, rd, sdepth, cfg.seeding)
        else:
            mask = unexplained_mask(None, None, sdepth, cfg.seeding)
        seeds = seed_gaussians(frame.rgb, sdepth, frame.camera, mask, cfg.seeding, cfg.sh_degree)
        new_levels = assign_levels(seeds["means"], cfg.levels, self.params.numpy("means"), self.params.levels)
        if cfg.levels.coarse_scale > 0 and cfg.levels.count > 1 and len(new_levels):
            v, u = seed_pixels(mask, cfg.seeding.stride)
            seeds, new_levels = coarse_discs(
                seeds, new_levels, depth_normals(sdepth, frame.camera, cfg.seeding.stride)[v, u], cfg.levels
            )
        order = spatial_order(seeds["means"], new_levels)  # ids follow the codec's octree order
        seeds = {k: v[order] for k, v in seeds.items()}
        new_levels = new_levels[order]
        self.params.append(**seeds)
        if len(new_levels):
            self.params.levels[-len(new_levels) :] = new_levels
        self.stats.seeded += len(seeds["means"])
        self.stats.capped += enforce_cap(self.params, cfg.max_gaussians)
        # 2. optimise the window
        view = make_view(frame.rgb, depth, frame.camera, cfg.optim.render_scale, self.device)
        older = [v for v in self.history if all(v is not w for w in self.window)]
        self.window.append(view)
        self.history.append(view)
        k = min(cfg.optim.random_history, len(older))
        extra = [older[i] for i in self.rng.choice(len(older), size=k, replace=False)] if k else []
        vv = cfg.virtual_views
        if vv.enabled:
            self.virtual.append(
                virtual_views(
                    list(self.window)[-vv.sources :], vv.offsets_m, vv.weight, vv.occlusion_tolerance
                )
            )
        iters = cfg.optim.first_iterations if self.stats.keyframes == 0 else cfg.optim.iterations
        acc = GradAccumulator(len(self.params))
        st = self.optimizer.run(
            self.params,
            extra + list(self.window),
            iters,
            self.rng,
            acc,
            [v for vs in self.virtual for v in vs] if vv.enabled else None,
            vv.every,
        )
        seen = acc.weight > 0
        self.params.contrib[seen] = np.where(
            np.isfinite(self.params.contrib[seen]),
            np.maximum(self.params.contrib[seen], acc.weight[seen]),
            acc.weight[seen],
        )
        self.stats.steps += st["steps"]
        self.stats.rejected_steps += st["rejected"]
        # 3. densify / prune / cap
        if cfg.densify.enabled:
            d = densify(
                self.params, acc, frame.camera.T_map_cam[:3, 3], cfg.densify, self.rng, cfg.levels.count
            )
            self.stats.cloned += d["cloned"]
            self.stats.split += d["split"]
        self.stats.pruned += prune(self.params, cfg.densify)
        self.stats.capped += enforce_cap(self.params, cfg.max_gaussians)
        # 4. publish into the shared container
        self.params.sync_to(self.gmap)

    def refine_steps(self) -> int:
        """The iterations :meth:`finish` will run (0: none), for a progress report of them."""
        it = self.cfg.optim.refine_iterations
        return it if it > 0 and self.history and len(self.params) else 0

    def finish(self, on_step: Callable[[], object] | None = None) -> None:
        """Final refinement over the kept keyframes (uniformly sampled), then sync; ``on_step``
        after each of its iterations."""
        it = self.cfg.optim.refine_iterations
        if it <= 0 or not self.history or len(self.params) == 0:
            return
        t0 = time.perf_counter()
        views = list(self.history)
        saved = self.optimizer.cfg.newest_fraction
        self.optimizer.cfg.newest_fraction = 1.0 / len(views)
        try:
            st = self.optimizer.run(self.params, views, it, self.rng, on_step=on_step)
        finally:
            self.optimizer.cfg.newest_fraction = saved
        self.stats.steps += st["steps"]
        self.stats.rejected_steps += st["rejected"]
        self.stats.pruned += prune(self.params, self.cfg.densify)
        self.params.sync_to(self.gmap)
        self.stats.refine_seconds = time.perf_counter() - t0

    def memory_bytes(self) -> dict[str, int]:
        """Bytes the mapper holds, by part (what a hard cap must bound; the process's RSS adds the
        interpreter, torch and allocator slack): parameters with their optimiser state, the shared
        container with its change record, and the kept keyframes' images."""

        def tensors(*ts):
            return sum(t.numel() * t.element_size() for t in ts if t is not None)

        p = self.params
        par = tensors(*p.parameters().values(), *p.adam_m.values(), *p.adam_v.values(), p.adam_t)
        par += p.levels.nbytes + p.contrib.nbytes
        return {
            "params": par,
            "map": self.gmap.nbytes(),
            "keyframes": sum(tensors(v.rgb, v.depth, v.mask) for v in self._views()),
        }

    def _views(self) -> list[TrainView]:
        """Every kept view once (the window's are in the history too), virtual ones included."""
        views = {id(v): v for v in [*self.window, *self.history, *(v for vs in self.virtual for v in vs)]}
        return list(views.values())

    def hold_apart(self, ids: np.ndarray) -> None:
        """Hold the Gaussians with these ids apart: they lie in another frame than the poses the
        mapper is given from now on (a map loaded in TF's ``map`` while a live mapper maps in its
        first frame's pose, no ``map`` yet). Until :meth:`move_map` brings the rest to them they are
        not drawn (``TorchGaussians.hidden_ids``), so no view is taken as explained by them nor
        optimises them, and they stay in :attr:`gmap` (sent, saved) as they were."""
        self.params.hidden_ids = np.asarray(ids, np.uint64).copy()

    def move_map(self, T_new_old: np.ndarray) -> None:
        """Move what was built in the poses' frame into another by one rigid transform (a live
        mapper anchored to its first pose, once a localisation that started late gives TF's
        ``map``): the Gaussians with their optimiser state (:meth:`TorchGaussians.move`), the kept
        views' poses, the keyframe selector's reference; :attr:`gmap` follows by its change record
        (every moved Gaussian updated), so the next delta moves the receivers' map too. Gaussians
        held apart (:meth:`hold_apart`: already in the new frame) stay where they are and are drawn
        again: one frame from now on. The levels hold no positions (a new seed's level is chosen
        from the means as they are then)."""
        T = np.asarray(T_new_old, np.float64)
        self.params.move(T, ~np.isin(self.params.ids, self.params.hidden_ids))
        self.params.hidden_ids = np.zeros(0, np.uint64)
        for view in self._views():
            view.camera = view.camera.with_pose(T @ view.camera.T_map_cam)
        self.selector.move(T)
        self.params.sync_to(self.gmap)

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, frame: Frame) -> dict:
        """Render ``frame``'s view; PSNR/SSIM against its colour, depth L1 on valid measured depth."""
        color, depth, alpha = self.render(frame.camera)
        valid = self._clean_depth(frame.depth)
        out = {
            "stamp_ns": frame.stamp_ns,
            "psnr": psnr(color, frame.rgb),
            "ssim": ssim(color, frame.rgb),
            "depth_l1_m": depth_l1(np.where(valid > 0, depth, np.nan), valid),
            "coverage": float(np.mean(alpha > 0.5)),
            "rendered": color,
        }
        if self.cfg.levels.count > 1:  # progressive prefixes: levels <= l (the last = the whole map)
            out["psnr_levels"] = [
                psnr(self.render(frame.camera, lvl)[0], frame.rgb) for lvl in range(self.cfg.levels.count - 1)
            ] + [out["psnr"]]
        return out
