"""``metaanchor anchors show|fit|search``."""

from __future__ import annotations

import re

from metaanchor.cli.common import DEVICE_HELP, Parser, anchor_files, check_anchor_file_out
from metaanchor.errors import UserError

DATA_HELP = ("a COCO folder (DIR/annotations.json + DIR/images) or COCO JSON, a VOC root (Annotations/, "
             "JPEGImages/, split from --split) or an ultralytics data.yaml, read in place")


def add(sub):
    p = sub.add_parser("anchors", help="inspect, fit (k-means) and search anchor sets")
    asub = p.add_subparsers(dest="anchors_cmd", required=True, parser_class=Parser)
    s = asub.add_parser("show", help="print and draw anchor sets", description="Print the shapes of anchor "
                        "SPECs and draw them relative to the P3 standard box.")
    s.add_argument("specs", nargs="+", metavar="SPEC",
                   help="anchor sets: RxS (e.g. 3x3), scales=..;ratios=.., or an anchor file (.yaml/.json)")
    # 'show' has no option that starts with '-' and a digit, so such an argument (-1x3) is a SPEC, and
    # AnchorSet.parse names what is wrong with it, instead of argparse taking it for an unknown option.
    s._negative_number_matcher = re.compile(r"^-\d")
    s.add_argument("--out", default="anchors.png", help="PNG to write")
    s.set_defaults(func=cmd_show)
    f = asub.add_parser("fit", help="k-means fit of anchor shapes to a dataset's boxes",
                        description="Fit level-relative anchors by k-means on box shapes (distance 1 - IoU, as "
                                    "YOLOv2 / AutoAnchor) at the network's input scale (each image resized as "
                                    "the model resizes it), each box divided by the standard box of the level it "
                                    "matches best; print best-possible recall (at IoU 0.5 and 0.7), mean IoU, "
                                    "BPR per pyramid level and per COCO size, warn about boxes no anchor can "
                                    "reach; write an anchor file for --anchors and a picture of the fit.")
    f.add_argument("--data", required=True, help=DATA_HELP)
    f.add_argument("--images", help="image folder when --data is a COCO JSON or VOC root (no image is decoded)")
    f.add_argument("--split", metavar="NAME", help="VOC split (ImageSets/Main/NAME.txt) or data.yaml entry to fit to "
                                                   "(default: train)")
    f.add_argument("--num", "-k", type=int, default=9, help="number of anchors to fit")
    f.add_argument("--compare", nargs="*", default=["3x3"], metavar="SPEC", help="anchor sets to score beside it")
    f.add_argument("--seed", type=int, default=0, help="k-means initialisation seed")
    f.add_argument("--out", default="anchors_fitted.yaml", help="anchor file to write (.yaml or .json)")
    f.add_argument("--arch", help="retinanet (default; per-level fit) or yolov2 (one stride-32 standard box); "
                                  "default: the --config's model.arch")
    f.add_argument("--input-size", type=int,
                   help="network input short side each image (and its boxes) is resized to, as training's input.size "
                        "(default: the --config's input.size, else the family's default: retinanet 512, yolov2 416)")
    f.add_argument("--input-max-size", type=int,
                   help="cap on the long side after that resize, as training's input.max_size (default: the "
                        "--config's input.max_size; 0 or unset: the short side, as training does with "
                        "input.max_size=0, so e.g. a 640x480 image becomes 512x384 at --input-size 512)")
    f.add_argument("--plot", metavar="FILE", help="picture of the box shapes (log w vs log h) with the fitted anchors "
                                                  "of each level (default: --out with .png)")
    f.add_argument("--config", help="training config to take model.arch, input.size and model.anchor_base from")
    f.set_defaults(func=cmd_fit)
    q = asub.add_parser("search", help="search anchor sets on a validation split with a trained checkpoint",
                        description="Greedy or random search over scales and ratios, scoring COCO AP of a "
                                    "MetaAnchor checkpoint on a validation split (no retraining); prints the "
                                    "table of sets tried and writes the best as an anchor file.")
    q.add_argument("--checkpoint", required=True, help="MetaAnchor checkpoint (last.pt / best.pt)")
    q.add_argument("--data", required=True, help="validation data: " + DATA_HELP)
    q.add_argument("--images", help="image folder when --data is a COCO JSON or VOC root")
    q.add_argument("--split", metavar="NAME", help="VOC split (ImageSets/Main/NAME.txt) or data.yaml entry to search "
                                                   "on (default: val)")
    q.add_argument("--method", choices=["greedy", "random"], default="greedy",
                   help="greedy: move to the best neighbour (one scale or ratio changed, added or dropped) while AP "
                        "improves; random: score random sets")
    q.add_argument("--budget", type=int, default=20, help="most anchor sets to evaluate")
    q.add_argument("--start", help="anchor SPEC to start from (default: the training set)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random method")
    q.add_argument("--device", default="auto", help=DEVICE_HELP)
    q.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    q.add_argument("--out", default="anchors_searched.yaml", help="anchor file for the best set")
    q.set_defaults(func=cmd_search)


def cmd_show(args) -> int:
    from metaanchor.files import check_outputs
    from metaanchor.geometry.anchors import AnchorSet
    from metaanchor.visualize import plot_anchor_sets

    check_outputs({"--out": args.out}, {"SPEC": anchor_files(*args.specs)})
    sets = {s: AnchorSet.parse(s) for s in args.specs}
    for spec, a in sets.items():
        shapes = a.shapes or a.per_level[0]
        print(f"{spec}: {len(shapes)} anchors (h, w relative to the standard box): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in shapes))
    print(f"drew {plot_anchor_sets(sets, args.out)}")
    return 0


def cmd_fit(args) -> int:
    """``metaanchor anchors fit``: k-means fit at input scale, quality of the given and fitted sets, anchor file."""
    from pathlib import Path

    from metaanchor.data.box_shapes import input_shapes
    from metaanchor.families import ARCHS, detector_class
    from metaanchor.files import check_outputs, writing
    from metaanchor.geometry.anchor_fit import (
        POSITIVE_IOU,
        STRICT_IOU,
        anchor_fit_quality,
        level_anchors,
        write_anchor_file,
    )
    from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet, standard_sizes
    from metaanchor.visualize import plot_box_shapes

    check_anchor_file_out("--out", args.out)
    plot = getattr(args, "plot", None) or Path(args.out).with_suffix(".png")
    check_outputs({"--out": args.out, "--plot": plot},
                  {"--data": args.data, "--images": args.images, "--config": getattr(args, "config", None),
                   "--compare": anchor_files(*args.compare)})
    cfg = None
    if getattr(args, "config", None):
        from metaanchor.config import load_config

        cfg = load_config(args.config, [])
    arch = getattr(args, "arch", None) or (cfg["model"].get("arch", "retinanet") if cfg else "retinanet")
    if arch not in ARCHS:
        raise UserError(f"--arch {arch}: unknown; choose one of {', '.join(ARCHS)}")
    family = detector_class(arch)
    size = getattr(args, "input_size", None) or (cfg["input"]["size"] if cfg else family.default_input_size)
    max_size = getattr(args, "input_max_size", None)
    if max_size is None:
        max_size = cfg["input"]["max_size"] if cfg else 0
    if size < 1 or max_size < 0:
        raise UserError(f"--input-size {size} / --input-max-size {max_size}: sizes must be positive")
    max_size = max_size or size  # 0: the short side, as training's input.max_size=0
    base = cfg["model"].get("anchor_base", ANCHOR_BASE) if cfg else ANCHOR_BASE
    sizes = standard_sizes(family.pyramid_strides, base)
    shapes = input_shapes(args.data, args.images, size, max_size, split=getattr(args, "split", None))
    fitted = family.fit_anchors(shapes, args.num, base, args.seed)
    print(f"{len(shapes)} boxes from {args.data} at the network's input scale (images resized to short side {size}, "
          f"long side <= {max_size}); {arch}: fitted {args.num} anchors relative to the "
          f"{', '.join(f'{v:g}' for v in sizes)} px standard box{'es of the levels' if len(sizes) > 1 else ''} "
          "(h, w): " + " ".join(f"({h:.3g},{w:.3g})" for h, w in fitted.shapes))
    sets = [(s, s) for s in args.compare] + [(f"fitted (k={args.num})", fitted)]
    width = max(len("anchor set"), *(len(str(name)) for name, _ in sets)) + 1  # full names: no two rows alike
    print(f"{'anchor set':<{width}}{'anchors':>8}{f'BPR@{POSITIVE_IOU:g}':>9}{f'BPR@{STRICT_IOU:g}':>9}{'mean IoU':>10}"
          f"{'per box':>9}")
    bprs = []
    for name, aset in sets:
        q = anchor_fit_quality(shapes, aset, sizes)
        bprs.append(q["bpr"])
        print(f"{str(name):<{width}}{len(AnchorSet.parse(aset)):>8}{q['bpr']:>9.3f}{q['bpr_strict']:>9.3f}"
              f"{q['mean_iou']:>10.3f}{q['anchors_per_box']:>9.2f}")
    if len(sets) > 1 and max(bprs) - min(bprs) < 0.005:
        print(f"note: BPR@{POSITIVE_IOU:g} is the same for every set: anchors are relative to each level's standard "
              f"box and the levels double in size ({', '.join(f'{v:g}' for v in sizes)} px), so a near-square box "
              f"between two levels overlaps the nearer one with IoU >= {POSITIVE_IOU:g} whatever the scales within a "
              f"level; compare BPR@{STRICT_IOU:g}, mean IoU and anchors per box (per box: anchors >= "
              f"{POSITIVE_IOU:g} IoU)")
    names = [f"P{int(s).bit_length() - 1}" for s in family.pyramid_strides]
    for name, aset in sets:
        _print_breakdown(str(name), shapes, aset, sizes, names)
    with writing(args.out):  # its folder is made outside the atomic writer
        out = write_anchor_file(fitted, args.out, source=str(args.data), method=f"k-means (1 - IoU), "
                                f"k={args.num}, {arch}, boxes at input scale (short side {size}, long side <= "
                                f"{max_size})")
    plot_box_shapes(shapes, dict(zip(names, level_anchors(fitted, sizes))), plot,
                    title=f"{len(shapes)} boxes at input scale {size} and fitted anchors (k={args.num})")
    print(f"wrote {out} (use it as --anchors {out}) and {plot}")
    return 0


def _print_breakdown(name: str, shapes, aset, sizes, level_names: list[str]) -> None:
    """One line of BPR per pyramid level, one per COCO size bucket, and a warning per kind of unreachable box."""
    import sys

    from metaanchor.geometry.anchor_fit import POSITIVE_IOU, bucket_quality, level_quality, unreachable_boxes

    def cell(label, q):
        return f"{label} {q['bpr']:.3f} ({q['boxes']})" if q["boxes"] else f"{label} - (0)"

    levels = level_quality(shapes, aset, sizes)
    print(f"  {name}: BPR@{POSITIVE_IOU:g} (boxes) by level of the best anchor: "
          + "  ".join(cell(n, q) for n, q in zip(level_names, levels)))
    print(f"  {name}: BPR@{POSITIVE_IOU:g} (boxes) by size at input scale: "
          + "  ".join(cell(k, q) for k, q in bucket_quality(shapes, aset, sizes).items()))
    bad = unreachable_boxes(shapes, aset, sizes)
    for kind, idx in bad.items():
        if len(idx):
            area = shapes[idx].prod(1)
            h, w = shapes[idx[area.argmin() if kind == "too_small" else area.argmax()]]  # the most extreme
            where = f"smaller than the smallest anchor at {level_names[0]}" if kind == "too_small" else \
                f"larger than the largest anchor at {level_names[-1]}"
            print(f"warning: anchors {name}: {len(idx)} boxes ({len(idx) / len(shapes):.1%}) are {where} by more "
                  f"than IoU {POSITIVE_IOU:g} allows, so no anchor can match them (extreme: {h:.0f}x{w:.0f} px)",
                  file=sys.stderr)


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
    import sys

    from metaanchor.data.sources import open_dataset
    from metaanchor.engine.anchor_search import check_classes, preset_candidates, scales_ratios_of, search_anchors
    from metaanchor.engine.device import resolve_device
    from metaanchor.engine.evaluate import evaluate
    from metaanchor.families import load_detector
    from metaanchor.files import check_outputs, writing
    from metaanchor.geometry.anchor_fit import write_anchor_file
    from metaanchor.geometry.anchors import AnchorSet

    if args.budget < 1:
        raise UserError(f"--budget {args.budget}: must be at least 1")
    check_anchor_file_out("--out", args.out)
    check_outputs({"--out": args.out}, {"--checkpoint": args.checkpoint, "--data": args.data,
                                        "--images": args.images, "--start": anchor_files(args.start)})
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
    data = open_dataset(args.data, args.images, args.split, default_split="val")
    check_classes(model, data, args.checkpoint)

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
    if ap <= 0:
        print(f"warning: every anchor set tried scored AP {ap:.1f} on {args.data}: none is better than another, so "
              f"{best} (written to {args.out}) is an arbitrary pick; the checkpoint detects nothing on this data "
              "(train it longer, or check that --data holds its classes)", file=sys.stderr)
    with writing(args.out):  # its folder is made outside the atomic writer
        out = write_anchor_file(AnchorSet.parse(best), args.out, spec=best, val_ap=round(ap, 5),
                                checkpoint=str(args.checkpoint), method=args.method)
    print(f"best: {best} (AP {ap:.4f}) -> {out}")
    return 0
