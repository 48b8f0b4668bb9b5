"""ROS 2 type hashes (``RIHS01_<sha256 hex>``), as rosidl computes them for Iron, Jazzy and later.

REP-2011 / ``rosidl_generator_type_description``: a message's *type description* is its own field
list plus the field lists of every type it references (transitively, sorted by name). Each field is
``{name, type: {type_id, capacity, string_capacity, nested_type_name}}`` with rosidl's
``FieldType`` ids; default values are left out. The hash is SHA-256 over that structure written as
JSON with ``", "`` / ``": "`` separators and keys in this order. Graphs use it to tell apart two
types of the same name: rmw_cyclonedds puts ``typehash=RIHS01_…;`` into every endpoint's USER_DATA,
rmw_zenoh puts it into every key expression.

The field lists come from the ``.msg`` definitions that ship with ``rosbags`` (its Jazzy store).
Checked in ``test/test_dds_graph.py`` against a hash published in ros2 sources (rmw_zenoh's
``docs/design.md``: ``std_msgs/msg/String``) and against rosbags' own implementation for every type
our nodes use. Humble has no type hashes: its graph ignores them.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache, lru_cache
from typing import Any

from ..errors import MessageError

RIHS01_PREFIX = "RIHS01_"

# rosidl FieldType ids (type_description_interfaces/msg/FieldType); .msg ``char`` is IDL ``uint8``
# and .msg ``byte`` is IDL ``octet`` (rosidl_adapter), so they hash as UINT8 and BYTE.
_TYPE_ID = {
    "int8": 2,
    "uint8": 3,
    "char": 3,
    "int16": 4,
    "uint16": 5,
    "int32": 6,
    "uint32": 7,
    "int64": 8,
    "uint64": 9,
    "float32": 10,
    "float64": 11,
    "bool": 15,
    "byte": 16,
    "string": 17,
    "wstring": 18,
}
_NESTED = 1
_BOUNDED_STRING, _BOUNDED_WSTRING = 21, 22
_ARRAY, _BOUNDED_SEQ, _UNBOUNDED_SEQ = 48, 96, 144  # added to the element's id
_KIND_BASE, _KIND_NAME, _KIND_ARRAY, _KIND_SEQUENCE = 1, 2, 3, 4


@lru_cache(maxsize=1)
def _typestore():
    from ..messages.factory import ros_typestore  # deferred: building a store parses every .msg

    return ros_typestore("ROS2_JAZZY")  # (Jazzy's types, and Livox's CustomMsg)


def _element(desc: tuple) -> tuple[int, int, str]:
    """(type id, string capacity, nested type name) of a non-container field type."""
    kind, detail = int(desc[0]), desc[1]
    if kind == _KIND_NAME:
        return _NESTED, 0, detail
    name, bound = detail
    if name in ("string", "wstring") and bound:
        return (_BOUNDED_STRING if name == "string" else _BOUNDED_WSTRING), bound, ""
    if name not in _TYPE_ID:
        raise MessageError(f"type hash: unsupported field type {name!r}")
    return _TYPE_ID[name], 0, ""


def _field_type(desc: tuple) -> dict[str, Any]:
    kind = int(desc[0])
    capacity, offset = 0, 0
    if kind == _KIND_ARRAY:
        sub, capacity = desc[1]
        offset = _ARRAY
    elif kind == _KIND_SEQUENCE:
        sub, capacity = desc[1]
        offset = _BOUNDED_SEQ if capacity else _UNBOUNDED_SEQ
    else:
        sub = desc
    type_id, string_capacity, nested = _element(sub)
    return {
        "type_id": type_id + offset,
        "capacity": capacity,
        "string_capacity": string_capacity,
        "nested_type_name": nested,
    }


def _individual(typename: str) -> dict[str, Any]:
    try:
        fields = _typestore().fielddefs[typename][1]
    except KeyError:
        raise MessageError(f"type hash: unknown message type {typename!r}") from None
    if not fields:  # rosidl gives an empty message this one member
        fields = [("structure_needs_at_least_one_member", (_KIND_BASE, ("uint8", 0)))]
    return {
        "type_name": typename,
        "fields": [{"name": name, "type": _field_type(desc)} for name, desc in fields],
    }


def type_description(typename: str) -> dict[str, Any]:
    """The hashable type description: the type and all it references, sorted by name."""
    main = _individual(typename)
    seen: dict[str, dict[str, Any]] = {}
    queue = [f["type"]["nested_type_name"] for f in main["fields"] if f["type"]["nested_type_name"]]
    while queue:
        name = queue.pop()
        if name not in seen:
            seen[name] = _individual(name)
            queue.extend(
                f["type"]["nested_type_name"] for f in seen[name]["fields"] if f["type"]["nested_type_name"]
            )
    return {"type_description": main, "referenced_type_descriptions": [seen[n] for n in sorted(seen)]}


@cache
def type_hash(typename: str) -> str:
    """``RIHS01_<64 hex>`` of a ROS 2 message type (``pkg/msg/Name``)."""
    text = json.dumps(type_description(typename), ensure_ascii=True, separators=(", ", ": "))
    return RIHS01_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()
