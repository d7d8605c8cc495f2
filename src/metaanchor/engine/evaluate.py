"""COCO evaluation with pycocotools (or, on request, faster-coco-eval: ``run_cocoeval``)."""

from __future__ import annotations

import contextlib
import copy
import io
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou
from tqdm import tqdm

from metaanchor.errors import DataError, UserError, out_of_memory_advice
from metaanchor.geometry.anchors import AnchorSet

COCOEVAL_BACKENDS = ("pycocotools", "faster-coco-eval")  # the first is the default
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


def coco_metrics(coco_gt, results: list[dict], image_ids: list[int] | None = None,
                 backend: str | None = None) -> dict:
    """Run COCOeval quietly (``run_cocoeval``); returns METRIC_KEYS, per-class results and the printed summary.

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
    ev, summary = run_cocoeval(coco_gt, results, image_ids, backend)
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
    metrics["summary"] = summary.replace("] = -1.000", "] =    n/a")
    return metrics


def cocoeval_backend(backend: str | None = None) -> str:
    """The COCOeval implementation: ``backend`` (one of ``COCOEVAL_BACKENDS``), default pycocotools.

    faster-coco-eval (``pip install faster-coco-eval``) is about 10x faster on thousands of images and gives
    the same 12 metrics on the splits tried, but not always bit for bit: pycocotools computes precision as
    tp / (tp + fp + eps), so a precision of 1 after one detection is 1 - 2.2e-16 there and 1.0 in
    faster-coco-eval, and a metric averaging it can differ by ~1e-16. Hence pycocotools stays the default."""
    backend = backend or COCOEVAL_BACKENDS[0]
    if backend not in COCOEVAL_BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(COCOEVAL_BACKENDS)}")
    if backend == "faster-coco-eval":
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError:
            raise UserError("COCO evaluation with faster-coco-eval: it is not installed (pip install "
                            "faster-coco-eval)") from None
    return backend


def run_cocoeval(coco_gt, results: list[dict], image_ids: list[int] | None = None, backend: str | None = None):
    """COCOeval (bbox) of ``results`` (COCO result records) against ``coco_gt`` (a pycocotools ``COCO``), after
    evaluate, accumulate and summarize -> (the evaluator: ``.stats`` [12], ``.eval["precision"]``, ``.params``;
    the summary it printed, pycocotools' 12 lines). ``backend``: ``cocoeval_backend``."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if cocoeval_backend(backend) == "pycocotools":
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        else:
            from faster_coco_eval import COCOeval_faster

            gt = _faster_gt(coco_gt)
            ev = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=print)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ev.stats = ev.stats[:len(METRIC_KEYS)]
    lines = [ln for ln in buf.getvalue().splitlines() if not ln.startswith(EXTRA_SUMMARY_LINES)]
    return ev, "\n".join(lines) + "\n"


# faster-coco-eval prints two recall lines more than pycocotools (AR at IoU 0.5 and 0.75): left out of the summary
EXTRA_SUMMARY_LINES = tuple(f" Average Recall     (AR) @[ IoU={t}      |" for t in ("0.50", "0.75"))
_FASTER_GT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pycocotools COCO -> faster-coco-eval's


def _faster_gt(coco_gt):
    """faster-coco-eval's ``COCO`` of the same ground truth (``coco_gt.dataset``), built once per ``coco_gt``."""
    from faster_coco_eval import COCO

    if coco_gt not in _FASTER_GT:
        with contextlib.redirect_stdout(io.StringIO()):
            _FASTER_GT[coco_gt] = COCO(copy.deepcopy(coco_gt.dataset))
    return _FASTER_GT[coco_gt]


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


def _predict_records(model, dataset, anchors, batch_size: int, progress: bool, skipped: list[str] | None,
                     results: list[dict] | None) -> tuple[list[dict], list[int], list[dict]]:
    """One pass over ``dataset``: (per-image detections, their image ids, their COCO result records); the
    records are also appended to ``results`` when it is a list. No readable image at all is a ``DataError``."""
    dets, ids = predict_dataset(model, dataset, anchors, batch_size, progress=progress, skipped=skipped)
    if not ids and len(dataset):
        raise DataError(f"none of the {len(dataset)} images could be read; first: {skipped[0] if skipped else '?'}")
    records = to_coco_results(dets, ids, dataset.cat_ids)
    if results is not None:
        results.extend(records)
    return dets, ids, records


def evaluate(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
             progress: bool = True, skipped: list[str] | None = None,
             results: list[dict] | None = None) -> dict:
    """COCO metrics of ``model`` on a ``CocoDataset`` (optionally with another anchor set).

    With ``skipped`` a list, unreadable images are left out of the evaluation (ground truth
    included) and reported there; otherwise the first one raises ``DataError``. With ``results``
    a list, the detections evaluated are appended to it as COCO result records (the dataset's own
    image and category ids, as ``COCO.loadRes`` takes them).
    """
    _, ids, records = _predict_records(model, dataset, anchors, batch_size, progress, skipped, results)
    return coco_metrics(dataset.coco, records, ids)


def evaluate_many(model, dataset, anchor_sets: list[str | AnchorSet], batch_size: int = 8,
                  progress: bool = True, skipped: list[str] | None = None) -> list[dict]:
    """COCO metrics of ``model`` with each anchor set (in order), from one pass over the dataset;
    equal to calling ``evaluate`` once per set."""
    dets, ids = predict_dataset_many(model, dataset, anchor_sets, batch_size, progress=progress, skipped=skipped)
    if not ids and len(dataset):
        raise DataError(f"none of the {len(dataset)} images could be read; first: {skipped[0] if skipped else '?'}")
    return [coco_metrics(dataset.coco, to_coco_results(d, ids, dataset.cat_ids), ids) for d in dets]


# ------------------------------------------------------------------ confusion matrix, precision / recall / F1
@dataclass
class Matches:
    """Detections matched one-to-one to ground-truth boxes, class-agnostically (see ``match_detections``).

    ``det_score`` [D], ``det_label`` [D] (class index 0..C-1), ``det_gt`` [D] (class index of the ground-truth
    box the detection took, -1: none); ``gt_label`` [G], ``gt_score`` [G] (score of the detection that took
    the box, -1: none). Matching takes detections by descending score, so the matches of the detections
    scoring at least ``t`` are the same whatever lower-scoring detections exist: one matching serves every
    confidence threshold.
    """

    num_classes: int
    det_score: np.ndarray
    det_label: np.ndarray
    det_gt: np.ndarray
    gt_label: np.ndarray
    gt_score: np.ndarray


def match_image(det_boxes: Tensor, det_scores: Tensor, gt_boxes: Tensor, iou_thresh: float) -> np.ndarray:
    """Greedy one-to-one matching of one image: detections by descending score (ties: in order), each takes
    the free ground-truth box it overlaps most, if that IoU >= ``iou_thresh``, whatever the classes.

    det_boxes [D, 4], gt_boxes [G, 4] x1y1x2y2 pixels, det_scores [D] -> [D] int: the index of the box
    taken, -1 for none.
    """
    taken = np.full(len(det_boxes), -1, dtype=np.int64)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return taken
    iou = box_iou(det_boxes.double(), gt_boxes.double()).numpy()  # [D, G]
    free = np.ones(len(gt_boxes), dtype=bool)
    for d in np.argsort(-det_scores.numpy(), kind="stable"):
        row = np.where(free, iou[d], -1.0)
        g = int(row.argmax())
        if row[g] >= iou_thresh:
            taken[d], free[g] = g, False
    return taken


def match_detections(per_image: list[tuple[dict, dict]], num_classes: int, iou_thresh: float = 0.5) -> Matches:
    """Match each image's detections to its ground truth (``match_image``) and gather the result.

    ``per_image``: (detections {"boxes" [D, 4], "scores" [D], "labels" [D]}, ground truth {"boxes" [G, 4],
    "labels" [G]}) per image, boxes x1y1x2y2 in the same pixels, labels class indices 0..C-1.
    """
    parts = {k: [] for k in ("det_score", "det_label", "det_gt", "gt_label", "gt_score")}
    for det, gt in per_image:
        taken = match_image(det["boxes"], det["scores"], gt["boxes"], iou_thresh)
        scores, labels, gt_labels = det["scores"].double().numpy(), det["labels"].numpy(), gt["labels"].numpy()
        gt_score = np.full(len(gt_labels), -1.0)
        gt_score[taken[taken >= 0]] = scores[taken >= 0]
        parts["det_score"].append(scores)
        parts["det_label"].append(labels.astype(np.int64))
        parts["det_gt"].append(np.where(taken >= 0, gt_labels[np.maximum(taken, 0)] if len(gt_labels) else -1, -1))
        parts["gt_label"].append(gt_labels.astype(np.int64))
        parts["gt_score"].append(gt_score)
    dtypes = {"det_score": np.float64, "gt_score": np.float64}
    return Matches(num_classes, **{k: np.concatenate(v).astype(dtypes.get(k, np.int64)) if v
                                   else np.zeros(0, dtypes.get(k, np.int64)) for k, v in parts.items()})


def confusion_matrix(m: Matches, conf: float) -> np.ndarray:
    """[C + 1, C + 1] counts at confidence ``conf``: rows the ground-truth class, columns the predicted class,
    index C the background. A detection (score >= conf) that took a box counts at [its class, box class];
    one that took none at [C, its class] (background row: false positives); a box no such detection took at
    [its class, C] (background column: missed).
    """
    c = m.num_classes
    out = np.zeros((c + 1, c + 1), dtype=np.int64)
    kept = m.det_score >= conf
    np.add.at(out, (np.where(m.det_gt[kept] >= 0, m.det_gt[kept], c), m.det_label[kept]), 1)
    missed = m.gt_score < conf
    np.add.at(out, (m.gt_label[missed], c), 1)
    return out


def precision_recall_f1(m: Matches, conf: float | np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 at confidence ``conf`` (a number, or [T] thresholds).

    Returns {"tp", "dets", "gt", "precision", "recall", "f1"}, each [C] (or [T, C] for [T] thresholds):
    tp the detections of class c that took a box of class c, dets the detections of class c, gt the boxes
    of class c. Precision tp / dets (0 without detections), recall tp / gt (0 without boxes), F1 their
    harmonic mean (0 when both are 0).
    """
    t = np.atleast_1d(np.asarray(conf, dtype=np.float64))[:, None, None]  # [T, 1, 1]
    classes = np.arange(m.num_classes)[None, :, None]  # [1, C, 1]
    above = m.det_score[None, None, :] >= t  # [T, 1, D]
    of_class = m.det_label[None, None, :] == classes  # [1, C, D]
    tp = (above & of_class & (m.det_gt[None, None, :] == classes)).sum(-1)  # [T, C]
    dets = (above & of_class).sum(-1)
    gt = np.broadcast_to(np.bincount(m.gt_label, minlength=m.num_classes)[None], tp.shape)
    precision = np.divide(tp, dets, out=np.zeros(tp.shape), where=dets > 0)
    recall = np.divide(tp, gt, out=np.zeros(tp.shape), where=gt > 0)
    s = precision + recall
    f1 = np.divide(2 * precision * recall, s, out=np.zeros(tp.shape), where=s > 0)
    out = {"tp": tp, "dets": dets, "gt": np.array(gt), "precision": precision, "recall": recall, "f1": f1}
    return {k: v[0] for k, v in out.items()} if np.ndim(conf) == 0 else out


def gt_of(coco_gt, image_id: int, cat_ids: list[int]) -> dict:
    """Ground truth of one image as {"boxes" [G, 4] x1y1x2y2 pixels, "labels" [G] class indices} (crowd
    regions left out: they are not objects to find)."""
    label_of = {c: k for k, c in enumerate(cat_ids)}
    anns = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return {"boxes": boxes, "labels": torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64)}


def evaluate_matched(model, dataset, anchors: str | AnchorSet | None = None, batch_size: int = 8,
                     progress: bool = True, skipped: list[str] | None = None, results: list[dict] | None = None,
                     iou_thresh: float = 0.5) -> tuple[dict, Matches]:
    """``evaluate`` plus the detections matched to the ground truth at ``iou_thresh`` (``match_detections``),
    for the confusion matrix and precision / recall / F1; both from one pass over the dataset."""
    dets, ids, records = _predict_records(model, dataset, anchors, batch_size, progress, skipped, results)
    pairs = [(d, gt_of(dataset.coco, i, dataset.cat_ids)) for d, i in zip(dets, ids)]
    return coco_metrics(dataset.coco, records, ids), match_detections(pairs, len(dataset.cat_ids), iou_thresh)


def prf_rows(m: Matches, conf: float, class_names: list[str]) -> list[dict]:
    """Per-class rows {"class", "gt", "dets", "tp", "fp", "fn", "precision", "recall", "f1"} at ``conf``, then
    "all": the counts summed over classes and precision / recall / F1 of the sums."""
    r = precision_recall_f1(m, conf)
    rows = [{"class": name, "gt": int(r["gt"][k]), "dets": int(r["dets"][k]), "tp": int(r["tp"][k])}
            for k, name in enumerate(class_names)]
    rows.append({"class": "all", **{key: sum(row[key] for row in rows) for key in ("gt", "dets", "tp")}})
    for row in rows:
        tp, dets, gt = row["tp"], row["dets"], row["gt"]
        p, rec = (tp / dets if dets else 0.0), (tp / gt if gt else 0.0)
        row |= {"fp": dets - tp, "fn": gt - tp, "precision": p, "recall": rec,
                "f1": 2 * p * rec / (p + rec) if p + rec else 0.0}
    return rows


def format_prf(rows: list[dict], conf: float, iou: float) -> str:
    """``prf_rows`` as a table."""
    width = max(len("class"), *(len(r["class"]) for r in rows)) + 2
    head = f"precision / recall / F1 at score >= {conf:g}, IoU >= {iou:g}"
    lines = [head, f"{'class':<{width}}{'GT':>7}{'dets':>7}{'TP':>7}{'FP':>7}{'FN':>7}{'P':>8}{'R':>8}{'F1':>8}"]
    lines += [f"{r['class']:<{width}}{r['gt']:>7}{r['dets']:>7}{r['tp']:>7}{r['fp']:>7}{r['fn']:>7}"
              f"{r['precision']:>8.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}" for r in rows]
    return "\n".join(lines)


def format_confusion(matrix: np.ndarray, class_names: list[str]) -> str:
    """A [C + 1, C + 1] ``confusion_matrix`` as a table: rows ground truth, columns predicted."""
    names = [*class_names, "background"]
    corner = "true / predicted"
    width = max(len(corner), *(len(n) for n in names)) + 2
    cell = max(8, *(len(n) + 2 for n in names))
    lines = ["confusion matrix (rows: ground truth, columns: predicted; background column: missed boxes, "
             "background row: false positives)",
             f"{corner:<{width}}" + "".join(f"{n:>{cell}}" for n in names)]
    lines += [f"{n:<{width}}" + "".join(f"{int(v):>{cell}}" for v in row) for n, row in zip(names, matrix)]
    return "\n".join(lines)
