"""The COCO detection dataset served to training and evaluation.

:class:`CocoDataset` loads and validates an annotation file (see
``metaanchor.data.coco_json`` and ``metaanchor.data.validate``) and serves
``(image, target)`` pairs; :func:`collate` batches them.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metaanchor.data.coco_json import load_coco_json, resolve_coco_paths
from metaanchor.data.io import array_to_tensor, image_size, path_inside, read_rgb_array  # the one image reader
from metaanchor.data.validate import validate_coco
from metaanchor.errors import DataError


def coco_from_dict(data: dict) -> Any:
    """A pycocotools ``COCO`` object built from ``data`` without touching disk."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDataset(torch.utils.data.Dataset):
    """Detection dataset from a COCO annotation file.

    ``path`` is a dataset folder (``DIR/annotations.json`` + ``DIR/images/``) or
    an annotation JSON, in which case ``images_dir`` is required; :meth:`from_coco` takes a COCO
    dict already read (``metaanchor.data.sources`` opens VOC and YOLO datasets in place with it).

    Item ``i`` is ``(image, target)``: image float32 ``[3, H, W]`` RGB in [0, 1];
    target ``{"boxes": [N, 4] float32 x1y1x2y2 px, "labels": [N] int64 in
    0..C-1, "image_id": int}`` (crowd annotations excluded).

    Attributes: ``class_names``, ``cat_ids`` (label -> COCO category id),
    ``ann_file``, ``images_dir``, ``image_ids``, ``coco`` (pycocotools, built from
    the validated data), ``skipped`` (reason -> count), ``warnings``.
    """

    def __init__(self, path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                 skip_invalid: bool = False, transforms=None, fail_fast: bool = False,
                 max_image_pixels: int | None = None):
        ann_file, images_dir = resolve_coco_paths(path, images_dir)
        self._build(load_coco_json(ann_file), ann_file, images_dir, skip_invalid, transforms, fail_fast,
                    max_image_pixels)

    @classmethod
    def from_coco(cls, data: dict, images_dir: str | os.PathLike, source: str | os.PathLike,
                  skip_invalid: bool = False, transforms=None, fail_fast: bool = False,
                  max_image_pixels: int | None = None, warn_tiny: bool = True) -> CocoDataset:
        """A dataset from a COCO dict already read (a VOC or YOLO source read in place, see
        ``metaanchor.data.sources``): file names are relative to ``images_dir``, and validated the same way
        as a JSON file's (they must stay inside it); ``source`` names the annotations in messages.
        ``warn_tiny=False``: the reader already warned about tiny boxes (``validate_coco``)."""
        self = cls.__new__(cls)
        self._build(data, Path(source), Path(images_dir), skip_invalid, transforms, fail_fast, max_image_pixels,
                    warn_tiny)
        return self

    def _build(self, raw: dict, ann_file: Path, images_dir: Path, skip_invalid: bool, transforms,
               fail_fast: bool, max_image_pixels: int | None, warn_tiny: bool = True) -> None:
        self.ann_file, self.images_dir = ann_file, images_dir
        self.max_image_pixels = max_image_pixels  # None: metaanchor.data.io's default cap
        data, self.skipped, self.warnings = validate_coco(raw, self.ann_file, skip_invalid and not fail_fast,
                                                          fail_fast, self.images_dir, warn_tiny)
        self.transforms = transforms
        self.cat_ids = [c["id"] for c in data["categories"]]
        self.class_names = [c["name"] for c in data["categories"]]
        self.images = data["images"]
        self.image_ids = [img["id"] for img in self.images]
        self._targets = self._index_targets(data)
        self.coco = coco_from_dict(data)

    def _index_targets(self, data: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        label_of = {cid: k for k, cid in enumerate(self.cat_ids)}
        per_image: dict[int, list] = {i: [] for i in self.image_ids}
        for ann in data["annotations"]:
            if not ann["iscrowd"]:
                per_image[ann["image_id"]].append(ann)
        targets = {}
        for image_id, anns in per_image.items():
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=np.float32).reshape(-1, 4)
            labels = np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64)
            targets[image_id] = (boxes, labels)
        return targets

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> Path:
        """The image file, checked (again, at read time) to lie inside ``images_dir``."""
        info = self.images[index]
        return path_inside(self.images_dir, info["file_name"], f"{self.ann_file}: image id {info['id']}")

    def __getitem__(self, index: int):
        return self.load(index)

    def load(self, index: int, size_for=None):
        """Item ``index``; ``size_for(h, w) -> (h', w')`` reads the image at that size (boxes scaled with it).

        The file's size (header, EXIF orientation applied) must equal the record's width x height."""
        info = self.images[index]
        path = self.image_path(index)
        width, height = image_size(path)
        if (width, height) != (info["width"], info["height"]):
            raise DataError(
                f"{path}: image is {width}x{height} (as displayed, after EXIF orientation) but {self.ann_file.name} "
                f"(image id {info['id']}) says {info['width']}x{info['height']}"
            )
        h, w = size_for(height, width) if size_for is not None else (height, width)
        image = array_to_tensor(read_rgb_array(path, self.max_image_pixels, None if (h, w) == (height, width)
                                               else (w, h)))
        boxes, labels = self._targets[info["id"]]
        boxes = torch.from_numpy(boxes.copy())
        if (h, w) != (height, width):
            boxes *= torch.tensor([w / width, h / height, w / width, h / height])
        target = {"boxes": boxes, "labels": torch.from_numpy(labels.copy()), "image_id": info["id"]}
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict]]:
    """Batch of ``(image, target)`` -> ``(list of [3, H, W] images, list of targets)``."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
