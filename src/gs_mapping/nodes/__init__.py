"""Node logic: one transport-agnostic class per node, driven by any runtime in gs_mapping.runtime."""

from ..lazy_api import lazy_api

_API = {
    "HDMapNode": "hd_map_node",
    "MapperNode": "mapper_node",
    "MapReceiverNode": "map_receiver_node",
    "MapServerNode": "map_server_node",
    "NodeBase": "base",
    "node_class": "registry",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
