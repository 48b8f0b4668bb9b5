"""ROS 2 message types as Cyclone DDS IDL structs, generated from the ROS 2 message definitions.

ROS 2 (rmw_cyclonedds) puts ``pkg/msg/Name`` on the wire as the DDS type ``pkg::msg::dds_::Name_``,
serialised as plain CDR (XCDR1, little endian, "final" structs). We generate one
:class:`cyclonedds.idl.IdlStruct` per type from the definitions that ship with ``rosbags`` (Humble;
the message types we use are identical in Jazzy; and Livox's CustomMsg,
:mod:`~gs_mapping.messages.livox`), so bytes on the wire equal rosbags' CDR and a real ROS 2 graph
can read them. ``uint8[]`` fields are declared ``sequence<uint8>`` (so Cyclone's XTypes type object
is the standard one) but serialised by Cyclone's ``bytes`` machine, which copies them in one block
instead of one Python call per byte: megabyte map deltas and images stay cheap. A Livox CustomMsg's
``points`` likewise go as one block (:class:`_PackedPointsMachine`): one numpy array in 0.4 ms,
where Cyclone's own machine makes an object a point (0.12 s for a Mid-360's 20k points, more than
the 0.1 s between two of its clouds; bench/livox_decode.py)."""

from __future__ import annotations

import dataclasses
import types
from functools import cache, lru_cache
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as T
from cyclonedds.idl._machinery import BytesMachine, StructMachine
from cyclonedds.idl._support import Endianness

from ..errors import MessageError
from ..messages import livox

_BASE = {
    "bool": bool,
    "int8": T.int8,
    "uint8": T.uint8,
    "byte": T.uint8,
    "char": T.uint8,
    "int16": T.int16,
    "uint16": T.uint16,
    "int32": T.int32,
    "uint32": T.uint32,
    "int64": T.int64,
    "uint64": T.uint64,
    "float32": T.float32,
    "float64": T.float64,
    "string": str,
}
_BYTE_LIKE = ("uint8", "byte", "char")
_KIND_BASE, _KIND_NAME, _KIND_ARRAY, _KIND_SEQUENCE = 1, 2, 3, 4


@lru_cache(maxsize=1)
def _typestore():
    from ..messages.factory import ros_typestore  # (Humble's types, and Livox's CustomMsg)

    return ros_typestore("ROS2_HUMBLE")


def dds_type_name(typename: str) -> str:
    """``sensor_msgs/msg/Image`` → ``sensor_msgs::msg::dds_::Image_``."""
    pkg, kind, name = _split(typename)
    return f"{pkg}::{kind}::dds_::{name}_"


def _split(typename: str) -> tuple[str, str, str]:
    parts = typename.split("/")
    if len(parts) != 3:
        raise MessageError(f"message type {typename!r} is not of the form pkg/msg/Name")
    return parts[0], parts[1], parts[2]


def _fields(typename: str) -> list[tuple[str, tuple]]:
    try:
        return _typestore().fielddefs[typename][1]
    except KeyError:
        raise MessageError(f"unknown message type {typename!r}") from None


def _is_byte_sequence(desc: tuple) -> bool:
    kind, detail = desc
    if int(kind) != _KIND_SEQUENCE:
        return False
    (sub_kind, sub_detail), bound = detail
    return int(sub_kind) == _KIND_BASE and sub_detail[0] in _BYTE_LIKE and not bound


def _idl_annotation(desc: tuple) -> Any:
    kind, detail = desc
    kind = int(kind)
    if kind == _KIND_BASE:
        name, bound = detail
        return T.bounded_str[bound] if name == "string" and bound else _BASE[name]
    if kind == _KIND_NAME:
        return idl_class(detail)
    if kind == _KIND_ARRAY:
        sub, length = detail
        return T.array[_idl_annotation(sub), length]
    if kind == _KIND_SEQUENCE:
        sub, bound = detail
        return T.sequence[_idl_annotation(sub), bound] if bound else T.sequence[_idl_annotation(sub)]
    raise MessageError(f"unsupported field description {desc!r}")


@cache
def idl_class(typename: str) -> type:
    """The generated IdlStruct class for a ROS 2 message type."""
    pkg, kind, name = _split(typename)
    fields = _fields(typename)
    annotations = {fname: _idl_annotation(desc) for fname, desc in fields}
    if not annotations:  # ROS 2 pads empty messages with one uint8 member, as rosidl does
        annotations["structure_needs_at_least_one_member"] = T.uint8
    body = {"__annotations__": annotations, "__module__": __name__, "__qualname__": f"{name}_"}
    cls = types.new_class(
        f"{name}_", (IdlStruct,), {"typename": dds_type_name(typename)}, lambda ns: ns.update(body)
    )
    cls = dataclasses.dataclass(cls)
    _use_block_copy_for_bytes(cls, fields)
    return cls


def _is_packed_points(desc: tuple) -> bool:
    """Whether a field is a Livox CustomMsg's ``CustomPoint[]`` (read and written as one array)."""
    kind, detail = desc
    if int(kind) != _KIND_SEQUENCE:
        return False
    (sub_kind, sub_detail), bound = detail
    return int(sub_kind) == _KIND_NAME and sub_detail in livox.POINT_TYPES and not bound


class _PackedPointsMachine(BytesMachine):
    """A ``CustomPoint[]`` as CDR has it (uint32 count, then the points 20 bytes apart) ⇄ one
    structured array (:mod:`gs_mapping.messages.livox`): the same bytes as Cyclone's per-point
    machine, read and written in one block."""

    def serialize(self, buffer, value, *args, **kwargs):
        buffer.align(4)
        buffer.write("I", 4, len(value))
        buffer.write_bytes(livox.points_to_cdr(value, _order(buffer)))

    def deserialize(self, buffer, *args, **kwargs):
        buffer.align(4)
        count = buffer.read("I", 4)
        data = buffer.read_bytes(livox.cdr_points_size(count))
        return livox.points_from_cdr(data, 0, count, _order(buffer))

    def default_initialize(self):
        return np.zeros(0, livox.CDR_POINT)


def _order(buffer) -> str:
    return "<" if buffer.endianness == Endianness.Little else ">"


def _use_block_copy_for_bytes(cls: type, fields: list) -> None:
    """Swap the per-element sequence machine of ``uint8[]`` members for Cyclone's bytes machine,
    and of Livox's ``CustomPoint[]`` for :class:`_PackedPointsMachine` (XCDR1 only: ROS 2's).

    Both produce the same CDR (uint32 length, then the bytes); this relies on Cyclone's internal
    machine layout, so it is checked against rosbags' CDR in the tests."""
    idl = cls.__idl__
    idl.populate()
    for machine in (idl.v1_machine, idl.v2_machine):
        if isinstance(machine, StructMachine):
            for fname, desc in fields:
                if _is_byte_sequence(desc):
                    machine.members_machines[fname] = BytesMachine()
                elif _is_packed_points(desc) and machine is idl.v1_machine:
                    machine.members_machines[fname] = _PackedPointsMachine()


def _default(desc: tuple) -> Any:
    kind, detail = desc
    kind = int(kind)
    if kind == _KIND_BASE:
        name = detail[0]
        return "" if name == "string" else False if name == "bool" else 0.0 if name.startswith("float") else 0
    if kind == _KIND_NAME:
        return make(detail)
    if kind == _KIND_ARRAY:
        sub, length = detail
        if int(sub[0]) == _KIND_BASE and sub[1][0] in _BYTE_LIKE:
            return bytes(length)
        return [_default(sub) for _ in range(length)]
    if _is_packed_points(desc):
        return np.zeros(0, livox.CDR_POINT)
    return b"" if _is_byte_sequence(desc) else []


def _coerce(desc: tuple, value: Any, where: str) -> Any:
    """Accept what node code naturally produces (numpy arrays, rosbags messages) for a field."""
    kind, detail = desc
    kind = int(kind)
    if kind == _KIND_NAME:
        cls = idl_class(detail)
        return value if isinstance(value, cls) else to_idl(value, detail)
    if kind == _KIND_SEQUENCE and _is_byte_sequence(desc):
        if isinstance(value, np.ndarray):
            return value.astype(np.uint8, copy=False).tobytes()
        return bytes(value)
    if _is_packed_points(desc):
        return livox.points_array(value)  # (one array: _PackedPointsMachine writes it in one block)
    if kind in (_KIND_ARRAY, _KIND_SEQUENCE):
        sub = detail[0]
        if kind == _KIND_ARRAY and int(sub[0]) == _KIND_BASE and sub[1][0] in _BYTE_LIKE:
            return bytes(np.asarray(value, np.uint8).tobytes())
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        if int(sub[0]) == _KIND_NAME:
            return [_coerce(sub, v, f"{where}[]") for v in items]
        return items
    if kind == _KIND_BASE and isinstance(value, np.generic):
        return value.item()
    if kind == _KIND_BASE and detail[0] in _BYTE_LIKE and isinstance(value, (bytes, bytearray)):
        if len(value) != 1:
            raise MessageError(f"{where}: a byte field takes one byte, got {len(value)}")
        return value[0]  # rclpy represents `byte` as a 1-byte bytes object
    return value


def make(typename: str, **fields: Any) -> Any:
    """Build a message of ``typename`` with ROS defaults for the fields not given."""
    cls = idl_class(typename)
    defs = dict(_fields(typename))
    unknown = set(fields) - set(defs)
    if unknown:
        raise MessageError(f"{typename} has no field {sorted(unknown)[0]!r}")
    kwargs = {}
    for name, desc in defs.items():
        kwargs[name] = _coerce(desc, fields[name], f"{typename}.{name}") if name in fields else _default(desc)
    if not defs:
        kwargs["structure_needs_at_least_one_member"] = 0
    return cls(**kwargs)


def to_idl(msg: Any, typename: str) -> Any:
    """Convert any duck-typed message object (rosbags, rclpy, ours) to the IDL struct."""
    defs = _fields(typename)
    return make(typename, **{name: getattr(msg, name) for name, _ in defs})


class DdsFactory:
    """Message factory for the Cyclone DDS runtime (same ``make`` protocol as gs_mapping.messages)."""

    def make(self, typename: str, **fields: Any) -> Any:
        return make(typename, **fields)


def serialize(msg: Any) -> bytes:
    """CDR bytes exactly as a ROS 2 node would put on the wire (with the 4-byte encapsulation)."""
    return msg.serialize(use_version_2=False)


def deserialize(data: bytes, typename: str) -> Any:
    if len(data) < 4:  # (cyclonedds decodes b"" as a default message; rosbags' CDR reader refuses it)
        raise MessageError(f"cannot decode {typename} from {len(data)} bytes: no CDR encapsulation header")
    try:
        return idl_class(typename).deserialize(data, has_header=True)
    except Exception as exc:  # cyclonedds raises bare Exceptions/struct.error on short input
        raise MessageError(f"cannot decode {typename} from {len(data)} bytes: {exc}") from None
