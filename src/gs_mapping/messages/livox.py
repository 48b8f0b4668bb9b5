"""Livox's own cloud message, ``CustomMsg`` (livox_ros_driver2's xfer_format 1), without the driver.

The layout (livox_ros_driver2 ``msg/CustomMsg.msg`` and ``msg/CustomPoint.msg``; the same fields in
the ROS 1 ``livox_ros_driver`` and in ``livox_interfaces``, livox_ros2_driver's):

- CustomMsg: ``std_msgs/Header header``, ``uint64 timebase`` (ns, the first point's time),
  ``uint32 point_num``, ``uint8 lidar_id``, ``uint8[3] rsvd``, ``CustomPoint[] points``;
- CustomPoint: ``uint32 offset_time`` (ns after ``timebase``), ``float32 x, y, z`` (m, the cloud's
  frame), ``uint8 reflectivity, tag, line``.

The driver stamps the header with ``timebase`` (``lddc.cpp``), so a point's time since the stamp is
``(timebase + offset_time - stamp) / 1e9`` s. Where ``timebase`` is over :data:`OTHER_CLOCK_S` from
the stamp (a relay re-stamped the header on the host's clock, the LiDAR's own unsynchronised), it is
on another clock: ``offset_time`` is then read from the stamp, as FAST-LIO reads every CustomMsg.

``tag`` is not used: all points are kept. Its bits mean different things by model (HAP and Avia:
bits 0-1 noise by spatial position, 2-3 by intensity, 4-5 the return number; Mid-70 adds bits 6-7;
Mid-360's depend on a tag type its packets carry and CustomMsg does not), and "low confidence of
noise" is no reason to drop a return. No-return zeros are dropped downstream by range, as for every
LiDAR (:func:`~gs_mapping.mapping.depth_registration.cloud_to_depth`).

Speed: a Mid-360 message holds ~20k points at 10 Hz. rosbags and rclpy give ``points`` as a list of
objects (rosbags has no array view of a sequence of messages); each field used is read from it in
one pass (``np.fromiter``; bench/livox_decode.py). Where the CDR bytes are at hand (rclpy's raw
subscriptions, the DDS and Zenoh runtimes) they are read as one numpy view
(:func:`custom_msg_from_cdr`, :func:`points_from_cdr`): each CustomPoint is 19 bytes on the wire, 20
apart (the next one's ``uint32`` aligned to 4).
"""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MessageError
from ..topics import LIVOX_CUSTOM_MSGS
from .factory import make_header, reads, stamp_to_ns

POINT_TYPES = tuple(t.replace("/CustomMsg", "/CustomPoint") for t in LIVOX_CUSTOM_MSGS)

# the interface descriptions, in our words (field names and types are the driver's: they are the
# wire layout and, on Jazzy, the type hash a graph matches)
_POINT_DEFINITION = """\
uint32 offset_time  # ns after the message's timebase
float32 x  # m, in header.frame_id
float32 y
float32 z
uint8 reflectivity
uint8 tag  # return number and noise flags, by model
uint8 line  # the laser that measured it
"""
_MSG_DEFINITION = """\
std_msgs/Header header  # stamped with timebase by the driver
uint64 timebase  # ns, the first point's time
uint32 point_num  # len(points)
uint8 lidar_id
uint8[3] rsvd
CustomPoint[] points
"""

# one CustomPoint as CDR lays it out in a sequence: 19 bytes, the next point 4-aligned
CDR_POINT = np.dtype(
    {
        "names": ["offset_time", "x", "y", "z", "reflectivity", "tag", "line"],
        "formats": ["<u4", "<f4", "<f4", "<f4", "u1", "u1", "u1"],
        "offsets": [0, 4, 8, 12, 16, 17, 18],
        "itemsize": 20,
    }
)
POINT_BYTES = 19
# a timebase this far from the header stamp is on another clock than the stamp's
OTHER_CLOCK_S = 10.0


@functools.lru_cache(maxsize=1)
def _parsed_types() -> dict:
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for msg, point in zip(LIVOX_CUSTOM_MSGS, POINT_TYPES, strict=True):
        types.update(get_types_from_msg(_POINT_DEFINITION, point))
        types.update(get_types_from_msg(_MSG_DEFINITION, msg))
    return types


def register_types(store) -> None:
    """Add CustomMsg and CustomPoint of the three Livox packages to a rosbags typestore (those of
    their names it has already, a bag's own definitions, are kept)."""
    new = {k: v for k, v in _parsed_types().items() if k not in store.fielddefs}
    if new:
        store.register(new)


def same_as_drivers(store, typename: str) -> bool:
    """``store``'s definitions of this CustomMsg and its CustomPoint are the driver's (the layout
    :func:`custom_msg_from_cdr` reads)."""
    point = typename.replace("/CustomMsg", "/CustomPoint")
    ours = _parsed_types()
    return all(
        n in ours and store.fielddefs.get(n) is not None and _fields(store.fielddefs[n]) == _fields(ours[n])
        for n in (typename, point)
    )


def _fields(fielddef) -> list:
    """A definition's fields as (name, kind and type) (rosbags: (constants, fields))."""
    return list(fielddef[1])


def make_way(store, names) -> dict:
    """Take out of ``store`` the definitions of ``names`` that :func:`register_types` put there
    (ours: a user's own definition of a Livox type, a fork's, replaces them) and give them back
    (``store.register`` them to undo)."""
    from .factory import typestore

    ours = typestore().fielddefs
    gone = {
        n: store.fielddefs[n] for n in names if n in _parsed_types() and store.fielddefs.get(n) == ours[n]
    }
    for name in gone:
        del store.fielddefs[name], store.types[name]
    if gone:
        store.cache.clear()  # (a message's serialiser holds its fields' types)
    return gone


@dataclass(frozen=True)
class CustomMsgArrays:
    """A CustomMsg read from its CDR bytes: the fields of the message, ``points`` one structured
    array of :data:`CDR_POINT`'s fields (native byte order)."""

    header: Any
    timebase: int
    point_num: int
    lidar_id: int
    rsvd: np.ndarray
    points: np.ndarray


def _column(points: Any, name: str) -> np.ndarray:
    """One field of every point: a view of a structured array, or one pass over point objects."""
    if isinstance(points, np.ndarray):
        return points[name]
    return np.fromiter(map(operator.attrgetter(name), points), CDR_POINT[name], count=len(points))


def _columns(points: Any, names: tuple[str, ...]) -> list[np.ndarray]:
    try:
        return [_column(points, name) for name in names]
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError, IndexError) as exc:
        raise MessageError(
            f"livox CustomMsg.points: not CustomPoints ({type(exc).__name__}: {exc})"
        ) from None


def points_array(points: Any) -> np.ndarray:
    """A CustomMsg's ``points`` (a structured array, or a sequence of point objects: rosbags', rclpy's,
    cyclonedds') as one little-endian :data:`CDR_POINT` array (itself where it is one)."""
    if isinstance(points, np.ndarray) and points.dtype == CDR_POINT:
        return points
    names = CDR_POINT.names or ()
    out = np.zeros(len(points), CDR_POINT)  # (field by field: the padding bytes zero)
    for name, column in zip(names, _columns(points, names), strict=True):
        out[name] = column
    return out


def cdr_points_size(count: int) -> int:
    """Bytes of ``count`` CustomPoints in CDR (no padding after the last)."""
    return CDR_POINT.itemsize * (count - 1) + POINT_BYTES if count else 0


def points_from_cdr(data: Any, offset: int, count: int, order: str = "<") -> np.ndarray:
    """``count`` CustomPoints from CDR bytes ``data`` at ``offset`` (4-aligned), in byte ``order``:
    a native structured array, one copy."""
    size = cdr_points_size(count)
    if offset + size > len(data):
        raise MessageError(
            f"livox CustomMsg.points: {count} points need {size} bytes, {len(data) - offset} are left"
        )
    if not count:
        return np.zeros(0, CDR_POINT)
    padded = np.zeros(CDR_POINT.itemsize * count, np.uint8)
    padded[:size] = np.frombuffer(data, np.uint8, size, offset)
    out = padded.view(CDR_POINT if order == "<" else CDR_POINT.newbyteorder(">"))
    return out if order == "<" else points_array(out)


def points_to_cdr(points: Any, order: str = "<") -> bytes:
    """The CDR bytes of ``points`` (:func:`points_array`'s input) after the sequence's length."""
    a = points_array(points)
    if order != "<":
        a = a.astype(CDR_POINT.newbyteorder(">"))
    return a.tobytes()[: cdr_points_size(len(a))]


def custom_msg_from_cdr(data: Any) -> CustomMsgArrays:
    """A CustomMsg from its serialised CDR (with the 4-byte encapsulation header, as rmw hands raw
    subscriptions and rosbag2 stores them), its points read as one array; :class:`MessageError`
    naming what is wrong for bytes that are not one."""
    buf = memoryview(bytes(data) if not isinstance(data, (bytes, bytearray)) else data)
    if len(buf) < 4 or buf[0] != 0 or buf[1] not in (0, 1):
        raise MessageError(
            f"livox CustomMsg: {len(buf)} bytes are not plain CDR (encapsulation {bytes(buf[:2])!r})"
        )
    order = "<" if buf[1] == 1 else ">"
    body = buf[4:]
    try:
        sec, nanosec, n = struct.unpack_from(order + "iII", body, 0)
        if n < 1 or 12 + n > len(body):
            raise MessageError(f"livox CustomMsg.header.frame_id: a string of {n} bytes in {len(body)}")
        frame_id = bytes(body[12 : 11 + n]).decode("utf-8")
        pos = (12 + n + 7) & ~7  # (uint64: 8-aligned)
        timebase, point_num, lidar_id = struct.unpack_from(order + "QIB", body, pos)
        rsvd = np.frombuffer(body, np.uint8, 3, pos + 13).copy()
        pos += 16  # (the sequence's length, 4-aligned after the 8-aligned timebase's 16 bytes)
        (count,) = struct.unpack_from(order + "I", body, pos)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"livox CustomMsg: truncated or corrupt CDR ({len(buf)} bytes): {exc}") from None
    points = points_from_cdr(body, pos + 4, count, order)
    header = make_header(sec * 1_000_000_000 + nanosec, frame_id)
    return CustomMsgArrays(header, timebase, point_num, lidar_id, rsvd, points)


@reads("livox CustomMsg")
def custom_msg_xyz_times(
    msg: Any, remove_nans: bool = True, warn: Callable[[str], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A CustomMsg → (N, 3) float32 x, y, z and each point's time in float64 seconds since the header
    stamp (this module's rule); rows with a non-finite coordinate dropped (``remove_nans``).
    ``point_num`` points are read, as FAST-LIO reads them: a merger (multi_livox_merge) appends a
    second LiDAR's points and leaves ``point_num`` the first one's, so fewer than it holds reads the
    first ``point_num`` and tells ``warn``; :class:`MessageError` where it holds fewer than
    ``point_num`` (a message cut short)."""
    points = msg.points
    if not hasattr(points, "__len__"):
        raise MessageError(f"livox CustomMsg.points: a {type(points).__name__}, not a sequence of points")
    point_num = int(msg.point_num)
    if point_num > len(points):
        raise MessageError(f"livox CustomMsg: point_num is {point_num} but it holds {len(points)} points")
    if point_num < len(points):
        if warn is not None:
            warn(
                f"livox CustomMsg: point_num is {point_num} but it holds {len(points)} points (a merger's, "
                "which leaves point_num the first LiDAR's?): the first point_num read, as FAST-LIO reads them"
            )
        points = points[:point_num]
    offset, x, y, z = _columns(points, ("offset_time", "x", "y", "z"))  # (only what is used: 4 passes)
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32, copy=False)
    if remove_nans:
        keep = np.isfinite(xyz).all(axis=1)
        if not keep.all():
            xyz, offset = xyz[keep], offset[keep]
    behind = int(msg.timebase) - stamp_to_ns(msg.header.stamp)  # (Python ints: exact)
    if abs(behind) > OTHER_CLOCK_S * 1e9:
        behind = 0  # the timebase is on another clock: offsets from the stamp
    return xyz, (offset.astype(np.float64) + behind) * 1e-9


def once_for(topic: str, say: Callable[[str], None]) -> Callable[[str], None]:
    """A ``warn`` for :func:`cloud_xyz_times` that says its first message only (every cloud of a
    merger's topic is so: one line a run, not one a cloud)."""
    said: list[str] = []

    def warn(message: str) -> None:
        if not said:
            said.append(message)
            say(f"{topic}: {message} (said once)")

    return warn


def cloud_xyz_times(
    msg: Any, warn: Callable[[str], None] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A LiDAR cloud's (N, 3) points and their times in s since its stamp (None: it has none), for
    either kind: a PointCloud2 (:func:`~.pointcloud2.pointcloud2_xyz_times`) or a Livox CustomMsg
    (:func:`custom_msg_xyz_times`, ``warn`` its), told apart by their fields."""
    from .pointcloud2 import pointcloud2_xyz_times

    if hasattr(msg, "timebase") and hasattr(msg, "points"):
        return custom_msg_xyz_times(msg, warn=warn)
    return pointcloud2_xyz_times(msg)
