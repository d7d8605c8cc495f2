"""RetinaNet box coding: (dx, dy, dw, dh) deltas of boxes relative to anchors."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Largest log-scale a decoded box may grow by (torchvision's bbox_xform_clip).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as deltas to anchors and back (Faster R-CNN parameterisation).

    Works on any leading shape: ``[..., 4]`` boxes x1y1x2y2 with ``[..., 4]`` anchors.
    """

    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 clip: float = BBOX_XFORM_CLIP):
        self.weights = weights
        self.clip = clip

    def to_dict(self) -> dict:
        """How deltas decode, for deployment (``deploy.numpy_postprocess.decode``)."""
        return {"name": "retinanet", "weights": list(self.weights), "clip": self.clip}

    @staticmethod
    def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] boxes, [..., 4] anchors -> [..., 4] deltas."""
        wx, wy, ww, wh = self.weights
        bx, by, bw, bh = self._centre_size(boxes)
        ax, ay, aw, ah = self._centre_size(anchors)
        return torch.stack([
            wx * (bx - ax) / aw,
            wy * (by - ay) / ah,
            ww * torch.log(bw / aw),
            wh * torch.log(bh / ah),
        ], dim=-1)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] deltas, [..., 4] anchors -> [..., 4] boxes x1y1x2y2 (size change clamped)."""
        wx, wy, ww, wh = self.weights
        deltas = deltas.float()
        ax, ay, aw, ah = self._centre_size(anchors.float())
        cx = deltas[..., 0] / wx * aw + ax
        cy = deltas[..., 1] / wy * ah + ay
        w = torch.exp((deltas[..., 2] / ww).clamp(max=self.clip)) * aw
        h = torch.exp((deltas[..., 3] / wh).clamp(max=self.clip)) * ah
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
