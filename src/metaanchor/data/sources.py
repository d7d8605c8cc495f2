"""A dataset as it comes, opened in place: the one reader behind every dataset option.

    ds = open_dataset("data/bccd", split="val")                            # a CocoDataset
    coco, source = read_dataset("data/coco8/data.yaml", split="train")     # its validated COCO dict

``data.train``, ``data.val``, ``--data`` all name one of:

- a COCO folder (``DIR/annotations.json`` + ``DIR/images/``) or a COCO JSON (images in
  ``images/`` beside it, or the images option);
- a VOC root (``Annotations/`` + ``JPEGImages/`` or ``images/``): the split is
  ``ImageSets/Main/<split>.txt``, or every XML when there is no ``ImageSets/Main``;
- an ultralytics ``data.yaml`` (or a folder holding one): the split is its entry of that name,
  an image folder or list, labels by ultralytics' ``/images/`` -> ``/labels/`` rule (``data.data_yaml``).

Images are read where they are (file names relative to the split's image folder); every
source is validated alike (``data.validate``), and its file names must stay inside that
folder. A YOLO folder without a ``data.yaml`` has no class names: the error shows the
``data.yaml`` to write. Errors say what was found and which option or command fixes it.

``option`` names the dataset option in messages and fixes: ``data.train`` (its split and
images options are then ``data.train_split`` and ``data.train_images``) or ``--data``
(``--split``, ``--images``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metaanchor.data.class_names import read_class_names
from metaanchor.data.coco import CocoDataset
from metaanchor.data.coco_json import load_coco_json, resolve_coco_paths
from metaanchor.data.data_yaml import read_data_yaml_split
from metaanchor.data.validate import validate_coco
from metaanchor.data.voc import read_voc, voc_split_ids
from metaanchor.errors import DataError, UserError
from metaanchor.readers import irregular_kind

DATA_YAML_NAMES = ("data.yaml", "data.yml")
VOC_IMAGE_FOLDERS = ("JPEGImages", "images")
_SPLIT_ORDER = ("train", "val", "trainval", "test")  # how splits are listed in messages, others after


@dataclass
class DatasetRead:
    """A dataset read in place: ``coco`` (COCO dict, file names relative to ``images_dir``), ``source``
    (what messages name: the JSON, the VOC ``Annotations`` folder or the data.yaml), ``kind``
    (``coco``, ``voc``, ``yolo``), ``split`` (None for COCO) and the records dropped by ``skip_invalid``."""

    coco: dict
    images_dir: Path
    source: Path
    kind: str
    split: str | None
    skipped: dict


def _options(option: str) -> tuple[str, str]:
    """(split option, images option) that go with dataset option ``option``."""
    if option.startswith("data."):
        return f"{option}_split", f"{option}_images"
    return "--split", "--images"


def _fix(option: str, value: str) -> str:
    """How to set ``option``: ``data.train_split=NAME`` (a config key) or ``--split NAME``."""
    return f"{option}={value}" if option.startswith("data.") else f"{option} {value}"


def _ordered(splits) -> list[str]:
    return sorted(splits, key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s))


def detect(path: Path) -> str:
    """What ``path`` is: ``coco-json``, ``coco``, ``voc``, ``data-yaml``; a clear error for anything else."""
    if not path.exists():
        raise DataError(f"{path}: no such dataset folder or annotation file")
    if (kind := irregular_kind(path)) is not None and kind != "a folder":
        raise DataError(f"{path}: is {kind}, not a dataset folder or annotation file")
    if path.is_file():
        return "data-yaml" if path.suffix.lower() in (".yaml", ".yml") else "coco-json"
    if (path / "annotations.json").is_file():
        return "coco"
    if (path / "Annotations").is_dir():
        return "voc"
    if any((path / n).is_file() for n in DATA_YAML_NAMES):
        return "data-yaml"
    if (path / "labels").is_dir() and (path / "images").is_dir():
        raise UserError(_yolo_without_names(path))
    if next(path.glob("*.xml"), None) is not None:
        raise DataError(f"{path}: a folder of VOC .xml files; give the VOC root that holds it as Annotations/ "
                        f"(with JPEGImages/ and ImageSets/Main/), or convert it: metaanchor data convert --src {path} "
                        "--src-format voc --images DIR --dst DIR2 --dst-format coco")
    raise DataError(f"{path}: not a dataset folder: no annotations.json (COCO), no Annotations/ (VOC), no data.yaml "
                    "(ultralytics YOLO)")


def _yolo_without_names(path: Path) -> str:
    """The error for a YOLO folder with no data.yaml: the lines to write, or the convert command."""
    subs = [d.name for d in sorted((path / "images").iterdir()) if d.is_dir()]
    entries = [f"{s}: images/{s}" for s in _ordered(s for s in subs if s in ("train", "val", "test"))]
    entries = entries or ["train: images", "val: images"]
    names = "[NAME0, NAME1, ...]"
    for classes in (path / "classes.txt", path / "labels" / "classes.txt"):
        try:
            names = "[" + ", ".join(read_class_names(classes)) + "]"
            break
        except DataError:  # absent or unreadable: the placeholder
            continue
    lines = ", ".join(repr(line) for line in ("path: .", *entries, f"names: {names}"))
    return (f"{path}: a YOLO folder (images/, labels/) but no data.yaml naming its classes; write "
            f"{path / 'data.yaml'} with the lines {lines} (names in class-id order), or convert it: metaanchor data "
            f"convert --src {path} --src-format yolo --names a,b,c --dst DIR --dst-format coco")


def read_dataset(path: str | os.PathLike, images: str | os.PathLike | None = None, split: str | None = None,
                 *, default_split: str = "train", option: str = "--data", skip_invalid: bool = False,
                 fail_fast: bool = False) -> DatasetRead:
    """Read the dataset ``path`` in place (see the module docstring); the COCO dict is not yet validated
    as a whole (``CocoDataset`` and :func:`read_coco_dict` do that).

    ``split`` picks a VOC split or data.yaml entry (None: ``default_split``); a COCO source has no
    splits, so an explicit ``split`` there is a ``UserError``. ``images`` replaces the image folder of
    a COCO JSON or VOC root.
    """
    path = Path(path)
    split_option, images_option = _options(option)
    kind = detect(path)
    if split is not None and kind in ("coco", "coco-json"):
        leave = f"leave {split_option} out" if split_option.startswith("--") else \
            f"leave {split_option} at its default ({default_split})"
        raise UserError(f"{split_option} {split}: {path} is a COCO dataset, which has no splits; {leave} (splits are "
                        "for VOC roots and data.yaml files)")
    skipped: dict[str, int] = {}
    if kind in ("coco", "coco-json"):
        ann_file, images_dir = _coco_paths(path, images, images_option)
        return DatasetRead(load_coco_json(ann_file), images_dir, ann_file, "coco", None, skipped)
    if kind == "voc":
        data, images_dir = _read_voc_root(path, images, split, default_split, split_option, images_option,
                                          fail_fast, skip_invalid, skipped)
        return DatasetRead(data, images_dir, path / "Annotations", "voc", split or default_split, skipped)
    split = split or default_split
    if images is not None:
        raise UserError(f"{_fix(images_option, images)}: {path} is an ultralytics data.yaml, which names its own "
                        f"image folders; leave {images_option} unset")
    yaml_file = path if path.is_file() else next(path / n for n in DATA_YAML_NAMES if (path / n).is_file())
    data, images_dir = read_data_yaml_split(yaml_file, split, _fix(split_option, "NAME"), fail_fast, skip_invalid,
                                            skipped)
    return DatasetRead(data, images_dir, yaml_file, "yolo", split, skipped)


def _coco_paths(path: Path, images, images_option: str) -> tuple[Path, Path]:
    """(annotation file, images folder) of a COCO folder or JSON; a JSON's images default to images/ beside it."""
    if images is None and path.is_file() and (path.parent / "images").is_dir():
        images = path.parent / "images"
    if images is None and path.is_file():
        raise UserError(f"{path}: a COCO annotation file needs its image folder: set {_fix(images_option, 'DIR')} "
                        "(or put the images in images/ beside it)")
    return resolve_coco_paths(path, images)


def _read_voc_root(root: Path, images, split: str | None, default_split: str, split_option: str,
                   images_option: str, fail_fast: bool, skip_invalid: bool, skipped: dict) -> tuple[dict, Path]:
    """(COCO dict of the split, images folder) of a VOC root; without ImageSets/Main the root is one split
    (every XML), which an explicit ``split`` cannot choose from."""
    if images is not None:
        images_dir = Path(images)
        if not images_dir.is_dir():
            raise DataError(f"{_fix(images_option, images)}: not a folder (the images of VOC root {root})")
    else:
        images_dir = next((root / n for n in VOC_IMAGE_FOLDERS if (root / n).is_dir()), None)
        if images_dir is None:
            raise DataError(f"{root}: a VOC root (Annotations/) but no JPEGImages/ or images/ folder; set "
                            f"{images_option} to the folder of its images")
    main = root / "ImageSets" / "Main"
    ids = None
    if split is not None and not main.is_dir():
        raise UserError(f"{_fix(split_option, split)}: {root} is a VOC root without ImageSets/Main, so all its "
                        f"annotations are one split; leave {split_option} unset")
    split = split or default_split
    if main.is_dir():
        found = {p.stem for p in main.glob("*.txt")}
        common = _ordered(s for s in found if "_" not in s) or _ordered(found)  # not VOC's <class>_<split> files
        if split not in found:
            raise UserError(f"{root}: a VOC root (Annotations/, {images_dir.name}/) but no ImageSets/Main/{split}.txt;"
                            f" splits found: {', '.join(common) or 'none'}; set {_fix(split_option, 'NAME')}")
        ids = voc_split_ids(root, split)
    data = read_voc(root / "Annotations", images_dir, ids=ids, fail_fast=fail_fast, skip_invalid=skip_invalid,
                    skipped=skipped)
    return data, images_dir


def open_dataset(path: str | os.PathLike, images: str | os.PathLike | None = None, split: str | None = None,
                 *, default_split: str = "train", option: str = "--data", skip_invalid: bool = False,
                 fail_fast: bool = False, max_image_pixels: int | None = None, transforms=None) -> CocoDataset:
    """The ``CocoDataset`` of any dataset spec (:func:`read_dataset`), validated, images read in place.

    Item ``i`` is ``(image [3, H, W] float32, target)`` as ``CocoDataset``'s; ``skipped`` counts the
    records ``skip_invalid`` dropped, whatever the format."""
    read = read_dataset(path, images, split, default_split=default_split, option=option,
                        skip_invalid=skip_invalid, fail_fast=fail_fast)
    dataset = CocoDataset.from_coco(read.coco, read.images_dir, read.source, skip_invalid=skip_invalid,
                                    transforms=transforms, fail_fast=fail_fast, max_image_pixels=max_image_pixels,
                                    warn_tiny=read.kind == "coco")
    for reason, n in read.skipped.items():
        dataset.skipped[reason] = dataset.skipped.get(reason, 0) + n
    return dataset


def read_coco_dict(path: str | os.PathLike, images: str | os.PathLike | None = None, split: str | None = None,
                   *, default_split: str = "train", option: str = "--data",
                   skip_invalid: bool = True) -> tuple[dict, Path]:
    """(validated COCO dict, source) of any dataset spec, without opening an image: what box-shape
    readers (anchor fitting) take. Image file names are checked lexically only."""
    read = read_dataset(path, images if images is not None else _no_images(path), split,
                        default_split=default_split, option=option, skip_invalid=skip_invalid)
    data, _, _ = validate_coco(read.coco, read.source, skip_invalid, warn_tiny=read.kind == "coco")
    return data, read.source


def _no_images(path) -> Path | None:
    """A COCO JSON's image folder is not read for box shapes: any folder will do when none is given."""
    p = Path(path)
    return p.parent if p.is_file() and p.suffix.lower() not in (".yaml", ".yml") else None
