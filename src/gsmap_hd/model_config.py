"""Configuration of the GSMap model and its training (dataclasses; YAML section ``hd_train`` with
``model`` and ``loss`` sub-sections, read by ``gs-mapping hd-train --config``).

Two presets: :func:`small` (default; trains on a 2-core CPU in minutes) and :func:`paper` (the paper's
scale for GPUs: a ResNet-50-class backbone written here, 50 instances x 20 Gaussians, 6 decoder
layers, 200x100 BEV).

BEV axes. The ego frame is ``base_link`` (REP-103: x forward, y left, z up). The issue's "x ±15 m,
y ±30 m" is MapTR's nuScenes ``pc_range`` written in the nuScenes LiDAR frame (x right, y forward);
in base_link the same patch is **x (forward) ∈ [-30, 30] m, y (left) ∈ [-15, 15] m**, and MapTR's
``bev_h=200, bev_w=100`` become 200 rows along x and 100 columns along y (0.3 m cells). Row 0 is the
front edge (x max) and column 0 the left edge (y max), so a BEV image reads like a map seen from
above with the car facing up. All of this is in :class:`gsmap_hd.gaussians2d.BEVGrid`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from gs_mapping.errors import ConfigError

CLASSES = ("divider", "ped_crossing", "boundary")
"""Map element classes, in MapTR's order (indices 0, 1, 2). ped_crossing is a closed polygon."""
POLYGON_CLASSES = (1,)


@dataclass
class ModelConfig:
    """Architecture. Every field changes the weights' shapes or meaning: a checkpoint records it."""

    # BEV patch (metres, base_link) and the decoder's BEV feature grid (rows along x, cols along y)
    x_range: tuple[float, float] = (-30.0, 30.0)
    y_range: tuple[float, float] = (-15.0, 15.0)
    bev_h: int = 50
    bev_w: int = 25
    # input images are resized to this (height, width); intrinsics are scaled to match
    image_size: tuple[int, int] = (128, 256)
    backbone: Literal["small", "resnet50"] = "small"
    small_channels: tuple[int, ...] = (16, 32, 64, 96)  # stem + stages of the small CNN (stride 16)
    embed_dim: int = 64
    # parameter-free geometric lifting: each BEV cell samples every camera at these heights (z, m)
    lift_heights: tuple[float, ...] = (-0.5, 0.0, 0.5, 1.5)
    bev_encoder_layers: int = 2
    num_classes: int = 3
    num_instances: int = 20
    num_points: int = 20  # K Gaussians per element
    num_layers: int = 2
    num_heads: int = 4
    deform_points: int = 4  # sampling points per head in deformable cross-attention
    ffn_dim: int = 128
    dropout: float = 0.0
    # Gaussian scale limits (metres): sx, sy ∈ [min, max] through a sigmoid
    scale_min: float = 0.05
    scale_max: float = 3.0
    scale_init: float = 0.5

    def __post_init__(self) -> None:
        _check_ranges(self, _MODEL_RANGES)
        if self.x_range[0] >= self.x_range[1] or self.y_range[0] >= self.y_range[1]:
            raise ConfigError(f"empty BEV range x={self.x_range} y={self.y_range}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if not self.lift_heights or not self.small_channels:
            raise ConfigError("lift_heights and small_channels need at least one value each")
        if self.num_points < 3:
            raise ConfigError(f"num_points must be >= 3 (polygons need a ring), got {self.num_points}")
        if self.num_classes != len(CLASSES):  # the lane map, hd-eval and the nodes name these three
            raise ConfigError(
                f"num_classes must be {len(CLASSES)} (the HD map's classes: {', '.join(CLASSES)}), "
                f"got {self.num_classes}"
            )
        if not (0 < self.scale_min < self.scale_init < self.scale_max):
            raise ConfigError("need 0 < scale_min < scale_init < scale_max")


@dataclass
class LossConfig:
    """Loss and matching weights. Focal α/γ and the vector weights' values are MapTR's/the paper's
    (cls 2.0, pts 5.0), but the point term they weigh is the L1 per point (a mean over the K points
    of |du| + |dv|, normalised coordinates), where MapTR's ``PtsL1Loss``/``OrderedPtsL1Cost`` sum
    over the K points: our pts 5.0 on the mean acts as a weight of 5.0 / K (0.25 at K = 20) on
    MapTR's sum - the scale the shipped models were trained at; MapTR's did worse in a short run
    (docs/hd_model.md). The raster split
    BCE 0.8 / D-SSIM 0.2 follows 3DGS's λ=0.2 since the GSMap paper's exact raster weights were not
    available to us."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_weight: float = 2.0
    pts_weight: float = 5.0
    raster_weight: float = 1.0  # 0 = the "vector only" ablation
    bce_weight: float = 0.8
    dssim_weight: float = 0.2
    bce_pos_weight_max: float = 5.0  # positives weighted by #neg/#pos per mask, capped here
    raster_warmup_steps: int = 200  # raster term ramps in linearly over these steps
    raster_aux: bool = False  # raster term on every decoder layer (True) or the last only
    # matching costs (instance level)
    cls_cost: float = 2.0
    pts_cost: float = 5.0
    iou_cost: float = 1.0
    # supervision raster (metres per pixel); the GT line width in pixels
    raster_res: float = 0.5
    iou_cost_res: float = 1.0
    gt_line_width_px: float = 2.0
    aux_loss: bool = True  # supervise every decoder layer

    def __post_init__(self) -> None:
        _check_ranges(self, _LOSS_RANGES)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 2000
    batch_size: int = 4
    lr: float = 6e-4
    weight_decay: float = 0.01
    backbone_lr_mult: float = 1.0
    grad_clip: float = 35.0
    warmup_steps: int = 50
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    eval_every: int = 500
    eval_frames: int = 32
    # data from the driving world (or the built-in flat-road scenes)
    data: Literal["world", "flat", "nuscenes"] = "world"
    # data nuscenes: the dataset root (tables, samples/, maps/expansion/), its version and the splits
    # trained on and evaluated on (the devkit's official names: train/val, mini_train/mini_val)
    nuscenes_root: str = ""
    nuscenes_version: str = "v1.0-trainval"
    nuscenes_train_split: str = "train"
    nuscenes_eval_split: str = "val"
    rig: Literal["front", "surround"] = "front"
    # the ground the rig covers (gsmap_hd.region): GT and predictions are clipped to it in training,
    # evaluation, hd-predict/hd-eval and the node. auto = frustum (front rig) / patch (surround rig)
    region: Literal["auto", "patch", "forward_half", "frustum"] = "auto"
    train_frames: int = 512
    # augmentation (gsmap_hd.augment): probability of a left-right mirror of a frame (images, K,
    # extrinsics and GT together), and the strength of brightness/contrast/colour jitter (0 = off)
    augment_flip: float = 0.0
    augment_color: float = 0.0
    data_seed: int = 0
    # fine-tune: start from this checkpoint's weights (same model config) with a fresh optimizer and
    # schedule; "" = random initialisation. Ignored when resuming (last.pt has its own weights)
    init_from: str = ""
    device: str = "cpu"  # cpu | cuda | auto
    num_threads: int = 1

    def __post_init__(self) -> None:
        _check_ranges(self, _TRAIN_RANGES)


# Every number of a config is finite; these are their ranges (lo, hi; inclusive), checked whenever
# one is built or replaced, so an option (hd-train --lr nan), a YAML file and a checkpoint's config
# are all refused in one line before anything is trained or written.
_MODEL_RANGES = {
    "x_range": (-1e4, 1e4),
    "y_range": (-1e4, 1e4),
    "bev_h": (1, 4096),
    "bev_w": (1, 4096),
    "image_size": (16, 8192),  # (the small backbone's stride)
    "small_channels": (1, 4096),
    "embed_dim": (1, 65536),
    "lift_heights": (-100.0, 100.0),
    "bev_encoder_layers": (0, 64),
    "num_classes": (1, 1024),  # (and exactly 3: __post_init__)
    "num_instances": (1, 4096),
    "num_points": (1, 4096),
    "num_layers": (1, 64),
    "num_heads": (1, 1024),
    "deform_points": (1, 256),
    "ffn_dim": (1, 1 << 20),
    "dropout": (0.0, 0.99),
    "scale_min": (0.0, 1e3),
    "scale_max": (0.0, 1e3),
    "scale_init": (0.0, 1e3),
}
_LOSS_RANGES = {
    "focal_alpha": (0.0, 1.0),
    "focal_gamma": (0.0, 100.0),
    **{k: (0.0, 1e6) for k in ("cls_weight", "pts_weight", "raster_weight", "bce_weight", "dssim_weight")},
    **{k: (0.0, 1e6) for k in ("cls_cost", "pts_cost", "iou_cost")},
    "bce_pos_weight_max": (1e-6, 1e6),
    "raster_warmup_steps": (0, 1 << 31),
    "raster_res": (1e-3, 100.0),
    "iou_cost_res": (1e-3, 100.0),
    "gt_line_width_px": (1e-3, 1000.0),
}
_TRAIN_RANGES = {
    "steps": (1, 1 << 31),  # (integer bounds: the field takes integers only)
    "batch_size": (1, 1 << 16),
    "lr": (0.0, 10.0),  # (0: the weights stay as they start, a check of a fine-tune)
    "weight_decay": (0.0, 100.0),
    "backbone_lr_mult": (0.0, 1e3),
    "grad_clip": (1e-9, 1e9),
    "warmup_steps": (0, 1 << 31),
    "seed": (0, (1 << 63) - 1),
    "log_every": (1, 1 << 31),
    "checkpoint_every": (1, 1 << 31),
    "eval_every": (0, 1 << 31),
    "eval_frames": (0, 1 << 20),
    "train_frames": (1, 1 << 24),
    "augment_flip": (0.0, 1.0),
    "augment_color": (0.0, 1.0),
    "data_seed": (0, (1 << 63) - 1),
    "num_threads": (1, 1024),
}


def _check_ranges(cfg, ranges: dict) -> None:
    """ConfigError naming the first field (or element of a tuple field) outside its range or not
    finite; booleans are not numbers here, and a field with integer bounds takes integers only."""
    for name, (lo, hi) in ranges.items():
        value = getattr(cfg, name)
        whole = isinstance(lo, int) and isinstance(hi, int)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            number = isinstance(v, int if whole else (int, float)) and not isinstance(v, bool)
            if not (number and math.isfinite(v) and lo <= v <= hi):
                what = f"an integer in [{lo}, {hi}]" if whole else f"a finite number in [{lo:g}, {hi:g}]"
                raise ConfigError(f"{name}: {v!r} is not {what}")


def small() -> TrainConfig:
    """The default: trains on this CPU (front camera, 50x25 BEV features, 20x20 queries)."""
    return TrainConfig()


def paper() -> TrainConfig:
    """The paper's scale (for GPUs)."""
    model = ModelConfig(
        bev_h=200,
        bev_w=100,
        image_size=(480, 800),
        backbone="resnet50",
        embed_dim=256,
        num_instances=50,
        num_points=20,
        num_layers=6,
        num_heads=8,
        deform_points=4,
        ffn_dim=512,
        lift_heights=(-1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        bev_encoder_layers=3,
    )
    loss = LossConfig(raster_res=0.3, iou_cost_res=0.6)
    return TrainConfig(
        model=model, loss=loss, steps=24 * 1000, batch_size=4, rig="surround", device="auto", num_threads=8
    )


PRESETS = {"small": small, "paper": paper}


def model_config_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    """Names of fields that differ (``name: a != b``)."""
    out = []
    for f in dataclasses.fields(ModelConfig):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if _plain(va) != _plain(vb):
            out.append(f"{f.name}: {_plain(va)!r} != {_plain(vb)!r}")
    return out


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v
