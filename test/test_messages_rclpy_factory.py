"""RclpyFactory against stand-in message classes that enforce rosidl_generator_py's setter contracts.

rclpy cannot be installed here, so these stand-ins (generated from the Humble layouts) check what the
real generated classes check: exact Python types for scalars, ``array.array`` with the right type code
(or a plain Sequence — a numpy array is not one) for ``sequence<primitive>``, numpy arrays of the exact
dtype for fixed-size arrays, message instances for nested fields. A real ROS 2 machine remains the
final check.
"""

from __future__ import annotations

import array
import sys
import types
from collections.abc import Sequence

import numpy as np
import pytest

from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.messages import (
    CameraIntrinsics,
    RclpyFactory,
    array_to_pointcloud2,
    bytes_to_uint8_multiarray,
    camera_info_to_intrinsics,
    deserialize_cdr,
    image_to_numpy,
    intrinsics_to_camera_info,
    line_strip_marker,
    marker_array,
    numpy_to_image,
    pointcloud2_to_array,
    serialize_cdr,
    tf_message_to_transforms,
    transforms_to_tf_message,
    typestore,
    uint8_multiarray_to_bytes,
)

_BASE = {"bool": "boolean", "float32": "float", "float64": "double", "byte": "octet", "char": "uint8"}
_CODES = {
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float": "f",
    "double": "d",
}
_DTYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float": np.float32,
    "double": np.float64,
}


def _idl(nodetype, info):
    kind = int(nodetype)
    if kind == 1:
        return _BASE.get(info[0], info[0])
    if kind == 2:
        pkg, _, name = info.split("/")
        return f"{pkg}/{name}"
    (sub, subinfo), n = info
    inner = _idl(sub, subinfo)
    return f"{inner}[{n}]" if kind == 3 else f"sequence<{inner}>"


def _check(cls_name, field, ftype, value, classes):
    def fail(why):
        raise AssertionError(f"{cls_name}.{field} ({ftype}): {why}: {type(value).__name__}")

    if ftype.startswith("sequence<") or ftype.endswith("]"):
        inner = ftype[9:-1] if ftype.startswith("sequence<") else ftype[: ftype.index("[")]
        if ftype.endswith("]") and inner in _DTYPES and isinstance(value, np.ndarray):
            if value.dtype != _DTYPES[inner] or value.size != int(ftype[ftype.index("[") + 1 : -1]):
                fail("numpy array of wrong dtype/size")
            return
        if ftype.startswith("sequence<") and inner in _CODES and isinstance(value, array.array):
            if value.typecode != _CODES[inner]:
                fail(f"array.array type code {value.typecode!r}")
            return
        if not isinstance(value, Sequence) or isinstance(value, str):
            fail("not a Sequence")
        for v in value:
            _check(cls_name, field, inner, v, classes)
        return
    if "/" in ftype:
        if not isinstance(value, classes[ftype]):
            fail("not a message instance")
    elif ftype == "boolean":
        if not isinstance(value, bool):
            fail("not a bool")
    elif ftype in ("float", "double"):
        if not isinstance(value, float):
            fail("not a float")
    elif ftype == "string":
        if not isinstance(value, str):
            fail("not a str")
    elif ftype == "octet":
        if not isinstance(value, bytes):
            fail("not bytes")
    elif not isinstance(value, int):
        fail("not an int")


@pytest.fixture
def fake_rclpy_messages(monkeypatch):
    store = typestore()
    classes: dict[str, type] = {}
    modules: dict[str, types.ModuleType] = {}

    def make_class(typename):
        pkg, _, name = typename.split("/")
        fields = {f: _idl(nt, info) for f, (nt, info) in store.fielddefs[typename][1]}

        def __init__(self, **kwargs):
            unknown = set(kwargs) - set(fields)
            if unknown:
                raise TypeError(f"unexpected fields {unknown}")
            for f, ftype in fields.items():
                if f in kwargs:
                    _check(typename, f, ftype, kwargs[f], classes)
                    setattr(self, "_" + f, kwargs[f])
                else:
                    setattr(self, "_" + f, _default(ftype))

        def _default(ftype):
            if ftype.startswith("sequence<"):
                inner = ftype[9:-1]
                return array.array(_CODES[inner]) if inner in _CODES else []
            if ftype.endswith("]"):
                inner, n = ftype[: ftype.index("[")], int(ftype[ftype.index("[") + 1 : -1])
                if inner in _DTYPES:
                    return np.zeros(n, _DTYPES[inner])
                return [_default(inner) for _ in range(n)]
            if "/" in ftype:
                return classes[ftype]()
            return {"boolean": False, "float": 0.0, "double": 0.0, "string": "", "octet": b"\0"}.get(ftype, 0)

        ns = {
            "__init__": __init__,
            "_fields_and_field_types": fields,
            "get_fields_and_field_types": classmethod(lambda c: dict(c._fields_and_field_types)),
        }
        for f in fields:
            ns[f] = property(lambda self, f=f: getattr(self, "_" + f))
        cls = type(name, (), ns)
        classes[f"{pkg}/{name}"] = cls
        mod = modules.setdefault(pkg, types.ModuleType(f"{pkg}.msg"))
        setattr(mod, name, cls)

    for typename in store.fielddefs:
        if "/msg/" in typename:
            make_class(typename)
    for pkg, mod in modules.items():
        monkeypatch.setitem(sys.modules, f"{pkg}.msg", mod)
        monkeypatch.setitem(sys.modules, pkg, types.ModuleType(pkg))
    RclpyFactory._class.cache_clear()
    yield classes
    RclpyFactory._class.cache_clear()


def test_builds_pass_rosidl_checks_and_read_back(fake_rclpy_messages):
    f = RclpyFactory()
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = numpy_to_image(img, "rgb8", 5, "cam", f, step=12)
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    assert np.array_equal(image_to_numpy(msg), img)
    # a foreign (rclpy) message serialises through the typestore layout
    assert np.array_equal(
        image_to_numpy(deserialize_cdr(serialize_cdr(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")),
        img,
    )

    K = np.array([[200.0, 0, 50], [0, 210, 40], [0, 0, 1]])
    info = intrinsics_to_camera_info(CameraIntrinsics(100, 80, K, [0.1, 0, 0, 0, 0], "plumb_bob", "cam"), f)
    assert isinstance(info.d, array.array) and info.d.typecode == "d" and info.k.dtype == np.float64
    assert np.array_equal(camera_info_to_intrinsics(info).K, K)

    ts = [TransformStamped("map", "base_link", 7, Transform(np.array([1, 2, 3.0]), np.array([0, 0, 0, 1.0])))]
    back = tf_message_to_transforms(transforms_to_tf_message(ts, f))
    assert back[0].child == "base_link" and np.array_equal(back[0].transform.translation, [1, 2, 3])

    payload = bytes(range(256)) * 100
    arr_msg = bytes_to_uint8_multiarray(payload, f)
    assert isinstance(arr_msg.data, array.array) and uint8_multiarray_to_bytes(arr_msg) == payload

    cloud = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    pc = array_to_pointcloud2(cloud, 1, "lidar", f)
    assert isinstance(pc.is_dense, bool) and pointcloud2_to_array(pc).shape == (3,)

    m = marker_array([line_strip_marker("l", 1, np.zeros((3, 3)), factory=f)], f)
    assert len(m.markers[0].points) == 3

    # msg "byte" (e.g. DiagnosticStatus.level) is an int in rosbags, bytes in rclpy
    st = f.make(
        "diagnostic_msgs/msg/DiagnosticStatus", level=1, name="n", values=[{"key": "k", "value": "v"}]
    )
    assert st.level == b"\x01" and st.values[0].key == "k"
    back = deserialize_cdr(
        serialize_cdr(st, "diagnostic_msgs/msg/DiagnosticStatus"), "diagnostic_msgs/msg/DiagnosticStatus"
    )
    assert back.level == 1 and back.values[0].value == "v"


def test_stand_ins_do_reject_what_rosidl_rejects(fake_rclpy_messages):
    cls = fake_rclpy_messages["sensor_msgs/CameraInfo"]
    with pytest.raises(AssertionError, match="not a Sequence"):
        cls(d=np.zeros(5))  # numpy is not a collections Sequence: rclpy rejects it, we convert
    with pytest.raises(AssertionError, match="not a float"):
        fake_rclpy_messages["geometry_msgs/Point"](x=1)
