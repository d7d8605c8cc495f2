"""Per-image annotation records and the COCO-style dict every dataset reader returns.

The VOC and YOLO readers parse their files into records
``(source file, file_name, width, height, [ann])`` and turn them into a
validated COCO dict with :func:`build_coco`; the writers walk a COCO dict with
:func:`label_names` and :func:`anns_by_image`. Boxes are COCO ``[x, y, w, h]``
in continuous pixel coordinates; category ids are ``1..C`` in class-name order
and images get ids ``1..N`` in record order.
"""

from __future__ import annotations

from pathlib import Path

from metaanchor.data.validate import validate_coco

Record = tuple[Path, str, int, int, list[dict]]


def build_coco(records: list[Record], class_names: list[str], source: Path | None = None,
               fail_fast: bool = False, skip_invalid: bool = False, skipped: dict | None = None) -> dict:
    """Validated COCO dict from ``(source file, file_name, width, height, [ann])`` records.

    Each ann is ``{label, bbox: [x, y, w, h], iscrowd}`` with ``label`` in
    ``0..C-1``; problems are reported against the record's source file (the XML
    or txt it came from). With ``source`` the whole dict is checked once more
    against it: one file under two image ids warns (fails with ``fail_fast``).
    ``skip_invalid`` drops (and counts into ``skipped``, if given) the annotations
    ``validate_coco`` would refuse, as for a COCO file.
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
        clean, counts, _ = validate_coco(one, record_source, skip_invalid and not fail_fast, fail_fast,
                                        warn_tiny=source is None)
        if skipped is not None:
            for reason, n in counts.items():
                skipped[reason] = skipped.get(reason, 0) + n
        images.append(image)
        annotations.extend(clean["annotations"])
    data = {"images": images, "annotations": annotations, "categories": categories}
    if source is not None:
        validate_coco(data, source, fail_fast=fail_fast)
    return data


def label_names(coco_dict: dict) -> tuple[dict[int, int], list[str]]:
    """(category id -> contiguous label ``0..C-1``, class names) in category-id order."""
    cats = sorted(coco_dict["categories"], key=lambda c: c["id"])
    return {c["id"]: k for k, c in enumerate(cats)}, [c["name"] for c in cats]


def anns_by_image(coco_dict: dict) -> dict[int, list[dict]]:
    """Image id -> its annotations (every image present, possibly with none)."""
    out: dict[int, list[dict]] = {img["id"]: [] for img in coco_dict["images"]}
    for ann in coco_dict["annotations"]:
        out[ann["image_id"]].append(ann)
    return out
