"""rmw_zenoh's wire format: key expressions, liveliness tokens, QoS strings, attachments, GIDs.

Written from rmw_zenoh's ``docs/design.md`` (ros2/rmw_zenoh, 2025) and read against its
``liveliness_utils.cpp`` / ``attachment_helpers.cpp`` / ``qos.cpp``; nothing here imports zenoh,
so the format is testable on its own (``test/test_zenoh_runtime.py`` rebuilds the document's
examples byte for byte and parses them back).

- Data key:   ``<domain>/<topic without leading slash>/<pkg::msg::dds_::T_>/<RIHS01_hash>``
- Liveliness: ``@ros2_lv/<domain>/<zid>/<node id>/<entity id>/<NN|MP|MS|SS|SC>/<enclave>/<ns>/<node>``
  and, for publishers and subscriptions, ``/<topic>/<type>/<hash>/<qos>``; names are *mangled*
  (``/`` → ``%``), an empty namespace or enclave is ``%``.
- QoS string: ``rel:dur:hist,depth:dl_s,dl_ns:ls_s,ls_ns:liv,liv_s,liv_ns`` where a value equal to
  rmw_zenoh's default (reliable, volatile, keep-last 42, infinite durations, automatic) is empty.
- Attachment of every sample: int64 sequence number (from 1), int64 source time (ns since the
  epoch), then the 16-byte publisher GID as a length-prefixed byte array (zenoh-ext serialisation:
  ``<q`` ``<q`` ``0x10`` ``gid``; 33 bytes).
- GID: XXH3-128 of the entity's liveliness key, low 64 bits then high 64 bits, little endian (what
  rmw_zenoh's graph cache derives from the token, so ``ros2 topic info -v`` shows the same GID).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import xxhash

from ..errors import MessageError
from ..nodes.context import QoS

ADMIN_SPACE = "@ros2_lv"
NODE, PUBLISHER, SUBSCRIPTION, SERVICE, CLIENT = "NN", "MP", "MS", "SS", "SC"
ENTITY_KINDS = (NODE, PUBLISHER, SUBSCRIPTION, SERVICE, CLIENT)
GID_SIZE = 16

# rmw enums (rmw/types.h) as they appear in the QoS string
RELIABLE, BEST_EFFORT = 1, 2
TRANSIENT_LOCAL, VOLATILE = 1, 2
KEEP_LAST, KEEP_ALL = 1, 2
DEFAULT_DEPTH = 42  # rmw_zenoh's default depth (qos.cpp)


def mangle(name: str) -> str:
    return name.replace("/", "%")


def demangle(name: str) -> str:
    return name.replace("%", "/")


def topic_keyexpr(domain_id: int, topic: str, dds_type: str, type_hash: str) -> str:
    """The data key of a topic: ``0/chatter/std_msgs::msg::dds_::String_/RIHS01_…``."""
    return f"{domain_id}/{topic.strip('/')}/{dds_type}/{type_hash}"


@dataclass(frozen=True)
class RmwQos:
    """The QoS fields rmw_zenoh writes into a token (durations as (sec, nsec); None = infinite)."""

    reliability: int = RELIABLE
    durability: int = VOLATILE
    history: int = KEEP_LAST
    depth: int = DEFAULT_DEPTH
    deadline: tuple[int, int] | None = None
    lifespan: tuple[int, int] | None = None
    liveliness: int = 1  # AUTOMATIC
    liveliness_lease: tuple[int, int] | None = None

    @classmethod
    def from_qos(cls, qos: QoS) -> RmwQos:
        return cls(
            reliability=RELIABLE if qos.reliable else BEST_EFFORT,
            durability=TRANSIENT_LOCAL if qos.transient_local else VOLATILE,
            depth=qos.depth or DEFAULT_DEPTH,
        )


# RMW_DURATION_INFINITE is {9223372036, 854775807}: rmw_zenoh compares against it, so an infinite
# duration is written as empty.
_INFINITE = (9223372036, 854775807)


def _opt(value: int, default: int) -> str:
    return "" if value == default else str(value)


def qos_keyexpr(q: RmwQos) -> str:
    dl = q.deadline or _INFINITE
    ls = q.lifespan or _INFINITE
    lv = q.liveliness_lease or _INFINITE
    return (
        f"{_opt(q.reliability, RELIABLE)}:{_opt(q.durability, VOLATILE)}:"
        f"{_opt(q.history, KEEP_LAST)},{_opt(q.depth, DEFAULT_DEPTH)}:"
        f"{_opt(dl[0], _INFINITE[0])},{_opt(dl[1], _INFINITE[1])}:"
        f"{_opt(ls[0], _INFINITE[0])},{_opt(ls[1], _INFINITE[1])}:"
        f"{_opt(q.liveliness, 1)},{_opt(lv[0], _INFINITE[0])},{_opt(lv[1], _INFINITE[1])}"
    )


def parse_qos_keyexpr(text: str) -> RmwQos:
    """Inverse of :func:`qos_keyexpr`, with rmw_zenoh's checks (6 parts, 2/2/2/3 components)."""
    parts = text.split(":")
    if len(parts) < 6:
        raise MessageError(f"liveliness QoS {text!r}: expected 6 ':'-separated parts")
    hist, dl, ls, lv = (p.split(",") for p in parts[2:6])
    if len(hist) < 2 or len(dl) < 2 or len(ls) < 2 or len(lv) < 3:
        raise MessageError(f"liveliness QoS {text!r}: a part has too few ','-separated values")

    def num(s: str, default: int) -> int:
        if not s:
            return default
        if not (s.isascii() and s.isdigit()):  # str.isdigit takes "²", which int() refuses
            raise MessageError(f"liveliness QoS {text!r}: {s!r} is not a number")
        return int(s)

    def dur(sec: str, nsec: str) -> tuple[int, int] | None:
        value = (num(sec, _INFINITE[0]), num(nsec, _INFINITE[1]))
        return None if value == _INFINITE else value

    reliability = num(parts[0], RELIABLE)
    durability = num(parts[1], VOLATILE)
    history = num(hist[0], KEEP_LAST)
    liveliness = num(lv[0], 1)
    if reliability not in (0, 1, 2, 3, 4) or durability not in (0, 1, 2, 3) or history not in (0, 1, 2, 3):
        raise MessageError(f"liveliness QoS {text!r}: unknown policy value")
    return RmwQos(
        reliability=reliability,
        durability=durability,
        history=history,
        depth=num(hist[1], DEFAULT_DEPTH),
        deadline=dur(dl[0], dl[1]),
        lifespan=dur(ls[0], ls[1]),
        liveliness=liveliness,
        liveliness_lease=dur(lv[1], lv[2]),
    )


@dataclass(frozen=True)
class GraphEntity:
    """One liveliness token, as rmw_zenoh's graph cache reads it (``Entity::make(keyexpr)``)."""

    domain_id: int
    zid: str
    node_id: str
    entity_id: str
    kind: str
    enclave: str
    namespace: str
    node_name: str
    topic: str = ""
    type_name: str = ""
    type_hash: str = ""
    qos: RmwQos | None = None

    @property
    def keyexpr(self) -> str:
        key = (
            f"{ADMIN_SPACE}/{self.domain_id}/{self.zid}/{self.node_id}/{self.entity_id}/{self.kind}/"
            f"{mangle(self.enclave)}/{mangle(self.namespace)}/{mangle(self.node_name)}"
        )
        if self.kind != NODE:
            qos = qos_keyexpr(self.qos or RmwQos())
            key += f"/{mangle(self.topic)}/{mangle(self.type_name)}/{mangle(self.type_hash)}/{qos}"
        return key

    @property
    def gid(self) -> bytes:
        return entity_gid(self.keyexpr)


def parse_liveliness(keyexpr: str) -> GraphEntity:
    """Parse a token the way rmw_zenoh's graph cache does; :class:`MessageError` when it would not."""
    parts = keyexpr.split("/")
    if len(parts) < 9:
        raise MessageError(f"liveliness token {keyexpr!r}: {len(parts)} parts, at least 9 needed")
    if any(not p for p in parts):
        raise MessageError(f"liveliness token {keyexpr!r}: empty part")
    if parts[0] != ADMIN_SPACE:
        raise MessageError(f"liveliness token {keyexpr!r}: admin space is not {ADMIN_SPACE}")
    kind = parts[5]
    if kind not in ENTITY_KINDS:
        raise MessageError(f"liveliness token {keyexpr!r}: unknown entity kind {kind!r}")
    if not (parts[1].isascii() and parts[1].isdigit() and len(parts[1]) <= 10):  # (a uint32)
        raise MessageError(f"liveliness token {keyexpr!r}: domain id {parts[1]!r} is not a number")
    node = dict(
        domain_id=int(parts[1]),
        zid=parts[2],
        node_id=parts[3],
        entity_id=parts[4],
        kind=kind,
        enclave=demangle(parts[6]),
        namespace=demangle(parts[7]),
        node_name=demangle(parts[8]),
    )
    if kind == NODE:
        return GraphEntity(**node)
    if len(parts) < 13:
        raise MessageError(f"liveliness token {keyexpr!r}: a {kind} token needs 13 parts")
    return GraphEntity(
        **node,
        topic=demangle(parts[9]),
        type_name=demangle(parts[10]),
        type_hash=demangle(parts[11]),
        qos=parse_qos_keyexpr(parts[12]),
    )


def entity_gid(liveliness_keyexpr: str) -> bytes:
    """The 16-byte GID rmw_zenoh derives from a liveliness key (XXH3-128, low then high, LE)."""
    return xxhash.xxh3_128_intdigest(liveliness_keyexpr.encode()).to_bytes(16, "little")


_ATTACHMENT = struct.Struct("<qqB")


def encode_attachment(sequence_number: int, source_timestamp_ns: int, gid: bytes) -> bytes:
    if len(gid) != GID_SIZE:
        raise MessageError(f"attachment: a GID has {GID_SIZE} bytes, got {len(gid)}")
    return _ATTACHMENT.pack(sequence_number, source_timestamp_ns, GID_SIZE) + gid


@dataclass(frozen=True)
class Attachment:
    sequence_number: int
    source_timestamp_ns: int
    gid: bytes


def decode_attachment(data: bytes) -> Attachment:
    if len(data) != _ATTACHMENT.size + GID_SIZE or data[16] != GID_SIZE:
        raise MessageError(f"attachment: expected 33 bytes (seq, stamp, 16-byte GID), got {len(data)}")
    seq, stamp, _ = _ATTACHMENT.unpack_from(data)
    return Attachment(seq, stamp, bytes(data[_ATTACHMENT.size :]))
