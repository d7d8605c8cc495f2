"""Readers and writers for COCO JSON, Pascal VOC XML and YOLO txt, and conversion.

Every reader returns a validated COCO-style dict (``images``, ``annotations``,
``categories``; bbox ``[x, y, w, h]`` in continuous pixel coordinates).

Conventions:

- VOC coordinates are 1-based inclusive pixel indices: COCO ``[x, y, w, h]`` is
  written as ``xmin = x + 1, ymin = y + 1, xmax = x + w, ymax = y + h`` and read
  back the inverse way (as detectron2 does). Integral values are written as
  integers (standard VOC); fractional ones with 3 decimals, so a round trip is
  exact for whole-pixel boxes and within 5e-4 px otherwise. ``difficult=1`` maps
  to ``iscrowd=1`` (ignored in training and evaluation) and back.
- YOLO lines are ``cls cx cy w h`` normalised by the image size, written with
  10 significant digits. Crowd annotations have no YOLO form and are left out
  (with a logged warning). Class names go to ``classes.txt``.
- Category ids are renumbered ``1..C`` in class-name order by the VOC/YOLO
  readers; images get ids ``1..N`` in sorted file-name order.
- :func:`convert` writes a self-contained dataset folder: images are hard-linked
  (or copied when linking is impossible) into ``dst/images``.
- Every path built from a record's ``file_name`` (image reads, links, label and
  XML writes) goes through :func:`metaanchor.data.io.path_inside`: absolute names,
  ``..`` and symlinks leaving the folder are errors naming the record, so
  nothing outside ``dst`` is ever written or deleted.
- VOC sources honour the official split with ``split=NAME``
  (``ImageSets/Main/NAME.txt``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from metaanchor.data.coco import load_coco_json, resolve_coco_paths, validate_coco
from metaanchor.data.io import IMAGE_SUFFIXES, image_size, path_inside
from metaanchor.errors import DataError, UserError

log = logging.getLogger(__name__)

FORMATS = ("coco", "voc", "yolo")


# --------------------------------------------------------------------------- shared helpers


def write_coco(coco_dict: dict, path: str | os.PathLike) -> Path:
    """Write ``coco_dict`` as JSON atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(coco_dict, f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_coco(path: str | os.PathLike, skip_invalid: bool = False, fail_fast: bool = False,
              images_dir: str | os.PathLike | None = None, skipped: dict | None = None) -> dict:
    """Read and validate a COCO JSON file (or dataset folder's annotations.json).

    With ``images_dir`` file names are also resolved and must stay inside it;
    ``skipped`` (if given) receives the skip counts (see ``validate_coco``).
    """
    path = Path(path)
    ann_file = path / "annotations.json" if path.is_dir() else path
    data, counts, _ = validate_coco(load_coco_json(ann_file), ann_file, skip_invalid and not fail_fast,
                                    fail_fast, images_dir)
    if skipped is not None:
        skipped.update(counts)
    return data


def _build_coco(records: list[tuple[Path, str, int, int, list[dict]]],
                class_names: list[str], source: Path | None = None, fail_fast: bool = False) -> dict:
    """Validated COCO dict from ``(source file, file_name, width, height, [ann])`` records.

    Each ann is ``{label, bbox: [x, y, w, h], iscrowd}``; problems are reported
    against the record's source file (the XML or txt it came from).
    """
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]
    images, annotations = [], []
    for image_id, (record_source, file_name, width, height, anns) in enumerate(records, start=1):
        image = {"id": image_id, "file_name": file_name, "width": width, "height": height}
        mine = []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            mine.append({"id": len(annotations) + len(mine) + 1, "image_id": image_id,
                         "category_id": ann["label"] + 1, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": ann.get("iscrowd", 0)})
        one = {"images": [image], "annotations": mine, "categories": categories}
        clean, _, _ = validate_coco(one, record_source)
        images.append(image)
        annotations.extend(clean["annotations"])
    data = {"images": images, "annotations": annotations, "categories": categories}
    if source is not None:  # across records: one file under two image ids warns (fails with fail_fast)
        validate_coco(data, source, fail_fast=fail_fast)
    return data


def _label_names(coco_dict: dict) -> tuple[dict[int, int], list[str]]:
    """(category id -> contiguous label, class names) in category-id order."""
    cats = sorted(coco_dict["categories"], key=lambda c: c["id"])
    return {c["id"]: k for k, c in enumerate(cats)}, [c["name"] for c in cats]


def _anns_by_image(coco_dict: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {img["id"]: [] for img in coco_dict["images"]}
    for ann in coco_dict["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def _read_class_names(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read class names: {exc}") from None
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def _write_class_names(names: list[str], path: Path) -> None:
    bad = [n for n in names if not n.strip() or "\n" in n]
    if bad:
        raise DataError(f"category name {bad[0]!r} cannot be written to {path}")
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def _num(value: float) -> str:
    """Integral values as integers, others with 3 decimals (VOC rounding rule)."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.3f}".rstrip("0")


def _output_path(root: Path, file_name: str, suffix: str, what: str) -> Path:
    """``root / file_name`` with ``suffix``, checked to stay inside ``root`` (see ``io.path_inside``)."""
    path_inside(root, file_name, what)
    return path_inside(root, Path(file_name).with_suffix(suffix).as_posix(), what)


# --------------------------------------------------------------------------- Pascal VOC


def write_voc(coco_dict: dict, out_ann_dir: str | os.PathLike) -> Path:
    """One ``<stem>.xml`` per image (sub-folders of file_name kept) + ``classes.txt``."""
    out = Path(out_ann_dir)
    out.mkdir(parents=True, exist_ok=True)
    label_of, names = _label_names(coco_dict)
    _write_class_names(names, out / "classes.txt")
    anns = _anns_by_image(coco_dict)
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
        xml_path = _output_path(out, img["file_name"], ".xml", f"image id {img['id']}")
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=True)
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


def _parse_voc_file(xml_path: Path, images_dir: Path | None) -> tuple[str, int, int, list[dict]]:
    """(file_name, width, height, [{name, bbox, iscrowd}]) from one VOC XML file."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise DataError(f"{xml_path}: malformed XML at line {line} column {col + 1}") from None
    except OSError as exc:
        raise DataError(f"{xml_path}: cannot read: {exc}") from None
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
             fail_fast: bool = False) -> dict:
    """COCO dict from every ``*.xml`` under ``ann_dir`` (sorted, recursive), or from ``ids``.

    ``ids`` (e.g. from :func:`voc_split_ids`) restricts reading to
    ``ann_dir/<id>.xml`` in that order. Class names come from ``class_names``,
    else ``ann_dir/classes.txt``, else the sorted set of object names of every
    XML in ``ann_dir`` (all of them even with ``ids``, so the splits of one
    dataset share category ids). ``images_dir`` is only read for files without <size>.
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
        class_names = _read_class_names(classes_txt) if classes_txt.is_file() else sorted(names)
    label_of = {n: k for k, n in enumerate(class_names)}
    records = []
    for xml_path, (file_name, width, height, objs) in zip(files, parsed):
        for obj in objs:
            if obj["name"] not in label_of:
                raise DataError(f"{xml_path}: unknown class {obj['name']!r}; "
                                f"known: {', '.join(class_names)}")
            obj["label"] = label_of[obj["name"]]
        records.append((xml_path, file_name, width, height, objs))
    return _build_coco(records, list(class_names), ann_dir, fail_fast)


def _voc_object_names(xml_path: Path) -> set[str]:
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError):
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
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{split_file}: cannot read: {exc}") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DataError(f"{split_file}: no image ids")
    return ids


# --------------------------------------------------------------------------- YOLO


def write_yolo(coco_dict: dict, out_dir: str | os.PathLike) -> Path:
    """``out_dir/labels/<stem>.txt`` per image (``cls cx cy w h``) + ``out_dir/classes.txt``."""
    out = Path(out_dir)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    label_of, names = _label_names(coco_dict)
    _write_class_names(names, out / "classes.txt")
    anns = _anns_by_image(coco_dict)
    crowd = 0
    written: dict[Path, str] = {}
    for img in coco_dict["images"]:
        txt = _output_path(out / "labels", img["file_name"], ".txt", f"image id {img['id']}")
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
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
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


def _read_yolo_file(txt: Path, width: int, height: int, num_classes: int) -> list[dict]:
    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{txt}: cannot read: {exc}") from None
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
              class_names: list[str] | str | os.PathLike | None = None) -> dict:
    """COCO dict from YOLO labels: one image per file under ``images_dir``.

    ``labels_dir/<stem>.txt`` (same sub-folders) holds its objects; a missing
    file means no objects; a label file without an image is an error.
    ``class_names`` is a list, a ``classes.txt`` path, or None to look for
    ``classes.txt`` in ``labels_dir`` or its parent. Image sizes come from headers.
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
        objs = _read_yolo_file(txt, width, height, len(names)) if txt.is_file() else []
        records.append((txt if txt.is_file() else path, rel.as_posix(), width, height, objs))
    return _build_coco(records, names)


def _resolve_yolo_classes(labels_dir: Path, class_names) -> list[str]:
    if isinstance(class_names, (list, tuple)):
        if not class_names:
            raise UserError("YOLO class names list is empty")
        return list(class_names)
    if class_names is not None:
        return _read_class_names(Path(class_names))
    for candidate in (labels_dir / "classes.txt", labels_dir.parent / "classes.txt"):
        if candidate.is_file():
            return _read_class_names(candidate)
    raise DataError(f"{labels_dir}: no classes.txt found here or in the parent folder; "
                    "pass the class names")


# --------------------------------------------------------------------------- conversion


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
    """Hard-link (or copy) each image from ``src_dir`` into ``dst_dir`` (both paths checked to stay inside)."""
    for img in images:
        name, what = img["file_name"], f"image id {img['id']}"
        src, dst = path_inside(src_dir, name, what), path_inside(dst_dir, name, what)
        if not src.is_file():
            raise DataError(f"{src}: image file not found")
        if dst.exists():
            if dst.samefile(src):
                continue
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def convert(src: str | os.PathLike, src_format: str, dst: str | os.PathLike, dst_format: str,
            images_dir: str | os.PathLike | None = None, split: str | None = None,
            skip_invalid: bool = False, fail_fast: bool = False, skipped: dict | None = None) -> Path:
    """Convert a dataset between ``coco``, ``voc`` and ``yolo``; return ``dst``.

    Sources: coco = dataset folder or JSON (+ ``images_dir``); voc = folder with
    ``Annotations/`` (or the XML folder itself); yolo = folder with ``labels/``
    (or the labels folder). ``images_dir`` defaults to ``src/images`` or
    ``src/JPEGImages``. ``dst`` becomes a self-contained folder: coco ->
    ``annotations.json``; voc -> ``Annotations/``; yolo -> ``labels/`` +
    ``classes.txt``; all with ``images/``.

    ``split`` (VOC sources only) converts the images of
    ``ImageSets/Main/<split>.txt``. ``skip_invalid`` drops (and counts into
    ``skipped``) COCO records that can be skipped, among them images whose
    file name leaves the images folder; ``fail_fast`` makes every such record
    and a file listed under two image ids an error.
    """
    for fmt in (src_format, dst_format):
        if fmt not in FORMATS:
            raise UserError(f"unknown dataset format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if split is not None and src_format != "voc":
        raise UserError(f"--split {split}: only VOC sources have splits (ImageSets/Main/NAME.txt)")
    src, dst = Path(src), Path(dst)
    ann, img_dir = _locate(src, src_format, Path(images_dir) if images_dir else None)
    if src_format == "coco":
        data = read_coco(ann, skip_invalid, fail_fast, img_dir, skipped)
    elif src_format == "voc":
        ids = None if split is None else voc_split_ids(src if (src / "Annotations").is_dir() else src.parent, split)
        data = read_voc(ann, img_dir, ids=ids, fail_fast=fail_fast)
    else:
        data = read_yolo(ann, img_dir)
    dst.mkdir(parents=True, exist_ok=True)
    _link_images(data["images"], img_dir, dst / "images")
    if dst_format == "coco":
        write_coco(data, dst / "annotations.json")
    elif dst_format == "voc":
        write_voc(data, dst / "Annotations")
    else:
        write_yolo(data, dst)
    return dst
