"""Deskewing a LiDAR scan: each point placed by the sensor's pose at the time it was measured.

A spinning LiDAR's scan takes ~100 ms and its cloud is stamped once, at the scan's start or end; at
10 m/s the sensor moves 1 m meanwhile. A point ``p`` measured ``dt`` seconds after the cloud's stamp
``s`` is where the sensor was at ``s + dt``: in the cloud's frame at ``s`` it is
``T_odom_cloud(s)^-1 @ T_odom_cloud(s + dt) @ p``, which
:func:`~.depth_registration.cloud_to_depth` then moves into the colour camera as any cloud. The
motion is TF's in a continuous frame (tf2's ``fixed_frame``, :func:`gs_mapping.tf.odometry_frame`:
``odom``), not in ``map``: a localisation's correction of ``map -> odom`` during a scan is no motion
of the sensor (REP 105: ``map`` may jump), and would shear the cloud.

The times (seconds since the stamp: :func:`gs_mapping.messages.pointcloud2_xyz_times`, Livox's
:func:`gs_mapping.messages.livox.custom_msg_xyz_times`) are cut into buckets of :data:`BUCKET_S`,
wider for a long scan (at most :data:`MAX_BUCKETS` TF lookups, at the buckets' edges: 1.6 ms apart
for a 10 Hz scan, 32 ms for a 2 s Livox cloud), and each point is
moved by the motion interpolated between its bucket's edges (translation linear, rotation along
the arc, as TF interpolates between its samples), in one vectorised step: a point is off only by
how far the motion departs from that within a bucket. Left where they are, as they were measured: points with no time (NaN),
with a time further than :data:`MAX_SKEW_S` from the stamp (not a scan's: said once), and returns
nearer than :data:`~.depth_registration.MIN_LIDAR_RANGE_M` (no measurement, for ``cloud_to_depth``
to drop). A time TF does not reach (before its first or past its last sample, beyond
``tf_tolerance_s``) takes the pose of the nearest time it does, said once a topic, the frame kept;
a live node first waits for the TF after the scan (``raise_future``).

Set ``mapper.deskew: false`` for clouds whose times must not move their points: clouds the driver
already motion-compensated (velodyne_pointcloud with ``fixed_frame``/``target_frame`` set: its
``time`` field is kept though the points were moved), and ros2_ouster's ``timestamp_mode:
TIME_FROM_ROS_RECEPTION`` (the stamp is the scan's end while ``t`` counts from its start: every point
would be placed a scan later than it was measured).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from ..errors import ExtrapolationError
from ..geometry import matrix_to_quat
from .depth_registration import MIN_LIDAR_RANGE_M

log = logging.getLogger(__name__)

BUCKET_S = 0.001  # TF lookups 1 ms apart ...
MAX_BUCKETS = 64  # ... and at most this many a scan: a longer one's buckets are wider
# The longest cloud a driver publishes: livox_ros_driver2 clamps publish_freq to [0.5, 100] Hz (2 s
# of points, stamped at the first), and Hesai's frame_frequency (HesaiLidar_SDK_2.0) joins any whole
# number of rotations, with no floor; twice Livox's 2 s takes a 10 Hz Hesai down to 0.25 Hz. A time
# further from its stamp is not its scan's (a unit misread is off by 1e9).
MAX_SKEW_S = 4.0


class Deskew:
    """Deskews one topic's clouds; each problem is said once (per run, per node)."""

    def __init__(self, topic: str, logger=None):
        self.topic, self.log = topic, logger or log
        self._said: set[str] = set()

    def __call__(
        self,
        xyz: np.ndarray,
        dt_s: np.ndarray,
        stamp_ns: int,
        T_fixed_cloud: np.ndarray,
        pose_at: Callable[[int], np.ndarray],
        raise_future: bool = False,
        tf_span_s: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """(N, 3) points in the cloud's frame, each measured ``dt_s`` seconds after ``stamp_ns`` →
        float64 (N, 3) in the cloud's frame at ``stamp_ns`` (where its pose is ``T_fixed_cloud``).
        ``pose_at(ns)``: 4x4 ``T_fixed_cloud`` at ``ns`` (TF), in a continuous fixed frame (``odom``,
        :func:`gs_mapping.tf.odometry_frame`). ``raise_future``: a time past the
        newest TF sample raises its :class:`ExtrapolationError` (a live node waits for the sample)
        instead of taking the newest. ``tf_span_s``: the times (s since the stamp) TF has samples
        for on the way to the fixed frame: a point outside them takes the pose at the nearest (a
        lookup there would take TF's end sample as the pose of a later time, and points between
        it and the bucket's other edge would be squeezed toward it); past the end only where a
        time past TF does not raise."""
        p = np.asarray(xyz, np.float64).reshape(-1, 3)
        dt = np.asarray(dt_s, np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            timed = np.abs(dt) <= MAX_SKEW_S  # (False for NaN)
        far = np.isfinite(dt) & ~timed
        if far.any():
            self._say(
                "far",
                f"{self.topic}: {int(far.sum())} points' times are more than {MAX_SKEW_S:g} s from their "
                f"cloud's stamp (e.g. {float(dt[far][0]):+.3f} s): not a scan's, those points are posed at "
                "the stamp",
            )
        timed &= np.einsum("ij,ij->i", p, p) >= MIN_LIDAR_RANGE_M**2
        if not timed.any():
            return p
        d = dt[timed]
        if tf_span_s is not None:
            first, last = tf_span_s
            outside = (d < first - BUCKET_S) | ((d > last + BUCKET_S) & (not raise_future))
            if outside.any():
                self._say_outside_tf(
                    float(d[outside].min()), float(d[outside].max()), f"{first:+.3f} to {last:+.3f} s"
                )
            d = np.clip(d, first, np.inf if raise_future else last)
        lo, span = float(d.min()), float(d.max() - d.min())
        width = max(BUCKET_S, span / (MAX_BUCKETS - 1))
        n = min(MAX_BUCKETS - 1, max(1, math.ceil(span / width)))
        x = (d - lo) / width
        k = np.minimum(x.astype(np.int64), n - 1)  # each point's bucket [edge k, edge k + 1]
        f = np.clip(x - k, 0.0, 1.0)  # and where in it
        # TF at the edges the points need (the upper one only where a point lies past the lower)
        need = np.union1d(k, k[f > 0] + 1)
        T_cloud_fixed = np.linalg.inv(T_fixed_cloud)
        moves = np.tile(np.eye(4), (n + 1, 1, 1))  # T_cloud(stamp) <- cloud(stamp + edge time)
        served, missed, why = [], [], None
        for e in need:
            try:
                moves[e] = T_cloud_fixed @ pose_at(int(stamp_ns) + int(round((lo + e * width) * 1e9)))
                served.append(e)
            except ExtrapolationError as exc:
                if raise_future and exc.future:
                    raise
                missed.append(e)
                why = why or exc
        if missed:
            for e in missed:  # the nearest time TF serves (none: the stamp's pose)
                moves[e] = moves[min(served, key=lambda s: abs(s - e))] if served else np.eye(4)
            self._say_outside_tf(lo + missed[0] * width, lo + missed[-1] * width, str(why))
        q = p if timed.all() else p[timed]
        moved = _between(moves, k, f, q)
        if timed.all():
            return moved
        out = p.copy()
        out[timed] = moved
        return out

    def _say_outside_tf(self, lo_s: float, hi_s: float, why: str) -> None:
        """The one line (once) for points whose times TF does not reach (``why``: its span or error)."""
        self._say(
            "tf",
            f"{self.topic}: points measured {lo_s:+.3f} to {hi_s:+.3f} s from a cloud's stamp are outside "
            f"TF ({why}): posed at the nearest time TF has",
        )

    def _say(self, kind: str, message: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.log.warning(f"{message} (said once)")


def _between(moves: np.ndarray, k: np.ndarray, f: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Points ``p`` moved each by the motion a fraction ``f`` of the way from ``moves[k]`` to
    ``moves[k + 1]`` (4x4): translation linear, rotation along the shortest arc between the two
    (TF's own interpolation between its samples, here between the buckets' edges). One pass per
    bucket over its points (a scan's times are mostly in order: slices, no gather), each turned by
    Rodrigues' formula about its bucket's axis."""
    lo, hi = moves[:-1], moves[1:]
    rel = matrix_to_quat(np.einsum("nji,njk->nik", lo[:, :3, :3], hi[:, :3, :3]))  # R_lo^T R_hi, w >= 0
    sin_half = np.linalg.norm(rel[:, :3], axis=1)
    angle = 2.0 * np.arctan2(sin_half, rel[:, 3])
    axis = rel[:, :3] / np.where(sin_half > 0, sin_half, 1.0)[:, None]
    order = None if (np.diff(k) >= 0).all() else np.argsort(k, kind="stable")
    ks = k if order is None else k[order]
    edges = np.searchsorted(ks, np.arange(len(lo) + 1))
    out = np.empty_like(p, dtype=np.float64)
    for b in np.flatnonzero(np.diff(edges)):
        rows = slice(edges[b], edges[b + 1]) if order is None else order[edges[b] : edges[b + 1]]
        q, fb = p[rows], f[rows][:, None]
        a, theta = axis[b], fb * angle[b]
        cos, sin = np.cos(theta), np.sin(theta)
        turned = q * cos + np.cross(a, q) * sin + np.outer(q @ a, a) * (1.0 - cos)
        t = lo[b, :3, 3] + fb * (hi[b, :3, 3] - lo[b, :3, 3])
        out[rows] = turned @ lo[b, :3, :3].T + t
    return out
