"""Datasets: COCO, VOC and data.yaml datasets opened in place with validation, format conversion, synthetic
shapes, augmentation."""

from metaanchor.data.augment import Compose, PhotometricJitter, RandomHorizontalFlip
from metaanchor.data.coco import CocoDataset, collate
from metaanchor.data.coco_json import load_coco_json, read_coco, write_coco
from metaanchor.data.convert import FORMATS, convert
from metaanchor.data.sources import open_dataset
from metaanchor.data.synth import (
    DISTRIBUTIONS,
    SHAPES,
    SynthConfig,
    SynthDataset,
    render_sample,
    synth_config,
    write_synth_dataset,
)
from metaanchor.data.validate import validate_coco
from metaanchor.data.voc import read_voc, write_voc
from metaanchor.data.yolo import read_yolo, write_yolo

__all__ = [
    "DISTRIBUTIONS", "FORMATS", "SHAPES", "CocoDataset", "Compose", "PhotometricJitter",
    "RandomHorizontalFlip", "SynthConfig", "SynthDataset", "collate", "convert",
    "load_coco_json", "open_dataset", "read_coco", "read_voc", "read_yolo", "render_sample", "synth_config",
    "validate_coco", "write_coco", "write_synth_dataset", "write_voc", "write_yolo",
]
