"""YOLOv2's target assignment and loss, batched over images.

Head output per anchor (5 + C values): ``[objectness, class_0..class_{C-1}, tx, ty, tw, th]``.

Assignment (``assign_targets``): each ground truth goes to the cell containing its
centre and, there, to the anchor whose shape (h, w) has the best IoU with its own
(boxes aligned at one centre). When several ground truths claim the same
(cell, anchor), the largest box wins (equal areas: the later one); the others
get no positive. ``ignored_predictions``: a prediction whose decoded box
overlaps any ground truth by more than ``ignore_iou`` (YOLOv2: 0.6) is not
punished as background. Every other prediction is background for objectness.

Loss (each summed and divided by the number of positives, at least 1):
- ``obj``: binary cross-entropy on the objectness logit (target 1 for positives,
  0 for background, ignored predictions left out). YOLOv2 used squared error on
  the sigmoid (and the IoU as the positive target); BCE is what its successors use.
- ``cls``: binary cross-entropy per class on positives (score = sigmoid(obj) * sigmoid(cls)).
- ``box``: YOLOv2's squared errors, (sigmoid(tx, ty) - centre offset in the cell)^2 and
  (tw, th - log(gt size / anchor size))^2, weighted by 2 - w*h / input area (small boxes count more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from metaanchor.geometry.iou import batched_box_iou, shape_iou
from metaanchor.modeling.head_parts import pad_targets

OBJ = 0  # index of the objectness logit in an anchor's slice


def class_slice(num_classes: int) -> slice:
    return slice(OBJ + 1, OBJ + 1 + num_classes)


def box_slice(num_classes: int) -> slice:
    return slice(OBJ + 1 + num_classes, OBJ + 5 + num_classes)


def assign_targets(gt_boxes: Tensor, gt_valid: Tensor, anchor_sizes: Tensor, grid_hw: tuple[int, int],
                   stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """Positives of YOLOv2's assignment.

    Args:
        gt_boxes: [B, M, 4] x1y1x2y2 input pixels; gt_valid: [B, M] bool.
        anchor_sizes: [K, 2] (h, w) pixels; grid_hw: (H, W) cells of ``stride`` pixels.
    Returns:
        (image [P], prediction [P] in 0..H*W*K-1, ground truth [P] in 0..M-1), one row per
        positive prediction; prediction index = (row * W + col) * K + anchor (the head's order).
    """
    h, w = grid_hw
    k = len(anchor_sizes)
    b, m = gt_valid.shape
    cx = (gt_boxes[..., 0] + gt_boxes[..., 2]) / 2
    cy = (gt_boxes[..., 1] + gt_boxes[..., 3]) / 2
    gh, gw = gt_boxes[..., 3] - gt_boxes[..., 1], gt_boxes[..., 2] - gt_boxes[..., 0]
    col = torch.div(cx, stride, rounding_mode="floor").long().clamp(0, w - 1)
    row = torch.div(cy, stride, rounding_mode="floor").long().clamp(0, h - 1)
    best = shape_iou(torch.stack([gh, gw], -1), anchor_sizes.to(gt_boxes)).argmax(-1)  # [B, M]
    pred = (row * w + col) * k + best
    img = torch.arange(b, device=gt_boxes.device)[:, None].expand(b, m)[gt_valid]
    gt = torch.arange(m, device=gt_boxes.device)[None].expand(b, m)[gt_valid]
    pred, area = pred[gt_valid], (gh * gw)[gt_valid]
    if len(pred) == 0:
        return img, pred, gt
    # one ground truth per (image, prediction): sort by slot, then area (stable: ties keep box order), take the last
    slot = img * (h * w * k) + pred
    order = torch.argsort(area, stable=True)
    order = order[torch.argsort(slot[order], stable=True)]
    _, counts = torch.unique_consecutive(slot[order], return_counts=True)
    winners = order[torch.cumsum(counts, 0) - 1]
    return img[winners], pred[winners], gt[winners]


def ignored_predictions(pred_boxes: Tensor, gt_boxes: Tensor, gt_valid: Tensor, ignore_iou: float) -> Tensor:
    """[B, A] bool: predictions [B, A, 4] whose IoU with some valid ground truth [B, M, 4] exceeds ``ignore_iou``."""
    if gt_boxes.shape[1] == 0:
        return torch.zeros(pred_boxes.shape[:2], dtype=torch.bool, device=pred_boxes.device)
    iou = batched_box_iou(pred_boxes, gt_boxes).masked_fill(~gt_valid[:, None, :], 0.0)
    return iou.amax(-1) > ignore_iou


def yolo_loss(out: Tensor, anchors: Tensor, grid_hw: tuple[int, int], targets: list[dict], coder,
              ignore_iou: float = 0.6) -> dict[str, Tensor]:
    """YOLOv2 losses for a batch.

    Args:
        out: [B, A, 5 + C] head output, A = H*W*K (position row-major, then anchor).
        anchors: [A, 4] grid anchors x1y1x2y2 (``grid_anchors``); grid_hw: (H, W).
        targets: per image {"boxes": [N, 4] x1y1x2y2 input pixels, "labels": [N]}.
        coder: a ``YoloBoxCoder`` (decode / encode, ``stride``).
    Returns:
        {"obj", "cls", "box"}, each normalised by the number of positives.
    """
    out = out.float()
    b, a, p = out.shape
    c = p - 5
    k = a // (grid_hw[0] * grid_hw[1])
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, out.device)
    obj, t = out[..., OBJ], out[..., box_slice(c)]
    with torch.no_grad():
        background = ~ignored_predictions(coder.decode(t, anchors), gt_boxes, gt_valid, ignore_iou)
    anchor_sizes = torch.stack([anchors[:k, 3] - anchors[:k, 1], anchors[:k, 2] - anchors[:k, 0]], 1)
    img, pred, gt = assign_targets(gt_boxes, gt_valid, anchor_sizes, grid_hw, coder.stride)
    num_pos = max(len(img), 1)

    obj_target = torch.zeros_like(obj)
    obj_target[img, pred] = 1.0
    weight = background.float()
    weight[img, pred] = 1.0
    obj_loss = F.binary_cross_entropy_with_logits(obj, obj_target, weight, reduction="sum") / num_pos
    if len(img) == 0:
        zero = out.sum() * 0.0
        return {"obj": obj_loss, "cls": zero, "box": zero}

    boxes = gt_boxes[img, gt]  # [P, 4]
    cls_target = F.one_hot(gt_labels[img, gt], c).float()
    cls_loss = F.binary_cross_entropy_with_logits(out[img, pred][:, class_slice(c)], cls_target,
                                                  reduction="sum") / num_pos
    target = coder.encode(boxes, anchors[pred])  # [P, 4]
    tp = t[img, pred]
    err = ((torch.sigmoid(tp[:, :2]) - target[:, :2]).square().sum(1)
           + (tp[:, 2:] - target[:, 2:]).square().sum(1))
    input_area = grid_hw[0] * grid_hw[1] * coder.stride ** 2
    scale = 2.0 - (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / input_area
    return {"obj": obj_loss, "cls": cls_loss, "box": (scale * err).sum() / num_pos}
