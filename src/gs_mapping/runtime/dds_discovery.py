"""``ros_discovery_info``: how a DDS participant tells ROS 2 which nodes it holds.

DDS discovery knows participants, readers and writers, not nodes. ROS 2's DDS RMWs (rmw_cyclonedds,
rmw_fastrtps, rmw_connextdds) therefore each publish one ``rmw_dds_common/msg/ParticipantEntitiesInfo``
on the DDS topic ``ros_discovery_info`` (no ``rt/`` prefix): the participant's GID and, per node,
its namespace, name and the GIDs of its readers and writers. ``ros2 node list`` and the node column
of ``ros2 topic info -v`` come from it. Layouts from ros2/rmw_dds_common ``msg/*.msg``; QoS and
GIDs from ros2/rmw_cyclonedds ``rmw_node.cpp``:

- topic QoS: reliable, transient-local, keep-last 1 (late joiners get the latest state);
- a GID is the entity's 16-byte DDS GUID; the ``Gid`` message holds ``char[24]`` on Humble (the
  GUID then 8 zero bytes, as ``convert_guid_to_gid`` fills ``rmw_gid_t``) and ``char[16]`` from
  Iron/Jazzy on (rmw_dds_common #68);
- the message is republished whenever the participant's nodes or their endpoints change.
"""

from __future__ import annotations

import dataclasses
import types as pytypes
from functools import cache
from typing import Any

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as T

from ..errors import ConfigError

TOPIC = "ros_discovery_info"
TYPENAME = "rmw_dds_common/msg/ParticipantEntitiesInfo"
GID_SIZE = {"humble": 24, "jazzy": 16}


def _struct(name: str, annotations: dict[str, Any]) -> type:
    body = {"__annotations__": annotations, "__module__": __name__, "__qualname__": name}
    cls = pytypes.new_class(
        name, (IdlStruct,), {"typename": f"rmw_dds_common::msg::dds_::{name}"}, lambda ns: ns.update(body)
    )
    return dataclasses.dataclass(cls)


@cache
def message_types(distro: str) -> tuple[type, type, type]:
    """(Gid_, NodeEntitiesInfo_, ParticipantEntitiesInfo_) IDL classes of a distro."""
    if distro not in GID_SIZE:
        raise ConfigError(f"--ros-distro: expected humble or jazzy, got {distro!r}")
    gid = _struct("Gid_", {"data": T.array[T.uint8, GID_SIZE[distro]]})
    node = _struct(
        "NodeEntitiesInfo_",
        {
            "node_namespace": T.bounded_str[256],
            "node_name": T.bounded_str[256],
            "reader_gid_seq": T.sequence[gid],
            "writer_gid_seq": T.sequence[gid],
        },
    )
    participant = _struct(
        "ParticipantEntitiesInfo_", {"gid": gid, "node_entities_info_seq": T.sequence[node]}
    )
    return gid, node, participant


def to_gid(guid_bytes: bytes, distro: str) -> Any:
    """A DDS GUID (16 bytes) as the distro's ``Gid`` message (zero-padded to 24 on Humble)."""
    gid_cls = message_types(distro)[0]
    return gid_cls(data=list(guid_bytes.ljust(GID_SIZE[distro], b"\0")))


def participant_info(
    distro: str, participant_guid: bytes, nodes: list[tuple[str, str, list[bytes], list[bytes]]]
) -> Any:
    """The message for one participant; ``nodes`` = (namespace, name, reader GUIDs, writer GUIDs),
    namespace as rcl gives it (``/`` when empty)."""
    _gid, node_cls, info_cls = message_types(distro)
    return info_cls(
        gid=to_gid(participant_guid, distro),
        node_entities_info_seq=[
            node_cls(
                node_namespace=ns,
                node_name=name,
                reader_gid_seq=[to_gid(g, distro) for g in readers],
                writer_gid_seq=[to_gid(g, distro) for g in writers],
            )
            for ns, name, readers, writers in nodes
        ],
    )
