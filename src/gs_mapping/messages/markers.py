"""visualization_msgs/Marker(Array): polylines and point sets for RViz (lanes, trajectories), and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import MessageError
from ..geometry import quat_to_matrix
from .factory import MessageFactory, RosbagsFactory, _factory, make_header, reads

MARKER = "visualization_msgs/msg/Marker"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

# visualization_msgs/Marker constants
LINE_STRIP, LINE_LIST, POINTS = 4, 5, 8
ADD, DELETE, DELETEALL = 0, 2, 3
_POLYLINE_TYPES = {LINE_STRIP: "LINE_STRIP", LINE_LIST: "LINE_LIST", POINTS: "POINTS"}


class Polyline(NamedTuple):
    ns: str
    id: int
    points: np.ndarray  # (N, 3) float64 in the marker's header frame


def _rgba(rgba: Sequence[float], where: str) -> tuple[float, float, float, float]:
    c = np.asarray(rgba, np.float64).reshape(-1)
    if c.size == 3:
        c = np.append(c, 1.0)
    if c.size != 4 or not np.all(np.isfinite(c)):
        raise MessageError(f"{where}.color: need finite (r, g, b[, a]) in 0..1, got {list(rgba)}")
    r, g, b, a = (float(v) for v in np.clip(c, 0.0, 1.0))
    return r, g, b, a


def _many(factory: MessageFactory, typename: str, names: tuple[str, ...], rows: list) -> list:
    """Many small messages (points, colours) from rows of Python floats."""
    if (
        isinstance(factory, RosbagsFactory)
        and tuple(f for f, _ in factory.store.fielddefs[typename][1]) == names
    ):
        cls = factory.store.types[typename]  # positional dataclass construction: ~5x faster
        return [cls(*row) for row in rows]
    return [factory.make(typename, **dict(zip(names, row, strict=False))) for row in rows]


def make_marker(
    marker_type: int,
    ns: str,
    id: int,
    points: np.ndarray,
    rgba: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    frame_id: str = "map",
    stamp_ns: int = 0,
    width: float = 0.1,
    colors: np.ndarray | None = None,
    factory: MessageFactory | None = None,
    lifetime_ns: int = 0,
) -> Any:
    """A LINE_STRIP / LINE_LIST / POINTS marker (identity pose) through the given (N, 3) points.

    ``width`` is the line width (scale.x) or the point size (scale.x = scale.y). ``colors`` (N, 3|4)
    in 0..1 gives per-vertex colours.
    """
    name = _POLYLINE_TYPES.get(int(marker_type))
    where = f"{MARKER} ns={ns!r} id={id}"
    if name is None:
        raise MessageError(f"{where}.type: {marker_type} is not LINE_STRIP (4), LINE_LIST (5) or POINTS (8)")
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise MessageError(f"{where}.points: need (N, 3) or (N, 2) points, got shape {pts.shape}")
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    if not np.all(np.isfinite(pts)):
        raise MessageError(f"{where}.points: non-finite coordinates (RViz rejects the whole marker)")
    if marker_type == LINE_LIST and len(pts) % 2:
        raise MessageError(f"{where}.points: LINE_LIST needs an even number of points, got {len(pts)}")
    if not (np.isfinite(width) and width > 0):
        raise MessageError(f"{where}.scale: width must be > 0, got {width}")
    factory = _factory(factory)
    r, g, b, a = _rgba(rgba, where)
    point_msgs = _many(factory, "geometry_msgs/msg/Point", ("x", "y", "z"), pts.tolist())
    color_msgs = []
    if colors is not None:
        c = np.asarray(colors, np.float64)
        if c.ndim != 2 or len(c) != len(pts) or c.shape[1] not in (3, 4):
            raise MessageError(f"{where}.colors: need ({len(pts)}, 3|4) colours, got shape {c.shape}")
        if c.shape[1] == 3:
            c = np.concatenate([c, np.full((len(c), 1), a)], axis=1)
        c = np.clip(c, 0.0, 1.0)
        color_msgs = _many(factory, "std_msgs/msg/ColorRGBA", ("r", "g", "b", "a"), c.tolist())
    scale_y = float(width) if marker_type == POINTS else 0.0
    sec, nsec = divmod(int(lifetime_ns), 1_000_000_000)
    return factory.make(
        MARKER,
        header=make_header(stamp_ns, frame_id, factory),
        ns=str(ns),
        id=int(id),
        type=int(marker_type),
        action=ADD,
        pose=factory.make(
            "geometry_msgs/msg/Pose", orientation=factory.make("geometry_msgs/msg/Quaternion", w=1.0)
        ),
        scale=factory.make("geometry_msgs/msg/Vector3", x=float(width), y=scale_y, z=0.0),
        color=factory.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a),
        lifetime=factory.make("builtin_interfaces/msg/Duration", sec=sec, nanosec=nsec),
        points=point_msgs,
        colors=color_msgs,
    )


def line_strip_marker(
    ns: str,
    id: int,
    points: np.ndarray,
    rgba: Sequence[float] = (1, 1, 1, 1),
    frame_id: str = "map",
    stamp_ns: int = 0,
    width: float = 0.1,
    factory: MessageFactory | None = None,
    **kwargs: Any,
) -> Any:
    """A LINE_STRIP through (N, 3) points (a lane divider, a trajectory)."""
    return make_marker(LINE_STRIP, ns, id, points, rgba, frame_id, stamp_ns, width, factory=factory, **kwargs)


def line_list_marker(
    ns: str,
    id: int,
    points: np.ndarray,
    rgba: Sequence[float] = (1, 1, 1, 1),
    frame_id: str = "map",
    stamp_ns: int = 0,
    width: float = 0.1,
    factory: MessageFactory | None = None,
    **kwargs: Any,
) -> Any:
    """A LINE_LIST: segments between points 0-1, 2-3, ..."""
    return make_marker(LINE_LIST, ns, id, points, rgba, frame_id, stamp_ns, width, factory=factory, **kwargs)


def points_marker(
    ns: str,
    id: int,
    points: np.ndarray,
    rgba: Sequence[float] = (1, 1, 1, 1),
    frame_id: str = "map",
    stamp_ns: int = 0,
    size: float = 0.05,
    factory: MessageFactory | None = None,
    **kwargs: Any,
) -> Any:
    """A POINTS marker (square points of side ``size``)."""
    return make_marker(POINTS, ns, id, points, rgba, frame_id, stamp_ns, size, factory=factory, **kwargs)


def delete_all_marker(
    frame_id: str = "map", stamp_ns: int = 0, ns: str = "", factory: MessageFactory | None = None
) -> Any:
    """A DELETEALL marker: put it first in an array to replace everything shown before."""
    factory = _factory(factory)
    return factory.make(
        MARKER,
        header=make_header(stamp_ns, frame_id, factory),
        ns=str(ns),
        action=DELETEALL,
        pose=factory.make(
            "geometry_msgs/msg/Pose", orientation=factory.make("geometry_msgs/msg/Quaternion", w=1.0)
        ),
    )


def marker_array(markers: Sequence[Any], factory: MessageFactory | None = None) -> Any:
    return _factory(factory).make(MARKER_ARRAY, markers=list(markers))


def _pose_matrix(pose: Any, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w], float)
    t = np.array([pose.position.x, pose.position.y, pose.position.z], float)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise MessageError(f"{where}.pose: non-finite pose")
    identity = q[0] == q[1] == q[2] == 0.0  # (0,0,0,w≠0) or all zero: RViz takes both as identity
    if identity and not t.any():
        return None  # the usual case: points already in the header frame
    r = np.eye(3) if identity else quat_to_matrix(q / np.linalg.norm(q))
    return r, t


def marker_to_points(marker: Any) -> np.ndarray:
    """The points of one marker as (N, 3) float64 in its header frame (its pose applied)."""
    where = f"{MARKER} ns={marker.ns!r} id={marker.id}"
    pts = np.array([[p.x, p.y, p.z] for p in marker.points], np.float64).reshape(-1, 3)
    pose = _pose_matrix(marker.pose, where)
    if pose is not None:
        r, t = pose
        pts = pts @ r.T + t
    return pts


@reads(MARKER_ARRAY)
def marker_array_to_polylines(
    msg: Any, types: Sequence[int] = (LINE_STRIP, LINE_LIST, POINTS)
) -> list[Polyline]:
    """A MarkerArray → [(ns, id, points (N, 3))] for its ADD markers of the given types, in order.

    DELETE / DELETEALL markers act on what came before in the same array, as RViz 2 applies them
    (a DELETEALL with an ``ns`` deletes that namespace only: Marker.msg).
    """
    out: dict[tuple[str, int], Polyline] = {}
    for marker in msg.markers:
        action, key = int(marker.action), (str(marker.ns), int(marker.id))
        if action == DELETEALL:
            out = {k: v for k, v in out.items() if key[0] and k[0] != key[0]}
        elif action == DELETE:
            out.pop(key, None)
        elif action == ADD and int(marker.type) in types:  # ADD == MODIFY: replaces same ns/id
            out[key] = Polyline(key[0], key[1], marker_to_points(marker))
    return list(out.values())
