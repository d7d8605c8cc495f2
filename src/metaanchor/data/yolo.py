"""The YOLO txt format: ``labels/<stem>.txt`` per image, the class names in ``classes.txt`` or an
ultralytics ``data.yaml``.

Each line is ``cls cx cy w h``, normalised by the image size and written with
10 significant digits. Crowd annotations have no YOLO form and are left out
(with a logged warning). Image sizes come from the image headers.

:func:`read_yolo` returns a validated COCO dict (see ``metaanchor.data.records``):
category ids ``1..C`` in class-name order, image ids ``1..N`` in sorted image
file order. :func:`write_yolo` writes every file atomically
(``metaanchor.files``), each path checked to stay inside the output folder
(``io.output_path``).

An ultralytics ``data.yaml`` (:func:`read_data_yaml`, :func:`data_yaml_split`,
:func:`write_data_yaml`) names the classes (``names``: a list, or ``{id: name}``
with ids ``0..C-1``) and the image folder of each split (``train``, ``val``,
``test``) relative to ``path`` (the dataset root; default: the YAML's folder). A
split's labels are in the folder named by ultralytics' rule: the last
``/images/`` of the image folder's path replaced by ``/labels/``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from metaanchor.data.class_names import read_class_names, write_class_names
from metaanchor.data.io import IMAGE_SUFFIXES, image_size, output_path
from metaanchor.data.records import anns_by_image, build_coco, label_names
from metaanchor.errors import DataError, UserError
from metaanchor.files import write_text, writing
from metaanchor.readers import limit, over_limit, read_text, read_yaml_file

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
    records = []
    for path in images:
        rel = path.relative_to(images_dir)
        width, height = image_size(path)
        txt = labels_dir / rel.with_suffix(".txt")
        present = os.path.lexists(txt)  # a FIFO or a dangling link is refused by _read_yolo_file, not skipped
        objs = _read_yolo_file(txt, labels_dir, width, height, len(names)) if present else []
        records.append((txt if present else path, rel.as_posix(), width, height, objs))
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


DATA_YAML_SPLITS = ("train", "val", "test")


def read_data_yaml(path: str | os.PathLike) -> tuple[Path, dict, list[str]]:
    """(dataset root, the YAML mapping, class names) of an ultralytics ``data.yaml``; ``DataError`` names it.

    A relative ``path:`` is taken from the YAML's folder when it exists there, else from the working
    directory (as ultralytics does)."""
    path = Path(path)
    data = read_yaml_file(path, str(path), "MAX_CONFIG_BYTES", DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with 'names', 'train' and 'val' (an ultralytics data.yaml)")
    names = _yaml_names(data.get("names"), path)
    if "nc" in data and data["nc"] != len(names):
        raise DataError(f"{path}: nc is {data['nc']!r} but 'names' lists {len(names)} classes")
    root = path.parent
    if data.get("path") is not None:
        given = Path(str(data["path"]))
        root = given if given.is_absolute() or not (path.parent / given).is_dir() else path.parent / given
        if not root.is_dir():
            raise DataError(f"{path}: path: {data['path']} is not a folder (looked in {path.parent} and the "
                            "working directory)")
    return root, data, names


def _yaml_names(names, path: Path) -> list[str]:
    """The class names of a data.yaml's ``names`` (a list, or a mapping of ids ``0..C-1`` to names)."""
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            by_id = {}
        if sorted(by_id) != list(range(len(names))):
            raise DataError(f"{path}: 'names' must map the class ids 0..{len(names) - 1} to names, got keys "
                            f"{', '.join(map(str, list(names)[:10]))}")
        names = [by_id[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: no class names: 'names' must be a list (names: [a, b]) or a mapping "
                        "(names: {0: a, 1: b})")
    if len(names) > limit("MAX_CATEGORIES"):
        raise DataError(f"{path}: {len(names)} class names, more than {limit('MAX_CATEGORIES')} "
                        f"{over_limit('MAX_CATEGORIES')}")
    if not all(isinstance(n, (str, int, float)) and str(n).strip() for n in names):
        raise DataError(f"{path}: every entry of 'names' must be a non-empty name")
    return [str(n) for n in names]


def data_yaml_split(path: Path, root: Path, data: dict, split: str, option: str) -> tuple[Path, Path]:
    """(images folder, labels folder) of entry ``split`` of a data.yaml; errors name ``option`` as the fix."""
    found = [k for k in (*DATA_YAML_SPLITS, *sorted(set(data) - set(DATA_YAML_SPLITS))) if k in data
             and k not in ("path", "names", "nc", "download") and isinstance(data[k], (str, list))]
    entry = data.get(split)
    if entry is None or split in ("path", "names", "nc", "download"):
        raise DataError(f"{path}: no {split!r} entry; entries found: {', '.join(found) or 'none'}; "
                        f"set {option}=NAME")
    if isinstance(entry, list):
        if len(entry) != 1:
            raise DataError(f"{path}: {split}: lists {len(entry)} image folders; metaanchor reads one folder per "
                            f"split (merge them, or convert each with metaanchor data convert --split {split})")
        entry = entry[0]
    if not isinstance(entry, str):
        raise DataError(f"{path}: {split}: expected an image folder, got {entry!r}")
    images = root / entry
    if not images.exists() and entry.startswith("../"):  # ultralytics' rule for Roboflow exports
        images = root / entry[3:]
    if images.is_file():
        raise DataError(f"{path}: {split}: {entry} is a list of image files; metaanchor reads image folders: "
                        f"point {split} at the folder of the images (e.g. images/{split})")
    if not images.is_dir():
        raise DataError(f"{path}: {split}: image folder {images} not found")
    labels = labels_folder(images, f"{path}: {split}")
    if not labels.is_dir():
        raise DataError(f"{path}: {split}: no labels folder {labels} (the labels of {images} belong there, "
                        "by ultralytics' rule /images/ -> /labels/)")
    return images, labels


def labels_folder(images_dir: Path, what: str) -> Path:
    """The labels folder of an image folder by ultralytics' rule: its path's last ``/images/`` becomes
    ``/labels/`` (``d/images/train`` -> ``d/labels/train``, ``d/train/images`` -> ``d/train/labels``)."""
    text, sa, sb = str(images_dir) + os.sep, f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa not in text:
        raise DataError(f"{what}: image folder {images_dir} has no 'images' folder in its path, so its labels "
                        "folder cannot be found (ultralytics keeps labels in the same path with /images/ -> "
                        "/labels/)")
    return Path(sb.join(text.rsplit(sa, 1)))


def write_data_yaml(out_dir: str | os.PathLike, names: list[str], splits: dict[str, str]) -> Path:
    """``out_dir/data.yaml`` (``path: .``, one entry per split: image folder relative to ``out_dir``,
    ``names``), written atomically."""
    import yaml

    out = Path(out_dir)
    text = yaml.safe_dump({"path": ".", **splits, "names": dict(enumerate(names))}, sort_keys=False,
                          allow_unicode=True)
    return write_text(out / "data.yaml", text)
