"""Benchmark: reading a Livox CustomMsg (a Mid-360's ~20k points, 10 Hz) on each input path (CPU).

Writes bench/results/livox_decode.json and livox_decode.md: the median wall time over repeats of
each step a cloud takes before deskewing, with the machine (the machine may be shared, so timings
read pessimistic). The paths: a bag (rosbags deserialises, points a list of objects, read in one
pass; where the points are only read, `gs-mapping map` and `replay`, the CDR bytes are read as one
array since session #31), rclpy's raw subscription (the same array), the DDS and Zenoh runtimes (cyclonedds
with our block machine for ``points``, beside Cyclone's own per-point machine for reference).

    .venv/bin/python bench/livox_decode.py [--repeats 7] [--points 20000]
"""

from __future__ import annotations

import argparse
import os

from common import machine_info, median_ms, write_results  # noqa: E402  (bench/ is the script folder)

TYPE = "livox_ros_driver2/msg/CustomMsg"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--points", type=int, default=20000)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np

    import gs_mapping.messages as m
    from gs_mapping.runtime import dds_types

    rng = np.random.default_rng(0)
    n = args.points
    store = m.typestore()
    point = store.types[TYPE.replace("CustomMsg", "CustomPoint")]
    xyz = rng.uniform(-40, 40, (n, 3)).astype(np.float32)
    points = [
        point(offset_time=i * 5000, x=float(a), y=float(b), z=float(c), reflectivity=9, tag=16, line=i % 4)
        for i, (a, b, c) in enumerate(xyz)
    ]
    msg = store.types[TYPE](
        header=m.make_header(1_700_000_000 * 10**9, "livox_frame"),
        timebase=1_700_000_000 * 10**9,
        point_num=n,
        lidar_id=0,
        rsvd=np.zeros(3, np.uint8),
        points=points,
    )
    cdr = bytes(store.serialize_cdr(msg, TYPE))
    arrays = m.custom_msg_from_cdr(cdr)
    plain = dds_types.idl_class(TYPE).__idl__.v1_machine.members_machines["points"]

    rows = []

    def add(path, step, fn):
        ms = median_ms(fn, args.repeats)
        rows.append({"path": path, "step": step, "median_ms": round(ms, 3)})
        print(f"{path:<20} {step:<52} {ms:9.3f} ms")

    add(
        "bag, to play or copy",
        "rosbags CDR -> message (points: objects)",
        lambda: store.deserialize_cdr(cdr, TYPE),
    )
    add("bag, to play or copy", "message -> xyz, times (cloud_xyz_times)", lambda: m.cloud_xyz_times(msg))
    add("bag, map / replay", "CDR -> message (points: one array)", lambda: m.custom_msg_from_cdr(cdr))
    add("bag, map / replay", "message -> xyz, times (cloud_xyz_times)", lambda: m.cloud_xyz_times(arrays))
    add("rclpy raw", "CDR -> message (points: one array)", lambda: m.custom_msg_from_cdr(cdr))
    add("rclpy raw", "message -> xyz, times (cloud_xyz_times)", lambda: m.cloud_xyz_times(arrays))
    add("dds/zenoh", "CDR -> message, block machine", lambda: dds_types.deserialize(cdr, TYPE))
    from cyclonedds.idl._machinery import SequenceMachine, StructMachine

    sub = dds_types.idl_class(TYPE.replace("CustomMsg", "CustomPoint")).__idl__.v1_machine
    per_point = SequenceMachine(sub) if isinstance(sub, StructMachine) else None
    if per_point is not None:  # (Cyclone's own machine, for reference)
        machines = dds_types.idl_class(TYPE).__idl__.v1_machine.members_machines
        machines["points"] = per_point
        try:
            add(
                "dds/zenoh",
                "CDR -> message, Cyclone's per-point machine",
                lambda: dds_types.deserialize(cdr, TYPE),
            )
        finally:
            machines["points"] = plain
    data = {"machine": machine_info(), "points": n, "repeats": args.repeats, "rows": rows}
    md = [
        f"# Livox CustomMsg decode ({n} points; median of {args.repeats})",
        "",
        "| path | step | ms |",
        "|---|---|---|",
    ]
    md += [f"| {r['path']} | {r['step']} | {r['median_ms']:.3f} |" for r in rows]
    print(write_results("livox_decode", data, "\n".join(md)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
