"""A vehicle process for the Zenoh fleet test: replays one recorded mapper stream as mapper_node
publishes it (``<ns>/mapper_node/map_delta`` reliable, ``map_snapshot`` latched, snapshots of the
current map on a period), over a Zenoh router, then keeps its last snapshot available until killed.

usage: fleet_vehicle.py ENDPOINT DOMAIN NAMESPACE CONTAINERS_HEX_FILE DELTA_PERIOD_S SNAPSHOT_PERIOD_S
"""

from __future__ import annotations

import sys
import time

from gs_map_share.container import unpack_header
from gs_map_share.receiver import MapStore
from gs_map_share.snapshot import encode_snapshot
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.context import LATCHED_QOS, QoS
from gs_mapping.runtime.zenoh_runtime import ZenohContext


def main(endpoint: str, domain: str, ns: str, path: str, period: str, snap_period: str) -> None:
    containers = [bytes.fromhex(x) for x in open(path).read().split()]
    ctx = ZenohContext("mapper_node", ns, int(domain), connect=[endpoint])
    pub_delta = ctx.create_publisher(
        "~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=20)
    )
    pub_snap = ctx.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
    store = MapStore()

    def snapshot() -> None:
        h = unpack_header(containers[0])[0]
        data, _ = encode_snapshot(
            store.state, store.params, map_id=h.map_id, seq=store.seq, frame_id=h.frame_id
        )
        pub_snap.publish(bytes_to_uint8_multiarray(data, ctx.factory))

    store.receive(containers[0])
    pub_snap.publish(bytes_to_uint8_multiarray(containers[0], ctx.factory))
    ctx.spin(until=lambda: pub_delta.subscription_count() > 0, timeout_s=30)
    print("ready", flush=True)
    last_snap = time.monotonic()
    for c in containers[1:]:
        store.receive(c)
        pub_delta.publish(bytes_to_uint8_multiarray(c, ctx.factory))
        print(f"sent {unpack_header(c)[0].seq}", flush=True)
        end = time.monotonic() + float(period)
        while time.monotonic() < end:
            ctx.spin_once(0.05)
        if time.monotonic() - last_snap > float(snap_period):
            snapshot()
            last_snap = time.monotonic()
    print("done", flush=True)
    while True:  # like mapper_node: the current map on a period, for a server that missed deltas
        snapshot()
        end = time.monotonic() + float(snap_period)
        while time.monotonic() < end:
            ctx.spin_once(0.1)


if __name__ == "__main__":
    main(*sys.argv[1:7])
