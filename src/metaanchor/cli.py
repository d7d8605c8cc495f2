"""The ``metaanchor`` command line.

Exit codes: 0 success, 2 user error (one line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metaanchor.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_train(sub):
    p = sub.add_parser("train", help="train a detector from a YAML config",
                       description="Train a detector. Every config key can be overridden as KEY=VALUE "
                                   "(e.g. solver.max_iter=500 model.head=predefined anchors.train=2x3).")
    p.add_argument("--config", help="YAML config file (configs/*.yaml); defaults apply to missing keys")
    p.add_argument("--out", default="runs/train", help="run folder: last.pt, best.pt, config.yaml, metrics.csv")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt exactly where it stopped (from scratch if there is none yet)")
    p.add_argument("--fail-fast", action="store_true",
                   help="make every skipped or repaired record (bad annotation, unreadable image) an error")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=cmd_train)


def _add_eval(sub):
    p = sub.add_parser("eval", help="COCO evaluation of a checkpoint (any anchor set)",
                       description="Evaluate a checkpoint with pycocotools; prints AP, AP50, AP75, APs/m/l, AR "
                                   "and per-class AP.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (last.pt / best.pt)")
    p.add_argument("--data", required=True, help="dataset folder, or a COCO annotation JSON with --images")
    p.add_argument("--images", help="image folder when --data is a JSON file")
    p.add_argument("--anchors", help="anchor SPEC to evaluate with (default: the training set)")
    p.add_argument("--json-out", help="write metrics as JSON (keys AP, AP50, AP75, APs, APm, APl, ...)")
    p.add_argument("--save-json", metavar="FILE",
                   help="also write the detections evaluated (COCO results format, the dataset's own image and "
                        "category ids; loadable with pycocotools COCO.loadRes)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-invalid", action="store_true",
                   help="drop (and count) bad annotations instead of failing (as data.skip_invalid)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first unreadable image or bad annotation instead of skipping it")
    p.set_defaults(func=cmd_eval)


def _add_predict(sub):
    p = sub.add_parser("predict", help="detect objects in images or folders, draw them",
                       description="Detect objects with any anchor set; writes OUT/detections.json "
                                   "(COCO results plus file names) and one drawn PNG per image, "
                                   "OUT/<stem>_det.png (<stem>_det-1.png, -2, ... when names clash; an input "
                                   "file is never overwritten, also with OUT the input folder). Loose files "
                                   "have no dataset image ids: image_id numbers the images 1-based in the "
                                   "order listed (folders sorted by name), and each record also has "
                                   "file_name (the input path) and category (the class name). category_id "
                                   "is the training dataset's own category id, kept in the checkpoint "
                                   "(1..C for checkpoints that predate it).")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--anchors", help="anchor SPEC (default: the training set)")
    p.add_argument("--out", default="runs/predict", help="output folder")
    p.add_argument("--score-thresh", type=float, default=0.3, help="minimum score kept and drawn")
    p.add_argument("--device", default="auto")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first unreadable image instead of skipping it")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders")
    p.set_defaults(func=cmd_predict)


def _add_data(sub):
    p = sub.add_parser("data", help="synthetic data and format conversion")
    dsub = p.add_subparsers(dest="data_cmd", required=True, parser_class=Parser)
    s = dsub.add_parser("synth", help="write a synthetic 'shapes' dataset (COCO layout)",
                        description="Write DIR/annotations.json + DIR/images/ of coloured shapes whose box "
                                    "distribution is controlled by --distribution (a preset name or KEY=VALUE "
                                    "fields: image_size, num_classes, min_size, max_size, min_ratio, max_ratio, "
                                    "min_objects, max_objects, seed).")
    s.add_argument("--out", required=True)
    s.add_argument("--images", type=int, default=500, help="number of images")
    s.add_argument("--distribution", nargs="+", default=["default"], metavar="NAME|KEY=VALUE")
    s.add_argument("--seed", type=int, help="random seed (overrides the distribution's)")
    s.set_defaults(func=cmd_data_synth)
    c = dsub.add_parser("convert", help="convert between coco, voc and yolo formats")
    c.add_argument("--src", required=True, help="source (COCO folder/JSON, VOC annotation folder, YOLO labels)")
    c.add_argument("--src-format", required=True, choices=["coco", "voc", "yolo"])
    c.add_argument("--dst", required=True, help="destination folder")
    c.add_argument("--dst-format", required=True, choices=["coco", "voc", "yolo"])
    c.add_argument("--images", help="image folder of the source, when not beside it")
    c.add_argument("--split", metavar="NAME",
                   help="VOC sources: convert only the images of the official split ImageSets/Main/NAME.txt")
    c.add_argument("--skip-invalid", action="store_true",
                   help="drop (and count) bad records, e.g. images whose file_name leaves the images folder")
    c.add_argument("--fail-fast", action="store_true",
                   help="make every skipped record, and one image file under two image ids, an error")
    c.set_defaults(func=cmd_data_convert)


def _add_anchors(sub):
    p = sub.add_parser("anchors", help="inspect, fit (k-means) and search anchor sets")
    asub = p.add_subparsers(dest="anchors_cmd", required=True, parser_class=Parser)
    s = asub.add_parser("show", help="print and draw anchor sets", description="Print the shapes of anchor "
                        "SPECs and draw them relative to the P3 standard box.")
    s.add_argument("specs", nargs="+", metavar="SPEC")
    s.add_argument("--out", default="anchors.png", help="PNG to write")
    s.set_defaults(func=cmd_anchors_show)
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
    f.set_defaults(func=_lazy("metaanchor.anchor_search", "cmd_fit"))
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
    q.set_defaults(func=_lazy("metaanchor.anchor_search", "cmd_search"))


def _add_demo(sub):
    p = sub.add_parser("demo", help="synthesise data, train, evaluate and draw (what `make demo` runs)")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--unseen", default="5x5", help="anchor set never used in training, to evaluate and draw")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)


def _add_experiment(sub):
    p = sub.add_parser("experiment", help="run the paper's experiments and write reports (tables, CSV, plots)",
                       description="Run an experiment of the suite (or all) and write reports/<name>/README.md, "
                                   "runs.csv and PNG plots. Training runs are cached by config hash, so a "
                                   "second call reuses them and an interrupted 'all' resumes.")
    p.add_argument("name", metavar="NAME|all",
                   help="anchor-configs, cross-eval, search, transfer, data-dependent, yolo, or all")
    p.add_argument("--quick", action="store_true", help="CPU-sized: tiny backbone, 128 px synthetic data")
    p.add_argument("--data", help="COCO-layout folder (train/ val/ test/) replacing the default distribution")
    p.add_argument("--seeds", type=int, default=2, help="seeds per configuration")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="reports", help="report folder")
    p.add_argument("--cache", help="run cache folder (default: OUT/.cache)")
    p.add_argument("--search-budget", type=int, default=12, help="anchor sets tried per search")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(func=_lazy("metaanchor.experiments.commands", "cmd_experiment"))


def _add_bench(sub):
    p = sub.add_parser("bench", help="speed/memory side by side with torchvision's RetinaNet",
                       description="Time our Detector and torchvision's RetinaNet (same ResNet-FPN backbone, "
                                   "512 px, 9 anchors, 80 classes, random weights) interleaved in one process: "
                                   "inference images/s at batch 1 and 8, a training step, peak memory, "
                                   "post-processing share and FLOP efficiency. See BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="ResNet-18 only, fewer repeats (under 3 min on 2 cores)")
    p.add_argument("--json-out", help="write the report as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_lazy("metaanchor.bench", "cmd_bench"))


def _lazy(module: str, name: str):
    """A command that imports its module only when run (keeps `metaanchor --help` fast)."""
    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)
    return run


def build_parser() -> Parser:
    parser = Parser(prog="metaanchor", description="MetaAnchor detectors: anchors are an input, not an architecture.")
    from metaanchor import __version__

    parser.add_argument("--version", action="version", version=f"metaanchor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (_add_train, _add_eval, _add_predict, _add_data, _add_anchors, _add_demo, _add_experiment,
                _add_bench):
        add(sub)
    return parser


# ----------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from metaanchor.config import load_config
    from metaanchor.engine.train import train

    cfg = load_config(args.config, args.overrides)
    summary = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, fail_fast=args.fail_fast)
    print_summary(summary, args.out)
    return 0


def print_summary(summary: dict, out) -> None:
    from metaanchor.engine.evaluate import fmt_metric

    rows = summary.get("metrics", {})
    print(f"\ntrained {summary['iterations']} iterations in {summary['wall_time_s']:.0f} s -> {out}")
    if rows:
        print(f"{'anchors':<14}{'AP':>8}{'AP50':>8}{'AP75':>8}{'APs':>8}{'APm':>8}{'APl':>8}")
        for spec, m in rows.items():
            print(f"{spec:<14}" + "".join(f"{fmt_metric(m[k]):>8}" for k in ("AP", "AP50", "AP75", "APs", "APm",
                                                                              "APl")))


def _load_model(checkpoint: str, device: str):
    from metaanchor.engine.train import resolve_device
    from metaanchor.families import load_detector

    dev = resolve_device(device)
    return load_detector(checkpoint, map_location=dev).to(dev)


def _check_anchors_and_batch(args) -> None:
    """Argument mistakes found before any model or data is loaded."""
    from metaanchor.anchors import AnchorSet

    if getattr(args, "batch_size", 1) < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.anchors is not None:
        AnchorSet.parse(args.anchors)


def cmd_eval(args) -> int:
    from metaanchor.data.coco import CocoDataset
    from metaanchor.engine.evaluate import METRIC_KEYS, evaluate, fmt_metric

    _check_anchors_and_batch(args)
    model = _load_model(args.checkpoint, args.device)
    data = CocoDataset(args.data, args.images, skip_invalid=args.skip_invalid and not args.fail_fast,
                       fail_fast=args.fail_fast)
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
    print("per-class AP: " + ", ".join(f"{k} {fmt_metric(v)}" for k, v in m["per_class"].items()))
    if args.json_out:
        out = {k: m[k] for k in METRIC_KEYS} | {"per_class": m["per_class"],
                                               "anchors": args.anchors or model.anchors.spec}
        _write_atomic(args.json_out, lambda f: f.write(json.dumps(out, indent=2).encode()))
    if args.save_json:
        _write_atomic(args.save_json, lambda f: f.write(json.dumps(results).encode()))
        print(f"wrote {len(results)} detections (COCO results) to {args.save_json}")
    return 0


def _write_atomic(path: str | Path, write) -> Path:
    """Write ``path`` through ``write(binary file)``: a temp file in the same folder, then a rename.

    Never leaves a partial file; an OSError (read-only folder, disk full, a file in the way)
    becomes a UserError naming the path and the cause.
    """
    import os
    import tempfile

    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
        raise UserError(f"{path}: cannot write: {e.strerror or e}{where}") from None


def _image_files(inputs: list[str]) -> list[Path]:
    from metaanchor.io import IMAGE_SUFFIXES

    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"input {item}: no such file or folder")
    if not files:
        raise UserError(f"no images found in {', '.join(inputs)}")
    return files


def cmd_predict(args) -> int:
    from tqdm import tqdm

    from metaanchor.engine.evaluate import to_coco_results
    from metaanchor.io import load_image
    from metaanchor.visualize import draw_detections

    _check_anchors_and_batch(args)
    if not 0.0 <= args.score_thresh <= 1.0:
        raise UserError(f"--score-thresh {args.score_thresh}: must be in 0..1")
    files = _image_files(args.inputs)
    out = _output_folder(args.out)
    drawings = _drawing_paths(files, out)
    model = _load_model(args.checkpoint, args.device)
    results, failed = [], []
    name_of = dict(zip(model.category_ids, model.class_names))
    for i, f in enumerate(tqdm(files, desc="predict", disable=None)):
        try:
            image = load_image(f)
        except UserError as e:  # one bad image does not stop the others
            if args.fail_fast:
                raise
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            failed.append(str(f))
            continue
        det = _predict_one(model, image, args)
        for r in to_coco_results([det], [i + 1], model.category_ids):  # loose files: 1-based, in input order
            results.append(r | {"file_name": str(f), "category": name_of[r["category_id"]]})
        drawn = draw_detections(image, det, model.class_names, args.score_thresh)
        _write_atomic(drawings[i], lambda fh, drawn=drawn: drawn.save(fh, format="PNG"))
        tqdm.write(f"{f} -> {drawings[i]}")
    if len(failed) == len(files):
        raise UserError(f"nothing to predict: all {len(files)} images were unreadable (first: {failed[0]})")
    _write_atomic(out / "detections.json", lambda fh: fh.write(json.dumps(results, indent=1).encode()))
    print(f"{len(results)} detections in {len(files) - len(failed)} images -> {out / 'detections.json'}"
          + (f"; {len(failed)} unreadable images skipped" if failed else ""))
    return 0


def _output_folder(folder: str) -> Path:
    """``--out`` as an existing or new folder; a file in the way or an unwritable place is a UserError."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder: {e.strerror or e}") from None
    return out


def _drawing_paths(files: list[Path], out: Path) -> list[Path]:
    """One distinct drawing per input: OUT/<stem>_det.png, or <stem>_det-1.png, -2, ... on a clash.

    Never an input file (compared after resolving links and ``..``), never another input's drawing.
    """
    inputs = {f.resolve() for f in files}
    if (out / "detections.json").resolve() in inputs:
        raise UserError(f"--out {out}: would overwrite the input {out / 'detections.json'}")
    taken, paths = set(inputs), []
    for f in files:
        k = 0
        while (path := out / (f"{f.stem}_det.png" if k == 0 else f"{f.stem}_det-{k}.png")).resolve() in taken:
            k += 1
        taken.add(path.resolve())
        paths.append(path)
    return paths


def _predict_one(model, image, args) -> dict:
    from metaanchor.errors import OutOfMemory, is_out_of_memory

    try:
        return model.predict([image], anchors=args.anchors, score_thresh=args.score_thresh)[0]
    except Exception as e:
        if is_out_of_memory(e):
            h, w = image.shape[-2:]
            raise OutOfMemory(f"CUDA out of memory on a {w}x{h} image (batch size 1); "
                              "use --device cpu or a smaller input size") from None
        raise


def cmd_data_synth(args) -> int:
    from metaanchor.data.synth import check_num_images, synth_config, write_synth_dataset

    extra = {"seed": args.seed} if args.seed is not None else {}
    cfg = synth_config(args.distribution, **extra)
    check_num_images(args.images, "--images")
    path = write_synth_dataset(args.out, args.images, cfg)
    print(f"wrote {args.images} images to {path}")
    return 0


def cmd_data_convert(args) -> int:
    from metaanchor.data.formats import convert

    skipped: dict[str, int] = {}
    dst = convert(args.src, args.src_format, args.dst, args.dst_format, images_dir=args.images, split=args.split,
                  skip_invalid=args.skip_invalid, fail_fast=args.fail_fast, skipped=skipped)
    split = f" split {args.split}" if args.split else ""
    print(f"converted {args.src}{split} ({args.src_format}) -> {dst} ({args.dst_format})")
    n_img = skipped.pop("unsafe_file_name", 0)
    if n_img:
        print(f"skipped {n_img} image(s) (unsafe_file_name: {n_img})")
    if skipped:
        print(f"skipped or repaired {sum(skipped.values())} annotation(s) ("
              + ", ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
    return 0


def cmd_anchors_show(args) -> int:
    from metaanchor.anchors import AnchorSet
    from metaanchor.visualize import plot_anchor_sets

    sets = {s: AnchorSet.parse(s) for s in args.specs}
    for spec, a in sets.items():
        shapes = a.shapes or a.per_level[0]
        print(f"{spec}: {len(shapes)} anchors (h, w relative to the standard box): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in shapes))
    print(f"drew {plot_anchor_sets(sets, args.out)}")
    return 0


def cmd_demo(args) -> int:
    from metaanchor.demo import run_demo

    run_demo(args.config, args.out, args.unseen, args.overrides)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"metaanchor {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metaanchor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
