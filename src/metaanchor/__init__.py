"""MetaAnchor: object detectors whose anchor boxes are an input.

    from metaanchor import Detector, AnchorSet
    det = Detector.from_checkpoint("runs/demo/last.pt")
    dets = det.predict(images, anchors=AnchorSet.parse("5x5"))
"""

__version__ = "0.1.0"

from metaanchor.families import load_detector
from metaanchor.families.retinanet import RetinaNetDetector as Detector
from metaanchor.geometry.anchors import AnchorSet

__all__ = ["AnchorSet", "Detector", "__version__", "load_detector"]
