"""COCO evaluation with pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from metaanchor.errors import DataError, UserError, out_of_memory_advice
from metaanchor.geometry.anchors import AnchorSet

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
AREA_OF = dict(zip(METRIC_KEYS, 2 * (("all",) * 3 + ("small", "medium", "large"))))  # the area range of each
AREA_RANGES = {"all": (0, 1e10), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e10)}


def fmt_metric(value, spec: str = ".3f") -> str:
    """A metric for printing: ``n/a`` when it is undefined (None, e.g. APl with no large objects)."""
    return "n/a" if value is None else format(value, spec)


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
    """Run COCOeval quietly; returns METRIC_KEYS, per-class results and the printed summary.

    ``per_class`` is {class name: AP}, ``per_class_table`` a list of {"class", "AP", "AP50", "gt"}
    (gt: number of ground-truth boxes evaluated) and ``pr50`` the precision-recall curves at IoU 0.5
    (all areas, 100 detections): {"recall": [R], "precision": {class name or "all": [R]}} with R = 101
    recall points, from pycocotools' ``eval["precision"]``; classes without boxes are left out.
    A metric pycocotools cannot define (its -1: no ground truth in that area range, e.g. APl
    when the split has no large objects; a class without boxes) is None, printed as ``n/a``.
    """
    counts = _gt_counts(coco_gt, image_ids)
    if not results:
        areas = _gt_areas(coco_gt, image_ids)
        defined = {a: any(lo <= x <= hi for x in areas) for a, (lo, hi) in AREA_RANGES.items()}
        table = [{"class": c["name"], "AP": 0.0 if counts[i] else None, "AP50": 0.0 if counts[i] else None,
                  "gt": counts[i]} for i, c in coco_gt.cats.items()]
        return {k: (0.0 if defined[AREA_OF[k]] else None) for k in METRIC_KEYS} | {
            "per_class": {}, "per_class_table": table, "pr50": None, "summary": "no detections"}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {k: (float(v) if v >= 0 else None) for k, v in zip(METRIC_KEYS, ev.stats)}
    precision = ev.eval["precision"]  # [T IoUs, R recalls, K classes, A areas, M max dets]; -1: no ground truth
    iou50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    names = [coco_gt.cats[c]["name"] for c in ev.params.catIds]
    per_class, table, curves = {}, [], {}
    for k, (cat_id, name) in enumerate(zip(ev.params.catIds, names)):
        ap, ap50 = _mean_defined(precision[:, :, k, 0, -1]), _mean_defined(precision[iou50, :, k, 0, -1])
        per_class[name] = ap
        table.append({"class": name, "AP": ap, "AP50": ap50, "gt": counts.get(cat_id, 0)})
        if ap50 is not None:
            curves[name] = precision[iou50, :, k, 0, -1].tolist()
    if curves:
        curves["all"] = np.mean(list(curves.values()), 0).tolist()
    metrics["per_class"] = per_class
    metrics["per_class_table"] = table
    metrics["pr50"] = {"recall": ev.params.recThrs.tolist(), "precision": curves} if curves else None
    metrics["summary"] = buf.getvalue().replace("] = -1.000", "] =    n/a")
    return metrics


def _mean_defined(p: np.ndarray) -> float | None:
    """Mean of pycocotools precision values, leaving out its -1 (undefined); None when all are."""
    p = p[p > -1]
    return float(np.mean(p)) if p.size else None


def _gt_counts(coco_gt, image_ids: list[int] | None) -> dict[int, int]:
    """Number of ground-truth boxes COCOeval counts per category id (not crowd, not ignored)."""
    counts = dict.fromkeys(coco_gt.cats, 0)
    ids = coco_gt.getAnnIds(imgIds=list(image_ids)) if image_ids is not None else coco_gt.getAnnIds()
    for a in coco_gt.loadAnns(ids):
        if not a.get("iscrowd", 0) and not a.get("ignore", 0) and a["category_id"] in counts:
            counts[a["category_id"]] += 1
    return counts


def format_per_class(metrics: dict) -> str:
    """The per-class table (class, AP, AP50, number of ground-truth boxes) as text."""
    rows = metrics.get("per_class_table") or []
    width = max([len("class")] + [len(r["class"]) for r in rows]) + 2
    lines = [f"{'class':<{width}}{'AP':>8}{'AP50':>8}{'GT boxes':>10}"]
    lines += [f"{r['class']:<{width}}{fmt_metric(r['AP']):>8}{fmt_metric(r['AP50']):>8}{r['gt']:>10}" for r in rows]
    return "\n".join(lines)


def _gt_areas(coco_gt, image_ids: list[int] | None) -> list[float]:
    """Areas of the ground-truth boxes COCOeval counts (not crowd, not ignored)."""
    ids = coco_gt.getAnnIds(imgIds=list(image_ids)) if image_ids is not None else coco_gt.getAnnIds()
    return [a.get("area", 0.0) for a in coco_gt.loadAnns(ids) if not a.get("iscrowd", 0) and not a.get("ignore", 0)]


def _load_items(dataset, indices, skipped: list[str] | None) -> list:
    """Dataset items; an unreadable image raises, or is left out and its message appended to ``skipped``."""
    items = []
    for i in indices:
        try:
            items.append(dataset[i])
        except DataError as e:
            if skipped is None:
                raise
            skipped.append(str(e))
    return items


def _batches(dataset, batch_size: int, progress: bool, skipped: list[str] | None, device):
    """Readable items of a dataset in batches: (images on ``device``, their image ids)."""
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: must be at least 1")
    for start in tqdm(range(0, len(dataset), batch_size), desc="eval", disable=not progress, leave=False):
        items = _load_items(dataset, range(start, min(start + batch_size, len(dataset))), skipped)
        if items:
            yield [img.to(device) for img, _ in items], [int(t["image_id"]) for _, t in items]


def _run_batch(fn, images: list, batch_size: int):
    """``fn(images)``, with CUDA out of memory as a one-line ``OutOfMemory`` naming --batch-size."""
    with out_of_memory_advice("in evaluation", batch_size, "--batch-size"):
        return fn(images)


def _cpu(out: list[dict]) -> list[dict]:
    return [{k: v.cpu() for k, v in d.items()} for d in out]


@torch.inference_mode()
def predict_dataset(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
                    device=None, progress: bool = True,
                    skipped: list[str] | None = None) -> tuple[list[dict], list[int]]:
    """Run a detector over a dataset; returns detections and image ids, in dataset order.

    An image that cannot be read raises ``DataError``; when ``skipped`` is a list, the image is left
    out instead (its id is not returned) and the message naming it is appended to ``skipped``.
    """
    device = device or next(model.parameters()).device
    dets, ids = [], []
    with model.evaluating(anchors):
        for images, batch_ids in _batches(dataset, batch_size, progress, skipped, device):
            dets += _cpu(_run_batch(model, images, batch_size))
            ids += batch_ids
    return dets, ids


@torch.inference_mode()
def predict_dataset_many(model, dataset, anchor_sets: list[str | AnchorSet], batch_size: int = 8,
                         device=None, progress: bool = True,
                         skipped: list[str] | None = None) -> tuple[list[list[dict]], list[int]]:
    """``predict_dataset`` for several anchor sets in one pass (``BaseDetector.detect_many``: the backbone
    and towers run once per batch). Returns detections per anchor set (in order) and the image ids."""
    device = device or next(model.parameters()).device
    dets, ids = [[] for _ in anchor_sets], []
    for images, batch_ids in _batches(dataset, batch_size, progress, skipped, device):
        for per_set, out in zip(dets, _run_batch(lambda x: model.detect_many(x, anchor_sets), images, batch_size)):
            per_set += _cpu(out)
        ids += batch_ids
    return dets, ids


def evaluate(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
             progress: bool = True, skipped: list[str] | None = None,
             results: list[dict] | None = None) -> dict:
    """COCO metrics of ``model`` on a ``CocoDataset`` (optionally with another anchor set).

    With ``skipped`` a list, unreadable images are left out of the evaluation (ground truth
    included) and reported there; otherwise the first one raises ``DataError``. With ``results``
    a list, the detections evaluated are appended to it as COCO result records (the dataset's own
    image and category ids, as ``COCO.loadRes`` takes them).
    """
    dets, ids = predict_dataset(model, dataset, anchors, batch_size, progress=progress, skipped=skipped)
    if not ids and len(dataset):
        raise DataError(f"none of the {len(dataset)} images could be read; first: {skipped[0] if skipped else '?'}")
    records = to_coco_results(dets, ids, dataset.cat_ids)
    if results is not None:
        results.extend(records)
    return coco_metrics(dataset.coco, records, ids)


def evaluate_many(model, dataset, anchor_sets: list[str | AnchorSet], batch_size: int = 8,
                  progress: bool = True, skipped: list[str] | None = None) -> list[dict]:
    """COCO metrics of ``model`` with each anchor set (in order), from one pass over the dataset;
    equal to calling ``evaluate`` once per set."""
    dets, ids = predict_dataset_many(model, dataset, anchor_sets, batch_size, progress=progress, skipped=skipped)
    if not ids and len(dataset):
        raise DataError(f"none of the {len(dataset)} images could be read; first: {skipped[0] if skipped else '?'}")
    return [coco_metrics(dataset.coco, to_coco_results(d, ids, dataset.cat_ids), ids) for d in dets]
