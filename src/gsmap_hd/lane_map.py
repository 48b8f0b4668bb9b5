"""A persistent lane map: per-frame predictions fused over time in a fixed frame (``map``).

Each frame's elements (already in the map frame, clipped to what the cameras cover) update a set of
tracks — one per map element, with a stable id:

- **Association**: an observation goes to the track of its class it overlaps best. A line overlaps a
  track where its points (densified every ``spacing`` m) lie within ``assoc_dist`` of the track's
  polyline and project inside it; it needs ``min_overlap`` m of such overlap (or a third of its own
  length when shorter) and a mean distance there below ``assoc_dist``. A crossing (closed ring) goes to
  the track whose polygon it overlaps with IoU ≥ ``min_iou``.
- **Merging**: where a line overlaps, each track vertex moves towards its projection onto the
  observation by a running average (weight capped at ``max_weight`` so an old map still follows new
  evidence); the observation's parts beyond the track's ends extend it. Two whole views of a ring
  are averaged vertex by vertex, each resampled through its corners (sharp ones restored where the
  model's evenly spaced centres cut them, from lines fitted to its straight edges:
  :func:`_sharp_corners`), the view's corners matched to the track's and its points put along its
  edges as the track's lie along its own (:func:`_ring_like`; without such a match, in their
  best-aligned order); a
  ring the frame's region cut changes the track only where the region covered it (the track outside
  is kept and joined with the view), and a whole view replaces a ring seen only in part so far. Tracks that come to overlap each other (two pieces of one lane
  that grew together) are merged into the older id.
- **Support**: each line vertex counts the frames that saw it (an observation overlapped or extended
  the track there) and the frames whose cameras covered it (its point inside the frame's region).
  Once covered ``trim_after`` times, a vertex seen in less than ``min_support`` of them is cut away:
  an end that some frames carried into an intersection is trimmed back to what the cameras kept
  seeing, two lanes that some frames joined across one split again (the longest piece keeps the id;
  pieces under ``min_length`` go). The counts follow the points through merges and resampling.
- **Confidence**: the mean score of the frames that saw the element × (1 − 2^−hits) (repeated
  sightings raise it) × for a line the mean share of its covering frames that saw each vertex (AP
  ranks by confidence: a lane seen whenever in view comes before a patchy piece of an intersection
  with as many sightings). A track is published once seen in ``min_hits`` frames (a line once
  ``min_length`` long).
- **Removal**: a track that the cameras covered (≥ half its length inside the frame's region) but that
  no observation matched counts a miss; a tentative track (fewer than ``min_hits`` sightings) goes after
  ``tentative_misses`` such misses or ``tentative_age`` frames without a second sighting (one-off false
  positives), a confirmed one after ``max_misses`` consecutive misses.

Points are metres in the map frame; a polyline is resampled to ``spacing`` after each update.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class LaneMapConfig:
    spacing: float = 1.0  # m between a line track's vertices
    ring_points: int = 17  # vertices of a crossing ring (closed: last = first)
    assoc_dist: float = 1.2  # m: an observation point this close to a track overlaps it
    min_overlap: float = 4.0  # m of overlap needed to associate a line (or 1/3 of a shorter one)
    min_iou: float = 0.1  # crossings
    max_weight: float = 8.0  # running-average weight cap of a vertex
    min_hits: int = 2  # sightings before a track is published
    tentative_misses: int = 2
    tentative_age: int = 6  # frames
    max_misses: int = 8
    min_score: float = 0.3  # observations below this are ignored
    min_support: float = 0.4  # a line vertex must be seen in this share of the frames that covered it
    trim_after: int = 3  # ... once covered this often (else it is cut away: the track is trimmed or split)
    min_length: float = 3.0  # m: shorter line pieces are not published, and dropped when cut off


VERTEX_ATTRS = ("seen", "covered", "now")


@dataclass
class Track:
    id: int
    cls: int
    points: np.ndarray  # (n, 2) map frame; rings closed
    weights: np.ndarray  # (n,)
    closed: bool
    hits: int = 1
    misses: int = 0
    first_frame: int = 0
    last_frame: int = 0
    score_sum: float = 0.0  # over sightings
    whole: bool = True  # a ring: its shape comes from a frame that saw all of it (not cut by its region)
    # per vertex of a line (interpolated like the points): frames that saw it / covered it, and
    # whether this frame's observations have touched it yet
    seen: np.ndarray | None = None
    covered: np.ndarray | None = None
    now: np.ndarray | None = None
    # per vertex: the ground's height in the map frame where it was seen (averaged like the points;
    # the lanes are fused in the plane, drawn on the road: a map frame whose z is not the road's)
    z: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.points)
        for name, fill in zip(VERTEX_ATTRS, (0.0, 0.0, 1.0), strict=True):
            if getattr(self, name) is None:
                setattr(self, name, np.full(n, fill))
        if self.z is None:
            self.z = np.zeros(n)

    def vertex_attrs(self) -> np.ndarray:
        return np.stack([getattr(self, k) for k in VERTEX_ATTRS], 1)

    def set_vertex_attrs(self, a: np.ndarray) -> None:
        for k, name in enumerate(VERTEX_ATTRS):
            setattr(self, name, a[:, k].copy())

    def sliced(self, a: int, b: int) -> Track:
        """A copy with vertices a..b−1."""
        out = replace(
            self, points=self.points[a:b].copy(), weights=self.weights[a:b].copy(), z=self.z[a:b].copy()
        )
        out.set_vertex_attrs(self.vertex_attrs()[a:b])
        return out

    @property
    def confidence(self) -> float:
        """Mean score of its sightings × (1 − 2^−hits) × (a line) the mean share of the frames
        covering each vertex that saw it: repeated sightings raise it, gaps in view lower it; never
        past the model's own mean confidence."""
        conf = self.score_sum / max(self.hits, 1) * (1.0 - 0.5**self.hits)
        if not self.closed:
            cov = self.covered > 0
            if cov.any():
                conf *= float(np.mean(np.minimum(self.seen[cov] / self.covered[cov], 1.0)))
        return float(conf)

    def length(self) -> float:
        return (
            float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum()) if len(self.points) > 1 else 0.0
        )


# ------------------------------------------------------------------------------------------------
# frames and polyline geometry


def to_frame(pts: np.ndarray, T_a_b: np.ndarray) -> np.ndarray:
    """2-D points of frame b → frame a (the planar part of a 4x4 transform T_a_b)."""
    T = np.asarray(T_a_b, np.float64)
    return np.asarray(pts, np.float64) @ T[:2, :2].T + T[:2, 3]


def ground_z(pts: np.ndarray, T_a_b: np.ndarray) -> np.ndarray:
    """The height in frame a of 2-D points on frame b's ground plane (z = 0 of b)."""
    T = np.asarray(T_a_b, np.float64)
    return np.asarray(pts, np.float64).reshape(-1, 2) @ T[2, :2] + T[2, 3]


def region_in_map(region, T_map_base: np.ndarray):
    """A :class:`gsmap_hd.region.Region` (base_link) → its shapely polygon in the map frame."""
    from shapely import affinity

    T = np.asarray(T_map_base, np.float64)
    return affinity.affine_transform(region.polygon, [T[0, 0], T[0, 1], T[1, 0], T[1, 1], T[0, 3], T[1, 3]])


def resample_spacing(pts: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` m along the polyline (both ends kept)."""
    pts = np.asarray(pts, np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if len(pts) < 2 or cum[-1] <= 1e-9:
        return pts[:1].copy()
    n = max(2, int(np.ceil(cum[-1] / spacing)) + 1)
    t = np.linspace(0.0, cum[-1], n)
    return np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], axis=1)


def _interp_weights(pts: np.ndarray, w: np.ndarray, new_pts_count: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, cum[-1], new_pts_count)
    return np.interp(t, cum, w)


def project(q: np.ndarray, line: np.ndarray):
    """Points q (m, 2) onto polyline ``line`` (n ≥ 2): distance to it, station along it (extended
    beyond the ends along the end segments: < 0 before the start, > length after the end), and the
    closest point on it."""
    a, b = line[:-1], line[1:]
    ab = b - a
    l2 = np.maximum((ab * ab).sum(1), 1e-12)
    t_raw = ((q[:, None, :] - a[None]) * ab[None]).sum(-1) / l2[None]  # (m, n-1)
    t = np.clip(t_raw, 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    d = np.linalg.norm(q[:, None, :] - closest, axis=-1)
    j = d.argmin(1)
    rows = np.arange(len(q))
    seglen = np.sqrt(l2)
    cum = np.concatenate([[0.0], np.cumsum(seglen)])
    station = cum[j] + t[rows, j] * seglen[j]
    # beyond the ends: extend along the first / last segment
    before = (j == 0) & (t_raw[rows, 0] < 0)
    after = (j == len(ab) - 1) & (t_raw[rows, -1] > 1)
    station = np.where(before, t_raw[rows, 0] * seglen[0], station)
    station = np.where(after, cum[-2] + t_raw[rows, -1] * seglen[-1], station)
    return d[rows, j], station, closest[rows, j], cum[-1]


def _tangents(p: np.ndarray) -> np.ndarray:
    t = np.gradient(p, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def line_overlap(
    obs: np.ndarray, track: np.ndarray, assoc_dist: float, spacing: float, min_cos: float = 0.85
):
    """(overlap length m, mean distance over the overlap) of a densified observation against a track.
    Overlapping points must run along the track (direction within ~30°, either way): a line that
    crosses the track (a divider or boundary at an intersection) does not overlap it."""
    if len(track) < 2 or len(obs) < 2:
        return 0.0, np.inf
    d, s, closest, length = project(obs, track)
    inside = (d < assoc_dist) & (s >= -0.5 * spacing) & (s <= length + 0.5 * spacing)
    if inside.any():
        # the track's direction at the closest points (the segment each projects onto)
        seg = np.clip(np.searchsorted(_stations(track), s[inside]) - 1, 0, len(track) - 2)
        dirs = track[seg + 1] - track[seg]
        dirs = dirs / np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
        cos = np.abs((_tangents(obs)[inside] * dirs).sum(1))
        keep = np.flatnonzero(inside)[cos >= min_cos]
        inside = np.zeros_like(inside)
        inside[keep] = True
    if not inside.any():
        return 0.0, np.inf
    return float(inside.sum() * spacing), float(d[inside].mean())


def _stations(line: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D mask."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _ring_orderings(ring: np.ndarray) -> np.ndarray:
    core = ring[:-1]
    out = []
    for r in (core, core[::-1]):
        for k in range(len(core)):
            x = np.roll(r, -k, axis=0)
            out.append(np.vstack([x, x[:1]]))
    return np.stack(out)


_GRID_M = 1e-6  # the grid a failed overlay is redone on (a micrometre: far below any lane's detail)


def _overlay(op, a, b):
    """shapely's ``op`` (intersection, union, difference) of ``a`` and ``b``. GEOS' floating-point
    overlay can fail on valid polygons whose edges nearly coincide ("TopologyException: found
    non-noded intersection", "side location conflict"); it is then redone, on repaired inputs, with
    snap-rounding on a fixed grid, which has no such failure. One element's odd outline must not
    cost the frame's fusion (it left the map half updated: some tracks aged, others not)."""
    import shapely

    try:
        return op(a, b)
    except shapely.errors.GEOSException:
        return op(_polygonal(a), _polygonal(b), grid_size=_GRID_M)


def _polygonal(g):
    """The polygonal part of ``g`` repaired (GEOS' make_valid keeps a collapsed piece as a line,
    and an overlay refuses mixed dimensions)."""
    import shapely
    from shapely.geometry import Polygon

    parts = [
        p for p in shapely.get_parts(shapely.make_valid(g)) if p.geom_type in ("Polygon", "MultiPolygon")
    ]
    return shapely.union_all(parts) if parts else Polygon()


def _touches_border(ring: np.ndarray, region) -> bool:
    """Whether a clipped ring runs along the region's border (clipping put it there: the element
    goes on beyond what the frame saw)."""
    import shapely

    return bool(np.any(shapely.distance(region.boundary, shapely.points(ring)) < 1e-3))


def _joined_with_unseen(track: np.ndarray, seen: np.ndarray, region, k: int) -> np.ndarray | None:
    """Ring ``track`` outside ``region`` joined with ``seen`` (the part of the element the region
    covered), as a k-point ring that keeps the corners; None when nothing is left."""
    import shapely
    from shapely.geometry import Polygon

    unseen = _overlay(shapely.difference, shapely.make_valid(Polygon(track)), region)
    union = _overlay(shapely.union, unseen, shapely.make_valid(Polygon(seen)))
    union = union.buffer(0.01, join_style="mitre").buffer(-0.01, join_style="mitre")  # (seams closed)
    parts = [g for g in getattr(union, "geoms", [union]) if g.geom_type == "Polygon" and not g.is_empty]
    if not parts:
        return None
    return _ring_with_corners(np.asarray(max(parts, key=lambda g: g.area).exterior.coords), k)


def _ring_with_corners(ring: np.ndarray, k: int) -> np.ndarray:
    """A closed k-point ring through every corner of ``ring`` (simplified at 1 cm), the points left
    over spread along the edges by length; evenly spaced (:func:`_ring`) when it has more corners.
    Resampling evenly at every frame cut a rectangle's corners a little more each time."""
    from shapely.geometry import Polygon

    corners = np.asarray(Polygon(ring).simplify(0.01).exterior.coords)[:-1]
    m = len(corners)
    if m < 3 or m > k - 1:
        return _ring(ring, k)
    edges = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
    extra = (k - 1 - m) * edges / edges.sum()
    per = np.floor(extra).astype(int)
    per[np.argsort(extra - per)[::-1][: k - 1 - m - per.sum()]] += 1  # largest remainders
    out = []
    for a, b, n in zip(corners, np.roll(corners, -1, axis=0), per, strict=True):
        out += [a + (b - a) * f for f in np.arange(n + 1) / (n + 1)]
    out.append(out[0])
    return np.asarray(out)


def _fit_line(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a point on, unit direction of, each point's distance from) the least-squares line
    through ``p``."""
    mid = p.mean(0)
    u = np.linalg.svd(p - mid, full_matrices=False)[2][0]
    return mid, u, np.abs((p - mid) @ np.array([-u[1], u[0]]))


def _straight_runs(c: np.ndarray, tol: float, floor: float) -> list[list[int]]:
    """Straight runs of the closed outline ``c`` (distinct points in cyclic order; lists of indices):
    the longest stretch of ≥ 3 consecutive points within ``tol`` of its least-squares line first
    (of as long ones, the straightest), then the longest of the points left, …. An end point is
    dropped where the others put it off their line by more than ``floor`` and four times their own
    scatter (the first centre past a corner, close enough to pass ``tol``, tilts the fit). Two
    points left between two runs are a run too (an edge too short for three centres)."""
    m = len(c)
    taken = np.zeros(m, bool)
    runs: list[list[int]] = []
    while True:
        best, best_key = [], (3, -np.inf)
        for i in np.flatnonzero(~taken):
            run = [int(i)]
            while len(run) < m and not taken[(run[-1] + 1) % m]:
                if len(run) >= 2 and _fit_line(c[[*run, (run[-1] + 1) % m]])[2].max() > tol:
                    break
                run.append((run[-1] + 1) % m)
            if len(run) >= 3 and (len(run), -_fit_line(c[run])[2].max()) > best_key:
                best, best_key = run, (len(run), -_fit_line(c[run])[2].max())
        if not best:
            break
        for end in (0, -1):  # (each end once)
            rest = best[1:] if end == 0 else best[:-1]
            if len(rest) >= 3:
                mid, u, d = _fit_line(c[rest])
                off = abs((c[best[end]] - mid) @ np.array([-u[1], u[0]]))
                if off > max(4.0 * float(np.sqrt(np.mean(d**2))), floor):
                    best = rest
        taken[best] = True
        runs.append(best)
    runs.sort(key=lambda r: r[0])
    for a, b in list(zip(runs, runs[1:] + runs[:1], strict=True)) if len(runs) > 1 else []:
        gap = [(a[-1] + 1) % m, (a[-1] + 2) % m]
        if (gap[1] + 1) % m == b[0] and not taken[gap].any():
            taken[gap] = True
            runs.append(gap)
    return sorted(runs, key=lambda r: r[0])


def _sharp_corners(ring: np.ndarray) -> np.ndarray:
    """A whole view's sharp corners restored. Centres spaced evenly along an outline (as the model
    places them) cut each corner by a chord between the straight edges either side, at another
    place in every frame (averaged over frames, the cut tends to its worst). The outline is split
    into straight runs (:func:`_straight_runs`, within a tenth of the spacing of their
    least-squares line: centimetres of noise do not break them, a curve's three centres are
    further off), each run's points are put on its line, and where two runs that turn by ≥ 30°
    are one chord apart (or two, the centre between them within the tolerance of one line) the
    point where their lines meet replaces the chord's ends, if it fits: the legs from the ends to
    it within the one or two spacings the centres are apart along the outline. Returned as it is
    where it has fewer than six centres (two runs of three), where runs of three or more hold
    under 70 % of the centres (a polygon with centimetres of noise: ≥ 74 % in nine views of ten; a
    curve, or the shipped model's noisier crossings, where three centres line up by chance: mostly
    under 70 %), and where the result is further than a spacing from the view or, the view a
    valid polygon, not valid (a jagged view's runs are chance: put on their lines, its points
    could cross). ``ring`` closed or not (last = first: shapely reads both alike); returned closed."""
    import shapely
    from shapely.geometry import Polygon

    if np.allclose(ring[0], ring[-1]):
        c = ring[:-1]
    else:  # (as shapely reads it: closed by its first point; the last one is a centre too)
        c, ring = ring, np.vstack([ring, ring[:1]])
    m = len(c)
    spacing = float(np.median(np.linalg.norm(np.diff(ring, axis=0), axis=1)))
    if m < 6 or spacing <= 0:  # (fewer: runs of three are chance, two of them need six)
        return ring
    tol = 0.1 * spacing
    runs = _straight_runs(c, tol, 0.02 * spacing)
    if sum(len(r) for r in runs if len(r) >= 3) < 0.7 * m:
        return ring  # (not a polygon: runs of three that noise lined up by chance, or a curve)
    out: list[list[np.ndarray]] = [[p] for p in c]
    lines = []
    for run in runs:
        mid, u, _ = _fit_line(c[run])
        u = u if (c[run[-1]] - c[run[0]]) @ u >= 0 else -u  # (along the outline)
        for i in run:
            out[i] = [mid + ((c[i] - mid) @ u) * u]
        lines.append((run, mid, u))
    for (ra, ma, ua), (rb, mb, ub) in zip(lines, lines[1:] + lines[:1], strict=True):
        a, b = ra[-1], rb[0]
        free = [(a + k) % m for k in range(1, (b - a) % m)]
        cross = ua[0] * ub[1] - ua[1] * ub[0]
        if len(lines) < 2 or len(free) > 1 or abs(cross) < 0.5:  # (the runs turn by < 30°)
            continue
        t = ((mb - ma)[0] * ub[1] - (mb - ma)[1] * ub[0]) / cross  # ma + t·ua on b's line
        corner = ma + t * ua
        la, lb = (corner - out[a][0]) @ ua, (out[b][0] - corner) @ ub
        near = all(
            min(abs((c[f] - q)[0] * v[1] - (c[f] - q)[1] * v[0]) for q, v in ((ma, ua), (mb, ub))) <= tol
            for f in free
        )
        if near and min(la, lb) > -0.25 * spacing and la + lb < (1.5 + len(free)) * spacing:
            out[a], out[b] = [corner], []
            for f in free:
                out[f] = []
    kept = [p for ps in out for p in ps]
    got = np.asarray([*kept, kept[0]])
    pg, pv = Polygon(got), Polygon(ring)
    if (pv.is_valid and not pg.is_valid) or shapely.hausdorff_distance(pg, pv, densify=0.25) > spacing:
        return ring  # (points put on chance lines crossed, or moved further than a corner would be)
    return got


def _corner_indices(ring: np.ndarray, min_turn: float = 10.0) -> np.ndarray:
    """Indices of the vertices of closed ``ring`` (distinct ones) where it turns by more than
    ``min_turn`` degrees."""
    c = ring[:-1]
    d = np.roll(c, -1, axis=0) - c
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    prev = np.roll(d, 1, axis=0)
    turn = np.degrees(np.arctan2(prev[:, 0] * d[:, 1] - prev[:, 1] * d[:, 0], (prev * d).sum(1)))
    return np.flatnonzero(np.abs(turn) > min_turn)


def _ring_like(track: np.ndarray, view: np.ndarray) -> np.ndarray | None:
    """``view`` (a closed ring) with the vertex structure of ring ``track``: each of the track's
    corners taken to the view's corner matched to it, the vertices between at the same fractions
    of the way along the view's outline between the two corners as along the track's (a ring laid
    out like itself is itself). None unless the two have as many corners (≥ 3), each matched pair
    is nearer than half the track's shortest edge, and the result is a valid polygon. Averaged
    vertex by vertex, two rings with corners in different places (or the points between them
    spread differently: a 4 × 12 m ring of 16 points has 1 or 2 on a short edge) cut the corners."""
    from shapely.geometry import Polygon

    tc = _corner_indices(track)
    if len(tc) < 3:
        return None
    tcorn = track[tc]
    edge = np.linalg.norm(np.roll(tcorn, -1, axis=0) - tcorn, axis=1).min()
    best, best_d = None, np.inf
    for v in (view, view[::-1]):  # (either way round: both walked forwards)
        vc = _corner_indices(v)
        if len(vc) != len(tc):
            continue
        for k in range(len(vc)):
            d = np.linalg.norm(v[np.roll(vc, -k)] - tcorn, axis=1)
            if d.max() < 0.5 * edge and d.sum() < best_d:
                best, best_d = (v, np.roll(vc, -k)), d.sum()
    if best is None:
        return None
    v, vc = best
    n, nv = len(track) - 1, len(v) - 1
    out = track.copy()
    for (i0, i1), (j0, j1) in zip(
        zip(tc, np.roll(tc, -1), strict=True), zip(vc, np.roll(vc, -1), strict=True), strict=True
    ):
        ti = [(i0 + s) % n for s in range(((i1 - i0) % n or n) + 1)]  # (corner to corner, both in)
        vj = [(j0 + s) % nv for s in range(((j1 - j0) % nv or nv) + 1)]
        st, sv = _stations(track[ti]), _stations(v[vj])
        f = st[:-1] / max(st[-1], 1e-12) * sv[-1]
        out[ti[:-1]] = np.stack([np.interp(f, sv, v[vj][:, a]) for a in (0, 1)], 1)
    out[-1] = out[0]
    return out if Polygon(out).is_valid else None


def _ring(pts: np.ndarray, k: int) -> np.ndarray:
    from .gaussians2d import resample

    return resample(pts, k, closed=True)


# ------------------------------------------------------------------------------------------------


@dataclass
class LaneMap:
    config: LaneMapConfig = field(default_factory=LaneMapConfig)
    tracks: dict = field(default_factory=dict)  # id → Track
    next_id: int = 1
    frame: int = 0

    def published(self) -> list[Track]:
        """Confirmed tracks (seen in ≥ min_hits frames), by id; lines at least ``min_length`` long."""
        c = self.config
        return [
            t
            for _, t in sorted(self.tracks.items())
            if t.hits >= c.min_hits and (t.closed or t.length() >= c.min_length - 1e-9)
        ]

    def update(self, elements, region=None) -> dict:
        """Fuse one frame. ``elements``: objects with ``cls``, ``score``, ``points`` (map frame);
        ``region``: the shapely polygon (map frame) the cameras covered this frame (for misses and
        support; None: neither misses nor unseen coverage are counted, nothing is trimmed). Returns
        counts {matched, new, removed, merged, split}."""
        c = self.config
        self.frame += 1
        matched: set[int] = set()
        stats = {"matched": 0, "new": 0, "removed": 0, "merged": 0}
        obs = [e for e in elements if float(e.score) >= c.min_score and len(np.asarray(e.points)) >= 2]
        for e in sorted(obs, key=lambda e: -float(e.score)):
            cls, score = int(e.cls), float(e.score)
            pts = np.asarray(e.points, np.float64).reshape(-1, 2)
            ez = getattr(e, "z", None)
            pz = np.zeros(len(pts)) if ez is None else np.asarray(ez, np.float64).reshape(-1)
            closed = cls == 1
            if closed:
                if len(pts) < 4:
                    continue
                cut = region is not None and _touches_border(pts, region)
                o = _ring_with_corners(pts if cut else _sharp_corners(pts), c.ring_points)
                oz = np.full(len(o), float(pz.mean()))  # (a crossing: one height)
                tid = self._associate_ring(cls, o)
            else:
                o = resample_spacing(pts, c.spacing)
                if len(o) < 2:
                    continue
                oz = _interp_weights(pts, pz, len(o))
                tid = self._associate_line(cls, o)
            if tid is None:
                t = Track(
                    self.next_id,
                    cls,
                    o,
                    np.ones(len(o)),
                    closed,
                    first_frame=self.frame,
                    last_frame=self.frame,
                    z=oz,
                )
                t.score_sum = score
                t.whole = not (closed and cut)
                self.tracks[t.id] = t
                matched.add(t.id)
                self.next_id += 1
                stats["new"] += 1
                continue
            t = self.tracks[tid]
            if tid not in matched:  # one sighting per frame, however many pieces
                t.hits += 1
                t.score_sum += score
            t.misses = 0
            t.last_frame = self.frame
            matched.add(tid)
            stats["matched"] += 1
            if closed:
                self._merge_ring(t, o, pts if cut else None, region, oz)
            else:
                self._merge_line(t, o, np.ones(len(o)), oz=oz)
                stats["merged"] += self._merge_tracks(t)
        stats["split"], dropped = self._support(region, matched)
        stats["removed"] = dropped + self._age(matched, region)
        return stats

    # -- association --------------------------------------------------------------------------------
    def _associate_line(self, cls: int, o: np.ndarray) -> int | None:
        c = self.config
        o_len = float(np.linalg.norm(np.diff(o, axis=0), axis=1).sum())
        need = min(c.min_overlap, max(c.spacing, o_len / 3))
        lo, hi = o.min(0) - c.assoc_dist, o.max(0) + c.assoc_dist
        best, best_d = None, c.assoc_dist
        for t in self.tracks.values():
            if t.cls != cls or t.closed:
                continue
            if (t.points.max(0) < lo).any() or (t.points.min(0) > hi).any():
                continue
            ov, d = line_overlap(o, t.points, c.assoc_dist, c.spacing)
            if ov >= need and d < best_d:
                best, best_d = t.id, d
        return best

    def _associate_ring(self, cls: int, o: np.ndarray) -> int | None:
        import shapely
        from shapely.geometry import Polygon

        po = Polygon(o).buffer(0)
        if po.is_empty:
            return None
        best, best_iou = None, self.config.min_iou
        for t in self.tracks.values():
            if t.cls != cls or not t.closed:
                continue
            pt = Polygon(t.points).buffer(0)
            inter = _overlay(shapely.intersection, po, pt).area
            iou = inter / max(_overlay(shapely.union, po, pt).area, 1e-9)
            if iou >= best_iou:
                best, best_iou = t.id, iou
        return best

    # -- merging ------------------------------------------------------------------------------------
    def _merge_line(
        self,
        t: Track,
        o: np.ndarray,
        ow: np.ndarray,
        oattr: np.ndarray | None = None,
        oz: np.ndarray | None = None,
    ) -> None:
        """Fold polyline ``o`` (weights ``ow``) into track ``t``: average where they overlap, extend
        where ``o`` goes beyond the track's ends. ``oattr``: (len(o), len(VERTEX_ATTRS)) of ``o``'s
        vertices (another track's); None: a fresh observation (seen now, nothing counted yet)."""
        c = self.config
        if oattr is None:
            oattr = np.tile([0.0, 0.0, 1.0], (len(o), 1))
        oz = np.zeros(len(o)) if oz is None else oz
        d, s, _, length = project(o, t.points)
        if len(s) > 1 and s[-1] < s[0]:  # read the observation in the track's direction
            o, ow, oattr, oz, d, s = o[::-1], ow[::-1], oattr[::-1], oz[::-1], d[::-1], s[::-1]
        # overlap: move each track vertex towards its projection onto the observation
        dt, st_on_o, closest, olen = project(t.points, o)
        inside = (dt < c.assoc_dist) & (st_on_o >= 0) & (st_on_o <= olen)
        if inside.any():  # only where the observation runs along the track (not across it)
            seg = np.clip(np.searchsorted(_stations(o), st_on_o) - 1, 0, len(o) - 2)
            od = o[seg + 1] - o[seg]
            od = od / np.maximum(np.linalg.norm(od, axis=1, keepdims=True), 1e-12)
            inside &= np.abs((_tangents(t.points) * od).sum(1)) >= 0.85
        attr = t.vertex_attrs()
        if inside.any():
            so = _stations(o)
            wo = np.interp(st_on_o[inside], so, ow)
            w = t.weights[inside]
            t.points[inside] = (w[:, None] * t.points[inside] + wo[:, None] * closest[inside]) / (w + wo)[
                :, None
            ]
            t.z[inside] = (w * t.z[inside] + wo * np.interp(st_on_o[inside], so, oz)) / (w + wo)
            t.weights[inside] = np.minimum(w + wo, c.max_weight)
            oa = np.stack([np.interp(st_on_o[inside], so, col) for col in oattr.T], 1)
            attr[inside] = np.maximum(attr[inside], oa)
        # extensions beyond the ends
        pre = s < -0.5 * c.spacing
        post = s > length + 0.5 * c.spacing
        pts = np.vstack([o[pre], t.points, o[post]])
        wts = np.concatenate([ow[pre], t.weights, ow[post]])
        zs = np.concatenate([oz[pre], t.z, oz[post]])
        attr = np.vstack([oattr[pre], attr, oattr[post]])
        new = resample_spacing(pts, c.spacing)
        if len(new) > 1:
            t.weights = _interp_weights(pts, wts, len(new))
            t.z = _interp_weights(pts, zs, len(new))
            attr = np.stack([_interp_weights(pts, col, len(new)) for col in attr.T], 1)
        else:
            t.weights, t.z, attr = wts[:1], zs[:1], attr[:1]
        t.points = new
        t.set_vertex_attrs(attr)

    def _merge_ring(
        self, t: Track, o: np.ndarray, cut_ring: np.ndarray | None, region, oz: np.ndarray | None = None
    ) -> None:
        """Fuse ring observation ``o`` into ring track ``t``, vertex by vertex (a running average).
        A view that the frame's region cut (``cut_ring``: the clipped ring as observed) is first
        joined with the track outside the region, so what it did not see is not averaged away
        (averaging the partial rings in shrank a crossing to the part each frame saw); a track seen
        only in part so far takes the joined ring, or a whole view, as it is."""
        if cut_ring is not None:
            o = _joined_with_unseen(t.points, cut_ring, region, self.config.ring_points)
            if o is None:
                return
        like = _ring_like(t.points, o) if cut_ring is None and t.whole else None
        if like is None:
            cand = _ring_orderings(o)
            like = cand[int(np.abs(cand - t.points[None]).sum(-1).mean(-1).argmin())]
        o = like
        oz = np.full(len(o), float(np.mean(oz)) if oz is not None and len(oz) else 0.0)
        if not t.whole:  # seen only in part so far: the joined ring (or a whole view) as it is
            t.points, t.weights, t.z = o.copy(), np.ones(len(o)), oz
            t.whole = cut_ring is None
            return
        w = t.weights[:, None]
        t.z = (t.weights * t.z + oz) / (t.weights + 1.0)
        t.points = (w * t.points + o) / (w + 1.0)
        t.points[-1] = t.points[0]
        t.weights = np.minimum(t.weights + 1.0, self.config.max_weight)

    def _merge_tracks(self, t: Track) -> int:
        """Merge other line tracks of t's class that now overlap it into the older of the two. Only
        the part of t this frame touched (with min_overlap on each side) can have come to overlap
        another, and only the part of the other near it is compared: the cost stays that of a
        frame's view, not of the road mapped so far (whole tracks against whole tracks took 1.3 s a
        frame after 1 km of road)."""
        c = self.config
        merged = 0
        touched = np.flatnonzero(t.now > 0.5)
        if not len(touched):
            return 0
        pad = int(np.ceil(c.min_overlap / c.spacing)) + 1
        part = t.points[max(touched[0] - pad, 0) : touched[-1] + pad + 1]
        lo, hi = part.min(0) - c.assoc_dist, part.max(0) + c.assoc_dist
        for other in list(self.tracks.values()):
            if other.id == t.id or other.id not in self.tracks or other.cls != t.cls or other.closed:
                continue
            near = np.flatnonzero(np.all((other.points >= lo) & (other.points <= hi), axis=1))
            if len(near) < 1:
                continue
            near_part = other.points[max(near[0] - 1, 0) : near[-1] + 2]
            if len(near_part) < 2:
                continue
            short = min(t.length(), other.length())
            ov, d = line_overlap(near_part, part, c.assoc_dist, c.spacing)
            if ov < min(c.min_overlap, max(c.spacing, short / 3)) or d >= c.assoc_dist:
                continue
            keep, gone = (t, other) if t.id < other.id else (other, t)
            self._merge_line(
                keep, gone.points.copy(), gone.weights.copy(), gone.vertex_attrs(), gone.z.copy()
            )
            if gone.hits > keep.hits:  # the sightings of the better-seen piece
                keep.hits, keep.score_sum = gone.hits, gone.score_sum
            keep.first_frame = min(keep.first_frame, gone.first_frame)
            keep.last_frame = max(keep.last_frame, gone.last_frame)
            del self.tracks[gone.id]
            merged += 1
            t = keep
        return merged

    # -- support ------------------------------------------------------------------------------------
    def _support(self, region, matched: set[int]) -> tuple[int, int]:
        """End of a frame: count, per line vertex, the frames that saw it and those whose cameras
        covered it; cut away what was covered ≥ trim_after times but seen in less than min_support
        of them (a one-off extension into an intersection, the join of two lanes across one). A track
        cut in the middle splits: its longest piece keeps the id (a piece of a track matched this
        frame counts as matched). Returns (new pieces, tracks cut away entirely)."""
        from shapely import contains_xy

        c = self.config
        split = dropped = 0
        for t in list(self.tracks.values()):
            if t.closed:
                continue
            now = t.now > 0.5
            inside = contains_xy(region, t.points[:, 0], t.points[:, 1]) if region is not None else now
            cov = now | inside
            t.seen = t.seen + now
            t.covered = t.covered + cov
            t.now = np.zeros(len(t.points))
            good = ~((t.covered >= c.trim_after) & (t.seen < c.min_support * t.covered))
            if good.all():
                continue
            runs = [r for r in _runs(good) if (r[1] - r[0] - 1) * c.spacing >= c.min_length - 1e-9]
            if not runs:
                del self.tracks[t.id]
                dropped += 1
                continue
            runs.sort(key=lambda r: r[0] - r[1])  # longest first
            for k, (a, b) in enumerate(runs):
                piece = t.sliced(a, b)
                if k:
                    # its sightings: at least the frames that saw its best-seen vertex, not all those
                    # of the track it was cut from (a piece of intersection clutter ranks as such)
                    hits = int(np.clip(round(float(piece.seen.max())), 1, t.hits))
                    piece.hits, piece.score_sum = hits, t.score_sum / max(t.hits, 1) * hits
                    piece.id = self.next_id
                    self.next_id += 1
                    split += 1
                    if t.id in matched:
                        matched.add(piece.id)
                self.tracks[piece.id] = piece
        return split, dropped

    # -- ageing -------------------------------------------------------------------------------------
    def _age(self, matched: set[int], region) -> int:
        from shapely import contains_xy

        c = self.config
        gone = []
        for t in self.tracks.values():
            if t.id in matched:
                continue
            if region is not None:
                inside = contains_xy(region, t.points[:, 0], t.points[:, 1]).mean()
                if inside >= 0.5:
                    t.misses += 1
            tentative = t.hits < c.min_hits
            if tentative and (
                t.misses >= c.tentative_misses or self.frame - t.first_frame >= c.tentative_age
            ):
                gone.append(t.id)
            elif not tentative and t.misses >= c.max_misses:
                gone.append(t.id)
        for i in gone:
            del self.tracks[i]
        return len(gone)
