"""Validation of COCO-style dicts, the form every dataset reader returns.

:func:`validate_coco` checks every record without decoding images and returns a
cleaned copy. Rules (each message names the file and the record):

- top level must be an object with lists ``images``, ``annotations``,
  ``categories``; at least one image and one category;
- images need an integer ``id`` (unique), a string ``file_name`` and positive
  integer ``width``/``height``; categories need a unique integer ``id`` and a
  ``name``. Problems here are always errors (nothing sensible to skip), except
  a ``file_name`` that leaves the images folder (absolute, ``..``, NUL, or with
  ``images_dir`` given a symlink pointing outside; see ``io.path_inside``):
  with ``skip_invalid=True`` that image and its annotations are dropped and
  counted (``unsafe_file_name``, ``annotation_of_skipped_image``);
- one file under two image ids is a logged warning naming both ids, or with
  ``fail_fast=True`` an error;
- annotations need a unique integer ``id``, a known ``image_id`` and
  ``category_id`` and a ``bbox`` of 4 finite numbers with positive width and
  height; boxes may stick out of the image by up to ``BOX_TOLERANCE`` px (they
  are clipped quietly). A bad annotation raises ``DataError``, or with
  ``skip_invalid=True`` is dropped (boxes further outside are clipped instead,
  if anything remains) and counted in ``skipped`` / ``warnings``;
- boxes under ``TINY_BOX`` px on a side are kept, with one logged warning naming
  the smallest (most are annotation errors, like BCCD's 1x1 px red cell);
- missing ``area`` is filled with ``w * h`` and missing ``iscrowd`` with 0 so
  pycocotools evaluation works. Crowd annotations stay in the data (for
  evaluation) but are not training targets.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from metaanchor.data.io import path_inside, unsafe_name_reason
from metaanchor.errors import DataError

log = logging.getLogger(__name__)

BOX_TOLERANCE = 1.0  # px a box may extend beyond the image before it counts as invalid
TINY_BOX = 2.0  # px: a box narrower or lower than this is most likely an annotation error (kept, with a warning)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Report:
    """Collects skipped records (skip_invalid=True) or raises on the first one."""

    def __init__(self, source: Path | str, skip_invalid: bool):
        self.source, self.skip_invalid = source, skip_invalid
        self.skipped: Counter[str] = Counter()
        self.warnings: list[str] = []

    def fatal(self, message: str) -> None:
        raise DataError(f"{self.source}: {message}")

    def bad(self, reason: str, message: str) -> None:
        """Raise, or record one skipped/repaired annotation under ``reason``."""
        if not self.skip_invalid:
            self.fatal(message)
        self.skipped[reason] += 1
        self.warnings.append(f"{self.source}: {message}")


def _check_top_level(data: Any, report: _Report) -> None:
    if not isinstance(data, dict):
        report.fatal(f"top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            report.fatal(f"missing required key {key!r}")
        if not isinstance(data[key], list):
            report.fatal(f"{key!r} must be a list, got {type(data[key]).__name__}")
    if not data["images"]:
        report.fatal("dataset has no images")
    if not data["categories"]:
        report.fatal("dataset has no categories")


def _check_images(images: list, report: _Report, images_dir: Path | None,
                  fail_fast: bool) -> tuple[dict[int, dict], set[int]]:
    """(image id -> image, ids of images dropped for an unsafe file_name)."""
    by_id: dict[int, dict] = {}
    dropped: set[int] = set()
    by_file: dict[str, int] = {}
    duplicates: list[str] = []
    for k, img in enumerate(images):
        where = f"images[{k}]" + (f" (image id {img.get('id')})" if isinstance(img, dict) else "")
        if not isinstance(img, dict):
            report.fatal(f"{where}: must be an object")
        if not _is_int(img.get("id")):
            report.fatal(f"{where}: missing or non-integer 'id'")
        if img["id"] in by_id:
            report.fatal(f"image id {img['id']}: duplicate image id (images[{k}])")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            report.fatal(f"{where}: missing or empty 'file_name'")
        for key in ("width", "height"):
            if not _is_int(img.get(key)) or img[key] <= 0:
                report.fatal(f"{where}: '{key}' must be a positive integer, got {img.get(key)!r}")
        by_id[img["id"]] = img
        name = img["file_name"]
        try:
            if images_dir is not None:
                path_inside(images_dir, name, f"image id {img['id']}")
            elif (reason := unsafe_name_reason(name)) is not None:
                raise DataError(f"image id {img['id']}: file_name {name!r} {reason}; "
                                "file paths must stay inside their folder")
        except DataError as exc:
            report.bad("unsafe_file_name", str(exc))
            dropped.add(img["id"])
            continue
        key = os.path.normpath(name)
        if key in by_file:
            message = f"image ids {by_file[key]} and {img['id']} use the same file {key!r}"
            if fail_fast:
                report.fatal(message + " (--fail-fast)")
            duplicates.append(message)
        else:
            by_file[key] = img["id"]
    if duplicates:
        more = f" (and {len(duplicates) - 5} more)" if len(duplicates) > 5 else ""
        log.warning("%s: %d image record(s) repeat a file of another image id: %s%s", report.source,
                    len(duplicates), "; ".join(duplicates[:5]), more)
    return by_id, dropped


def _check_categories(categories: list, report: _Report) -> list[dict]:
    seen: set[int] = set()
    for k, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            report.fatal(f"categories[{k}]: must be an object with an integer 'id'")
        if cat["id"] in seen:
            report.fatal(f"category id {cat['id']}: duplicate category id (categories[{k}])")
        if not isinstance(cat.get("name"), str):
            report.fatal(f"category id {cat['id']}: missing or non-string 'name'")
        seen.add(cat["id"])
    return sorted(categories, key=lambda c: c["id"])


def _check_bbox(ann: dict, img: dict, where: str, report: _Report) -> list[float] | None:
    """The (possibly clipped) bbox [x, y, w, h], or None if the annotation is dropped."""
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        report.bad("malformed_bbox", f"{where}: 'bbox' must be a list of 4 numbers, got {bbox!r}")
        return None
    if not all(math.isfinite(v) for v in bbox):
        report.bad("non_finite_bbox", f"{where}: box has a NaN or infinite value {bbox}")
        return None
    x, y, w, h = (float(v) for v in bbox)
    for name, size in (("width", w), ("height", h)):
        if size <= 0:
            report.bad("non_positive_size", f"{where}: box has non-positive {name} {size}")
            return None
    width, height = img["width"], img["height"]
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        message = (f"{where}: box [x={x}, y={y}, w={w}, h={h}] lies outside the "
                   f"{width}x{height} image")
        if x2 <= x1 or y2 <= y1:
            report.bad("outside_image", message)
            return None
        report.bad("clipped", message + " (clipped)")
    if x2 <= x1 or y2 <= y1:  # within tolerance but nothing left inside
        report.bad("outside_image", f"{where}: box {bbox} has no area inside the image")
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def _check_annotation(ann: Any, k: int, images: dict[int, dict], cat_ids: set[int],
                      seen: set[int], report: _Report) -> dict | None:
    if not isinstance(ann, dict) or not _is_int(ann.get("id")):
        report.bad("malformed_record", f"annotations[{k}]: must be an object with an integer 'id'")
        return None
    where = f"annotation id {ann['id']}" + (
        f" (image {ann['image_id']})" if "image_id" in ann else "")
    if ann["id"] in seen:
        report.bad("duplicate_id", f"{where}: duplicate annotation id (annotations[{k}])")
        return None
    seen.add(ann["id"])
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            report.bad("missing_key", f"{where}: missing required key {key!r}")
            return None
    if not _is_int(ann["image_id"]) or ann["image_id"] not in images:
        report.bad("unknown_image", f"{where}: refers to unknown image id {ann['image_id']!r}")
        return None
    if not _is_int(ann["category_id"]) or ann["category_id"] not in cat_ids:
        report.bad("unknown_category",
                   f"{where}: unknown category id {ann['category_id']!r}")
        return None
    crowd = ann.get("iscrowd", 0)
    if crowd is not None and crowd not in (0, 1):  # True/False compare equal to 1/0
        report.bad("malformed_record", f"{where}: 'iscrowd' must be 0 or 1, got {crowd!r}")
        return None
    bbox = _check_bbox(ann, images[ann["image_id"]], where, report)
    if bbox is None:
        return None
    area = ann.get("area")
    return {**ann, "bbox": bbox,
            "area": float(area) if _is_number(area) and math.isfinite(area) and area > 0 else bbox[2] * bbox[3],
            "iscrowd": int(crowd or 0)}


def _warn_tiny_boxes(annotations: list[dict], images: dict[int, dict], source: str | os.PathLike) -> None:
    """One warning for the boxes under ``TINY_BOX`` px on a side (e.g. BCCD's 1x1 px red cell): they stay in
    the data, as they may be real in a dataset of very small objects, but no anchor can match most of them."""
    tiny = [a for a in annotations if min(a["bbox"][2:]) < TINY_BOX]
    if tiny:
        a = min(tiny, key=lambda a: a["bbox"][2] * a["bbox"][3])
        log.warning("%s: %d box(es) under %g px on a side, most likely annotation errors (kept); the smallest: "
                    "annotation id %s (image %s, %s) %gx%g px", source, len(tiny), TINY_BOX, a["id"], a["image_id"],
                    images[a["image_id"]]["file_name"], a["bbox"][2], a["bbox"][3])


def validate_coco(data: Any, source: str | os.PathLike = "<annotations>",
                  skip_invalid: bool = False, fail_fast: bool = False,
                  images_dir: str | os.PathLike | None = None,
                  warn_tiny: bool = True) -> tuple[dict, dict[str, int], list[str]]:
    """Check a COCO dict; return ``(clean_dict, skipped_counts, warnings)``.

    ``source`` names the file in messages. Raises ``DataError`` on the first
    problem unless ``skip_invalid`` (which applies to annotations and to
    unsafe image file names). ``fail_fast`` makes a file listed under two
    image ids an error (else a warning). With ``images_dir`` each file name is
    also resolved (symlinks) and must stay inside it. ``warn_tiny=False`` leaves out the tiny-box
    warning (for data whose reader already gave it).
    """
    report = _Report(source, skip_invalid)
    _check_top_level(data, report)
    images, dropped = _check_images(data["images"], report, None if images_dir is None else Path(images_dir),
                                    fail_fast)
    categories = _check_categories(data["categories"], report)
    cat_ids = {c["id"] for c in categories}
    seen: set[int] = set()
    annotations = []
    for k, ann in enumerate(data["annotations"]):
        if dropped and isinstance(ann, dict) and _is_int(ann.get("image_id")) and ann["image_id"] in dropped:
            report.skipped["annotation_of_skipped_image"] += 1
            continue
        clean = _check_annotation(ann, k, images, cat_ids, seen, report)
        if clean is not None:
            annotations.append(clean)
    if dropped:
        log.warning("%s: skipped %d image(s) whose file_name leaves the images folder, with their %d "
                    "annotation(s) (data.skip_invalid); first: %s", source, len(dropped),
                    report.skipped["annotation_of_skipped_image"], report.warnings[0])
    n_ann = sum(n for r, n in report.skipped.items() if r not in ("unsafe_file_name", "annotation_of_skipped_image"))
    if n_ann:
        log.warning("%s: skipped or repaired %d annotation(s) (data.skip_invalid): %s; first: %s", source,
                    n_ann, dict(report.skipped), report.warnings[len(dropped)])
    if warn_tiny:
        _warn_tiny_boxes(annotations, images, source)
    clean_data = {**data, "images": [img for img in data["images"] if img["id"] not in dropped],
                  "annotations": annotations,
                  "categories": categories}
    return clean_data, dict(report.skipped), report.warnings
