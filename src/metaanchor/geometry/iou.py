"""Overlap of boxes: batched box IoU and the IoU of box shapes sharing one centre.

Pairwise IoU of two plain box lists is ``torchvision.ops.box_iou``; these are the forms it lacks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

EPS = 1e-9  # keeps empty unions (zero-size padding boxes) from dividing by zero


def batched_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """[B, N, 4], [B, M, 4] x1y1x2y2 -> [B, N, M] IoU within each batch item (boxes of zero size give 0)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp(min=EPS)


def shape_iou(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """IoU of boxes sharing one centre: a [..., 2], b [K, 2] (h, w) -> [..., K]; tensors or numpy arrays
    (anchor fitting works in float64 numpy, YOLOv2's target assignment in torch)."""
    xp = torch if isinstance(a, Tensor) else np
    inter = xp.minimum(a[..., None, 0], b[:, 0]) * xp.minimum(a[..., None, 1], b[:, 1])
    union = (a[..., 0] * a[..., 1])[..., None] + b[:, 0] * b[:, 1] - inter
    return inter / (union.clamp(min=EPS) if xp is torch else np.maximum(union, EPS))
