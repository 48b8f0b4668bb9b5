"""Run a checkpoint over the cameras of a rosbag2 (used by ``gs-mapping hd-predict``).

Bag access goes through ``gs_mapping.bag`` and message conversion through ``gs_mapping.messages``;
this module only groups camera images by header stamp, looks up base_link ← camera extrinsics in the
bag's TF, and calls :class:`gsmap_hd.infer.Predictor`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gs_mapping.errors import GsMappingError, MessageError

from .errors import CheckpointError, HDInputError

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).resolve().parent / "assets" / "gsmap_small_world.pt"  # packaged (setup.py assets/*)
# the same small model fine-tuned for the world's six-camera rig over the whole patch
SHIPPED_SURROUND = SHIPPED.with_name("gsmap_small_world_surround.pt")


def shipped_checkpoint(n_cameras: int) -> Path:
    """The shipped model for a rig of ``n_cameras``: the front model for one camera, the surround
    model for several (its lifting averages whichever cameras see a BEV cell, so it takes any rig
    that covers more than the front view)."""
    return SHIPPED if n_cameras <= 1 else SHIPPED_SURROUND


IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
GT_TOPIC = "/ground_truth/lanes_json"
GT_GRACE_NS = 2_000_000_000  # after --max-frames, read on this long (log time) for their GT


def _info_topic(image_topic: str) -> str:
    from gs_mapping.topics import info_topic  # ``…/image_raw[/compressed]`` → ``…/camera_info``

    return info_topic(image_topic)


def _complete(frame: dict, cams: list[str], infos: dict) -> bool:
    """Whether a stamp has an image from every camera and each camera has had its CameraInfo."""
    return len(frame) == len(cams) and all(_info_topic(c) in infos for c in cams)


def find_cameras(bag) -> list[str]:
    names = {t.name: t.type for t in bag.topics}
    out = []
    for name, typ in sorted(names.items()):
        if typ in IMAGE_TYPES and "depth" not in name and _info_topic(name) in names:
            out.append(name)
    return out


def predict_bag(
    bag_path,
    out: Path,
    checkpoint=None,
    cameras=None,
    base_frame: str = "base_link",
    score_threshold: float = 0.3,  # hd_map_node's default
    max_frames: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    fit: str = "crop",
    antialias: bool = False,
    region: str | None = None,
    overwrite: bool = False,
    strict: bool = False,
) -> dict:
    """Predict every frame whose cameras all have an image (grouped by header stamp); write
    ``{"results": [...], "GTs": [...]}`` (GTs from ``/ground_truth/lanes_json`` of the same stamp when
    the bag has them). ``fit`` / ``antialias``: see :func:`gsmap_hd.data.images_to_model`. Predictions are
    clipped to the region the checkpoint declares (or ``region``), and each result frame carries that
    region (``"region"``: exterior rings in base_link) so that ``hd-eval`` clips the GT the same way."""
    from tqdm import tqdm

    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader
    from gs_mapping.messages.camera_image import color_to_rgb
    from gs_mapping.output_files import check_output, write_text
    from gs_mapping.rectify import for_images_on

    check_output(out, overwrite=overwrite, inputs=[bag_path])  # before the model loads
    if max_frames is not None and max_frames < 1:
        raise HDInputError(f"max_frames must be at least 1 (or none: every frame), got {max_frames}")
    from gs_mapping.device import resolve_device
    from gs_mapping.errors import TFError
    from gs_mapping.tf import TFBuffer

    from .infer import Predictor

    device = resolve_device(device)
    ckpt = Path(checkpoint) if checkpoint else SHIPPED
    if not ckpt.exists():
        raise CheckpointError(
            f"{ckpt}: checkpoint not found"
            + (
                ""
                if checkpoint
                else " (no shipped model; pass --checkpoint, e.g. OUT/model.pt of gs-mapping hd-train)"
            )
        )
    predictor = Predictor.from_checkpoint(
        ckpt, device=device, score_threshold=score_threshold, fit=fit, antialias=antialias, region=region
    )
    results = []
    used: set[str] = set()  # the region names the frames were clipped to
    with BagReader(bag_path, strict=strict) as bag:
        cams = list(cameras) if cameras else find_cameras(bag)
        if not cams:
            raise HDInputError(f"{bag_path}: no camera image topic with a sibling camera_info found")
        if len(set(cams)) != len(cams):
            raise HDInputError(f"{bag_path}: camera {next(c for c in cams if cams.count(c) > 1)} given twice")
        for c in cams:
            if not bag.has_topic(c):
                raise HDInputError(f"{bag_path}: no topic {c}")
            if bag.topic(c).type not in IMAGE_TYPES:
                raise HDInputError(f"{bag_path}: {c} is a {bag.topic(c).type}, not a camera image topic")
            if not bag.has_topic(_info_topic(c)):
                raise HDInputError(f"{bag_path}: camera {c} has no {_info_topic(c)}")
        tf = TFBuffer(cache_time_s=None)
        infos: dict[str, object] = {}
        pending: dict[int, dict[str, object]] = {}
        gt_by_stamp: dict[int, dict] = {}
        has_gt = bag.has_topic(GT_TOPIC)
        camera_of = {_info_topic(c): c for c in cams}  # (its CameraInfo's camera: raw or rectified)
        topics = (
            cams + [_info_topic(c) for c in cams] + ["/tf", "/tf_static"] + ([GT_TOPIC] if has_gt else [])
        )
        topics = [t for t in topics if bag.has_topic(t)]
        n_img = sum(bag.topic(c).count for c in cams) // len(cams)
        bar = tqdm(total=min(n_img, max_frames or n_img), desc="hd-predict", disable=not progress)
        enough_at = None  # log time when max_frames were predicted: GT logged just after still counts

        def predict(stamp: int, frame: dict) -> None:
            ims, cis, Ts = [], [], []
            for c in cams:
                rgb, fid = frame[c]
                info = infos[_info_topic(c)]
                ims.append(rgb)  # (a distorted camera's raw image: the Predictor makes it pinhole)
                cis.append(info)
                try:
                    Ts.append(tf.lookup(base_frame, fid, stamp).matrix())
                except TFError as exc:
                    raise HDInputError(
                        f"{bag_path}: no transform {base_frame} <- {fid} (camera {c}): {exc}; "
                        f"--base-frame {fid} needs no TF"
                    ) from None
            els = predictor.predict(ims, cis, Ts)
            used.add(predictor.last_regions[0].name)  # (patch, or the frustum where cameras see less)
            results.append(
                {
                    "stamp_ns": stamp,
                    "vectors": [e.to_eval() for e in els],
                    # what the cameras cover: hd-eval clips the GT to it as the predictions are
                    "region": predictor.last_regions[0].coords(),
                }
            )
            bar.update(1)

        bad_gt = 0
        for topic, t_log, msg in bag.messages(topics):
            if enough_at is not None:
                if t_log > enough_at + GT_GRACE_NS or all(r["stamp_ns"] in gt_by_stamp for r in results):
                    break
                if topic != GT_TOPIC:
                    continue
            if topic in ("/tf", "/tf_static"):
                tf.add_message(msg, static=topic == "/tf_static")
            elif topic == GT_TOPIC:
                try:
                    stamp, vectors = _ground_truth(M.string_message_to_json(msg))
                except MessageError as exc:  # a bad message is skipped, as any undecodable one
                    bad_gt += 1
                    if bad_gt == 1:
                        log.warning(f"{GT_TOPIC} at {t_log} ns skipped (and any like it): {exc}")
                    continue
                gt_by_stamp[stamp] = {"vectors": vectors}
            elif topic.endswith("camera_info"):
                infos[topic] = for_images_on(M.camera_info_to_intrinsics(msg), camera_of[topic])
                # a driver may log a frame's CameraInfo just after its images (same stamp)
                for ready in sorted(st for st, fr in pending.items() if _complete(fr, cams, infos)):
                    if not (max_frames and len(results) >= max_frames):
                        predict(ready, pending.pop(ready))
            else:
                stamp, frame_id = M.header_fields(msg)
                try:
                    rgb = color_to_rgb(msg)  # Image of any driver encoding, or CompressedImage jpeg/png
                except GsMappingError as exc:
                    raise HDInputError(f"{bag_path}: camera {topic}: {exc}") from None
                pending.setdefault(stamp, {})[topic] = (rgb, frame_id)
                if _complete(pending[stamp], cams, infos):
                    predict(stamp, pending.pop(stamp))
            if max_frames and len(results) >= max_frames and enough_at is None:
                enough_at = t_log
        bar.close()
    incomplete = len(pending) if not (max_frames and len(results) >= max_frames) else 0
    if incomplete:
        log.warning(
            f"{bag_path}: {incomplete} frame(s) skipped: not every camera had an image and a CameraInfo at that stamp",
        )
    if not results:  # an empty prediction file would read as "no lanes anywhere"
        bad = sum(bag.bad_messages.values())
        why = f"no stamp had an image from every camera ({', '.join(cams)}) and their camera_info"
        if bad:
            why = f"{bad} message(s) could not be decoded ({', '.join(sorted(bag.bad_messages))})"
        raise HDInputError(f"{bag_path}: no frame predicted: {why}")
    region = " and ".join(sorted(used))  # what the frames were clipped to (each carries its own)
    doc = {"region": region, "results": results}
    no_gt = 0
    if has_gt:
        # GT is paired by exact header stamp; a frame without one is scored against an empty map, so say so
        no_gt = sum(r["stamp_ns"] not in gt_by_stamp for r in results)
        if no_gt:
            log.warning(
                f"{bag_path}: {no_gt} of {len(results)} predicted frame(s) have no {GT_TOPIC} message at their stamp (empty GT used)",
            )
        doc["GTs"] = [gt_by_stamp.get(r["stamp_ns"], {"vectors": []}) for r in results]
    write_text(out, json.dumps(doc), overwrite=overwrite, inputs=[bag_path])
    return {
        "out": str(out),
        "frames": len(results),
        "cameras": cams,
        "with_gt": has_gt,
        "checkpoint": str(ckpt),
        "region": region,
        "fit": fit,
        "antialias": bool(antialias),
        "skipped_frames": incomplete,
        "frames_without_gt": no_gt,
        "undecodable": dict(bag.bad_messages),  # skipped input messages ("topic (type)" → count)
    }


def _ground_truth(doc) -> tuple[int, list]:
    """``(stamp_ns, vectors)`` of a ground-truth String's JSON (the world's layout), or
    MessageError naming what is not."""
    stamp = doc.get("stamp_ns", 0) if isinstance(doc, dict) else None
    if isinstance(stamp, float) and stamp.is_integer():
        stamp = int(stamp)
    if not isinstance(doc, dict) or isinstance(stamp, bool) or not isinstance(stamp, int):
        raise MessageError(f"{GT_TOPIC}: expected an object with an integer stamp_ns, got {str(doc)[:60]}")
    if not 0 <= stamp < 2**63:
        raise MessageError(f"{GT_TOPIC}: stamp_ns {str(stamp)[:30]} out of range")
    vectors = doc.get("vectors", [])
    if not isinstance(vectors, list):
        raise MessageError(f"{GT_TOPIC}: vectors is not a list")
    return stamp, vectors
