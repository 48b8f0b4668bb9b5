"""Inference: images + camera intrinsics + extrinsics → map elements (class, score, ordered points,
the Gaussians).

>>> predictor = Predictor.from_checkpoint("model.pt")
>>> elements = predictor.predict([rgb], [camera_info], [T_base_link_cam])

``camera_info`` is anything CameraInfo-like: a ROS ``sensor_msgs/CameraInfo`` (``k``, ``width``,
``height``), :class:`gs_mapping.camera.Camera` or ``messages.CameraIntrinsics`` (``K``), or a dict
with those keys. Images are RGB (H, W, 3) uint8 or float in [0, 1] of the size the CameraInfo states;
they are brought to the model's input size as the training frames were made (centre-cropped to its
aspect ratio, then sampled at each input pixel's centre ray; :func:`gsmap_hd.data.images_to_model`)
with the intrinsics adjusted to match.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gs_mapping.messages.camera_info import PINHOLE_K, pinhole_k_problem

from .data import FITS, images_to_model
from .errors import HDInputError
from .model_config import CLASSES, POLYGON_CLASSES, ModelConfig, TrainConfig
from .region import Region, clip_element, make_region, resolve_name


@dataclass
class Element:
    cls: int
    score: float
    points: np.ndarray  # (K, 2) ordered centres in base_link metres (polygons closed)
    gaussians: np.ndarray  # (K, 5) x, y, sx, sy, θ

    @property
    def label(self) -> str:
        return CLASSES[self.cls]

    def to_eval(self) -> dict:
        """A vector in the hd-eval JSON format."""
        return {"pts": self.points.tolist(), "type": int(self.cls), "confidence_level": float(self.score)}


def postprocess(
    logits: torch.Tensor, params: torch.Tensor, score_threshold: float = 0.0, max_elements: int | None = None
) -> list[Element]:
    """One frame: logits (E, C), params (E, K, 5) → elements by descending score. As MapTR, the top
    scores are taken over all (instance, class) pairs, so one instance may appear under two classes."""
    e, c = logits.shape
    scores = logits.sigmoid().flatten()
    k = min(max_elements or e, scores.numel())
    top, idx = scores.topk(k)
    out = []
    for s, i in zip(top.tolist(), idx.tolist(), strict=False):
        if s < score_threshold:
            break
        inst, cls = divmod(i, c)
        g = params[inst].detach().cpu().double().numpy().copy()
        pts = g[:, :2].copy()
        if cls in POLYGON_CLASSES:
            pts[-1] = pts[0]
        out.append(Element(cls, float(s), pts, g))
    return out


def _intrinsics(cam, i: int) -> tuple[np.ndarray, int, int]:
    get = (lambda n: cam.get(n)) if isinstance(cam, dict) else (lambda n: getattr(cam, n, None))
    K = get("K")
    if K is None:
        K = get("k")
    w, h = get("width"), get("height")
    if K is None or w is None or h is None:
        raise HDInputError(f"camera {i}: calibration needs K (or k), width and height")
    return check_intrinsics(K, f"camera {i}"), int(w), int(h)


def check_intrinsics(K, where: str) -> np.ndarray:
    """K as a (3, 3) float64 pinhole matrix, or HDInputError naming ``where`` (also for the
    CameraInfos hd-predict and hd_map_node read: such a message is skipped as an uncalibrated one)."""
    try:
        K = np.asarray(K, np.float64).reshape(3, 3)
    except (ValueError, TypeError):
        raise HDInputError(f"{where}: intrinsics K must be 9 numbers (3x3)") from None
    if not np.all(np.isfinite(K)):
        raise HDInputError(f"{where}: intrinsics K contain NaN/inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise HDInputError(f"{where}: focal lengths must be positive (fx={K[0, 0]}, fy={K[1, 1]})")
    # (the mapper's rule too: one place, in the lower layer)
    if (why := pinhole_k_problem(K)) is not None:
        raise HDInputError(f"{where}: intrinsics K must be {PINHOLE_K} ({why})")
    return K


def _pinhole(im: np.ndarray, cam, K: np.ndarray, i: int) -> np.ndarray:
    """A raw image of a camera with lens distortion (its calibration's ``D``/``d`` not all zero,
    ``distortion_model`` as in CameraInfo) resampled to the pinhole image of the same K, which the
    model's geometry assumes; a pinhole camera's image as it is."""
    from types import SimpleNamespace

    from gs_mapping.errors import MessageError
    from gs_mapping.rectify import check_distortion, is_distorted, rectifier_for

    get = (lambda n: cam.get(n)) if isinstance(cam, dict) else (lambda n: getattr(cam, n, None))
    d = get("D") if get("D") is not None else get("d")
    if d is None:
        return im
    d = np.asarray(d, np.float64).reshape(-1)
    if not is_distorted(d):
        return im
    model = str(get("distortion_model") or "plumb_bob")
    try:
        check_distortion(model, d, f"camera {i}")
        rect = rectifier_for(
            SimpleNamespace(K=K, D=d, width=im.shape[1], height=im.shape[0], distortion_model=model)
        )
        return rect.color(im)
    except MessageError as exc:
        raise HDInputError(str(exc)) from None


def check_inputs(images, cameras, extrinsics) -> tuple[np.ndarray, np.ndarray, list]:
    if not (len(images) == len(cameras) == len(extrinsics)) or len(images) == 0:
        raise HDInputError(
            f"need one image, CameraInfo and extrinsic per camera; got {len(images)} images, "
            f"{len(cameras)} camera infos, {len(extrinsics)} extrinsics"
        )
    Ks, Ts, ims = [], [], []
    for i, (im, cam, T) in enumerate(zip(images, cameras, extrinsics, strict=False)):
        K, w, h = _intrinsics(cam, i)
        if im is None:
            raise HDInputError(f"camera {i}: image is missing")
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3:
            raise HDInputError(f"camera {i}: image must be RGB (H, W, 3), got shape {im.shape}")
        if im.shape[0] == 0 or im.shape[1] == 0:
            raise HDInputError(f"camera {i}: image is empty ({im.shape[1]}x{im.shape[0]})")
        if im.dtype != np.uint8 and not np.issubdtype(im.dtype, np.floating):
            # (uint16 / bool / int: their scale is not 0..255 nor [0, 1], so not guessed)
            raise HDInputError(
                f"camera {i}: image dtype {im.dtype}: pass uint8 RGB 0..255 or float in [0, 1]"
            )
        if im.shape[:2] != (h, w):
            raise HDInputError(
                f"camera {i}: image is {im.shape[1]}x{im.shape[0]} but its CameraInfo says {w}x{h}"
            )
        im = _pinhole(im, cam, K, i)
        try:
            T = np.asarray(T, np.float64)
        except (ValueError, TypeError):
            raise HDInputError(f"camera {i}: extrinsic T_ego_cam must be a 4x4 matrix of numbers") from None
        if T.shape != (4, 4):
            raise HDInputError(f"camera {i}: extrinsic T_ego_cam must be 4x4, got {T.shape}")
        if not np.all(np.isfinite(T)):
            raise HDInputError(f"camera {i}: extrinsic T_ego_cam contains NaN/inf")
        # the model reads R and t only: a transposed T (t in the last row) would silently put
        # the camera at the car's origin, looking the inverse way
        if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], rtol=0, atol=1e-6):  # (an inverse's round-off passes)
            raise HDInputError(
                f"camera {i}: extrinsic T_ego_cam's last row must be [0, 0, 0, 1], got {T[3].tolist()} (transposed?)"
            )
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
            raise HDInputError(f"camera {i}: extrinsic rotation is not a rotation matrix")
        if im.dtype != np.uint8:
            im = im.astype(np.float32)
            if not np.all(np.isfinite(im)):
                raise HDInputError(f"camera {i}: image contains NaN/inf")
            if im.size and (im.min() < 0 or im.max() > 1):
                raise HDInputError(
                    f"camera {i}: float images must be RGB in [0, 1] (got {im.min():.3g}..{im.max():.3g}); "
                    "pass uint8 for 0..255"
                )
        Ks.append(K)
        Ts.append(T)
        ims.append(im)
    return np.stack(Ks), np.stack(Ts), ims


def clip_to_region(elements: list[Element], region: Region) -> list[Element]:
    """Elements cut to the region (MapTR's rules, :mod:`gsmap_hd.region`): one element per piece, with
    its score and the Gaussians whose centres lie in the region."""
    from shapely import contains_xy

    out = []
    for e in elements:
        pieces = clip_element(e.points, e.cls in POLYGON_CLASSES, region)
        if not pieces:
            continue
        inside = contains_xy(region.polygon, e.gaussians[:, 0], e.gaussians[:, 1])
        for piece in pieces:
            out.append(Element(e.cls, e.score, np.asarray(piece, np.float64), e.gaussians[inside]))
    return out


def _usable_device(device: str) -> str:
    """``device`` as the CLI and the node take it (cpu, cuda[:N], auto), usable on this machine; else
    one line (torch's own: an assertion "not compiled with CUDA", a list of 20 device types)."""
    from gs_mapping.device import resolve_device
    from gs_mapping.errors import ConfigError

    try:
        return resolve_device(device)
    except ConfigError as exc:
        raise HDInputError(str(exc)) from None


# a frame's cameras that see this much of the patch count as the all-round view "patch" assumes
# (the world's six cameras: 97 %; five of them: 62–92 %, 62 % without the wide back camera)
PATCH_SEEN = 0.95


class Predictor:
    def __init__(
        self,
        model,
        device: str = "cpu",
        score_threshold: float = 0.0,
        max_elements: int | None = None,
        fit: str = "crop",
        antialias: bool = False,
        train_cfg: TrainConfig | None = None,
        region: str | None = None,
    ) -> None:
        """``model``: a :class:`GSMapModel` or an :class:`gsmap_hd.onnx_export.OnnxModel`.
        ``fit`` / ``antialias``: how images of another size become model inputs (see
        :func:`gsmap_hd.data.images_to_model`; the defaults match how the world training frames look).
        ``region``: clip predictions to this region (``gsmap_hd.region``); default: the one the
        checkpoint's training config declares (``patch``, i.e. no clipping, without a config)."""
        if fit not in FITS:
            raise HDInputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        device = _usable_device(device)
        # (numpy numbers too: np.float32 is no Python float; NaN and booleans refused)
        number = isinstance(score_threshold, numbers.Real) and not isinstance(
            score_threshold, (bool, np.bool_)
        )
        if not (number and 0.0 <= score_threshold <= 1.0):
            raise HDInputError(f"score threshold must be a number in [0, 1], got {score_threshold!r}")
        if max_elements is not None and not (
            isinstance(max_elements, numbers.Integral)
            and not isinstance(max_elements, bool)
            and max_elements >= 1
        ):
            raise HDInputError(f"max_elements must be at least 1 (an integer), got {max_elements!r}")
        score_threshold = float(score_threshold)
        max_elements = None if max_elements is None else int(max_elements)
        self.model = model.to(device).eval()
        self.cfg: ModelConfig = model.cfg
        self.train_cfg = train_cfg
        rig = train_cfg.rig if train_cfg is not None else "front"
        name = region or (train_cfg.region if train_cfg is not None else "patch")
        # the training config's "patch" assumes its rig's all-round view; cameras that see less
        # (a front rig on the surround model, a camera missing) are judged where they see
        self._patch_if_seen = region is None and train_cfg is not None
        try:
            self.region_name = resolve_name(name, rig)
        except ValueError as exc:
            raise HDInputError(str(exc)) from None
        self.device = device
        self.score_threshold = score_threshold
        self.max_elements = max_elements
        self.fit = fit
        self.antialias = bool(antialias)
        self.last_regions: list[Region] = []  # the region of each frame of the last call
        self.trained_on = "(unknown training data)"

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, expect: ModelConfig | None = None, device: str = "cpu", **kw
    ) -> Predictor:
        from .checkpoint import describe_training, load_model

        device = _usable_device(device)  # (before the weights are moved there)
        model, train_cfg, state = load_model(path, expect=expect, device=device)
        p = cls(model, device, train_cfg=train_cfg, **kw)
        p.trained_on = describe_training(train_cfg, state.get("step"), state.get("extra"))
        return p

    @classmethod
    def from_onnx(cls, path: str | Path, providers=None, threads: int = 0, **kw) -> Predictor:
        """An ONNX export (``gs-mapping hd-export --onnx``) run by onnxruntime with ``providers``."""
        from .checkpoint import describe_training
        from .onnx_export import DEFAULT_PROVIDERS, OnnxModel

        model = OnnxModel(path, providers or DEFAULT_PROVIDERS, threads)
        p = cls(model, "cpu", train_cfg=model.train_cfg, **kw)
        p.trained_on = describe_training(model.train_cfg, model.step, model.extra)
        return p

    def region(self, K: torch.Tensor, T: torch.Tensor) -> Region:
        """The region of one frame's cameras as the model sees them (K for the model's input size)."""
        h, w = self.cfg.image_size
        cams = [(K[i].cpu().numpy(), T[i].cpu().numpy(), w, h) for i in range(K.shape[0])]
        if self.region_name == "patch" and self._patch_if_seen:
            seen = make_region("frustum", self.cfg.x_range, self.cfg.y_range, cams)
            patch = make_region("patch", self.cfg.x_range, self.cfg.y_range)
            return patch if seen.area >= PATCH_SEEN * patch.area else seen
        return make_region(self.region_name, self.cfg.x_range, self.cfg.y_range, cams)

    def model_inputs(self, images, cameras, extrinsics):
        """One frame → the model's inputs: images (N, 3, h, w) in [0, 1], K (N, 3, 3) for them, T (N, 4, 4)."""
        K, T, ims = check_inputs(images, cameras, extrinsics)
        xs, Ks = [], []
        for i in range(len(ims)):
            x, k = images_to_model(
                ims[i][None], K[i][None], tuple(self.cfg.image_size), self.fit, self.antialias
            )
            xs.append(x[0])
            Ks.append(k[0])
        return torch.stack(xs), torch.stack(Ks), torch.as_tensor(T, dtype=torch.float32)

    @torch.no_grad()
    def predict(self, images, cameras, extrinsics) -> list[Element]:
        """One frame from N cameras → elements, best first."""
        return self.predict_batch([(images, cameras, extrinsics)])[0]

    @torch.no_grad()
    def predict_batch(self, frames) -> list[list[Element]]:
        """Frames [(images, cameras, extrinsics)] with the same number of cameras → elements per frame."""
        ts = [self.model_inputs(*f) for f in frames]
        if not ts:  # (no frame: nothing to predict, as a frame of no elements gives [])
            self.last_regions = []
            return []
        if len({t[0].shape[0] for t in ts}) > 1:
            raise HDInputError("frames in one batch must have the same number of cameras")
        im, K, T = (torch.stack([t[j] for t in ts]).to(self.device) for j in range(3))
        return self.predict_tensors(im, K, T)

    @torch.no_grad()
    def predict_tensors(self, images, K, T) -> list[list[Element]]:
        """Model inputs → elements per frame, clipped to the region (``self.last_regions``)."""
        out = self.model(images, K, T)
        logits, params = out["logits"][-1], out["params"][-1]
        frames = [
            postprocess(logits[b], params[b], self.score_threshold, self.max_elements)
            for b in range(logits.shape[0])
        ]
        self.last_regions = [self.region(K[b], T[b]) for b in range(len(frames))]
        return [
            f if r.name == "patch" else clip_to_region(f, r)  # (the patch clips nothing)
            for f, r in zip(frames, self.last_regions, strict=True)
        ]
