"""RetinaNet losses: sigmoid focal loss (classification) and box regression, batched over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.geometry.matcher import Matcher
from metaanchor.modeling.head_parts import pad_targets

REG_LOSSES = ("smooth_l1", "l1", "giou")


def detection_loss(cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, targets: list[dict],
                   matcher: Matcher, box_coder: BoxCoder, reg_loss: str = "smooth_l1",
                   focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                   smooth_l1_beta: float = 1.0 / 9) -> dict[str, Tensor]:
    """RetinaNet losses for a batch, normalised by the number of positive anchors.

    Args:
        cls_logits: [B, A, C]; box_deltas: [B, A, 4]; anchors: [A, 4] x1y1x2y2.
        targets: per image {"boxes": [N, 4] x1y1x2y2 (network input pixels), "labels": [N]}.
    Returns:
        {"cls": focal loss, "box": regression loss}.
    """
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, anchors.device)
    matched = matcher(gt_boxes, gt_valid, anchors)  # [B, A]
    fg = matched >= 0
    keep = matched != Matcher.BETWEEN_THRESHOLDS
    idx = matched.clamp(min=0)
    num_fg = fg.sum().clamp(min=1).float()

    target_cls = torch.zeros_like(cls_logits)
    if fg.any():  # one-hot class targets on positive anchors
        fg_labels = torch.gather(gt_labels, 1, idx).masked_fill(~fg, 0)
        target_cls.scatter_(2, fg_labels[..., None], fg[..., None].to(cls_logits.dtype))
    cls_loss = sigmoid_focal_loss(cls_logits[keep], target_cls[keep], focal_alpha, focal_gamma, reduction="sum")

    if not fg.any():
        return {"cls": cls_loss / num_fg, "box": box_deltas.sum() * 0.0}
    matched_boxes = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))[fg]  # [P, 4]
    fg_anchors = anchors[None].expand(len(targets), -1, -1)[fg]
    pred = box_deltas[fg].float()
    if reg_loss == "giou":
        box_loss = generalized_box_iou_loss(box_coder.decode(pred, fg_anchors), matched_boxes, reduction="sum")
    else:
        target = box_coder.encode(matched_boxes, fg_anchors)
        if reg_loss == "l1":
            box_loss = F.l1_loss(pred, target, reduction="sum")
        else:
            box_loss = F.smooth_l1_loss(pred, target, beta=smooth_l1_beta, reduction="sum")
    return {"cls": cls_loss / num_fg, "box": box_loss / num_fg}
