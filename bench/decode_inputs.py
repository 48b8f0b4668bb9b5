"""Per-frame decode cost of the inputs real robots record (issue 16), on the RealSense-layout kitchen bag
(640x480): JPEG colour and compressedDepth PNG as recorded, the same depth as compressedDepth RVL and as
32FC1 inverse depth (PNG and RVL), and the raw Image layouts for reference; OpenCV's decode of the same
bytes beside ours where it applies (OpenCV is a test-only dependency here, not used by the product).

Writes bench/results/decode_inputs.{json,md}.    python bench/decode_inputs.py [--frames 20]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "test"))  # the RVL test encoder (test material)

from common import machine_info, write_results  # noqa: E402

from gs_mapping import messages as M  # noqa: E402
from gs_mapping.bag import BagReader  # noqa: E402
from gs_mapping.messages.camera_image import color_to_rgb, depth_to_metres  # noqa: E402
from gs_mapping.messages.compressed_depth import inverse_depth_params, numpy_to_compressed_depth  # noqa: E402


def per_call_ms(fn, items, repeat: int = 3) -> float:
    """Median over items of the best of ``repeat`` calls, in milliseconds."""
    times = []
    for it in items:
        best = min(_timed(fn, it) for _ in range(repeat))
        times.append(best)
    return 1000 * statistics.median(times)


def _timed(fn, it) -> float:
    t0 = time.perf_counter()
    fn(it)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    from test_real_inputs_codecs import rvl_encode

    bag = Path(args.data) / "realsense_kitchen_rgbd"
    color_t = "/camera/camera/color/image_raw/compressed"
    depth_t = "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth"
    colors, depths = [], []
    with BagReader(bag) as r:
        for topic, _s, msg in r.messages([color_t, depth_t]):
            (colors if topic == color_t else depths).append(msg)
    colors, depths = colors[: args.frames], depths[: args.frames]
    mm = [np.nan_to_num(depth_to_metres(d) * 1000, nan=0).round().astype(np.uint16) for d in depths]
    metres = [np.where(m > 0, m / 1000.0, np.nan).astype(np.float32) for m in mm]
    a, b = inverse_depth_params()
    inv = [numpy_to_compressed_depth(f) for f in metres]  # 32FC1 PNG (quantised inverse depth)
    rvl16 = [
        NS(
            format="16UC1; compressedDepth rvl",
            data=struct.pack("<iff", 0, 0, 0) + struct.pack("<II", 640, 480) + rvl_encode(m),
        )
        for m in mm
    ]
    q = [np.frombuffer(bytes(m.data)[12:], np.uint8) for m in inv]
    rvl32 = []
    for qq in q:
        import io

        from PIL import Image

        qi = np.asarray(Image.open(io.BytesIO(qq.tobytes()))).astype(np.uint16)
        rvl32.append(
            NS(
                format="32FC1; compressedDepth rvl",
                data=struct.pack("<iff", 0, a, b) + struct.pack("<II", 640, 480) + rvl_encode(qi),
            )
        )
    raw_rgb = [M.numpy_to_image(color_to_rgb(c), "rgb8") for c in colors]
    raw_bgr = [M.numpy_to_image(np.ascontiguousarray(color_to_rgb(c)[:, :, ::-1]), "bgr8") for c in colors]
    raw_depth = [M.numpy_to_image(m, "16UC1") for m in mm]

    rows = []

    def row(name, fn, msgs, size_of, ref=None):
        ours = per_call_ms(fn, msgs)
        size = statistics.median(size_of(m) for m in msgs)
        rows.append(
            {"input": name, "ms_per_frame": ours, "bytes_per_frame": size, "opencv_ms_per_frame": ref}
        )
        print(
            f"{name:45s} {ours:7.2f} ms  {size / 1024:8.1f} KiB"
            + (f"  (OpenCV {ref:.2f} ms)" if ref else ""),
            flush=True,
        )

    def nbytes(m):
        return len(bytes(m.data))

    try:
        import cv2

        cv_jpeg = per_call_ms(
            lambda m: cv2.imdecode(np.frombuffer(bytes(m.data), np.uint8), cv2.IMREAD_COLOR), colors
        )
        cv_png = per_call_ms(
            lambda m: cv2.imdecode(np.frombuffer(bytes(m.data)[12:], np.uint8), cv2.IMREAD_UNCHANGED), depths
        )
    except ImportError:
        cv_jpeg = cv_png = None
    row("colour JPEG CompressedImage (recorded)", color_to_rgb, colors, nbytes, cv_jpeg)
    row("depth 16UC1 compressedDepth PNG (recorded)", depth_to_metres, depths, nbytes, cv_png)
    row("depth 16UC1 compressedDepth RVL", depth_to_metres, rvl16, nbytes)
    row("depth 32FC1 compressedDepth PNG (inverse depth)", depth_to_metres, inv, nbytes)
    row("depth 32FC1 compressedDepth RVL (inverse depth)", depth_to_metres, rvl32, nbytes)
    row("colour rgb8 Image (raw)", color_to_rgb, raw_rgb, nbytes)
    row("colour bgr8 Image (raw)", color_to_rgb, raw_bgr, nbytes)
    row("depth 16UC1 Image (raw)", depth_to_metres, raw_depth, nbytes)

    data = {
        "machine": machine_info(),
        "bag": str(bag),
        "frames": len(colors),
        "size": "640x480",
        "rows": rows,
    }
    md = [
        "# decode_inputs: per-frame decode cost of recorded camera inputs (640x480, RealSense-layout kitchen bag)",
        "",
        f"{data['machine']['platform']}, {data['machine']['cpus']} CPUs, load {data['machine']['load_avg_1m']:.1f} "
        f"(shared machine); median over {len(colors)} frames of the best of 3; decode to RGB uint8 / depth "
        "float32 metres as the mapper uses them.",
        "",
        "| input | ms / frame | KiB / frame | OpenCV decode of the same bytes (ms) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        ref = f"{r['opencv_ms_per_frame']:.2f}" if r["opencv_ms_per_frame"] else ""
        md.append(f"| {r['input']} | {r['ms_per_frame']:.2f} | {r['bytes_per_frame'] / 1024:.1f} | {ref} |")
    print(write_results("decode_inputs", data, "\n".join(md)))


if __name__ == "__main__":
    main()
