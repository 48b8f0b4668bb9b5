"""Which LiDAR returns a camera beside the LiDAR can see.

A LiDAR's returns are first hits along its own rays, so returns that are neighbours in its angular
domain (azimuth and elevation about the cloud frame's origin) span the surface it sees. That surface
is rebuilt as triangles, and a return is hidden from the camera when the camera's ray to it passes
behind one of them: the wall a roof LiDAR sees just past a board's edge, where the camera lower down
sees the board. No window in the image can tell this: a 16-ring LiDAR's rings are tens of pixels
apart, while a dense cloud's far ground steps in depth between neighbouring pixels.

Triangles (:func:`_stitch`): the returns are cut into azimuth columns as wide as their typical
spacing; each column is chained by elevation and each two neighbouring columns are stitched into a
strip by merging their chains. That triangulates any scan pattern (rings, staggered beams, a Livox
rosette) in a few sorts, where a Delaunay triangulation of a ring grid takes tenths of a second. A
triangle is a surface (:func:`_surface`) only where

- its corners lie within ``MAX_EDGE_DEG`` of each other (wider: a gap with no returns, such as sky);
- the LiDAR sees it at ``MIN_INCIDENCE_DEG`` or more: a triangle along the LiDAR's rays bridges a
  depth step (a pole and the wall behind it) or is far ground, which hides nothing;
- a neighbour in its strip is a surface too and faces the same way within ``MAX_BEND_DEG``: returns
  scattered in depth (foliage, noise, a volume of points) make no surface.

A surface ends somewhere between its last return and the next return past its edge, and the camera's
ray to a return it hides may pass through that gap: each surface is given a strip up to half-way
across it (:func:`_edge_strips`, where the edge lies on average). A return is hidden when its
projection in the camera lies in a surface triangle or strip whose depth there is nearer than its
own by more than ``HIDDEN_ABS_M`` and ``HIDDEN_REL`` of that depth (LiDAR noise, a chord across a
concave corner).

Limits: an object narrower than the LiDAR's spacing (a far pole in one column of returns) forms no
surface and hides nothing; a hidden return behind the far half of an edge's gap is kept, and a
visible one seen through the near half is dropped. The cloud's frame must have its origin at the
sensor, as every LiDAR driver's frame has (a cloud moved into ``base_link`` first is not a set of
first hits from that origin). The rule is not applied to a world frame
(:func:`~.depth_registration.cloud_to_depth`): one TF has the camera move in
(:func:`gs_mapping.tf.is_world_frame`), or one farther than ``MAX_SENSOR_OFFSET_M`` from the camera.
Returns on one ray (dual return, scans concatenated) are tested against the surface of the nearest
of each.
"""

from __future__ import annotations

import numpy as np

MAX_EDGE_DEG = 6.0
MIN_INCIDENCE_DEG = 10.0
MAX_BEND_DEG = 30.0
HIDDEN_ABS_M = 0.1
HIDDEN_REL = 0.05
# returns nearer in direction than this (rad) are on one ray: float32 twins lie ~1e-7 apart, while the
# finest scan patterns space their rays 1.5e-3 apart (an AT128's 0.1 deg, an OS1's 2048 columns)
SAME_RAY_RAD = 1e-4
# a cloud frame whose origin lies farther than this (m) from the camera is not its LiDAR's on the rig
# but a world frame (FAST-LIO's camera_init, LIO-SAM's odom, velodyne's fixed_frame): rigs hold their
# LiDAR within a few metres of the camera, and a scan's stamp may lag the image's by 0.1 s (3 m at
# 30 m/s); triangles about a far origin are not the LiDAR's surface and drop visible returns
MAX_SENSOR_OFFSET_M = 10.0

_Z_NEAR = 0.05  # corners nearer to the camera plane (m) than this are not projected
_PAIRS_PER_CHUNK = 1 << 21  # (triangle, return) pairs tested at once: bounds memory


def hidden_returns(
    p_cloud: np.ndarray, T_cam_cloud: np.ndarray, K: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """(N,) bool: which returns ``p_cloud`` (N, 3) float64, in the cloud's frame whose origin is the
    sensor, the camera cannot see. ``T_cam_cloud`` (4x4) moves them into its optical frame, ``K``
    is its pinhole matrix, ``size = (W, H)``."""
    w, h = int(size[0]), int(size[1])
    hidden = np.zeros(len(p_cloud), bool)
    T = np.asarray(T_cam_cloud, np.float64)
    Kc = np.asarray(K, np.float64)

    def project(p: np.ndarray) -> np.ndarray:  # (N, 3) u, v, z (by columns: many times faster)
        x, y, z = (p[:, 0] * T[i, 0] + p[:, 1] * T[i, 1] + p[:, 2] * T[i, 2] + T[i, 3] for i in range(3))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([Kc[0, 0] * x / z + Kc[0, 2], Kc[1, 1] * y / z + Kc[1, 2], z], 1)

    uvz = project(p_cloud)
    u, v, z = uvz.T
    # the returns that may be a corner of a triangle reaching into the image
    m = max(abs(Kc[0, 0]), abs(Kc[1, 1])) * np.tan(np.radians(MAX_EDGE_DEG)) + 1
    sel = np.flatnonzero((z > _Z_NEAR) & (u > -m) & (u < w + m) & (v > -m) & (v < h + m))
    if len(sel) < 3:
        return hidden
    # the surface is the first hits': of returns on one ray (dual return, scans concatenated, duplicate
    # points) the nearest; every return is tested against it
    r = _norm(p_cloud[sel])
    d = p_cloud[sel] / r[:, None]
    first = _nearest_per_ray(d, r)
    sel, p, d, r = sel[first], p_cloud[sel[first]], d[first], r[first]
    if len(sel) < 3:
        return hidden
    tri, joined = _stitch(d)
    surface, step, normal = _surface(p, d, tri, joined)
    extra, strips = _edge_strips(p, d, r, tri, surface, step, normal)
    tri = np.concatenate([tri[surface], strips])
    if not len(tri):
        return hidden
    corners = np.concatenate([uvz[sel], project(extra)])
    tri = tri[(corners[tri, 2] > _Z_NEAR).all(1)]  # (a strip's new corner behind the camera: no triangle)
    # the returns that land on a pixel (rounded, as cloud_to_depth does) are tested
    test = np.flatnonzero((z > 1e-6) & (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5))
    behind = _behind_triangles(corners[tri], uvz[test], w, h)
    hidden[test[behind]] = True
    return hidden


def _norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def _nearest_per_ray(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Indices of the returns (unit directions ``d``, ranges ``r``) nearest on their ray: of returns
    within ``SAME_RAY_RAD`` of each other the farther ones (of equal ranges, the later) are left out."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(d).query_pairs(2 * np.sin(SAME_RAY_RAD / 2), output_type="ndarray")  # (i < j)
    i, j = pairs[:, 0], pairs[:, 1]
    keep = np.ones(len(d), bool)
    keep[np.where(r[i] <= r[j], j, i)] = False
    return np.flatnonzero(keep)


def _angles(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation of unit directions ``d``. The pole is the frame's z (a spinning LiDAR's
    axis: rings run along azimuth) unless they lie within 45 degrees of it; azimuth 0 is their mean
    direction, so that the ±180 degree seam lies behind them."""
    mean = d.mean(0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    pole = np.eye(3)[2 if abs(mean[2]) < np.sqrt(0.5) else int(np.argmin(np.abs(mean)))]
    e1 = mean - pole * float(mean @ pole)
    e1 /= max(float(np.linalg.norm(e1)), 1e-12)
    e2 = np.cross(pole, e1)
    az = np.arctan2(d @ e2, d @ e1)
    el = np.arcsin(np.clip(d @ pole, -1.0, 1.0))
    return az, el


def _column_width(d: np.ndarray, az: np.ndarray) -> float:
    """The returns' typical angular spacing (radians): the median distance to the nearest other
    direction (along a ring for a spinning LiDAR), 0 where there is none. Measured on the slab of
    the 2000 returns nearest the middle azimuth, which holds every ring (a tree of all costs more)."""
    from scipy.spatial import cKDTree

    if len(d) > 2000:
        d = d[np.argpartition(np.abs(az - np.median(az)), 2000)[:2000]]
    dist, _ = cKDTree(d).query(d, k=2)
    gaps = dist[:, 1][dist[:, 1] > 1e-9]
    return float(np.median(gaps)) if len(gaps) else 0.0


def _stitch(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (T, 3) over the unit directions ``d`` and (T,) bool: each shares an edge with the
    one before it (the same strip)."""
    az, el = _angles(d)
    width = _column_width(d, az)
    if width <= 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, bool)
    col = np.floor(az / width).astype(np.int64)
    col -= col.min()
    rank = np.empty(len(d), np.int64)
    rank[np.argsort(el)] = np.arange(len(d))  # (integer keys sort many times faster than lexsort)
    order = np.argsort(col * len(d) + rank)  # by column, then elevation
    cols, count = np.unique(col[order], return_counts=True)
    k = np.repeat(np.arange(len(cols)), count)  # each sorted return's column, 0..len(cols)-1
    # neighbouring non-empty columns near enough for a triangle form a strip
    near = np.append(np.diff(cols) * width <= np.radians(MAX_EDGE_DEG), False)
    left, right = near[k], np.concatenate([[False], near])[k]
    strip = np.concatenate([k[left], k[right] - 1])
    side = np.concatenate([np.zeros(int(left.sum()), bool), np.ones(int(right.sum()), bool)])
    pt = np.concatenate([order[left], order[right]])
    o = np.argsort(strip * len(d) + rank[pt])  # each strip: its two chains merged by elevation
    strip, side, pt = strip[o], side[o], pt[o]
    n = len(pt)
    pos = np.arange(n)
    first = np.flatnonzero(np.concatenate([[True], strip[1:] != strip[:-1]]))
    start = np.repeat(first, np.diff(np.append(first, n)))  # each entry's strip's first entry
    last_r = np.maximum.accumulate(np.where(side, pos, -1))  # the latest entry of each chain
    last_l = np.maximum.accumulate(np.where(side, -1, pos))
    # merging two chains: each return closes a triangle with its own chain's previous return and
    # the other chain's latest
    i = pos[1:]
    same = np.where(side[i], last_r[i - 1], last_l[i - 1])
    other = np.where(side[i], last_l[i - 1], last_r[i - 1])
    ok = (same >= start[i]) & (other >= start[i])
    tri = np.stack([pt[same[ok]], pt[i[ok]], pt[other[ok]]], 1)
    # within a strip the triangles come in order, each sharing an edge with the one before
    s = strip[i[ok]]
    return tri, np.concatenate([[False], s[1:] == s[:-1]])


def _surface(p: np.ndarray, d: np.ndarray, tri: np.ndarray, joined: np.ndarray):
    """(T,) bool twice: the triangles that are a surface the LiDAR saw (see the module's docstring),
    and the steps: small triangles that are not (a depth step, grazing ground, scattered returns);
    (3, T) their unit normals, towards the sensor."""
    # (3, T) rows: arithmetic on contiguous rows is many times faster than on (T, 3) columns
    P, D = np.ascontiguousarray(p.T), np.ascontiguousarray(d.T)
    a, b, c = (P[:, tri[:, j]] for j in range(3))
    da, db, dc = (D[:, tri[:, j]] for j in range(3))
    chord2 = (2 * np.sin(np.radians(MAX_EDGE_DEG) / 2)) ** 2
    small = (_sq(da - db) <= chord2) & (_sq(db - dc) <= chord2) & (_sq(dc - da) <= chord2)
    e, f = b - a, c - a
    n = np.stack([e[1] * f[2] - e[2] * f[1], e[2] * f[0] - e[0] * f[2], e[0] * f[1] - e[1] * f[0]])
    ray = da + db + dc
    with np.errstate(divide="ignore", invalid="ignore"):
        n /= np.sqrt(_sq(n))
        facing = (n * ray).sum(0) / np.sqrt(_sq(ray))
    seen = small & (np.abs(facing) >= np.sin(np.radians(MIN_INCIDENCE_DEG)))  # (NaN, a line: no)
    n *= -np.sign(facing)  # each normal towards the sensor
    # each triangle and the one before it in its strip: both seen, facing alike
    agree = joined[1:] & seen[1:] & seen[:-1]
    agree &= (n[:, 1:] * n[:, :-1]).sum(0) >= np.cos(np.radians(MAX_BEND_DEG))
    surface = seen & (np.append(agree, False) | np.concatenate([[False], agree]))
    return surface, small & ~surface, n


def _sq(x: np.ndarray) -> np.ndarray:
    """Squared lengths of the columns of a (3, T) array."""
    return x[0] * x[0] + x[1] * x[1] + x[2] * x[2]


def _edge_strips(p, d, r, tri, surface, step, normal):
    """Strips that carry surfaces half-way across their edges' gaps: new corners (K, 3) and triangles
    (S, 3) whose corners index the returns, then the new corners (stacked after them).

    A step triangle's near corners are those before its larger jump in range. Where they are corners
    of a surface and its far corner lies off that surface's plane (seen from the nearest corner, at
    ``MIN_INCIDENCE_DEG`` or more), the strip runs from them, at their range, to half-way towards the
    far corner(s). Ground stays on its plane from the last ring steep enough to be a surface to the
    grazing ones beyond (and they form no surface): it raises no walls."""
    # each corner's normal: the sum of its surface triangles' (zero: on no surface)
    corners = tri[surface].ravel()
    vn = np.stack([np.bincount(corners, np.repeat(normal[k, surface], 3), len(d)) for k in range(3)])
    on_surface = np.bincount(corners, minlength=len(d)) > 0
    t = tri[step]
    rt = r[t]
    o = np.argsort(rt, 1)
    t, rt = np.take_along_axis(t, o, 1), np.take_along_axis(rt, o, 1)  # corners, nearest first
    one = rt[:, 1] * rt[:, 1] >= rt[:, 0] * rt[:, 2]  # the larger jump after the nearest corner
    gap = p[t[:, 2]] - p[t[:, 0]]
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.abs(np.einsum("ij,ji->i", gap, vn[:, t[:, 0]])) / (_norm(gap) * _norm(vn[:, t[:, 0]].T))
    edge = on_surface[t[:, 0]] & (off >= np.sin(np.radians(MIN_INCIDENCE_DEG)))
    a = t[edge & one]  # one near corner: a triangle towards both far ones
    b = t[edge & ~one & on_surface[t[:, 1]]]  # two: a quad towards the far one

    def half(near, far):  # half-way from a near corner towards another, at the near corner's range
        m = d[near] + d[far]
        return m * (r[near] / _norm(m))[:, None]

    extra = np.concatenate(
        [half(a[:, 0], a[:, 1]), half(a[:, 0], a[:, 2]), half(b[:, 1], b[:, 2]), half(b[:, 0], b[:, 2])]
    )
    na, nb = len(a), len(b)
    ia = len(d) + np.arange(na)
    ib1 = len(d) + 2 * na + np.arange(nb)  # half-way from b's second corner
    ib0 = ib1 + nb  # ... from its first
    strips = np.concatenate(
        [
            np.stack([a[:, 0], ia, ia + na], 1),
            np.stack([b[:, 0], b[:, 1], ib1], 1),
            np.stack([b[:, 0], ib1, ib0], 1),
        ]
    )
    return extra, strips


def _behind_triangles(tri_uvz: np.ndarray, uvz: np.ndarray, w: int, h: int) -> np.ndarray:
    """(M,) bool: the returns at camera ``uvz`` (M, 3) that lie behind a triangle (``tri_uvz``
    (T, 3, 3): its corners' u, v, z) by more than the tolerance."""
    out = np.zeros(len(uvz), bool)
    # each triangle's bounds in u, v and z: (T, 3) (a reduction over an axis of 3 is many times
    # slower than two elementwise ones)
    A, B, C = tri_uvz[:, 0], tri_uvz[:, 1], tri_uvz[:, 2]
    lo, hi = np.minimum(np.minimum(A, B), C), np.maximum(np.maximum(A, B), C)
    # triangles meet returns in square tiles of the image, about one return to a tile: each triangle
    # is paired with the returns of the tiles its bounds touch
    size = int(np.clip(np.sqrt(w * h / max(len(uvz), 1)), 2, 64))
    nx, ny = -(-w // size), -(-h // size)
    txy = np.floor((uvz[:, :2] + 0.5) / size).astype(np.int64)  # (pixel centres at integers)
    tile = txy[:, 1] * nx + txy[:, 0]
    order = np.argsort(tile, kind="stable")
    per_tile = np.bincount(tile, minlength=nx * ny)
    tile_start = np.cumsum(per_tile) - per_tile
    table = np.zeros((ny + 1, nx + 1), np.int64)  # summed-area table of the returns per tile
    table[1:, 1:] = per_tile.reshape(ny, nx).cumsum(0).cumsum(1)
    first = np.clip(np.floor((lo[:, :2] + 0.5) / size).astype(np.int64), 0, [nx, ny])
    stop = np.maximum(np.clip(np.floor((hi[:, :2] + 0.5) / size).astype(np.int64) + 1, 0, [nx, ny]), first)
    (x0, y0), (x1, y1) = first.T, stop.T  # each triangle's tiles: [x0, x1) x [y0, y1)
    # the work each triangle brings: its tiles and the returns in them (summed-area lookups)
    cost = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] + (x1 - x0) * (y1 - y0)
    ends = np.cumsum(cost)
    begin = 0
    while begin < len(tri_uvz):
        end = max(
            int(np.searchsorted(ends, ends[begin] - cost[begin] + _PAIRS_PER_CHUNK, "right")), begin + 1
        )
        s = slice(begin, end)
        t, k = _pairs(x0[s], x1[s], y0[s], y1[s], nx, tile_start, per_tile)
        out[_hidden_pairs(tri_uvz, lo, hi, t + begin, order[k], uvz)] = True
        begin = end
    return out


def _pairs(x0, x1, y0, y1, nx, tile_start, per_tile) -> tuple[np.ndarray, np.ndarray]:
    """(triangle, position in the tile-sorted returns) pairs: every return in every tile of each
    triangle's tile box [x0, x1) x [y0, y1)."""
    nt = (x1 - x0) * (y1 - y0)
    t = np.repeat(np.arange(len(nt)), nt)
    j = np.arange(int(nt.sum())) - np.repeat(np.cumsum(nt) - nt, nt)
    wide = (x1 - x0)[t]
    tiles = (y0[t] + j // wide) * nx + x0[t] + j % wide
    cnt = per_tile[tiles]
    t = np.repeat(t, cnt)
    j = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return t, np.repeat(tile_start[tiles], cnt) + j


def _hidden_pairs(tri_uvz, lo, hi, t, k, uvz) -> np.ndarray:
    """The returns ``k`` of the pairs (triangle ``t``, return ``k``) that lie in the triangle in the
    image, behind it by more than the tolerance; ``lo``, ``hi``: the triangles' bounds."""
    # cheap tests first (most pairs are a return and a triangle of its own surface): deeper than the
    # triangle's nearest corner by the tolerance, within its bounds
    near = lo[t, 2]
    keep = uvz[k, 2] - near > np.maximum(HIDDEN_ABS_M, HIDDEN_REL * near)
    t, k = t[keep], k[keep]
    pu, pv = uvz[k, 0], uvz[k, 1]
    keep = (pu >= lo[t, 0]) & (pu <= hi[t, 0]) & (pv >= lo[t, 1]) & (pv <= hi[t, 1])
    t, k, pu, pv = t[keep], k[keep], pu[keep], pv[keep]
    A, B, C = (tri_uvz[t, j] for j in range(3))

    def cross(P, Q):  # twice the signed area of (P, Q, the return)
        return (Q[:, 0] - P[:, 0]) * (pv - P[:, 1]) - (Q[:, 1] - P[:, 1]) * (pu - P[:, 0])

    area = (B[:, 0] - A[:, 0]) * (C[:, 1] - A[:, 1]) - (B[:, 1] - A[:, 1]) * (C[:, 0] - A[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        wa, wb, wc = cross(B, C) / area, cross(C, A) / area, cross(A, B) / area  # barycentric
        inside = (wa >= -1e-9) & (wb >= -1e-9) & (wc >= -1e-9)  # (NaN, a triangle seen edge-on: no)
        depth = 1.0 / (wa / A[:, 2] + wb / B[:, 2] + wc / C[:, 2])  # 1/z is linear in the image
    behind = uvz[k, 2] - depth > np.maximum(HIDDEN_ABS_M, HIDDEN_REL * depth)
    return k[inside & behind]
