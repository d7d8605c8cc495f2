"""``metaanchor import``: a pretrained torchvision RetinaNet as a MetaAnchor checkpoint."""

from __future__ import annotations

from metaanchor.errors import UserError

SOURCES = ("torchvision-retinanet",)


def add(sub):
    p = sub.add_parser("import", help="turn torchvision RetinaNet weights into a MetaAnchor checkpoint",
                       description="Read a torchvision RetinaNet state dict (retinanet_resnet50_fpn layout, "
                                   "ResNet-18/34/50/101-FPN backbone; e.g. torchvision's COCO weights, downloaded "
                                   "by you) and write a MetaAnchor checkpoint: backbone, FPN and towers copied, "
                                   "generators solved so that torchvision's anchors get exactly the original "
                                   "last-layer weights. It detects like the original with those anchors and takes "
                                   "any --anchors in eval/predict; fine-tune it with model.init_from=CKPT.")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="what the weights are")
    p.add_argument("--weights", required=True, metavar="FILE", help="the state dict (.pth)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write")
    p.add_argument("--hidden-dim", type=int, default=64,
                   help="generator width (default 64; torchvision's 9 anchors on 5 levels need at least 36)")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from metaanchor.deploy.torchvision_import import import_torchvision_retinanet
    from metaanchor.deploy.torchvision_layout import read_state_dict
    from metaanchor.files import check_outputs

    if args.hidden_dim < 1:
        raise UserError(f"--hidden-dim {args.hidden_dim}: must be at least 1")
    check_outputs({"--out": args.out}, {"--weights": args.weights})
    state = read_state_dict(args.weights, "--weights")
    model = import_torchvision_retinanet(state, hidden_dim=args.hidden_dim, where=f"--weights {args.weights}")
    model.save(args.out)
    print(f"imported a {model.config['backbone']}-FPN RetinaNet ({model.num_classes} classes, "
          f"{len(model.anchors)} anchors per position, anchor set {model.anchors.spec}) -> {args.out}; "
          f"generator fit residual {model.import_residual:.1e}")
    return 0
