"""``metaanchor predict``: detect, draw, write COCO results (images and video files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from metaanchor.cli.common import DEVICE_HELP, anchor_files, check_anchors_and_batch, load_model, output_folder
from metaanchor.defaults import PREDICT_SCORE_THRESH
from metaanchor.errors import UserError


def add(sub):
    p = sub.add_parser("predict", help="detect objects in images, folders or videos, draw them",
                       description="Detect objects with any anchor set; writes OUT/detections.json "
                                   "(COCO results plus file names) and one drawn PNG per image, "
                                   "OUT/<stem>_det.png (<stem>_det-1.png, -2, ... when names clash; an input "
                                   "file is never overwritten, also with OUT the input folder). Loose files "
                                   "have no dataset image ids: image_id numbers the images 1-based in the "
                                   "order listed (folders sorted by name), and each record also has "
                                   "file_name (the input path) and category (the class name). category_id "
                                   "is the training dataset's own category id, kept in the checkpoint "
                                   "(1..C for checkpoints that predate it). Video files (.mp4 .avi .mov .mkv "
                                   ".webm, named one by one; needs pip install metaanchor[video]) are read "
                                   "frame by frame: each frame is an image numbered after the images, its "
                                   "records also have frame (0-based in the video), and the drawn frames "
                                   "become OUT/<stem>_det.mp4 at the video's frame rate.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (last.pt / best.pt, or one written by import)")
    p.add_argument("--anchors", help="anchor SPEC (default: the training set)")
    p.add_argument("--out", default="runs/predict", help="output folder")
    p.add_argument("--score-thresh", type=float, default=PREDICT_SCORE_THRESH,
                   help="minimum score kept and drawn (default %(default)s, as metaanchor.load(...)(images); "
                        "evaluation uses eval.score_thresh)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first unreadable image or video instead of skipping it")
    p.add_argument("--save-txt", action="store_true",
                   help="also write OUT/labels/<stem>.txt per image (<stem>_<frame>.txt per video frame): one "
                        "line 'class cx cy w h score' per detection, class the 0-based class index, the box "
                        "centre and size divided by the image width and height (ultralytics' save_txt with "
                        "save_conf); an image without detections gets an empty file")
    p.add_argument("--save-frames", action="store_true",
                   help="videos: also write each drawn frame as OUT/<stem>_det/<frame>.png")
    p.add_argument("--no-draw", action="store_true",
                   help="draw nothing: no PNG, no video, no frames (detections.json and --save-txt only)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or video files")
    p.set_defaults(func=cmd_predict)


def yolo_text(det: dict, width: int, height: int) -> str:
    """Detections {"boxes" [N, 4] x1y1x2y2 px, "scores" [N], "labels" [N]} of a ``width`` x ``height`` image as
    YOLO text: one line ``class cx cy w h score`` each, box values normalised to 0..1."""
    lines = []
    for (x1, y1, x2, y2), s, lab in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
        box = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        lines.append(f"{int(lab)} " + " ".join(f"{v:.6f}" for v in box) + f" {s:.6f}\n")
    return "".join(lines)


def _split_inputs(inputs: list[str]) -> tuple[list[str], list[Path]]:
    """Inputs as (images and folders, video files); a missing video file is a UserError."""
    from metaanchor.data.video import is_video
    from metaanchor.readers import irregular_kind

    videos = [Path(i) for i in inputs if is_video(i) and not Path(i).is_dir()]
    for v in videos:
        if not v.exists():
            raise UserError(f"input {v}: no such file or folder")
        if (kind := irregular_kind(v)) is not None:
            raise UserError(f"input {v}: is {kind}, not a video file")
    return [i for i in inputs if Path(i) not in videos], videos


def cmd_predict(args) -> int:
    from tqdm import tqdm

    from metaanchor.engine.predict import drawing_paths, image_files, predict_files
    from metaanchor.files import check_outputs, write_atomic
    from metaanchor.visualize import draw_detections

    check_anchors_and_batch(args)
    if not 0.0 <= args.score_thresh <= 1.0:
        raise UserError(f"--score-thresh {args.score_thresh}: must be in 0..1")
    rest, videos = _split_inputs(args.inputs)
    if videos:
        from metaanchor.data.video import encoder

        encoder()  # PyAV missing: one line saying how to install it, before any work
    files = image_files(rest) if rest else []
    out = Path(args.out)
    names = drawing_paths(files + videos, out)  # never an input file, so OUT may be an input folder
    drawings, video_names = names[:len(files)], names[len(files):]
    draw_outputs = [] if args.no_draw else drawings + [p.with_suffix(".mp4") for p in video_names]
    folders = {"--save-txt": out / "labels"} if args.save_txt else {}
    if args.save_frames and not args.no_draw:
        folders |= {f"--save-frames {v}": p.with_suffix("") for v, p in zip(videos, video_names)}
    check_outputs({"--out": [out / "detections.json", *draw_outputs], **folders},
                  {"IMAGE": files + videos, "--checkpoint": args.checkpoint, "--anchors": anchor_files(args.anchors)},
                  folders=list(folders))
    output_folder(out)
    if args.save_txt:
        output_folder(out / "labels", "--save-txt")
    model = load_model(args.checkpoint, args.device)

    def on_image(i, file, image, det):
        if args.save_txt:
            h, w = image.shape[-2:]
            label = out / "labels" / f"{file.stem}{drawings[i].stem[len(file.stem) + 4:]}.txt"  # + '' or '-k'
            write_atomic(label, lambda fh: fh.write(yolo_text(det, w, h).encode()))
        if not args.no_draw:
            drawn = draw_detections(image, det, model.class_names, args.score_thresh)
            write_atomic(drawings[i], lambda fh: drawn.save(fh, format="PNG"))
            tqdm.write(f"{file} -> {drawings[i]}")

    results, failed = predict_files(model, files, args.anchors, args.score_thresh, args.fail_fast, on_image=on_image)
    frames, bad_videos = 0, []
    for video, name in zip(videos, video_names):
        got = _predict_video(model, video, name, len(files) + frames + 1, args)
        if got is None:
            bad_videos.append(str(video))
        else:
            results += got[0]
            frames += got[1]
    if len(failed) + len(bad_videos) == len(files) + len(videos):
        what = "images" if not videos else "videos" if not files else "images and videos"
        raise UserError(f"nothing to predict: all {len(failed) + len(bad_videos)} {what} were unreadable "
                        f"(first: {(failed + bad_videos)[0]})")
    write_atomic(out / "detections.json", lambda fh: fh.write(json.dumps(results, indent=1).encode()))
    where = f"{len(files) - len(failed)} images"
    if videos:
        where += f" and {frames} frames of {len(videos) - len(bad_videos)} videos"
    print(f"{len(results)} detections in {where} -> {out / 'detections.json'}"
          + (f"; {len(failed)} unreadable images skipped" if failed else "")
          + (f"; {len(bad_videos)} unreadable videos skipped" if bad_videos else ""))
    return 0


def _predict_video(model, video: Path, name: Path, first_id: int, args) -> tuple[list[dict], int] | None:
    """Detect in every frame of ``video``; draws OUT/<name>.mp4 (and frames), writes labels per frame.

    Returns (COCO records with ``frame``, number of frames), or None when the video cannot be read
    (named on stderr; raised with --fail-fast). Frame f is image ``first_id + f``.
    """
    import numpy as np
    from tqdm import tqdm

    from metaanchor.data.video import VideoWriter, read_frames, video_fps
    from metaanchor.engine.evaluate import to_coco_results
    from metaanchor.engine.predict import predict_one
    from metaanchor.errors import DataError
    from metaanchor.files import write_atomic
    from metaanchor.visualize import draw_detections

    out, name_of = Path(args.out), dict(zip(model.category_ids, model.class_names))
    frames_dir = name.with_suffix("")
    stem = f"{video.stem}{name.stem[len(video.stem) + 4:]}"  # + '' or '-k', as the drawing's name
    records, count = [], 0
    try:
        fps = video_fps(video)
        with VideoWriter(name.with_suffix(".mp4"), fps) as writer:
            for n, frame in enumerate(tqdm(read_frames(video), desc=video.name, unit="frame", disable=None)):
                count = n + 1
                det = predict_one(model, frame, args.anchors, args.score_thresh)
                for r in to_coco_results([det], [first_id + n], model.category_ids):
                    records.append(r | {"file_name": str(video), "frame": n, "category": name_of[r["category_id"]]})
                if args.save_txt:
                    text = yolo_text(det, frame.shape[-1], frame.shape[-2]).encode()
                    write_atomic(out / "labels" / f"{stem}_{n}.txt", lambda fh, t=text: fh.write(t))
                if args.no_draw:
                    continue
                drawn = draw_detections(frame, det, model.class_names, args.score_thresh)
                writer.write(np.asarray(drawn))
                if args.save_frames:
                    frames_dir.mkdir(exist_ok=True)
                    write_atomic(frames_dir / f"{n:06d}.png", lambda fh, im=drawn: im.save(fh, format="PNG"))
    except DataError as e:
        if args.fail_fast:
            raise
        print(f"skipped: {e}", file=sys.stderr)
        return None
    drawn_to = "" if args.no_draw else f" -> {name.with_suffix('.mp4')}"
    tqdm.write(f"{video} ({count} frames at {float(fps):g} fps){drawn_to}")
    return records, count
