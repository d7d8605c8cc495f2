"""RetinaNet losses: sigmoid focal loss (classification) and box regression, batched over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

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

    if fg.any():  # [B, A]: the class of a positive anchor, else -1
        fg_labels = torch.gather(gt_labels, 1, idx).masked_fill(~fg, -1)
    else:
        fg_labels = torch.full_like(matched, -1)
    cls_loss = focal_loss_sum(cls_logits, fg_labels, keep, focal_alpha, focal_gamma)

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


def focal_loss_sum(logits: Tensor, labels: Tensor, keep: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017), summed: torchvision's ``sigmoid_focal_loss(reduction="sum")`` of
    the kept anchors' logits against one-hot targets, in fewer memory passes.

    Args:
        logits: [B, A, C] class logits; labels: [B, A] int64, the target class of a positive anchor, -1 for a
            negative one; keep: [B, A] bool, False for anchors the loss ignores (between the IoU thresholds).
    Returns:
        a scalar (float32, or float64 for float64 logits). Its gradient is computed with the loss
        (``_FocalLossSum``), not by autograd through a dozen elementwise ops, and no [P, C] copies of the
        kept rows are made.
    """
    target = labels[..., None] == torch.arange(logits.shape[-1], device=logits.device)  # [B, A, C] bool
    return _FocalLossSum.apply(logits, target, keep, alpha, gamma)


class _FocalLossSum(torch.autograd.Function):
    """Sum over [B, A, C] of alpha_t (1 - p_t)^gamma (-log p_t), p_t = sigmoid(z), z = x where the target is 1
    and -x where it is 0; anchors with keep False count 0. Its derivative in z is
    alpha_t (1 - p_t)^gamma (gamma p_t log p_t - (1 - p_t)), computed in the forward pass (at least float32)."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, keep: Tensor, alpha: float, gamma: float) -> Tensor:
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float16/bfloat16 (autocast) -> float32
        log_p = F.logsigmoid(torch.where(target, x, -x))
        p = log_p.exp()
        q = 1.0 - p
        weight = torch.where(target, x.new_tensor(alpha), x.new_tensor(1.0 - alpha)).mul_(keep[..., None])  # alpha_t
        weight.mul_(q.square() if gamma == 2.0 else q.pow(gamma))
        loss = -(weight * log_p).sum()
        grad = p.mul_(log_p).mul_(gamma).sub_(q).mul_(weight)  # d loss / d z
        del x, log_p, q, weight  # [B, A, C] each: freed before the last one is made
        ctx.save_for_backward(torch.where(target, grad, -grad))  # d loss / d x
        ctx.dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * grad_out).to(ctx.dtype), None, None, None, None
