"""``metaanchor export``: bake an anchor set into a checkpoint's model and write ONNX, a torch.export program,
a torchvision RetinaNet state dict or TorchScript, optionally verified against PyTorch."""

from __future__ import annotations

from metaanchor.defaults import PREDICT_SCORE_THRESH

# deploy.export.FORMATS and ONNX_EXPORTERS, named here so `--help` imports no torch
FORMATS = ("onnx", "pt2", "torchvision", "torchscript")
ONNX_EXPORTERS = ("dynamo", "legacy")
FORMAT_HELP = ("onnx: ONNX, the raw-outputs graph (with --nms: image in, detections out); "
               "pt2: torch.export program (torch.export.load); "
               "torchvision: a torchvision RetinaNet state dict; "
               "torchscript: TorchScript, which torch deprecates (pt2 replaces it; exporting warns once)")


def add(sub):
    p = sub.add_parser("export", help="bake an anchor set and export to ONNX, torch.export (pt2), torchvision or "
                                      "TorchScript",
                       description="Bake ANCHORS into the model (the generated last convs become plain convs: a "
                                   "predefined-anchor model, no generator at run time) and write it as FORMAT. "
                                   "onnx / pt2 / torchscript: the raw-outputs graph (normalised padded batch in; class "
                                   "logits, box deltas, anchors, level sizes out; dynamic batch and size) with the "
                                   "post-processing settings stored in the file; run it with "
                                   "metaanchor/deploy/numpy_postprocess.py. onnx --nms: decoding, score threshold, "
                                   "per-class NMS and top-k inside the graph (batch 1: the resized image in [0, 1] and "
                                   "its original size in, boxes in original pixels, scores and labels out; see "
                                   "metaanchor/deploy/onnx_nms.py). --half: float16 weights and activations (onnx, "
                                   "pt2), float32 input and outputs. torchvision: a torchvision RetinaNet state dict. "
                                   "torchscript: torch deprecates TorchScript; pt2 (torch.export) is its replacement. "
                                   "--verify runs the exported model and the PyTorch model on the images, prints the "
                                   "max |difference| of raw outputs (--nms: of the detections) and whether the "
                                   "detections match, and exits 1 when they do not.")
    p.add_argument("--checkpoint", required=True, help="checkpoint to export (last.pt / best.pt)")
    p.add_argument("--anchors", help="anchor SPEC to bake (default: the checkpoint's training set)")
    p.add_argument("--format", required=True, metavar="FORMAT", help=f"{' | '.join(FORMATS)}. {FORMAT_HELP}")
    p.add_argument("--output", required=True, help="file to write")
    p.add_argument("--nms", action="store_true",
                   help="onnx only: put decoding and NMS into the graph (default: off, raw outputs)")
    p.add_argument("--half", action="store_true",
                   help="onnx and pt2 only: float16 weights and activations, for GPU runtimes (default: off, float32)")
    p.add_argument("--onnx-exporter", choices=ONNX_EXPORTERS,
                   help="onnx only: torch's exporter (default: dynamo, torch.export-based, falling back to legacy "
                        "with a one-line warning when it fails; --nms graphs: legacy)")
    p.add_argument("--score-thresh", type=float, default=PREDICT_SCORE_THRESH,
                   help="minimum score the exported model keeps (stored in the file; the --nms graph applies it); "
                        "default %(default)s, as predict")
    p.add_argument("--verify", nargs="+", metavar="IMAGE", help="images to compare exported and PyTorch outputs on")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from metaanchor.cli.common import anchor_files, check_anchors_and_batch, load_model
    from metaanchor.deploy.export import check_options, export, verify_export
    from metaanchor.files import check_outputs

    check_options(args.format, args.nms, args.half, args.onnx_exporter)
    check_anchors_and_batch(args)
    from metaanchor.deploy.torchvision_export import sidecar_path

    written = [args.output] + ([sidecar_path(args.output)] if args.format == "torchvision" else [])
    check_outputs({"--output": written}, {"--checkpoint": args.checkpoint, "--verify": args.verify,
                                          "--anchors": anchor_files(args.anchors)})
    if args.format == "torchvision":
        _check_sidecar(args.output, sidecar_path(args.output))
    images = _read_images(args.verify) if args.verify else None
    model = load_model(args.checkpoint, "cpu")
    baked = model.bake(args.anchors if args.anchors is not None else model.train_anchors, args.score_thresh)
    path = export(baked, args.format, args.output, args.nms, args.half, args.onnx_exporter)
    extras = "".join(f", {name}" for name, on in (("float16", args.half), ("with NMS", args.nms)) if on)
    print(f"{args.format}: {baked.arch} with anchors {baked.anchors.spec} "
          f"({baked.anchors.num_anchors(len(baked.strides))[0]} per position{extras}) -> {path}")
    if images is None:
        return 0
    result = verify_export(baked, args.format, path, images, args.nms, args.half)
    verdict = "match" if result["match"] else "MISMATCH"
    print(f"verify on {len(images)} images: max |difference| of {result.get('compared', 'raw outputs')} "
          f"{result['max_abs_diff']:.3g}; detections {verdict}"
          + (f" ({result['detections']} {result.get('counted', 'detections')})" if "detections" in result else ""))
    return 0 if result["match"] else 1


def _check_sidecar(output: str, side) -> None:
    """The torchvision build description OUT.json is written beside OUT unasked: refuse to replace a file there
    that export did not write (e.g. a dataset's annotations.json)."""
    import json

    from metaanchor.deploy.torchvision_layout import BUILD_FORMAT
    from metaanchor.errors import UserError

    if not side.is_file():
        return
    try:
        ours = json.loads(side.read_text()).get("format") == BUILD_FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise UserError(f"--output {output}: its build description {side} would replace a file export did not "
                        "write; choose another --output")


def _read_images(paths: list[str]):
    from metaanchor.data.io import load_image

    return [load_image(p) for p in paths]
