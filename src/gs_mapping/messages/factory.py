"""Building messages without knowing which library they come from, CDR, stamps and headers.

Everything in :mod:`gs_mapping.messages` *reads* messages by attribute access only, so the same function
takes an rclpy message or a rosbags message. To *build* messages it goes through a
:class:`MessageFactory`: :class:`RosbagsFactory` (the default; works everywhere, used by the bag replay
and the tests) or :class:`RclpyFactory` (on a ROS 2 machine, for publishing through rclpy).

Nested message fields may be given as dicts (``make("std_msgs/msg/Header", stamp={"sec": 1})``) and
sequences of messages as lists of dicts; omitted fields get their ROS defaults.
"""

from __future__ import annotations

import array
import functools
import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import MessageError

# ROS primitive type → numpy dtype (little-endian storage is the CDR default; arrays are native here).
PRIMITIVE_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "boolean": np.dtype(np.bool_),
    "byte": np.dtype(np.uint8),
    "octet": np.dtype(np.uint8),
    "char": np.dtype(np.uint8),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "float32": np.dtype(np.float32),
    "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64),
}
_STRING_TYPES = ("string", "wstring")

NS_PER_S = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def ros_typestore(distro: str = "ROS2_HUMBLE"):
    """A new rosbags typestore of a ROS 2 distribution's message types (``distro``: a
    ``rosbags.typesys.Stores`` name), and the driver types read without their package installed:
    Livox's CustomMsg (:mod:`.livox`). The one place typestores are made."""
    from rosbags.typesys import Stores, get_typestore

    from .livox import register_types

    store = get_typestore(getattr(Stores, distro))
    register_types(store)
    return store


@functools.lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore for ROS 2 Humble (message classes, layouts and CDR)."""
    return ros_typestore("ROS2_HUMBLE")


def _fielddefs(typename: str):
    try:
        return typestore().fielddefs[typename][1]
    except KeyError:
        raise MessageError(f"unknown message type {typename!r} (not in the ROS 2 Humble typestore)") from None


def as_uint8_array(data: Any, where: str = "data") -> np.ndarray:
    """A ``uint8[]`` field as a flat uint8 numpy array, without a per-byte loop where possible.

    rosbags gives numpy arrays, rclpy gives ``array.array('B')``; bytes, bytearray and memoryview work
    too. The result may share memory with (and be read-only like) the message's buffer.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            if data.dtype.itemsize == 1:
                return data.reshape(-1).view(np.uint8)
            raise MessageError(f"{where}: expected uint8 data, got dtype {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    try:  # a list of ints: slow but correct
        a = np.asarray(data)
        # (numpy < 2, Humble's 1.21, wraps 256 to 0 and -1 to 255 without a word: refused as rclpy's
        # array('B') refuses them)
        if a.dtype.kind in "iu" and a.size and (a.min() < 0 or a.max() > 255):
            raise OverflowError(f"a value outside 0..255 ({a.min()}..{a.max()})")
        return np.asarray(a, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as e:
        raise MessageError(f"{where}: cannot read as bytes ({type(data).__name__}): {e}") from None


def reads(typename: str):
    """Decorator for readers: a message object lacking a field becomes a MessageError naming it."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(msg, *args, **kwargs):
            try:
                return fn(msg, *args, **kwargs)
            except AttributeError as e:
                field = getattr(e, "name", None) or str(e)
                raise MessageError(
                    f"{typename}: message object ({type(msg).__name__}) has no field "
                    f"{field!r}; is it a {typename}?"
                ) from e

        return inner

    return wrap


@runtime_checkable
class MessageFactory(Protocol):
    """Builds a message of a ROS type, e.g. ``make("sensor_msgs/msg/Image", height=2, ...)``."""

    def make(self, typename: str, **fields: Any) -> Any: ...


class RosbagsFactory:
    """Builds rosbags message objects (ROS 2 Humble typestore); fills omitted fields with defaults."""

    def __init__(self, store=None) -> None:
        self._store = store
        self._plans: dict[str, tuple[type, tuple]] = {}  # per instance: no global cache pins factories

    @property
    def store(self):
        if self._store is None:
            self._store = typestore()
        return self._store

    def make(self, typename: str, **fields: Any) -> Any:
        cls, plan = self._plans.get(typename) or self._plan(typename)
        kwargs = {}
        n_given = 0
        for name, kind, info, scalar_default in plan:
            if name in fields:
                n_given += 1
                value = fields[name]
                if kind == "base":  # the hot path (points, colours): no call, no copy
                    kwargs[name] = value.item() if isinstance(value, np.generic) else value
                else:
                    kwargs[name] = self._coerce(typename, name, kind, info, value)
            elif kind == "base":
                kwargs[name] = scalar_default
            else:
                kwargs[name] = self._default(kind, info)
        if n_given != len(fields):
            unknown = sorted(set(fields) - {p[0] for p in plan})
            raise MessageError(f"{typename}: unknown field(s) {unknown}; fields are {[p[0] for p in plan]}")
        try:
            return cls(**kwargs)
        except Exception as e:  # rosbags classes are plain dataclasses; this is a programming error
            raise MessageError(f"{typename}: cannot build message: {e}") from e

    # --- internals -------------------------------------------------------------------------------
    def _plan(self, typename: str) -> tuple[type, tuple[tuple[str, str, Any, Any], ...]]:
        try:
            defs = self.store.fielddefs[typename][1]
            cls = self.store.types[typename]
        except KeyError:
            raise MessageError(
                f"unknown message type {typename!r} (not in the ROS 2 Humble typestore)"
            ) from None
        plan = []
        for name, (nodetype, info) in defs:
            kind = {1: "base", 2: "name", 3: "array", 4: "sequence"}[int(nodetype)]
            plan.append((name, kind, info, self._default(kind, info) if kind == "base" else None))
        self._plans[typename] = (cls, tuple(plan))
        return self._plans[typename]

    def _default(self, kind: str, info: Any) -> Any:
        if kind == "base":
            t = info[0]
            if t in _STRING_TYPES:
                return ""
            if t in ("bool", "boolean"):
                return False
            return 0.0 if PRIMITIVE_DTYPES[t].kind == "f" else 0
        if kind == "name":
            return self.make(info)
        (subkind, subinfo), length = info
        if kind == "array":
            if int(subkind) == 1 and subinfo[0] not in _STRING_TYPES:
                return np.zeros(length, PRIMITIVE_DTYPES[subinfo[0]])
            sub = {1: "base", 2: "name"}[int(subkind)]
            return [self._default(sub, subinfo) for _ in range(length)]
        if int(subkind) == 1 and subinfo[0] not in _STRING_TYPES:
            return np.zeros(0, PRIMITIVE_DTYPES[subinfo[0]])
        return []

    def _coerce(self, typename: str, name: str, kind: str, info: Any, value: Any) -> Any:
        if kind == "base":
            if isinstance(value, np.generic):
                return value.item()
            return value
        if kind == "name":
            return self.make(info, **value) if isinstance(value, dict) else value
        (subkind, subinfo), length = info
        if int(subkind) == 1 and subinfo[0] not in _STRING_TYPES:
            dtype = PRIMITIVE_DTYPES[subinfo[0]]
            if dtype == np.uint8 and not isinstance(value, np.ndarray):
                arr = as_uint8_array(value, f"{typename}.{name}")
            else:
                try:
                    arr = np.asarray(value, dtype=dtype).reshape(-1)
                except (TypeError, ValueError, OverflowError) as e:
                    raise MessageError(f"{typename}.{name}: cannot convert to {subinfo[0]}[]: {e}") from None
            if kind == "array" and len(arr) != length:
                raise MessageError(f"{typename}.{name}: expected {length} elements, got {len(arr)}")
            return arr
        items = [self.make(subinfo, **v) if isinstance(v, dict) else v for v in value]
        if kind == "array" and len(items) != length:
            raise MessageError(f"{typename}.{name}: expected {length} elements, got {len(items)}")
        return items


# rclpy stores sequence<primitive> fields as array.array with these type codes.
_ARRAY_TYPECODES = {
    "boolean": None,
    "octet": None,
    "char": None,
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
_RCLPY_DTYPES = {
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


class RclpyFactory:
    """Builds rclpy message objects by importing ``<pkg>.msg`` lazily.

    Only usable on a ROS 2 machine (rclpy and the message packages installed); it is written against
    the rosidl-generated Python API (keyword constructors, ``get_fields_and_field_types()``,
    ``array.array`` for ``sequence<primitive>``, numpy arrays for fixed-size primitive arrays) and
    cannot be tested on the development machine, which has no ROS.
    """

    def make(self, typename: str, **fields: Any) -> Any:
        cls = self._class(typename)
        types = cls.get_fields_and_field_types()
        kwargs = {}
        for name, value in fields.items():
            if name not in types:
                raise MessageError(f"{typename}: unknown field {name!r}; fields are {list(types)}")
            kwargs[name] = self._coerce(typename, name, types[name], value)
        try:
            return cls(**kwargs)
        except (AssertionError, TypeError, ValueError) as e:  # rosidl setters assert on bad values
            raise MessageError(f"{typename}: cannot build message: {e}") from e

    @staticmethod
    @functools.cache
    def _class(typename: str):
        parts = typename.split("/")
        if len(parts) == 2:
            parts = [parts[0], "msg", parts[1]]
        pkg, sub, name = parts
        try:
            return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
        except (ImportError, AttributeError) as e:
            raise MessageError(f"cannot import message type {typename!r} through rclpy: {e}") from None

    def _coerce(self, typename: str, name: str, ftype: str, value: Any) -> Any:
        # rosidl setters check exact Python types: float fields reject ints, int fields numpy ints,
        # boolean fields anything but bool, sequence fields numpy arrays (not a collections Sequence).
        if isinstance(value, np.generic):
            value = value.item()
        if ftype in ("float", "double"):
            return float(value)
        if ftype == "boolean":
            return bool(value)
        if ftype == "octet" and isinstance(value, int):  # msg "byte": rclpy wants bytes of length 1
            return bytes([value])
        if ftype.startswith("sequence<"):
            inner = ftype[len("sequence<") : -1].split(",")[0]
            if "/" in inner:
                return [self._submessage(inner, v) for v in value]
            code = _ARRAY_TYPECODES.get(inner)
            if code is not None:
                if code == "B" and isinstance(value, (bytes, bytearray, memoryview)):
                    return array.array("B", bytes(value))
                if isinstance(value, array.array) and value.typecode == code:
                    return value
                arr = np.ascontiguousarray(np.asarray(value, dtype=_RCLPY_DTYPES[inner]).reshape(-1))
                out = array.array(code)
                out.frombytes(arr.tobytes())  # one memcpy, not a per-element setter loop
                return out
            return self._plain_list(inner, value)
        if ftype.endswith("]"):  # fixed-size array "double[9]" / "pkg/Type[3]"
            inner = ftype[: ftype.index("[")]
            if "/" in inner:
                return [self._submessage(inner, v) for v in value]
            if inner in _RCLPY_DTYPES:
                return np.asarray(value, dtype=_RCLPY_DTYPES[inner]).reshape(-1)
            return self._plain_list(inner, value)
        if "/" in ftype and isinstance(value, dict):
            return self._submessage(ftype, value)
        return value

    @staticmethod
    def _plain_list(inner: str, value: Any) -> list:
        if inner == "boolean":
            return [bool(v) for v in value]
        if inner == "octet":
            return [bytes([int(v)]) if not isinstance(v, bytes) else v for v in value]
        return list(value)

    def _submessage(self, ftype: str, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        pkg, name = ftype.split("/")[0], ftype.split("/")[-1]
        return self.make(f"{pkg}/msg/{name}", **value)


@functools.lru_cache(maxsize=1)
def default_factory() -> RosbagsFactory:
    """The factory used when none is given: rosbags messages (work everywhere, serialise to CDR)."""
    return RosbagsFactory()


def _factory(factory: MessageFactory | None) -> MessageFactory:
    return default_factory() if factory is None else factory


# --- generic conversion and CDR -------------------------------------------------------------------
def convert_message(msg: Any, typename: str, factory: MessageFactory | None = None) -> Any:
    """Copy any message object (rclpy, rosbags, or a look-alike) into one built by ``factory``.

    Reads fields by attribute access following the layout of ``typename`` in the factory's typestore
    (a :class:`RosbagsFactory`, which may hold types registered from a bag) or in ROS 2 Humble's.
    """
    factory = _factory(factory)
    if isinstance(factory, RosbagsFactory):
        try:
            defs = factory.store.fielddefs[typename][1]
        except KeyError:
            raise MessageError(
                f"unknown message type {typename!r} (not in the factory's typestore)"
            ) from None
    else:
        defs = _fielddefs(typename)
    fields = {}
    for name, (nodetype, info) in defs:
        try:
            value = getattr(msg, name)
        except AttributeError:
            raise MessageError(f"{typename}: message object has no field {name!r}") from None
        kind = int(nodetype)
        if kind == 1 and isinstance(value, (bytes, bytearray)) and len(value) == 1:
            value = value[0]  # rclpy holds msg "byte" as bytes of length 1
        elif kind == 2:
            value = convert_message(value, info, factory)
        elif kind in (3, 4):
            (subkind, subinfo), _ = info
            if int(subkind) == 2:
                value = [convert_message(v, subinfo, factory) for v in value]
            elif subinfo[0] in _STRING_TYPES:
                value = list(value)
            elif subinfo[0] in ("uint8", "byte", "octet", "char"):
                if isinstance(value, (list, tuple)) and value and isinstance(value[0], bytes):
                    value = b"".join(value)  # rclpy byte[]: a list of 1-byte bytes
                value = np.array(as_uint8_array(value, f"{typename}.{name}"))
            else:
                value = np.array(value, dtype=PRIMITIVE_DTYPES[subinfo[0]]).reshape(-1)
        fields[name] = value
    return factory.make(typename, **fields)


def serialize_cdr(msg: Any, typename: str) -> bytes:
    """Serialise a message (rosbags or rclpy) to CDR bytes (little-endian, with encapsulation header)."""
    store = typestore()
    cls = store.types.get(typename)
    if cls is None:
        raise MessageError(f"unknown message type {typename!r} (not in the ROS 2 Humble typestore)")
    if not isinstance(msg, cls):
        msg = convert_message(msg, typename, default_factory())
    try:
        return bytes(store.serialize_cdr(msg, typename))
    except Exception as e:  # rosbags raises assorted errors on wrong field types
        raise MessageError(f"cannot serialise {typename}: {type(e).__name__}: {e}") from e


def deserialize_cdr(data: bytes | bytearray | memoryview, typename: str) -> Any:
    """CDR bytes → a rosbags message object of ``typename``."""
    store = typestore()
    if typename not in store.types:
        raise MessageError(f"unknown message type {typename!r} (not in the ROS 2 Humble typestore)")
    try:
        return store.deserialize_cdr(bytes(data) if isinstance(data, memoryview) else data, typename)
    except Exception as e:  # truncated / corrupt buffers raise struct/index/assertion errors
        raise MessageError(
            f"cannot deserialise {typename} from {len(data)} bytes: {type(e).__name__}: {e}"
        ) from e


# --- stamps and headers ---------------------------------------------------------------------------
def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (``sec``, ``nanosec``) → integer nanoseconds."""
    try:
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    except AttributeError as e:
        raise MessageError(f"builtin_interfaces/msg/Time: stamp has no sec/nanosec field ({e})") from None
    return sec * NS_PER_S + nanosec


def ns_to_stamp_fields(ns: int) -> dict[str, int]:
    """Integer nanoseconds → ``{"sec": …, "nanosec": …}`` with 0 ≤ nanosec < 1e9 (as rclpy does)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise MessageError(f"builtin_interfaces/msg/Time: stamp {ns} ns is outside the int32 seconds range")
    return {"sec": sec, "nanosec": nanosec}


def make_stamp(ns: int, factory: MessageFactory | None = None) -> Any:
    return _factory(factory).make("builtin_interfaces/msg/Time", **ns_to_stamp_fields(ns))


def make_header(stamp_ns: int, frame_id: str, factory: MessageFactory | None = None) -> Any:
    """A std_msgs/Header with the given stamp (ns) and frame id."""
    factory = _factory(factory)
    return factory.make("std_msgs/msg/Header", stamp=make_stamp(stamp_ns, factory), frame_id=str(frame_id))


def header_fields(msg: Any) -> tuple[int, str]:
    """(stamp_ns, frame_id) of a message with a ``header``."""
    return stamp_to_ns(msg.header.stamp), str(msg.header.frame_id)
