"""The hostile-input harness: a runner that checks the outcome rule, and the inputs it throws.

Outcome rule for every case: a correct result (exit 0), or exit status 2 with exactly one error line
``gs-mapping CMD: error: …`` (naming the file / field / argument where the case says which) — never
a traceback, a hang, a memory blow-up, or a changed input file. Commands run in-process through
:func:`gs_mapping.cli.main` (fast: torch and the codec are imported once); ``bench/hostile.py`` runs
the same generators with more examples and writes ``bench/results/hostile.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import signal
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_RSS_GB = 6.0  # a case that pushes the process beyond this is a memory blow-up


class Hang(Exception):
    pass


@dataclass
class Outcome:
    kind: str  # what was tried (for the report): "argument", "ply", "container", "bag", …
    argv: list[str]
    rc: int | None = None
    stderr: str = ""
    stdout: str = ""
    violation: str = ""  # empty: the rule held
    result: str = "ok"  # ok | error (one line, exit 2)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _digest(paths: Iterable[os.PathLike | str]) -> dict[str, str]:
    out = {}
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        for f in files:
            try:
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError:
                out[str(f)] = "unreadable"
        if not files:
            out[str(p)] = "absent" if not p.exists() else "empty-dir"
    return out


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_cli(
    argv: list[str],
    kind: str,
    inputs: Iterable[os.PathLike | str] = (),
    must_name: Iterable[str] = (),
    timeout_s: int = 60,
) -> Outcome:
    """Run ``gs-mapping ARGV`` in-process and check the outcome rule; the violation, if any, is in
    the returned :class:`Outcome` (callers assert it is empty)."""
    import time

    from gs_mapping.cli import main

    argv = [str(a) for a in argv]
    inputs = list(inputs)
    before = _digest(inputs)
    out = Outcome(kind, argv)
    err, std = io.StringIO(), io.StringIO()

    def on_alarm(*_):
        raise Hang(f"no result within {timeout_s} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout_s)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            try:
                out.rc = main(argv)
            except SystemExit as exc:  # argparse: usage + one "error:" line, exit 2
                out.rc = exc.code if isinstance(exc.code, int) else 2
    except Hang as exc:
        out.violation = f"hang: {exc}"
    except BaseException as exc:  # noqa: BLE001 - what the harness exists to catch
        import traceback

        out.violation = f"traceback: {type(exc).__name__}: {exc}"
        out.extra["traceback"] = traceback.format_exc()[-2000:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        out.seconds = time.perf_counter() - t0
    out.stderr, out.stdout = err.getvalue(), std.getvalue()
    if not out.violation:
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("gs-mapping") and " error: " in ln]
        if "Traceback (most recent call last)" in out.stderr:
            out.violation = "traceback printed"
        elif out.rc == 0:
            out.result = "ok"
        elif out.rc == 2:
            out.result = "error"
            if len(errors) != 1:
                out.violation = f"exit 2 with {len(errors)} error lines: {out.stderr[-500:]!r}"
            elif must_name and not any(n in errors[0] for n in must_name):
                out.violation = f"error line names none of {list(must_name)}: {errors[0]!r}"
        else:
            out.violation = f"exit status {out.rc} (want 0 or 2): {out.stderr[-300:]!r}"
    if _digest(inputs) != before:
        out.violation = (out.violation + "; " if out.violation else "") + "an input file changed"
    if _rss_gb() > MAX_RSS_GB:
        out.violation = (out.violation + "; " if out.violation else "") + f"memory: peak {_rss_gb():.1f} GB"
    return out


# --- inputs ---------------------------------------------------------------------------------------


def one_error_line(capsys, *needles: str) -> str:
    """The outcome rule's error half for a command run in-process (``gs_mapping.cli.main``) under
    pytest's ``capsys``: exactly one non-blank stderr line, no traceback, naming each of ``needles``."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def small_map(n: int = 60, sh_degree: int = 1, seed: int = 0):
    from synthetic_maps import synthetic_map

    return synthetic_map(n, sh_degree, seed=seed)


def make_assets(d: Path) -> dict[str, Path]:
    """Good inputs of every kind we read, small: PLY, snapshot + delta, MCAP and sqlite3 bags,
    parameter YAML, hd-eval JSON."""
    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.ply import save_ply

    d.mkdir(parents=True, exist_ok=True)
    a: dict[str, Path] = {}
    g = small_map()
    save_ply(g, d / "map.ply", keep_ids=True)  # (a map: the mutations reach its gs_mapping element)
    a["ply"] = d / "map.ply"
    h = g.copy()
    h.update(h.ids[:5], means=h.means[:5] + 0.05)
    save_ply(h, d / "map2.ply", keep_ids=True)
    a["ply2"] = d / "map2.ply"
    g2 = small_map()
    sender = MapSender.from_map(g2, QuantParams.from_quality(2), map_id=1)
    (d / "snap.gsd").write_bytes(sender.snapshot())
    a["snapshot"] = d / "snap.gsd"
    g2.update(g2.ids[:7], means=g2.means[:7] + 0.04)
    (d / "delta.gsd").write_bytes(sender.update(g2, g2.take_changes())[0])
    a["delta"] = d / "delta.gsd"
    a["mcap"] = _tf_bag(d / "bag_mcap", "mcap")
    a["sqlite3"] = _tf_bag(d / "bag_sqlite", "sqlite3")
    (d / "params.yaml").write_text("/**:\n  ros__parameters:\n    mapper:\n      seeding: {stride: 4}\n")
    a["yaml"] = d / "params.yaml"
    (d / "hd.json").write_text(json.dumps(hd_doc()))
    a["json"] = d / "hd.json"
    (d / "notes.txt").write_text("not a map\n")
    a["text"] = d / "notes.txt"
    return a


def hd_doc() -> dict:
    vec = [{"pts": [[0, 0], [0, 10]], "type": 0, "confidence_level": 0.9}]
    return {"results": [{"vectors": vec}], "GTs": [{"vectors": [{"pts": [[0.1, 0], [0.1, 10]], "type": 0}]}]}


def tf_message(f, stamp: int, parent: str, child: str, x: float):
    """A TFMessage of one transform ``parent → child``, ``x`` metres along x, no rotation, made by
    message factory ``f``."""
    from gs_mapping.messages.factory import make_header

    t = f.make(
        "geometry_msgs/msg/TransformStamped",
        header=make_header(stamp, parent, f),
        child_frame_id=child,
        transform=f.make(
            "geometry_msgs/msg/Transform",
            translation=f.make("geometry_msgs/msg/Vector3", x=x, y=0.0, z=0.0),
            rotation=f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
        ),
    )
    return f.make("tf2_msgs/msg/TFMessage", transforms=[t])


def _tf_bag(path: Path, storage: str) -> Path:
    """A small bag of /tf, /tf_static and a String, in MCAP (our writer) or sqlite3 (rosbags')."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from gs_mapping.bag import BagWriter, default_typestore
    from gs_mapping.messages import RosbagsFactory

    ts = default_typestore()
    f = RosbagsFactory(ts)

    def tf(stamp, parent, child, x):
        return tf_message(f, stamp, parent, child, x)

    msgs = [("/tf_static", 0, tf(0, "base_link", "camera", 0.2))]
    msgs += [
        ("/tf", 10**9 + i * 10**8, tf(10**9 + i * 10**8, "map", "base_link", 0.1 * i)) for i in range(20)
    ]
    if storage == "mcap":
        with BagWriter(path) as bag:
            bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
            bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
            for topic, stamp, m in msgs:
                bag.write(topic, stamp, m)
        return path
    w = Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3)
    w.open()
    conns = {t: w.add_connection(t, "tf2_msgs/msg/TFMessage", typestore=ts) for t in ("/tf_static", "/tf")}
    for topic, stamp, m in msgs:
        w.write(conns[topic], stamp, ts.serialize_cdr(m, "tf2_msgs/msg/TFMessage"))
    w.close()
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


# --- mutations (deterministic given a numpy Generator) ----------------------------------------------


def mutate(data: bytes, rng: np.random.Generator, protect: int = 0) -> bytes:
    """One of: bit flips, a truncation, an inserted or deleted run, a field overwritten with an
    extreme integer (lengths and counts that lie). ``protect``: leave the first bytes alone."""
    b = bytearray(data)
    n = len(b)
    op = int(rng.integers(0, 5))
    lo = min(protect, max(n - 1, 0))
    if n == 0:
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    if op == 0:
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(lo, n))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif op == 1:
        b = b[: int(rng.integers(0, n))]
    elif op == 2:
        i = int(rng.integers(lo, n))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif op == 3:
        i = int(rng.integers(lo, n))
        del b[i : i + int(rng.integers(1, 64))]
    else:
        i = int(rng.integers(lo, max(lo + 1, n - 8)))
        extreme = [0xFFFFFFFF, 0x7FFFFFFF, 0, 1 << 31, 0xFFFFFFFFFFFFFFFF, 1 << 62][int(rng.integers(0, 6))]
        fmt = "<Q" if extreme > 0xFFFFFFFF or rng.integers(0, 2) else "<I"
        raw = struct.pack(fmt, extreme)
        b[i : i + len(raw)] = raw
    return bytes(b)


PLY_HEADER_LIES = [
    ("element vertex 60", "element vertex 1000000000000"),
    ("element vertex 60", "element vertex -5"),
    ("element vertex 60", "element vertex 61"),
    ("element vertex 60", "element vertex 0"),
    ("binary_little_endian", "ascii"),
    ("binary_little_endian", "binary_big_endian"),
    ("property float x", "property float64 x"),
    ("property float x", "property bogus x"),
    ("property float x", "property list uchar int x"),
    ("end_header", "end_headr"),
    ("property uchar level", "property float level"),
    ("sh_degree 1", "sh_degree 9"),
    ("tile_size", "tile_size -1 x"),
]
