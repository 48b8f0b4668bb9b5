"""Images from a camera with lens distortion (CameraInfo ``d`` not zero), made pinhole.

A raw image (``image_raw``, ``image_color``) is distorted by the model its CameraInfo names; the
mapper, the depth registration and the renderer are pinhole. :class:`Rectifier` resamples an image
into the pinhole camera of the same K, as ``cv2.undistort`` or image_proc's rectification with
P = K do (with one difference: a skew K[0, 1] is applied both ways here, where OpenCV drops it
when it projects the distorted ray; skew is 0 in practice): for each pixel of the pinhole image it puts the ray through the model's forward
distortion (closed form, so no iteration) and reads the raw image there. Colour is read bilinearly,
with the edge pixels beyond the raw image's border (no black band to fit); depth by the nearest
pixel (a bilinear read would invent depths between a foreground and its background), and 0
(invalid) beyond the border. Models, with ``d`` as ROS and OpenCV order it:

- ``plumb_bob`` / ``rational_polynomial``: (k1, k2, p1, p2, k3, k4, k5, k6), missing ones 0:
  radial (1 + k1 r² + k2 r⁴ + k3 r⁶) / (1 + k4 r² + k5 r⁴ + k6 r⁶), tangential p1, p2;
- ``equidistant`` (fisheye): (k1, k2, k3, k4): θ_d = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸), θ the
  ray's angle from the axis.

Own code rather than OpenCV: the maps are these few formulas and a gather, and OpenCV is not a
runtime dependency (its wheels pin numpy ≥ 2, which ROS Humble and Jazzy do not have). The tests
compare with ``cv2.undistort`` and ``cv2.fisheye.undistortImage``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import MessageError

# model → how many coefficients it reads (more are refused unless zero)
MODELS = {"plumb_bob": 8, "rational_polynomial": 8, "equidistant": 4}


def check_distortion(model: str, d: np.ndarray, where: str) -> None:
    """:class:`MessageError` naming what is wrong when ``d`` is not all zero and its model cannot be
    undistorted here (an unknown model, more coefficients than the model has, a non-finite one)."""
    d = np.asarray(d, np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise MessageError(f"{where}.d: non-finite distortion {d.tolist()}")
    if not np.any(d):
        return
    if model not in MODELS:
        raise MessageError(
            f"{where}.distortion_model: {model!r} with non-zero d is not supported "
            f"({', '.join(MODELS)}); publish rectified images (image_proc) with their CameraInfo"
        )
    if np.any(d[MODELS[model] :]):
        raise MessageError(
            f"{where}.d: {model} takes {MODELS[model]} coefficients, got {d.size} non-zero beyond"
        )


def is_distorted(d: np.ndarray) -> bool:
    return bool(np.any(np.asarray(d)))


def _distort(x: np.ndarray, y: np.ndarray, model: str, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pinhole coordinates → where the model puts them in the raw image (normalised)."""
    c = np.zeros(MODELS[model])
    c[: min(d.size, c.size)] = d[: c.size]
    r2 = x * x + y * y
    if model == "equidistant":
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (c[0] + t2 * (c[1] + t2 * (c[2] + t2 * c[3]))))
        scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-12)
        return x * scale, y * scale
    k1, k2, p1, p2, k3, k4, k5, k6 = c
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


class Rectifier:
    """Resampling of one camera's raw images (size, K, model, d) into its pinhole image of the same K."""

    def __init__(self, width: int, height: int, K: np.ndarray, model: str, d: np.ndarray) -> None:
        self.width, self.height = int(width), int(height)
        K = np.asarray(K, np.float64).reshape(3, 3)
        fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        y = (v - cy) / fy
        x = (u - cx - s * y) / fx
        xd, yd = _distort(x, y, model, np.asarray(d, np.float64).reshape(-1))
        us, vs = fx * xd + s * yd + cx, fy * yd + cy  # raw-image pixel (centres at integers)
        finite = np.isfinite(us) & np.isfinite(vs)
        us, vs = np.where(finite, us, -1.0), np.where(finite, vs, -1.0)
        self.source = (us, vs)  # where each pinhole pixel is read in the raw image
        w, h = self.width, self.height
        # nearest, for depth: -1 where the ray lands outside the raw image
        ni, nj = np.rint(vs).astype(np.int64), np.rint(us).astype(np.int64)
        inside = finite & (ni >= 0) & (ni < h) & (nj >= 0) & (nj < w)
        self._nearest = np.where(inside, ni * w + nj, -1).reshape(-1)
        # bilinear, for colour: the four neighbours, clamped to the border, and their weights
        uc, vc = np.clip(us, 0, w - 1), np.clip(vs, 0, h - 1)
        j0, i0 = (
            np.minimum(np.floor(uc).astype(np.int64), w - 2 if w > 1 else 0),
            np.minimum(np.floor(vc).astype(np.int64), h - 2 if h > 1 else 0),
        )
        j1, i1 = np.minimum(j0 + 1, w - 1), np.minimum(i0 + 1, h - 1)
        a, b = (uc - j0).astype(np.float32), (vc - i0).astype(np.float32)
        self._corners = [(i * w + j).reshape(-1) for i, j in ((i0, j0), (i0, j1), (i1, j0), (i1, j1))]
        self._weights = [
            ((1 - a) * (1 - b)).reshape(-1, 1),
            (a * (1 - b)).reshape(-1, 1),
            ((1 - a) * b).reshape(-1, 1),
            (a * b).reshape(-1, 1),
        ]

    def _check(self, image: np.ndarray, what: str) -> None:
        if image.shape[:2] != (self.height, self.width):
            raise MessageError(
                f"{what} image is {image.shape[1]}x{image.shape[0]} but its CameraInfo says "
                f"{self.width}x{self.height}"
            )

    def color(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8 raw → pinhole, bilinear."""
        self._check(rgb, "colour")
        flat = rgb.reshape(self.height * self.width, -1).astype(np.float32)
        out = sum(flat[c] * w for c, w in zip(self._corners, self._weights, strict=True))
        if np.issubdtype(rgb.dtype, np.integer):
            out = np.clip(np.rint(out), 0, np.iinfo(rgb.dtype).max)
        return out.astype(rgb.dtype).reshape(rgb.shape)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) metres raw → pinhole, nearest; 0 where the raw image has no pixel."""
        self._check(depth, "depth")
        flat = depth.reshape(-1)
        out = np.where(self._nearest >= 0, flat[np.maximum(self._nearest, 0)], 0)
        return out.astype(depth.dtype).reshape(depth.shape)


@lru_cache(maxsize=4)  # (a VGA camera's maps take ~20 MB)
def _cached(width: int, height: int, K: bytes, model: str, d: bytes) -> Rectifier:
    return Rectifier(width, height, np.frombuffer(K), model, np.frombuffer(d))


def rectifier_for(intrinsics) -> Rectifier | None:
    """The (cached) :class:`Rectifier` of a :class:`~gs_mapping.messages.CameraIntrinsics`, or None
    when its images need none (d all zero)."""
    if not is_distorted(intrinsics.D):
        return None
    K = np.ascontiguousarray(intrinsics.K, np.float64)
    d = np.ascontiguousarray(intrinsics.D, np.float64)
    return _cached(intrinsics.width, intrinsics.height, K.tobytes(), intrinsics.distortion_model, d.tobytes())


def for_images_on(intrinsics, image_topic: str):
    """The camera of the images on ``image_topic`` from their CameraInfo (None stays None): rectified
    topics (``image_rect*``, :func:`gs_mapping.topics.is_rectified`) are P's pinhole camera; raw ones
    keep K and the distortion, which :func:`pinhole_color` (and the mapper's depth path) undo."""
    from .topics import is_rectified

    return intrinsics.rectified() if intrinsics is not None and is_rectified(image_topic) else intrinsics


def pinhole_color(rgb: np.ndarray, intrinsics) -> np.ndarray:
    """A colour image of the camera ``intrinsics`` (from :func:`for_images_on`) made pinhole. An
    image of another size than the CameraInfo's is returned as it is: the caller's size check names
    it (make_frame, the HD predictor)."""
    rectifier = rectifier_for(intrinsics)
    if rectifier is None or rgb.shape[:2] != (rectifier.height, rectifier.width):
        return rgb
    return rectifier.color(rgb)
