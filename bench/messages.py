"""Benchmark: message ⇄ numpy conversion costs of gs_mapping.messages (CPU, one thread).

Writes bench/results/messages.json and messages.md: the median wall time over repeats of each
conversion at sizes the nodes see (VGA colour and depth, 100k-point clouds, a 10 MB map delta,
50 lane polylines), with the machine (platform, CPUs, torch, load average before/after; the machine
may be shared, so timings read pessimistic).

    .venv/bin/python bench/messages.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from common import median_ms, save_text  # noqa: E402  (bench/ is the script folder)

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np

    import gs_mapping.messages as m

    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    r = args.repeats
    rows = []

    def add(case, size, fn):
        ms = median_ms(fn, r)
        rows.append({"case": case, "size": size, "median_ms": round(ms, 3)})
        print(f"{case:<44} {size:<26} {ms:9.3f} ms")

    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    img = m.numpy_to_image(rgb, "rgb8", 1, "cam")
    img_cdr = m.serialize_cdr(img, m.IMAGE)
    add("Image rgb8 numpy->msg", "640x480", lambda: m.numpy_to_image(rgb, "rgb8", 1, "cam"))
    add("Image rgb8 msg->CDR", "640x480", lambda: m.serialize_cdr(img, m.IMAGE))
    add("Image rgb8 CDR->msg", "640x480", lambda: m.deserialize_cdr(img_cdr, m.IMAGE))
    add("Image rgb8 msg->numpy (image_to_rgb)", "640x480", lambda: m.image_to_rgb(img))
    bgr_padded = m.numpy_to_image(rgb, "bgr8", step=640 * 3 + 64)
    add("Image bgr8 padded step -> RGB", "640x480", lambda: m.image_to_rgb(bgr_padded))

    mm = rng.integers(500, 4000, (480, 640), dtype=np.uint16)
    depth = m.numpy_to_image(mm, "16UC1")
    depth_be = m.numpy_to_image(mm, "16UC1", is_bigendian=True)
    add("Depth 16UC1 -> metres", "640x480", lambda: m.depth_image_to_metres(depth))
    add("Depth 16UC1 big-endian -> metres", "640x480", lambda: m.depth_image_to_metres(depth_be))

    smooth = (np.add.outer(np.arange(480), np.arange(640)) % 256).astype(np.uint8)
    smooth = np.stack([smooth, smooth[::-1], smooth[:, ::-1]], -1)
    jpeg = m.numpy_to_compressed_image(smooth, "jpeg")
    png = m.numpy_to_compressed_image(smooth, "png")
    add("CompressedImage jpeg encode", "640x480", lambda: m.numpy_to_compressed_image(smooth, "jpeg"))
    add("CompressedImage jpeg decode", "640x480", lambda: m.compressed_image_to_numpy(jpeg))
    add("CompressedImage png encode", "640x480", lambda: m.numpy_to_compressed_image(smooth, "png"))
    add("CompressedImage png decode", "640x480", lambda: m.compressed_image_to_numpy(png))

    n = 100_000
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    colours = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    cloud = m.points_to_pointcloud2(xyz, colours, 1, "map")
    cloud_cdr = m.serialize_cdr(cloud, m.POINT_CLOUD2)
    padded = np.zeros(
        n,
        np.dtype(
            {
                "names": ["x", "y", "z", "intensity"],
                "formats": ["<f4", "<f4", "<f4", "<f4"],
                "offsets": [0, 4, 8, 16],
                "itemsize": 32,
            }
        ),
    )
    padded_be = m.array_to_pointcloud2(padded, is_bigendian=True)
    add("PointCloud2 xyz+rgb points->msg", "100k points", lambda: m.points_to_pointcloud2(xyz, colours))
    add("PointCloud2 msg->CDR", "100k points", lambda: m.serialize_cdr(cloud, m.POINT_CLOUD2))
    add("PointCloud2 CDR->msg", "100k points", lambda: m.deserialize_cdr(cloud_cdr, m.POINT_CLOUD2))
    add("PointCloud2 msg->xyz", "100k points", lambda: m.pointcloud2_xyz(cloud))
    add(
        "PointCloud2 padded big-endian msg->array",
        "100k points, 32 B/point",
        lambda: m.pointcloud2_to_array(padded_be),
    )

    payload = rng.bytes(10 * 1024 * 1024)
    delta = m.bytes_to_uint8_multiarray(payload)
    delta_cdr = m.serialize_cdr(delta, m.UINT8_MULTI_ARRAY)
    add("UInt8MultiArray bytes->msg", "10 MiB", lambda: m.bytes_to_uint8_multiarray(payload))
    add("UInt8MultiArray msg->CDR", "10 MiB", lambda: m.serialize_cdr(delta, m.UINT8_MULTI_ARRAY))
    add(
        "UInt8MultiArray CDR->bytes",
        "10 MiB",
        lambda: m.uint8_multiarray_to_bytes(m.deserialize_cdr(delta_cdr, m.UINT8_MULTI_ARRAY)),
    )

    lanes = [rng.normal(size=(100, 3)) for _ in range(50)]

    def build_markers():
        return m.marker_array(
            [m.delete_all_marker()]
            + [
                m.line_strip_marker("lanes", i, pts, (1, 1, 0), "base_link", 1, 0.15)
                for i, pts in enumerate(lanes)
            ]
        )

    markers = build_markers()
    markers_cdr = m.serialize_cdr(markers, m.MARKER_ARRAY)
    add("MarkerArray build", "50 strips x 100 points", build_markers)
    add("MarkerArray msg->CDR", "50 strips x 100 points", lambda: m.serialize_cdr(markers, m.MARKER_ARRAY))
    add(
        "MarkerArray CDR->polylines",
        "50 strips x 100 points",
        lambda: m.marker_array_to_polylines(m.deserialize_cdr(markers_cdr, m.MARKER_ARRAY)),
    )

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    result = {
        "benchmark": "messages",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch_version,
            "device": "cpu",
            "numpy": np.__version__,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "config": {
            "repeats": r,
            "statistic": "median wall time of one call, after one warm-up",
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "results": rows,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_text(out / "messages.json", json.dumps(result, indent=2) + "\n")
    md = [
        "# messages benchmark",
        "",
        f"{platform.platform()}, {os.cpu_count()} CPUs, load {load_before[0]:.1f} → "
        f"{result['machine']['loadavg_after'][0]:.1f}; median of {r} after a warm-up.",
        "",
        "| conversion | size | median ms |",
        "|---|---|---:|",
    ]
    md += [f"| {row['case']} | {row['size']} | {row['median_ms']:.3f} |" for row in rows]
    save_text(out / "messages.md", "\n".join(md) + "\n")
    print(f"wrote {out / 'messages.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
