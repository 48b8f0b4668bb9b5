"""Run a checkpoint over the cameras of a rosbag2 (used by ``gs-mapping hd-predict``).

Bag access goes through ``gs_mapping.bag`` and message conversion through ``gs_mapping.messages``;
this module only groups camera images by header stamp, looks up base_link ← camera extrinsics in the
bag's TF, and calls :class:`gsmap_hd.infer.Predictor`.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from pathlib import Path

import numpy as np

from gs_mapping.errors import GsMappingError, MessageError, Terminated

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
MAP_TOPIC = "/ground_truth/map_json"  # the world's whole map (map frame), once: GT over any patch
GT_GRACE_NS = 2_000_000_000  # after --max-frames, read on this long (log time) for their GT
# images a camera keeps waiting for partners (hd_map_node keeps 5, live): a finished recording
# may log one camera a second behind the others (30 frames at 30 Hz); kept undecoded
SYNC_QUEUE = 30
MAX_WAITING = 50  # grouped frames kept waiting for a CameraInfo or a transform; older ones skipped


def _info_topic(image_topic: str) -> str:
    from gs_mapping.topics import info_topic  # ``…/image_raw[/compressed]`` → ``…/camera_info``

    return info_topic(image_topic)


def find_cameras(bag) -> list[str]:
    """Every colour camera's image topic (with a sibling camera_info; not depth, infrared, stereo
    or the like), one topic a camera, as one CameraInfo describes one camera: the mapper's rule,
    ``topics.colour_candidates`` (a bag recorded with ``-a`` holds image_transport's
    ``…/compressed`` beside the raw topic, and image_proc's ``image_rect_color`` beside
    ``image_raw``: the raw, unrectified one is taken; one sensor's twins under CameraInfos of their
    own, as ZED's ``rgb``, ``rgb_raw`` and ``rgb_gray``, are one camera: the one ``map`` picks of
    them, ``topics.sensor_of``); a topic recorded without a message is not
    taken over one with messages (an advertised raw topic beside the ``/compressed`` one published)."""
    from gs_mapping.topics import colour_candidates

    empty = frozenset(t.name for t in bag.topics if not t.count)
    return colour_candidates({t.name: t.type for t in bag.topics}, empty)


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
    sync_slop_s: float = 0.02,  # hd_map_node's default
) -> dict:
    """Predict every frame whose cameras all have an image (grouped as hd_map_node groups them:
    header stamps within ``sync_slop_s``; a frame waits for its CameraInfos and transforms); write
    ``{"results": [...], "GTs": [...]}`` (GTs from ``/ground_truth/lanes_json`` of the same stamp when
    the bag has them; over the model's patch from ``/ground_truth/map_json`` where that is there too:
    see :func:`_gt_over_patch`). ``fit`` / ``antialias``: see :func:`gsmap_hd.data.images_to_model`. Predictions are
    clipped to the region the checkpoint declares (or ``region``), and each result frame carries that
    region (``"region"``: exterior rings in base_link) so that ``hd-eval`` clips the GT the same way."""
    from gs_mapping import messages as M
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import Unstamped, logged_clock_topics
    from gs_mapping.messages.camera_image import color_to_rgb
    from gs_mapping.output_files import check_output, write_text
    from gs_mapping.progress import progress as progress_report
    from gs_mapping.rectify import for_images_on
    from gs_mapping.sync import ApproximateTimeSynchronizer, CameraInfoHistory

    # before the model loads; the checkpoint is an input too (the shipped one is known at the write)
    check_output(out, overwrite=overwrite, inputs=[bag_path, *([checkpoint] if checkpoint else [])])
    if max_frames is not None and max_frames < 1:
        raise HDInputError(f"max_frames must be at least 1 (or none: every frame), got {max_frames}")
    from gs_mapping.device import resolve_device
    from gs_mapping.errors import TFError
    from gs_mapping.tf import RecordedTF, TFBuffer
    from gs_mapping.topics import tf_topics

    from .checkpoint import check_file as check_checkpoint
    from .infer import Predictor, check_intrinsics

    device = resolve_device(device)
    if not 0 <= sync_slop_s <= 1:
        raise HDInputError(f"sync_slop_s must be in [0, 1] s (as hd_map_node's), got {sync_slop_s}")
    slop_ns = int(round(sync_slop_s * 1e9))
    if checkpoint:
        check_checkpoint(checkpoint)
    results = []
    used: set[str] = set()  # the region names the frames were clipped to
    document = None  # the output's maker, once the bag's GT topics are known (an interrupt saves it)
    try:
        with BagReader(bag_path, strict=strict) as bag:
            cams = list(cameras) if cameras else find_cameras(bag)
            if not cams:
                images = sorted(t.name for t in bag.topics if t.type in IMAGE_TYPES)
                also = f" (image topics: {', '.join(images[:6])}; choose with --cameras)" if images else ""
                raise HDInputError(
                    f"{bag_path}: no colour camera image topic with a sibling camera_info found{also}"
                )
            if len(set(cams)) != len(cams):
                raise HDInputError(
                    f"{bag_path}: camera {next(c for c in cams if cams.count(c) > 1)} given twice"
                )
            for c in cams:
                if not bag.has_topic(c):
                    raise HDInputError(f"{bag_path}: no topic {c}")
                if bag.topic(c).type not in IMAGE_TYPES:
                    raise HDInputError(f"{bag_path}: {c} is a {bag.topic(c).type}, not a camera image topic")
                if not bag.has_topic(_info_topic(c)):
                    raise HDInputError(f"{bag_path}: camera {c} has no {_info_topic(c)}")
            twins = [c for c in cams if [_info_topic(d) for d in cams].count(_info_topic(c)) > 1]
            if twins:
                raise HDInputError(
                    f"{bag_path}: cameras {twins[0]} and {twins[1]} share {_info_topic(twins[0])}: one camera "
                    "(give one of them)"
                )
            # the bag's TF by the one rule (topic → static; several robots': the global pair, said): before the model
            tf_of = dict(tf_topics(bag))
            # the shipped model for this rig, as hd_map_node chooses it
            ckpt = Path(checkpoint) if checkpoint else shipped_checkpoint(len(cams))
            if not ckpt.exists():
                raise CheckpointError(
                    f"{ckpt}: checkpoint not found (no shipped model; pass --checkpoint, e.g. OUT/model.pt "
                    "of gs-mapping hd-train)"
                )
            predictor = Predictor.from_checkpoint(
                ckpt,
                device=device,
                score_threshold=score_threshold,
                fit=fit,
                antialias=antialias,
                region=region,
            )
            tf = TFBuffer(cache_time_s=None)
            # a bad transform is refused as tf2 refuses it, the others kept (--strict: an error)
            recorded_tf = RecordedTF(tf, log, f"{bag_path}: ", strict)
            # each camera's recent CameraInfos by stamp: an image takes the one of its stamp (logged
            # just after it), as image_transport's CameraSubscriber pairs them
            infos = {_info_topic(c): CameraInfoHistory() for c in cams}
            newest_image: dict[str, int] = {}  # camera → newest image stamp read (its CameraInfo is late)
            bad_infos: dict[str, int] = {}  # CameraInfo topic → messages refused (skipped)
            # cameras grouped as hd_map_node groups them (free-running cameras are ms apart)
            sync = ApproximateTimeSynchronizer(cams, SYNC_QUEUE, sync_slop_s) if len(cams) > 1 else None
            # grouped frames waiting for a CameraInfo or TF, oldest first
            waiting: list[tuple[int, dict]] = []
            # why the frames still waiting cannot be predicted yet, by cause ("info", "tf"): made anew at
            # each pass over them (a CameraInfo that arrived later is no longer a reason), and why_dropped
            # keeps the reasons of the frames given up for MAX_WAITING
            why_waiting: dict[str, str] = {}
            why_dropped: dict[str, str] = {}
            gt_by_stamp: dict[int, dict] = {}
            gt_stamps: list[int] = []  # sorted
            has_gt = bag.has_topic(GT_TOPIC)
            map_gt: dict | None = None  # MAP_TOPIC's document (read when there is a GT to replace)
            read_map = has_gt and bag.has_topic(MAP_TOPIC)
            camera_of = {_info_topic(c): c for c in cams}  # (its CameraInfo's camera: raw or rectified)
            # a camera whose driver does not stamp is timed by log time, as map times it (docs/inputs.md)
            clock = Unstamped(logged_clock_topics(bag, [t for c in cams for t in (c, _info_topic(c))]))
            topics = (
                cams
                + [_info_topic(c) for c in cams]
                + list(tf_of)
                + ([GT_TOPIC] if has_gt else [])
                + ([MAP_TOPIC] if read_map else [])
            )
            topics = [t for t in topics if bag.has_topic(t)]
            n_img = sum(bag.topic(c).count for c in cams) // len(cams)
            bar = progress_report(
                total=min(n_img, max_frames or n_img), desc="hd-predict", unit="frame", enabled=progress
            )
            enough_at = None  # log time when max_frames were predicted: GT logged just after still counts
            undecodable: dict[str, int] = {}  # camera topic → images that could not be decoded (skipped)
            # why the model refused a frame's inputs (an image whose size disagrees with its
            # CameraInfo, ...), numbers masked → (frames, the first such line): skipped, said once a reason
            refused: dict[str, list] = {}
            dropped_waiting = 0

            def enough() -> bool:
                return bool(max_frames) and len(results) >= max_frames

            def inputs(frame: dict, final: bool):
                """The frame's images, CameraInfos and base ← camera transforms; None (and why) while a
                CameraInfo or a transform has not arrived yet (``final``: the bag ended)."""
                cis, Ts = [], []
                for c in cams:
                    _, fid, stamp = frame[c]
                    info = infos[_info_topic(c)].for_image(stamp, final or newest_image[c] > stamp)
                    if info is None:
                        refused = (
                            f" ({bad_infos[_info_topic(c)]} refused)" if _info_topic(c) in bad_infos else ""
                        )
                        why_waiting["info"] = (
                            f"no valid {_info_topic(c)} message before the bag ended{refused}"
                        )
                        return None
                    try:
                        Ts.append(tf.lookup(base_frame, fid, stamp).matrix())
                    except TFError as exc:
                        why_waiting["tf"] = f"no transform {base_frame} <- {fid} (camera {c}): {exc}"
                        return None
                    cis.append(info)
                return cis, Ts

            def decoded(frame: dict) -> list | None:
                """The frame's images as RGB (any driver encoding, or a CompressedImage jpeg/png; a
                distorted camera's raw image: the Predictor makes it pinhole); None where one does not
                decode (skipped and counted, said once a camera; --strict: an error)."""
                ims = []
                for c in cams:
                    msg, _, stamp = frame[c]
                    try:
                        ims.append(color_to_rgb(msg))
                    except GsMappingError as exc:
                        if strict:
                            raise HDInputError(f"{bag_path}: camera {c}: {exc}") from None
                        undecodable[c] = undecodable.get(c, 0) + 1
                        if undecodable[c] == 1:  # (as the nodes: a bad frame is skipped, once said)
                            log.warning(
                                f"{bag_path}: camera {c}: image at {stamp} ns skipped (and any like it): {exc}"
                            )
                        return None
                return ims

            def predict_waiting(final: bool = False) -> None:
                """Predict every waiting frame whose CameraInfos and transforms are there (a static
                transform logged after the first images, a /tf that catches up with a frame, the
                CameraInfo logged just after its image)."""
                keep = []
                why_waiting.clear()
                for stamp, frame in waiting:
                    got = None if enough() else inputs(frame, final)
                    if got is None:
                        keep.append((stamp, frame))
                        continue
                    ims = decoded(frame)
                    if ims is None:
                        continue
                    try:
                        els = predictor.predict(ims, *got)
                    except HDInputError as exc:  # (one bad frame must not end a long drive's run)
                        # (the Predictor numbers the cameras: named by their topics here)
                        said = re.sub(r"^camera (\d+):", lambda m: f"camera {cams[int(m[1])]}:", str(exc))
                        why = f"{bag_path}: frame at {stamp} ns: {said}"
                        if strict:
                            raise HDInputError(why) from None
                        seen = refused.setdefault(re.sub(r"\d+", "#", str(exc)), [0, why])
                        seen[0] += 1
                        if seen[0] == 1:
                            log.warning(f"{why}: skipped (and any like it)")
                        continue
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
                waiting[:] = keep

            def document(interrupted: bool = False) -> tuple[dict, int]:
                """The output: the frames predicted, in stamp order, with their GT where the bag has
                it; and how many have none. ``interrupted``: the frames so far, marked so."""
                done = sorted(results, key=lambda r: r["stamp_ns"])
                # the points' convention, which hd-eval reads (it scores MapTR's x-right frame otherwise)
                doc: dict = {"frame": "rep103", "region": " and ".join(sorted(used)), "results": done}
                if interrupted:
                    doc["interrupted"] = True
                no_gt = 0
                if has_gt:
                    # GT paired by header stamp (the nearest within the sync slop); a frame without one is
                    # scored against an empty map, so say so
                    gts = [_gt_for(r["stamp_ns"], gt_by_stamp, gt_stamps, slop_ns) for r in done]
                    if map_gt is not None:
                        gts = _gt_over_patch(map_gt, done, gts, tf, base_frame, predictor.cfg)
                    else:
                        _warn_short_gt(bag_path, gts, predictor.cfg)
                    no_gt = sum(g is None for g in gts)
                    if no_gt:
                        log.warning(
                            f"{bag_path}: {no_gt} of {len(done)} predicted frame(s) have no {GT_TOPIC} message at their stamp (empty GT used)",
                        )
                    doc["GTs"] = [g if g is not None else {"vectors": []} for g in gts]
                return doc, no_gt

            bad_gt = 0
            for topic, t_log, msg in bag.messages(topics):
                if enough_at is not None:  # enough frames: read on only for their GT, for a while
                    if t_log > enough_at + GT_GRACE_NS:
                        break
                    if topic != GT_TOPIC:
                        continue
                if topic in tf_of:
                    recorded_tf.add(topic, msg, tf_of[topic])
                elif topic == MAP_TOPIC:
                    try:
                        map_gt = _map_elements(M.string_message_to_json(msg))
                    except MessageError as exc:  # (then the per-frame GT, as recorded)
                        log.warning(f"{MAP_TOPIC} at {t_log} ns skipped: {exc}")
                elif topic == GT_TOPIC:
                    try:
                        stamp, vectors = _ground_truth(M.string_message_to_json(msg))
                    except MessageError as exc:  # a bad message is skipped, as any undecodable one
                        bad_gt += 1
                        if bad_gt == 1:
                            log.warning(f"{GT_TOPIC} at {t_log} ns skipped (and any like it): {exc}")
                        continue
                    gt_by_stamp[stamp] = {"vectors": vectors}
                    bisect.insort(gt_stamps, stamp)
                    if enough_at is not None and all(
                        _gt_for(r["stamp_ns"], gt_by_stamp, gt_stamps, slop_ns) for r in results
                    ):
                        break  # (every predicted frame has its GT: nothing more to read)
                    continue
                elif topic.endswith("camera_info"):
                    try:  # (an uncalibrated camera's all-zero K: skipped, said once, as image_proc does)
                        info = for_images_on(M.camera_info_to_intrinsics(msg), camera_of[topic])
                        check_intrinsics(info.K, f"{M.CAMERA_INFO} (frame {info.frame_id!r})")
                    except (MessageError, HDInputError) as exc:
                        if strict:
                            raise HDInputError(f"{bag_path}: {topic}: {exc}") from None
                        bad_infos[topic] = bad_infos.get(topic, 0) + 1
                        if bad_infos[topic] == 1:
                            log.warning(f"{bag_path}: {topic} at {t_log} ns skipped (and any like it): {exc}")
                    else:
                        if (info_stamp := clock.stamp(topic, msg, t_log)) is not None:
                            infos[topic].add(info_stamp, info)
                else:
                    _, frame_id = M.header_fields(msg)
                    if (stamp := clock.stamp(topic, msg, t_log)) is None:  # (a zero among stamped ones)
                        continue
                    newest_image[topic] = max(stamp, newest_image.get(topic, stamp))
                    item = (msg, frame_id, stamp)  # (decoded once grouped and placed: decoded())
                    group = [item] if sync is None else sync.add(topic, stamp, item)
                    if group is not None:
                        # the frame's stamp: the first camera's (hd_map_node's, and the GT's in the world)
                        waiting.append((group[0][2], dict(zip(cams, group, strict=True))))
                        if len(waiting) > MAX_WAITING:  # (a transform that never comes: memory stays bounded)
                            waiting.pop(0)
                            dropped_waiting += 1
                            why_dropped.update(why_waiting)
                predict_waiting()
                if enough() and enough_at is None:
                    enough_at = t_log
                    if not has_gt or all(
                        _gt_for(r["stamp_ns"], gt_by_stamp, gt_stamps, slop_ns) for r in results
                    ):
                        break  # (no GT to wait for, or it came first)
            else:  # the bag ended: a frame still waiting for its own CameraInfo takes the latest
                predict_waiting(final=True)
            bar.close()
            recorded_tf.log_total()
            clock.say()
        results.sort(key=lambda r: r["stamp_ns"])
        skipped = 0 if enough() else len(waiting) + dropped_waiting
        unmatched = 0 if sync is None or enough() else sync.dropped + sync.pending()
        reasons = {**why_dropped, **why_waiting}
        if skipped and results:
            log.warning(f"{bag_path}: {skipped} frame(s) skipped: {'; '.join(reasons.values())}")
        if unmatched:
            log.warning(
                f"{bag_path}: {unmatched} image(s) without a partner on every camera within "
                f"{sync_slop_s} s (--sync-slop) skipped"
            )
        bad_images = sum(undecodable.values())
        n_refused = sum(n for n, _ in refused.values())
        # camera messages that did not deserialise (the reader skipped them, said once a topic)
        bad_cams = sum(k for name, k in bag.bad_messages.items() if name.split(" (")[0] in cams)
        if results and bad_cams + bad_images + n_refused > 1:  # (each reason was said at its first)
            log.warning(
                f"{bag_path}: {bad_cams + bad_images + n_refused} frame(s) skipped in all for camera "
                "messages or images that do not decode or inputs the model refuses"
            )
        if not results:  # an empty prediction file would read as "no lanes anywhere"
            bad = sum(bag.bad_messages.values())
            if skipped:
                why = "; ".join(reasons.values())
                if "tf" in reasons:
                    why += (
                        f" (--base-frame {base_frame}: the vehicle frame the cameras are mounted on, in TF)"
                    )
            elif n_refused:
                why = f"every frame's input was refused ({n_refused}), e.g. {next(iter(refused.values()))[1]}"
            elif bad or bad_images:
                names = sorted({*bag.bad_messages, *undecodable})
                why = f"{bad + bad_images} message(s) could not be decoded ({', '.join(names)})"
            else:
                why = f"no stamp had an image from every camera ({', '.join(cams)}) within {sync_slop_s} s"
            raise HDInputError(f"{bag_path}: no frame predicted: {why}")
        if not any(r["region"] for r in results):
            raise HDInputError(
                f"{bag_path}: no frame's cameras see the ground (z = 0 of --base-frame {base_frame}): the "
                "base frame must be the vehicle's (x forward, y left, z up) with the ground at z = 0, not "
                "a camera's optical frame"
            )
        doc, no_gt = document()
        region = doc["region"]  # what the frames were clipped to (each carries its own)
        write_text(out, json.dumps(doc), overwrite=overwrite, inputs=[bag_path, ckpt])
    except (KeyboardInterrupt, Terminated):
        if results and document is not None:
            _rescue_predictions(document, len(results), out)
        raise
    return {
        "out": str(out),
        "frames": len(results),
        "cameras": cams,
        "with_gt": has_gt,
        "checkpoint": str(ckpt),
        "region": region,
        "fit": fit,
        "antialias": bool(antialias),
        "skipped_frames": skipped,
        "unmatched_images": unmatched,
        "frames_without_gt": no_gt,
        # skipped input messages ("topic (type)" → count), undecodable images among them
        "undecodable": {
            **bag.bad_messages,
            **{f"{t} (image)": k for t, k in undecodable.items()},
            **{f"{t} (CameraInfo)": k for t, k in bad_infos.items()},
        },
        "refused_frames": n_refused,  # frames whose inputs the model refused (skipped)
    }


def _rescue_predictions(document, n: int, out: Path) -> None:
    """Ctrl-C, SIGTERM or SIGHUP: the frames predicted so far (``document(interrupted=True)``) are
    saved to the temp directory and named in one line; the interrupt goes on (exit 130 / 143 / 129).
    Not at ``out``: an interrupted run leaves no output that looks complete (as ``map``)."""
    from gs_mapping.output_files import rescue, write_text

    try:
        doc = document(interrupted=True)[0]
        path = rescue(
            "gs-mapping-rescued-predictions-",
            ".json",
            lambda p: write_text(p, json.dumps(doc), overwrite=True),
        )
    except GsMappingError as exc:
        log.warning(f"interrupted: the {n} frame(s) predicted so far could not be saved ({exc})")
        return
    log.warning(
        f"interrupted: the {n} frame(s) predicted so far were saved to {path} (nothing written to {out})"
    )


# a map frame's coordinates lie within this (metres): Earth-fixed frames reach ~1e7 (UTM northing,
# ECEF); past it a point is wrong units or garbage, and cutting lines of ~1e300 m loses them (GEOS
# has no precision left for a 60 m window)
MAX_MAP_COORD = 1.0e9


def _map_elements(doc) -> dict:
    """``{"frame_id", "elements"}`` of MAP_TOPIC's JSON (the world's layout), or MessageError."""
    from gs_mapping.world.roads import CLASS_NAMES, PED_CROSSING, MapElement

    try:
        elements = []
        for i, v in enumerate(doc["vectors"]):
            cls, pts = int(v["type"]), np.asarray(v["pts"], float)
            # what clip_elements can cut: a known class, finite (N, 2) points, a line of two points
            # or more, a crossing's ring of three or more
            least = 3 if cls == PED_CROSSING else 2
            if cls not in CLASS_NAMES or pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < least:
                raise ValueError(f"vector {i}: type {cls} with points of shape {pts.shape}")
            if not np.isfinite(pts).all():
                raise ValueError(f"vector {i}: a point is not finite")
            if np.abs(pts).max() > MAX_MAP_COORD:
                raise ValueError(f"vector {i}: a point beyond ±{MAX_MAP_COORD:g} m")
            elements.append(MapElement(cls, pts))
        return {"frame_id": str(doc.get("frame_id", "map")), "elements": elements}
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise MessageError(f"{MAP_TOPIC}: not a map of vectors ({type(exc).__name__}: {exc})") from None


def _gt_over_patch(map_gt: dict, results: list, gts: list, tf, base_frame: str, model_cfg) -> list:
    """Each frame's GT cut from the whole map over the model's patch (x_range, y_range), as training
    takes it: the bag's per-frame GT covers the patch it was recorded with (``gs-mapping world
    --bev-range``, 30 × 15 m by default), so a model of a longer patch had its true lanes beyond it
    scored as false positives. A frame from before a late localisation's first ``map -> odom`` is
    posed through that fix, as the mapper poses it (:func:`~gs_mapping.tf.lookup_in_map`). A frame
    whose map pose is not in TF, or whose cut fails (a crossing ring that crosses itself: shapely
    refuses to intersect it), keeps the recorded GT."""
    from shapely.errors import GEOSException

    from gs_mapping.errors import TFError
    from gs_mapping.tf import lookup_in_map
    from gs_mapping.world.roads import clip_elements

    (x0, x1), (y0, y1) = model_cfg.x_range, model_cfg.y_range
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    shift = np.eye(4)
    shift[:2, 3] = -centre  # (clip_elements cuts a window centred on the origin)
    out = []
    for r, gt in zip(results, gts, strict=True):
        try:
            T_map_base = lookup_in_map(tf, map_gt["frame_id"], base_frame, r["stamp_ns"])
        except TFError:
            out.append(gt)
            continue
        try:
            els = clip_elements(
                map_gt["elements"], shift @ np.linalg.inv(T_map_base), (x1 - x0) / 2, (y1 - y0) / 2
            )
        except (GEOSException, ValueError) as exc:
            log.warning(f"{MAP_TOPIC}: not cut at {r['stamp_ns']} ns ({exc}): its recorded GT is kept")
            out.append(gt)
            continue
        out.append(
            {"vectors": [{"pts": (e.pts + centre).round(4).tolist(), "type": int(e.cls)} for e in els]}
        )
    return out


# the recorded GT reaches at least this much less far ahead than the model's patch: its lanes there
# are scored as false positives (a road's lines run to the patch's front edge in almost every frame)
SHORT_GT_M = 2.0


def _warn_short_gt(bag_path, gts: list, model_cfg) -> None:
    """Without the whole map (MAP_TOPIC) the recorded per-frame GT is all there is, cut to the patch
    it was recorded with: say so when it stops short ahead of the model's patch (a long-range model
    on a bag of ``gs-mapping world``'s default 30 m, or another tool's GT without the whole map)."""
    ahead = []  # (the GT is checked by hd-eval, which reads it: here what is not a point is passed over)
    for g in gts:
        for v in g["vectors"] if g else ():
            try:
                x = np.asarray(v["pts"], float)[:, 0]
            except (TypeError, KeyError, ValueError, IndexError):
                continue
            ahead += x[np.isfinite(x)].tolist()
    reach, patch = max(ahead, default=None), model_cfg.x_range[1]
    if reach is not None and reach < patch - SHORT_GT_M:
        log.warning(
            f"{bag_path}: its {GT_TOPIC} reaches {reach:.1f} m ahead at most, the model's patch "
            f"{patch:g} m, and there is no {MAP_TOPIC} to cut the GT over the patch: lanes predicted "
            f"beyond {reach:.0f} m will be scored as false positives by hd-eval"
        )


def _gt_for(stamp: int, gt_by_stamp: dict, stamps: list[int], slop_ns: int) -> dict | None:
    """The ground truth of a frame: at its stamp, else the nearest within ``slop_ns`` (``stamps``:
    the GT stamps, sorted)."""
    if stamp in gt_by_stamp:
        return gt_by_stamp[stamp]
    i = bisect.bisect_left(stamps, stamp)
    near = min(stamps[max(i - 1, 0) : i + 1], key=lambda s: abs(s - stamp), default=None)
    return gt_by_stamp[near] if near is not None and abs(near - stamp) <= slop_ns else None


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
