"""What container version 11's SH channel prediction (a higher SH coefficient's channels 0 and 2 coded
as differences from channel 1) saves on a real trained scene's coefficients.

    .venv/bin/python bench/sh_channels.py

Playbot (``../shared/data/splats/playbot_sog``, 500k Gaussians, SH 2) coded single level at the
scale-relative presets, its higher SH in both forms the encoder has: per Gaussian (its palette
switched off: how any trained scene's SH travel) and as its SH palette (how playbot's travel, with
the palette's own step). Each with the prediction off (``CHANNEL_PRED_GAIN`` 0: never taken) and
on (the encoder's choice); the two decode to the same map (checked), so only bytes and decode time
move. Times: process CPU s on one core, best of 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from codec_real import SCENES  # noqa: E402
from common import best_time, log, machine_info, write_results  # noqa: E402

from gs_map_share import section  # noqa: E402
from gs_map_share.quantize import QuantParams  # noqa: E402
from gs_map_share.snapshot import decode_map, encode_map  # noqa: E402
from gs_mapping.splat_formats import load_splats  # noqa: E402

torch.set_num_threads(1)


def _sh(m) -> np.ndarray:
    return np.asarray(m.sh[:, 1:])


def main() -> None:
    g = load_splats(SCENES["playbot"])
    n = len(g)
    log(f"playbot: {n} Gaussians, SH {g.sh_degree}")
    rows = []
    palette_rows, gain = section.PALETTE_MIN_ROWS, section.CHANNEL_PRED_GAIN
    try:
        for form in ("per Gaussian", "palette"):
            section.PALETTE_MIN_ROWS = palette_rows if form == "palette" else 1 << 40
            for q in (1, 2, 3):
                p = QuantParams.from_quality(q).relative_to(g)
                if form == "palette":
                    p = p.for_shared_sh(g)
                row = {"form": form, "quality": q}
                maps = []
                for label, on in (("off", 0.0), ("on", gain)):
                    section.CHANNEL_PRED_GAIN = on
                    stats: dict = {}
                    data, _ = encode_map(g, p, n_levels=1, stats=stats)
                    td, dec = best_time(lambda data=data: decode_map(data), 3)
                    maps.append(_sh(dec))
                    row[f"bpg_{label}"] = len(data) / n
                    row[f"sh_bpg_{label}"] = (stats.get("sh_rest", 0) + stats.get("sh_palette_index", 0)) / n
                    row[f"decode_s_{label}"] = td
                row["same_map"] = bool(np.array_equal(maps[0], maps[1]))
                if not row["same_map"]:
                    raise SystemExit("the two forms decoded to different maps")
                log(row)
                rows.append(row)
    finally:
        section.PALETTE_MIN_ROWS, section.CHANNEL_PRED_GAIN = palette_rows, gain
    md = [
        "# SH channels from channel 1 on playbot's real coefficients (bench/sh_channels.py)",
        "",
        "Single level, scale-relative presets; higher SH bytes (coefficients and palette indices) and "
        "total, prediction off → on; the decoded maps are equal.",
        "",
        "| form | quality | higher SH B/G | total B/G | decode s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['form']} | {r['quality']} | {r['sh_bpg_off']:.3f} → {r['sh_bpg_on']:.3f} | "
            f"{r['bpg_off']:.3f} → {r['bpg_on']:.3f} | {r['decode_s_off']:.3f} → {r['decode_s_on']:.3f} |"
        )
    write_results("sh_channels", {"machine": machine_info(), "gaussians": n, "rows": rows}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
