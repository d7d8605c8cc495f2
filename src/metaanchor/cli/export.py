"""``metaanchor export``: bake an anchor set into a checkpoint's model and write ONNX, TorchScript or a
torchvision RetinaNet state dict, optionally verified against PyTorch."""

from __future__ import annotations

from metaanchor.errors import UserError

FORMATS = ("onnx", "torchscript", "torchvision")


def add(sub):
    p = sub.add_parser("export", help="bake an anchor set and export to ONNX, TorchScript or torchvision",
                       description="Bake ANCHORS into the model (the generated last convs become plain convs: a "
                                   "predefined-anchor model, no generator at run time) and write it as FORMAT. "
                                   "onnx / torchscript: the raw-outputs graph (normalised padded batch in; class "
                                   "logits, box deltas, anchors, level sizes out; dynamic batch and size) with the "
                                   "post-processing settings stored in the file; run it with "
                                   "metaanchor/deploy/numpy_postprocess.py. torchvision: a torchvision RetinaNet "
                                   "state dict. --verify runs the exported model and the PyTorch model on the "
                                   "images, prints the max |difference| of raw outputs and whether the detections "
                                   "match, and exits 1 when they do not.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--anchors", help="anchor SPEC to bake (default: the checkpoint's training set)")
    p.add_argument("--format", required=True, help="onnx | torchscript | torchvision")
    p.add_argument("--output", required=True, help="file to write")
    p.add_argument("--verify", nargs="+", metavar="IMAGE", help="images to compare exported and PyTorch outputs on")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from metaanchor.cli.common import check_anchors_and_batch, load_model

    if args.format not in FORMATS:
        raise UserError(f"--format {args.format}: unknown; choose one of {', '.join(FORMATS)}")
    check_anchors_and_batch(args)
    images = _read_images(args.verify) if args.verify else None
    model = load_model(args.checkpoint, "cpu")
    baked = model.bake(args.anchors if args.anchors is not None else model.train_anchors)
    path = _write(args.format, baked, args.output)
    print(f"{args.format}: {baked.arch} with anchors {baked.anchors.spec} "
          f"({baked.anchors.num_anchors(len(baked.strides))[0]} per position) -> {path}")
    if images is None:
        return 0
    result = _verify(args.format, baked, path, images)
    verdict = "match" if result["match"] else "MISMATCH"
    print(f"verify on {len(images)} images: max |difference| of raw outputs {result['max_abs_diff']:.3g}; "
          f"detections {verdict}" + (f" ({result['detections']} detections)" if "detections" in result else ""))
    return 0 if result["match"] else 1


def _read_images(paths: list[str]):
    from metaanchor.data.io import load_image

    return [load_image(p) for p in paths]


def _write(fmt: str, baked, output: str):
    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import export_onnx

        return export_onnx(baked, output)
    if fmt == "torchscript":
        from metaanchor.deploy.torchscript_export import export_torchscript

        return export_torchscript(baked, output)
    return _torchvision_compat().export_torchvision(baked, output)


def _verify(fmt: str, baked, path, images) -> dict:
    if fmt == "torchvision":
        return _torchvision_compat().verify_torchvision(baked, path, images)
    from metaanchor.deploy.verify import verify

    if fmt == "onnx":
        from metaanchor.deploy.onnx_export import onnx_runner as runner
    else:
        from metaanchor.deploy.torchscript_export import torchscript_runner as runner
    return verify(baked, runner(path)[0], images)


def _torchvision_compat():
    try:
        from metaanchor.deploy import torchvision_compat
    except ImportError as e:
        raise UserError(f"--format torchvision: not available in this metaanchor version ({e})") from None
    return torchvision_compat
