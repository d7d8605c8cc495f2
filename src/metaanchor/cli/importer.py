"""``metaanchor import``: a pretrained torchvision RetinaNet as a MetaAnchor checkpoint."""

from __future__ import annotations

from metaanchor.errors import UserError

SOURCES = ("torchvision-retinanet",)


def add(sub):
    p = sub.add_parser("import", help="turn torchvision RetinaNet weights into a MetaAnchor checkpoint",
                       description="Read torchvision RetinaNet weights and write a MetaAnchor checkpoint: backbone, "
                                   "FPN and towers copied, generators solved so that torchvision's anchors get "
                                   "exactly the original last-layer weights, and torchvision's transform, anchor "
                                   "strides, post-processing and BatchNorm epsilon carried over: it detects like "
                                   "torchvision's model on the same images, with COCO's class names and category "
                                   "ids, and takes any --anchors in eval/predict. Fine-tune it with "
                                   "model.init_from=CKPT, or start training from torchvision's weights directly "
                                   "with model.init_from=torchvision:NAME.")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="what the weights are")
    p.add_argument("--weights", required=True, metavar="FILE|NAME",
                   help="a state dict (.pth; retinanet_resnet50_fpn or _v2 layout, ResNet-18/34/50/101-FPN) or "
                        "torchvision's COCO weights by name: retinanet_resnet50_fpn (alias retinanet_v1), "
                        "retinanet_resnet50_fpn_v2 (retinanet_v2), RetinaNet_ResNet50_FPN_Weights.COCO_V1, "
                        "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1; a name is read from torchvision's cache or "
                        "downloaded there (only then is anything downloaded)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--hidden-dim", type=int, default=64,
                   help="generator width (default 64; torchvision's 9 anchors on 5 levels need at least 36)")
    p.add_argument("--bn-eps", type=float, default=None, metavar="EPS",
                   help="BatchNorm epsilon of the weights (default: torchvision's for the layout: 0 for "
                        "retinanet_resnet50_fpn, as its COCO weights; 1e-5 for the v2); give 1e-5 for a v1 model "
                        "trained with torchvision's default BatchNorm")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from pathlib import Path

    from metaanchor.deploy.torchvision_import import import_torchvision_weights
    from metaanchor.files import check_outputs
    from metaanchor.modeling.pretrained import detector_weights_name

    if args.hidden_dim < 1:
        raise UserError(f"--hidden-dim {args.hidden_dim}: must be at least 1")
    if args.bn_eps is not None and not 0 <= args.bn_eps <= 1:
        raise UserError(f"--bn-eps {args.bn_eps}: must be between 0 and 1")
    named = detector_weights_name(args.weights) is not None and not Path(args.weights).is_file()
    check_outputs({"--out": args.out}, {} if named else {"--weights": args.weights})
    extra = {} if args.bn_eps is None else {"bn_eps": args.bn_eps}
    model = import_torchvision_weights(args.weights, hidden_dim=args.hidden_dim, **extra)
    model.save(args.out)
    c = model.config
    layout = "v2 (GroupNorm heads, P6 from C5)" if c["head_norm"] == "gn" else "v1"
    print(f"imported a {c['backbone']}-FPN RetinaNet ({model.num_classes} classes, {len(model.anchors)} anchors per "
          f"position, anchor set {model.anchors.spec}) -> {args.out}; torchvision layout {layout}, BatchNorm eps "
          f"{c['bn_eps']:g}, generator fit residual {model.import_residual:.1e}")
    return 0
