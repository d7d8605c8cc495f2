"""``metaanchor anchors show|fit|search``."""

from __future__ import annotations

from metaanchor.cli.common import Parser
from metaanchor.errors import UserError


def add(sub):
    p = sub.add_parser("anchors", help="inspect, fit (k-means) and search anchor sets")
    asub = p.add_subparsers(dest="anchors_cmd", required=True, parser_class=Parser)
    s = asub.add_parser("show", help="print and draw anchor sets", description="Print the shapes of anchor "
                        "SPECs and draw them relative to the P3 standard box.")
    s.add_argument("specs", nargs="+", metavar="SPEC")
    s.add_argument("--out", default="anchors.png", help="PNG to write")
    s.set_defaults(func=cmd_show)
    f = asub.add_parser("fit", help="k-means fit of anchor shapes to a dataset's boxes",
                        description="Fit level-relative anchors by k-means on box shapes (distance 1 - IoU, as "
                                    "YOLOv2 / AutoAnchor), each box divided by the standard box of the level it "
                                    "matches best; print best-possible recall and mean IoU of the given and "
                                    "fitted sets; write an anchor file for --anchors.")
    f.add_argument("--data", required=True, help="dataset folder, or a COCO annotation JSON")
    f.add_argument("--images", help="image folder when --data is a JSON file (not read)")
    f.add_argument("--num", "-k", type=int, default=9, help="number of anchors to fit")
    f.add_argument("--compare", nargs="*", default=["3x3"], metavar="SPEC", help="anchor sets to score beside it")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default="anchors_fitted.yaml", help="anchor file to write (.yaml or .json)")
    f.add_argument("--arch", help="retinanet (default; per-level fit) or yolov2 (one stride-32 standard box, "
                                  "boxes resized to --input-size first); default: the --config's model.arch")
    f.add_argument("--input-size", type=int, help="yolov2: network input short side the boxes are resized to "
                                                 "(default: the --config's input.size, else 416)")
    f.add_argument("--config", help="training config to take model.arch, input.size and model.anchor_base from")
    f.set_defaults(func=cmd_fit)
    q = asub.add_parser("search", help="search anchor sets on a validation split with a trained checkpoint",
                        description="Greedy or random search over scales and ratios, scoring COCO AP of a "
                                    "MetaAnchor checkpoint on a validation split (no retraining); prints the "
                                    "table of sets tried and writes the best as an anchor file.")
    q.add_argument("--checkpoint", required=True, help="MetaAnchor checkpoint (last.pt / best.pt)")
    q.add_argument("--data", required=True, help="validation dataset folder, or a COCO JSON with --images")
    q.add_argument("--images", help="image folder when --data is a JSON file")
    q.add_argument("--method", choices=["greedy", "random"], default="greedy")
    q.add_argument("--budget", type=int, default=20, help="most anchor sets to evaluate")
    q.add_argument("--start", help="anchor SPEC to start from (default: the training set)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--batch-size", type=int, default=16)
    q.add_argument("--out", default="anchors_searched.yaml", help="anchor file for the best set")
    q.set_defaults(func=cmd_search)


def cmd_show(args) -> int:
    from metaanchor.geometry.anchors import AnchorSet
    from metaanchor.tools.visualize import plot_anchor_sets

    sets = {s: AnchorSet.parse(s) for s in args.specs}
    for spec, a in sets.items():
        shapes = a.shapes or a.per_level[0]
        print(f"{spec}: {len(shapes)} anchors (h, w relative to the standard box): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in shapes))
    print(f"drew {plot_anchor_sets(sets, args.out)}")
    return 0


def cmd_fit(args) -> int:
    """``metaanchor anchors fit``: k-means fit, quality of the given and fitted sets, anchor file."""
    from metaanchor.geometry.anchor_fit import (
        anchor_fit_quality,
        box_shapes,
        fit_anchors,
        input_scale,
        write_anchor_file,
    )
    from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet

    cfg = None
    if getattr(args, "config", None):
        from metaanchor.config import load_config

        cfg = load_config(args.config, [])
    arch = getattr(args, "arch", None) or (cfg["model"].get("arch", "retinanet") if cfg else "retinanet")
    shapes = box_shapes(args.data, args.images)
    sizes, method = None, f"k-means (1 - IoU), k={args.num}"
    if arch == "yolov2":
        from metaanchor.families.yolov2 import STRIDE, fit_yolo_anchors

        size = getattr(args, "input_size", None) or (cfg["input"]["size"] if cfg else 416)
        base = cfg["model"].get("anchor_base", ANCHOR_BASE) if cfg else ANCHOR_BASE
        scale = input_scale(args.data, args.images, size)
        fitted = fit_yolo_anchors(args.data, k=args.num, images=args.images, seed=args.seed, scale=scale,
                                  anchor_base=base)
        shapes, sizes = shapes * scale, [base * STRIDE]
        method += f", yolov2: one {base * STRIDE:g} px standard box, boxes x{scale:.3g} (input.size {size})"
        print(f"{len(shapes)} boxes from {args.data} resized x{scale:.3g} (input size {size}); fitted {args.num} "
              f"anchors relative to the {base * STRIDE:g} px standard box (h, w): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in fitted.shapes))
    elif arch == "retinanet":
        fitted = fit_anchors(shapes, k=args.num, seed=args.seed)
        print(f"{len(shapes)} boxes from {args.data}; fitted {args.num} level-relative anchors (h, w): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in fitted.shapes))
    else:
        raise UserError(f"--arch {arch}: anchors fit knows retinanet and yolov2")
    print(f"{'anchor set':<28}{'anchors':>8}{'BPR@0.5':>9}{'mean IoU':>10}{'per box':>9}")
    for name, aset in [(s, s) for s in args.compare] + [(f"fitted (k={args.num})", fitted)]:
        q = anchor_fit_quality(shapes, aset, sizes)
        print(f"{str(name)[:27]:<28}{len(AnchorSet.parse(aset)):>8}{q['bpr']:>9.3f}{q['mean_iou']:>10.3f}"
              f"{q['anchors_per_box']:>9.2f}")
    out = write_anchor_file(fitted, args.out, source=str(args.data), method=method)
    print(f"wrote {out} (use it as --anchors {out})")
    return 0


def _searchable_start(start: str, what: str) -> None:
    """The search moves in (scales x ratios); refuse a start whose grid exceeds MAX_SEARCH_ANCHORS."""
    from metaanchor.engine.anchor_search import MAX_SEARCH_ANCHORS, scales_ratios_of

    scales, ratios = scales_ratios_of(start)
    n = len(scales) * len(ratios)
    if n > MAX_SEARCH_ANCHORS:
        raise UserError(f"{what}: as scales x ratios it is {len(scales)} x {len(ratios)} = {n} anchors, but the "
                        f"search allows at most {MAX_SEARCH_ANCHORS}; start from a smaller set such as 3x3")


def cmd_search(args) -> int:
    """``metaanchor anchors search``: search anchor sets on a validation split with a trained checkpoint."""
    from metaanchor.data.coco import CocoDataset
    from metaanchor.engine.anchor_search import preset_candidates, scales_ratios_of, search_anchors
    from metaanchor.engine.device import resolve_device
    from metaanchor.engine.evaluate import evaluate
    from metaanchor.families import load_detector
    from metaanchor.geometry.anchor_fit import write_anchor_file
    from metaanchor.geometry.anchors import AnchorSet

    if args.budget < 1:
        raise UserError(f"--budget {args.budget}: must be at least 1")
    if args.start:
        _searchable_start(args.start, f"--start {args.start}")
    dev = resolve_device(args.device)
    model = load_detector(args.checkpoint, map_location=dev).to(dev)
    if not model.takes_any_anchors:
        raise UserError(f"{args.checkpoint}: a predefined-anchor model cannot take other anchor sets; "
                        "anchor search needs a MetaAnchor checkpoint")
    start = args.start or model.train_anchors.spec
    if not args.start:
        _searchable_start(start, f"the checkpoint's training anchors ({start}); pass --start")
    data = CocoDataset(args.data, args.images)

    def score(spec: str) -> float:
        ap = evaluate(model, data, spec, args.batch_size, progress=False)["AP"]
        if ap is None:
            raise UserError(f"{args.data}: no ground-truth boxes, so AP is undefined; anchor search needs a "
                            "validation split with boxes")
        return ap

    res = search_anchors(score, *scales_ratios_of(start), method=args.method, budget=args.budget, seed=args.seed,
                         candidates=preset_candidates(), log=print)
    print(f"\n{'#':>3}  {'AP':>7}  anchor set")
    for i, (spec, ap) in enumerate(sorted(res.tried, key=lambda t: -t[1])):
        print(f"{i + 1:>3}  {ap:>7.4f}  {spec}")
    best, ap = res.best
    out = write_anchor_file(AnchorSet.parse(best), args.out, spec=best, val_ap=round(ap, 5),
                            checkpoint=str(args.checkpoint), method=args.method)
    print(f"best: {best} (AP {ap:.4f}) -> {out}")
    return 0
