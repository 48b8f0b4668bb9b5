"""PointCloud2 ⇄ structured arrays: random layouts with padding, both byte orders, bad layouts."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.errors import MessageError
from gs_mapping.messages import (
    POINT_CLOUD2,
    array_to_pointcloud2,
    deserialize_cdr,
    make_header,
    pointcloud2_rgb,
    pointcloud2_to_array,
    pointcloud2_xyz,
    points_to_pointcloud2,
    serialize_cdr,
    stamp_to_ns,
)
from gs_mapping.messages.factory import default_factory

# floats unpacked as same-size unsigned ints: struct's float→double conversion would quieten NaNs
STRUCT_CODES = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "I", 8: "Q"}
BIT_DTYPES = {7: np.uint32, 8: np.uint64}
SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}


def through_cdr(msg):
    return deserialize_cdr(serialize_cdr(msg, POINT_CLOUD2), POINT_CLOUD2)


@st.composite
def layouts(draw):
    """A random PointField layout: fields in random order with gaps, and end padding."""
    n = draw(st.integers(1, 5))
    fields, offset = [], 0
    for i in range(n):
        offset += draw(st.integers(0, 5))  # unaligned gaps are legal in PointCloud2
        datatype, count = draw(st.integers(1, 8)), draw(st.integers(1, 3))
        fields.append((f"f{i}", offset, datatype, count))
        offset += SIZES[datatype] * count
    point_step = offset + draw(st.integers(0, 7))
    order = draw(st.permutations(range(n)))  # PointField order need not follow offsets
    return [fields[i] for i in order], point_step


def make_cloud(fields, point_step, height, width, row_pad, big, data):
    f = default_factory()
    return f.make(
        POINT_CLOUD2,
        header=make_header(42, "lidar", f),
        height=height,
        width=width,
        fields=[
            f.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
            for n, o, d, c in fields
        ],
        is_bigendian=big,
        point_step=point_step,
        row_step=width * point_step + row_pad,
        data=data,
        is_dense=False,
    )


def struct_decode(fields, point_step, row_step, big, data, row, col):
    """Independent reference decoder (Python struct) for one point."""
    base = row * row_step + col * point_step
    out = {}
    for name, offset, datatype, count in fields:
        fmt = (">" if big else "<") + STRUCT_CODES[datatype] * count
        out[name] = struct.unpack_from(fmt, data, base + offset)
    return out


@settings(max_examples=120, deadline=None)
@given(
    layout=layouts(),
    height=st.integers(1, 3),
    width=st.integers(0, 6),
    row_pad=st.integers(0, 9),
    big=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_read_any_layout_matches_struct_decoder_and_round_trips(layout, height, width, row_pad, big, seed):
    fields, point_step = layout
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, height * (width * point_step + row_pad), dtype=np.uint8)
    msg = make_cloud(fields, point_step, height, width, row_pad, big, raw)
    arr = pointcloud2_to_array(through_cdr(msg), organized=True)
    assert arr.shape == (height, width) and arr.dtype.itemsize == point_step
    assert all(arr.dtype.fields[n][0].base.isnative for n in arr.dtype.names)
    data = raw.tobytes()
    for r in range(height):
        for c in range(width):
            ref = struct_decode(fields, point_step, width * point_step + row_pad, big, data, r, c)
            for name, _, datatype, _count in fields:
                got = np.atleast_1d(arr[r, c][name])
                want = np.array(ref[name], dtype=BIT_DTYPES.get(datatype, got.dtype)).view(got.dtype)
                assert got.tobytes() == want.tobytes(), (name, got, want)  # bitwise: NaN payloads too
    # array → message → CDR → message → array is exact, layout (offsets, point_step) preserved
    for out_big in (False, True):
        back_msg = through_cdr(array_to_pointcloud2(arr, 7, "lidar", is_bigendian=out_big))
        assert back_msg.point_step == point_step and back_msg.row_step == width * point_step
        assert bool(back_msg.is_bigendian) == out_big
        got = sorted((f.name, f.offset, f.datatype, f.count) for f in back_msg.fields)
        assert got == sorted(fields)
        back = pointcloud2_to_array(back_msg, organized=True)
        assert back.dtype == arr.dtype
        for name in arr.dtype.names:
            assert back[name].tobytes() == arr[name].tobytes()
    assert pointcloud2_to_array(msg).shape == (height * width,)


@settings(max_examples=60, deadline=None)
@given(layout=layouts(), n=st.integers(0, 20), seed=st.integers(0, 2**32 - 1))
def test_numpy_to_message_to_numpy_exact(layout, n, seed):
    fields, point_step = layout
    from types import SimpleNamespace as NS

    from gs_mapping.messages import fields_to_dtype

    dtype = fields_to_dtype([NS(name=a, offset=b, datatype=c, count=d) for a, b, c, d in fields], point_step)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, n * point_step, dtype=np.uint8).view(dtype)
    msg = through_cdr(array_to_pointcloud2(arr, 1_700_000_000_000_000_001, "velodyne"))
    assert (msg.height, msg.width) == (1, n) and stamp_to_ns(msg.header.stamp) == 1_700_000_000_000_000_001
    back = pointcloud2_to_array(msg)
    for name in dtype.names:
        assert back[name].tobytes() == arr[name].tobytes()


def test_is_dense_and_xyz():
    arr = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4")])
    arr["x"] = [1, 2, np.nan, 4]
    arr["intensity"] = np.nan  # not a coordinate: does not make the cloud non-dense
    msg = through_cdr(array_to_pointcloud2(arr))
    assert msg.is_dense is False
    xyz = pointcloud2_xyz(msg)
    assert xyz.dtype == np.float32 and xyz[:, 0].tolist() == [1, 2, 4]
    assert pointcloud2_xyz(msg, remove_nans=False).shape == (4, 3)
    arr["x"][2] = 3
    assert through_cdr(array_to_pointcloud2(arr)).is_dense is True
    assert through_cdr(array_to_pointcloud2(arr, is_dense=False)).is_dense is False
    d64 = np.zeros(2, dtype=[("x", "f8"), ("y", "f4"), ("z", "f4")])
    assert pointcloud2_xyz(array_to_pointcloud2(d64)).dtype == np.float64


def test_points_with_pcl_packed_rgb():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(50, 3))
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    msg = through_cdr(points_to_pointcloud2(xyz, rgb, stamp_ns=5, frame_id="map"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
    assert np.allclose(pointcloud2_xyz(msg), xyz, atol=1e-6)
    assert np.array_equal(pointcloud2_rgb(msg), rgb)


def test_organized_cloud_shape():
    arr = np.zeros((3, 4), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    msg = through_cdr(array_to_pointcloud2(arr))
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 48)
    assert pointcloud2_to_array(msg, organized=True).shape == (3, 4)


# --- bad input ------------------------------------------------------------------------------------
def _bad(fields=(("x", 0, 7, 1),), point_step=4, width=2, row_pad=0, data_len=None):
    n = 1 * (width * point_step + row_pad) if data_len is None else data_len
    return make_cloud(list(fields), point_step, 1, width, row_pad, False, np.zeros(n, np.uint8))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(fields=[("x", 2, 7, 1)]), r"PointCloud2\.fields\['x'\].*offset 2.*beyond point_step 4"),
        (dict(fields=[("x", 0, 11, 1)]), r"PointCloud2\.fields\['x'\]\.datatype.*unknown datatype 11"),
        (dict(fields=[("x", 0, 2, 1), ("x", 1, 2, 1)]), r"PointCloud2\.fields.*'x' appears twice"),
        (dict(fields=[("", 0, 2, 1)]), r"PointCloud2\.fields.*empty name"),
        (dict(fields=[("x", 0, 7, 2)]), r"fields\['x'\].*2 x 4 bytes.*beyond point_step 4"),
        (dict(data_len=7), r"PointCloud2\.data.*length 7.*height\*row_step.*8"),
        (dict(row_pad=-1), r"PointCloud2\.row_step.*7.*width\*point_step.*8"),
    ],
)
def test_bad_layouts(kwargs, pattern):
    with pytest.raises(MessageError, match=pattern):
        pointcloud2_to_array(_bad(**kwargs))


@pytest.mark.parametrize("big", [False, True])
def test_int64_and_uint64_fields_pcl_writes_are_read_bit_for_bit(big):
    """PointField INT64 (9) and UINT64 (10) (PCL's 64-bit integers, ROS 2 Rolling's PointField.msg),
    unaligned, both byte orders, a row padded: each value as Python's struct reads the bytes."""
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("stamp", 13, 10, 1), ("signed", 21, 9, 2)]
    point_step, width, height, row_pad = 40, 3, 2, 5
    raw = np.random.default_rng(9).integers(0, 256, height * (width * point_step + row_pad), dtype=np.uint8)
    arr = pointcloud2_to_array(through_cdr(make_cloud(fields, point_step, height, width, row_pad, big, raw)))
    order = ">" if big else "<"
    for i in range(height * width):
        base = (i // width) * (width * point_step + row_pad) + (i % width) * point_step
        assert int(arr["stamp"][i]) == struct.unpack_from(order + "Q", raw.tobytes(), base + 13)[0]
        assert arr["signed"][i].tolist() == list(struct.unpack_from(order + "qq", raw.tobytes(), base + 21))
    assert arr.dtype["stamp"] == np.uint64 and arr.dtype["signed"].base == np.int64


def test_bad_arrays():
    with pytest.raises(MessageError, match="structured"):
        array_to_pointcloud2(np.zeros((3, 3), np.float32))
    with pytest.raises(MessageError, match=r"fields\['flag'\].*bool"):
        array_to_pointcloud2(np.zeros(3, dtype=[("x", "f4"), ("flag", "?")]))
    with pytest.raises(MessageError, match=r"fields\['t'\].*int64"):
        array_to_pointcloud2(np.zeros(3, dtype=[("x", "f4"), ("t", "i8")]))
    with pytest.raises(MessageError, match="no y/z field"):
        pointcloud2_xyz(array_to_pointcloud2(np.zeros(3, dtype=[("x", "f4")])))
    with pytest.raises(MessageError, match=r"\(N, 3\)"):
        points_to_pointcloud2(np.zeros((3, 2)))
