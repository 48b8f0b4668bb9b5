"""Shared by the bench scripts: machine description and writing results (JSON + markdown)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1m": os.getloadavg()[0],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save_text(path: Path, text: str) -> None:
    """A result file written whole or not at all (beside, synced, renamed over): a full disk or a
    kill mid-write leaves the previous results, not a cut-off file."""
    from gs_mapping.output_files import write_text

    write_text(Path(path), text, overwrite=True)


def save_with(path: Path, write) -> None:
    """A result a library writes by name (a figure, a checkpoint: ``write(name)``), as whole as
    :func:`save_text`'s; the temp name keeps the suffix the library picks its format by."""
    from gs_mapping.output_files import output_path

    with output_path(Path(path), overwrite=True) as tmp:
        write(tmp)


def write_results(name: str, data: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    save_text(path, json.dumps(data, indent=2, default=float) + "\n")
    save_text(RESULTS / f"{name}.md", markdown.rstrip() + "\n")
    return path


def log(*a) -> None:
    """Progress to stderr (stdout stays for results)."""
    print(*a, file=sys.stderr, flush=True)


def median_ms(fn, repeats: int) -> float:
    """Median wall time (ms) of ``repeats`` calls of ``fn`` after one warm-up call (generated
    (de)serialisers and typestores are built on first use)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def best_time(fn, repeats: int, min_total: float = 0.0, max_calls: int = 50):
    """Best CPU time (process_time, so other load on the machine counts less) of ``repeats`` calls,
    and the last call's result. ``min_total``: call on (up to ``max_calls``) until the calls took
    this many seconds together: a 20 ms figure from three calls moves by ±30 % with the VM's
    moments; comparisons time both sides by the same rule."""
    best, out, total, calls = None, None, 0.0, 0
    while calls < repeats or (total < min_total and calls < max_calls):
        t = time.process_time()
        out = fn()
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
        total, calls = total + dt, calls + 1
    return best, out
