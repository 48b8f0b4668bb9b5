"""The procedural driving world: roads + objects + ground labels, and rendering of any view.

    world = World.generate(seed=7, length=300.0)
    rgb, depth = world.render(camera)                 # any gs_mapping.camera.Camera pose
    points = world.lidar(T_map_lidar)                  # (N, 4) x, y, z, intensity in the LiDAR frame
    world.map_elements()                               # ground truth in the map frame
    world.elements_in_ego(T_map_base, (30.0, 15.0))    # … in base_link, clipped to the BEV range

Everything is a pure function of the seed and the route length (NumPy's PCG64 generator): same
seed and length, same world, same pixels. ``Drive.make`` generates its world from its seed and the
length its frames need (``drive.world``).
"""

from __future__ import annotations

import numpy as np

from ..camera import Camera
from ..errors import GsMappingError
from . import render as R
from .ground import GroundLabels
from .roads import MapElement, RoadNetwork, clip_elements, generate_network
from .scene import Objects, populate, shadow_polygons

BAND_RAYS = 1 << 18  # rays per rendering band (bounds memory for large images)
MAX_LENGTH = 50_000.0  # metres: the longest world :meth:`World.generate` makes


class WorldError(GsMappingError):
    """Invalid world parameters (length, sensor settings)."""


class World:
    def __init__(
        self,
        net: RoadNetwork,
        objects: Objects,
        seed: int = 0,
        sun_azimuth: float = 2.3,
        sun_elevation: float = 0.85,
    ):
        self.net = net
        self.objects = objects
        self.seed = int(seed)
        ce = np.cos(sun_elevation)
        self.sun = np.array([ce * np.cos(sun_azimuth), ce * np.sin(sun_azimuth), np.sin(sun_elevation)])
        self.ground = GroundLabels(net, shadow_polygons(objects, self.sun))
        self._route = None

    @staticmethod
    def generate(seed: int = 0, length: float = 300.0) -> World:
        """A world whose main road offers at least ``length`` metres of drivable route."""
        if not np.isfinite(length) or length <= 0 or length > MAX_LENGTH:
            raise WorldError(f"world length must be in (0, {MAX_LENGTH:.0f}] m, got {length}")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6757]))
        net = generate_network(rng, float(length))
        objects = populate(net, rng)
        sun_az = float(rng.uniform(-np.pi, np.pi))
        sun_el = float(rng.uniform(0.6, 1.1))
        world = World(net, objects, seed, sun_az, sun_el)
        world._route = net.route(rng)
        return world

    def with_objects(self, objects: Objects) -> World:
        """The same roads with other objects (e.g. an occluder added by a test)."""
        w = World.__new__(World)
        w.__dict__.update(self.__dict__)
        w.objects = objects
        w.ground = GroundLabels(self.net, shadow_polygons(objects, self.sun))
        return w

    # ------------------------------------------------------------------------------- ground truth
    def map_elements(self) -> list[MapElement]:
        """Ground-truth vector elements in the map frame (z = 0)."""
        return list(self.net.elements)

    def elements_in_ego(self, T_map_base: np.ndarray, bev_range=(30.0, 15.0)) -> list[MapElement]:
        """Elements in base_link (x forward, y left), clipped to |x| ≤ bev_range[0], |y| ≤ bev_range[1]
        (either a ``(lo, hi)`` pair instead: a patch not centred on the vehicle)."""
        T = np.asarray(T_map_base, np.float64)
        T_base_map = np.linalg.inv(T)
        return clip_elements(self.net.elements, T_base_map, bev_range[0], bev_range[1])

    def ground_label(self, xy: np.ndarray) -> np.ndarray:
        """Ground surface label at map-frame (N, 2) points (see ``roads.GRASS`` … ``PAINT_YELLOW``)."""
        return self.ground.classes(np.asarray(xy, np.float64).reshape(-1, 2))

    @property
    def route(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) lane-centre points the vehicle follows and their stations on the main road."""
        return self._route

    # ---------------------------------------------------------------------------------- rendering
    def render(
        self, camera: Camera, max_depth: float = 200.0, supersample: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Colour (H, W, 3) uint8 and z-depth (H, W) float32 metres (NaN: sky or beyond max_depth).

        ``supersample`` s > 1 averages s × s colour samples per pixel (anti-aliasing, s² the cost);
        depth is always the exact value at the pixel centre. Large images are rendered in bands of
        rows so that memory stays bounded (same pixels)."""
        s = int(supersample)
        if not 1 <= s <= 8:
            raise WorldError(f"supersample must be in 1..8, got {supersample}")
        rgb, depth = self._render(camera, max_depth, shade=s == 1)
        if s > 1:
            K = camera.K.copy()
            K[:2] *= s
            K[0, 2] += (s - 1) / 2  # sub-pixel a of pixel u sits at u + (a - (s-1)/2) / s
            K[1, 2] += (s - 1) / 2
            fine = Camera(K, camera.width * s, camera.height * s, camera.T_map_cam, camera.frame_id)
            hi, _ = self._render(fine, max_depth, shade=True)
            blocks = hi.reshape(camera.height, s, camera.width, s, 3).astype(np.float32)
            rgb = (blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)
        return rgb, depth

    def _render(self, camera: Camera, max_depth: float, shade: bool):
        o, d = camera_rays(camera)
        h, w = camera.height, camera.width
        regions = R.camera_regions(self.objects, camera.T_cam_map, camera.K, w, h, max_depth)
        rgb = np.empty((h, w, 3), np.uint8) if shade else None
        depth = np.empty((h, w), np.float32)
        band = max(1, BAND_RAYS // w)
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            sub = [
                (k, i, max(a, r0) - r0, min(b, r1) - r0, c0, c1)
                for k, i, a, b, c0, c1 in regions
                if a < r1 and b > r0
            ]
            db = d[r0:r1]
            hits = R.cast(self.objects, o, db, sub, max_depth)
            if shade:
                rgb[r0:r1] = R.shade_camera(self, o, db, hits)
            depth[r0:r1] = np.where(np.isfinite(hits.t), hits.t, np.nan)
        return rgb, depth

    def lidar(
        self,
        T_map_lidar: np.ndarray,
        beams: int = 32,
        columns: int = 1024,
        fov: tuple[float, float] = (-25.0, 10.0),
        max_range: float = 100.0,
    ) -> np.ndarray:
        """A spinning LiDAR scan: (N, 4) float32 x, y, z, intensity in the LiDAR frame (hits only).

        ``beams`` rows evenly over the vertical ``fov`` (degrees), ``columns`` azimuth steps over 360°;
        points are ordered by beam then azimuth; intensity = reflectivity × |cos incidence| in [0, 1].
        """
        if beams < 1 or columns < 8:
            raise WorldError(f"lidar needs ≥ 1 beam and ≥ 8 columns, got {beams} x {columns}")
        T = np.asarray(T_map_lidar, np.float64)
        el = np.deg2rad(np.linspace(fov[0], fov[1], beams))
        az = -np.pi + (np.arange(columns) + 0.5) * (2 * np.pi / columns)
        d_l = np.stack(
            [
                np.cos(el)[:, None] * np.cos(az)[None],
                np.cos(el)[:, None] * np.sin(az)[None],
                np.repeat(np.sin(el)[:, None], columns, 1),
            ],
            -1,
        )
        dn = (d_l @ T[:3, :3].T).astype(np.float32)
        o = T[:3, 3].copy()
        regions = R.lidar_regions(self.objects, np.linalg.inv(T), az, max_range)
        hits = R.cast(self.objects, o, dn, regions, max_range)
        mask, p, normal, _, reflect, _ = R.surface(self, o, dn, hits)
        cosi = np.abs(np.einsum("ij,ij->i", normal, dn[mask]))
        p_l = (p - o) @ T[:3, :3]
        return np.concatenate([p_l, (reflect * cosi)[:, None]], 1).astype(np.float32)


def camera_rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and (H, W, 3) float32 map-frame ray directions with unit optical-axis component."""
    K = camera.K
    u = (np.arange(camera.width) - K[0, 2]) / K[0, 0]
    v = (np.arange(camera.height) - K[1, 2]) / K[1, 1]
    dc = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)
    if K[0, 1] != 0:  # skew
        dc[..., 0] -= K[0, 1] / K[0, 0] * dc[..., 1]
    Rm = camera.T_map_cam[:3, :3]
    return camera.T_map_cam[:3, 3].copy(), (dc @ Rm.T).astype(np.float32)
