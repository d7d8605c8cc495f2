"""Detection on loose image files: the input list, the drawing names, and the loop behind ``predict``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from metaanchor.data.io import IMAGE_SUFFIXES, load_image
from metaanchor.engine.evaluate import to_coco_results
from metaanchor.errors import UserError, out_of_memory_advice
from metaanchor.readers import irregular_kind


def image_files(inputs: list[str]) -> list[Path]:
    """Image files named or inside the folders named (sorted by name): a missing input, or one that is not
    a regular file (a FIFO, a device), is a UserError."""
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            found = [p]
        else:
            raise UserError(f"input {item}: no such file or folder")
        for f in found:  # a FIFO named x.png would block the image decoder forever
            if (kind := irregular_kind(f)) is not None:
                raise UserError(f"input {f}: is {kind}, not an image file")
        files += found
    if not files:
        raise UserError(f"no images found in {', '.join(inputs)}")
    return files


def drawing_paths(files: list[Path], out: Path) -> list[Path]:
    """One distinct drawing per input: OUT/<stem>_det.png, or <stem>_det-1.png, -2, ... on a clash.

    Never an input file (compared after resolving links and ``..``), never another input's drawing;
    the other outputs (OUT/detections.json) are checked by ``metaanchor.files.check_outputs``.
    """
    taken, paths = {f.resolve() for f in files}, []
    for f in files:
        k = 0
        while (path := out / (f"{f.stem}_det.png" if k == 0 else f"{f.stem}_det-{k}.png")).resolve() in taken:
            k += 1
        taken.add(path.resolve())
        paths.append(path)
    return paths


def predict_one(model, image, anchors, score_thresh: float) -> dict:
    """Detections of one image [3, H, W]; CUDA out of memory becomes a one-line ``OutOfMemory``."""
    h, w = image.shape[-2:]
    with out_of_memory_advice(f"on a {w}x{h} image", 1, "", then="; or predict with --device cpu"):
        return model.predict([image], anchors=anchors, score_thresh=score_thresh)[0]


def predict_files(model, files: list[Path], anchors=None, score_thresh: float = 0.3, fail_fast: bool = False,
                  on_image: Callable[[int, Path, object, dict], None] | None = None) -> tuple[list[dict], list[str]]:
    """Detect in each file; returns (COCO results, unreadable files).

    Results carry ``file_name`` and ``category`` beside the COCO fields; ``image_id`` numbers the
    files 1-based in order. An unreadable image is skipped (named on stderr) unless ``fail_fast``.
    ``on_image(i, file, image [3, H, W], detections)`` is called after each image (e.g. to draw it).
    """
    results, failed = [], []
    name_of = dict(zip(model.category_ids, model.class_names))
    for i, f in enumerate(tqdm(files, desc="predict", disable=None)):
        try:
            image = load_image(f)
        except UserError as e:  # one bad image does not stop the others
            if fail_fast:
                raise
            tqdm.write(f"skipped: {e}", file=sys.stderr)
            failed.append(str(f))
            continue
        det = predict_one(model, image, anchors, score_thresh)
        for r in to_coco_results([det], [i + 1], model.category_ids):  # loose files: 1-based, in input order
            results.append(r | {"file_name": str(f), "category": name_of[r["category_id"]]})
        if on_image is not None:
            on_image(i, f, image, det)
    return results, failed
