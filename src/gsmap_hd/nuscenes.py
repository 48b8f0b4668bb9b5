"""nuScenes map ground truth for GSMap, read through ``nuscenes-devkit`` (optional dependency).

For each key-frame sample: the ego pose, the LiDAR-to-ego transform, the cameras' calibration and
the map elements around the car — in our classes and our ``base_link`` convention (REP-103: x
forward, y left; the patch is x ∈ [-30, 30] m, y ∈ [-15, 15] m, see :mod:`gsmap_hd.model_config`), ready
for ``hd-eval`` (``frame.to_eval()``, ``--frame rep103``).

The extraction follows MapTR's nuScenes ground truth (its ``VectorizedLocalMap``), which is what
published numbers are measured against:

* **divider (0)**: ``road_divider`` and ``lane_divider`` lines, each clipped to the patch (a line that
  leaves and re-enters gives several pieces).
* **ped_crossing (1)**: ``ped_crossing`` polygons clipped to the patch and merged where they
  overlap; every ring (exteriors clockwise, holes counter-clockwise) is one closed element — the
  clip edge along the patch border is part of the ring, so rings stay closed.
* **boundary (2)**: the outline of the union of ``road_segment`` and ``lane`` polygons clipped to
  the patch, cut by the patch shrunk by 0.2 m (so the artificial clip edge along the border is not a
  boundary) and re-joined where a ring's start splits one piece in two.

The patch frame is planar: the reference pose's position and its heading (yaw) only, as MapTR. The
reference is the ego vehicle at the LiDAR sweep (``origin="ego"``, nuScenes' ego frame *is*
base_link: x forward, y left, z up, at the rear axle) or, for numbers directly comparable with
MapTR's, the LIDAR_TOP sensor (``origin="lidar"``: MapTR's patch, expressed with x forward / y left;
MapTR's own axes are (x right, y forward) = (-y, x), i.e. hd-eval's default ``--frame maptr``).
Camera extrinsics are given relative to that same planar frame at the LiDAR time (each image's own
ego pose is used, as BEVFormer/MapTR do), so the GT and the cameras agree.

Map geometry is read once per location into spatial indexes; each sample then queries only what
overlaps its patch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gs_mapping.geometry import quat_to_matrix

from .errors import HDDataError

log = logging.getLogger(__name__)

DIVIDER_LAYERS = ("road_divider", "lane_divider")
PED_CROSSING_LAYER = "ped_crossing"
CONTOUR_LAYERS = ("road_segment", "lane")
# MapTR: boundaries are cut by the patch shrunk by this much (the clip edge is not a boundary);
# crossings by the patch grown by it (their clip edge is kept, so the ring stays closed).
PATCH_MARGIN = 0.2
DIVIDER, PED_CROSSING, BOUNDARY = 0, 1, 2
DEVKIT_HINT = (
    "pip install nuscenes-devkit==1.2.0 --no-deps matplotlib descartes pyquaternion "
    "scikit-learn cachetools (the devkit's own pins would downgrade numpy/shapely; it runs "
    "with ours)"
)


class NuScenesError(HDDataError):
    """The nuScenes data (tables, map expansion) is missing or unusable, or the devkit is absent."""


def _devkit():
    """The devkit classes, imported on first use (heavy: matplotlib, OpenCV)."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # the devkit imports pyplot; never open a window
    try:
        from nuscenes.map_expansion.map_api import NuScenesMap
        from nuscenes.nuscenes import NuScenes
    except ImportError as e:
        raise NuScenesError(f"nuScenes support needs nuscenes-devkit ({e}); {DEVKIT_HINT}") from None
    return NuScenes, NuScenesMap


# ---------------------------------------------------------------------------------------------------
# Poses


def pose_matrix(
    translation: Sequence[float], rotation_wxyz: Sequence[float], where: str = "pose"
) -> np.ndarray:
    """nuScenes translation + quaternion (w, x, y, z) → 4x4 T (maps points of the child frame into
    the parent frame)."""
    t = np.asarray(translation, np.float64).reshape(3)
    q = np.asarray(rotation_wxyz, np.float64).reshape(4)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))) or np.linalg.norm(q) < 1e-9:
        raise NuScenesError(
            f"{where}: non-finite or zero pose (translation {t.tolist()}, rotation {q.tolist()})"
        )
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.r_[q[1:], q[0]] / np.linalg.norm(q))
    T[:3, 3] = t
    return T


def heading(T: np.ndarray) -> float:
    """Yaw of a pose's x axis projected on the ground plane (the devkit's ``quaternion_yaw``)."""
    return math.atan2(T[1, 0], T[0, 0])


def planar(T_global_a: np.ndarray, yaw: float) -> np.ndarray:
    """The planar frame at T_global_a's position with heading ``yaw`` (z up)."""
    c, s = math.cos(yaw), math.sin(yaw)
    P = np.eye(4)
    P[:2, :2] = [[c, -s], [s, c]]
    P[:3, 3] = T_global_a[:3, 3]
    return P


# ---------------------------------------------------------------------------------------------------
# Map elements


class MapExtractor:
    """One location's map geometry (global metres) with spatial indexes; ``elements(T)`` gives the
    clipped elements in the patch around the planar pose T_global_ref."""

    def __init__(self, nusc_map, x_range=(-30.0, 30.0), y_range=(-15.0, 15.0)) -> None:
        from shapely import STRtree

        self.x_range, self.y_range = tuple(map(float, x_range)), tuple(map(float, y_range))
        if self.x_range[0] >= self.x_range[1] or self.y_range[0] >= self.y_range[1]:
            raise NuScenesError(f"empty patch x={self.x_range} y={self.y_range}")
        self.map = nusc_map
        name = getattr(nusc_map, "map_name", "?")
        self.dividers = self._geoms(DIVIDER_LAYERS, "line_token", name)
        self.crossings = self._geoms((PED_CROSSING_LAYER,), "polygon_token", name)
        self.contours = self._geoms(CONTOUR_LAYERS, "polygon_token", name)
        self._trees = [STRtree(g) if g else None for g in (self.dividers, self.crossings, self.contours)]

    def _geoms(self, layers, key, name) -> list:
        out = []
        for layer in layers:
            for rec in getattr(self.map, layer):
                if key == "line_token":
                    g = self.map.extract_line(rec[key])
                else:
                    g = self.map.extract_polygon(rec[key])
                    if not g.is_valid:  # MapTR skips invalid polygons rather than repairing them
                        log.debug(f"{name}: {layer} {rec['token']}: invalid polygon skipped")
                        continue
                if not g.is_empty:
                    out.append(g)
        return out

    def elements(self, T_global_ref: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """[(class, (P, 2) float64)] in the planar frame T_global_ref (x forward, y left);
        crossings are closed rings (last point == first)."""
        from shapely import affinity, ops
        from shapely.geometry import Polygon, box

        from gs_mapping.world.roads import clip_line

        (x0, x1), (y0, y1) = self.x_range, self.y_range
        patch = box(x0, y0, x1, y1)
        # global → patch frame: p_local = R(-yaw) (p - t)
        yaw = heading(T_global_ref)
        c, s = math.cos(yaw), math.sin(yaw)
        tx, ty = T_global_ref[0, 3], T_global_ref[1, 3]
        to_local = [c, s, -s, c, -(c * tx + s * ty), -(-s * tx + c * ty)]
        # the patch in global coordinates, for the index query
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        gx = c * corners[:, 0] - s * corners[:, 1] + tx
        gy = s * corners[:, 0] + c * corners[:, 1] + ty
        query = Polygon(np.stack([gx, gy], 1))

        def near(i, geoms):
            tree = self._trees[i]
            if tree is None:
                return []
            idx = sorted(int(j) for j in tree.query(query, predicate="intersects"))
            return [affinity.affine_transform(geoms[j], to_local) for j in idx]

        out: list[tuple[int, np.ndarray]] = []
        for line in near(0, self.dividers):
            for piece in _lines(line.intersection(patch)):
                out.append((DIVIDER, piece))
        # Crossings are clipped to the patch first, so each ring lies inside the grown patch whole:
        # MapTR's cut by the grown patch keeps it unchanged, a closed ring.
        crossings = [p.intersection(patch) for p in near(1, self.crossings)]
        for ring in _rings(ops.unary_union(crossings) if crossings else None):
            out.append((PED_CROSSING, np.asarray(ring.coords, np.float64)))
        contours = [p.intersection(patch) for p in near(2, self.contours)]
        shrunk = box(x0 + PATCH_MARGIN, y0 + PATCH_MARGIN, x1 - PATCH_MARGIN, y1 - PATCH_MARGIN)
        for ring in _rings(ops.unary_union(contours) if contours else None):
            for piece in clip_line(np.asarray(ring.coords), shrunk):  # linemerge'd as MapTR
                if piece.length > 0:
                    out.append((BOUNDARY, np.asarray(piece.coords, np.float64)))
        return out


def _lines(geom) -> list[np.ndarray]:
    """The LineString parts of a clipping result (points and empty parts dropped), as arrays."""
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type in ("LineString", "LinearRing"):
        return [np.asarray(geom.coords, np.float64)] if geom.length > 0 else []
    if hasattr(geom, "geoms"):
        return [a for g in geom.geoms for a in _lines(g)]
    return []


def _rings(geom) -> list:
    """Exterior rings clockwise and hole rings counter-clockwise (MapTR's orientation), as
    LineStrings, of the polygons in ``geom``."""
    from shapely.geometry import LineString

    if geom is None or geom.is_empty:
        return []
    polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and not g.is_empty]
    out = []
    for p in polys:
        ext = p.exterior
        coords = list(ext.coords)
        out.append(LineString(coords[::-1] if ext.is_ccw else coords))
        for hole in p.interiors:
            coords = list(hole.coords)
            out.append(LineString(coords if hole.is_ccw else coords[::-1]))
    return out


# ---------------------------------------------------------------------------------------------------
# Samples


@dataclass
class CameraCalib:
    channel: str
    filename: str  # absolute path of the image
    width: int
    height: int
    K: np.ndarray  # (3, 3)
    T_ref_cam: (
        np.ndarray
    )  # (4, 4): camera (nuScenes camera frame = optical: x right, y down, z fwd) → patch frame


@dataclass
class NuScenesFrame:
    sample_token: str
    scene_name: str
    timestamp_us: int
    location: str
    T_global_ego: np.ndarray  # (4, 4) ego pose at the LiDAR sweep
    T_ego_lidar: np.ndarray  # (4, 4) LIDAR_TOP extrinsics
    T_global_ref: np.ndarray  # (4, 4) the planar patch frame the elements are in
    elements: list = field(default_factory=list)  # [(class, (P, 2))]
    cameras: dict = field(default_factory=dict)  # channel → CameraCalib

    def to_eval(self) -> dict:
        """One ``hd-eval`` GT frame (base_link points: evaluate with ``--frame rep103``)."""
        return {
            "sample_token": self.sample_token,
            "vectors": [{"pts": np.asarray(p).tolist(), "type": int(c)} for c, p in self.elements],
        }

    def to_sample(self, channels: Sequence[str] = ("CAM_FRONT",)):
        """A :class:`gsmap_hd.data.Sample` (images read from disk) for training or evaluation."""
        from PIL import Image

        from .data import Sample

        ims, Ks, Ts = [], [], []
        for ch in channels:
            cam = self.cameras.get(ch)
            if cam is None:
                raise NuScenesError(
                    f"sample {self.sample_token}: no camera {ch!r} (have {sorted(self.cameras)})"
                )
            try:
                with Image.open(cam.filename) as im:
                    rgb = np.asarray(im.convert("RGB"), np.uint8)
            except OSError as e:
                raise NuScenesError(
                    f"{cam.filename} ({ch}, sample {self.sample_token}): cannot read image: {e}"
                ) from None
            if rgb.shape[:2] != (cam.height, cam.width):
                raise NuScenesError(
                    f"{cam.filename}: image is {rgb.shape[1]}x{rgb.shape[0]}, sample_data says "
                    f"{cam.width}x{cam.height}"
                )
            ims.append(rgb)
            Ks.append(cam.K)
            Ts.append(cam.T_ref_cam)
        if len({im.shape for im in ims}) > 1:
            raise NuScenesError(f"sample {self.sample_token}: cameras {list(channels)} differ in image size")
        return Sample(
            np.stack(ims), np.stack(Ks), np.stack(Ts), [(c, np.asarray(p)) for c, p in self.elements]
        )


class NuScenesMapGT:
    """A nuScenes dataset (``dataroot/<version>/*.json`` + ``dataroot/maps/expansion/*.json``) read
    through the devkit; iterate :meth:`frames` for per-sample poses, cameras and map elements."""

    def __init__(
        self,
        dataroot: str | Path,
        version: str = "v1.0-mini",
        *,
        origin: str = "ego",
        x_range=(-30.0, 30.0),
        y_range=(-15.0, 15.0),
        verbose: bool = False,
    ) -> None:
        if origin not in ("ego", "lidar"):
            raise NuScenesError(f"origin {origin!r}: expected 'ego' (base_link) or 'lidar' (MapTR's patch)")
        self.dataroot = Path(dataroot)
        tables = self.dataroot / version
        if not tables.is_dir():
            raise NuScenesError(f"{tables}: no nuScenes tables for version {version!r} under {self.dataroot}")
        NuScenes, self._NuScenesMap = _devkit()
        try:
            self.nusc = NuScenes(version=version, dataroot=str(self.dataroot), verbose=verbose)
        except (AssertionError, KeyError, FileNotFoundError, ValueError) as e:
            raise NuScenesError(
                f"{tables}: the devkit could not load the tables: {type(e).__name__}: {e}"
            ) from None
        self.origin, self.x_range, self.y_range = origin, tuple(x_range), tuple(y_range)
        self._maps: dict[str, MapExtractor] = {}

    def map_for(self, location: str) -> MapExtractor:
        if location not in self._maps:
            path = self.dataroot / "maps" / "expansion" / f"{location}.json"
            if not path.is_file():
                raise NuScenesError(
                    f"{path}: map expansion for location {location!r} not found "
                    "(download the nuScenes map expansion into maps/expansion/)"
                )
            try:
                nusc_map = self._NuScenesMap(dataroot=str(self.dataroot), map_name=location)
            except Exception as e:  # noqa: BLE001 - the devkit raises AssertionError, KeyError, JSON's
                # ValueError (a cut download) and a bare Exception (an outdated expansion)
                why = " ".join(str(e).split())[:200]
                raise NuScenesError(
                    f"{path}: the devkit could not load the map ({type(e).__name__}: {why}); the "
                    "map expansion v1.3 is needed, whole (download it again if it was cut short)"
                ) from None
            self._maps[location] = MapExtractor(nusc_map, self.x_range, self.y_range)
        return self._maps[location]

    def scenes(self) -> list[str]:
        return [s["name"] for s in self.nusc.scene]

    def sample_tokens(self, scenes: Sequence[str] | None = None) -> list[str]:
        """Key-frame samples in scene order, then time order."""
        known = {s["name"]: s for s in self.nusc.scene}
        names = list(known) if scenes is None else list(scenes)
        for n in names:
            if n not in known:
                raise NuScenesError(f"{self.dataroot}: no scene named {n!r} (have {sorted(known)[:8]}...)")
        out = []
        for n in names:
            tok = known[n]["first_sample_token"]
            while tok:
                out.append(tok)
                tok = self.nusc.get("sample", tok)["next"]
        return out

    def frames(self, scenes: Sequence[str] | None = None, cameras: bool = True) -> Iterator[NuScenesFrame]:
        for tok in self.sample_tokens(scenes):
            yield self.frame(tok, cameras)

    def frame(self, sample_token: str, cameras: bool = True) -> NuScenesFrame:
        nusc = self.nusc
        try:
            sample = nusc.get("sample", sample_token)
        except KeyError:
            raise NuScenesError(f"{self.dataroot}: no sample with token {sample_token!r}") from None
        scene = nusc.get("scene", sample["scene_token"])
        location = nusc.get("log", scene["log_token"])["location"]
        if "LIDAR_TOP" not in sample["data"]:
            raise NuScenesError(
                f"sample {sample_token}: no LIDAR_TOP sample_data (the patch is placed at the sweep)"
            )
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        T_global_ego, T_ego_lidar = self._sd_poses(sd)
        if self.origin == "ego":
            T_ref = planar(T_global_ego, heading(T_global_ego))
        else:  # MapTR's patch: at the LiDAR, heading of its x axis (right) + 90° = forward
            T_global_lidar = T_global_ego @ T_ego_lidar
            T_ref = planar(T_global_lidar, heading(T_global_lidar) + math.pi / 2)
        fr = NuScenesFrame(
            sample_token,
            scene["name"],
            int(sample["timestamp"]),
            location,
            T_global_ego,
            T_ego_lidar,
            T_ref,
            self.map_for(location).elements(T_ref),
        )
        if cameras:
            T_ref_global = np.linalg.inv(T_ref)
            for channel, sd_tok in sample["data"].items():
                csd = nusc.get("sample_data", sd_tok)
                if csd.get("sensor_modality") != "camera":
                    continue
                T_g_e, T_e_c = self._sd_poses(csd)
                cs = nusc.get("calibrated_sensor", csd["calibrated_sensor_token"])
                K = np.asarray(cs["camera_intrinsic"], np.float64)
                if K.shape != (3, 3) or not np.all(np.isfinite(K)):
                    raise NuScenesError(
                        f"calibrated_sensor {cs['token']} ({channel}): bad camera_intrinsic {K.tolist()}"
                    )
                fr.cameras[channel] = CameraCalib(
                    channel,
                    str(self.dataroot / csd["filename"]),
                    int(csd["width"]),
                    int(csd["height"]),
                    K,
                    T_ref_global @ T_g_e @ T_e_c,
                )
        return fr

    def _sd_poses(self, sd: dict) -> tuple[np.ndarray, np.ndarray]:
        pose = self.nusc.get("ego_pose", sd["ego_pose_token"])
        cs = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        return (
            pose_matrix(pose["translation"], pose["rotation"], f"ego_pose {pose['token']}"),
            pose_matrix(cs["translation"], cs["rotation"], f"calibrated_sensor {cs['token']}"),
        )


def gt_document(frames: Sequence[NuScenesFrame]) -> dict:
    """``{"GTs": [...]}`` for hd-eval (add your ``"results"`` in the same sample order)."""
    return {"GTs": [f.to_eval() for f in frames]}


NUSCENES_CAMERAS = {
    "front": ("CAM_FRONT",),
    "surround": (
        "CAM_FRONT",
        "CAM_FRONT_RIGHT",
        "CAM_FRONT_LEFT",
        "CAM_BACK",
        "CAM_BACK_LEFT",
        "CAM_BACK_RIGHT",
    ),
}


class EvenlySpaced:
    """``n`` samples of ``source`` evenly spaced over it (its scenes are in order: the first ``n``
    would be a few scenes), as a source of its own (``len``, ``[i]``); all of it where ``n`` is
    its length."""

    def __init__(self, source, n: int, name: str = "") -> None:
        self.source = source
        self.index = (
            np.linspace(0, len(source) - 1, n).round().astype(int)
            if n < len(source)
            else np.arange(len(source))
        )
        if n < len(source):
            log.info(f"nuScenes {name}: {n} of its {len(source)} samples, evenly spaced over its scenes")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.source[int(self.index[i])]


class NuScenesSamples:
    """Training/evaluation samples of one nuScenes split (``hd-train --data nuscenes``): ``source[i]``
    is key-frame sample i of the split's scenes (scene order, then time order) as a
    :class:`gsmap_hd.data.Sample` of the rig's cameras, images read from disk on every access (the
    dataset does not fit in memory). ``split``: the devkit's official split names (``train``, ``val``,
    ``mini_train``, ``mini_val``) or ``all``. ``x_range``, ``y_range``: the BEV patch of the map
    elements (the model's)."""

    def __init__(
        self,
        dataroot,
        version: str,
        split: str,
        rig: str = "front",
        x_range=(-30.0, 30.0),
        y_range=(-15.0, 15.0),
    ) -> None:
        if rig not in NUSCENES_CAMERAS:
            raise NuScenesError(f"rig {rig!r}: expected one of {sorted(NUSCENES_CAMERAS)}")
        self.gt = NuScenesMapGT(dataroot, version, x_range=x_range, y_range=y_range)
        have = self.gt.scenes()
        if split == "all":
            scenes = have
        else:
            from nuscenes.utils.splits import create_splits_scenes  # the devkit, imported by NuScenesMapGT

            splits = create_splits_scenes()
            if split not in splits:
                raise NuScenesError(f"split {split!r}: expected all or one of {sorted(splits)}")
            wanted = set(splits[split])
            scenes = [s for s in have if s in wanted]
        if not scenes:
            raise NuScenesError(f"{dataroot} ({version}): no scene of split {split!r}")
        self.tokens = self.gt.sample_tokens(scenes)
        self.channels = NUSCENES_CAMERAS[rig]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        return self.gt.frame(self.tokens[i]).to_sample(self.channels)
