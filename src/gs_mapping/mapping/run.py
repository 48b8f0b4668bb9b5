"""Map a whole bag: replay frames into the mapper, hold out every n-th, evaluate, write outputs.

Shared by ``gs-mapping map`` and ``bench/mapping.py``. Outputs in ``out_dir``: ``map.ply`` (standard
3DGS PLY), ``metrics.json`` and ``heldout/*.png`` (rendered | real, side by side).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import GsMappingError, OutputError, Terminated
from ..output_files import check_output, output_directory, write_text
from .calibration import estimate_color_calibration
from .frames import Frame, FrameStats, adapt_to_cloud, read_frames
from .keyframes import INVALID_DEPTH
from .levels import level_fractions
from .mapper import IncrementalMapper
from .mapper_config import MapperConfig

log = logging.getLogger(__name__)


def _nanmean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _json_safe(x):
    """NaN/inf (e.g. no held-out view) → null, so metrics.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def save_side_by_side(path: Path, rendered: np.ndarray, real: np.ndarray) -> None:
    from PIL import Image

    img = np.concatenate([rendered, real], axis=1)
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def check_bag(bag_path, cfg: MapperConfig, cloud_topic: str = "") -> int:
    """Open the bag and check its topics (one error naming what is missing, of the wrong type or
    the same); the colour count."""
    from ..bag import BagReader
    from .frames import check_topics

    with BagReader(bag_path) as bag:
        check_topics(bag, cfg.topics, cloud_topic)
        return bag.topic(cfg.topics.color).count


MAP_OUTPUTS = ("map.ply", "metrics.json", "heldout")  # what a map run's directory holds


class HeldOutViews:
    """The held-out frames evaluated at the end, in memory bounded however long the drive: at most
    ``limit`` (``mapper.holdout_views``; 0: none), evenly spaced over those held out (every 2**k-th:
    when one more would exceed the limit, every other one goes and the spacing doubles). Every
    held-out frame is still withheld from the mapper. A colour image is kept as its 8 bits (frames
    are uint8 / 255: given back bit-identical), depth as it is."""

    def __init__(self, limit: int = MapperConfig.holdout_views):
        self.limit, self.stride, self.seen = limit, 1, 0
        self._kept: list[Frame] = []

    def add(self, frame: Frame) -> None:
        self.seen += 1
        if not self.limit or (self.seen - 1) % self.stride:
            return
        u8 = np.rint(frame.rgb * 255).astype(np.uint8)
        if np.array_equal(u8.astype(np.float32) / 255.0, frame.rgb):  # (else kept as float32)
            frame = dataclasses.replace(frame, rgb=u8)
        self._kept.append(frame)
        if len(self._kept) > self.limit:
            self._kept = self._kept[::2]
            self.stride *= 2

    def __len__(self) -> int:
        return len(self._kept)

    def frames(self) -> Iterator[Frame]:
        """The kept frames in order, each as it was added (one float32 copy at a time)."""
        for f in self._kept:
            yield (
                dataclasses.replace(f, rgb=f.rgb.astype(np.float32) / 255.0) if f.rgb.dtype == np.uint8 else f
            )


@contextlib.contextmanager
def run_outputs(out: Path, overwrite: bool, bag_path, gmap):
    """A temp directory for the run's outputs, swapped onto ``out`` whole when the block succeeds.

    Where they cannot be written (full disk, read-only, removed directory) the map is not lost: it is
    saved to the system's temp directory when possible and the one-line error says where."""
    try:
        with output_directory(out, overwrite=overwrite, inputs=[bag_path], allowed=MAP_OUTPUTS) as tmp:
            yield tmp
    except OutputError as exc:
        raise OutputError(f"{exc}; {_rescue_map(gmap)}") from None


def _rescue_map(gmap, what: str = "the map") -> str:
    """Save ``gmap`` to a new file in the temp directory; the sentence saying where (or why not)."""
    from ..output_files import rescue
    from ..ply import save_ply

    try:
        # (save_ply writes over the empty file made for it)
        path = rescue(
            "gs-mapping-rescued-map-", ".ply", lambda p: save_ply(gmap, p, overwrite=True, keep_ids=True)
        )
    except GsMappingError as exc:
        return f"{what} could not be saved elsewhere either ({exc})"
    return f"{what} was saved to {path} instead"


@contextlib.contextmanager
def _rescued_on_interrupt(mapper: IncrementalMapper, out: Path):
    """Ctrl-C, SIGTERM or SIGHUP during a run: the map made so far (the keyframes synced into the
    shared map) is saved to the temp directory, named in one line, and the interrupt goes on (exit
    130 / 143 / 129). Not into ``out``: an interrupted run leaves no output that looks complete."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as exc:
        if mapper.stats.keyframes and len(mapper.gmap):
            what = f"the map made so far ({mapper.stats.keyframes} keyframes, {len(mapper.gmap)} Gaussians)"
            word = exc.word if isinstance(exc, Terminated) else "interrupted"  # (as the last line says)
            log.warning(f"{word}: {_rescue_map(mapper.gmap, what)} (nothing written to {out})")
        raise


def map_bag(
    bag_path,
    out_dir,
    cfg: MapperConfig | None = None,
    device: str | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    write_pngs: bool = True,
    rasterize=None,
    cloud_topic: str = "",
    overwrite: bool = False,
    strict: bool = False,
) -> dict:
    """Build a map from ``bag_path``; returns (and writes) the metrics dict.

    Outputs (``map.ply``, ``metrics.json``, ``heldout/``) are built in a temp directory beside
    ``out_dir`` and swapped in whole at the end, so an interrupted run leaves the old outputs or the
    complete new ones; an existing ``out_dir`` is replaced only with ``overwrite``, never the bag.
    ``strict``: an undecodable message in the bag is an error (else counted, skipped). ``cloud_topic``: a LiDAR
    PointCloud2 gives the geometry instead of ``cfg.topics.depth``."""
    from ..ply import save_ply
    from ..progress import progress as progress_report

    cfg = cfg or MapperConfig()
    if cloud_topic:
        adapt_to_cloud(cfg)
    total = check_bag(bag_path, cfg, cloud_topic)  # fail on a bad bag before anything is created
    out = check_output(out_dir, overwrite=overwrite, inputs=[bag_path], directory=True, allowed=MAP_OUTPUTS)
    mapper = IncrementalMapper(cfg, device, rasterize=rasterize)
    fstats = FrameStats(strict=strict)
    heldout = HeldOutViews(cfg.holdout_views)
    n = cfg.holdout_every
    if max_frames is not None:
        total = min(total, max_frames)
    with _rescued_on_interrupt(mapper, out):
        t0, c0 = time.perf_counter(), time.process_time()
        bar = progress_report(total=total, unit="frame", desc="mapping", enabled=progress, leave=False)
        calibration = None
        pending = []  # mapping frames buffered until the colour camera is calibrated
        used = 0  # frames read (mapped, held out or pending), for max_frames

        def feed(frame):
            decision = mapper.add_frame(calibration.register(frame) if calibration else frame)
            if decision.reason.startswith(INVALID_DEPTH) and mapper.stats.skipped_invalid_depth == 1:
                log.warning(
                    f"frame at {frame.stamp_ns} ns: {decision.reason}: skipped (such frames are counted)"
                )
            bar.set_postfix(kf=mapper.stats.keyframes, gs=len(mapper.gmap))
            bar.update(1)

        try:
            for frame in read_frames(
                bag_path, cfg.topics, fstats, cloud_topic=cloud_topic, deskew=cfg.deskew
            ):
                if n and frame.index % n == n - 1:
                    heldout.add(frame)  # never shown to the mapper
                    bar.update(1)
                elif cfg.calibrate_color and calibration is None:
                    pending.append(frame)
                    if len(pending) >= cfg.calibration_frames:
                        calibration = estimate_color_calibration(pending)
                        for f in pending:
                            feed(f)
                        pending = []
                else:
                    feed(frame)
                used += 1
                if max_frames is not None and used >= max_frames:
                    # (the frames read_frames gave: one skipped for no pose or bad data does not count,
                    # nor is a usable one read past the limit and dropped)
                    break
            if pending:
                calibration = estimate_color_calibration(pending)
                for f in pending:
                    feed(f)
        finally:
            bar.close()
        # the final refinement (optim.refine_iterations) can take as long as the frames did: its own
        # report, so a run does not sit silent at "100%, ETA 00:00" for minutes
        steps = mapper.refine_steps()
        with progress_report(
            total=steps, unit="step", desc="refining", enabled=progress and steps > 0, leave=False
        ) as rb:
            mapper.finish(on_step=lambda: rb.update(1))
        map_seconds = time.perf_counter() - t0
        map_cpu_seconds = time.process_time() - c0
        if mapper.stats.keyframes == 0:
            first = fstats.reasons[0] if fstats.reasons else mapper.stats.invalid_depth_reason
            why = f"; first: {first}" if first else ""
            raise GsMappingError(
                f"{bag_path}: no usable frame to map ({fstats.pairs} colour/depth pairs, "
                f"{fstats.skipped + mapper.stats.skipped_invalid_depth} skipped{why})"
            )
        with run_outputs(out, overwrite, bag_path, mapper.gmap) as out:
            save_ply(
                mapper.gmap, out / "map.ply", keep_ids=True
            )  # (the codec layers a snapshot by its levels)
            per_view = []
            if write_pngs and heldout:
                (out / "heldout").mkdir(exist_ok=True)
            for f in heldout.frames():
                if calibration is not None:
                    f = calibration.register(f)
                m = mapper.evaluate(f)
                if write_pngs:
                    save_side_by_side(out / "heldout" / f"{f.index:06d}.png", m["rendered"], f.rgb)
                per_view.append({k: v for k, v in m.items() if k != "rendered"} | {"index": f.index})
            ks = mapper.stats.keyframe_seconds
            metrics = {
                "bag": str(bag_path),
                "topics": {
                    "color": cfg.topics.color,
                    "depth": "" if cloud_topic else cfg.topics.depth,
                    "camera_info": cfg.topics.camera_info,
                    "depth_camera_info": "" if cloud_topic else cfg.topics.depth_info(),
                    "cloud": cloud_topic,
                },
                "device": mapper.device,
                "heldout": {
                    "views": len(per_view),
                    # withheld from the mapper; at most cfg.holdout_views of them evaluated, evenly spaced
                    "held_out_frames": heldout.seen,
                    "psnr": _nanmean(v["psnr"] for v in per_view),
                    "ssim": _nanmean(v["ssim"] for v in per_view),
                    "depth_l1_m": _nanmean(v["depth_l1_m"] for v in per_view),
                    "coverage": _nanmean(v["coverage"] for v in per_view),
                    # progressive prefixes (levels <= l; the last = the whole map), when the map has levels
                    "psnr_levels": [
                        _nanmean(v["psnr_levels"][lvl] for v in per_view)
                        for lvl in range(len(per_view[0]["psnr_levels"]))
                    ]
                    if per_view and "psnr_levels" in per_view[0]
                    else None,
                    "level_fractions": level_fractions(mapper.gmap.levels, mapper.cfg.levels.count),
                    "per_view": per_view,
                },
                "frames": fstats.pairs,
                "mapping_frames": mapper.stats.frames,
                "keyframes": mapper.stats.keyframes,
                "skipped": fstats.skipped + mapper.stats.skipped_invalid_depth,
                "undecodable_messages": dict(fstats.bad_messages),  # skipped; --strict makes them errors
                "duplicate_messages": fstats.duplicates,  # the stamp of the one before on the topic: skipped
                "skipped_detail": {
                    "no_pose": fstats.no_pose,
                    "no_camera_info": fstats.no_camera_info,
                    "invalid_depth": fstats.invalid_depth + mapper.stats.skipped_invalid_depth,
                    "invalid_color": fstats.invalid_color,
                },
                "gaussians": len(mapper.gmap),
                "seconds_per_keyframe_p50": float(np.median(ks)) if ks else math.nan,
                "seconds_per_keyframe_max": float(np.max(ks)) if ks else math.nan,
                "cpu_seconds_per_keyframe_p50": float(np.median(mapper.stats.keyframe_cpu_seconds))
                if ks
                else math.nan,
                "seconds_mapping": map_seconds,
                "cpu_seconds_mapping": map_cpu_seconds,
                "seconds_refine": mapper.stats.refine_seconds,
                "color_calibration": None
                if calibration is None
                else {
                    "focal_scale": calibration.focal_scale,
                    "dcx": calibration.dcx,
                    "dcy": calibration.dcy,
                    "t_depth_color": list(calibration.t_depth_color),
                    "photometric_inconsistency": [calibration.cost_before, calibration.cost_after],
                },
                "optimisation": {
                    "steps": mapper.stats.steps,
                    "rejected_steps": mapper.stats.rejected_steps,
                    "seeded": mapper.stats.seeded,
                    "cloned": mapper.stats.cloned,
                    "split": mapper.stats.split,
                    "pruned": mapper.stats.pruned,
                    "capped": mapper.stats.capped,
                },
            }
            write_text(
                out / "metrics.json", json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n"
            )
        return metrics
