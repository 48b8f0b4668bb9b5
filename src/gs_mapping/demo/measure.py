"""The demo's figures, each against the world's ground truth or the mapper's own map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HOLDOUT_EVERY = 5  # held-out views at midpoints between every 5th pair of frames
MAPPED_RANGE_M = 40.0  # the mapper maps to this depth; PSNR "in range" counts only these pixels


def hd_map_metrics(world_bag: Path, out_bag: Path) -> tuple[dict, list[tuple[dict, dict]]]:
    """Chamfer / raster AP of hd_map_node's lanes against the world's GT (paired by stamp), GT clipped
    to the region each frame's cameras covered (the node clips its predictions to it and publishes it
    in ``lanes_json``), and the persistent lane map the node's ``~/lanes_delta`` rebuilds, scored against
    the world's global GT map (``lane_map``)."""
    from gsmap_hd.metrics import evaluate
    from gsmap_hd.region import clip_documents

    from ..bag import BagReader
    from ..messages import string_message_to_json

    def frames(bag_path, topic):
        with BagReader(bag_path) as bag:
            if not bag.has_topic(topic):
                return {}
            return {
                int(d["stamp_ns"]): d
                for d in (string_message_to_json(m) for _, _, m in bag.messages([topic]))
            }

    gts = frames(world_bag, "/ground_truth/lanes_json")
    preds = frames(out_bag, "/hd_map_node/lanes_json")
    stamps = sorted(set(gts) & set(preds))
    pairs = [(preds[s], gts[s]) for s in stamps]
    if not pairs:
        return {"frames": 0}, []
    res, gt, clipped = clip_documents(
        [{k: p[k] for k in ("vectors", "region") if k in p} for p, _ in pairs],
        [{"vectors": [{k: v[k] for k in ("pts", "type")} for v in g["vectors"]]} for _, g in pairs],
        "lanes_json",
    )
    pairs = [
        ({**p, "vectors": r["vectors"]}, {**g, "vectors": q["vectors"]})
        for (p, g), r, q in zip(pairs, res, gt, strict=True)
    ]
    result = evaluate([{"vectors": r["vectors"]} for r in res], gt, frame="rep103")
    out = {
        "frames": len(pairs),
        "region": "camera region (GT clipped like the predictions)" if clipped else "whole patch",
        "chamfer_mAP": result["chamfer"]["mAP"],
        "chamfer_ap": result["chamfer"]["ap"],
        "raster_mAP": result["raster"]["mAP"],
        "raster_line_ap": result["raster"]["line_ap"],
        "raster_ped_ap": result["raster"]["ped_ap"],
    }
    lane_map = lane_map_metrics(world_bag, out_bag, [p for p, _ in pairs])
    if lane_map:
        out["lane_map"] = lane_map
    return out, pairs


def lane_map_metrics(world_bag: Path, out_bag: Path, preds: list[dict]) -> dict:
    """The lane map as a receiver rebuilds it from ``~/lanes_delta`` (applied in sequence), scored
    against the world's global GT map in each predicted frame's camera region (Chamfer mAP), beside
    the per-frame predictions in the same windows; with the geometry for the report's picture."""
    from gs_map_share.lanes import decode_lanes
    from gsmap_hd.eval_io import parse_frames
    from gsmap_hd.lane_map_eval import windows
    from gsmap_hd.metrics import evaluate_chamfer
    from gsmap_hd.region import Region, clip_vectors

    from ..bag import BagReader
    from ..messages import string_message_to_json, uint8_multiarray_to_bytes
    from ..tf import TFBuffer
    from ..topics import tf_topics

    with BagReader(out_bag) as bag:
        if not bag.has_topic("/hd_map_node/lanes_delta"):
            return {}
        state, header = None, None
        for _, _, m in bag.messages(["/hd_map_node/lanes_delta"]):
            header, state = decode_lanes(uint8_multiarray_to_bytes(m), state)
    if state is None or header.frame_id != "map":
        return {}
    with BagReader(world_bag) as bag:
        if not bag.has_topic("/ground_truth/map_json"):
            return {}
        gt_doc = next(string_message_to_json(m) for _, _, m in bag.messages(["/ground_truth/map_json"]))
        tf = TFBuffer(cache_time_s=None)
        tf_of = dict(tf_topics(bag))  # (the one rule for a bag's TF topics)
        for topic, _, m in bag.messages(list(tf_of)):
            tf.add_message(m, static=tf_of[topic])
    lanes = [(ln.cls, ln.score, ln.points) for ln in state.to_lanes(header.params.pos_step)]
    gt_map = [(int(v["type"]), np.asarray(v["pts"], float)) for v in gt_doc["vectors"]]
    usable = [p for p in preds if "region" in p]
    if not usable:
        return {}
    poses = [tf.lookup("map", "base_link", int(p["stamp_ns"])).matrix() for p in usable]
    regions = [Region.from_coords("frame", p["region"]) for p in usable]
    res, gts = windows(lanes, gt_map, poses, regions)
    per_frame = [{"vectors": clip_vectors(p["vectors"], r)} for p, r in zip(usable, regions, strict=True)]
    g = parse_frames(gts, "gt", False)
    fused = evaluate_chamfer(parse_frames(res, "lane map", True), g)
    single = evaluate_chamfer(parse_frames(per_frame, "frames", True), g)
    path = np.array([T[:2, 3] for T in poses])
    lo, hi = path.min(0) - 35, path.max(0) + 35
    near = [(c, p) for c, p in gt_map if ((p >= lo) & (p <= hi)).all(1).any()]
    return {
        "frames": len(usable),
        "lanes": len(lanes),
        "lane_map_mAP": fused["mAP"],
        "lane_map_class_ap": fused["class_ap"],
        "per_frame_mAP": single["mAP"],
        "geometry": {  # map frame, for the report's picture
            "lanes": [[int(c), round(float(s), 3), np.round(p, 2).tolist()] for c, s, p in lanes],
            "gt": [[c, np.round(p, 2).tolist()] for c, p in near],
            "path": np.round(path, 2).tolist(),
        },
    }


def receiver_matches_mapper(mapper_node, receiver_node) -> bool:
    """The receiver's rebuilt map equals the mapper's map quantised with the sender's parameters
    (``to_qmap``), field by field: the map itself, not the sender's record of what it sent."""
    from gs_map_share.quantize import to_qmap

    store = receiver_node.store
    if not store.ready:
        return False
    return bool(store.state.equals(to_qmap(mapper_node.mapper.gmap, mapper_node.sender.params)))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The mapper's PSNR (dB, colours clipped to [0, 1], optional (H, W) mask), capped for JSON."""
    from ..mapping.metrics import PSNR_CAP_DB
    from ..mapping.metrics import psnr as mapping_psnr

    return mapping_psnr(a, b, mask, cap_db=PSNR_CAP_DB)


def heldout_views(drive, lateral: float = 0.0) -> list:
    """Cameras at midpoints between frames never shown to the mapper (optionally displaced)."""
    cam = drive.cameras[0]
    out = []
    for i in range(0, drive.frames - 1, HOLDOUT_EVERY):
        T = drive.pose(i + 0.5, lateral=lateral)
        out.append(cam.with_pose(T @ cam.T_map_cam))
    return out


def heldout_quality(drive, gmap, views: list) -> dict:
    """PSNR of the map rendered at held-out views vs the world's true image, over all pixels and
    over the pixels within the mapped depth range."""
    from ..render import render

    rows = []
    for cam in views:
        truth, depth = drive.world.render(cam)
        truth = truth.astype(np.float32) / 255.0
        color, _, _ = render(gmap, cam, backend="cpu").numpy()
        near = np.isfinite(depth) & (depth <= MAPPED_RANGE_M)
        rows.append((psnr(color, truth), psnr(color, truth, near), color, truth))
    return {
        "psnr_all": float(np.mean([r[0] for r in rows])),
        "psnr_in_range": float(np.mean([r[1] for r in rows])),
        "views": len(rows),
    }, rows


def delta_costs(out_bag: Path) -> dict:
    """Delta bytes per keyframe vs re-sending the full map at each keyframe (what a naive sharing
    scheme does): the deltas are replayed into a receiver and each state is encoded as a snapshot."""
    from gs_map_share.receiver import APPLIED, SNAPSHOT, MapStore
    from gs_map_share.snapshot import encode_snapshot

    from ..bag import BagReader
    from ..messages import uint8_multiarray_to_bytes

    store = MapStore()
    deltas, fulls = [], []
    topics = ["/mapper_node/map_snapshot", "/mapper_node/map_delta"]
    with BagReader(out_bag) as bag:
        for topic, _, msg in bag.messages(topics):
            data = uint8_multiarray_to_bytes(msg)
            status = store.receive(data)
            if topic.endswith("map_delta") and status == APPLIED:
                deltas.append(len(data))
                h = store.header
                full, _ = encode_snapshot(
                    store.state,
                    store.params,
                    map_id=h.map_id,
                    seq=h.seq,
                    frame_id=h.frame_id,
                    tile_size=h.tile_size,
                )
                fulls.append(len(full))
            elif status not in (APPLIED, SNAPSHOT, "duplicate", "stale"):
                raise RuntimeError(f"demo: a container of the sender was {status}: {store.last_error}")
    total, total_full = int(sum(deltas)), int(sum(fulls))
    return {
        "keyframes": len(deltas),
        "delta_bytes": deltas,
        "delta_bytes_total": total,
        "full_resend_bytes": fulls,
        "full_resend_bytes_total": total_full,
        "delta_vs_full": round(total / total_full, 4) if total_full else None,
        "final_map_gaussians": len(store.state) if store.state is not None else 0,
    }


def rate_distortion(gmap, views: list, qualities=(1, 2, 3, 4, 5)) -> list[dict]:
    """Bytes vs PSNR (against the uncompressed map's own rendering) for each codec quality."""
    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import decode_map, encode_map

    from ..render import render

    refs = [render(gmap, cam, backend="cpu").numpy()[0] for cam in views]
    out = []
    for q in qualities:
        data, _ = encode_map(gmap, QuantParams.from_quality(q))
        dec = decode_map(data)
        p = [
            psnr(render(dec, cam, backend="cpu").numpy()[0], ref)
            for cam, ref in zip(views, refs, strict=False)
        ]
        out.append(
            {
                "quality": q,
                "bytes": len(data),
                "bytes_per_gaussian": len(data) / max(1, len(gmap)),
                "psnr_vs_uncompressed": float(np.mean(p)),
            }
        )
    return out


def levels_of_detail(snapshot: bytes, view) -> list[dict]:
    """The shared map decoded up to each level of detail, rendered from one view."""
    from gs_map_share.snapshot import decode_map, decode_snapshot

    from ..render import render

    header, _ = decode_snapshot(snapshot)
    out = []
    for level in range(header.n_levels):
        gmap = decode_map(snapshot, max_level=level)
        color, _, _ = render(gmap, view, backend="cpu").numpy()
        out.append({"level": level, "gaussians": len(gmap), "image": color})
    return out
