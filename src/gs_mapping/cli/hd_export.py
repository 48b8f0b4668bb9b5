"""``gs-mapping hd-export --onnx OUT.onnx``: a GSMap checkpoint as one ONNX graph (opset 17: the
deformable attention and the camera lifting are ``GridSample``), checked against the torch model on a
world frame before it is written. Run it with ``hd_map_node.backend: onnx`` (onnxruntime; TensorRT /
CUDA execution providers on a Jetson, see docs/hd_model.md)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="write the model as ONNX here")
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped small world model)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest accepted difference to torch on a world frame (logits; Gaussian parameters "
        "relative to their range: patch extent for x/y, scale range for sx/sy, radians for θ; default 1e-4)",
    )


def run(args: argparse.Namespace) -> int:
    import json
    import math
    from pathlib import Path

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.onnx_export import compare_on_world, export_onnx
    from gsmap_hd.predict_bag import SHIPPED

    from ..errors import ConfigError
    from ..output_files import check_output, output_path

    out = Path(args.onnx)
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise ConfigError(f"--tolerance must be a finite number ≥ 0, got {args.tolerance}")
    ckpt = Path(args.checkpoint) if args.checkpoint else SHIPPED
    check_output(out, overwrite=args.overwrite, inputs=[ckpt])  # before the work (parents made)
    model, cfg, state = load_model(ckpt)
    # written beside OUT and checked there; OUT is replaced only by a graph that passed
    with output_path(out, overwrite=args.overwrite, inputs=[ckpt]) as tmp:
        cams = 2 if cfg.rig == "surround" else 1
        step, extra = state.get("step"), state.get("extra")
        export_onnx(model, cfg, tmp, num_cameras=cams, step=step, extra=extra, shown=out)
        diff = compare_on_world(model, cfg, tmp)
        if not diff["max_normalised"] <= args.tolerance:  # (NaN is not within any tolerance)
            raise ConfigError(
                f"{ckpt}: the ONNX graph differs from torch by {diff['max_normalised']:.3g} "
                f"(> --tolerance {args.tolerance:g}) on a world frame; not written"
            )
    print(json.dumps({"onnx": str(out), "checkpoint": str(ckpt), "bytes": out.stat().st_size, **diff}))
    return 0
