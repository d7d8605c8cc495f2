"""The Pascal VOC format: one XML file per image, plus the official splits.

Coordinates are 1-based inclusive pixel indices: COCO ``[x, y, w, h]`` is
written as ``xmin = x + 1, ymin = y + 1, xmax = x + w, ymax = y + h`` and read
back the inverse way (as detectron2 does). Integral values are written as
integers (standard VOC); fractional ones with 3 decimals, so a round trip is
exact for whole-pixel boxes and within 5e-4 px otherwise. ``difficult=1`` maps
to ``iscrowd=1`` (ignored in training and evaluation) and back.

:func:`read_voc` returns a validated COCO dict (see ``metaanchor.data.records``):
category ids ``1..C`` in class-name order, image ids ``1..N`` in sorted XML
file order. :func:`voc_split_ids` reads ``ImageSets/Main/NAME.txt``.
:func:`write_voc` writes every file atomically (``metaanchor.files``), each
path checked to stay inside the output folder (``io.output_path``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from metaanchor.data.class_names import read_class_names, write_class_names
from metaanchor.data.io import image_size, output_path, path_inside
from metaanchor.data.records import anns_by_image, build_coco, label_names
from metaanchor.errors import DataError, UserError
from metaanchor.files import write_atomic, writing
from metaanchor.readers import read_bytes, read_text


def _num(value: float) -> str:
    """Integral values as integers, others with 3 decimals (VOC rounding rule)."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.3f}".rstrip("0")


def write_voc(coco_dict: dict, out_ann_dir: str | os.PathLike) -> Path:
    """One ``<stem>.xml`` per image (sub-folders of file_name kept) + ``classes.txt``."""
    out = Path(out_ann_dir)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    label_of, names = label_names(coco_dict)
    write_class_names(names, out / "classes.txt")
    anns = anns_by_image(coco_dict)
    for img in coco_dict["images"]:
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = img["file_name"]
        size = ET.SubElement(root, "size")
        for key, value in (("width", img["width"]), ("height", img["height"]), ("depth", 3)):
            ET.SubElement(size, key).text = str(value)
        for ann in anns[img["id"]]:
            x, y, w, h = ann["bbox"]
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = names[label_of[ann["category_id"]]]
            ET.SubElement(obj, "difficult").text = str(int(bool(ann.get("iscrowd", 0))))
            box = ET.SubElement(obj, "bndbox")
            for key, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                ET.SubElement(box, key).text = _num(value)
        ET.indent(root)
        xml_path = output_path(out, img["file_name"], ".xml", f"image id {img['id']}")
        tree = ET.ElementTree(root)
        write_atomic(xml_path, lambda f, tree=tree: tree.write(f, encoding="utf-8", xml_declaration=True))
    return out


def _voc_text(node: ET.Element, tag: str, xml_path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"{xml_path}: missing <{tag}> in <{node.tag}>")
    return child.text.strip()


def _voc_number(node: ET.Element, tag: str, xml_path: Path) -> float:
    text = _voc_text(node, tag, xml_path)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{xml_path}: <{tag}> is not a finite number: {text!r}")
    return value


def _read_xml(xml_path: Path) -> ET.Element:
    """The root element of a regular file within ``MAX_LABEL_BYTES``; ``DataError`` names the file."""
    data = read_bytes(xml_path, str(xml_path), "MAX_LABEL_BYTES", DataError)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        raise DataError(f"{xml_path}: malformed XML at line {line} column {col + 1}") from None


def _parse_voc_file(xml_path: Path, images_dir: Path | None) -> tuple[str, int, int, list[dict]]:
    """(file_name, width, height, [{name, bbox, iscrowd}]) from one VOC XML file."""
    root = _read_xml(xml_path)
    file_name = _voc_text(root, "filename", xml_path)
    size = root.find("size")
    if size is not None and size.find("width") is not None:
        width = int(_voc_number(size, "width", xml_path))
        height = int(_voc_number(size, "height", xml_path))
    elif images_dir is not None:
        width, height = image_size(path_inside(images_dir, file_name, str(xml_path)))
    else:
        raise DataError(f"{xml_path}: missing <size> and no images directory to read it from")
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{xml_path}: <object> without <bndbox>")
        x1, y1, x2, y2 = (_voc_number(box, k, xml_path) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.find("difficult")
        crowd = int(difficult is not None and (difficult.text or "0").strip() == "1")
        objects.append({"name": _voc_text(obj, "name", xml_path),
                        "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1], "iscrowd": crowd})
    return file_name, width, height, objects


def read_voc(ann_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None,
             class_names: list[str] | None = None, ids: list[str] | None = None,
             fail_fast: bool = False, skip_invalid: bool = False, skipped: dict | None = None) -> dict:
    """COCO dict from every ``*.xml`` under ``ann_dir`` (sorted, recursive), or from ``ids``.

    ``ids`` (e.g. from :func:`voc_split_ids`) restricts reading to
    ``ann_dir/<id>.xml`` in that order. Class names come from ``class_names``,
    else ``ann_dir/classes.txt``, else the sorted set of object names of every
    XML in ``ann_dir`` (all of them even with ``ids``, so the splits of one
    dataset share category ids). ``images_dir`` is only read for files without <size>.
    ``skip_invalid`` / ``skipped``: as ``records.build_coco``.
    """
    ann_dir = Path(ann_dir)
    every = sorted(ann_dir.rglob("*.xml"))
    if ids is None:
        files = every
    else:
        files = [path_inside(ann_dir, f"{i}.xml", f"image id {i!r}") for i in ids]
        for i, f in zip(ids, files):
            if not f.is_file():
                raise DataError(f"image id {i!r} of the split has no annotation file {f}")
    if not files:
        raise DataError(f"{ann_dir}: no VOC .xml annotation files")
    parsed = [_parse_voc_file(p, Path(images_dir) if images_dir else None) for p in files]
    if class_names is None:
        classes_txt = ann_dir / "classes.txt"
        names = {o["name"] for *_, objs in parsed for o in objs}
        if ids is not None:
            names |= {n for f in every for n in _voc_object_names(f)}
        class_names = read_class_names(classes_txt) if classes_txt.is_file() else sorted(names)
    label_of = {n: k for k, n in enumerate(class_names)}
    records = []
    for xml_path, (file_name, width, height, objs) in zip(files, parsed):
        for obj in objs:
            if obj["name"] not in label_of:
                raise DataError(f"{xml_path}: unknown class {obj['name']!r}; "
                                f"known: {', '.join(class_names)}")
            obj["label"] = label_of[obj["name"]]
        records.append((xml_path, file_name, width, height, objs))
    return build_coco(records, list(class_names), ann_dir, fail_fast, skip_invalid, skipped)


def _voc_object_names(xml_path: Path) -> set[str]:
    try:
        root = _read_xml(xml_path)
    except DataError:
        return set()  # reported when (if) the file is read as part of a split
    return {(o.findtext("name") or "").strip() for o in root.iter("object")} - {""}


def voc_split_ids(root: str | os.PathLike, split: str) -> list[str]:
    """Image ids of ``root/ImageSets/Main/<split>.txt`` (first token of each line).

    ``UserError`` for an unknown split lists the available ones.
    """
    main = Path(root) / "ImageSets" / "Main"
    if not main.is_dir():
        raise UserError(f"--split {split}: {root} has no ImageSets/Main folder")
    available = sorted(p.stem for p in main.glob("*.txt"))
    common = [a for a in available if "_" not in a] or available  # not VOC's per-class <class>_<split> files
    split_file = path_inside(main, f"{split}.txt", "--split")
    if not split_file.is_file():
        raise UserError(f"--split {split}: no {split_file}; available: {', '.join(common) or 'none'}")
    lines = read_text(split_file, str(split_file), "MAX_LABEL_BYTES", DataError).splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DataError(f"{split_file}: no image ids")
    return ids
