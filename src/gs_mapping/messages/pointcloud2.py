"""sensor_msgs/PointCloud2 ⇄ numpy structured arrays, for any field layout.

The structured dtype mirrors the message layout: each PointField becomes a field at its ``offset``
(``count`` > 1 → a sub-array), ``itemsize`` = ``point_step``, so gaps between fields and padding at the
end of a point survive a round trip. Row padding (``row_step`` > ``width * point_step``) is dropped
when reading and written as zeros. Arrays come out native-endian whatever ``is_bigendian`` says.

Per-point times (:func:`pointcloud2_xyz_times`), for deskewing a spinning LiDAR's scan, are read from
the first of :data:`POINT_TIME_FIELDS` the cloud has, by the drivers' own conventions:

- an integer field of 4 bytes or less is nanoseconds since the header stamp (ouster-ros ``t``
  uint32; Livox's ``offset_time`` uint32; Autoware nebula's ``time_stamp`` uint32, its stamp the
  scan's start);
- a float32 field is seconds since the header stamp (velodyne ``time``: the scan's stamp is its last
  packet's by default, so the times are mostly negative; float32 cannot hold an absolute time);
- a float64 field is seconds since the stamp, absolute seconds (Hesai, RoboSense ``timestamp``,
  nebula's ``time_stamp`` of its XYZIRADT points: the stamp is the first (or last) point's) or
  absolute nanoseconds (livox_ros_driver2's PointCloud2 ``timestamp``): whichever of the three puts
  the cloud's median time nearest the header stamp; an 8-byte integer (PCL's ``std::uint64_t``,
  PointField INT64/UINT64) likewise, ns since the stamp in place of seconds. A scan lasts ~0.1 s, so
  only a clock under a scan's length from zero (a simulator's first tenth of a second) leaves the
  choice open, and then each reading is within that much of the other.

INT64 (9) and UINT64 (10), which PCL writes and ROS 2 Rolling's PointField.msg names, are read;
:func:`array_to_pointcloud2` writes only 1..8, the datatypes every ROS 2 distribution's readers know.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import MessageError
from .factory import MessageFactory, _factory, as_uint8_array, make_header, reads, stamp_to_ns

POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"

# sensor_msgs/PointField datatype constants → numpy element type
DATATYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int16),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int32),
    6: np.dtype(np.uint32),
    7: np.dtype(np.float32),
    8: np.dtype(np.float64),
    9: np.dtype(np.int64),  # (ROS 2 Rolling's INT64, PCL's; read only)
    10: np.dtype(np.uint64),
}
# what array_to_pointcloud2 writes: Humble's and Jazzy's PointField.msg stop at FLOAT64 (8)
_DATATYPE_OF = {dt.str[1:]: code for code, dt in DATATYPES.items() if code <= 8}  # "f4" → 7


def _names(dtype: np.dtype) -> tuple[str, ...]:
    """The field names of a structured dtype (numpy types them Optional)."""
    return dtype.names or ()


def _field(dtype: np.dtype, name: str) -> tuple[np.dtype, int]:
    """(sub-dtype, byte offset) of field ``name`` of a structured dtype."""
    fields: Any = dtype.fields  # name → (dtype, offset[, title]); None for a plain dtype
    sub, offset = fields[name][:2]
    return sub, int(offset)


def fields_to_dtype(
    fields: Any, point_step: int, is_bigendian: bool = False, where: str = POINT_CLOUD2
) -> np.dtype:
    """PointField list → a structured dtype (byte order as stored) with itemsize ``point_step``."""
    order: Literal["<", ">"] = ">" if is_bigendian else "<"
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    for f in fields:
        name, offset, datatype, count = str(f.name), int(f.offset), int(f.datatype), int(f.count)
        if not name:
            raise MessageError(f"{where}.fields: a field has an empty name (offset {offset})")
        if name in names:
            raise MessageError(f"{where}.fields: field {name!r} appears twice")
        if datatype not in DATATYPES:
            raise MessageError(
                f"{where}.fields[{name!r}].datatype: unknown datatype {datatype} "
                f"(1..10: INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64, INT64, UINT64)"
            )
        count = max(count, 1)  # count 0 is written by some drivers and means one element, as in PCL
        base = DATATYPES[datatype].newbyteorder(order)
        size = base.itemsize * count
        if offset + size > point_step:
            raise MessageError(
                f"{where}.fields[{name!r}]: offset {offset} + {count} x {base.itemsize} "
                f"bytes extends beyond point_step {point_step}"
            )
        names.append(name)
        formats.append(base if count == 1 else np.dtype((base, (count,))))
        offsets.append(offset)
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except (ValueError, TypeError) as e:
        raise MessageError(
            f"{where}.fields: invalid layout {list(zip(names, offsets, strict=False))}: {e}"
        ) from None


@reads(POINT_CLOUD2)
def pointcloud2_to_array(msg: Any, organized: bool = False) -> np.ndarray:
    """A PointCloud2 → a native-endian structured array (height*width,), or (height, width) if
    ``organized``."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    stored = fields_to_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    if point_step == 0 and height * width > 0:
        raise MessageError(f"{POINT_CLOUD2}.point_step: 0 for {width}x{height} points")
    if row_step < width * point_step:
        raise MessageError(
            f"{POINT_CLOUD2}.row_step: {row_step} is smaller than width*point_step = "
            f"{width}*{point_step} = {width * point_step}"
        )
    data = as_uint8_array(msg.data, f"{POINT_CLOUD2}.data")
    if len(data) != height * row_step:
        raise MessageError(
            f"{POINT_CLOUD2}.data: length {len(data)} != height*row_step = "
            f"{height}*{row_step} = {height * row_step}"
        )
    native = _with_byteorder(stored, "=")
    if height * width == 0:
        out = np.zeros((height, width), native)
    else:
        rows = np.ascontiguousarray(data.reshape(height, row_step)[:, : width * point_step])
        raw = rows.view(stored).reshape(height, width)
        if stored == native:
            out = raw.copy()
        else:
            out = np.zeros((height, width), native)
            for name in _names(native):
                out[name] = raw[name]
    return out if organized else out.reshape(-1)


def _with_byteorder(dtype: np.dtype, order: Literal["<", ">", "="]) -> np.dtype:
    formats = []
    for name in _names(dtype):
        sub = _field(dtype, name)[0]
        if sub.subdtype is not None:
            base, shape = sub.subdtype
            formats.append(np.dtype((base.newbyteorder(order), shape)))
        else:
            formats.append(sub.newbyteorder(order))
    layout: Any = {
        "names": list(_names(dtype)),
        "formats": formats,
        "offsets": [_field(dtype, n)[1] for n in _names(dtype)],
        "itemsize": dtype.itemsize,
    }
    return np.dtype(layout)


def array_to_pointcloud2(
    arr: np.ndarray,
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
    is_dense: bool | None = None,
    is_bigendian: bool = False,
) -> Any:
    """A structured array (N,) or (H, W) → a PointCloud2 with the same field offsets and point_step.

    ``is_dense`` None: computed (True when x, y, z — or, without them, all float fields — are finite).
    """
    a = np.asarray(arr)
    if a.dtype.names is None:
        raise MessageError(f"{POINT_CLOUD2}: need a structured array with named fields, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    elif a.ndim != 2:
        raise MessageError(f"{POINT_CLOUD2}: structured array must be (N,) or (H, W), got shape {a.shape}")
    height, width = a.shape
    factory = _factory(factory)
    point_fields = []
    for name in _names(a.dtype):
        sub, offset = _field(a.dtype, name)
        base, count = (sub.subdtype[0], int(np.prod(sub.subdtype[1]))) if sub.subdtype else (sub, 1)
        code = _DATATYPE_OF.get(base.str[1:])
        if code is None or (sub.subdtype is not None and base.subdtype is not None):
            raise MessageError(
                f"{POINT_CLOUD2}.fields[{name!r}]: dtype {sub} has no PointField datatype "
                f"(int8/16/32, uint8/16/32, float32/64, or fixed sub-arrays of them; 64-bit integers are "
                f"not written: only ROS 2 Rolling's PointField names them)"
            )
        point_fields.append((offset, name, code, count))  # array order kept: round trips are exact
    target = _with_byteorder(a.dtype, ">" if is_bigendian else "<")
    out = np.zeros((height, width), target)  # zeros: padding bytes are deterministic
    for name in _names(a.dtype):
        out[name] = a[name]
    if is_dense is None:
        is_dense = _all_finite(a)
    return factory.make(
        POINT_CLOUD2,
        header=make_header(stamp_ns, frame_id, factory),
        height=height,
        width=width,
        fields=[
            factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=c, count=k)
            for o, n, c, k in point_fields
        ],
        is_bigendian=bool(is_bigendian),
        point_step=a.dtype.itemsize,
        row_step=a.dtype.itemsize * width,
        data=out.view(np.uint8).reshape(-1),
        is_dense=bool(is_dense),
    )


def _all_finite(a: np.ndarray) -> bool:
    names: list[str] = [n for n in ("x", "y", "z") if n in _names(a.dtype)] or [
        n for n in _names(a.dtype) if _field(a.dtype, n)[0].base.kind == "f"
    ]
    return all(bool(np.all(np.isfinite(a[n]))) for n in names)


@reads(POINT_CLOUD2)
def pointcloud2_xyz(msg: Any, remove_nans: bool = True) -> np.ndarray:
    """A PointCloud2 → (N, 3) x, y, z (float32 if all three are float32, else float64).

    Rows with a non-finite coordinate are dropped (``remove_nans``) — invalid points in a non-dense
    cloud; a cloud that claims ``is_dense`` but has NaNs is treated the same way.
    """
    return _xyz(pointcloud2_to_array(msg), remove_nans)[0]


# per-point time fields, in the order looked for: ouster-ros; velodyne; Hesai, RoboSense, Livox
# (PointCloud2); Livox's CustomMsg name, as some converters write it; Autoware nebula
POINT_TIME_FIELDS = ("t", "time", "timestamp", "offset_time", "time_stamp")


@reads(POINT_CLOUD2)
def pointcloud2_xyz_times(msg: Any, remove_nans: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pointcloud2_xyz` and each kept point's time in float64 seconds since the header stamp
    (NaN where the field is not finite), from one parse; None when the cloud has no time field of
    :data:`POINT_TIME_FIELDS` (read by the rule of this module's docstring)."""
    a = pointcloud2_to_array(msg)
    xyz, keep = _xyz(a, remove_nans)
    name = next((n for n in POINT_TIME_FIELDS if n in _names(a.dtype) and a.dtype[n].shape == ()), None)
    if name is None:
        return xyz, None
    values = a[name] if keep is None else a[name][keep]
    return xyz, seconds_since_stamp(values, stamp_to_ns(msg.header.stamp))


def seconds_since_stamp(values: np.ndarray, stamp_ns: int) -> np.ndarray:
    """A time field's values → float64 seconds since ``stamp_ns`` (this module's docstring's rule)."""
    v = np.asarray(values)
    integer = v.dtype.kind in "iu"
    relative = v.astype(np.float64) * (1e-9 if integer else 1.0)  # since the stamp, in its own unit
    if v.dtype.itemsize < 8:  # (too narrow for an absolute time)
        return relative
    finite = np.isfinite(relative)
    if not finite.any():
        return relative
    m = float(np.median(v[finite]))
    sec, frac = divmod(int(stamp_ns), 10**9)
    # differences first, exact in float64 (so is sec * 1e9 = sec x 5^9 x 2^9, 53 bits), then scaled: a count
    # near 1.7e9 s or 1.7e18 ns keeps its sub-microsecond part only relative to the stamp
    as_seconds = abs(m - sec - frac * 1e-9)
    as_nanoseconds = abs((m - float(sec * 10**9) - frac) * 1e-9)
    if abs(m * (1e-9 if integer else 1.0)) <= min(as_seconds, as_nanoseconds):
        return relative
    if integer:  # exact integer differences (a uint64 past 2**63 wraps: no time of this age)
        n = v.astype(np.int64)
        if as_seconds <= as_nanoseconds:
            return (n - sec).astype(np.float64) - frac * 1e-9
        return (n - int(stamp_ns)).astype(np.float64) * 1e-9
    if as_seconds <= as_nanoseconds:
        return relative - sec - frac * 1e-9
    return (relative - float(sec * 10**9) - frac) * 1e-9


def _xyz(a: np.ndarray, remove_nans: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) x, y, z of a structured array, and the rows kept (None: all)."""
    missing = [n for n in "xyz" if n not in (a.dtype.names or ())]
    if missing:
        raise MessageError(
            f"{POINT_CLOUD2}.fields: no {'/'.join(missing)} field (fields: {list(a.dtype.names or ())})"
        )
    for n in "xyz":
        if _field(a.dtype, n)[0].subdtype is not None:
            raise MessageError(f"{POINT_CLOUD2}.fields[{n!r}]: count must be 1 for a coordinate")
    out_dtype = np.float32 if all(_field(a.dtype, n)[0] == np.float32 for n in "xyz") else np.float64
    keep = None
    if remove_nans:  # column-wise: much faster than a reduction over a length-3 axis
        keep = np.isfinite(a["x"]) & np.isfinite(a["y"]) & np.isfinite(a["z"])
        if keep.all():
            keep = None
        else:
            a = a[keep]
    return np.stack([a["x"], a["y"], a["z"]], axis=-1).astype(out_dtype, copy=False), keep


def points_to_pointcloud2(
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
) -> Any:
    """(N, 3) points (+ optional (N, 3) uint8 colours) → a float32 x, y, z (+ PCL-packed ``rgb``) cloud.

    ``rgb`` is packed as PCL and RViz expect: 0x00RRGGBB stored in a float32 field named "rgb".
    """
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise MessageError(f"{POINT_CLOUD2}: points must be (N, 3), got shape {xyz.shape}")
    names, formats = ["x", "y", "z"], [np.float32] * 3
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
            raise MessageError(
                f"{POINT_CLOUD2}: colours must be uint8 (N, 3) like the points, got {rgb.dtype} {rgb.shape}"
            )
        names.append("rgb")
        formats.append(np.float32)
    arr = np.zeros(len(xyz), np.dtype({"names": names, "formats": formats}))
    for i, n in enumerate("xyz"):
        arr[n] = xyz[:, i]
    if rgb is not None:
        packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
        arr["rgb"] = packed.view(np.float32)
    return array_to_pointcloud2(arr, stamp_ns, frame_id, factory)


@reads(POINT_CLOUD2)
def pointcloud2_rgb(msg: Any) -> np.ndarray:
    """The colours of a cloud with a PCL-packed ``rgb``/``rgba`` field → uint8 (N, 3), all rows kept."""
    a = pointcloud2_to_array(msg)
    name = next((n for n in ("rgb", "rgba") if n in (a.dtype.names or ())), None)
    if name is None:
        raise MessageError(f"{POINT_CLOUD2}.fields: no rgb/rgba field (fields: {list(a.dtype.names or ())})")
    field = a[name]
    if field.dtype.itemsize != 4 or field.ndim != 1:
        raise MessageError(
            f"{POINT_CLOUD2}.fields[{name!r}]: expected one 4-byte packed colour, got {field.dtype}"
        )
    packed = np.ascontiguousarray(field).view(np.uint32)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)
