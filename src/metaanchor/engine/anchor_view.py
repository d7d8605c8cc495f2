"""Which anchors each ground-truth box is matched to in training, at the network's input scale.

The anchors' geometry does not depend on weights: a detector (from a checkpoint, or built from a config
with random weights) supplies the resize, the pyramid strides and standard boxes, the anchor set and the
family's matcher. RetinaNet matches by IoU (``geometry.matcher.Matcher``: foreground at ``fg_iou``, and each
box also claims its best anchors); YOLOv2 gives each box the anchor of best shape in the cell holding its
centre (``families.yolov2.loss.assign_targets``). A box is *reached* when its anchor meets the positive IoU
(RetinaNet: the matcher's foreground IoU over the best anchor box; YOLOv2: 0.5 shape IoU with the anchor it
is given); an unreached box only trains from a low-quality match, or not at all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_iou

from metaanchor.geometry.anchor_fit import POSITIVE_IOU
from metaanchor.geometry.iou import shape_iou


def level_name(stride: int) -> str:
    """Pyramid level of a stride: 8 -> P3, 32 -> P5."""
    return f"P{int(stride).bit_length() - 1}"


def feature_shapes(model, padded_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """(H_l, W_l) of each level for a padded input of ``padded_hw``: ceil(size / stride) (see modeling.transform)."""
    return [(math.ceil(padded_hw[0] / s), math.ceil(padded_hw[1] / s)) for s in model.strides]


@torch.no_grad()
def anchor_matches(model, image: Tensor, boxes: Tensor) -> dict:
    """The anchors of one image's ground-truth boxes, as the model's family matches them in training.

    Args:
        model: a detector (RetinaNet or YOLOv2 family), its current anchor set used.
        image: [3, H, W] the image as read (its size decides the resize).
        boxes: [G, 4] x1y1x2y2 ground truth in the image's pixels.
    Returns:
        {"boxes" [G, 4], "anchor" [G, 4] (the best anchor's box; image pixels), "iou" [G] (its IoU with the box;
        YOLOv2: shape IoU), "level" [G] (0-based pyramid level), "stride" [G], "positives" [G] (anchors trained
        on the box as foreground), "reached" [G] bool, "positive_iou" (the threshold), "input_size" (h, w) at
        which the network sees the image}.
    """
    model.eval()
    batch, scales, sizes = model._batch([image])  # [1, 3, Hp, Wp]
    sx, sy = scales[0]
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    gt = boxes.float().reshape(-1, 4) * scale  # [G, 4] input pixels
    shapes = feature_shapes(model, tuple(batch.shape[-2:]))
    anchors = model.grid(shapes, "cpu")  # [A, 4] input pixels, level by level
    per_level = [h * w * k for (h, w), k in zip(shapes, model.anchors.num_anchors(len(shapes)))]
    level_of = torch.repeat_interleave(torch.arange(len(per_level)), torch.tensor(per_level))  # [A]
    if hasattr(model, "matcher"):
        out = _iou_matches(model.matcher, gt, anchors)
    else:
        out = _yolo_matches(model, gt, anchors, shapes[0])
    level = level_of[out["index"]] if len(gt) else torch.zeros(0, dtype=torch.int64)
    strides = torch.tensor(model.strides)[level] if len(gt) else torch.zeros(0, dtype=torch.int64)
    return {"boxes": boxes.float().reshape(-1, 4), "anchor": out["anchor"] / scale, "iou": out["iou"],
            "level": level, "stride": strides, "positives": out["positives"], "reached": out["reached"],
            "positive_iou": out["positive_iou"], "input_size": tuple(sizes[0])}


def _iou_matches(matcher, gt: Tensor, anchors: Tensor) -> dict:
    """RetinaNet: best anchor by IoU, the anchors the matcher labels with each box (foreground in training)."""
    g = len(gt)
    if g == 0:
        return {"index": torch.zeros(0, dtype=torch.int64), "anchor": torch.zeros(0, 4), "iou": torch.zeros(0),
                "positives": torch.zeros(0, dtype=torch.int64), "reached": torch.zeros(0, dtype=torch.bool),
                "positive_iou": matcher.high}
    iou = box_iou(gt, anchors)  # [G, A]
    best_iou, best = iou.max(1)
    labels = matcher(gt[None], torch.ones(1, g, dtype=torch.bool), anchors)[0]  # [A]
    positives = (labels[None] == torch.arange(g)[:, None]).sum(1)
    return {"index": best, "anchor": anchors[best], "iou": best_iou, "positives": positives,
            "reached": best_iou >= matcher.high, "positive_iou": matcher.high}


def _yolo_matches(model, gt: Tensor, anchors: Tensor, grid_hw: tuple[int, int]) -> dict:
    """YOLOv2: the anchor of best shape in the cell of the box's centre (a box that loses its slot to a larger
    one in the same cell and anchor gets none); IoU is the shape IoU, the anchor drawn at the cell centre."""
    from metaanchor.families.yolov2.loss import assign_targets

    g, stride = len(gt), model.strides[0]
    sizes = model.anchors.sizes(model.standard_sizes)[0]  # [K, 2] (h, w)
    _, pred, won = assign_targets(gt[None], torch.ones(1, g, dtype=torch.bool), sizes, grid_hw, stride)
    wh = torch.stack([gt[:, 3] - gt[:, 1], gt[:, 2] - gt[:, 0]], 1)  # [G, 2] (h, w)
    k = len(sizes)
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    col = torch.div(cx, stride, rounding_mode="floor").clamp(0, grid_hw[1] - 1)
    row = torch.div(cy, stride, rounding_mode="floor").clamp(0, grid_hw[0] - 1)
    best = shape_iou(wh, sizes).argmax(-1) if g else torch.zeros(0, dtype=torch.int64)  # [G]
    index = ((row * grid_hw[1] + col).long() * k + best)
    ah, aw = sizes[best].unbind(-1) if g else (torch.zeros(0), torch.zeros(0))
    ccx, ccy = (col + 0.5) * stride, (row + 0.5) * stride
    anchor = torch.stack([ccx - aw / 2, ccy - ah / 2, ccx + aw / 2, ccy + ah / 2], -1).reshape(-1, 4)
    iou = shape_iou(wh, sizes)[torch.arange(g), best] if g else torch.zeros(0)
    positives = torch.zeros(g, dtype=torch.int64)
    positives[won] = 1
    return {"index": index, "anchor": anchor, "iou": iou, "positives": positives,
            "reached": (positives > 0) & (iou >= POSITIVE_IOU), "positive_iou": POSITIVE_IOU}


def summary(views: list[dict]) -> dict:
    """Totals over ``anchor_matches`` results: boxes, reached, unreached (and %), mean best IoU."""
    boxes = sum(len(v["iou"]) for v in views)
    reached = sum(int(v["reached"].sum()) for v in views)
    ious = torch.cat([v["iou"] for v in views]) if views else torch.zeros(0)
    return {"boxes": boxes, "reached": reached, "unreached": boxes - reached,
            "unreached_pct": 100.0 * (boxes - reached) / boxes if boxes else 0.0,
            "mean_iou": float(ious.mean()) if boxes else None}


def format_summary(name: str, s: dict) -> str:
    """One line: ``name: B boxes, R matched at IoU >= t, U unreached (x.x%), mean best IoU m``."""
    mean = "n/a" if s["mean_iou"] is None else f"{s['mean_iou']:.3f}"
    return (f"{name}: {s['boxes']} boxes, {s['reached']} matched, {s['unreached']} unreached "
            f"({s['unreached_pct']:.1f}%), mean best IoU {mean}")


def dataset_summary(model, dataset, progress: bool = False) -> dict:
    """``summary`` over every image of a ``CocoDataset`` without reading a pixel: each image's size comes from
    its record (a blank image of that size goes through the model's resize) and its boxes from the
    annotations (crowd regions left out)."""
    from tqdm import tqdm

    from metaanchor.engine.evaluate import gt_of

    views = []
    for info in tqdm(dataset.images, desc="anchors", disable=not progress, leave=False):
        boxes = gt_of(dataset.coco, info["id"], dataset.cat_ids)["boxes"].float()
        views.append(anchor_matches(model, torch.zeros(3, info["height"], info["width"]), boxes))
    return summary(views)
