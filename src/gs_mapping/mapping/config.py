"""Configuration of the incremental mapper (section ``mapper`` of ``config/full.yaml``).

Defaults are tuned on the real 7-Scenes kitchen bag (320×240 RGB-D, CPU); see bench/mapping.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass
class TopicsConfig:
    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_rect_raw"
    camera_info: str = "/camera/color/camera_info"
    tf: str = "/tf"
    tf_static: str = "/tf_static"
    map_frame: str = "map"
    # Colour/depth pairs further apart than this are not matched.
    sync_slop_s: float = 0.02
    # A pose lookup may use the nearest TF sample this far outside the TF data (else: no pose).
    tf_tolerance_s: float = 0.05


@dataclass
class KeyframeConfig:
    """A frame becomes a keyframe when it moved enough, or when it sees enough that the last
    keyframe did not (view overlap), or when too many frames passed since the last one."""

    min_translation_m: float = 0.05
    min_rotation_deg: float = 5.0
    # Fraction of the last keyframe's depth points still inside this view below which it is new.
    min_overlap: float = 0.9
    # Force a keyframe after this many mapping frames without one (0 = never force).
    max_gap: int = 1


@dataclass
class SeedingConfig:
    """New Gaussians where the map does not explain the frame."""

    # Pixel grid step for new Gaussians (1 = one per pixel).
    stride: int = 3
    # A pixel is unexplained where rendered alpha is below this ...
    alpha_threshold: float = 0.6
    # ... or where the rendered depth lies this far behind the measured depth (relative).
    depth_behind_ratio: float = 0.1
    # Isotropic standard deviation = scale_factor · stride · depth / focal.
    scale_factor: float = 0.7
    initial_opacity: float = 0.7
    min_depth_m: float = 0.1
    max_depth_m: float = 10.0
    # Pixels without depth up to this many pixels from valid depth are seeded at the nearest valid
    # depth (0 = never): covers the colour image's border beyond the depth camera's view after
    # registration. Their depth is not supervised; colour optimisation moves them.
    fill_holes_px: int = 40


@dataclass
class OptimConfig:
    """Sliding-window optimisation after each keyframe."""

    iterations: int = 27
    # Iterations for the very first keyframe (the map is all new then).
    first_iterations: int = 60
    window: int = 5
    # Older keyframes drawn at random from the kept history into each keyframe's optimisation, so
    # regions the window has left are not forgotten (as in MonoGS / SplaTAM).
    random_history: int = 2
    # Render scale for optimisation (0.5 = half resolution); evaluation is at full resolution.
    # The CPU rasteriser's cost is mostly per Gaussian, so half resolution saves little there.
    render_scale: float = 1.0
    lambda_dssim: float = 0.2
    lambda_depth: float = 0.2
    lr_means: float = 0.0005
    lr_quats: float = 0.002
    lr_log_scales: float = 0.005
    lr_opacity: float = 0.05
    lr_sh: float = 0.005
    # The newest keyframe is sampled this often (the rest of the window shares the remainder).
    newest_fraction: float = 0.4
    # After the last frame: this many iterations over the kept keyframes (0 = none), like the final
    # refinement of RGB-D Gaussian SLAM systems. Counted in the whole-bag time, not per keyframe.
    refine_iterations: int = 400
    # Keyframes kept for random history and the final refinement (oldest dropped: bounded memory).
    refine_keep: int = 200


@dataclass
class DensifyConfig:
    """Our own densify/prune on CPU. Pruning (transparent / oversized) always runs; clone/split is
    off by default: with dense seeding from depth it cost time and gave no held-out gain on the
    kitchen bag (bench/results/mapping.md)."""

    # Clone/split high-gradient Gaussians after each keyframe.
    enabled: bool = False
    # Clone/split Gaussians whose mean-gradient norm (per pixel of footprint) averages above this.
    grad_threshold: float = 0.002
    # Gaussians larger than this fraction of their depth are split, smaller ones cloned.
    split_scale_ratio: float = 0.01
    min_opacity: float = 0.02
    max_scale_m: float = 0.5
    # Densify at most this fraction of the map per keyframe.
    max_fraction: float = 0.01


@dataclass
class VirtualViewConfig:
    """GS-Share's virtual-image enhancement: extra views displaced from the trajectory whose
    targets are the keyframe's RGB-D reprojected into them."""

    enabled: bool = False
    # Lateral (camera x) offsets in metres of the virtual views around each keyframe.
    offsets_m: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    # Loss weight of a virtual view relative to a real one.
    weight: float = 0.3
    # Every n-th iteration renders a virtual view instead of a real one.
    every: int = 4


@dataclass
class MapperConfig:
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    keyframe: KeyframeConfig = field(default_factory=KeyframeConfig)
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    virtual_views: VirtualViewConfig = field(default_factory=VirtualViewConfig)
    # auto = cuda if available, else cpu.
    device: str = "auto"
    # Renderer backend: auto | cpu | cuda | reference (see gs_mapping.render).
    backend: str = "auto"
    sh_degree: int = 0
    # Hard cap on the number of Gaussians: the least contributing are pruned first beyond it.
    max_gaussians: int = 200000
    tile_size: float = 2.0
    # Hold out every n-th frame for evaluation (never used for mapping); 0 = none.
    holdout_every: int = 5
    # Valid depth range (metres); outside is invalid (0 and 65535 mm are invalid anyway).
    min_depth_m: float = 0.1
    max_depth_m: float = 10.0
    # A frame whose valid-depth fraction is below this is skipped as invalid.
    min_valid_depth_fraction: float = 0.2
    # Estimate the colour camera relative to the depth camera from the first mapping frames and
    # register depth to it (for recordings whose depth is not registered to colour; calibration.py).
    calibrate_color: bool = False
    calibration_frames: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
            (self.backend in ("auto", "cpu", "cuda", "reference"),
             f"backend must be auto, cpu, cuda or reference, got {self.backend!r}"),
            (0 <= self.sh_degree <= 3, f"sh_degree must be 0..3, got {self.sh_degree}"),
            (self.max_gaussians > 0, f"max_gaussians must be > 0, got {self.max_gaussians}"),
            (self.holdout_every >= 0, f"holdout_every must be >= 0, got {self.holdout_every}"),
            (self.holdout_every != 1, "holdout_every = 1 would hold out every frame"),
            (self.optim.window >= 1, f"optim.window must be >= 1, got {self.optim.window}"),
            (self.optim.iterations >= 0, "optim.iterations must be >= 0"),
            (0 < self.optim.render_scale <= 1, "optim.render_scale must be in (0, 1]"),
            (self.seeding.stride >= 1, "seeding.stride must be >= 1"),
            (0 < self.seeding.initial_opacity < 1, "seeding.initial_opacity must be in (0, 1)"),
            (0 < self.min_depth_m < self.max_depth_m, "need 0 < min_depth_m < max_depth_m"),
            (self.virtual_views.every >= 1, "virtual_views.every must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"mapper: {msg}")
