"""Rigid transforms and quaternions (ROS order x, y, z, w), numpy only.

``T_a_b`` maps points in frame b into frame a: ``p_a = T_a_b.apply(p_b)``; composition reads like the
names: ``T_a_c = T_a_b @ T_b_c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import TFError

# tf2's rule (buffer_core.cpp, QUATERNION_NORMALIZATION_TOLERANCE): a transform is taken, and
# normalised, when |q|² is within 0.01 of 1 (|q| within ~0.5 %), else refused; ours is the same, so a
# recording that ROS takes is taken here too
UNIT_TOLERANCE_SQ = 1e-2


def check_quaternion(q, what: str = "quaternion") -> np.ndarray:
    """Return ``q`` (x, y, z, w) as float64, renormalised; :class:`TFError` if NaN or not unit."""
    q = np.asarray(q, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(q)):
        raise TFError(f"{what} has a non-finite component: {q.tolist()}")
    n = float(np.linalg.norm(q))
    if not abs(n * n - 1.0) < UNIT_TOLERANCE_SQ:
        raise TFError(f"{what} is not unit length (|q| = {n:.6f}): {q.tolist()}")
    return q / n


def quat_to_matrix(q) -> np.ndarray:
    """(…, 4) quaternions (x, y, z, w) → (…, 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = np.moveaxis(q, -1, 0)
    m = np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m, positive_w: bool = True) -> np.ndarray:
    """(…, 3, 3) rotation matrices → (…, 4) unit quaternions (x, y, z, w), with w ≥ 0 unless
    ``positive_w`` is False (then the sign falls out of the formula, as the codec's aggregation has
    always stored it). Shepperd's method, vectorised: each row from the largest of the four
    candidates 4x², 4y², 4z², 4w², for stability."""
    m = np.asarray(m, dtype=np.float64)
    flat = m.reshape(-1, 3, 3)
    m00, m11, m22 = flat[:, 0, 0], flat[:, 1, 1], flat[:, 2, 2]
    cand = np.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22], 1)
    k = np.argmax(cand, axis=1)
    s = 2.0 * np.sqrt(np.maximum(cand[np.arange(len(flat)), k], 1e-12))
    a = flat[:, 2, 1] - flat[:, 1, 2]
    b = flat[:, 0, 2] - flat[:, 2, 0]
    c = flat[:, 1, 0] - flat[:, 0, 1]
    xy = flat[:, 0, 1] + flat[:, 1, 0]
    xz = flat[:, 0, 2] + flat[:, 2, 0]
    yz = flat[:, 1, 2] + flat[:, 2, 1]
    branches = (
        (0.25 * s, xy / s, xz / s, a / s),
        (xy / s, 0.25 * s, yz / s, b / s),
        (xz / s, yz / s, 0.25 * s, c / s),
        (a / s, b / s, c / s, 0.25 * s),
    )
    out = np.empty((len(flat), 4))
    for i, branch in enumerate(branches):
        sel = k == i
        out[sel] = np.stack(branch, 1)[sel]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    if positive_w:
        out[out[:, 3] < 0] *= -1
    return out.reshape(m.shape[:-2] + (4,))


def quat_multiply(a, b) -> np.ndarray:
    """Hamilton product a ⊗ b of (…, 4) quaternions (x, y, z, w)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def slerp(q0, q1, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions, shortest path."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:  # nearly parallel: lerp is exact to float precision and avoids 0/0
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(d)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


@dataclass(frozen=True)
class Transform:
    """A rigid transform: rotation (x, y, z, w) then translation."""

    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))

    @staticmethod
    def from_matrix(m) -> Transform:
        m = np.asarray(m, np.float64)
        return Transform(m[:3, 3].copy(), matrix_to_quat(m[:3, :3]))

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = quat_to_matrix(self.rotation)
        m[:3, 3] = self.translation
        return m

    def inverse(self) -> Transform:
        r = quat_to_matrix(self.rotation)
        q = np.asarray(self.rotation, np.float64) * np.array([-1, -1, -1, 1])
        return Transform(-(r.T @ np.asarray(self.translation, np.float64)), q)

    def __matmul__(self, other: Transform) -> Transform:
        r = quat_to_matrix(self.rotation)
        q = quat_multiply(self.rotation, other.rotation)
        return Transform(
            r @ np.asarray(other.translation, np.float64) + self.translation, q / np.linalg.norm(q)
        )

    def apply(self, points) -> np.ndarray:
        """Transform (…, 3) points."""
        p = np.asarray(points, np.float64)
        return p @ quat_to_matrix(self.rotation).T + self.translation

    def interpolate(self, other: Transform, t: float) -> Transform:
        """Linear in translation, slerp in rotation; t = 0 → self, 1 → other."""
        return Transform(
            (1 - t) * np.asarray(self.translation) + t * np.asarray(other.translation),
            slerp(self.rotation, other.rotation, t),
        )


@dataclass(frozen=True)
class TransformStamped:
    """One edge of the TF tree: ``T_parent_child`` valid at ``stamp_ns``."""

    parent: str
    child: str
    stamp_ns: int
    transform: Transform
