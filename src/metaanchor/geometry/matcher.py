"""Anchor-to-ground-truth matching by IoU, batched over images."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


class Matcher:
    """Assigns each anchor a ground-truth index, or a negative label.

    Anchors with max IoU >= ``high`` are positives; < ``low`` negatives
    (``BELOW_LOW_THRESHOLD``); in between are ignored (``BETWEEN_THRESHOLDS``).
    With ``allow_low_quality_matches`` each ground truth also claims the anchors
    with which it has its highest IoU, so no object goes unmatched.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high: float = 0.5, low: float = 0.4, allow_low_quality_matches: bool = True):
        if low > high:
            raise ValueError(f"Matcher: low threshold {low} > high threshold {high}")
        self.high, self.low = high, low
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, gt_boxes: Tensor, gt_valid: Tensor, anchors: Tensor) -> Tensor:
        """Match a padded batch.

        Args:
            gt_boxes: [B, M, 4] ground truth x1y1x2y2, padded.
            gt_valid: [B, M] bool, False on padding.
            anchors: [A, 4] x1y1x2y2 (the same for every image of the batch).
        Returns:
            [B, A] int64: matched ground-truth index in 0..M-1, or a negative label.
        """
        b, m = gt_valid.shape
        a = anchors.shape[0]
        if m == 0:
            return torch.full((b, a), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=anchors.device)
        iou = box_iou(gt_boxes.reshape(-1, 4), anchors).view(b, m, a)
        iou = iou.masked_fill(~gt_valid[..., None], -1.0)  # padding never wins
        best_iou, matched = iou.max(dim=1)  # [B, A]
        labels = matched.clone()
        labels[best_iou < self.high] = self.BETWEEN_THRESHOLDS
        labels[best_iou < self.low] = self.BELOW_LOW_THRESHOLD
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=2, keepdim=True).values  # [B, M, 1]
            claims = (iou == best_per_gt) & gt_valid[..., None] & (best_per_gt > 0)  # [B, M, A]
            has_claim = claims.any(dim=1)
            labels = torch.where(has_claim, matched, labels)
        return labels
