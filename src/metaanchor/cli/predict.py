"""``metaanchor predict``: detect, draw, write COCO results."""

from __future__ import annotations

import json
from pathlib import Path

from metaanchor.cli.common import anchor_files, check_anchors_and_batch, load_model, output_folder
from metaanchor.errors import UserError


def add(sub):
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


def cmd_predict(args) -> int:
    from tqdm import tqdm

    from metaanchor.engine.predict import drawing_paths, image_files, predict_files
    from metaanchor.files import check_outputs, write_atomic
    from metaanchor.visualize import draw_detections

    check_anchors_and_batch(args)
    if not 0.0 <= args.score_thresh <= 1.0:
        raise UserError(f"--score-thresh {args.score_thresh}: must be in 0..1")
    files = image_files(args.inputs)
    out = Path(args.out)
    drawings = drawing_paths(files, out)  # never an input image, so OUT may be an input folder
    check_outputs({"--out": [out / "detections.json", *drawings]},
                  {"IMAGE": files, "--checkpoint": args.checkpoint, "--anchors": anchor_files(args.anchors)})
    output_folder(out)
    model = load_model(args.checkpoint, args.device)

    def draw(i, file, image, det):
        drawn = draw_detections(image, det, model.class_names, args.score_thresh)
        write_atomic(drawings[i], lambda fh: drawn.save(fh, format="PNG"))
        tqdm.write(f"{file} -> {drawings[i]}")

    results, failed = predict_files(model, files, args.anchors, args.score_thresh, args.fail_fast, on_image=draw)
    if len(failed) == len(files):
        raise UserError(f"nothing to predict: all {len(files)} images were unreadable (first: {failed[0]})")
    write_atomic(out / "detections.json", lambda fh: fh.write(json.dumps(results, indent=1).encode()))
    print(f"{len(results)} detections in {len(files) - len(failed)} images -> {out / 'detections.json'}"
          + (f"; {len(failed)} unreadable images skipped" if failed else ""))
    return 0
