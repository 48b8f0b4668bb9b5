"""How the suite spends CPU cores on torch work — one place for the policy.

Measured on the 2-core CI machine with ``OMP_WAIT_POLICY=PASSIVE`` (the default we set: busy-waiting
OpenMP threads collapse when the machine is shared — 2 threads ran ~10x slower than 1 at load ~9):
torch's intra-op threads cost more than they save on our small ops. Two threads against one: CPU
rasteriser forward + backward of 10k Gaussians 0.136 vs 0.094 s (bench/render.py), GSMap small model
21 vs 12 ms per frame (bench/hd.py), the kitchen mapper 8.1 vs 5.2 s per keyframe (bench/mapping.py).
So processes that run our torch code keep torch at one intra-op thread and give the cores to the CPU
rasteriser instead, which composites independent tile chunks on worker threads (render/cpu.py;
5.2 → 4.8 s per keyframe with 2 workers). Both are overridable: ``OMP_NUM_THREADS`` in the environment,
``render.cpu.set_workers(n)`` (CLI/bench ``--threads``).
"""

from __future__ import annotations

import os

MAX_RASTER_WORKERS = 8


def prefer_single_thread_torch() -> None:
    """Default OpenMP to one passive thread unless the environment says otherwise. Call before torch
    is imported (it reads these once)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_raster_workers() -> int:
    return min(usable_cores(), MAX_RASTER_WORKERS)


def configure(threads: int | None = None) -> int:
    """Set torch to one intra-op thread and the CPU rasteriser to ``threads`` workers (None or 0: every
    usable core, at most MAX_RASTER_WORKERS). Returns the worker count. Imports torch."""
    import torch

    from .render import cpu

    n = default_raster_workers() if not threads else int(threads)
    torch.set_num_threads(1)
    cpu.set_workers(n)
    return n
