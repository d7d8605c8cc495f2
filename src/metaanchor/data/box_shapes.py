"""The box shapes of a dataset, as anchor fitting and the anchor plots take them.

    shapes = box_shapes("data/train")                  # [N, 2] (h, w) pixels of the original images
    shapes = input_shapes("data/train", None, 512)     # [N, 2] (h, w) pixels as the network sees them
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metaanchor.data.coco_json import load_coco_json, resolve_coco_paths
from metaanchor.data.validate import validate_coco
from metaanchor.errors import UserError
from metaanchor.geometry.resize import resized_size


def box_shapes(dataset_dir: str | Path, images: str | Path | None = None) -> np.ndarray:
    """(h, w) of every non-crowd box of a COCO dataset (folder or JSON + images): [N, 2] pixels."""
    return _boxes(dataset_dir, images)[0]


def input_shapes(dataset_dir: str | Path, images: str | Path | None, min_size: int,
                 max_size: int | None = None) -> np.ndarray:
    """(h, w) of every non-crowd box as the network sees it: [N, 2] pixels at input scale.

    Each image is resized as the model's batcher resizes it (``geometry.resize.resized_size``:
    short side ``min_size`` unless the long side would exceed ``max_size``, default ``min_size``),
    its boxes by the same factors (height by h'/h, width by w'/w).
    """
    shapes, sides = _boxes(dataset_dir, images)
    if (sides <= 0).any():
        raise UserError(f"{dataset_dir}: an image record has no height/width; the boxes cannot be resized to "
                        "the input scale")
    factors = np.array([np.divide(resized_size(h, w, min_size, max_size or min_size), (h, w)) for h, w in sides])
    return shapes * factors


def _boxes(dataset_dir, images) -> tuple[np.ndarray, np.ndarray]:
    """Box shapes [N, 2] (h, w) px and the (height, width) of each box's image [N, 2]."""
    ann_file, _ = resolve_coco_paths(dataset_dir, images if images is not None else ".")
    data, _, _ = validate_coco(load_coco_json(ann_file), ann_file, skip_invalid=True)
    size = {im["id"]: (im.get("height") or 0, im.get("width") or 0) for im in data["images"]}
    anns = [a for a in data["annotations"] if not a.get("iscrowd")]
    if not anns:
        raise UserError(f"{ann_file}: no boxes to fit anchors to")
    sides = [size.get(a["image_id"], (0, 0)) for a in anns]
    return (np.asarray([(a["bbox"][3], a["bbox"][2]) for a in anns], dtype=np.float64),
            np.asarray(sides, dtype=np.float64))


def input_scale(dataset_dir: str | Path, images: str | Path | None, input_size: int) -> float:
    """``input_size`` over the median short side of a dataset's images (how much its boxes are resized)."""
    ann_file, _ = resolve_coco_paths(dataset_dir, images if images is not None else ".")
    sides = [min(im["height"], im["width"]) for im in load_coco_json(ann_file).get("images", [])
             if im.get("height") and im.get("width")]
    return input_size / float(np.median(sides)) if sides else 1.0
