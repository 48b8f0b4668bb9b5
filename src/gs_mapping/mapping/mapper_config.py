"""Configuration of the incremental mapper (section ``mapper`` of ``config/full.yaml``).

Defaults are tuned on the real 7-Scenes kitchen bag (320×240 RGB-D, CPU); see bench/mapping.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_file import param
from ..device import is_device_name
from ..errors import ConfigError

AUTO = "auto"  # depth_camera_info: found from the depth topic's name


@dataclass
class TopicsConfig:
    # what realsense-ros 4.55.1+ publishes under its default launch (rs_launch.py: camera_namespace and
    # camera_name "camera"; topics "~/<stream>/…"); `map` and `replay` find a recording's by type
    color: str = param("/camera/camera/color/image_raw", "colour image topic (Image, or CompressedImage)")
    depth: str = param(
        "/camera/camera/depth/image_rect_raw",
        "depth image topic (Image 16UC1 mm / 32FC1 m, or CompressedImage compressedDepth)",
    )
    camera_info: str = param("/camera/camera/color/camera_info", "CameraInfo of the colour camera")
    depth_camera_info: str = param(
        "auto",
        "CameraInfo of the depth camera when depth is not registered to colour: depth is then "
        "reprojected into the colour camera through TF (empty: depth is registered; auto: the depth "
        "topic's sibling camera_info, for depth images in another frame than the colour images' and "
        "whose topic's name does not say registered, as aligned_depth_to_color, depth_registered)",
    )
    depth_registered: bool = param(
        False,
        "The depth images are registered to the colour camera (its pixels and intrinsics, as "
        "realsense's aligned_depth_to_color) whatever frame their header names: no depth CameraInfo "
        "is read, and map and replay take a depth stamped with another frame than the colour's (an "
        "older driver's, stamped with the depth camera's) instead of refusing it. Not with a "
        "depth_camera_info topic.",
    )
    tf: str = param("/tf", "TF topic")
    tf_static: str = param("/tf_static", "static TF topic (latched)")
    map_frame: str = param(
        "map", "fixed frame of the map (REP-105; a tf2 frame id: not empty, no leading '/')"
    )
    sync_slop_s: float = param(
        0.02, "Colour/depth pairs further apart than this are not matched.", (0.0, 1.0)
    )
    tf_tolerance_s: float = param(
        0.05,
        "A pose lookup may use the nearest TF sample this far outside the TF data (else: no pose); a "
        "live node first waits tf_wait_s for the sample after it.",
        (0.0, 10.0),
    )

    def __post_init__(self) -> None:
        """Names ROS 2 and tf2 refuse (and a theora video stream for an image), refused where the
        config is built, before any node or command starts."""
        from ..tf import check_frame_id
        from ..topics import check_topic_parameter, refuse_theora

        for name in ("color", "depth", "camera_info", "tf", "tf_static"):
            if name != "depth" or self.depth:  # (no depth image: a LiDAR cloud gives the geometry)
                check_topic_parameter(f"mapper.topics.{name}", getattr(self, name))
        if self.depth_camera_info not in ("", AUTO):
            check_topic_parameter("mapper.topics.depth_camera_info", self.depth_camera_info)
        refuse_theora(self.color, "mapper.topics.color", "colour")
        refuse_theora(self.depth, "mapper.topics.depth", "depth")
        check_frame_id("mapper.topics.map_frame", self.map_frame)
        if self.depth_registered and self.depth_camera_info not in ("", AUTO):
            raise ConfigError(
                "mapper.topics.depth_registered: true, but mapper.topics.depth_camera_info names the "
                f"depth's own CameraInfo ({self.depth_camera_info}): a registered depth has none; "
                "set one of them"
            )

    def depth_info(self) -> str:
        """The depth camera's CameraInfo topic ('' for a registered depth: ``depth_registered``, or
        an empty ``depth_camera_info``): ``depth_camera_info``, or
        for ``auto`` the one ``map`` finds by name (:func:`~gs_mapping.topics.depth_info_topic`: a
        RealSense's ``depth/image_rect_raw`` by ``depth/camera_info``, ``aligned_depth_to_color`` none),
        used for the depth images :meth:`depth_info_for` says."""
        from ..topics import depth_info_topic

        if self.depth_registered:
            return ""
        return depth_info_topic(self.depth) if self.depth_camera_info == AUTO else self.depth_camera_info

    def depth_info_for(self, depth_frame: str, color_frame: str) -> str:
        """The CameraInfo topic a depth image in ``depth_frame`` is registered by ('' : it is in the
        colour camera's image). ``auto``: :meth:`depth_info` for a depth image in another frame than
        the colour image's; one in the colour's frame is registered (a default left beside a
        recording's registered depth, or a depth topic changed alone to an aligned one, is not
        reprojected with another camera's K)."""
        if self.depth_camera_info == AUTO and depth_frame.strip("/") in ("", color_frame.strip("/")):
            return ""
        return self.depth_info()


@dataclass
class KeyframeConfig:
    """A frame becomes a keyframe when it moved enough, or when it sees enough that the last
    keyframe did not (view overlap), or when too many frames passed since the last one."""

    min_translation_m: float = param(
        0.05, "a frame that moved this far from the last keyframe is a keyframe", (0.0, 100.0)
    )
    min_rotation_deg: float = param(
        5.0, "a frame that turned this far from the last keyframe is a keyframe", (0.0, 180.0)
    )
    min_overlap: float = param(
        0.9,
        "Fraction of the last keyframe's depth points still inside this view below which it is new.",
        (0.0, 1.0),
    )
    max_gap: int = param(
        1,
        "A frame this many mapping frames after the last keyframe is one in any case (1 = every frame; "
        "0 = never force).",
        (0, 10000),
    )


@dataclass
class SeedingConfig:
    """New Gaussians where the map does not explain the frame."""

    stride: int = param(3, "Pixel grid step for new Gaussians (1 = one per pixel).", (1, 64))
    alpha_threshold: float = param(
        0.6, "A pixel is unexplained where rendered alpha is below this ...", (0.0, 1.0)
    )
    depth_behind_ratio: float = param(
        0.1,
        "... or where the rendered depth lies this far behind the measured depth (relative).",
        (0.0, 10.0),
    )
    scale_factor: float = param(
        0.7, "Isotropic standard deviation = scale_factor · stride · depth / focal.", (0.01, 10.0)
    )
    initial_opacity: float = param(0.7, "opacity of newly seeded Gaussians", (0.001, 0.999))
    min_depth_m: float = param(0.1, "nearest depth seeded from", (0.0, 1000.0))
    max_depth_m: float = param(10.0, "farthest depth seeded from", (0.0, 10000.0))
    fill_holes_px: int = param(
        40,
        "Pixels without depth up to this many pixels from valid depth are seeded"
        " at the nearest valid depth (0 = never): covers the colour image's "
        "border beyond the depth camera's view after registration. Their depth "
        "is not supervised; colour optimisation moves them.",
        (0, 1000),
    )


@dataclass
class OptimConfig:
    """Sliding-window optimisation after each keyframe."""

    iterations: int = param(27, "optimiser iterations per keyframe", (0, 100000))
    first_iterations: int = param(
        60, "Iterations for the very first keyframe (the map is all new then).", (0, 100000)
    )
    window: int = param(5, "keyframes in the sliding optimisation window", (1, 1000))
    random_history: int = param(
        2,
        "Older keyframes drawn at random from the kept history into each "
        "keyframe's optimisation, so regions the window has left are not "
        "forgotten (as in MonoGS / SplaTAM).",
        (0, 1000),
    )
    render_scale: float = param(
        1.0,
        "Render scale for optimisation (0.5 = half resolution); evaluation is "
        "at full resolution. The CPU rasteriser's cost is mostly per Gaussian,"
        " so half resolution saves little there.",
        (0.05, 1.0),
    )
    lambda_dssim: float = param(0.2, "weight of D-SSIM in the colour loss (rest: L1)", (0.0, 1.0))
    lambda_depth: float = param(0.2, "weight of the L1 depth loss", (0.0, 100.0))
    lr_means: float = param(0.0005, "Adam learning rate of the means (metres)", (0.0, 1.0))
    lr_quats: float = param(0.002, "Adam learning rate of the rotations", (0.0, 1.0))
    lr_log_scales: float = param(0.005, "Adam learning rate of the log-scales", (0.0, 1.0))
    lr_opacity: float = param(0.05, "Adam learning rate of the opacity logits", (0.0, 10.0))
    lr_sh: float = param(0.005, "Adam learning rate of the SH coefficients", (0.0, 1.0))
    newest_fraction: float = param(
        0.4,
        "The newest keyframe is sampled this often (the rest of the window shares the remainder).",
        (0.0, 1.0),
    )
    refine_iterations: int = param(
        800,
        "After the last frame: this many iterations over the kept keyframes"
        " (0 = none), like the final refinement of RGB-D Gaussian SLAM "
        "systems. Counted in the whole-bag time, not per keyframe.",
        (0, 1000000),
    )
    refine_keep: int = param(
        200,
        "Keyframes kept for random history and the final refinement (oldest dropped: bounded memory).",
        (1, 100000),
    )


@dataclass
class DensifyConfig:
    """Our own densify/prune on CPU. Pruning (transparent / oversized) always runs; clone/split is
    off by default: with dense seeding from depth it cost time and gave no held-out gain on the
    kitchen bag (bench/results/mapping.md)."""

    enabled: bool = param(False, "Clone/split high-gradient Gaussians after each keyframe.")
    grad_threshold: float = param(
        0.002,
        "Clone/split Gaussians whose 2D-mean gradient norm (NDC, as 3DGS's threshold) averages above"
        " this over the views that drew them.",
        (0.0, 1.0),
    )
    split_scale_ratio: float = param(
        0.01, "Gaussians larger than this fraction of their depth are split, smaller ones cloned.", (0.0, 1.0)
    )
    min_opacity: float = param(0.02, "Gaussians more transparent than this are pruned", (0.0, 1.0))
    max_scale_m: float = param(0.5, "Gaussians larger than this (metres) are pruned", (0.0, 1000.0))
    max_fraction: float = param(0.01, "Densify at most this fraction of the map per keyframe.", (0.0, 1.0))


@dataclass
class VirtualViewConfig:
    """GS-Share's virtual-image enhancement: extra views displaced sideways from the trajectory whose
    targets are the RGB-D of the newest keyframes reprojected into them (virtual_views.py). Off by
    default: it is meant for driving (a forward-moving camera whose neighbouring lanes are the views
    that matter; bench/results/mapping_virtual.md); indoors, metre-scale offsets leave the room. The
    other defaults are the best settings measured on the driving world."""

    enabled: bool = param(
        False,
        "GS-Share virtual-view enhancement on/off: meant for driving (metre offsets "
        "to the neighbouring lanes), not indoors.",
    )
    offsets_m: list[float] = param(
        [-2.0, -1.0, 1.0, 2.0],
        "Lateral (camera x) offsets in metres of the virtual views around each keyframe.",
    )
    weight: float = param(4.0, "Loss weight of a virtual view relative to a real one.", (0.0, 100.0))
    every: int = param(2, "Every n-th iteration renders a virtual view instead of a real one.", (1, 1000))
    sources: int = param(
        5,
        "Newest keyframes (of the window) whose RGB-D is warped into each virtual view: "
        "more fill what one keyframe did not see.",
        (1, 1000),
    )
    keep: int = param(
        8, "Keyframes whose virtual views stay in the pool the optimiser samples from.", (1, 1000)
    )
    occlusion_tolerance: float = param(
        0.1,
        "Drop a virtual target pixel whose depth exceeds (1 + this) x "
        "the nearest depth around it (background seen through a crack "
        "of the warp); 0 = keep all.",
        (0.0, 10.0),
    )


@dataclass
class LevelsConfig:
    """ProGS-style octree levels of detail, for progressive sharing (mapping/levels.py). A new
    Gaussian takes the coarsest level l whose voxel (edge base_voxel_m / 2^l, fixed grid in the map
    frame) holds no level-l Gaussian yet, else the finest level; the codec sends coarse levels first.
    The multi-level loss also renders only levels <= l (l drawn from the coarser levels) against the
    same target, so a prefix of the levels is a usable map on its own. Defaults from the kitchen bag
    (bench/results/mapping_levels.md): levels <= 1 hold ~7 % of the Gaussians (~10 % of a snapshot's
    bytes). Weight 1.0 brings them to 2.4-2.8 dB below the full map (weight 0.25: 3.9 dB) at a cost of
    ~0.3 dB to the full map, which the longer final refinement (optim.refine_iterations 800) mostly
    recovers; seed-to-seed spread of the full map's PSNR is ~0.5 dB. Coarse discs are extra
    Gaussians at opacity 0.1, σ 0.25 · voxel (they replaced their seeds at 0.7, σ 0.5 · voxel, which
    put a freshly seeded frame's rendered depth 4.6 % in front of its own; the same prefixes on the
    whole bag, ~26 % more Gaussians)."""

    count: int = param(4, "Number of octree levels (1 = every Gaussian at level 0: no levels).", (1, 16))
    base_voxel_m: float = param(
        0.3, "Voxel edge of level 0 (metres); level l uses base_voxel_m / 2^l.", (0.001, 1000.0)
    )
    coarse_scale: float = param(
        0.25,
        "A coarse seed (level < count-1) also gets a disc in the surface plane "
        "(normal from depth) at its coarse level, with in-plane standard deviation "
        "coarse_scale · its voxel edge, so coarse levels alone cover the surfaces; "
        "the seed itself goes to the finest level (0 = no discs: seeded like the rest).",
        (0.0, 10.0),
    )
    coarse_opacity: float = param(
        0.1,
        "Initial opacity of a coarse disc: low, so that the discs (sorted by their "
        "centre depth over their whole footprint) do not hide the surface behind "
        "them in the full map; the multi-level loss raises it where levels <= l need it.",
        (0.001, 0.999),
    )
    multi_level_loss: bool = param(True, "Add the loss of renders restricted to levels <= l.")
    loss_weight: float = param(
        1.0, "Weight of a coarse render's loss relative to the full render's.", (0.0, 100.0)
    )
    loss_every: int = param(2, "Every n-th optimisation iteration adds one coarse render.", (1, 1000))


@dataclass
class MapperConfig:
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    keyframe: KeyframeConfig = field(default_factory=KeyframeConfig)
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    virtual_views: VirtualViewConfig = field(default_factory=VirtualViewConfig)
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    device: str = param("auto", "auto | cpu | cuda | cuda:N (auto: cuda where torch sees one, else cpu)")
    backend: str = param("auto", "Renderer backend: auto | cpu | cuda | reference (see gs_mapping.render).")
    sh_degree: int = param(0, "spherical-harmonics degree of colour (0 = view-independent)", (0, 3))
    max_gaussians: int = param(
        200000,
        "Hard cap on the number of Gaussians: the least contributing are pruned first beyond it.",
        (1, 100000000),
    )
    tile_size: float = param(
        2.0,
        "edge of the voxel-hashed tiles that group Gaussians for change tracking (metres)",
        (0.01, 1000.0),
    )
    holdout_every: int = param(
        5,
        "Hold out every n-th frame for evaluation (never used for mapping; at most holdout_views of them evaluated, evenly spaced); 0 = none.",
        (0, 100000),
    )
    holdout_views: int = param(
        32,
        "Held-out frames evaluated at the end of gs-mapping map, at most: evenly spaced over those held "
        "out, so memory stays bounded however long the drive (a view at 640x360 holds ~1.6 MB); 0 = "
        "evaluate none (frames are still held out).",
        (0, 100000),
    )
    min_depth_m: float = param(
        0.1,
        "Valid depth range (metres); outside is invalid (0 and 65535 mm are invalid anyway).",
        (0.0, 1000.0),
    )
    max_depth_m: float = param(
        10.0,
        "Upper end of the valid depth range (metres): farther depth is invalid (left out of every "
        "loss, and counted against min_valid_depth_fraction).",
        (0.0, 10000.0),
    )
    min_valid_depth_fraction: float = param(
        0.2, "A frame whose valid-depth fraction is below this is skipped as invalid.", (0.0, 1.0)
    )
    calibrate_color: bool = param(
        False,
        "Estimate the colour camera relative to the depth camera from the "
        "first mapping frames and register depth to it (for recordings "
        "whose depth is not registered to colour; calibration.py: within focal "
        "x0.5-2, offset 0.3 m, else colour is taken as registered, with a warning).",
    )
    calibration_frames: int = param(40, "mapping frames used by the colour-camera calibration", (1, 100000))
    deskew: bool = param(
        True,
        "LiDAR input: place each point by the sensor's pose (TF) at its own time, where the cloud has "
        "a per-point time field (t, time, timestamp, offset_time, time_stamp); false: the whole cloud at "
        "its header stamp (for clouds the driver already motion-compensated).",
    )
    seed: int = param(0, "random seed of sampling and seeding", (0, 2147483647))

    def __post_init__(self) -> None:
        checks = [
            (
                is_device_name(self.device),
                f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
            ),
            (
                self.backend in ("auto", "cpu", "cuda", "reference"),
                f"backend must be auto, cpu, cuda or reference, got {self.backend!r}",
            ),
            (0 <= self.sh_degree <= 3, f"sh_degree must be 0..3, got {self.sh_degree}"),
            (self.max_gaussians > 0, f"max_gaussians must be > 0, got {self.max_gaussians}"),
            (self.holdout_every >= 0, f"holdout_every must be >= 0, got {self.holdout_every}"),
            (self.holdout_every != 1, "holdout_every = 1 would hold out every frame"),
            (
                type(self.holdout_views) is int and self.holdout_views >= 0,
                f"holdout_views must be an integer >= 0 (0 = evaluate none), got {self.holdout_views!r}",
            ),
            (self.optim.window >= 1, f"optim.window must be >= 1, got {self.optim.window}"),
            (self.optim.iterations >= 0, "optim.iterations must be >= 0"),
            (0 < self.optim.render_scale <= 1, "optim.render_scale must be in (0, 1]"),
            (self.seeding.stride >= 1, "seeding.stride must be >= 1"),
            (0 < self.seeding.initial_opacity < 1, "seeding.initial_opacity must be in (0, 1)"),
            (
                0 < self.min_depth_m < self.max_depth_m,
                f"need 0 < min_depth_m < max_depth_m, got {self.min_depth_m} and {self.max_depth_m}",
            ),
            (
                0 <= self.seeding.min_depth_m < self.seeding.max_depth_m,
                "need 0 <= seeding.min_depth_m < seeding.max_depth_m, got "
                f"{self.seeding.min_depth_m} and {self.seeding.max_depth_m}",
            ),
            (self.virtual_views.every >= 1, "virtual_views.every must be >= 1"),
            (self.virtual_views.sources >= 1, "virtual_views.sources must be >= 1"),
            (self.virtual_views.keep >= 1, "virtual_views.keep must be >= 1"),
            (1 <= self.levels.count <= 16, f"levels.count must be 1..16, got {self.levels.count}"),
            (
                self.levels.base_voxel_m > 0,
                f"levels.base_voxel_m must be > 0, got {self.levels.base_voxel_m}",
            ),
            (self.levels.loss_weight >= 0, f"levels.loss_weight must be >= 0, got {self.levels.loss_weight}"),
            (self.levels.loss_every >= 1, f"levels.loss_every must be >= 1, got {self.levels.loss_every}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"mapper: {msg}")
