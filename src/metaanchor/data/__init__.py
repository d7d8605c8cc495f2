"""Datasets: COCO loading with validation, VOC/YOLO formats, synthetic shapes, augmentation."""

from metaanchor.data.augment import Compose, PhotometricJitter, RandomHorizontalFlip
from metaanchor.data.coco import CocoDataset, collate, load_coco_json, validate_coco
from metaanchor.data.formats import (
    FORMATS,
    convert,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
    write_yolo,
)
from metaanchor.data.synth import (
    DISTRIBUTIONS,
    SHAPES,
    SynthConfig,
    SynthDataset,
    render_sample,
    synth_config,
    write_synth_dataset,
)

__all__ = [
    "DISTRIBUTIONS", "FORMATS", "SHAPES", "CocoDataset", "Compose", "PhotometricJitter",
    "RandomHorizontalFlip", "SynthConfig", "SynthDataset", "collate", "convert",
    "load_coco_json", "read_coco", "read_voc", "read_yolo", "render_sample", "synth_config",
    "validate_coco", "write_coco", "write_synth_dataset", "write_voc", "write_yolo",
]
