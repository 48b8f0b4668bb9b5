"""``gs-mapping hd-eval FILE.json``: HD-map metrics of predictions against ground truth.

FILE is ``{"results": [frame, ...], "GTs": [frame, ...]}`` (see :mod:`gsmap_hd.eval_io`). Prints
one JSON object with the MapTR Chamfer AP and the MapVR rasterised-IoU AP (see
:mod:`gsmap_hd.metrics`). Bad input prints one line naming the frame/vector/key and exits 2.
"""

from __future__ import annotations

FRAMES = ("maptr", "rep103")
MAX_INDENT = 16  # an indent for reading; more only multiplies the output (10**7: 4.6 GB)


def add_arguments(parser):
    parser.add_argument("file", help="JSON with 'results' and 'GTs' frame lists")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--no-raster", action="store_true", help="skip the raster IoU AP")
    parser.add_argument("--no-chamfer", action="store_true", help="skip the Chamfer AP")
    parser.add_argument(
        "--frame",
        choices=FRAMES,
        default=None,
        help="coordinate convention of the points: 'maptr' (x right +-15 m, y forward "
        "+-30 m, as MapTR/MapVR) or 'rep103' (x forward, y left; rotated first); default: the "
        "file's own 'frame' (hd-predict writes rep103), else maptr",
    )
    parser.add_argument(
        "--opencv-fill",
        choices=("4.7", "4.11"),
        default="4.7",
        help="reproduce the ped-crossing fill of OpenCV <=4.7 (MapVR era, default) "
        "or >=4.11; they differ only where a polygon is clipped by the border",
    )
    parser.add_argument(
        "--region",
        choices=("file", "none"),
        default="file",
        help="'file' (default): where a result frame carries a 'region' (what its cameras cover, "
        "written by hd-predict), clip its predictions and its GT to it (MapTR's clipping: cut at the "
        "border, split into pieces); 'none': score the vectors as written",
    )
    parser.add_argument(
        "--indent", type=int, default=None, help=f"indent the printed JSON by 0..{MAX_INDENT} spaces"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (never the input)"
    )


def run(args) -> int:
    import json

    from gs_mapping.errors import ConfigError
    from gs_mapping.output_files import check_output, write_bytes
    from gsmap_hd.eval_io import parse_submission, read_json
    from gsmap_hd.metrics import evaluate
    from gsmap_hd.region import clip_documents

    if args.indent is not None and not 0 <= args.indent <= MAX_INDENT:
        raise ConfigError(f"--indent: expected 0..{MAX_INDENT} spaces, got {args.indent}")
    if (
        args.out is not None
    ):  # (an empty --out is refused, not taken for none) before the work: a refused output is one line, not a result then an error
        check_output(args.out, overwrite=args.overwrite, inputs=[args.file])
    doc = read_json(args.file)
    results, gts = parse_submission(doc, args.file)  # validates it (errors name frame/vector/key)
    frame = args.frame or doc.get("frame", "maptr")
    if frame not in FRAMES:
        raise ConfigError(f"{args.file}: 'frame' is {str(frame)[:40]!r}, expected one of {', '.join(FRAMES)}")
    clipped = 0
    if args.region == "file":
        res_docs, gt_docs, clipped = clip_documents(doc["results"], doc["GTs"], args.file)
        if clipped:
            results, gts = parse_submission({"results": res_docs, "GTs": gt_docs}, args.file)
    out = evaluate(
        results,
        gts,
        chamfer_metric=not args.no_chamfer,
        raster_metric=not args.no_raster,
        fill_variant=args.opencv_fill,
        frame=frame,
    )
    out["region_clipped_frames"] = clipped
    out["frame"] = frame
    if doc.get("interrupted") is True:  # (hd-predict's rescue of a stopped run: its frames so far)
        out["interrupted"] = True  # kept, so the figures are not taken for the whole drive's
    text = json.dumps(out, indent=args.indent)
    print(text)
    if args.out is not None:
        write_bytes(args.out, (text + "\n").encode(), overwrite=args.overwrite, inputs=[args.file])
    return 0
