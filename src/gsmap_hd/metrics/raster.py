"""Rasterised-IoU AP of MapVR's evaluation toolkit (jiahaoLjh/MapVectorizationEvalToolkit).

What it computes (``demo.py``, ``map_evaluator.py: InstanceIOUEval``, ``eval_config.py``):

* masks of 480 rows × 240 columns over x ∈ [−15, 15] m (columns) × y ∈ [−30, 30] m (rows, row 0 at
  y = −30): column = (x + 15) / 30 · 240, row = (y + 30) / 60 · 480, rounded with ``np.around``
  (half to even) to integer pixels;
* lines (divider 0, boundary 2): ``cv2.polylines(mask, [pts], False, 1, 1)``; ped crossings (1):
  ``cv2.fillPoly(mask, [pts], 1)``; then a 5 × 5 square dilation per instance;
* predictions need confidence ≥ 0.05 and ≥ 2 points; per frame and class at most 100, the
  highest-scoring (stable sort);
* IoU of instance masks (pycocotools ``mask.iou``: intersection / union, 0 if disjoint); per IoU
  threshold, detections in descending score each take the unmatched GT of highest IoU ≥ threshold
  (the later GT on a tie);
* pooled over frames (stable sort by score), COCO 101-point interpolated precision per threshold;
  AP of a class = mean over thresholds × recall points; classes with no GT anywhere are "absent"
  (−1) and left out of averages, as the toolkit's ``summarize`` does;
* IoU thresholds 0.25:0.05:0.50 for lines, 0.50:0.05:0.75 for ped crossings.

Rasterisation is our own numpy code that reproduces OpenCV's integer algorithms pixel for pixel:
the 8-connected ``LineIterator`` with ``clipLine`` (identical in every OpenCV 4.x/5.x we tested) and
the polygon scan-line fill of OpenCV ≤ 4.7 (the MapVR era; OpenCV ≥ 4.11 draws the same for
polygons inside the image; 4.8–4.10 differ on polygon edges, and ≥ 4.11 on polygons clipped by the
image border). ``fill_variant="4.11"`` reproduces the ≥ 4.11 fill instead (checked against 4.11,
4.13, 4.14 and 5.0). No OpenCV at runtime.

Deliberate deviation: the toolkit copies ``pts`` with ``np.copy``, so a point list written with only
JSON integers becomes an integer array and its pixel coordinates are truncated before rounding; we
always compute in float64 (what it does for any file with float coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEIGHT, WIDTH = 480, 240
PC_RANGE = (-15.0, -30.0, 15.0, 30.0)  # x_min, y_min, x_max, y_max
DILATION = 5
SCORE_THRESHOLD = 0.05
MAX_DETS = 100
LINE_IOU_THRS = np.linspace(0.25, 0.50, int(np.round((0.50 - 0.25) / 0.05)) + 1)
POLY_IOU_THRS = np.linspace(0.50, 0.75, int(np.round((0.75 - 0.50) / 0.05)) + 1)

_XY_SHIFT = 16


def to_pixels(pts: np.ndarray, height: int = HEIGHT, width: int = WIDTH, pc_range=PC_RANGE) -> np.ndarray:
    """Metric BEV points (N, 2) → integer (column, row) pixels, as the toolkit rounds them."""
    pts = np.array(pts, dtype=np.float64)
    x0, y0, x1, y1 = pc_range
    pts[:, 0] = (pts[:, 0] - x0) / (x1 - x0) * width
    pts[:, 1] = (pts[:, 1] - y0) / (y1 - y0) * height
    return np.around(pts).astype(np.int64)


# --------------------------------------------------------------------------------------------
# OpenCV-exact line drawing
# --------------------------------------------------------------------------------------------


def _tdiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division (truncation toward zero) of int64 arrays."""
    q = np.abs(a) // np.maximum(np.abs(b), 1)
    return np.where((a < 0) ^ (b < 0), -q, q)


def _clip_segments(x1, y1, x2, y2, width, height):
    """OpenCV ``clipLine`` (Cohen–Sutherland with its own rounding) on arrays of segments.

    Returns the clipped endpoints and a mask of segments that touch the image.
    """
    x1, y1, x2, y2 = (np.array(v, dtype=np.int64) for v in (x1, y1, x2, y2))
    right, bottom = width - 1, height - 1

    def code(x, y):
        return (x < 0).astype(np.int64) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c1, c2 = code(x1, y1), code(x2, y2)
    work = ((c1 & c2) == 0) & ((c1 | c2) != 0)
    # Endpoint 1 off the top/bottom: move it onto that border.
    m = work & ((c1 & 12) != 0)
    a = np.where(c1 < 8, 0, bottom)
    x1 = np.where(m, x1 + _tdiv((a - y1) * (x2 - x1), y2 - y1), x1)
    y1 = np.where(m, a, y1)
    c1 = np.where(m, (x1 < 0) + (x1 > right) * 2, c1)
    # Endpoint 2 likewise (the reference uses the already-moved endpoint 1 here).
    m = work & ((c2 & 12) != 0)
    a = np.where(c2 < 8, 0, bottom)
    x2 = np.where(m, x2 + _tdiv((a - y2) * (x2 - x1), y2 - y1), x2)
    y2 = np.where(m, a, y2)
    c2 = np.where(m, (x2 < 0) + (x2 > right) * 2, c2)
    # Then left/right borders, if still needed and still possibly visible.
    work2 = work & ((c1 & c2) == 0) & ((c1 | c2) != 0)
    m = work2 & (c1 != 0)
    a = np.where(c1 == 1, 0, right)
    y1 = np.where(m, y1 + _tdiv((a - x1) * (y2 - y1), x2 - x1), y1)
    x1 = np.where(m, a, x1)
    c1 = np.where(m, 0, c1)
    m = work2 & (c2 != 0)
    a = np.where(c2 == 1, 0, right)
    y2 = np.where(m, y2 + _tdiv((a - x2) * (y2 - y1), x2 - x1), y2)
    x2 = np.where(m, a, x2)
    c2 = np.where(m, 0, c2)
    return x1, y1, x2, y2, (c1 | c2) == 0


def segment_pixels(p0: np.ndarray, p1: np.ndarray, height: int = HEIGHT, width: int = WIDTH):
    """Pixels OpenCV's ``Line`` (8-connected, thickness 1) sets for integer segments p0→p1.

    ``p0``, ``p1``: (K, 2) int (column, row). Returns (rows, cols) int arrays, all inside the image.
    """
    p0 = np.asarray(p0, dtype=np.int64).reshape(-1, 2)
    p1 = np.asarray(p1, dtype=np.int64).reshape(-1, 2)
    x1, y1, x2, y2, ok = _clip_segments(p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1], width, height)
    x1, y1, x2, y2 = x1[ok], y1[ok], x2[ok], y2[ok]
    # Always iterate left to right (LineIterator's left_to_right=true).
    swap = x2 < x1
    x1, x2 = np.where(swap, x2, x1), np.where(swap, x1, x2)
    y1, y2 = np.where(swap, y2, y1), np.where(swap, y1, y2)
    dx = x2 - x1
    dy = np.abs(y2 - y1)
    sy = np.where(y2 < y1, -1, 1)
    vert = dy > dx
    major = np.where(vert, dy, dx)
    minor = np.where(vert, dx, dy)
    count = major + 1
    seg = np.repeat(np.arange(len(count)), count)
    start = np.cumsum(count) - count
    k = np.arange(int(count.sum()), dtype=np.int64) - start[seg]
    big, small = major[seg], minor[seg]
    # Bresenham with err0 = M − 2m, minor step while err < 0: after k steps the minor axis has
    # moved ceil((2mk − M) / 2M) times (0 for k = 0); closed form of LineIterator's recurrence.
    steps = -((big - 2 * small * k) // np.maximum(2 * big, 1))
    v = vert[seg]
    cols = x1[seg] + np.where(v, steps, k)
    rows = y1[seg] + sy[seg] * np.where(v, k, steps)
    return rows, cols


def draw_polyline(pts_px: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``cv2.polylines(mask, [pts], isClosed=False, color=1, thickness=1)`` as a bool mask."""
    mask = np.zeros((height, width), bool)
    pts_px = np.asarray(pts_px, dtype=np.int64).reshape(-1, 2)
    if len(pts_px) >= 2:
        r, c = segment_pixels(pts_px[:-1], pts_px[1:], height, width)
        mask[r, c] = True
    return mask


#: ``fill_poly`` variants: the polygon fill of OpenCV ≤ 4.7 (default, MapVR era) and of ≥ 4.11.
FILL_VARIANTS = ("4.7", "4.11")


def fill_poly(
    pts_px: np.ndarray, height: int = HEIGHT, width: int = WIDTH, variant: str = "4.7"
) -> np.ndarray:
    """``cv2.fillPoly(mask, [pts], 1)`` (8-connected outline, shift 0) as a bool mask.

    OpenCV draws the closed outline with ``Line`` and fills, on each integer row y, between
    consecutive pairs of the x-sorted crossings of the edges active on that row (y0 ≤ y < y1,
    horizontal edges skipped), from ceil(x_left) to floor(x_right) in 16.16 fixed point; an edge's
    x starts at its upper vertex and advances by dx = trunc((Δx << 16) / Δy) per row.
    ``variant="4.11"``: OpenCV ≥ 4.11 instead derives the slope and start of an edge that leaves
    the image from its ``clipLine``-clipped endpoints (same result for edges inside the image).
    """
    if variant not in FILL_VARIANTS:
        raise ValueError(f"fill variant {variant!r} not in {FILL_VARIANTS}")
    mask = np.zeros((height, width), bool)
    v = np.asarray(pts_px, dtype=np.int64).reshape(-1, 2)
    n = len(v)
    if n == 0:
        return mask
    prev = np.roll(v, 1, axis=0)  # the outline starts with the closing edge v[n-1] → v[0]
    r, c = segment_pixels(prev, v, height, width)
    mask[r, c] = True
    keep = prev[:, 1] != v[:, 1]
    if keep.sum() < 2:
        return mask
    a, b = prev[keep], v[keep]  # OpenCV's pt0, pt1
    y0 = np.minimum(a[:, 1], b[:, 1])
    y1 = np.maximum(a[:, 1], b[:, 1])
    if variant == "4.7":
        dx = _tdiv((b[:, 0] - a[:, 0]) << _XY_SHIFT, b[:, 1] - a[:, 1])
        x0 = np.where(a[:, 1] < b[:, 1], a[:, 0], b[:, 0]) << _XY_SHIFT
    else:
        out = (
            (a[:, 0] < 0)
            | (a[:, 0] >= width)
            | (b[:, 0] < 0)
            | (b[:, 0] >= width)
            | (a[:, 1] < 0)
            | (a[:, 1] >= height)
            | (b[:, 1] < 0)
            | (b[:, 1] >= height)
        )
        # clipLine's endpoints, even where it finds the segment invisible (it may have moved one).
        t0x, t0y, t1x, t1y, _ = _clip_segments(a[:, 0], a[:, 1], b[:, 0], b[:, 1], width, height)
        t0x, t0y = np.where(out, t0x, a[:, 0]), np.where(out, t0y, a[:, 1])
        t1x, t1y = np.where(out, t1x, b[:, 0]), np.where(out, t1y, b[:, 1])
        use = out & (t0y != t1y)
        p0y, p1y = np.where(use, t0y, a[:, 1]), np.where(use, t1y, b[:, 1])
        p0x, p1x = t0x << _XY_SHIFT, t1x << _XY_SHIFT
        dx = _tdiv(p1x - p0x, p1y - p0y)
        x0 = np.where(a[:, 1] < b[:, 1], p0x + (a[:, 1] - p0y) * dx, p1x + (b[:, 1] - p1y) * dx)
    # Rows actually drawn: [max(y0, 0), min(y1, height)).
    lo = np.maximum(y0, 0)
    hi = np.minimum(y1, height)
    cnt = np.maximum(hi - lo, 0)
    if cnt.sum() == 0:
        return mask
    e = np.repeat(np.arange(len(cnt)), cnt)
    start = np.cumsum(cnt) - cnt
    y = lo[e] + (np.arange(int(cnt.sum())) - start[e])
    x = x0[e] + (y - y0[e]) * dx[e]
    order = np.lexsort((x, y))
    y, x = y[order], x[order]
    # Every row has an even number of crossings (closed polygon, half-open edge rows), so pairs
    # in row-major sorted order never straddle rows.
    ys, xl, xr = y[0::2], x[0::2], x[1::2]
    c1 = (xl + (1 << _XY_SHIFT) - 1) >> _XY_SHIFT
    c2 = xr >> _XY_SHIFT
    ok = (c1 < width) & (c2 >= 0)
    c1, c2, ys = np.maximum(c1[ok], 0), np.minimum(c2[ok], width - 1), ys[ok]
    ok = c1 <= c2
    c1, c2, ys = c1[ok], c2[ok], ys[ok]
    if len(ys) == 0:
        return mask
    # Spans as +1/−1 steps, summed along each row (only over the rows that have spans).
    r0, r1 = int(ys.min()), int(ys.max()) + 1
    diff = np.zeros((r1 - r0, width + 1), np.int32)
    np.add.at(diff, (ys - r0, c1), 1)
    np.add.at(diff, (ys - r0, c2 + 1), -1)
    mask[r0:r1] |= np.cumsum(diff[:, :width], axis=1) > 0
    return mask


def dilate(mask: np.ndarray, size: int = DILATION) -> np.ndarray:
    """Binary dilation by a ``size`` × ``size`` square (skimage ``dilation(m, square(size))``).

    For a 0/1 image skimage's grey dilation is a centred max filter; its 'reflect' border only
    repeats in-image pixels, so it equals a max over the in-image part of the window.
    """
    if size % 2 != 1:
        raise ValueError(f"dilation size must be odd (centred square), got {size}")
    r = size // 2
    tmp = mask.copy()
    for s in range(1, r + 1):
        tmp[s:, :] |= mask[:-s, :]
        tmp[:-s, :] |= mask[s:, :]
    out = tmp.copy()
    for s in range(1, r + 1):
        out[:, s:] |= tmp[:, :-s]
        out[:, :-s] |= tmp[:, s:]
    return out


def rasterize(
    pts: np.ndarray,
    polygon: bool,
    height: int = HEIGHT,
    width: int = WIDTH,
    dilation: int = DILATION,
    fill_variant: str = "4.7",
) -> np.ndarray:
    """The toolkit's dilated instance mask of one vector (metric points)."""
    px = to_pixels(pts, height, width)
    m = fill_poly(px, height, width, fill_variant) if polygon else draw_polyline(px, height, width)
    return dilate(m, dilation) if dilation > 0 else m


def mask_iou(dts: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """(D, G) IoU of bool masks (D, H, W) and (G, H, W): intersection / union, 0 when disjoint."""
    if len(dts) == 0 or len(gts) == 0:
        return np.zeros((len(dts), len(gts)))
    a = dts.reshape(len(dts), -1).astype(np.float32)
    b = gts.reshape(len(gts), -1).astype(np.float32)
    inter = (a @ b.T).astype(np.int64)  # exact: counts < 2**24
    union = a.sum(1).astype(np.int64)[:, None] + b.sum(1).astype(np.int64)[None, :] - inter
    return np.where(inter > 0, inter / np.maximum(union, 1), 0.0)


def match(ious: np.ndarray, iou_thrs: np.ndarray) -> np.ndarray:
    """COCO greedy matching: (T, D) index of the matched GT per detection, −1 if unmatched.

    Detections must be in descending score order. Each takes, among GTs not yet matched at that
    threshold, the one of highest IoU ≥ threshold (the later GT on ties, as the toolkit's ``<``
    comparison does).
    """
    num_dt, num_gt = ious.shape
    dtm = -np.ones((len(iou_thrs), num_dt), np.int64)
    if num_dt == 0 or num_gt == 0:
        return dtm
    for t, thr in enumerate(iou_thrs):
        taken = np.zeros(num_gt, bool)
        for d in range(num_dt):
            best, m = min(float(thr), 1 - 1e-10), -1
            for g in range(num_gt):
                if taken[g] or ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m >= 0:
                dtm[t, d] = m
                taken[m] = True
    return dtm


@dataclass
class FrameClassEval:
    """One frame's matching for one class (None in the toolkit when it has neither GT nor dets)."""

    scores: np.ndarray  # (D,) descending
    dt_matches: np.ndarray  # (T, D)
    num_gt: int


def evaluate_frame_class(
    gt_pts: list,
    dt_pts: list,
    dt_scores: list,
    polygon: bool,
    iou_thrs: np.ndarray,
    max_dets: int = MAX_DETS,
    fill_variant: str = "4.7",
):
    """Match one frame's detections of one class; ``dt_*`` already filtered by score/points."""
    if not gt_pts and not dt_pts:
        return None
    order = np.argsort([-s for s in dt_scores], kind="mergesort")[:max_dets]
    scores = np.asarray(dt_scores, dtype=np.float64)[order] if len(order) else np.zeros(0)
    ras = lambda p: rasterize(p, polygon, fill_variant=fill_variant)  # noqa: E731
    dts = np.array([ras(dt_pts[i]) for i in order]).reshape(-1, HEIGHT, WIDTH)
    gts = np.array([ras(p) for p in gt_pts]).reshape(-1, HEIGHT, WIDTH)
    dtm = match(mask_iou(dts, gts), iou_thrs)
    return FrameClassEval(scores, dtm, len(gt_pts))


@dataclass
class RasterClassResult:
    precision: np.ndarray | None  # (T, R) interpolated precision; None when absent (no GT)
    recall: list  # final recall per threshold; −1 when absent
    num_gts: int
    num_dets: int

    @property
    def ap(self) -> float:
        """Mean over thresholds × recall points (the toolkit's per-class AP); −1 when absent."""
        return summarize([self])

    @property
    def ap_per_threshold(self) -> list:
        if self.precision is None:
            return [-1.0] * len(self.recall)
        return [float(np.mean(p)) for p in self.precision]


def summarize(classes: list) -> float:
    """The toolkit's ``_summarize``: mean of all precision entries > −1 over the given classes.

    Entries are flattened in the toolkit's (threshold, recall point, class) order so the float
    sum is the same; −1 when every class is absent.
    """
    present = [c.precision for c in classes if c.precision is not None]
    if not present:
        return -1.0
    return float(np.mean(np.stack(present, axis=-1).ravel()))


def accumulate(frames: list, iou_thrs: np.ndarray, max_dets: int = MAX_DETS) -> RasterClassResult:
    """Pool one class's per-frame matchings (``_accumulate``): (T, R) precision and recall."""
    from .ap import REC_THRS, coco_precision

    ev = [f for f in frames if f is not None]
    num_gts = sum(f.num_gt for f in ev)
    num_dets = sum(min(len(f.scores), max_dets) for f in ev)
    if not ev or num_gts == 0:
        return RasterClassResult(None, [-1.0] * len(iou_thrs), num_gts, num_dets)
    scores = np.concatenate([f.scores[:max_dets] for f in ev])
    order = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate([f.dt_matches[:, :max_dets] for f in ev], axis=1)[:, order]
    prec = np.array([coco_precision(row >= 0, num_gts, REC_THRS) for row in dtm])
    recall = [float((row >= 0).sum() / num_gts) for row in dtm]
    return RasterClassResult(prec, recall, num_gts, num_dets)
