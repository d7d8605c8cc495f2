"""Batched post-processing: top-k per level, score threshold, decode, NMS, top detections.

No Python loop over images: candidates of the whole batch go through one
``torchvision.ops.batched_nms`` call, keyed by (image, class).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from metaanchor.box_coder import BoxCoder


def postprocess(cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, level_sizes: list[int],
                image_size: tuple[int, int], box_coder: BoxCoder, score_thresh: float = 0.05,
                nms_thresh: float = 0.5, topk_candidates: int = 1000,
                detections_per_img: int = 100) -> list[dict[str, Tensor]]:
    """Turn head outputs into detections.

    Args:
        cls_logits: [B, A, C]; box_deltas: [B, A, 4]; anchors: [A, 4].
        level_sizes: anchors per level (sum = A), for the per-level top-k.
        image_size: (H, W) of the padded batch, for clipping.
    Returns:
        per image {"boxes": [D, 4] x1y1x2y2, "scores": [D], "labels": [D] int64}, in batch pixels.
    """
    b, _, c = cls_logits.shape
    scores_all, idx_all = [], []
    start = 0
    for n in level_sizes:  # per-level top-k over (anchor, class), all images at once
        s = cls_logits[:, start:start + n].reshape(b, -1)
        k = min(topk_candidates, s.shape[1])
        top_s, top_i = s.topk(k, dim=1, sorted=False)
        scores_all.append(top_s)
        idx_all.append(top_i + start * c)
        start += n
    logits, flat_idx = torch.cat(scores_all, 1), torch.cat(idx_all, 1)  # [B, S]
    scores = torch.sigmoid(logits.float())
    keep = scores > score_thresh
    img_idx = torch.arange(b, device=scores.device)[:, None].expand_as(scores)[keep]
    flat_idx, scores = flat_idx[keep], scores[keep]
    anchor_idx, labels = flat_idx // c, flat_idx % c
    boxes = box_coder.decode(box_deltas[img_idx, anchor_idx], anchors[anchor_idx])
    boxes = clip_boxes_to_image(boxes, image_size)

    keep = batched_nms(boxes, scores, img_idx * c + labels, nms_thresh)  # sorted by score
    keep = keep[torch.argsort(img_idx[keep], stable=True)]  # group by image, score order kept
    img_of = img_idx[keep]
    counts = torch.bincount(img_of, minlength=b)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(keep), device=keep.device) - first[img_of]
    keep = keep[rank < detections_per_img]
    counts = counts.clamp(max=detections_per_img).tolist()
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in
            zip(boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts))]
