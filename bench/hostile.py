"""The hostile-input harness at scale: every kind of bad input the tests try, with more cases.

Runs the generators of ``test/hostile_cases.py`` (the same runner and outcome rule as the test
suite) and writes ``bench/results/hostile.json`` and ``hostile.md``: cases by kind, how many ended
in a correct result (exit 0), in one error line with exit 2, or broke the rule (listed).

    .venv/bin/python bench/hostile.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))
sys.path.insert(0, str(ROOT / "src"))

from common import save_text  # noqa: E402  (bench/ is the script folder)
from hostile_cases import PLY_HEADER_LIES, Outcome, make_assets, mutate, run_cli, storage_file  # noqa: E402
from hostile_fs import full_disk_dir, read_only_dir  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def fresh(p: Path) -> Path:
    if p.exists():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return p


def cases(A: dict, t: Path, n: int):
    """Yield Outcomes, kind by kind."""
    import test_hostile_cli as cli_cases

    from gs_map_share.container import reseal

    for argv, inputs, names, _ in cli_cases._arg_cases(A, t):
        yield run_cli(argv, "argument", inputs=inputs, must_name=[str(x) for x in names])
    with read_only_dir(t) as ro:
        for argv, inputs in cli_cases._writers(A, ro):
            yield run_cli(argv, "read-only file system", inputs=inputs, must_name=[str(ro)])
    with full_disk_dir(t, 64 * 1024) as (d, _):
        big = t / "big.ply"
        from gs_mapping.ply import load_ply, save_ply

        g = load_ply(A["ply"])
        for _ in range(6):
            g = g.copy()
            g.add(g.means + 1.0, g.quats, g.log_scales, g.opacity_logits, g.sh)
        save_ply(g, big)
        for argv, inputs in cli_cases._writers(A, d):
            argv = [big if a == A["ply"] else a for a in argv]
            yield run_cli(argv, "full disk", inputs=[big if i == A["ply"] else i for i in inputs])
    rng = np.random.default_rng(2026)
    w = t / "w"
    w.mkdir()
    ply = A["ply"].read_bytes()
    for _ in range(n):
        f = w / "m.ply"
        f.write_bytes(mutate(ply, rng))
        for argv in (["convert", f, fresh(w / "o.ply")], ["encode", f, fresh(w / "o.gsd")]):
            yield run_cli(argv, "PLY (mutated bytes)", inputs=[f], must_name=["m.ply"])
    end = ply.index(b"end_header\n")
    for lie in PLY_HEADER_LIES:
        f = w / "lie.ply"
        f.write_bytes(ply[:end].decode().replace(*lie, 1).encode() + ply[end:])
        yield run_cli(
            ["convert", f, fresh(w / "o.ply")], "PLY (header lies)", inputs=[f], must_name=["lie.ply"]
        )
    for kind in ("snapshot", "delta"):
        raw = A[kind].read_bytes()
        for sealed in (False, True):
            for _ in range(n):
                data = mutate(raw, rng)
                f = w / f"m_{kind}.gsd"
                f.write_bytes(reseal(data) if sealed else data)
                argv = (
                    ["decode", f, fresh(w / "c.ply")]
                    if kind == "snapshot"
                    else ["apply", A["snapshot"], f, fresh(w / "c.ply")]
                )
                label = f"container: {kind}" + (" (resealed: past the CRCs)" if sealed else "")
                yield run_cli(argv, label, inputs=[f, A["snapshot"]], must_name=[f.name])
    for storage in ("mcap", "sqlite3"):
        for _ in range(max(10, n // 2)):
            bag = fresh(w / f"bag_{storage}")
            shutil.copytree(A[storage], bag)
            sf = storage_file(bag)
            sf.write_bytes(mutate(sf.read_bytes(), rng, 0 if storage == "mcap" else 100))
            yield run_cli(["info", bag], f"rosbag2 {storage}", inputs=[bag], must_name=[str(bag)])
            yield run_cli(
                ["replay", bag, "--out", fresh(w / "r"), "--nodes", "map_receiver_node"],
                f"rosbag2 {storage}",
                inputs=[bag],
                must_name=[str(bag)],
            )
    for i in range(max(6, n // 4)):
        bag = fresh(w / "bag_meta")
        shutil.copytree(A["mcap"], bag)
        meta = yaml.safe_load((bag / "metadata.yaml").read_text())
        info = meta["rosbag2_bagfile_information"]
        k = i % 4
        if k == 0:
            info["message_count"] = int(rng.integers(0, 2**62))
        elif k == 1:
            info["duration"]["nanoseconds"] = -int(rng.integers(1, 2**40))
        elif k == 2:
            info["topics_with_message_count"][0]["message_count"] = int(rng.integers(0, 2**40))
        else:
            info["relative_file_paths"] = ["../elsewhere.mcap"]
        (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
        yield run_cli(["info", bag], "rosbag2 metadata that lies", inputs=[bag], must_name=[str(bag)])
    values = [None, True, -1, 0, 2**70, float("nan"), float("inf"), "x", [], {}, {"a": 1}, [1, 2], 1e308]
    sections = [
        "mapper",
        "codec",
        "mapper_node",
        "map_receiver_node",
        "hd_map_node",
        "hd_map",
        "map_server_node",
    ]
    subs = ["", "seeding", "optim", "topics", "levels", "keyframe", "max_gaussians", "quality"]
    for _ in range(n):
        sec, sub = sections[int(rng.integers(len(sections)))], subs[int(rng.integers(len(subs)))]
        val = values[int(rng.integers(len(values)))]
        f = w / "p.yaml"
        f.write_text(yaml.safe_dump({"/**": {"ros__parameters": {sec: {sub: val} if sub else val}}}))
        yield run_cli(
            [
                "replay",
                A["mcap"],
                "--out",
                fresh(w / "rc"),
                "--config",
                f,
                "--nodes",
                "map_receiver_node,mapper_node",
            ],
            "parameter YAML",
            inputs=[f, A["mcap"]],
        )
    from hostile_cases import hd_doc

    for _ in range(n):
        doc = hd_doc()
        target = doc[["results", "GTs"][int(rng.integers(2))]][0]["vectors"][0]
        key = ["pts", "type", "confidence_level", "extra"][int(rng.integers(4))]
        target[key] = values[int(rng.integers(len(values)))]
        f = w / "hd.json"
        try:
            f.write_text(json.dumps(doc))
        except ValueError:
            continue
        yield run_cli(["hd-eval", f], "hd-eval JSON", inputs=[f], must_name=["hd.json"])
    refs = sorted((SHARED / "splats" / "spz_reference").glob("*.spz"))
    for i in range(n if refs else 0):
        f = w / "m.spz"
        f.write_bytes(mutate(refs[i % len(refs)].read_bytes(), rng))
        yield run_cli(["convert", f, fresh(w / "s.ply")], "SPZ", inputs=[f], must_name=["m.spz"])
    yield from subscription_cases(n)


def subscription_cases(n: int):
    import test_hostile_subscriptions as S

    for node, topic, typename in S._SUBS:
        for seed in range(max(5, n // 5)):
            msg = S._hostile(S._default(typename), np.random.default_rng(seed))
            out = Outcome(f"node subscription ({node})", [topic])
            t0 = time.perf_counter()
            before = dict(S._NODES[node].diag.rejected)
            try:
                S._BUS.inject(topic, msg, S._BUS.now_ns + 1_000_000)
            except BaseException as exc:  # noqa: BLE001
                out.violation = f"escaped the handler: {type(exc).__name__}: {exc}"
            out.seconds = time.perf_counter() - t0
            out.result = "error" if dict(S._NODES[node].diag.rejected) != before else "ok"
            yield out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="cases per generator = 60 × scale")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    n = max(4, int(60 * args.scale))
    t = Path(tempfile.mkdtemp(prefix="hostile_bench_"))
    A = make_assets(t / "assets")
    by_kind: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, float] = defaultdict(float)
    worst: dict[str, float] = defaultdict(float)
    violations = []
    t0 = time.perf_counter()
    for o in cases(A, t, n):
        by_kind[o.kind]["violation" if o.violation else o.result] += 1
        seconds[o.kind] += o.seconds
        worst[o.kind] = max(worst[o.kind], o.seconds)
        if o.violation:
            violations.append(
                {"kind": o.kind, "argv": [str(a) for a in o.argv][:8], "violation": o.violation[:300]}
            )
    total = sum(sum(c.values()) for c in by_kind.values())
    import resource

    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "cases": total,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "by_kind": {
            k: dict(c) | {"seconds": round(seconds[k], 2), "slowest_s": round(worst[k], 2)}
            for k, c in by_kind.items()
        },
        "violations": violations,
    }
    res = ROOT / "bench" / "results"
    save_text(res / "hostile.json", json.dumps(report, indent=2) + "\n")
    lines = [
        "# Hostile inputs: cases by kind and outcomes",
        "",
        f"`bench/hostile.py` (scale {args.scale}): {total} cases in {report['seconds']} s on "
        f"{report['machine']['cpus']} CPUs, peak memory {report['peak_rss_gb']} GB. Outcome rule: a correct "
        "result (ok), or exit 2 with one error line naming the file / field / argument (error); anything "
        "else (traceback, hang, memory blow-up, changed input, several lines, unnamed culprit) is a "
        "violation. Node subscriptions: error = counted as rejected by the node, ok = taken.",
        "",
        "| kind | cases | ok | error (one line) | violations | slowest case (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, c in by_kind.items():
        lines.append(
            f"| {k} | {sum(c.values())} | {c['ok']} | {c['error']} | {c['violation']} | {worst[k]:.2f} |"
        )
    lines += ["", f"**Violations: {len(violations)}**", ""]
    lines += [
        f"- {v['kind']}: `{' '.join(v['argv'])[:150]}`: {v['violation'][:200]}" for v in violations[:30]
    ]
    save_text(res / "hostile.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    main()
