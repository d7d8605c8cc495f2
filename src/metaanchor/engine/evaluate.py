"""COCO evaluation with pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from metaanchor.anchors import AnchorSet

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_coco_results(dets: list[dict], image_ids: list[int], cat_ids: list[int]) -> list[dict]:
    """Per-image detections -> COCO result records (bbox as [x, y, w, h])."""
    out = []
    for d, image_id in zip(dets, image_ids):
        boxes = d["boxes"].tolist()
        for (x1, y1, x2, y2), s, lab in zip(boxes, d["scores"].tolist(), d["labels"].tolist()):
            out.append({"image_id": int(image_id), "category_id": int(cat_ids[lab]),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(s), 5)})
    return out


def coco_metrics(coco_gt, results: list[dict], image_ids: list[int] | None = None) -> dict:
    """Run COCOeval quietly; returns METRIC_KEYS plus ``per_class`` AP and the printed summary."""
    if not results:
        return {k: 0.0 for k in METRIC_KEYS} | {"per_class": {}, "summary": "no detections"}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {k: float(max(v, 0.0)) for k, v in zip(METRIC_KEYS, ev.stats)}
    per_class = {}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[coco_gt.cats[cat_id]["name"]] = float(np.mean(p)) if p.size else float("nan")
    metrics["per_class"] = per_class
    metrics["summary"] = buf.getvalue()
    return metrics


@torch.inference_mode()
def predict_dataset(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
                    device=None, progress: bool = True) -> tuple[list[dict], list[int]]:
    """Run a detector over a dataset; returns detections and image ids, in dataset order."""
    device = device or next(model.parameters()).device
    was_training, old_anchors = model.training, model.anchors
    model.eval()
    if anchors is not None:
        model.set_anchors(anchors)
    dets, ids = [], []
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc="eval", disable=not progress, leave=False):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            out = model([img.to(device) for img, _ in items])
            dets += [{k: v.cpu() for k, v in d.items()} for d in out]
            ids += [int(t["image_id"]) for _, t in items]
    finally:
        model.set_anchors(old_anchors)
        model.train(was_training)
    return dets, ids


def evaluate(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
             progress: bool = True) -> dict:
    """COCO metrics of ``model`` on a ``CocoDataset`` (optionally with another anchor set)."""
    dets, ids = predict_dataset(model, dataset, anchors, batch_size, progress=progress)
    results = to_coco_results(dets, ids, dataset.cat_ids)
    return coco_metrics(dataset.coco, results, ids)
