"""The YOLO txt format: ``labels/<stem>.txt`` per image and the class names in ``classes.txt`` (or an
ultralytics ``data.yaml``, see ``metaanchor.data.data_yaml``).

Each line is ``cls cx cy w h``, normalised by the image size and written with
10 significant digits. Crowd annotations have no YOLO form and are left out
(with a logged warning). Image sizes come from the image headers.

:func:`read_yolo` returns a validated COCO dict (see ``metaanchor.data.records``):
category ids ``1..C`` in class-name order, image ids ``1..N`` in sorted image
file order. :func:`write_yolo` writes every file atomically
(``metaanchor.files``), each path checked to stay inside the output folder
(``io.output_path``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from metaanchor.data.class_names import read_class_names, write_class_names
from metaanchor.data.io import IMAGE_SUFFIXES, image_size, output_path
from metaanchor.data.records import Record, anns_by_image, build_coco, label_names
from metaanchor.errors import DataError, UserError
from metaanchor.files import write_text, writing
from metaanchor.readers import read_text

log = logging.getLogger(__name__)


def write_yolo(coco_dict: dict, out_dir: str | os.PathLike) -> Path:
    """``out_dir/labels/<stem>.txt`` per image (``cls cx cy w h``) + ``out_dir/classes.txt``."""
    out = Path(out_dir)
    with writing(out / "labels"):
        (out / "labels").mkdir(parents=True, exist_ok=True)
    label_of, names = label_names(coco_dict)
    write_class_names(names, out / "classes.txt")
    anns = anns_by_image(coco_dict)
    crowd = 0
    written: dict[Path, str] = {}
    for img in coco_dict["images"]:
        txt = output_path(out / "labels", img["file_name"], ".txt", f"image id {img['id']}")
        if txt in written:
            raise DataError(f"images {written[txt]!r} and {img['file_name']!r} map to the "
                            f"same YOLO label file {txt}")
        written[txt] = img["file_name"]
        lines = []
        for ann in anns[img["id"]]:
            if ann.get("iscrowd", 0):
                crowd += 1
                continue
            x, y, w, h = ann["bbox"]
            W, H = img["width"], img["height"]
            values = ((x + w / 2) / W, (y + h / 2) / H, w / W, h / H)
            lines.append(f"{label_of[ann['category_id']]} " + " ".join(f"{v:.10g}" for v in values))
        write_text(txt, "".join(line + "\n" for line in lines))
    if crowd:
        log.warning("%s: %d crowd annotation(s) have no YOLO form and were left out", out, crowd)
    return out


def _parse_yolo_line(line: str, txt: Path, lineno: int, num_classes: int) -> tuple[int, list[float]]:
    tokens = line.split()
    if len(tokens) != 5:
        raise DataError(f"{txt}: line {lineno}: expected 'cls cx cy w h', got {line.strip()!r}")
    try:
        cls = int(tokens[0])
        values = [float(t) for t in tokens[1:]]
    except ValueError:
        raise DataError(f"{txt}: line {lineno}: not numbers: {line.strip()!r}") from None
    if not 0 <= cls < num_classes:
        raise DataError(f"{txt}: line {lineno}: class {cls} not in 0..{num_classes - 1}")
    if not all(math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6 for v in values):
        raise DataError(f"{txt}: line {lineno}: values must be normalised to [0, 1]: "
                        f"{line.strip()!r}")
    return cls, values


def _read_yolo_file(txt: Path, labels_dir: Path, width: int, height: int, num_classes: int) -> list[dict]:
    """The objects of label file ``txt``, which must be a regular file inside ``labels_dir`` (errors
    quote its lines, which must never be those of a file elsewhere)."""
    try:
        inside = txt.resolve().is_relative_to(labels_dir.resolve())
    except (OSError, RuntimeError):  # symlink loops
        inside = False
    if not inside:
        raise DataError(f"{txt}: label file is a link to a file outside {labels_dir}; "
                        "a dataset's label files must stay inside its labels folder")
    lines = read_text(txt, str(txt), "MAX_LABEL_BYTES", DataError).splitlines()
    objects = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cls, (cx, cy, w, h) = _parse_yolo_line(line, txt, lineno, num_classes)
        objects.append({"label": cls, "bbox": [(cx - w / 2) * width, (cy - h / 2) * height,
                                               w * width, h * height]})
    return objects


def yolo_record(image: Path, file_name: str, txt: Path, labels_dir: Path, num_classes: int) -> Record:
    """The record (``records.Record``) of ``image`` named ``file_name``, its objects in label file ``txt``
    (inside ``labels_dir``; no file: no objects); the size comes from the image header."""
    width, height = image_size(image)
    present = os.path.lexists(txt)  # a FIFO or a dangling link is refused by _read_yolo_file, not skipped
    objs = _read_yolo_file(txt, labels_dir, width, height, num_classes) if present else []
    return (txt if present else image, file_name, width, height, objs)


def _list_images(images_dir: Path) -> list[Path]:
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images directory not found")
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def read_yolo(labels_dir: str | os.PathLike, images_dir: str | os.PathLike,
              class_names: list[str] | str | os.PathLike | None = None, fail_fast: bool = False,
              skip_invalid: bool = False, skipped: dict | None = None) -> dict:
    """COCO dict from YOLO labels: one image per file under ``images_dir``.

    ``labels_dir/<stem>.txt`` (same sub-folders) holds its objects; a missing
    file means no objects; a label file without an image is an error.
    ``class_names`` is a list, a ``classes.txt`` path, or None to look for
    ``classes.txt`` in ``labels_dir`` or its parent. Image sizes come from headers.
    ``fail_fast``, ``skip_invalid`` / ``skipped``: as ``records.build_coco``.
    """
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    names = _resolve_yolo_classes(labels_dir, class_names)
    images = _list_images(images_dir)
    if not images:
        raise DataError(f"{images_dir}: no images found")
    expected = {(p.relative_to(images_dir)).with_suffix(".txt") for p in images}
    for txt in sorted(labels_dir.rglob("*.txt")):
        rel = txt.relative_to(labels_dir)
        if rel not in expected and txt.name != "classes.txt":
            raise DataError(f"{txt}: label file has no matching image in {images_dir}")
    records = [yolo_record(path, path.relative_to(images_dir).as_posix(),
                           labels_dir / path.relative_to(images_dir).with_suffix(".txt"), labels_dir, len(names))
               for path in images]
    return build_coco(records, names, labels_dir, fail_fast, skip_invalid, skipped)


def _resolve_yolo_classes(labels_dir: Path, class_names) -> list[str]:
    if isinstance(class_names, (list, tuple)):
        if not class_names:
            raise UserError("YOLO class names list is empty")
        return list(class_names)
    if class_names is not None:
        return read_class_names(Path(class_names))
    for candidate in (labels_dir / "classes.txt", labels_dir.parent / "classes.txt"):
        if candidate.is_file():
            return read_class_names(candidate)
    raise DataError(f"{labels_dir}: no class names: no classes.txt here or in the parent folder and no data.yaml; "
                    "give them in class-id order (metaanchor data convert --names a,b,c or --names FILE)")

