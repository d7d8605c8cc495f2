"""MetaAnchor: object detectors whose anchor boxes are an input.

    import metaanchor
    det = metaanchor.load("runs/demo/last.pt")              # RetinaNet or YOLOv2, as the checkpoint says
    results = det(["street.jpg", "imgs/*.png"], anchors="5x5")  # paths, globs, folders, PIL, numpy, tensors
    r = results[0]; r.boxes, r.scores, r.labels, r.class_names; r.plot(); r.save("street_det.png"); r.to_coco()
    metaanchor.train("demo", out="runs/x", overrides={"solver.max_iter": 100})

``load`` returns a ``Predictor`` (``.model`` is the ``nn.Module``); ``load_detector`` returns the
detector module itself, whose ``predict`` gives per-image dicts of tensors.

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
    "train": "metaanchor.engine.api",
    "load": "metaanchor.engine.api",
    "predict": "metaanchor.engine.api",
    "Predictor": "metaanchor.engine.api",
    "Results": "metaanchor.engine.results",
    "PREDICT_SCORE_THRESH": "metaanchor.defaults",
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
