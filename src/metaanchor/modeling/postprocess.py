"""Batched post-processing: top-k per level, score threshold, decode, NMS, top detections.

No Python loop over images: candidates of the whole batch go through one
grouped NMS keyed by (image, class) (``grouped_nms``), first on each image's
best-scored candidates only (``top_nms``). Each image is handled within its own
size, not the padded batch canvas, so its detections do not depend on the other
images of the batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms

from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.geometry.iou import batched_box_iou


def postprocess(cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, level_sizes: list[int],
                image_sizes, box_coder: BoxCoder, score_thresh: float = 0.05,
                nms_thresh: float = 0.5, topk_candidates: int = 1000,
                detections_per_img: int = 100, skip_padding: bool = True) -> list[dict[str, Tensor]]:
    """Turn head outputs into detections.

    Args:
        cls_logits: [B, A, C]; box_deltas: [B, A, 4]; anchors: [A, 4].
        level_sizes: anchors per level (sum = A), for the per-level top-k.
        image_sizes: each image's (h, w) inside the padded batch, [B, 2] (tensor or list of pairs),
            or one (H, W) for all. Anchors centred outside an image (in its padding) are ignored
            (unless ``skip_padding`` is False, as in torchvision), and boxes are clipped to the image before NMS.
    Returns:
        per image {"boxes": [D, 4] x1y1x2y2, "scores": [D], "labels": [D] int64}, in batch pixels.
    """
    levels = zip(cls_logits.split(level_sizes, 1), box_deltas.split(level_sizes, 1))
    return postprocess_levels(levels, anchors, image_sizes, box_coder, score_thresh, nms_thresh,
                              topk_candidates, detections_per_img, skip_padding)


def postprocess_levels(levels: Iterable[tuple[Tensor, Tensor]], anchors: Tensor, image_sizes,
                       box_coder: BoxCoder, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                       topk_candidates: int = 1000, detections_per_img: int = 100,
                       skip_padding: bool = True) -> list[dict[str, Tensor]]:
    """``postprocess`` on head outputs given level by level.

    ``levels`` yields per level ([B, A_l, C] class logits, [B, A_l, 4] box deltas), in anchor order
    (sum of A_l = A, the rows of ``anchors`` [A, 4]). Each level's logits are reduced to its top-k
    candidates before the next is taken, so a lazy iterable (a head's ``level_outputs``) keeps one
    level's [B, A_l, C] in memory instead of the whole [B, A, C]. Other arguments and the result
    as ``postprocess``.
    """
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2] (x, y)
    sizes = torch.as_tensor(image_sizes, dtype=anchors.dtype, device=anchors.device).reshape(-1, 2)
    scores_all, idx_all, deltas = [], [], []
    start = 0
    for cls_logits, box_deltas in levels:  # per-level top-k over (anchor, class), all images at once
        b, n, c = cls_logits.shape
        sizes = sizes.expand(b, 2)
        ctr = centre[start:start + n]
        inside = (ctr[None, :, 0] < sizes[:, 1:2]) & (ctr[None, :, 1] < sizes[:, 0:1])  # [B, A_l]
        top_s, top_i = anchor_topk(cls_logits, topk_candidates, inside if skip_padding else None)
        scores_all.append(top_s)
        idx_all.append(top_i + start * c)
        deltas.append(box_deltas)
        start += n
        del cls_logits  # before the next level is computed
    logits, flat_idx = torch.cat(scores_all, 1), torch.cat(idx_all, 1)  # [B, S]
    scores = torch.sigmoid(logits.float())
    keep = (scores > score_thresh) & (logits > float("-inf"))
    img_idx = torch.arange(b, device=scores.device)[:, None].expand_as(scores)[keep]
    flat_idx, scores = flat_idx[keep], scores[keep]
    anchor_idx, labels = flat_idx // c, flat_idx % c
    boxes = box_coder.decode(torch.cat(deltas, 1)[img_idx, anchor_idx], anchors[anchor_idx])
    upper = sizes.flip(1).repeat(1, 2).to(boxes.dtype)[img_idx]  # [N, 4] (w, h, w, h) of each box's image
    boxes = torch.minimum(boxes.clamp(min=0), upper)

    keep = top_nms(boxes, scores, img_idx, img_idx * c + labels, nms_thresh, detections_per_img, b)
    keep = keep[torch.argsort(img_idx[keep], stable=True)]  # group by image, score order kept
    img_of = img_idx[keep]
    counts = torch.bincount(img_of, minlength=b)
    keep = keep[rank_in_group(img_of, counts) < detections_per_img]
    counts = counts.clamp(max=detections_per_img).tolist()
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in
            zip(boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts))]


def anchor_topk(logits: Tensor, k: int, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-k over (anchor, class) pairs of each image, without scanning everything twice.

    Args:
        logits: [B, N, C] class logits of N anchors.
        valid: optional [B, N] bool; pairs of other anchors get -inf.
    Returns:
        values [B, k'] and flat indices [B, k'] into the N*C pairs (k' = min(k, N*C)), unsorted.

    The k best pairs lie in the k anchors with the best class maximum, so one
    max over classes ([B, N]) and a top-k over those k anchors' C scores ([B, k*C])
    replace a top-k over all N*C scores (the P3 level at 512 px: 2.9M per image).
    Values are exact; among tied scores another index may win.
    """
    b, n, c = logits.shape
    neg_inf = float("-inf")
    if n <= k or c == 1:
        if valid is not None:
            logits = logits.masked_fill(~valid[..., None], neg_inf)
        flat = logits.reshape(b, -1)
        return flat.topk(min(k, flat.shape[1]), dim=1, sorted=False)
    best = logits.amax(dim=2)  # [B, N]
    if valid is not None:
        best = best.masked_fill(~valid, neg_inf)
    best_anchor = best.topk(k, dim=1, sorted=False).indices  # [B, k]
    pool = torch.gather(logits, 1, best_anchor[..., None].expand(-1, -1, c))  # [B, k, C]
    if valid is not None:  # fewer than k valid anchors: the invalid ones picked must not win
        pool = pool.masked_fill(~torch.gather(valid, 1, best_anchor)[..., None], neg_inf)
    pool = pool.reshape(b, -1)  # [B, k*C]
    values, pos = pool.topk(k, dim=1, sorted=False)
    return values, torch.gather(best_anchor, 1, pos // c) * c + pos % c


def top_nms(boxes: Tensor, scores: Tensor, images: Tensor, groups: Tensor, iou_thresh: float, per_image: int,
            num_images: int, first: int = 4) -> Tensor:
    """``grouped_nms`` where only each image's ``per_image`` best kept boxes are wanted: indices, by decreasing
    score, a superset of those (the caller caps each image).

    boxes [N, 4], scores [N], images [N] int64 (0..num_images-1), groups [N] int64 (classes within an image).
    A box is only ever suppressed by a higher-scored one, so each image's candidates scoring at least its
    m-th best score are kept or suppressed exactly as among all of them; once they hold ``per_image`` kept
    boxes, no lower-scored candidate can enter the image's top ``per_image``. NMS runs on those candidates with
    m = ``first`` x ``per_image``, and again with m four times larger while an image is not settled, instead of
    on every candidate (e.g. 5000 per image).
    """
    counts = torch.bincount(images, minlength=num_images)  # [num_images]
    most = int(counts.max()) if len(counts) else 0
    m = first * per_image
    if most <= m:
        return grouped_nms(boxes, scores, groups, iou_thresh)
    order = torch.argsort(images, stable=True)
    by_image = scores.new_full((num_images, most), float("-inf"))  # [num_images, most] each image's scores
    by_image[images[order], rank_in_group(images[order], counts)] = scores[order]
    while m < most:
        # each image's m-th best score; -inf where it has no more than m candidates (all of them are taken)
        cut = by_image.topk(m, dim=1).values[:, -1].masked_fill(counts <= m, float("-inf"))
        subset = torch.nonzero(scores >= cut[images]).squeeze(1)
        kept = subset[grouped_nms(boxes[subset], scores[subset], groups[subset], iou_thresh)]
        if bool(((torch.bincount(images[kept], minlength=num_images) >= per_image) | (counts <= m)).all()):
            return kept
        m *= 4
    return grouped_nms(boxes, scores, groups, iou_thresh)


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float,
                max_single_call: int = 1000, max_padded: int = 2 ** 24) -> Tensor:
    """NMS within each group: indices kept, by decreasing score.

    boxes [N, 4], scores [N], groups [N] int64 (image * C + class). Up to
    ``max_single_call`` boxes this is ``batched_nms`` (one call). Above it,
    torchvision on CPU runs one ``nms`` per group (640 for 8 images x 80 classes),
    so instead all groups run the same greedy NMS at once on a padded
    [G, M, M] IoU tensor (M = largest group): M vectorised steps, same result.
    When that tensor would exceed ``max_padded`` (a few large groups), each
    group's slice gets one ``nms`` call instead.
    """
    if len(boxes) <= max_single_call:
        return batched_nms(boxes, scores, groups, iou_thresh)
    order = torch.argsort(scores, descending=True)
    order = order[torch.argsort(groups[order], stable=True)]  # by group, then score
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    g, m = len(counts), int(counts.max())
    if g * m * m > max_padded:  # a few large groups: one nms call per group slice
        kept = torch.cat([sl[nms(boxes[sl], scores[sl], iou_thresh)] for sl in order.split(counts.tolist())])
        return kept[torch.argsort(scores[kept], descending=True)]
    group_of = torch.repeat_interleave(torch.arange(g, device=boxes.device), counts)
    slot = rank_in_group(group_of, counts)
    padded = boxes.new_zeros(g, m, 4)
    padded[group_of, slot] = boxes[order]
    valid = torch.zeros(g, m, dtype=torch.bool, device=boxes.device)
    valid[group_of, slot] = True
    overlap = batched_box_iou(padded, padded) > iou_thresh  # [G, M, M]
    keep = valid.clone()
    for i in range(m - 1):  # greedy: a kept box suppresses the lower-scored boxes it overlaps
        keep[:, i + 1:] &= ~(overlap[:, i, i + 1:] & keep[:, i:i + 1])
    kept = order[keep[group_of, slot]]
    return kept[torch.argsort(scores[kept], descending=True)]


def rank_in_group(group_of: Tensor, counts: Tensor) -> Tensor:
    """Position of each element within its group, in a sequence sorted by group: group_of [N] (each element's
    group, non-decreasing), counts [G] (elements per group) -> [N] 0..counts[g]-1."""
    first = torch.cumsum(counts, 0) - counts  # [G] where each group starts
    return torch.arange(len(group_of), device=group_of.device) - first[group_of]
