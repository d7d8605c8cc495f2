"""Detector families by name (``model.arch``): build, rebuild from a config, load a checkpoint.

    from metaanchor.families import build_detector, load_detector
    det = build_detector("yolov2", num_classes=3, anchors="kmeans5.yaml")
    det = load_detector("runs/yolo/last.pt")     # RetinaNet or YOLOv2, as the checkpoint says

Every family subclasses ``base.BaseDetector`` (what they share) in a module of its own and
has a class attribute ``arch`` (its name here), stored in its ``config`` (RetinaNet
checkpoints written before the key existed have none: RetinaNet). A new family is a
module here plus one line in ``ARCHS``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metaanchor import checkpoint as ckpt
from metaanchor.errors import CheckpointError, UserError
from metaanchor.families.base import DEFAULT_ARCH, BaseDetector
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.families.yolov2 import YoloV2Detector

ARCHS: dict[str, type[BaseDetector]] = {"retinanet": RetinaNetDetector, "yolov2": YoloV2Detector}


def detector_class(arch: str) -> type:
    """The detector class registered as ``arch``; a ``UserError`` naming the choices otherwise."""
    if arch not in ARCHS:
        raise UserError(f"model.arch={arch!r} is unknown; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def build_detector(arch: str = DEFAULT_ARCH, **kwargs):
    """A new detector of family ``arch`` with the constructor arguments ``kwargs``."""
    return detector_class(arch)(**kwargs)


def detector_from_config(config: dict):
    """Rebuild a detector from its ``config`` dict (``config["arch"]``, RetinaNet when absent)."""
    return detector_class(config.get("arch", DEFAULT_ARCH)).from_config(config)


def load_detector(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild whichever family a checkpoint holds (eval mode). Errors are ``CheckpointError``s naming the file."""
    payload = ckpt.load(path, map_location)
    arch = payload["model_config"].get("arch", DEFAULT_ARCH)
    if arch not in ARCHS:
        raise CheckpointError(f"checkpoint {path}: model.arch={arch!r} is unknown to this metaanchor version "
                              f"(knows {', '.join(ARCHS)}); upgrade metaanchor or re-train")
    return ARCHS[arch].from_payload(payload, path)


__all__ = ["ARCHS", "DEFAULT_ARCH", "BaseDetector", "RetinaNetDetector", "YoloV2Detector", "build_detector",
           "detector_class",
           "detector_from_config", "load_detector"]
