"""std_msgs: UInt8MultiArray (map deltas: 1–10 MB byte payloads) and String (JSON side channels)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import MessageError
from .factory import MessageFactory, _factory, as_uint8_array, reads

UINT8_MULTI_ARRAY = "std_msgs/msg/UInt8MultiArray"
STRING = "std_msgs/msg/String"


def bytes_to_uint8_multiarray(
    data: bytes | bytearray | memoryview | np.ndarray, factory: MessageFactory | None = None
) -> Any:
    """A byte payload → UInt8MultiArray (one dimension "bytes"; copied once, no per-byte loop)."""
    factory = _factory(factory)
    arr = np.array(as_uint8_array(data, f"{UINT8_MULTI_ARRAY}.data"), dtype=np.uint8, copy=True)
    n = len(arr)
    dim = factory.make("std_msgs/msg/MultiArrayDimension", label="bytes", size=n, stride=n)
    layout = factory.make("std_msgs/msg/MultiArrayLayout", dim=[dim], data_offset=0)
    return factory.make(UINT8_MULTI_ARRAY, layout=layout, data=arr)


@reads(UINT8_MULTI_ARRAY)
def uint8_multiarray_to_bytes(msg: Any) -> bytes:
    """A UInt8MultiArray → its payload bytes (after ``layout.data_offset`` padding elements)."""
    data = as_uint8_array(msg.data, f"{UINT8_MULTI_ARRAY}.data")
    offset = int(msg.layout.data_offset)
    if offset > len(data):
        raise MessageError(
            f"{UINT8_MULTI_ARRAY}.layout.data_offset: {offset} is beyond the {len(data)} data bytes"
        )
    return data[offset:].tobytes()


def string_message(text: str, factory: MessageFactory | None = None) -> Any:
    return _factory(factory).make(STRING, data=str(text))


@reads(STRING)
def string_message_to_str(msg: Any) -> str:
    return str(msg.data)


def json_to_string_message(obj: Any, factory: MessageFactory | None = None) -> Any:
    """Any JSON-serialisable object → a std_msgs/String holding compact JSON."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise MessageError(f"{STRING}.data: object is not JSON-serialisable: {e}") from None
    return string_message(text, factory)


@reads(STRING)
def string_message_to_json(msg: Any) -> Any:
    try:
        return json.loads(str(msg.data))
    except (ValueError, RecursionError) as e:  # (and int() of a number beyond 4300 digits)
        raise MessageError(f"{STRING}.data: not valid JSON ({type(e).__name__}: {e})") from None
