"""The box shapes of a dataset, as anchor fitting and the anchor plots take them.

    shapes = box_shapes("data/train")                  # [N, 2] (h, w) pixels of the original images
    shapes = input_shapes("data/train", None, 512)     # [N, 2] (h, w) pixels as the network sees them
    shapes = input_shapes("data/bccd", None, 512, split="trainval")   # a VOC root's split

Any dataset spec ``data.sources`` opens works (COCO folder or JSON, VOC root, data.yaml); ``split``
picks a VOC split or data.yaml entry (default ``train``). No image is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metaanchor.data.sources import read_coco_dict
from metaanchor.errors import UserError
from metaanchor.geometry.resize import resized_size


def box_shapes(dataset_dir: str | Path, images: str | Path | None = None, split: str | None = None,
               option: str = "--data") -> np.ndarray:
    """(h, w) of every non-crowd box of a dataset: [N, 2] pixels."""
    return _boxes(*read_coco_dict(dataset_dir, images, split, option=option))[0]


def input_shapes(dataset_dir: str | Path, images: str | Path | None, min_size: int,
                 max_size: int | None = None, split: str | None = None, option: str = "--data") -> np.ndarray:
    """(h, w) of every non-crowd box as the network sees it: [N, 2] pixels at input scale
    (:func:`coco_input_shapes` of the dataset ``data.sources`` reads)."""
    data, source = read_coco_dict(dataset_dir, images, split, option=option)
    return coco_input_shapes(data, min_size, max_size, source)


def coco_input_shapes(data: dict, min_size: int, max_size: int | None = None, source: str | Path = "dataset"
                      ) -> np.ndarray:
    """(h, w) of every non-crowd box of a validated COCO dict (e.g. an opened ``CocoDataset``'s
    ``coco.dataset``) as the network sees it: [N, 2] pixels at input scale.

    Each image is resized as the model's batcher resizes it (``geometry.resize.resized_size``:
    short side ``min_size`` unless the long side would exceed ``max_size``, default ``min_size``),
    its boxes by the same factors (height by h'/h, width by w'/w).
    """
    shapes, sides = _boxes(data, source)
    if (sides <= 0).any():
        raise UserError(f"{source}: an image record has no height/width; the boxes cannot be resized to "
                        "the input scale")
    factors = np.array([np.divide(resized_size(h, w, min_size, max_size or min_size), (h, w)) for h, w in sides])
    return shapes * factors


def _boxes(data: dict, source) -> tuple[np.ndarray, np.ndarray]:
    """Box shapes [N, 2] (h, w) px and the (height, width) of each box's image [N, 2]."""
    size = {im["id"]: (im.get("height") or 0, im.get("width") or 0) for im in data["images"]}
    anns = [a for a in data["annotations"] if not a.get("iscrowd")]
    if not anns:
        raise UserError(f"{source}: no boxes to fit anchors to")
    sides = [size.get(a["image_id"], (0, 0)) for a in anns]
    return (np.asarray([(a["bbox"][3], a["bbox"][2]) for a in anns], dtype=np.float64),
            np.asarray(sides, dtype=np.float64))


def input_scale(dataset_dir: str | Path, images: str | Path | None, input_size: int,
                split: str | None = None) -> float:
    """``input_size`` over the median short side of a dataset's images (how much its boxes are resized)."""
    data, _ = read_coco_dict(dataset_dir, images, split)
    sides = [min(im["height"], im["width"]) for im in data["images"]]
    return input_size / float(np.median(sides)) if sides else 1.0
