"""sensor_msgs/CameraInfo ⇄ :class:`CameraIntrinsics` (→ :class:`~gs_mapping.camera.Camera`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..camera import Camera
from ..errors import MessageError
from ..rectify import check_distortion
from .factory import MessageFactory, _factory, make_header, reads, stamp_to_ns

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"


@dataclass
class CameraIntrinsics:
    """What a CameraInfo says of the images it comes with: their size, K (3x3), the lens distortion
    (``D``, undone by :mod:`gs_mapping.rectify`), P's left 3x3 (the rectified camera's K, or None)
    and where/when it applies. Binning and a region of interest are applied already: this is the
    camera of the published images, as image_geometry's PinholeCameraModel makes it."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"
    frame_id: str = ""
    stamp_ns: int = 0
    P: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, np.float64).reshape(3, 3)
        self.D = np.asarray(self.D, np.float64).reshape(-1)
        _check(self.K, self.width, self.height, self.frame_id)
        check_distortion(self.distortion_model, self.D, f"{CAMERA_INFO} (frame {self.frame_id!r})")
        if self.P is not None:
            self.P = np.asarray(self.P, np.float64).reshape(3, 3)

    def rectified(self) -> CameraIntrinsics:
        """The camera of this CameraInfo's rectified images (``image_rect*``): K = P's left 3x3 where P
        is set (else K), no distortion."""
        P = self.K
        if self.P is not None and np.all(np.isfinite(self.P)) and self.P[0, 0] > 0 and self.P[1, 1] > 0:
            P = self.P if pinhole_k_problem(self.P) is None else self.K
        return CameraIntrinsics(
            self.width, self.height, P, np.zeros(0), "plumb_bob", self.frame_id, self.stamp_ns
        )

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def camera(self, T_map_cam: np.ndarray | None = None) -> Camera:
        """A :class:`Camera` with these intrinsics at pose ``T_map_cam`` (identity if omitted)."""
        return Camera(
            self.K.copy(),
            int(self.width),
            int(self.height),
            np.eye(4) if T_map_cam is None else T_map_cam,
            self.frame_id or "camera_optical_frame",
        )

    @staticmethod
    def from_camera(camera: Camera, stamp_ns: int = 0) -> CameraIntrinsics:
        return CameraIntrinsics(
            camera.width, camera.height, camera.K.copy(), np.zeros(5), "plumb_bob", camera.frame_id, stamp_ns
        )


PINHOLE_K = "[[fx, s, cx], [0, fy, cy], [0, 0, 1]]"


def pinhole_k_problem(K: np.ndarray) -> str | None:
    """Why a finite 3x3 ``K`` with positive focal lengths is no pinhole matrix :data:`PINHOLE_K`,
    or None: a pinhole K's last row is (0, 0, 1) and fy's row has no x term; a K read column-major
    (transposed: cx, cy in its last row) has (cx, cy, 1) there, one scaled as a whole another last
    entry; either projects elsewhere. The one rule for the mapper's CameraInfos and gsmap_hd's
    calibrations (:func:`gsmap_hd.infer.check_intrinsics`)."""
    if np.allclose(K[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-6) and abs(K[1, 0]) <= 1e-6 * K[1, 1]:
        return None
    return f"got rows {K[1].tolist()}, {K[2].tolist()}: transposed?"


def _check(K: np.ndarray, width: int, height: int, frame_id: str) -> None:
    where = f"{CAMERA_INFO} (frame {frame_id!r})"
    if not np.all(np.isfinite(K)):
        raise MessageError(f"{where}.k: non-finite intrinsics {K.reshape(-1).tolist()}")
    if not np.any(K):
        raise MessageError(f"{where}.k: all zeros (uncalibrated camera)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise MessageError(f"{where}.k: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if (why := pinhole_k_problem(K)) is not None:
        raise MessageError(f"{where}.k: intrinsics K must be {PINHOLE_K} ({why})")
    if int(width) <= 0 or int(height) <= 0:
        raise MessageError(f"{where}.width/height: invalid image size {width}x{height}")


def _field(msg: Any, name: str) -> Any:
    # ROS 2 names the matrices k, d, r, p; ROS 1 (and some bridges) K, D, R, P.
    value = getattr(msg, name, None)
    if value is None:
        value = getattr(msg, name.upper(), None)
    if value is None:
        raise MessageError(f"{CAMERA_INFO}: message has no field {name!r}")
    return value


@reads(CAMERA_INFO)
def camera_info_to_intrinsics(msg: Any) -> CameraIntrinsics:
    """A CameraInfo message → :class:`CameraIntrinsics`; :class:`MessageError` if K is unusable."""
    k = np.asarray(_field(msg, "k"), np.float64).reshape(-1)
    if k.size != 9:
        raise MessageError(f"{CAMERA_INFO}.k: expected 9 elements, got {k.size}")
    d = np.asarray(_field(msg, "d"), np.float64).reshape(-1)
    p = np.asarray(getattr(msg, "p", getattr(msg, "P", np.zeros(12))), np.float64).reshape(-1)
    K, P = k.reshape(3, 3), (p.reshape(3, 4)[:, :3] if p.size == 12 else None)
    width, height, K, P = _binned(msg, int(msg.width), int(msg.height), K, P)
    return CameraIntrinsics(
        width,
        height,
        K,
        d,
        str(msg.distortion_model),
        str(msg.header.frame_id),
        stamp_to_ns(msg.header.stamp),
        P,
    )


def _binned(msg: Any, width: int, height: int, K: np.ndarray, P: np.ndarray | None):
    """Size and K, P of the published images: CameraInfo's width, height, K and P are the full
    sensor's; a region of interest (``roi``, 0 size: all) crops and ``binning_x``/``binning_y``
    (0 or 1: none) divide it. As image_geometry: cx' = (cx − x_offset) / binning_x, fx' = fx /
    binning_x."""
    bx, by = int(getattr(msg, "binning_x", 0) or 1), int(getattr(msg, "binning_y", 0) or 1)
    roi = getattr(msg, "roi", None)
    x0 = y0 = 0
    w, h = width, height
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        x0, y0, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
        if x0 + w > width or y0 + h > height:
            raise MessageError(
                f"{CAMERA_INFO}.roi: {w}x{h} at ({x0}, {y0}) is not inside the {width}x{height} image"
            )
    if (bx, by, x0, y0, w, h) == (1, 1, 0, 0, width, height):
        return width, height, K, P
    if bx < 1 or by < 1 or w // bx < 1 or h // by < 1:
        raise MessageError(f"{CAMERA_INFO}.binning: {bx}x{by} of a {w}x{h} image leaves no pixel")
    scale = np.diag([1.0 / bx, 1.0 / by, 1.0])

    def adjust(M: np.ndarray) -> np.ndarray:
        M = M.copy()
        M[0, 2] -= x0
        M[1, 2] -= y0
        return scale @ M

    return w // bx, h // by, adjust(K), (None if P is None else adjust(P))


def intrinsics_to_camera_info(
    intr: CameraIntrinsics,
    factory: MessageFactory | None = None,
    stamp_ns: int | None = None,
    frame_id: str | None = None,
) -> Any:
    """:class:`CameraIntrinsics` → a CameraInfo message (R = identity, P = [K | 0]: a monocular camera)."""
    factory = _factory(factory)
    p = np.zeros((3, 4))
    p[:, :3] = intr.K
    return factory.make(
        CAMERA_INFO,
        header=make_header(
            intr.stamp_ns if stamp_ns is None else stamp_ns,
            intr.frame_id if frame_id is None else frame_id,
            factory,
        ),
        height=int(intr.height),
        width=int(intr.width),
        distortion_model=str(intr.distortion_model),
        d=np.asarray(intr.D, np.float64).reshape(-1),
        k=intr.K.reshape(-1).astype(np.float64),
        r=np.eye(3).reshape(-1),
        p=p.reshape(-1),
    )


def camera_info_to_camera(msg: Any, T_map_cam: np.ndarray | None = None) -> Camera:
    """Shortcut: CameraInfo message → :class:`Camera` at ``T_map_cam``."""
    return camera_info_to_intrinsics(msg).camera(T_map_cam)
