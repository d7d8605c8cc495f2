"""Compatibility: ``metaanchor.detector.Detector`` is the RetinaNet family.

Detector families live in ``metaanchor.families`` (``base``: what they share;
``retinanet``, ``yolov2``: one module each); import from there in new code.
"""

from metaanchor.deploy.folding import fold_batchnorm
from metaanchor.families.base import HEADS, BaseDetector
from metaanchor.families.retinanet import RetinaNetDetector as Detector

__all__ = ["HEADS", "BaseDetector", "Detector", "fold_batchnorm"]
