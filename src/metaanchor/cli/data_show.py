"""``metaanchor data show``: ground truth, the anchor each box is matched to in training, the boxes none reaches."""

from __future__ import annotations

import sys
from pathlib import Path

from metaanchor.cli.common import anchor_files, check_anchors_and_batch, load_model
from metaanchor.errors import UserError


def add_show(dsub):
    s = dsub.add_parser("show", help="draw ground truth and the anchors each box is matched to in training",
                        description="For the first --num-images images of a dataset, draw each ground-truth box, the "
                                    "anchor it is matched to in training by the family's matcher at the network's "
                                    "input scale (RetinaNet: best anchor by IoU, labelled with its pyramid level "
                                    "and IoU; YOLOv2: the anchor of best shape in the box's cell, shape IoU), and "
                                    "in red the boxes no anchor reaches (below the positive IoU: RetinaNet's "
                                    "model.fg_iou, YOLOv2 0.5), which train only from a low-quality match or "
                                    "not at all. Prints one line per image and one for all. Without --checkpoint "
                                    "the anchors are laid out as a model of --arch with the default config "
                                    "would lay them out (the geometry needs no weights).")
    s.add_argument("--data", required=True,
                   help="a COCO folder or JSON, a VOC root or an ultralytics data.yaml, read in place")
    s.add_argument("--images", metavar="DIR", help="image folder when --data is a COCO JSON without images/ beside "
                                                   "it, or a VOC root's, when not JPEGImages/")
    s.add_argument("--split", metavar="NAME", help="VOC split or data.yaml entry (default: train)")
    s.add_argument("--checkpoint", help="take the input size, pyramid, matcher and anchor set from this model")
    s.add_argument("--anchors", help="anchor SPEC to lay out (default: the checkpoint's, else the config's "
                                     "anchors.train)")
    s.add_argument("--arch", default="retinanet", help="family without --checkpoint: retinanet or yolov2")
    s.add_argument("--input-size", type=int, help="network input short side (default: the checkpoint's, else "
                                                  "the default config's input.size)")
    s.add_argument("--num-images", type=int, default=8, metavar="N", help="number of images to draw")
    s.add_argument("--all", action="store_true",
                   help="also print the summary over every image of the split (sizes and boxes from the "
                        "annotations; no image is read)")
    s.add_argument("--out", required=True, help="folder for the pictures, OUT/<stem>_anchors.png, each image "
                                                "drawn at the network's input size")
    s.set_defaults(func=cmd_show)


def _model(args, data):
    """The detector whose anchor layout is shown: the checkpoint's, or one of --arch built from the default
    config (random weights: the layout does not depend on them)."""
    from metaanchor.geometry.anchors import AnchorSet

    if args.checkpoint:
        model = load_model(args.checkpoint, "cpu")
    else:
        from metaanchor.config import default_config, model_kwargs
        from metaanchor.families import ARCHS, detector_class

        if args.arch not in ARCHS:
            raise UserError(f"--arch {args.arch}: unknown; choose one of {', '.join(ARCHS)}")
        cfg = default_config(args.arch)
        cfg["input"]["size"] = args.input_size or cfg["input"]["size"]
        model = detector_class(args.arch)(**model_kwargs(cfg, len(data.cat_ids), data.class_names))
    if args.input_size and args.checkpoint:
        model.batcher.min_size = model.batcher.max_size = args.input_size
    if args.anchors:
        # Only the layout is drawn, so the set replaces the model's without generating head weights for it
        # (a predefined-anchor head could not take another count).
        model.anchors = AnchorSet.parse(args.anchors)
        model.anchors.sizes(model.standard_sizes)  # a per-level set must have the model's levels
    return model.eval()


def _picture_names(files: list[Path], out: Path) -> list[Path]:
    """OUT/<stem>_anchors.png, -1, -2, ... when stems repeat."""
    taken, names = set(), []
    for f in files:
        k = 0
        while (name := out / (f"{f.stem}_anchors.png" if k == 0 else f"{f.stem}_anchors-{k}.png")) in taken:
            k += 1
        taken.add(name)
        names.append(name)
    return names


def _unreached_text(view: dict, level_names: list[str], most: int = 3) -> str:
    """The unreached boxes of one image, worst IoU first (``most`` of them): h x w px at the image's scale,
    the best IoU and its level."""
    bad = [(iou, box, lv) for box, iou, lv, ok in zip(view["boxes"].tolist(), view["iou"].tolist(),
                                                       view["level"].tolist(), view["reached"].tolist()) if not ok]
    if not bad:
        return ""
    bad.sort(key=lambda t: t[0])
    shown = [f"{b[3] - b[1]:.0f}x{b[2] - b[0]:.0f} (IoU {iou:.2f} at {level_names[lv]})" for iou, b, lv in bad[:most]]
    more = f" and {len(bad) - most} more" if len(bad) > most else ""
    return "; unreached (h x w image px, worst first): " + ", ".join(shown) + more


def cmd_show(args) -> int:
    from metaanchor.data.sources import open_dataset
    from metaanchor.engine.anchor_view import anchor_matches, dataset_summary, format_summary, level_name, summary
    from metaanchor.errors import DataError
    from metaanchor.files import check_outputs, write_atomic
    from metaanchor.visualize import draw_anchor_matches

    check_anchors_and_batch(args)
    if args.num_images < 1:
        raise UserError(f"--num-images {args.num_images}: must be at least 1")
    if args.input_size is not None and args.input_size < 1:
        raise UserError(f"--input-size {args.input_size}: must be at least 1")
    out = Path(args.out)
    check_outputs({"--out": out}, {"--data": args.data, "--images": args.images,
                                   "--checkpoint": args.checkpoint, "--anchors": anchor_files(args.anchors)},
                  folders=["--out"])
    data = open_dataset(args.data, args.images, args.split, default_split="train")
    model = _model(args, data)
    levels = [level_name(s) for s in model.strides]
    n = min(args.num_images, len(data))
    names = _picture_names([data.image_path(i) for i in range(n)], out)
    print(f"anchors {model.anchors.spec} on {', '.join(f'{lv} (stride {s})' for lv, s in zip(levels, model.strides))}"
          f", input short side {model.batcher.min_size} (long side <= {model.batcher.max_size})")
    out.mkdir(parents=True, exist_ok=True)
    views = []
    for i in range(n):
        try:
            image, target = data[i]
        except DataError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        view = anchor_matches(model, image, target["boxes"])
        views.append(view)
        drawn = draw_anchor_matches(image, view, levels, size=view["input_size"])  # as the network sees it
        write_atomic(names[i], lambda fh, im=drawn: im.save(fh, format="PNG"))
        line = format_summary(str(data.image_path(i).name), summary([view]))
        print(f"{line}{_unreached_text(view, levels)} -> {names[i]}")
    if not views:
        raise UserError(f"--data {args.data}: none of the {n} images could be read")
    s = summary(views)
    print(format_summary(f"all {len(views)} images", s) + f" (positive IoU {views[0]['positive_iou']:g})")
    if args.all:
        print(format_summary(f"whole split ({len(data)} images)", dataset_summary(model, data, sys.stderr.isatty())))
    return 0
