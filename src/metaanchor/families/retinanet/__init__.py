"""The RetinaNet family: ResNet-FPN (P3-P7), two head towers, focal loss, MetaAnchor or predefined anchors."""

from metaanchor.families.retinanet.detector import RetinaNetConfig, RetinaNetDetector

__all__ = ["RetinaNetConfig", "RetinaNetDetector"]
