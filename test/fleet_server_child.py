"""A map server process for the kill -9 test: ingests recorded containers from a file, one per line
(hex), and prints each acknowledgement and global delta as it publishes them (then flushes)."""

from __future__ import annotations

import json
import sys

from gs_mapping.messages import uint8_multiarray_to_bytes
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus


def main(store: str, inputs: str) -> None:
    bus = ReplayBus()
    cfg = MapServerNodeConfig(
        store_path=store, compact_after=3, global_snapshot_every=4, keep_global_deltas=2
    )
    node = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    bus.subscribe("/map_server_node/ack", lambda m: print("ACK " + m.data, flush=True))
    bus.subscribe(
        "/map_server_node/map_delta",
        lambda m: print("DELTA " + uint8_multiarray_to_bytes(m).hex(), flush=True),
    )
    bus.subscribe(
        "/map_server_node/map_snapshot",
        lambda m: print("SNAPSHOT " + uint8_multiarray_to_bytes(m).hex(), flush=True),
    )
    bus._drain()
    print("READY " + json.dumps({"global_seq": node.merge.global_seq}), flush=True)
    with open(inputs) as f:
        for line in f:
            node.ingest(bytes.fromhex(line.strip()))
            bus.advance(bus.now_ns + 100_000_000)  # the global flush timer (0.2 s) fires every other one
    print("DONE", flush=True)
    sys.stdin.read()  # wait to be killed


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
