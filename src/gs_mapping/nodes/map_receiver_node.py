"""map_receiver_node: map deltas + snapshots → the rebuilt map → ``~/map_cloud`` for RViz.

Deltas are applied strictly in sequence by :class:`gs_map_share.receiver.MapStore` (gaps buffered,
duplicates dropped, a corrupt container rejected whole with the map untouched). The rebuilt map is
published as a PointCloud2 (x, y, z, rgb, opacity, scale) at most ``publish_rate_hz`` times a second,
only when it changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config_file import param
from ..topics import check_topic_parameter
from .base import NodeBase
from .context import LATCHED_QOS, QoS


@dataclass
class MapReceiverNodeConfig:
    # Relative names: under namespace:=robot1 they resolve to /robot1/mapper_node/…, where the mapper is.
    delta_topic: str = param("mapper_node/map_delta", "map deltas (std_msgs/UInt8MultiArray)")
    snapshot_topic: str = param("mapper_node/map_snapshot", "map snapshots (latched)")
    publish_rate_hz: float = param(1.0, "upper bound on the ~/map_cloud rate", (0.01, 100.0))
    max_pending: int = param(256, "out-of-order deltas buffered while waiting for a gap", (1, 100000))
    max_gaussians: int = param(
        1 << 22,
        "largest map accepted: a snapshot or delta that would make a larger one is rejected before decoding",  # (MapStore default)
        (1, 1 << 26),
    )
    min_opacity: float = param(0.05, "Gaussians fainter than this are left out of ~/map_cloud", (0.0, 1.0))
    diagnostics_period_s: float = param(1.0, "period of /diagnostics", (0.05, 60.0))
    save_path: str = param(
        "", "PLY path the rebuilt map is saved to on shutdown, with the sender's ids and levels (empty: none)"
    )

    def __post_init__(self) -> None:
        from .map_saving import check_save_path

        check_save_path(self.save_path, "map_receiver_node.save_path")
        for name in ("delta_topic", "snapshot_topic"):
            check_topic_parameter(f"map_receiver_node.{name}", getattr(self, name))


class MapReceiverNode(NodeBase):
    name = "map_receiver_node"
    sections = {"map_receiver_node": MapReceiverNodeConfig}
    # Applied at run time (`ros2 param set`; read where used); every other parameter is read-only.
    runtime_parameters = frozenset({"map_receiver_node.min_opacity", "map_receiver_node.save_path"})

    def __init__(self, ctx, config: dict[str, Any]):
        super().__init__(ctx, config)
        from gs_map_share.receiver import MapStore

        self.cfg: MapReceiverNodeConfig = config["map_receiver_node"]
        self.store = MapStore(max_pending=self.cfg.max_pending, max_gaussians=self.cfg.max_gaussians)
        self._dirty = False
        self._shared_said = False  # more than one publisher of the deltas followed: said once
        self.pub_cloud = ctx.create_publisher("~/map_cloud", "sensor_msgs/msg/PointCloud2", LATCHED_QOS)
        ctx.create_subscription(
            self.cfg.delta_topic,
            "std_msgs/msg/UInt8MultiArray",
            QoS(reliable=True, depth=100),
            self.guarded(self.cfg.delta_topic, self.on_container),
        )
        ctx.create_subscription(
            self.cfg.snapshot_topic,
            "std_msgs/msg/UInt8MultiArray",
            LATCHED_QOS,
            self.guarded(self.cfg.snapshot_topic, self.on_container),
        )
        ctx.create_timer(1.0 / self.cfg.publish_rate_hz, self.publish_cloud)
        ctx.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics_timer)
        self.diag.values["device"] = "cpu"  # decoding and the cloud are numpy work

    def parameters_changed(self, section: str, values: dict[str, Any]) -> None:
        super().parameters_changed(section, values)
        if "min_opacity" in values:  # the cloud is published on change only: show the new cut now
            self._dirty = True

    def on_container(self, msg: Any) -> None:
        from gs_map_share.receiver import APPLIED, REJECTED, SNAPSHOT, STALE

        from ..messages import uint8_multiarray_to_bytes

        t0 = time.perf_counter()
        status = self.store.receive(uint8_multiarray_to_bytes(msg))
        if status == REJECTED:
            self.diag.reject("map_containers", self.store.last_error)
        elif status == STALE:  # (a sender's sequence starts at its wall clock: one restarted behind)
            self.diag.reject(
                "map_containers",
                f"a snapshot older than the map held (sequence {self.store.seq}) was ignored: a mapper "
                "restarted with its clock behind is not followed until this receiver restarts",
            )
        elif status in (APPLIED, SNAPSHOT):
            self._dirty = True
            self.diag.latency("apply", time.perf_counter() - t0)
        self.diag.values.update({f"containers_{k}": v for k, v in self.store.stats.items()})
        self.diag.values["seq"] = self.store.seq
        if self.store.header is not None:  # verified against the rebuilt map after every apply
            self.diag.values["state_crc"] = self.store.header.state_crc
        self.diag.values["pending"] = self.store.pending
        self.report_waiting(self.waiting_for())

    def waiting_for(self) -> list[str]:
        """What the map waits for: a first map (nothing usable arrived yet: a topic name or namespace
        to check, or a late joiner before the next snapshot), or deltas buffered behind a missing one
        (the map is behind the sender's until it, or the next snapshot, comes)."""
        if not self.store.ready:
            snap, delta = (
                self.ctx.resolve_topic_name(t) for t in (self.cfg.snapshot_topic, self.cfg.delta_topic)
            )
            # (a sender numbers from its wall clock: there is no "delta 1", only a snapshot starts it)
            held = f", {self.store.pending} deltas buffered" if self.store.pending else ""
            return [f"a map snapshot on {snap} (or deltas on {delta} after one{held})"]
        if self.store.pending and self.store.seq is not None:
            # (the delta on the map's sequence: not seq + 1, a restarted sender moves on to its clock)
            return [f"the map delta after {self.store.seq} ({self.store.pending} later ones buffered)"]
        return []

    def on_diagnostics_timer(self) -> None:
        # (said at every report too: a receiver that never got a map has no container to say it)
        self.report_waiting(self.waiting_for())
        self.count_publishers()
        self.publish_diagnostics()

    def count_publishers(self) -> None:
        """Diagnostics ``publishers``: how many publish the deltas followed, where the runtime can
        count them (Zenoh: processes holding a publisher token; DDS: matched writers; rclpy:
        rmw's count; the replay bus: publishers made on it). Two processes publishing as one
        sender (a mapper launched twice with one name and namespace) number their maps alike:
        this receiver follows whichever snapshot is newest and buffers or drops the other's
        deltas, so more than one is said once (again after it was back to one)."""
        count = getattr(self.ctx, "publisher_count", None)
        n = count(self.cfg.delta_topic) if count is not None else None
        if n is None:
            return
        self.diag.values["publishers"] = n
        if n <= 1:
            self._shared_said = False
        elif not self._shared_said:
            self._shared_said = True
            self.ctx.logger.warning(
                f"{n} publishers on {self.ctx.resolve_topic_name(self.cfg.delta_topic)}: two processes "
                "publishing as one mapper (one name and namespace, launched twice?) number their maps "
                "alike; this receiver follows the newest snapshot and buffers or drops the other's "
                "deltas (unless one is a restarted sender's old session not yet timed out)"
            )

    def publish_cloud(self) -> None:
        if not self._dirty or not self.store.ready:
            return
        from ..messages import array_to_pointcloud2

        gmap = self.store.gaussian_map()
        keep = gmap.opacities() >= self.cfg.min_opacity
        rgb = np.round(gmap.colors()[keep] * 255).astype(np.uint32)
        cloud = np.zeros(
            int(keep.sum()),
            dtype=[
                ("x", "<f4"),
                ("y", "<f4"),
                ("z", "<f4"),
                ("rgb", "<f4"),
                ("opacity", "<f4"),
                ("scale", "<f4"),
            ],
        )
        cloud["x"], cloud["y"], cloud["z"] = gmap.means[keep].T
        # RViz's packed colour: 0x00RRGGBB reinterpreted as float32.
        cloud["rgb"] = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)
        cloud["opacity"] = gmap.opacities()[keep]
        cloud["scale"] = gmap.scales()[keep].max(axis=1)
        frame = self.store.header.frame_id if self.store.header is not None else "map"
        self.pub_cloud.publish(
            array_to_pointcloud2(cloud, self.ctx.now_ns(), frame, factory=self.ctx.factory)
        )
        self._dirty = False
        self.diag.values["gaussians"] = len(gmap)

    def close(self) -> None:
        if self.store.ready:
            from .map_saving import final_save

            # never raises: a failed save goes to the temp directory and the log says where. With
            # the ids it received: the rebuilt map is the sender's, Gaussian by Gaussian (as the
            # mapper's own saves; `gs-mapping convert` makes a plain PLY for web viewers)
            final_save(
                self.store.gaussian_map(),
                self.cfg.save_path,
                self.ctx.logger,
                self.ctx.node_name,
                keep_ids=True,
            )
