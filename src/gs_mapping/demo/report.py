"""Pictures a person wants to see, and ``report.md`` around them (Pillow only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .measure import MAPPED_RANGE_M

CLASS_RGB = {0: (255, 140, 0), 1: (30, 100, 255), 2: (30, 200, 60)}
PX_PER_M = 8  # BEV panels: 30 m wide × 60 m long


def _to_img(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb)


def _label(img: Image.Image, text: str) -> Image.Image:
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    d.text((3, 1), text, fill=(255, 255, 0))
    return img


def _grid(images: list[Image.Image], cols: int) -> Image.Image:
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h), (32, 32, 32))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    return sheet


def bev_panel(pred: dict, gt: dict, title: str) -> Image.Image:
    """Ego BEV (base_link: x forward = up, y left = left), GT grey and wide, predictions by class."""
    w, h = 30 * PX_PER_M, 60 * PX_PER_M
    img = Image.new("RGB", (w, h), (20, 20, 20))
    d = ImageDraw.Draw(img)

    def px(pts):
        p = np.asarray(pts, float)
        return [(w / 2 - y * PX_PER_M, h / 2 - x * PX_PER_M) for x, y in p]

    for v in gt["vectors"]:
        d.line(px(v["pts"]), fill=(110, 110, 110), width=7)
    for v in pred["vectors"]:
        d.line(px(v["pts"]), fill=CLASS_RGB.get(v["type"], (255, 255, 255)), width=2)
    d.rectangle([w / 2 - 8, h / 2 - 16, w / 2 + 8, h / 2 + 4], outline=(255, 255, 255))
    return _label(img, title)


def lane_map_panel(geometry: dict, px_per_m: float = 4.0) -> Image.Image:
    """The fused lane map (map frame, x right, y up) by class over the world's GT map (grey, wide) and
    the driven path (white dots)."""
    pts = [np.asarray(p, float) for _, _, p in geometry["lanes"]] + [np.asarray(geometry["path"], float)]
    allp = np.concatenate([p for p in pts if len(p)])
    lo, hi = allp.min(0) - 10, allp.max(0) + 10
    scale = min(px_per_m, 1600 / max(1.0, float((hi - lo).max())))
    w, h = (int((hi - lo)[0] * scale) + 1, int((hi - lo)[1] * scale) + 1)
    img = Image.new("RGB", (w, h), (20, 20, 20))
    d = ImageDraw.Draw(img)

    def px(p):
        p = np.asarray(p, float)
        return [((x - lo[0]) * scale, h - (y - lo[1]) * scale) for x, y in p]

    for _, p in geometry["gt"]:
        d.line(px(p), fill=(110, 110, 110), width=max(3, int(0.9 * scale)))
    for c, _, p in geometry["lanes"]:
        d.line(px(p), fill=CLASS_RGB.get(c, (255, 255, 255)), width=2)
    for x, y in px(geometry["path"]):
        d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(255, 255, 255))
    return _label(img, "lane map (map frame) over GT")


def line_plot(
    points: list[tuple[float, float, str]], xlabel: str, ylabel: str, size=(480, 320)
) -> Image.Image:
    """A small labelled scatter-and-line chart."""
    w, h = size
    m = 50
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    x0, x1 = xs.min(), xs.max() + 1e-9
    y0, y1 = ys.min() - 0.5, ys.max() + 0.5
    sx = lambda x: m + (x - x0) / (x1 - x0) * (w - 2 * m)  # noqa: E731
    sy = lambda y: h - m - (y - y0) / (y1 - y0) * (h - 2 * m)  # noqa: E731
    d.line([(m, m / 2), (m, h - m), (w - m / 2, h - m)], fill=(0, 0, 0))
    pts = [(sx(x), sy(y)) for x, y, _ in points]
    d.line(pts, fill=(30, 100, 255), width=2)
    for (px_, py_), (x, y, lab) in zip(pts, points, strict=False):
        d.ellipse([px_ - 3, py_ - 3, px_ + 3, py_ + 3], fill=(30, 100, 255))
        d.text((px_ + 5, py_ - 12), f"{lab}: {x:.1f}, {y:.1f}", fill=(0, 0, 0))
    d.text((w / 2 - 40, h - m + 15), xlabel, fill=(0, 0, 0))
    d.text((5, 5), ylabel, fill=(0, 0, 0))
    return img


def write_report(out: Path, metrics: dict, pairs: list, view_rows: list, lods: list, rd: list) -> None:
    pics = {}
    if pairs:
        step = max(1, len(pairs) // 4)
        panels = [bev_panel(p, g, f"frame {i}") for i, (p, g) in list(enumerate(pairs))[::step][:4]]
        _grid(panels, len(panels)).save(out / "lanes_bev.png")
        pics["lanes"] = "lanes_bev.png"
    geometry = metrics.get("hd_map", {}).get("lane_map", {}).get("geometry")
    if geometry and geometry["lanes"]:
        lane_map_panel(geometry).save(out / "lane_map.png")
        pics["lane_map"] = "lane_map.png"
    if view_rows:
        tiles = []
        for k, (p_all, _p_in, color, truth) in enumerate(view_rows[:4]):
            tiles += [
                _label(_to_img(truth), f"held-out view {k}: world"),
                _label(_to_img(color), f"shared map ({p_all:.1f} dB)"),
            ]
        _grid(tiles, 2).save(out / "map_vs_camera.png")
        pics["views"] = "map_vs_camera.png"
    if lods:
        tiles = [_label(_to_img(l["image"]), f"level {l['level']}: {l['gaussians']} G") for l in lods]
        _grid(tiles, min(3, len(tiles))).save(out / "levels_of_detail.png")
        pics["lod"] = "levels_of_detail.png"
    if rd:
        line_plot(
            [(r["bytes_per_gaussian"], r["psnr_vs_uncompressed"], f"q{r['quality']}") for r in rd],
            "bytes per Gaussian",
            "PSNR vs uncompressed (dB)",
        ).save(out / "rate_distortion.png")
        pics["rd"] = "rate_distortion.png"

    hd, m, d = metrics.get("hd_map", {}), metrics.get("mapping", {}), metrics.get("sharing", {})
    lines = [
        "# gs_mapping demo report",
        "",
        f"A procedural drive ({metrics['world']['frames']} frames, {metrics['world']['size']}, seed "
        f"{metrics['world']['seed']}) replayed through hd_map_node, mapper_node and map_receiver_node on "
        f"{metrics['device']}, in {metrics['seconds']['total']:.0f} s.",
        "",
        "## HD map (gsmap_hd) against the world's ground truth",
        "",
        f"- frames evaluated: {hd.get('frames', 0)}, scored in the {hd.get('region', 'whole patch')}",
        f"- Chamfer mAP (MapTR, 0.5/1.0/1.5 m): **{hd.get('chamfer_mAP', float('nan')):.3f}**",
        f"- raster mAP (MapVR IoU): **{hd.get('raster_mAP', float('nan')):.3f}**",
        "",
    ]
    if "lanes" in pics:
        lines += [
            "Predicted lanes (orange divider, blue crossing, green boundary) over ground truth (grey), "
            "both clipped to what the camera covers:",
            "",
            f"![lanes]({pics['lanes']})",
            "",
        ]
    lm = hd.get("lane_map")
    if lm:
        lines += [
            "### The persistent lane map",
            "",
            f"hd_map_node fuses its frames in `map` (association, merging, stable ids, confidence from "
            f"repeated sightings, one-off detections dropped) and shares the map as `~/lanes_delta`. "
            f"Rebuilt from those deltas: {lm['lanes']} lanes. Against the world's global GT map, in "
            f"every frame's camera region: Chamfer mAP **{lm['lane_map_mAP']:.3f}** for the map vs "
            f"{lm['per_frame_mAP']:.3f} for the single frames.",
            "",
        ]
        if "lane_map" in pics:
            lines += [f"![lane map]({pics['lane_map']})", ""]
    lines += [
        "## 3D Gaussian map (mapper → deltas → receiver)",
        "",
        f"- Gaussians: {m.get('gaussians')}, keyframes: {m.get('keyframes')}",
        f"- held-out PSNR of the receiver's map: {m.get('psnr_all', float('nan')):.2f} dB over all pixels, "
        f"{m.get('psnr_in_range', float('nan')):.2f} dB within {MAPPED_RANGE_M:.0f} m (sky and far city are not mapped)",
        f"- receiver map identical to the mapper's map quantised (field by field): **{m.get('receiver_equals_mapper')}**",
        "",
    ]
    if "views" in pics:
        lines += [f"![views]({pics['views']})", ""]
    lines += [
        "## Sharing (gs_map_share)",
        "",
        f"- deltas: {d.get('keyframes')} keyframes, {d.get('delta_bytes_total', 0) / 1e3:.1f} kB in total, "
        f"vs {d.get('full_resend_bytes_total', 0) / 1e3:.1f} kB for re-sending the full map each keyframe "
        f"(**{100 * (d.get('delta_vs_full') or 0):.0f} %**)",
        "",
    ]
    if "lod" in pics:
        lines += ["The shared map decoded up to each level of detail:", "", f"![lod]({pics['lod']})", ""]
    if "rd" in pics:
        lines += [
            "Rate–distortion of the snapshot codec (quality 1–5):",
            "",
            f"![rd]({pics['rd']})",
            "",
            "| quality | bytes/Gaussian | PSNR vs uncompressed (dB) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['quality']} | {r['bytes_per_gaussian']:.2f} | {r['psnr_vs_uncompressed']:.2f} |"
            for r in rd
        ]
        lines += [""]
    lines += [
        "## Latency per node (replay, CPU)",
        "",
        "| node | what | p50 ms | p95 ms |",
        "|---|---|---|---|",
    ]
    for node, lat in metrics.get("latency_ms", {}).items():
        for what, s in lat.items():
            if s:
                lines.append(f"| {node} | {what} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} |")
    lines += [
        "",
        "All figures: `metrics.json`. Output bag (play it with `ros2 bag play`, view in RViz with "
        "`config/gs_mapping.rviz`): `replay_bag/`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
