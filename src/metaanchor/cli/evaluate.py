"""``metaanchor eval``: COCO evaluation of a checkpoint with any anchor set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from metaanchor.cli.common import DEVICE_HELP, anchor_files, check_anchors_and_batch, load_model
from metaanchor.defaults import PREDICT_SCORE_THRESH
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
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--skip-invalid", action="store_true",
                   help="drop (and count) bad annotations instead of failing (as data.skip_invalid)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first unreadable image or bad annotation instead of skipping it")
    p.add_argument("--conf", type=float, default=PREDICT_SCORE_THRESH,
                   help="score threshold of the precision / recall / F1 table and the confusion matrix (default "
                        "%(default)s, predict's); AP uses every detection")
    p.add_argument("--iou", type=float, default=0.5,
                   help="IoU a detection needs with a ground-truth box to take it, in the table and the confusion "
                        "matrix (default %(default)s): detections by descending score each take the free box they "
                        "overlap most, whatever its class. With --plot, confusion_matrix.png (counts and normalised) "
                        "and f1_curve.png (precision, recall and F1 vs threshold) are drawn beside it")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from metaanchor.data.sources import open_dataset
    from metaanchor.engine.evaluate import METRIC_KEYS, evaluate_matched, format_per_class
    from metaanchor.files import check_outputs, write_atomic

    check_anchors_and_batch(args)
    check_outputs({"--json-out": args.json_out, "--save-json": args.save_json, "--plot": args.plot},
                  {"--checkpoint": args.checkpoint, "--data": args.data, "--images": args.images,
                   "--anchors": anchor_files(args.anchors)})
    _check_conf_iou(args)
    if args.plot:
        check_outputs({"--plot": [args.plot, *_matrix_plots(args.plot)], "--json-out": args.json_out,
                       "--save-json": args.save_json}, {"--checkpoint": args.checkpoint})
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
    m, matches = evaluate_matched(model, data, args.anchors, args.batch_size, progress=sys.stderr.isatty(),
                                  skipped=skipped, results=results, iou_thresh=args.iou)
    for msg in skipped or []:
        print(f"skipped: {msg}", file=sys.stderr)
    if skipped:
        print(f"evaluated {len(data) - len(skipped)} of {len(data)} images; {len(skipped)} unreadable images "
              "left out (their ground truth too)", file=sys.stderr)
    print(m["summary"].rstrip())
    print(format_per_class(m))
    counts = _print_counts(args, matches, data.class_names)
    if args.plot:
        from metaanchor.visualize import plot_pr_curves

        if m["pr50"] is None:
            print(f"--plot {args.plot}: no precision-recall curve (no detections or no ground truth); not drawn",
                  file=sys.stderr)
        else:
            print(f"drew {plot_pr_curves(m['pr50'], args.plot)}")
        _plot_counts(args, matches, data.class_names, counts)
    if args.json_out:
        out = {k: m[k] for k in METRIC_KEYS} | {"per_class": m["per_class"], "per_class_table": m["per_class_table"],
                                               "anchors": args.anchors or model.anchors.spec} | counts
        write_atomic(args.json_out, lambda f: f.write(json.dumps(out, indent=2).encode()))
    if args.save_json:
        write_atomic(args.save_json, lambda f: f.write(json.dumps(results).encode()))
        print(f"wrote {len(results)} detections (COCO results) to {args.save_json}")
    return 0


def _check_conf_iou(args) -> None:
    if not 0.0 <= args.conf <= 1.0:
        raise UserError(f"--conf {args.conf}: must be in 0..1")
    if not 0.0 < args.iou <= 1.0:
        raise UserError(f"--iou {args.iou}: must be in (0, 1]")


def _matrix_plots(plot: str) -> list[Path]:
    """The pictures drawn beside --plot: confusion_matrix.png and f1_curve.png."""
    return [Path(plot).with_name("confusion_matrix.png"), Path(plot).with_name("f1_curve.png")]


def _print_counts(args, matches, class_names: list[str]) -> dict:
    """Print the precision / recall / F1 table and the confusion matrix at --conf and --iou; returns them for
    --json-out: {"prf": rows, "confusion_matrix": {"classes", "matrix", "conf", "iou"}}."""
    from metaanchor.engine.evaluate import confusion_matrix, format_confusion, format_prf, prf_rows

    rows = prf_rows(matches, args.conf, class_names)
    matrix = confusion_matrix(matches, args.conf)
    print(format_prf(rows, args.conf, args.iou))
    print(format_confusion(matrix, class_names))
    return {"prf": rows, "confusion_matrix": {"classes": [*class_names, "background"], "matrix": matrix.tolist(),
                                              "rows": "ground truth", "columns": "predicted",
                                              "conf": args.conf, "iou": args.iou}}


def _plot_counts(args, matches, class_names: list[str], counts: dict) -> None:
    """confusion_matrix.png and f1_curve.png beside --plot."""
    import numpy as np

    from metaanchor.engine.evaluate import precision_recall_f1
    from metaanchor.visualize import plot_confusion_matrix, plot_prf_curves

    cm_path, f1_path = _matrix_plots(args.plot)
    matrix = counts["confusion_matrix"]["matrix"]
    print(f"drew {plot_confusion_matrix(matrix, class_names, cm_path, args.conf, args.iou)}")
    thresholds = np.linspace(0, 1, 101)
    r = precision_recall_f1(matches, thresholds)  # each [T, C]
    curves = {name: {k: r[k][:, i] for k in ("precision", "recall", "f1")} for i, name in enumerate(class_names)
              if r["gt"][0, i] or r["dets"][0, i]}
    tp, dets, gt = (r[k].sum(1) for k in ("tp", "dets", "gt"))
    p = np.divide(tp, dets, out=np.zeros(len(tp)), where=dets > 0)
    rec = np.divide(tp, gt, out=np.zeros(len(tp)), where=gt > 0)
    curves["all"] = {"precision": p, "recall": rec,
                     "f1": np.divide(2 * p * rec, p + rec, out=np.zeros(len(tp)), where=p + rec > 0)}
    print(f"drew {plot_prf_curves(thresholds, curves, f1_path, args.iou)}")
