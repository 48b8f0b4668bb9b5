"""Optional numba compilation of the codec's scalar loops: the decoder's (ANS symbols in one or two
lanes, frequency tables, escaped values, octree expansion and tails, rotations, parent predictions,
faint rescaling, neighbour-phase contexts) and the encoder's (each Gaussian's frame, distinct SH
rows, octree levels and coarse-level moments, stream statistics and size estimates, escape symbols,
bit packing and frequency tables).

numba is an optional dependency (requirements.txt installs it; a ROS install may not have it). Each
compiled loop (:mod:`.kernels`) has a plain path beside it that gives the same result: constriction
for ANS, Python for the tables, numpy for the rest; the tests run both and compare (values, floats
bit for bit, and the encoder's bytes). ``GS_MAP_SHARE_NUMBA=0`` switches every compiled loop off, as
numba's own ``NUMBA_DISABLE_JIT=1`` does (under which its intrinsics do not run). numba is imported
on first use, never when the package is imported; the compiled code is cached on disk by numba
(beside the module, or in its user cache directory), so only the first use after an install
pays the compilation (seconds: ~4 s for the frame choice on a loaded 2-core machine). Where neither
can be written (a read-only install run by a user without a writable home), each process compiles
the loops again and keeps them in memory only. numba's cache does not know ``NUMBA_BOUNDSCHECK``:
a run with bounds checks takes the unchecked code from the cache (and leaves checked code for
later runs), so pair it with a fresh ``NUMBA_CACHE_DIR`` (test_outside_codec_bounds does).
"""

from __future__ import annotations

import os
from types import ModuleType

_kernels: ModuleType | bool | None = None  # the module, False when unavailable, None before first use


def switched_off() -> bool:
    """``GS_MAP_SHARE_NUMBA=0``: every compiled loop off (the plain paths run)."""
    return os.environ.get("GS_MAP_SHARE_NUMBA", "1") == "0"


def kernels() -> ModuleType | None:
    """:mod:`.kernels` (which imports numba), or None without numba or when switched off."""
    global _kernels
    if _kernels is None:
        _kernels = False
        if not switched_off():
            try:
                from . import kernels as compiled
            except (ImportError, OSError):  # no numba, or its LLVM library failed to load (memory)
                return None
            import numba

            # NUMBA_DISABLE_JIT (numba's debugging switch) runs the loops as Python, where their
            # intrinsics (leading_zeros) raise NotImplementedError: the plain paths run instead
            _kernels = False if getattr(numba.config, "DISABLE_JIT", False) else compiled
    return _kernels if isinstance(_kernels, ModuleType) else None
