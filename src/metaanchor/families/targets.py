"""Training targets checked where they enter a detector: one vectorised test per batch.

Per image {"boxes": [N, 4] float x1y1x2y2 pixels, finite, x2 >= x1, y2 >= y1; "labels": [N] int64 class
indices 0..C-1}. A mistake (a 1-based label, xywh boxes, a NaN) is a ``TargetError`` naming the image
index, the field and the value, instead of an IndexError deep in the loss or a silent NaN.
"""

from __future__ import annotations

import math

import torch

from metaanchor.errors import DataError


class TargetError(DataError, ValueError):
    """Training targets a detector cannot use: a label outside 0..C-1, a non-finite or inverted box."""


def check_targets(targets: list[dict], num_classes: int, num_images: int) -> None:
    """Training targets as ``forward`` takes them, per image {"labels": [N] int64 in 0..C-1, "boxes": [N, 4]
    float x1y1x2y2, finite, x2 >= x1, y2 >= y1}; a ``TargetError`` names the image index, field and value.

    One vectorised test per batch (one device sync); the culprit is looked for only when it fails."""
    if len(targets) != num_images:
        raise TargetError(f"targets: {len(targets)} target dicts for {num_images} images")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or not torch.is_tensor(t.get("boxes")) or not torch.is_tensor(t.get("labels")):
            raise TargetError(f"targets[{i}]: expected a dict with tensors 'boxes' [N, 4] and 'labels' [N]")
        boxes, labels = t["boxes"], t["labels"]
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != boxes.shape[:1]:
            raise TargetError(f"targets[{i}]: 'boxes' has shape {list(boxes.shape)} and 'labels' "
                              f"{list(labels.shape)}; expected [N, 4] and [N]")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TargetError(f"targets[{i}]['labels']: dtype {labels.dtype}; expected int64 class indices "
                              f"0..{num_classes - 1}")
    if not targets or sum(len(t["labels"]) for t in targets) == 0:
        return
    labels = torch.cat([t["labels"] for t in targets])
    boxes = torch.cat([t["boxes"] for t in targets]).float()
    bad = ((labels < 0) | (labels >= num_classes) | ~torch.isfinite(boxes).all(1)
           | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bool(bad.any()):
        raise TargetError(_target_problem(targets, num_classes))


def _target_problem(targets: list[dict], num_classes: int) -> str:
    """The message for the first bad label or box of ``check_targets``."""
    for i, t in enumerate(targets):
        for j, (lab, box) in enumerate(zip(t["labels"].tolist(), t["boxes"].tolist())):
            if not 0 <= lab < num_classes:
                return (f"targets[{i}]['labels'][{j}]: label {lab} is outside 0..{num_classes - 1} "
                        f"(labels are 0-based class indices; num_classes={num_classes})")
            shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
            if not all(math.isfinite(v) for v in box):
                return f"targets[{i}]['boxes'][{j}]: box {shown} is not finite"
            if box[2] < box[0] or box[3] < box[1]:
                return (f"targets[{i}]['boxes'][{j}]: box {shown} has x2 < x1 or y2 < y1 "
                        "(boxes are x1y1x2y2 pixels, not xywh)")
    return "targets: a bad label or box"  # not reached: check_targets found one
