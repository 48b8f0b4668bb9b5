"""The region a camera rig covers, and clipping map elements to it (MapTR's rules).

A front camera sees nothing behind the car, so a prediction is judged only where its cameras can see.
A configuration declares its region (``TrainConfig.region``):

- ``patch``: the whole BEV patch (MapTR's x ∈ [-30, 30] m, y ∈ [-15, 15] m) — the surround rig;
- ``forward_half``: the patch's forward half, x ≥ 0;
- ``frustum``: the union of the cameras' ground footprints (each camera's four image-edge planes cut
  with the ground plane z = 0 of base_link) within the patch — what the cameras can see of flat ground;
- ``auto`` (default): ``frustum`` for the front rig, ``patch`` for the surround rig.

Ground truth and predictions are clipped the same way, as MapTR clips GT to its patch: a polyline is
cut at the region's border and split into one element per piece inside it; a polygon (pedestrian
crossing) is intersected with the region, one closed ring per resulting polygon. Predicted pieces keep
their element's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS = ("auto", "patch", "forward_half", "frustum")


@dataclass(frozen=True)
class Region:
    """A named region of base_link's ground plane: ``polygon`` is a shapely (Multi)Polygon."""

    name: str
    polygon: object

    def coords(self) -> list:
        """JSON form, one entry per part: its ring ``[[x, y], ...]``, or ``[ring, hole, ...]`` for a
        part with holes (the surround rig's frustum leaves a blind zone round the car). No part: a
        region that covers nothing (cameras that see no ground)."""
        parts = [self.polygon] if self.polygon.geom_type == "Polygon" else list(self.polygon.geoms)

        def ring(r):
            return np.asarray(r.coords).round(4).tolist()

        return [
            [ring(p.exterior), *map(ring, p.interiors)] if len(p.interiors) else ring(p.exterior)
            for p in parts
            if not p.is_empty
        ]

    @classmethod
    def from_coords(cls, name: str, parts) -> Region:
        """Inverse of :meth:`coords`; ValueError for anything that is not its form."""
        from shapely.geometry import MultiPolygon, Polygon

        polys = []
        for part in parts:
            rings = [part] if _is_ring(part) else list(part)
            rings = [np.asarray(r, np.float64) for r in rings]
            if not rings or any(
                r.ndim != 2 or r.shape[1] != 2 or len(r) < 3 or not np.isfinite(r).all() for r in rings
            ):
                raise ValueError("not a ring [[x, y], ...] or a list of rings")
            polys.append(Polygon(rings[0], rings[1:]))
        if not polys:
            return cls(name, Polygon())
        return cls(name, polys[0] if len(polys) == 1 else MultiPolygon(polys))

    @property
    def area(self) -> float:
        return float(self.polygon.area)


def _is_ring(part) -> bool:
    """A part written as one ring (its first element a point [x, y]), not as [ring, hole, ...]."""
    try:
        return not isinstance(part[0][0], (list, tuple))
    except (TypeError, IndexError, KeyError):
        return True  # (malformed: from_coords' checks name it)


def resolve_name(name: str, rig: str) -> str:
    if name not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {name!r}")
    if name == "auto":
        return "patch" if rig == "surround" else "frustum"
    return name


def _box(x_range, y_range):
    from shapely.geometry import box

    return box(x_range[0], y_range[0], x_range[1], y_range[1])


def _clip_halfplane(poly: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Sutherland–Hodgman: the part of convex polygon ``poly`` (N, 2) where a·x + b·y ≥ c."""
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        fp, fq = a * p[0] + b * p[1] - c, a * q[0] + b * q[1] - c
        if fp >= 0:
            out.append(p)
        if (fp >= 0) != (fq >= 0):
            t = fp / (fp - fq)
            out.append(p + t * (q - p))
    return np.asarray(out, np.float64).reshape(-1, 2)


def camera_footprint(K, T_ego_cam, width: int, height: int, x_range, y_range) -> np.ndarray:
    """The ground (z = 0 in base_link) seen by one pinhole camera within the patch, as a convex
    polygon (N, 2) (empty when it sees no ground there). Image edges are pixel borders (−½, w − ½)."""
    K = np.asarray(K, np.float64)
    T = np.asarray(T_ego_cam, np.float64)
    R, C = T[:3, :3], T[:3, 3]
    Kinv = np.linalg.inv(K)
    corners = [(-0.5, -0.5), (width - 0.5, -0.5), (width - 0.5, height - 0.5), (-0.5, height - 0.5)]
    rays = [R @ Kinv @ np.array([u, v, 1.0]) for u, v in corners]
    centre = R @ Kinv @ np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    poly = np.array(
        [
            [x_range[0], y_range[0]],
            [x_range[1], y_range[0]],
            [x_range[1], y_range[1]],
            [x_range[0], y_range[1]],
        ],
        np.float64,
    )
    for i in range(4):
        n = np.cross(rays[i], rays[(i + 1) % 4])
        if n @ centre < 0:
            n = -n  # inward: the image centre's ray is inside every edge plane
        # ground point p = (x, y, 0) inside ⇔ n·(p − C) ≥ 0 ⇔ n_x x + n_y y ≥ n·C
        a, b, c = n[0], n[1], float(n @ C)
        if abs(a) + abs(b) < 1e-12:  # edge plane parallel to the ground: all or nothing
            if c > 0:
                return np.zeros((0, 2))
            continue
        poly = _clip_halfplane(poly, a, b, c)
        if len(poly) < 3:
            return np.zeros((0, 2))
    return poly


def make_region(name: str, x_range, y_range, cameras=()) -> Region:
    """``cameras``: (K, T_ego_cam, width, height) per camera, needed for ``frustum``. ``auto`` must have
    been resolved (:func:`resolve_name`)."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    patch = _box(x_range, y_range)
    if name == "patch":
        return Region(name, patch)
    if name == "forward_half":
        return Region(name, _box((max(0.0, x_range[0]), x_range[1]), y_range))
    if name == "frustum":
        if not len(cameras):
            raise ValueError("region 'frustum' needs the cameras (K, T_ego_cam, width, height)")
        parts = []
        for K, T, w, h in cameras:
            fp = camera_footprint(K, T, int(w), int(h), x_range, y_range)
            if len(fp) >= 3:
                parts.append(Polygon(fp))
        poly = unary_union(parts).intersection(patch) if parts else Polygon()
        return Region(name, poly)
    raise ValueError(f"unknown region {name!r} (patch | forward_half | frustum)")


def rig_region(name: str, rig: str, x_range, y_range, image_size: tuple[int, int]) -> Region:
    """The region of one of the world's rigs (``gs_mapping.world.rig``) as the model sees it
    (``image_size`` = (height, width) of the model input; the world renders at that size)."""
    from gs_mapping.world.rig import rig_cameras

    name = resolve_name(name, rig)
    h, w = image_size
    cams = [(c.K, c.T_map_cam, c.width, c.height) for c in rig_cameras(rig, w, h)]
    return make_region(name, x_range, y_range, cams)


def clip_element(pts, is_polygon: bool, region: Region) -> list[np.ndarray]:
    """Clip one element to the region: 0..n pieces (polygons as closed rings, MapTR's rules)."""
    from shapely.geometry import Polygon

    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    if is_polygon:
        if len(pts) < 3:
            return []
        if _inside_convex(pts, region.polygon):  # nothing to cut: the ring as it is, closed
            return [pts if np.allclose(pts[0], pts[-1]) else np.vstack([pts, pts[:1]])]
        geom = Polygon(pts)
        if not geom.is_valid:  # a predicted ring may cross itself: keep every lobe
            import shapely

            geom = shapely.make_valid(geom)
        if geom.is_empty:
            return []
        clipped = geom.intersection(region.polygon)
        polys = [clipped] if clipped.geom_type == "Polygon" else list(getattr(clipped, "geoms", []))
        return [
            np.asarray(p.exterior.coords)
            for p in polys
            if p.geom_type == "Polygon" and not p.is_empty and p.area > 1e-6
        ]
    if len(pts) < 2:
        return []
    return _clip_polyline(pts, region.polygon)


def _clip_polyline(pts: np.ndarray, poly, eps: float = 1e-9) -> list[np.ndarray]:
    """The runs of a polyline inside ``poly``, its vertices in their order: cut where it leaves the
    region, one piece per run. Segment by segment, so a line that crosses itself is not re-noded
    (shapely's line ∩ polygon splits at self-crossings and line_merge may re-order the pieces)."""
    from shapely.geometry import LineString

    if _inside_convex(pts, poly):  # every segment between a convex region's inner points is inside
        return [pts] if _length(pts) > 1e-3 else []
    runs: list[list[np.ndarray]] = []
    open_run = False  # the previous segment ended inside, at its end point
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        d = b - a
        L2 = float(d @ d)
        if L2 <= eps:
            continue
        inter = LineString([a, b]).intersection(poly)
        parts = [
            g for g in getattr(inter, "geoms", [inter]) if g.geom_type == "LineString" and not g.is_empty
        ]
        spans = []
        for g in parts:
            c = np.asarray(g.coords)
            t = ((c - a) @ d) / L2
            spans.append((float(t.min()), float(t.max())))
        spans.sort()
        for t0, t1 in spans:
            p0, p1 = a + t0 * d, a + t1 * d
            if open_run and t0 <= 1e-7:
                runs[-1].append(p1)
            else:
                runs.append([p0, p1])
            open_run = t1 >= 1 - 1e-7
        if not spans:
            open_run = False
    closed = len(pts) > 2 and np.allclose(pts[0], pts[-1])
    if closed and len(runs) >= 2 and np.allclose(runs[0][0], pts[0]) and np.allclose(runs[-1][-1], pts[-1]):
        runs[0] = runs.pop() + runs[0][1:]  # a closed line cut elsewhere: its start is not a cut
    out = []
    for r in runs:
        arr = np.asarray(r)
        if _length(arr) > 1e-3:
            out.append(arr)
    return out


def _inside_convex(pts: np.ndarray, poly) -> bool:
    """All points inside a convex ``poly`` (then so is every segment between them)."""
    from shapely import contains_xy

    convex = abs(poly.convex_hull.area - poly.area) <= 1e-9 * max(1.0, poly.area)
    return convex and bool(contains_xy(poly, pts[:, 0], pts[:, 1]).all())


def _length(p: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def clip_elements(elements, region: Region, polygon_classes=(1,)) -> list[tuple[int, np.ndarray]]:
    """[(class, points)] → the same clipped to the region (pieces split out)."""
    out = []
    for c, pts in elements:
        for piece in clip_element(pts, int(c) in polygon_classes, region):
            out.append((int(c), piece))
    return out


def clip_vectors(vectors: list[dict], region: Region, polygon_classes=(1,)) -> list[dict]:
    """hd-eval vectors ({"pts", "type", ["confidence_level"]}) → clipped; pieces keep the score."""
    out = []
    for v in vectors:
        for piece in clip_element(v["pts"], int(v["type"]) in polygon_classes, region):
            nv = dict(v)
            nv["pts"] = piece.tolist()
            out.append(nv)
    return out


def clip_documents(results: list, gts: list, where: str = "input") -> tuple[list, list, int]:
    """hd-eval frames (dicts): where a result frame carries ``"region"`` (:meth:`Region.coords`, in
    the points' frame), clip both its predictions and its GT to it (an empty region: nothing of
    either is scored). Returns (results, gts, frames clipped)."""
    from .errors import HDMapError

    res_out, gt_out, n = [], [], 0
    for i, (r, g) in enumerate(zip(results, gts, strict=False)):
        parts = r.get("region") if isinstance(r, dict) else None
        if parts is None:
            res_out.append(r)
            gt_out.append(g)
            continue
        try:
            if not isinstance(parts, list):
                raise TypeError
            reg = Region.from_coords("file", parts)
        except (ValueError, TypeError):
            raise HDMapError(
                f"{where}: results[{i}].region: expected a list of rings [[x, y], ...] "
                "(a part with holes: [ring, hole, ...])"
            ) from None
        if not reg.polygon.is_valid:  # (clipping to a self-intersecting ring fails inside GEOS)
            from shapely.validation import explain_validity

            raise HDMapError(
                f"{where}: results[{i}].region: not a valid polygon ({explain_validity(reg.polygon)})"
            )
        res_out.append({**r, "vectors": clip_vectors(r.get("vectors", []), reg)})
        gt_out.append({**g, "vectors": clip_vectors(g.get("vectors", []), reg)})
        n += 1
    return res_out, gt_out, n
