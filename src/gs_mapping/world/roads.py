"""The road network of the procedural world and its map ground truth.

A main road (the route the vehicle drives) is a chain of *links* joined at intersections. Its
centreline is integrated from a curvature profile of straight, clothoid and arc pieces, so heading
and curvature are continuous. Each link has 1–4 lanes; crossing roads are straight and perpendicular,
with one or two arms (T- or 4-way junctions). Everything is in the ``map`` frame on the plane z = 0.

Ground truth follows MapTR's classes: 0 divider (painted lane lines; a dashed line is one continuous
polyline, as in nuScenes), 1 ped_crossing (closed polygon, first point repeated), 2 boundary (curb
lines: the rings of the drivable area, with fillets at junction corners).

The same shapes drive the ground texture (see :mod:`.ground`), so projected ground truth lands on
the paint by construction; tests check it through the bag's own CameraInfo and TF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString, MultiLineString, Polygon, box
from shapely.ops import substring, unary_union

DIVIDER, PED_CROSSING, BOUNDARY = 0, 1, 2
CLASS_NAMES = {DIVIDER: "divider", PED_CROSSING: "ped_crossing", BOUNDARY: "boundary"}

# Ground labels (the texture decides colours from these).
GRASS, ASPHALT, SIDEWALK, CURB, PAINT_WHITE, PAINT_YELLOW = 0, 1, 2, 3, 4, 5

STEP = 0.5  # centreline sampling (m)
LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 3.5
CURB_WIDTH = 0.3  # painted as a light concrete strip centred on the boundary line
CORNER_RADIUS = 4.0  # curb fillet at junction corners
CROSSING_DEPTH = 4.0  # along the road
CROSSING_GAP = 0.5  # between the fillet end and the crossing
STRIPE_WIDTH, STRIPE_PERIOD = 0.5, 1.0
DIVIDER_WIDTH, CENTRE_WIDTH = 0.15, 0.2
DASH, GAP = 3.0, 6.0
JUNCTION_STRAIGHT = 25.0  # straight main road either side of a junction centre
MIN_CLIPPED_LENGTH = 0.2  # clipped pieces shorter than this (m) are dropped from the ego ground truth
MIN_CLIPPED_AREA = 0.1  # … and crossing pieces smaller than this (m²)


@dataclass
class MapElement:
    """One ground-truth vector element: class index and ordered (N, 2) points in its frame."""

    cls: int
    pts: np.ndarray

    @property
    def closed(self) -> bool:
        return len(self.pts) > 2 and bool(np.allclose(self.pts[0], self.pts[-1]))

    def to_json(self) -> dict:
        return {"pts": [[round(float(x), 4), round(float(y), 4)] for x, y in self.pts], "type": int(self.cls)}


@dataclass
class Road:
    """A road: dense centreline, lanes, and which lane lines are painted how."""

    name: str
    pts: np.ndarray  # (N, 2)
    heading: np.ndarray  # (N,)
    n_lanes: int
    lane_width: float = LANE_WIDTH
    n_forward: int = 1  # lanes right of the centre line that run along +s (right-hand traffic)
    yellow_centre: bool = False

    @property
    def width(self) -> float:
        return self.n_lanes * self.lane_width

    @property
    def normals(self) -> np.ndarray:
        return np.stack([-np.sin(self.heading), np.cos(self.heading)], axis=1)  # left normal

    def offset_line(self, d: float) -> np.ndarray:
        return self.pts + d * self.normals

    def polygon(self) -> Polygon:
        return LineString(self.pts).buffer(self.width / 2, cap_style="flat", join_style="round")

    def lane_centre(self, lane: int) -> float:
        """Lateral offset (left positive) of lane ``lane`` counted from the right edge."""
        return -self.width / 2 + (lane + 0.5) * self.lane_width

    def dividers(self) -> list[tuple[float, bool, int]]:
        """(lateral offset, dashed, paint label) for each painted lane line."""
        out = []
        for k in range(1, self.n_lanes):
            d = -self.width / 2 + k * self.lane_width
            centre = k == self.n_forward and self.n_lanes >= 2 and self.n_forward < self.n_lanes
            out.append((d, not centre, PAINT_YELLOW if centre and self.yellow_centre else PAINT_WHITE))
        return out


@dataclass
class Junction:
    centre: np.ndarray  # (2,)
    tangent: np.ndarray  # main road direction (2,)
    s: float  # station on the main centreline
    main_width: float  # widest adjacent link
    cross: Road | None
    arms: tuple[bool, bool]  # (left arm, right arm) exist

    def local_box(self, along: tuple[float, float], across: tuple[float, float]) -> Polygon:
        """A rectangle given in the junction frame (x along the main road, y to its left)."""
        t = self.tangent
        n = np.array([-t[1], t[0]])
        corners = [(along[0], across[0]), (along[1], across[0]), (along[1], across[1]), (along[0], across[1])]
        return Polygon([tuple(self.centre + a * t + c * n) for a, c in corners])


@dataclass
class PaintStroke:
    """A painted area (polygon) with its label and centreline (for tests and debugging)."""

    polygon: Polygon
    label: int
    centreline: np.ndarray  # (N, 2)


@dataclass
class RoadNetwork:
    main: Road
    links: list[tuple[float, float, Road]]  # (s0, s1, link road) along the main centreline
    junctions: list[Junction]
    cross_roads: list[Road]
    drivable: Polygon = field(init=False)
    sidewalk: Polygon = field(init=False)
    paint: list[PaintStroke] = field(init=False)
    elements: list[MapElement] = field(init=False)

    def __post_init__(self) -> None:
        self._build()

    # ----------------------------------------------------------------------------------- geometry
    def _build(self) -> None:
        polys = [link.polygon() for _, _, link in self.links] + [r.polygon() for r in self.cross_roads]
        raw = unary_union(polys)
        # Closing rounds the concave junction corners into curb fillets; convex shapes are unchanged.
        drivable = raw.buffer(CORNER_RADIUS, quad_segs=8).buffer(-CORNER_RADIUS, quad_segs=8)
        drivable = unary_union([drivable, raw]).simplify(0.005)
        if drivable.geom_type != "Polygon":  # keep the part the route is on
            drivable = max(drivable.geoms, key=lambda g: g.area)
        self.drivable = drivable
        self.sidewalk = drivable.buffer(SIDEWALK_WIDTH, quad_segs=4).difference(drivable)

        d_excl = CORNER_RADIUS + CROSSING_GAP + CROSSING_DEPTH + 0.5
        zones, crossings = [], []
        for j in self.junctions:
            wc = j.cross.width
            zones.append(
                j.local_box(
                    (-wc / 2 - d_excl, wc / 2 + d_excl),
                    (-j.main_width / 2 - d_excl, j.main_width / 2 + d_excl),
                )
            )
            # each crossing with its road's traffic direction (the stripes run along it)
            a0 = wc / 2 + CORNER_RADIUS + CROSSING_GAP
            for sign in (-1.0, 1.0):  # main road, before and after the junction
                w = self._link_at(j.s + sign * (a0 + 1.0)).width
                rect = j.local_box(tuple(sorted((sign * a0, sign * (a0 + CROSSING_DEPTH)))), (-w / 2, w / 2))
                crossings.append((rect, j.tangent))
            c0 = j.main_width / 2 + CORNER_RADIUS + CROSSING_GAP
            for exists, sign in zip(j.arms, (1.0, -1.0), strict=False):
                if exists:
                    rect = j.local_box(
                        (-wc / 2, wc / 2), tuple(sorted((sign * c0, sign * (c0 + CROSSING_DEPTH))))
                    )
                    crossings.append((rect, np.array([-j.tangent[1], j.tangent[0]])))  # the cross road
        excl = unary_union(zones) if zones else Polygon()

        elements: list[MapElement] = []
        paint: list[PaintStroke] = []
        for road in [link for _, _, link in self.links] + self.cross_roads:
            for d, dashed, label in road.dividers():
                line = LineString(road.offset_line(d)).difference(excl).intersection(self.drivable)
                for piece in _lines(line):
                    if piece.length < 2.0:
                        continue
                    pts = np.asarray(piece.simplify(0.01).coords)
                    elements.append(MapElement(DIVIDER, pts))
                    width = DIVIDER_WIDTH if dashed else CENTRE_WIDTH
                    for stroke in _dashes(piece) if dashed else [piece]:
                        paint.append(
                            PaintStroke(
                                stroke.buffer(width / 2, cap_style="flat"), label, np.asarray(stroke.coords)
                            )
                        )
        for poly, traffic in crossings:
            ring = np.asarray(poly.exterior.coords)
            elements.append(MapElement(PED_CROSSING, ring))
            paint.extend(_zebra(ring, traffic))
        for ring in [self.drivable.exterior, *self.drivable.interiors]:
            elements.append(MapElement(BOUNDARY, np.asarray(ring.coords)))
        self.elements = elements
        self.paint = paint
        self.crossings = [poly for poly, _ in crossings]

    def _link_at(self, s: float) -> Road:
        for s0, s1, link in self.links:
            if s0 <= s <= s1:
                return link
        return self.links[0][2] if s < self.links[0][0] else self.links[-1][2]

    def roads(self) -> list[Road]:
        return [link for _, _, link in self.links] + self.cross_roads

    # ---------------------------------------------------------------------------------- the route
    def route(self, rng: np.random.Generator, wander: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
        """The lane-centre path the vehicle follows: (N, 2) points and stations s of the main road.

        The lane is chosen per link among the forward lanes (mostly the one nearest the previous lane);
        changes happen smoothly (continuous curvature) across junctions.
        """
        main = self.main
        s = np.arange(len(main.pts)) * STEP
        lanes = [self.links[0][2].lane_centre(int(rng.integers(0, self.links[0][2].n_forward)))]
        for _, _, link in self.links[1:]:
            centres = np.array([link.lane_centre(k) for k in range(link.n_forward)])
            nearest = int(np.argmin(np.abs(centres - lanes[-1])))
            pick = nearest if rng.random() < 0.7 else int(rng.integers(0, link.n_forward))
            lanes.append(float(centres[pick]))
        offset = np.full_like(s, lanes[0])
        for k in range(1, len(self.links)):
            # smootherstep over 40 m around the junction: continuous curvature, inside the straight
            sj = self.links[k][0]
            t = np.clip((s - (sj - 20.0)) / 40.0, 0.0, 1.0)
            offset = offset + (lanes[k] - lanes[k - 1]) * t * t * t * (t * (6 * t - 15) + 10)
        phase, wavelength = rng.uniform(0, 2 * np.pi), rng.uniform(60, 120)
        offset = offset + wander * np.sin(2 * np.pi * s / wavelength + phase)
        return main.pts + offset[:, None] * main.normals, s


def _lines(geom) -> list[LineString]:
    if geom.is_empty:
        return []
    if isinstance(geom, LineString):
        return [geom]
    if isinstance(geom, MultiLineString):
        return list(geom.geoms)
    out = []
    for g in getattr(geom, "geoms", []):
        out.extend(_lines(g))
    return out


def clip_line(pts: np.ndarray, window) -> list[LineString]:
    """A polyline's pieces inside ``window`` (a shapely polygon). Pieces that meet end to end are
    merged (MapTR's ``ops.linemerge``): the clip also splits a closed ring at its first point, which
    is no cut."""
    pieces = LineString(pts).intersection(window)
    if isinstance(pieces, MultiLineString):
        pieces = shapely.line_merge(pieces)
    return _lines(pieces)


def _dashes(line: LineString) -> list[LineString]:
    out, a = [], 0.0
    while a < line.length - 0.5:
        out.append(substring(line, a, min(a + DASH, line.length)))
        a += DASH + GAP
    return out


def _zebra(ring: np.ndarray, traffic: np.ndarray) -> list[PaintStroke]:
    """Stripes parallel to ``traffic`` (its road's direction) inside a crossing rectangle (ring of
    5 points)."""
    p0, p1, p2 = ring[0], ring[1], ring[2]
    # The ring's corner order says nothing about traffic (``local_box`` always starts along the main
    # road, across the traffic of a cross-road arm): the stripes run along the edge nearer ``traffic``.
    e1, e2 = p1 - p0, p2 - p1
    cos1, cos2 = (abs(e @ traffic) / np.linalg.norm(e) for e in (e1, e2))
    along, across = (e1, e2) if cos1 >= cos2 else (e2, e1)
    length_across = float(np.linalg.norm(across))
    u = across / length_across
    strokes = []
    n = int((length_across - 0.2) // STRIPE_PERIOD)
    start = (length_across - (n - 1) * STRIPE_PERIOD) / 2
    for k in range(n):
        c = p0 + u * (start + k * STRIPE_PERIOD)
        centre = np.array([c, c + along])
        poly = LineString(centre).buffer(STRIPE_WIDTH / 2, cap_style="flat")
        strokes.append(PaintStroke(poly, PAINT_WHITE, centre))
    return strokes


# -------------------------------------------------------------------------------------- generation
def _integrate(kappa: np.ndarray, start: np.ndarray, heading0: float) -> tuple[np.ndarray, np.ndarray]:
    heading = heading0 + np.concatenate([[0.0], np.cumsum(kappa[:-1] * STEP)])
    mid = heading + 0.5 * kappa * STEP
    steps = np.stack([np.cos(mid), np.sin(mid)], axis=1) * STEP
    pts = start + np.concatenate([[np.zeros(2)], np.cumsum(steps[:-1], axis=0)])
    return pts, heading


def _curvature_profile(rng: np.random.Generator, length: float) -> tuple[np.ndarray, list[float]]:
    """Curvature samples of the main road and the stations of junction candidates."""
    pieces: list[np.ndarray] = [np.zeros(int(40 / STEP))]
    junctions: list[float] = []
    heading = 0.0
    total = 40.0
    while total < length + 40.0:
        # the first junction comes soon after the start so that even short drives see one
        body = rng.uniform(5, 50) if not junctions else rng.uniform(30, 100)
        used = 0.0
        while used < body:
            if rng.random() < 0.45:
                seg = rng.uniform(15, 50)
                pieces.append(np.zeros(int(seg / STEP)))
            else:
                radius = rng.uniform(45, 180)
                sign = -np.sign(heading) if abs(heading) > 0.6 else rng.choice([-1.0, 1.0])
                k = sign / radius
                room = 1.2 - sign * heading  # |heading| ≤ 1.2 rad: the route never turns back on itself
                angle = min(rng.uniform(0.2, 0.9), max(0.05, room))
                clo = rng.uniform(10, 20)
                arc = max(0.0, angle * radius - clo)
                ramp = np.linspace(0, 1, int(clo / STEP), endpoint=False)
                prof = np.concatenate([k * ramp, np.full(int(arc / STEP), k), k * ramp[::-1]])
                heading += float(prof.sum() * STEP)
                pieces.append(prof)
                seg = len(prof) * STEP
            used += seg
        total += used
        # A junction sits in the middle of a straight stretch.
        junctions.append(total + JUNCTION_STRAIGHT)
        pieces.append(np.zeros(int(2 * JUNCTION_STRAIGHT / STEP)))
        total += 2 * JUNCTION_STRAIGHT
    pieces.append(np.zeros(int(40 / STEP)))
    kappa = np.concatenate(pieces)
    # The last junction candidate may sit in the final margin: only keep those with road beyond.
    end = len(kappa) * STEP
    return kappa, [j for j in junctions if j < end - 60.0]


def generate_network(rng: np.random.Generator, length: float = 300.0) -> RoadNetwork:
    """A main road at least ``length`` metres long (plus margins) with junctions and cross roads."""
    kappa, j_stations = _curvature_profile(rng, length)
    pts, heading = _integrate(kappa, np.zeros(2), 0.0)
    yellow = bool(rng.random() < 0.5)

    # Decide cross roads first (arms may be shortened or dropped where they would hit other roads).
    tree = cKDTree(pts)
    s_all = np.arange(len(pts)) * STEP
    cross_specs = []
    occupied: list[np.ndarray] = []
    for sj in j_stations:
        i = int(round(sj / STEP))
        c, h = pts[i], heading[i]
        t = np.array([np.cos(h), np.sin(h)])
        n = np.array([-t[1], t[0]])
        nc = int(rng.integers(1, 5))
        kind = rng.random()
        want = (True, True) if kind < 0.6 else ((True, False) if kind < 0.8 else (False, True))
        arms = []
        for exists, sign in zip(want, (1.0, -1.0), strict=False):
            if not exists:
                arms.append(0.0)
                continue
            arm = rng.uniform(35, 70)
            r = np.arange(10.0, arm + 15.0, 1.0)
            probe = c + sign * r[:, None] * n
            d, idx = tree.query(probe)
            far = np.abs(s_all[idx] - sj) > 40.0
            bad = (d < 25.0) & far
            for other in occupied:
                bad |= np.min(np.linalg.norm(probe[:, None] - other[None], axis=2), axis=1) < 25.0
            if bad.any():
                arm = float(r[np.argmax(bad)]) - 15.0
            arms.append(arm if arm >= 25.0 else 0.0)
        if arms[0] == 0.0 and arms[1] == 0.0:
            continue
        cpts = c + np.arange(-arms[1], arms[0] + 1e-9, 1.0)[:, None] * n
        occupied.append(cpts[::5])
        cross_specs.append((sj, i, nc, (arms[0] > 0, arms[1] > 0), cpts, h + np.pi / 2))

    # Links between junctions; lane count may change only at 4-way junctions (a T would leave a step).
    bounds = [0.0] + [spec[0] for spec in cross_specs] + [s_all[-1]]
    links = []
    n_lanes = int(rng.integers(1, 5))
    for k in range(len(bounds) - 1):
        if k > 0 and all(cross_specs[k - 1][3]):
            n_lanes = int(rng.integers(1, 5))
        i0, i1 = int(round(bounds[k] / STEP)), int(round(bounds[k + 1] / STEP))
        link = Road(
            f"main_{k}",
            pts[i0 : i1 + 1],
            heading[i0 : i1 + 1],
            n_lanes,
            n_forward=(n_lanes + 1) // 2 if n_lanes > 1 else 1,
            yellow_centre=yellow,
        )
        if n_lanes == 1:
            link.lane_width = 4.0
        links.append((bounds[k], bounds[k + 1], link))
    main = Road("main", pts, heading, links[0][2].n_lanes)

    junctions, cross_roads = [], []
    for k, (sj, i, nc, arms, cpts, ch) in enumerate(cross_specs):
        road = Road(
            f"cross_{k}",
            cpts,
            np.full(len(cpts), ch),
            nc,
            n_forward=(nc + 1) // 2 if nc > 1 else 1,
            yellow_centre=yellow,
        )
        if nc == 1:
            road.lane_width = 4.0
        cross_roads.append(road)
        main_width = max(links[k][2].width, links[k + 1][2].width)
        junctions.append(
            Junction(pts[i], np.array([np.cos(heading[i]), np.sin(heading[i])]), sj, main_width, road, arms)
        )
    return RoadNetwork(main, links, junctions, cross_roads)


def _bounds(extent) -> tuple[float, float]:
    """``(lo, hi)`` of a BEV extent: a half size ``h`` (``-h … h``) or the pair itself."""
    if np.ndim(extent) == 0:
        return -float(extent), float(extent)
    lo, hi = extent
    return float(lo), float(hi)


def clip_elements(elements: list[MapElement], T_base_map: np.ndarray, x_range, y_range) -> list[MapElement]:
    """World elements → ego frame (x forward, y left), clipped to |x| ≤ x_range, |y| ≤ y_range, or
    to ``lo ≤ x ≤ hi`` where a range is a pair (a model's patch, not centred on the vehicle).

    Polylines clipped into several pieces give one element each; polygons stay closed rings. Slivers
    (pieces shorter than ``MIN_CLIPPED_LENGTH``, crossings under ``MIN_CLIPPED_AREA``) are dropped.
    """
    r, t = T_base_map[:2, :2], T_base_map[:2, 3]
    (x0, x1), (y0, y1) = _bounds(x_range), _bounds(y_range)
    window = box(x0, y0, x1, y1)
    out = []
    for el in elements:
        pts = el.pts @ r.T + t
        if pts[:, 0].max() < x0 or pts[:, 0].min() > x1 or pts[:, 1].max() < y0 or pts[:, 1].min() > y1:
            continue
        if el.cls == PED_CROSSING:
            geom = Polygon(pts).intersection(window)
            for g in getattr(geom, "geoms", [geom]):
                if isinstance(g, Polygon) and not g.is_empty and g.area >= MIN_CLIPPED_AREA:
                    out.append(MapElement(el.cls, np.asarray(g.exterior.coords)))
        else:
            for piece in clip_line(pts, window):
                if piece.length >= MIN_CLIPPED_LENGTH:
                    out.append(MapElement(el.cls, np.asarray(piece.coords)))
    return out
