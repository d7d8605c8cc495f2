"""The ultralytics ``data.yaml``: a dataset's class names and the images of each split, read in place.

    root, entries, names = read_data_yaml("coco8/data.yaml")
    coco, images_dir = read_data_yaml_split("coco8/data.yaml", "val")   # COCO dict, file names under images_dir

``names`` is a list, or ``{id: name}`` with ids ``0..C-1``; ``train``, ``val``
(and ``test``) name each split's images relative to ``path`` (the dataset root;
default: the YAML's folder): an image folder, or a ``.txt`` list of image paths
relative to the list's folder (``./images/x.jpg`` or ``images/x.jpg``). An image's labels are in the YOLO txt
file (``metaanchor.data.yolo``) that ultralytics' rule names: its path's last
``/images/`` replaced by ``/labels/``, suffix ``.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from metaanchor.data.io import IMAGE_SUFFIXES, path_inside
from metaanchor.data.records import build_coco
from metaanchor.data.yolo import read_yolo, yolo_record
from metaanchor.errors import DataError
from metaanchor.files import write_text
from metaanchor.readers import limit, over_limit, read_text, read_yaml_file

DATA_YAML_SPLITS = ("train", "val", "test")


def read_data_yaml(path: str | os.PathLike) -> tuple[Path, dict, list[str]]:
    """(dataset root, the YAML mapping, class names) of an ultralytics ``data.yaml``; ``DataError`` names it.

    A relative ``path:`` is taken from the YAML's folder when it exists there, else from the working
    directory (where ultralytics looks first)."""
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


NOT_SPLITS = ("path", "names", "nc", "download")  # data.yaml keys that are not splits


def data_yaml_splits(data: dict) -> list[str]:
    """The split entries of a data.yaml mapping: train, val, test first, then any other."""
    return [k for k in (*DATA_YAML_SPLITS, *sorted(set(map(str, data)) - set(DATA_YAML_SPLITS)))
            if k in data and k not in NOT_SPLITS and isinstance(data[k], (str, list))]


def data_yaml_split(path: Path, root: Path, data: dict, split: str, fix: str) -> Path:
    """The image folder or image-list file of entry ``split`` of a data.yaml; ``fix`` (e.g. ``--split NAME``)
    ends the message for a missing entry."""
    entry = data.get(split)
    if entry is None or split in NOT_SPLITS:
        raise DataError(f"{path}: no {split!r} entry; entries found: {', '.join(data_yaml_splits(data)) or 'none'}; "
                        f"set {fix}")
    if isinstance(entry, list):
        if len(entry) != 1:
            raise DataError(f"{path}: {split}: lists {len(entry)} image folders; metaanchor reads one folder or list "
                            "per split (merge them into one)")
        entry = entry[0]
    if not isinstance(entry, str):
        raise DataError(f"{path}: {split}: expected an image folder or a .txt list of images, got {entry!r}")
    images = root / entry
    if not images.exists() and entry.startswith("../"):  # ultralytics' rule for Roboflow exports
        images = root / entry[3:]
    if not images.exists():
        raise DataError(f"{path}: {split}: {images} not found")
    return images


def read_data_yaml_split(path: str | os.PathLike, split: str, fix: str = "--split NAME", fail_fast: bool = False,
                         skip_invalid: bool = False, skipped: dict | None = None) -> tuple[dict, Path]:
    """(COCO dict, images folder) of split ``split`` of a data.yaml: file names are relative to the image
    folder, or to an image list's folder. ``fail_fast``, ``skip_invalid`` / ``skipped``: as ``records.build_coco``."""
    path = Path(path)
    root, data, names = read_data_yaml(path)
    images = data_yaml_split(path, root, data, split, fix)
    if images.is_dir():
        labels = labels_folder(images, f"{path}: {split}")
        if not labels.is_dir():
            raise DataError(f"{path}: {split}: no labels folder {labels} (the labels of {images} belong there, "
                            "by ultralytics' rule /images/ -> /labels/)")
        return read_yolo(labels, images, names, fail_fast, skip_invalid, skipped), images
    return read_image_list(images, names, fail_fast, skip_invalid, skipped), images.parent


def read_image_list(list_file: Path, names: list[str], fail_fast: bool = False, skip_invalid: bool = False,
                    skipped: dict | None = None) -> dict:
    """COCO dict of the images an ultralytics image list names, one path a line, relative to the list's folder
    (``./images/x.jpg`` or ``images/x.jpg``; other suffixes than images' are left out, as ultralytics does).

    Every image and label file must lie inside the list's folder: an absolute path or ``..`` is a
    ``DataError`` naming the line."""
    root = list_file.parent
    lines = read_text(list_file, str(list_file), "MAX_ANNOTATION_BYTES", DataError).splitlines()
    records = []
    for lineno, line in enumerate(lines, start=1):
        name = line.strip().removeprefix("./")
        if not name or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = path_inside(root, name, f"{list_file}: line {lineno}")
        label = labels_folder(image.parent, f"{list_file}: line {lineno}") / Path(name).with_suffix(".txt").name
        records.append(yolo_record(image, name, label, root, len(names)))
    if not records:
        raise DataError(f"{list_file}: lists no image files")
    return build_coco(records, names, list_file, fail_fast, skip_invalid, skipped)


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
    out = Path(out_dir)
    text = yaml.safe_dump({"path": ".", **splits, "names": dict(enumerate(names))}, sort_keys=False,
                          allow_unicode=True)
    return write_text(out / "data.yaml", text)
