"""Deskewing a LiDAR scan: each point placed by the sensor's pose at the time it was measured.

A spinning LiDAR's scan takes ~100 ms and its cloud is stamped once, at the scan's start or end; at
10 m/s the sensor moves 1 m meanwhile. A point ``p`` measured ``dt`` seconds after the cloud's stamp
``s`` is where the sensor was at ``s + dt``: in the cloud's frame at ``s`` it is
``T_map_cloud(s)^-1 @ T_map_cloud(s + dt) @ p`` (TF in the mapper's fixed frame), which
:func:`~.depth_registration.cloud_to_depth` then moves into the colour camera as any cloud.

The times (seconds since the stamp: :func:`gs_mapping.messages.pointcloud2_xyz_times`) are grouped
in buckets of :data:`BUCKET_S` (wider for a long scan: at most :data:`MAX_BUCKETS`), TF is looked up
once per bucket, at its points' mean time, and the points are moved in one vectorised step: at most
half a bucket's motion off (0.5 ms: 5 mm at 10 m/s). Left where they are, as they were measured:
points with no time (NaN), with a time further than :data:`MAX_SKEW_S` from the stamp (not a scan's:
said once), and returns nearer than :data:`~.depth_registration.MIN_LIDAR_RANGE_M` (no measurement,
for ``cloud_to_depth`` to drop). A time TF does not reach (before its first or past its last sample,
beyond ``tf_tolerance_s``) takes the pose of the nearest time it does, said once a topic, the frame
kept; a live node first waits for the TF after the scan (``raise_future``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from ..errors import ExtrapolationError
from .depth_registration import MIN_LIDAR_RANGE_M

log = logging.getLogger(__name__)

BUCKET_S = 0.001  # TF lookups 1 ms apart ...
MAX_BUCKETS = 64  # ... and at most this many a scan
MAX_SKEW_S = 1.0  # a scan lasts at most ~0.2 s (5 Hz): a time further from its stamp is not its own


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
        T_map_cloud: np.ndarray,
        pose_at: Callable[[int], np.ndarray],
        raise_future: bool = False,
    ) -> np.ndarray:
        """(N, 3) points in the cloud's frame, each measured ``dt_s`` seconds after ``stamp_ns`` →
        float64 (N, 3) in the cloud's frame at ``stamp_ns`` (where its pose is ``T_map_cloud``).
        ``pose_at(ns)``: 4x4 ``T_map_cloud`` at ``ns`` (TF). ``raise_future``: a time past the
        newest TF sample raises its :class:`ExtrapolationError` (a live node waits for the sample)
        instead of taking the newest."""
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
        lo, span = float(d.min()), float(d.max() - d.min())
        width = max(BUCKET_S, span / MAX_BUCKETS)
        n = min(MAX_BUCKETS, max(1, math.ceil(span / width)))
        k = np.minimum(((d - lo) / width).astype(np.int64), n - 1)
        counts = np.bincount(k, minlength=n)
        mean_s = np.bincount(k, weights=d, minlength=n) / np.maximum(counts, 1)
        T_cloud_map = np.linalg.inv(T_map_cloud)
        moves = np.tile(np.eye(4), (n, 1, 1))  # T_cloud(stamp) <- cloud(stamp + t) per bucket
        served, missed, why = [], [], None
        for b in np.flatnonzero(counts):
            try:
                moves[b] = T_cloud_map @ pose_at(int(stamp_ns) + int(round(mean_s[b] * 1e9)))
                served.append(b)
            except ExtrapolationError as exc:
                if raise_future and exc.future:
                    raise
                missed.append(b)
                why = why or exc
        if missed:
            for b in missed:  # the nearest time TF serves (none: the stamp's pose)
                moves[b] = moves[min(served, key=lambda s: abs(s - b))] if served else np.eye(4)
            self._say(
                "tf",
                f"{self.topic}: points measured {mean_s[missed[0]]:+.3f} to {mean_s[missed[-1]]:+.3f} s "
                f"from a cloud's stamp are outside TF ({why}): posed at the nearest time TF has",
            )
        m = np.take(moves[:, :3, :], k, axis=0)  # each point's 3x4 move (a gather: no loop)
        q = p if timed.all() else p[timed]
        moved = np.einsum("nij,nj->ni", m[:, :, :3], q) + m[:, :, 3]
        if timed.all():
            return moved
        out = p.copy()
        out[timed] = moved
        return out

    def _say(self, kind: str, message: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.log.warning(f"{message} (said once)")
