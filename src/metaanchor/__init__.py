"""MetaAnchor: object detectors whose anchor boxes are an input.

    import metaanchor
    det = metaanchor.load_detector("runs/demo/last.pt")     # RetinaNet or YOLOv2, as the checkpoint says
    dets = det.predict(images, anchors="5x5")

The names below load on first use (PEP 562), so ``import metaanchor`` and the command line's
``--help`` do not import torch.
"""

from __future__ import annotations

import importlib

from metaanchor.version import __version__

_LAZY = {
    "AnchorSet": "metaanchor.geometry.anchors",
    "Detector": "metaanchor.families.retinanet",
    "RetinaNetDetector": "metaanchor.families.retinanet",
    "YoloV2Detector": "metaanchor.families.yolov2",
    "build_detector": "metaanchor.families",
    "load_detector": "metaanchor.families",
    "load_config": "metaanchor.config",
    "train": "metaanchor.engine.train",
}
_RENAMED = {"Detector": "RetinaNetDetector"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'metaanchor' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
