"""YOLOv2's box parameterisation: sigmoid centre offsets within the cell, log-size ratios."""

from __future__ import annotations

import torch
from torch import Tensor

from metaanchor.families.yolov2.backbone import STRIDE
from metaanchor.geometry.box_coder import BBOX_XFORM_CLIP


class YoloBoxCoder:
    """YOLOv2's box parameterisation for grid anchors of one stride.

    An anchor is given as x1y1x2y2 centred on the top-left corner of its cell
    (``grid_anchors``' convention: centre (x * stride, y * stride)). For t = (tx, ty, tw, th):
    centre = corner + sigmoid(tx, ty) * stride, (w, h) = anchor (w, h) * exp(tw, th),
    with tw, th clamped at ``clip`` (torchvision's ``bbox_xform_clip``).
    Any leading shape: ``[..., 4]`` t with ``[..., 4]`` anchors (broadcast).
    """

    def __init__(self, stride: int = STRIDE, clip: float = BBOX_XFORM_CLIP):
        self.stride, self.clip = stride, clip

    def to_dict(self) -> dict:
        """How t decodes, for deployment (``deploy.numpy_postprocess.decode``)."""
        return {"name": "yolov2", "stride": self.stride, "clip": self.clip}

    def decode(self, t: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] (tx, ty, tw, th), [..., 4] anchors -> [..., 4] boxes x1y1x2y2 pixels."""
        ax, ay = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        cx = ax + torch.sigmoid(t[..., 0]) * self.stride
        cy = ay + torch.sigmoid(t[..., 1]) * self.stride
        w = aw * torch.exp(t[..., 2].clamp(max=self.clip))
        h = ah * torch.exp(t[..., 3].clamp(max=self.clip))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] boxes and the anchors they are assigned to -> [..., 4] targets
        (ox, oy, log(w / aw), log(h / ah)), ox, oy the centre's offset in the cell in [0, 1]."""
        ax, ay = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        ox = ((boxes[..., 0] + boxes[..., 2]) / 2 - ax) / self.stride
        oy = ((boxes[..., 1] + boxes[..., 3]) / 2 - ay) / self.stride
        return torch.stack([ox.clamp(0, 1), oy.clamp(0, 1), torch.log(w / aw), torch.log(h / ah)], dim=-1)
