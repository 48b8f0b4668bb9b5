"""gs_map_share: compact, entropy-coded, progressive and incremental Gaussian map deltas.

Modules (byte-level format: docs/format.md):

- ``quantize``  — the lattices: ``quantize(map, params)`` is exactly the map a receiver rebuilds.
- ``container`` — header, table of contents, CRC-32C chunks; ``bitio``/``entropy`` — varints and
  ANS-coded integer streams (constriction, integer frequency tables).
- ``octree``/``section`` — per-tile octree geometry with levels of detail and aggregated Gaussians.
- ``snapshot`` — whole maps (``encode_map``, ``decode_map``); ``delta`` — changes by id and the
  sender (``MapSender``); ``receiver`` — ``MapStore``, in-sequence application that never loses the map.
- ``lanes`` — the HD map's vector lanes. Other 3DGS file formats (PLY, SPZ v1–v4, PlayCanvas
  compressed PLY and SOG) are core I/O: ``gs_mapping.splat_formats``.

Test and benchmark material (synthetic rooms, a seeded faulty link) lives in ``test/`` and does not ship.
"""

from gs_mapping.lazy_api import lazy_api

_API = {
    "QuantParams": "quantize",
    "QMap": "quantize",
    "to_qmap": "quantize",
    "dequantize": "quantize",
    "encode_map": "snapshot",
    "decode_map": "snapshot",
    "encode_snapshot": "snapshot",
    "decode_snapshot": "snapshot",
    "MapSender": "delta",
    "encode_delta": "delta",
    "decode_delta": "delta",
    "MapStore": "receiver",
    "encode_lanes": "lanes",
    "decode_lanes": "lanes",
    "quantize_lanes": "lanes",
    "assign_ids": "lanes",
    "DecodeError": "errors",
    "EncodeError": "errors",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
