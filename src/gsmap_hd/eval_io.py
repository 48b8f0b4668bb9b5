"""Load and validate HD-map evaluation files (the MapTR submission format).

A file is ``{"results": [frame, ...], "GTs": [frame, ...]}``; frames correspond by position (as in
MapTR, whose prediction and GT files are zipped in order). A frame is
``{"vectors": [{"pts": [[x, y], ...], "type": 0|1|2, "confidence_level": s}, ...]}`` in the ego BEV
frame in metres — by default MapTR's convention, x to the right (±15 m) and y forward (±30 m); see
``gsmap_hd.metrics.FRAMES`` for ROS REP-103 input. GT vectors need no ``confidence_level``. Other keys (``sample_token``, ``pts_num``,
``cls_name``, ...) are allowed and ignored, except that when both frames at one position carry a
``sample_token`` they must agree.

Everything wrong raises :class:`~gsmap_hd.errors.HDMapError` naming the file, list, frame index,
vector index and key. Predictions with fewer than two points are kept here and skipped by the
metrics, as both references do; a GT vector needs at least two points.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gs_mapping.errors import GsMappingError
from gs_mapping.input_files import read_bytes

from .errors import HDMapError

CLASSES = ("divider", "ped_crossing", "boundary")
#: Coordinates beyond this (metres) are rejected as certainly wrong units: they would also overflow
#: the fixed-point arithmetic of the OpenCV-exact rasteriser.
MAX_ABS_COORD = 1.0e5


@dataclass
class Vector:
    pts: np.ndarray  # (N, 2) float64
    cls: int
    score: float  # 1.0 for ground truth


Frame = list  # list[Vector]


def _is_number(v) -> bool:
    """A JSON number a float holds (an integer of 400 digits is not one: it would overflow)."""
    return isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 1 << 63)


def parse_vector(obj, where: str, need_score: bool) -> Vector:
    if not isinstance(obj, dict):
        raise HDMapError(f"{where}: a vector must be an object, got {type(obj).__name__}")
    for key in ("pts", "type") + (("confidence_level",) if need_score else ()):
        if key not in obj:
            raise HDMapError(f"{where}: missing key {key!r}")
    cls = obj["type"]
    if not (_is_number(cls) and float(cls).is_integer() and int(cls) in range(len(CLASSES))):
        raise HDMapError(
            f"{where}.type: unknown class {cls!r} (expected 0 divider, 1 ped_crossing, 2 boundary)"
        )
    raw = obj["pts"]
    if not isinstance(raw, list):
        raise HDMapError(f"{where}.pts: expected a list of [x, y], got {type(raw).__name__}")
    for j, p in enumerate(raw):
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p)):
            raise HDMapError(f"{where}.pts[{j}]: expected [x, y] numbers, got {p!r}")
    pts = np.array(raw, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        j = int(np.where(~np.isfinite(pts).all(axis=1))[0][0])
        raise HDMapError(f"{where}.pts[{j}]: not finite: {raw[j]!r}")
    if (np.abs(pts) > MAX_ABS_COORD).any():
        j = int(np.where((np.abs(pts) > MAX_ABS_COORD).any(axis=1))[0][0])
        raise HDMapError(f"{where}.pts[{j}]: coordinate beyond ±{MAX_ABS_COORD:g} m: {raw[j]!r}")
    if not need_score and len(pts) < 2:
        raise HDMapError(f"{where}.pts: a ground-truth vector needs at least 2 points, got {len(pts)}")
    score = 1.0
    if need_score:
        s = obj["confidence_level"]
        if not _is_number(s) or not math.isfinite(s):
            raise HDMapError(f"{where}.confidence_level: expected a finite number, got {s!r}")
        score = float(s)
    return Vector(pts, int(cls), score)


def parse_frames(frames, name: str, need_score: bool) -> list:
    if not isinstance(frames, list):
        raise HDMapError(f"{name}: expected a list of frames, got {type(frames).__name__}")
    out = []
    for i, fr in enumerate(frames):
        where = f"{name}[{i}]"
        if not isinstance(fr, dict):
            raise HDMapError(f"{where}: a frame must be an object, got {type(fr).__name__}")
        if "vectors" not in fr:
            raise HDMapError(f"{where}: missing key 'vectors'")
        vecs = fr["vectors"]
        if not isinstance(vecs, list):
            raise HDMapError(f"{where}.vectors: expected a list, got {type(vecs).__name__}")
        out.append([parse_vector(v, f"{where}.vectors[{j}]", need_score) for j, v in enumerate(vecs)])
    return out


# hd-predict writes predictions alone for a bag without ground truth (a real recording)
_NO_GT = (
    ": no ground truth to score against (hd-predict writes 'GTs' only from a bag with "
    "/ground_truth/lanes_json, as 'gs-mapping world' records it)"
)


def parse_submission(doc, source: str = "input") -> tuple[list, list]:
    """Validate a loaded ``{"results", "GTs"}`` document → (results, gts) lists of frames."""
    if not isinstance(doc, dict):
        raise HDMapError(f"{source}: expected a JSON object with 'results' and 'GTs'")
    for key in ("results", "GTs"):
        if key not in doc:
            raise HDMapError(
                f"{source}: missing key {key!r}" + (_NO_GT if key == "GTs" and "results" in doc else "")
            )
    results = parse_frames(doc["results"], f"{source}: results", need_score=True)
    gts = parse_frames(doc["GTs"], f"{source}: GTs", need_score=False)
    if len(results) != len(gts):
        raise HDMapError(f"{source}: {len(results)} result frames but {len(gts)} GT frames")
    for i, (r, g) in enumerate(zip(doc["results"], doc["GTs"], strict=False)):
        tr, tg = r.get("sample_token"), g.get("sample_token")
        if tr is not None and tg is not None and tr != tg:
            raise HDMapError(f"{source}: frame {i}: results sample_token {tr!r} != GTs {tg!r}")
    return results, gts


def load_submission(path) -> tuple[list, list]:
    """Read and validate an evaluation JSON file."""
    path = Path(path)
    return parse_submission(read_json(path), str(path))


def read_json(path) -> object:
    """A JSON file's document; HDMapError naming the file for anything that is not JSON text."""
    path = Path(path)
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HDMapError(f"{path}: not UTF-8 text (byte {exc.start}): not an evaluation JSON file") from None
    except GsMappingError as exc:
        raise HDMapError(str(exc)) from None
    except OSError as exc:
        raise HDMapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not text.strip():
        raise HDMapError(f"{path}: empty file")
    try:
        return json.loads(text)
    except ValueError as exc:  # (JSONDecodeError; and int() of a number beyond 4300 digits)
        raise HDMapError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise HDMapError(f"{path}: JSON nested too deeply") from None
