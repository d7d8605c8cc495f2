"""Detection on loose images: the input list (files, folders, globs, in-memory images), the drawing names,
the loop behind ``metaanchor predict`` and ``predict_images`` behind the Python API's ``Results``."""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from metaanchor.data.inputs import to_image_tensor
from metaanchor.data.io import IMAGE_SUFFIXES, load_image
from metaanchor.defaults import PREDICT_SCORE_THRESH
from metaanchor.engine.evaluate import to_coco_results
from metaanchor.engine.results import Results
from metaanchor.errors import UserError, out_of_memory_advice
from metaanchor.readers import irregular_kind

GLOB_CHARS = "*?["


def _glob(pattern: str) -> list[Path]:
    """Image files matching a glob pattern (``**`` recursive), sorted; none is a UserError naming it."""
    found = sorted(Path(f) for f in glob.glob(pattern, recursive=True)
                   if Path(f).suffix.lower() in IMAGE_SUFFIXES and not Path(f).is_dir())
    if not found:
        raise UserError(f"input {pattern}: no image files match this pattern")
    return found


def image_files(inputs: list[str | Path]) -> list[Path]:
    """Image files named, inside the folders named (sorted by name) or matching the glob patterns given
    (an input with * ? or [ that is not itself a file; sorted): a missing input, a pattern matching no
    image, or a file that is not a regular file (a FIFO, a device), is a UserError."""
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            found = [p]
        elif any(c in str(item) for c in GLOB_CHARS):
            found = _glob(str(item))
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


def predict_files(model, files: list[Path], anchors=None, score_thresh: float = PREDICT_SCORE_THRESH,
                  fail_fast: bool = False, on_image: Callable[[int, Path, object, dict], None] | None = None
                  ) -> tuple[list[dict], list[str]]:
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


def image_sources(source, bgr: bool = False) -> Iterator[tuple[object, Path | None]]:
    """(image, file or None) for each image in ``source``: a path, folder or glob pattern (str or Path), a
    PIL image, a numpy array ([H, W, 3], [H, W, 4], [H, W] one image; [B, H, W, 3] a batch), a tensor
    ([3, H, W] one image, [B, 3, H, W] a batch, float in [0, 1]) or a list of any of these, in order.
    Paths are checked (``image_files``) before any image is read."""
    if isinstance(source, (str, Path)):
        yield from ((f, f) for f in image_files([source]))
    elif isinstance(source, (Tensor, np.ndarray)) and source.ndim == 4:
        yield from ((im, None) for im in source)
    elif isinstance(source, (Tensor, np.ndarray, Image.Image)):
        yield source, None
    elif isinstance(source, (list, tuple)):
        if not source:
            raise UserError("no images given: the list is empty")
        files = {i: image_files([s]) for i, s in enumerate(source) if isinstance(s, (str, Path))}
        for i, s in enumerate(source):
            yield from (((f, f) for f in files[i]) if i in files else image_sources(s, bgr))
    else:
        raise UserError(f"cannot predict on a {type(source).__name__}: give a path, folder, glob pattern, PIL "
                        "image, numpy array, tensor or a list of these")


def predict_images(model, source, anchors=None, score_thresh: float = PREDICT_SCORE_THRESH, batch_size: int = 8,
                   bgr: bool = False, keep_images: bool = True) -> Iterator[Results]:
    """Detect objects in every image of ``source`` (see ``image_sources``); yields one ``Results`` per image,
    in order, ``batch_size`` images per forward pass.

    ``anchors`` (SPEC or AnchorSet) overrides the model's anchor set for this call; ``score_thresh`` is the
    minimum score kept (default ``PREDICT_SCORE_THRESH``); ``bgr``: numpy arrays are OpenCV BGR;
    ``keep_images=False`` keeps no copy of the images in the Results (no ``plot``)."""
    if not 0.0 <= score_thresh <= 1.0:
        raise UserError(f"score_thresh={score_thresh}: must be in 0..1")
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size}: must be at least 1")
    chunk: list = []
    for image, path in image_sources(source, bgr):
        chunk.append((to_image_tensor(image, bgr), path))
        if len(chunk) == batch_size:
            yield from _predict_chunk(model, chunk, anchors, score_thresh, keep_images)
            chunk = []
    if chunk:
        yield from _predict_chunk(model, chunk, anchors, score_thresh, keep_images)


def _predict_chunk(model, chunk: list[tuple[Tensor, Path | None]], anchors, score_thresh: float,
                   keep_images: bool) -> list[Results]:
    images = [im for im, _ in chunk]
    h, w = images[0].shape[-2:]
    with out_of_memory_advice(f"on {len(images)} images ({w}x{h} first)", len(images), "batch_size="):
        dets = model.predict(images, anchors=anchors, score_thresh=score_thresh, batch_size=len(images))
    return [Results.from_detections(d, im, model.class_names, path, model.category_ids, keep_images)
            for d, (im, path) in zip(dets, chunk)]
