"""Conversion between the COCO, Pascal VOC and YOLO dataset formats (``metaanchor data convert``).

A source is read into a validated COCO dict (``coco_json``, ``voc``, ``yolo``)
and written out as a self-contained dataset folder: images are hard-linked (or
copied when linking is impossible) into ``dst/images``, annotations written
atomically beside them. The folders inside ``dst`` are created, never followed
when they are symlinks, and a ``dst`` that a failed conversion created is
removed again. Every path built from a record's ``file_name`` (image
reads, links, label and XML writes) goes through
:func:`metaanchor.data.io.path_inside`: absolute names, ``..`` and symlinks
leaving the folder are errors naming the record, so nothing outside ``dst`` is
ever written or deleted. VOC sources honour the official split with
``split=NAME`` (``ImageSets/Main/NAME.txt``); YOLO sources are an ultralytics
``data.yaml`` (or a folder holding one; ``split`` names its entry) or a folder
with ``images/`` and ``labels/`` (``split``: the sub-folders ``images/NAME`` and
``labels/NAME``), whose class names come from ``classes.txt`` or ``class_names``.
Several splits are never merged: a source that has them needs ``split``. A YOLO
destination gets a ``data.yaml`` naming its classes and the split written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from metaanchor.data.coco_json import read_coco, resolve_coco_paths, write_coco
from metaanchor.data.data_yaml import (
    DATA_YAML_SPLITS,
    data_yaml_splits,
    read_data_yaml,
    read_data_yaml_split,
    write_data_yaml,
)
from metaanchor.data.io import path_inside
from metaanchor.data.voc import read_voc, voc_split_ids, write_voc
from metaanchor.data.yolo import read_yolo, write_yolo
from metaanchor.errors import DataError, UserError
from metaanchor.files import make_folder, write_atomic, writing

FORMATS = ("coco", "voc", "yolo")
SUBFOLDERS = {"coco": ("images",), "voc": ("images", "Annotations"), "yolo": ("images", "labels")}


def _locate(src: Path, fmt: str, images_dir: Path | None) -> tuple[Path, Path]:
    """(annotation location, images dir) of a source dataset in format ``fmt``."""
    if fmt == "coco":
        return resolve_coco_paths(src, images_dir)
    sub = {"voc": "Annotations", "yolo": "labels"}[fmt]
    ann = src / sub if (src / sub).is_dir() else src
    if images_dir is None:
        for name in ("images", "JPEGImages"):
            if (src / name).is_dir():
                images_dir = src / name
                break
        else:
            raise UserError(f"{src}: no images/ folder; pass the images directory")
    return ann, Path(images_dir)


def _link_images(images: Iterable[dict], src_dir: Path, dst_dir: Path) -> None:
    """Hard-link (or atomically copy) each image from ``src_dir`` into ``dst_dir``; both paths must stay inside."""
    for img in images:
        name, what = img["file_name"], f"image id {img['id']}"
        src, dst = path_inside(src_dir, name, what), path_inside(dst_dir, name, what)
        if not src.is_file():
            raise DataError(f"{src}: image file not found")
        with writing(dst):
            if dst.exists():
                if dst.samefile(src):
                    continue
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            _copy(src, dst)


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically, with ``src``'s permission bits and times (as ``shutil.copy2``)."""
    with open(src, "rb") as f:
        write_atomic(dst, lambda out: shutil.copyfileobj(f, out))
    with writing(dst):
        shutil.copystat(src, dst)


def convert(src: str | os.PathLike, src_format: str, dst: str | os.PathLike, dst_format: str,
            images_dir: str | os.PathLike | None = None, split: str | None = None,
            skip_invalid: bool = False, fail_fast: bool = False, skipped: dict | None = None,
            class_names: list[str] | None = None) -> Path:
    """Convert a dataset between ``coco``, ``voc`` and ``yolo``; return ``dst``.

    Sources: coco = dataset folder or JSON (+ ``images_dir``); voc = folder with
    ``Annotations/`` (or the XML folder itself); yolo = a data.yaml, a folder with
    one, or a folder with ``labels/`` (or the labels folder). ``images_dir`` defaults
    to ``src/images`` or ``src/JPEGImages``. ``dst`` becomes a self-contained folder:
    coco -> ``annotations.json``; voc -> ``Annotations/``; yolo -> ``labels/`` +
    ``classes.txt`` + ``data.yaml``; all with ``images/``.

    ``split`` converts one split: VOC ``ImageSets/Main/<split>.txt``, a data.yaml
    entry, or a YOLO folder's ``images/<split>``. ``class_names`` (YOLO sources
    without data.yaml or classes.txt) in class-id order. ``skip_invalid`` drops (and
    counts into ``skipped``) COCO records that can be skipped, among them images whose
    file name leaves the images folder; ``fail_fast`` makes every such record and a
    file listed under two image ids an error.
    """
    for fmt in (src_format, dst_format):
        if fmt not in FORMATS:
            raise UserError(f"unknown dataset format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if split is not None and src_format == "coco":
        raise UserError(f"--split {split}: only VOC and YOLO sources have splits (ImageSets/Main/NAME.txt, "
                        "data.yaml entries)")
    if class_names is not None and src_format != "yolo":
        raise UserError("--names: only YOLO sources need class names (VOC and COCO files name their classes)")
    src, dst = Path(src), Path(dst)
    if src_format == "coco":
        ann, img_dir = _locate(src, src_format, Path(images_dir) if images_dir else None)
        data = read_coco(ann, skip_invalid, fail_fast, img_dir, skipped)
    elif src_format == "voc":
        ann, img_dir = _locate(src, src_format, Path(images_dir) if images_dir else None)
        ids = None if split is None else voc_split_ids(src if (src / "Annotations").is_dir() else src.parent, split)
        data = read_voc(ann, img_dir, ids=ids, fail_fast=fail_fast)
    else:
        data, img_dir, split = _read_yolo_source(src, images_dir, split, class_names, fail_fast)
    _write(data, img_dir, dst, dst_format, split)
    return dst


def _read_yolo_source(src: Path, images_dir, split: str | None, class_names: list[str] | None,
                      fail_fast: bool) -> tuple[dict, Path, str | None]:
    """(COCO dict, images folder, split) of a YOLO source: a data.yaml (or a folder with one) or a folder
    with ``labels/`` (``labels/<split>`` with ``split``)."""
    yaml_file = src if src.is_file() else next((src / n for n in ("data.yaml", "data.yml") if (src / n).is_file()),
                                               None)
    if yaml_file is not None:
        if images_dir is not None:
            raise UserError(f"--images {images_dir}: {yaml_file} names its own image folders; leave --images out")
        if class_names is not None:
            raise UserError(f"--names: {yaml_file} names the classes; leave --names out")
        if split is None:
            present = [k for k in data_yaml_splits(read_data_yaml(yaml_file)[1]) if k in DATA_YAML_SPLITS]
            if len(present) != 1:
                raise UserError(f"{yaml_file}: has the splits {', '.join(present) or 'none'}; convert one at a "
                                "time with --split NAME (they are never merged)")
            split = present[0]
        data, img_dir = read_data_yaml_split(yaml_file, split, "--split NAME", fail_fast)
        return data, img_dir, split
    ann, img_dir = _locate(src, "yolo", Path(images_dir) if images_dir else None)
    splits = sorted(d.name for d in img_dir.iterdir() if d.is_dir() and d.name in DATA_YAML_SPLITS) \
        if img_dir.is_dir() else []
    if split is None and splits:
        raise UserError(f"{img_dir}: has the splits {', '.join(splits)}; convert one at a time with --split NAME "
                        "(they are never merged)")
    names = class_names or next((c for c in (ann / "classes.txt", ann.parent / "classes.txt") if c.is_file()), None)
    if split is not None:
        if split not in splits:
            raise UserError(f"--split {split}: no {img_dir / split} folder; splits found: "
                            f"{', '.join(splits) or 'none'}")
        ann, img_dir = ann / split, img_dir / split
    return read_yolo(ann, img_dir, names, fail_fast), img_dir, split


def _write(data: dict, img_dir: Path, dst: Path, dst_format: str, split: str | None = None) -> None:
    """Write the dataset into ``dst``; a ``dst`` this call creates is removed again when writing fails."""
    created = not os.path.lexists(dst)
    try:
        for name in SUBFOLDERS[dst_format]:  # created here, so a symlink to elsewhere is refused, not followed
            make_folder(dst / name, dst)
        _link_images(data["images"], img_dir, dst / "images")
        if dst_format == "coco":
            write_coco(data, dst / "annotations.json")
        elif dst_format == "voc":
            write_voc(data, dst / "Annotations")
        else:
            write_yolo(data, dst)
            entry = split if split in ("val", "test") else "train"  # the keys ultralytics knows
            write_data_yaml(dst, [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])],
                            {entry: "images"})
    except BaseException:
        if created:
            shutil.rmtree(dst, ignore_errors=True)
        raise
