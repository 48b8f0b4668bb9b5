"""Mapper configs shared by the tests on tiny synthetic scenes (importable: pytest puts test/ on the path)."""

from __future__ import annotations

from gs_mapping.mapping import MapperConfig


def small_cpu_config(iterations: int = 3) -> MapperConfig:
    """CPU backend, a keyframe every frame, ``iterations`` per keyframe (the first too), seeds every
    2nd pixel: fast enough for unit tests on 48×36 frames."""
    cfg = MapperConfig()
    cfg.device = cfg.backend = "cpu"
    cfg.keyframe.max_gap = 1
    cfg.optim.iterations = cfg.optim.first_iterations = iterations
    cfg.seeding.stride = 2
    return cfg
