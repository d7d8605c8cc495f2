"""``metaanchor eval``: COCO evaluation of a checkpoint with any anchor set."""

from __future__ import annotations

import json
import sys

from metaanchor.cli.common import anchor_files, check_anchors_and_batch, load_model
from metaanchor.errors import UserError


def add(sub):
    p = sub.add_parser("eval", help="COCO evaluation of a checkpoint (any anchor set)",
                       description="Evaluate a checkpoint with pycocotools; prints AP, AP50, AP75, APs/m/l, AR "
                                   "and a per-class table (AP, AP50, ground-truth boxes).")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (last.pt / best.pt)")
    p.add_argument("--data", required=True,
                   help="a COCO folder (DIR/annotations.json + DIR/images) or COCO JSON, a VOC root (Annotations/, "
                        "JPEGImages/) or an ultralytics data.yaml, read in place")
    p.add_argument("--images", help="image folder when --data is a COCO JSON without images/ beside it, or a VOC "
                                    "root's, when not JPEGImages/")
    p.add_argument("--split", metavar="NAME",
                   help="VOC split (ImageSets/Main/NAME.txt) or data.yaml entry to evaluate on (default: val)")
    p.add_argument("--anchors", help="anchor SPEC to evaluate with (default: the training set)")
    p.add_argument("--json-out", help="write metrics as JSON (keys AP, AP50, AP75, APs, APm, APl, ...)")
    p.add_argument("--save-json", metavar="FILE",
                   help="also write the detections evaluated (COCO results format, the dataset's own image and "
                        "category ids; loadable with pycocotools COCO.loadRes)")
    p.add_argument("--plot", metavar="FILE", help="draw the precision-recall curves at IoU 0.5 (per class and all) "
                                                  "as a PNG")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-invalid", action="store_true",
                   help="drop (and count) bad annotations instead of failing (as data.skip_invalid)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first unreadable image or bad annotation instead of skipping it")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from metaanchor.data.sources import open_dataset
    from metaanchor.engine.evaluate import METRIC_KEYS, evaluate, format_per_class
    from metaanchor.files import check_outputs, write_atomic

    check_anchors_and_batch(args)
    check_outputs({"--json-out": args.json_out, "--save-json": args.save_json, "--plot": args.plot},
                  {"--checkpoint": args.checkpoint, "--data": args.data, "--images": args.images,
                   "--anchors": anchor_files(args.anchors)})
    model = load_model(args.checkpoint, args.device)
    data = open_dataset(args.data, args.images, args.split, default_split="val",
                        skip_invalid=args.skip_invalid and not args.fail_fast, fail_fast=args.fail_fast)
    if len(data.cat_ids) != model.num_classes:
        raise UserError(f"{data.ann_file}: has {len(data.cat_ids)} categories but checkpoint {args.checkpoint} "
                        f"was trained for {model.num_classes} ({', '.join(model.class_names)})")
    if model.config.get("category_ids") and model.category_ids != data.cat_ids:
        print(f"warning: checkpoint category ids {model.category_ids} differ from {data.ann_file}'s "
              f"{data.cat_ids}; classes are matched by position", file=sys.stderr)
    skipped, results = (None if args.fail_fast else []), []
    m = evaluate(model, data, args.anchors, args.batch_size, progress=sys.stderr.isatty(), skipped=skipped,
                 results=results)
    for msg in skipped or []:
        print(f"skipped: {msg}", file=sys.stderr)
    if skipped:
        print(f"evaluated {len(data) - len(skipped)} of {len(data)} images; {len(skipped)} unreadable images "
              "left out (their ground truth too)", file=sys.stderr)
    print(m["summary"].rstrip())
    print(format_per_class(m))
    if args.plot:
        from metaanchor.visualize import plot_pr_curves

        if m["pr50"] is None:
            print(f"--plot {args.plot}: no precision-recall curve (no detections or no ground truth); not drawn",
                  file=sys.stderr)
        else:
            print(f"drew {plot_pr_curves(m['pr50'], args.plot)}")
    if args.json_out:
        out = {k: m[k] for k in METRIC_KEYS} | {"per_class": m["per_class"], "per_class_table": m["per_class_table"],
                                               "anchors": args.anchors or model.anchors.spec}
        write_atomic(args.json_out, lambda f: f.write(json.dumps(out, indent=2).encode()))
    if args.save_json:
        write_atomic(args.save_json, lambda f: f.write(json.dumps(results).encode()))
        print(f"wrote {len(results)} detections (COCO results) to {args.save_json}")
    return 0
