"""Renderer benchmark: CPU forward and backward time for 10k / 50k / 100k Gaussians at 320×240.

The scene imitates what the mapper builds: Gaussians seeded on the surfaces seen by the camera (a
room corner: floor, two walls and a box), one per random pixel, with a footprint of about 1.6 px
standard deviation at 10k Gaussians (shrinking as 1/sqrt(N) so that denser maps have smaller
Gaussians, as after densification), log-normal anisotropic scales, random rotations, opacities in
[0.3, 1], SH degree 3. The view is rendered from a pose 10 cm / 3° away from the seeding pose.
"layered x3" seeds the same surfaces three times, 0.3 m apart along the viewing rays, with opacities
≥ 0.9 and 1.5× larger footprints: hidden structure behind what the camera sees, as in a real map,
where compositing stops early once pixels saturate. "room + out of view": 30k Gaussians as in
"room" plus 120k mirrored behind the camera (most of a large map is out of any one view).

    .venv/bin/python bench/render.py [--threads 2] [--repeats 5] [--counts 10000 50000 100000]

writes bench/results/render.json and render.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Busy-waiting OpenMP threads collapse under contention (this 2-core machine is shared): with the
# default ACTIVE policy 2 threads were 10x slower than 1 at load ~9. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import save_text  # noqa: E402  (bench/ is the script folder)

from gs_mapping.render import cpu as render_cpu  # noqa: E402
from gs_mapping.render import rasterize  # noqa: E402
from gs_mapping.render.cuda import gsplat_available  # noqa: E402

W, H = 320, 240
K = np.array([[260.0, 0, 159.5], [0, 260.0, 119.5], [0, 0, 1]])


def room_depth():
    """Depth image of a room corner with a box, seen from the seeding pose."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    z = np.full((H, W), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in (
            np.where(y > 0, 1.2 / y, np.inf),  # floor 1.2 m below
            np.where(x < 0, -1.8 / x, np.inf),  # left wall
            np.full((H, W), 4.0),
        ):  # back wall
            z = np.minimum(z, t)
        box = (x > 0.05) & (x < 0.3) & (y > 0.1) & (y < 0.35)
        z[box] = np.minimum(z[box], 2.2)
    return z


def scene(n, seed=0, layers=1):
    """``layers`` > 1: the same surfaces seeded again 0.3 m, 0.6 m, … behind (structure hidden behind
    what the camera sees, as in a real map seen from one pose), all fairly opaque."""
    rng = np.random.default_rng(seed)
    depth = room_depth()
    if layers > 1:
        per = n // layers
        parts = [scene(per, seed + k, 1) for k in range(layers)]
        for k, part in enumerate(parts):
            part[0] *= 1 + 0.3 * k / part[0][:, 2:3]  # push back along the ray by 0.3 k metres
            part[3] = 0.9 + 0.1 * part[3]
            part[2] = part[2] * 1.5
        return [torch.cat([p[i] for p in parts]) for i in range(5)]
    idx = rng.choice(H * W, size=n, replace=n > H * W)
    v, u = np.divmod(idx, W)
    u = u + rng.uniform(-0.5, 0.5, n)
    v = v + rng.uniform(-0.5, 0.5, n)
    z = depth.reshape(-1)[idx]
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], 1)
    px_sigma = 1.6 * np.sqrt(10_000 / n)
    scales = (z / K[0, 0] * px_sigma)[:, None] * np.exp(rng.normal(0, 0.5, (n, 3)))
    quats = rng.normal(size=(n, 4))
    opac = rng.uniform(0.3, 1.0, n)
    sh = np.zeros((n, 16, 3))
    sh[:, 0] = rng.uniform(-1.5, 1.5, (n, 3))
    sh[:, 1:] = rng.normal(0, 0.05, (n, 15, 3))
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return [f(pts), f(quats), f(scales), f(opac), f(sh)]


def viewmat():
    a = np.deg2rad(3.0)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [0.1, 0.0, 0.0]
    return torch.tensor(T, dtype=torch.float32)


def time_one(params, view, Kt):
    """Wall-clock and process-CPU seconds of forward (projection, binning, compositing) and
    backward (to every input) with an L1-style loss on colour, depth and alpha."""
    ps = [p.clone().requires_grad_() for p in params]
    t0, c0 = time.perf_counter(), time.process_time()
    out = rasterize(*ps, view, Kt, W, H, backend="cpu")
    t1, c1 = time.perf_counter(), time.process_time()
    loss = (out.color - 0.5).abs().mean() + 0.1 * out.depth.abs().mean() + out.alpha.mean()
    loss.backward()
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, t2 - t1, c1 - c0, c2 - c1, out


def compare_gsplat(Kt, view, n=10_000, repeats=20):
    """CPU backend vs gsplat on the same scene (mean absolute differences; goal ≤ 1e-3) and gsplat's
    forward + backward time. Only where a CUDA GPU and gsplat are available."""
    params = scene(n)
    bg = torch.tensor([0.2, 0.3, 0.4])
    with torch.no_grad():
        cpu = rasterize(*params, view, Kt, W, H, backend="cpu", background=bg)
        gpu = rasterize(
            *[p.cuda() for p in params], view.cuda(), Kt.cuda(), W, H, backend="cuda", background=bg.cuda()
        )
    both = (cpu.alpha > 0.5) & (gpu.alpha.cpu() > 0.5)
    out = {
        "gaussians": n,
        "device": torch.cuda.get_device_name(0),
        "color_mean_abs_diff": float((cpu.color - gpu.color.cpu()).abs().mean()),
        "alpha_mean_abs_diff": float((cpu.alpha - gpu.alpha.cpu()).abs().mean()),
        "depth_mean_abs_diff_m_where_alpha_gt_0.5": float((cpu.depth - gpu.depth.cpu())[both].abs().mean()),
    }
    ps = [p.cuda().requires_grad_() for p in params]
    times = []
    for i in range(repeats + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        o = rasterize(*ps, view.cuda(), Kt.cuda(), W, H, backend="cuda")
        ((o.color - 0.5).abs().mean() + 0.1 * o.depth.abs().mean() + o.alpha.mean()).backward()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    out["gsplat_forward_backward_s"] = round(statistics.median(times), 5)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU rasteriser workers (torch itself runs one intra-op thread: gs_mapping.cpu_threads)",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument(
        "--layered",
        type=int,
        default=30_000,
        help="also time a 3-layer scene (surfaces hidden behind surfaces) with this many Gaussians; 0: skip",
    )
    ap.add_argument(
        "--outside",
        type=int,
        default=120_000,
        help="also time 30k Gaussians in view plus this many behind the camera (a map larger "
        "than the view); 0: skip",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from gs_mapping import cpu_threads

    cpu_threads.configure(args.threads)  # torch 1 intra-op thread, the cores to the rasteriser
    Kt = torch.tensor(K, dtype=torch.float32)
    view = viewmat()
    rows = []
    cases = [("room", n, 1) for n in args.counts]
    if args.layered:
        cases.append(("layered x3", args.layered, 3))
    if args.outside:
        cases.append(("room + out of view", 30_000 + args.outside, -args.outside))
    for name, n, layers in cases:
        if layers < 0:  # 30k in view, |layers| mirrored behind the camera
            inside, behind = scene(n + layers), scene(-layers, seed=1)
            behind[0] = behind[0] * torch.tensor([1.0, 1.0, -1.0])
            params = [torch.cat([a, b]) for a, b in zip(inside, behind, strict=False)]
        else:
            params = scene(n, layers=layers)
        time_one(params, view, Kt)  # warm-up
        fw, bw, cf, cb = [], [], [], []
        load0 = os.getloadavg()[0]
        for _ in range(args.repeats):
            f, b, f_cpu, b_cpu, out = time_one(params, view, Kt)
            fw.append(f)
            bw.append(b)
            cf.append(f_cpu)
            cb.append(b_cpu)
        row = {
            "scene": name,
            "gaussians": n,
            "visible": int(out.meta["visible"].sum()),
            "tile_pairs": out.meta["n_isects"],
            "mean_alpha": round(float(out.alpha.detach().mean()), 4),
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "forward_cpu_s": round(statistics.median(cf), 4),
            "backward_cpu_s": round(statistics.median(cb), 4),
            "forward_s": round(statistics.median(fw), 4),
            "backward_s": round(statistics.median(bw), 4),
            "total_s": round(statistics.median([a + b for a, b in zip(fw, bw, strict=False)]), 4),
            "forward_all_s": [round(x, 4) for x in fw],
            "backward_all_s": [round(x, 4) for x in bw],
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    result_gpu = (
        compare_gsplat(Kt, view)
        if gsplat_available()
        else {"status": "not run: no CUDA GPU with gsplat on this machine"}
    )
    result = {
        "benchmark": "render",
        "backend": "cpu",
        "image": [W, H],
        "sh_degree": 3,
        "dtype": "float32",
        "torch_threads": 1,
        "raster_workers": args.threads,
        "repeats": args.repeats,
        "statistic": "median",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "tile_size": render_cpu.TILE_SIZE,
        "chunk_budget": render_cpu.CHUNK_BUDGET,
        "note": (
            "forward_s/backward_s are wall-clock; *_cpu_s is process CPU time (all threads). The 2-core "
            "machine is shared with other jobs (see load_avg_1min), so wall-clock is pessimistic."
        ),
        "goal": "10k Gaussians, 320x240, forward + backward <= 0.5 s on 2 cores",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": "cpu",
            "processor": platform.processor() or platform.machine(),
        },
        "results": rows,
        "gsplat": result_gpu,
    }
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        save_text(args.out / "render.json", json.dumps(result, indent=2) + "\n")
        lines = [
            "# Renderer benchmark (CPU backend)",
            "",
            f"320×240, SH degree 3, float32, torch 1 intra-op thread + {args.threads} rasteriser workers, median of {args.repeats} "
            f"runs; {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}.",
            "",
            "| scene | Gaussians | visible | tile pairs (4×4 px) | forward s | backward s | total s | "
            "forward CPU s | backward CPU s | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['scene']} | {r['gaussians']:,} | {r['visible']:,} | {r['tile_pairs']:,} | "
            f"{r['forward_s']:.3f} | "
            f"{r['backward_s']:.3f} | {r['total_s']:.3f} | {r['forward_cpu_s']:.3f} | "
            f"{r['backward_cpu_s']:.3f} | {r['load_avg_1min'][0]:.1f} |"
            for r in rows
        ]
        g = result["gsplat"]
        lines += [
            "",
            "CPU vs gsplat (10k, same scene): "
            + (
                f"mean |Δ| colour {g['color_mean_abs_diff']:.2e}, alpha {g['alpha_mean_abs_diff']:.2e}, depth "
                f"{g['depth_mean_abs_diff_m_where_alpha_gt_0.5']:.2e} m; gsplat forward + backward "
                f"{g['gsplat_forward_backward_s'] * 1e3:.1f} ms on {g['device']}."
                if "device" in g
                else g["status"] + "."
            ),
        ]
        lines += [
            "",
            "Goal: 10k Gaussians forward + backward ≤ 0.5 s on 2 cores. Wall-clock columns are "
            "medians on a machine shared with other jobs (1-minute load average in the last column); "
            "CPU s is the process CPU time (sum over threads). Scenes: see the docstring of "
            "bench/render.py (room: one layer of Gaussians on the visible surfaces; layered: three "
            "layers 0.3 m apart, opacity ≥ 0.9, where early termination matters; room + out of "
            "view: 30k in view and 120k behind the camera).",
            "",
        ]
        save_text(args.out / "render.md", "\n".join(lines))
    return result


if __name__ == "__main__":
    main()
