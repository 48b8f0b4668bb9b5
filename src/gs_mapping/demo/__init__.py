"""The main job (`make demo` = `gs-mapping demo --out out`): a procedural driving world, replayed
through all three nodes on CPU, measured against the world's ground truth, with a report.

Steps (each in its own module): :mod:`.pipeline` generates the world bag and replays it through
hd_map_node + mapper_node + map_receiver_node; :mod:`.measure` computes the figures (HD-map AP,
held-out PSNR of the shared map, delta bytes vs full resends, latencies); :mod:`.report` draws the
pictures and writes ``report.md``.
"""

from ..lazy_api import lazy_api

_API = {
    "DemoSettings": "pipeline",
    "node_configs": "pipeline",
    "make_world_bag": "pipeline",
    "replay": "pipeline",
    "hd_map_metrics": "measure",
    "heldout_quality": "measure",
    "delta_costs": "measure",
    "receiver_matches_mapper": "measure",
    "write_report": "report",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
