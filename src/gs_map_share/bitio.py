"""Little-endian byte writing/reading with bounds checks (every read is capped by what is left)."""

from __future__ import annotations

import struct

import crc32c as _crc32c
import numpy as np

from . import jit
from .errors import DecodeError


def crc32c(data, value: int = 0) -> int:
    """CRC-32C (Castagnoli), the checksum of every chunk and header; ``value`` continues a CRC."""
    return _crc32c.crc32c(data, value)


def pack_bits(vals: np.ndarray, nbits: np.ndarray) -> bytes:
    """Values (uint64) of ``nbits`` bits each (0 allowed), concatenated LSB-first, low bit first."""
    if len(vals) == 0:
        return b""
    nbits = np.asarray(nbits, np.int64)
    kernels = jit.kernels()
    if kernels is not None and int(nbits.max()) <= 64 and int(nbits.min()) >= 0:  # one compiled pass
        out = np.empty((int(nbits.sum()) + 7) // 8 + 8, np.uint8)
        return out[: kernels.pack_bits(np.asarray(vals, np.uint64), nbits, out)].tobytes()
    if int(nbits.max()) <= 57:
        # each value, shifted to its bit offset, lies within the 8 bytes from its first byte: add
        # its 8 byte planes into place (bits of neighbours never overlap, so adding is OR-ing)
        offs = np.cumsum(nbits)
        nbytes = (int(offs[-1]) + 7) >> 3
        offs -= nbits
        mask = np.left_shift(np.uint64(1), nbits.astype(np.uint64)) - np.uint64(1)
        v = (np.asarray(vals, np.uint64) & mask) << (offs & 7).astype(np.uint64)
        first = offs >> 3
        out = np.zeros(nbytes + 8, np.float64)  # byte sums ≤ 255: exact
        for k in range(8):
            plane = ((v >> np.uint64(8 * k)) & np.uint64(255)).astype(np.float64)
            out += np.bincount(first + k, weights=plane, minlength=nbytes + 8)
        return out[:nbytes].astype(np.uint8).tobytes()
    offs = np.concatenate([[0], np.cumsum(nbits)])  # wide values: bit by bit
    bits = np.zeros(int(offs[-1]), np.uint8)
    for j in range(int(nbits.max())):
        m = nbits > j
        bits[offs[:-1][m] + j] = ((vals[m] >> np.uint64(j)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits, bitorder="little").tobytes()


# each byte value as a one-byte bytes object: a u8 or a varint below 128 is one list append
_ONE_BYTE = tuple(bytes((i,)) for i in range(256))


def varints(values) -> bytes:
    """The LEB128 varints of non-negative ints ``values`` (a list or tuple), concatenated, in one
    bytes object (:meth:`Writer.varint` writes one)."""
    if all(0 <= v < 128 for v in values):  # (the common case of short plain streams)
        return bytes(values)
    out = bytearray()
    for v in values:
        if v < 0:
            raise ValueError("varint must be non-negative")
        while v >= 128:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class Writer:
    """Bytes built in parts. ``stats`` (label → bytes), when given, receives the size of each labelled
    stream the codec writes (bench accounting, asked for explicitly by the caller)."""

    def __init__(self, stats: dict | None = None) -> None:
        self.parts: list[bytes] = []
        self.stats = stats

    def raw(self, b) -> None:
        self.parts.append(bytes(b))

    def u8(self, v: int) -> None:
        if v.__class__ is int and 0 <= v < 256:
            self.parts.append(_ONE_BYTE[v])
        else:  # (numpy integers; out of range raises struct.error as before)
            self.parts.append(struct.pack("<B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def varint(self, v: int) -> None:
        v = int(v)
        self.parts.append(_ONE_BYTE[v] if 0 <= v < 128 else varints((v,)))

    def blob(self, b) -> None:
        """Length-prefixed bytes."""
        b = bytes(b)
        self.varint(len(b))
        self.parts.append(b)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    def __init__(self, data, what: str = "chunk") -> None:
        self.data = memoryview(bytes(data)) if not isinstance(data, memoryview) else data
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, msg: str) -> DecodeError:
        return DecodeError(f"{self.what}: {msg} (at byte {self.pos})")

    def raw(self, n: int) -> memoryview:
        p = self.pos
        if n < 0 or p + n > len(self.data):
            raise self.fail(f"needs {n} bytes, {self.remaining} left")
        self.pos = p + n
        return self.data[p : p + n]

    def u8(self) -> int:
        p = self.pos  # (the hot path of every stream header: no slice)
        if p >= len(self.data):
            raise self.fail("needs 1 bytes, 0 left")
        self.pos = p + 1
        return self.data[p]

    def u32(self) -> int:
        return struct.unpack("<I", self.raw(4))[0]

    def varint(self, limit: int = 1 << 63) -> int:
        data, p, end = self.data, self.pos, len(self.data)
        if p < end and data[p] <= min(0x7F, limit):  # one byte (most counts and lengths): no loop
            self.pos = p + 1
            return data[p]
        v, shift = 0, 0
        while True:
            if shift > 63 or p >= end:
                self.pos = p
                raise self.fail("varint longer than 64 bits" if shift > 63 else "needs 1 bytes, 0 left")
            b = data[p]
            p += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        self.pos = p
        if v > limit:
            raise self.fail(f"value {v} exceeds the limit {limit}")
        return v

    def blob(self) -> memoryview:
        return self.raw(self.varint(self.remaining))

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        if count < 0 or count * dt.itemsize > self.remaining:
            raise self.fail(f"array of {count} × {dt} does not fit in the {self.remaining} bytes left")
        return np.frombuffer(self.raw(count * dt.itemsize), dtype=dt).copy()

    def end(self) -> None:
        if self.remaining:
            raise self.fail(f"{self.remaining} unexpected trailing bytes")
