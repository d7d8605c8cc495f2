"""Checking an exported model against the PyTorch model it came from (``metaanchor export --verify``).

    result = verify(baked, run, images)   # run: onnx_runner(path)[0], pt2_runner(path)[0], ...
    result == {"max_abs_diff": 2e-06, "match": True, "detections": 12, "images": 2, "compared": "raw outputs"}

Raw outputs: the same batch (the model's own ``ImageBatcher``) through the exported graph and
through ``ExportGraph`` in PyTorch, max |difference| over the four outputs. Detections: the
deployed pipeline (``numpy_postprocess.detect``: numpy pre-processing, the exported graph, numpy
post-processing) against the PyTorch model's ``predict``, compared as sets per image.
``verify_nms``: an ONNX file with decoding and NMS inside (``deploy.onnx_nms``), one image at a
time from onnxruntime against ``predict`` one image at a time (its batch of one); the difference
reported is ``detection_diff`` (each detection to its nearest of the same class: boxes px, scores).

float16 files (``half``) are held to looser tolerances (``HALF_*``): float16 rounds a logit of
about 1 by 5e-4 and the error grows through the layers, so a detection whose score is within
``HALF_MARGIN`` of the score threshold may be kept by one precision and dropped by the other
(those are not compared), and of two overlapping boxes of the same class scored within that
rounding NMS may keep either, after which everything it suppresses changes too. So for float16
the detections compared are the candidates before NMS (score threshold, top-k, decoding: NMS is
the same numpy code on both sides), of the float32 graph in PyTorch and of the file; with NMS in
the graph (``verify_nms``) a detection's partner is a box of its class overlapping it by IoU
``HALF_IOU`` or more.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from metaanchor.deploy.graph import ExportGraph

RAW_TOL = 1e-3  # max |difference| of raw outputs accepted (float32 kernels differ by ~1e-6)
BOX_TOL = 1e-2  # px: detections match when boxes are this close ...
SCORE_TOL = 1e-4  # ... scores this close, and labels equal
HALF_RAW_TOL = 2e-2  # float16: raw outputs ...
HALF_BOX_TOL = 1.0  # ... boxes (px) ...
HALF_SCORE_TOL = 5e-3  # ... and scores
HALF_IOU = 0.5  # float16 with NMS in the graph: IoU of a detection with its partner
HALF_MARGIN = 1e-2  # float16: detections scored below score_thresh + this are not compared


def verify(baked, run, images: list[Tensor], half: bool = False) -> dict:
    """Compare ``run`` (batch [B, 3, H, W] numpy -> the graph's four numpy outputs) with ``baked`` on
    ``images`` ([3, H, W] float in [0, 1]). Returns max_abs_diff, match (detections match and the
    difference is within ``RAW_TOL``; float16: the ``HALF_*`` tolerances, candidates before NMS),
    detections (PyTorch's count; float16: candidates) and images."""
    from metaanchor.deploy.graph import metadata
    from metaanchor.deploy.numpy_postprocess import detect

    device = next(baked.parameters()).device
    with torch.no_grad():
        batch = baked.batcher([im.to(device) for im in images])[0]
        expected = [t.cpu().numpy() for t in ExportGraph(baked).eval()(batch)]
    got = [np.asarray(o) for o in run(batch.cpu().numpy())]
    diff = max((float(np.abs(g - e).max(initial=0)) if g.shape == e.shape else math.inf)
               for g, e in zip(got, expected))
    arrays = [im.permute(1, 2, 0).cpu().numpy() for im in images]
    if half:  # candidates before NMS (see the module docstring)
        meta = metadata(baked) | {"nms_thresh": 1.0, "detections_per_img": 2 ** 31}
        reference = detect(lambda _: expected, arrays, meta)
        match = diff <= HALF_RAW_TOL and same_detections(reference, detect(run, arrays, meta), HALF_BOX_TOL,
                                                         HALF_SCORE_TOL, baked.score_thresh + HALF_MARGIN)
    else:
        reference = baked.predict(images)
        match = diff <= RAW_TOL and same_detections(reference, detect(run, arrays, metadata(baked)))
    return {"max_abs_diff": diff, "match": match, "detections": sum(len(d["scores"]) for d in reference),
            "images": len(images), "compared": "raw outputs",
            "counted": "candidates before NMS" if half else "detections"}


def verify_nms(baked, path, images: list[Tensor], half: bool = False) -> dict:
    """Compare an ONNX detection graph (``deploy.onnx_nms``) run by onnxruntime with ``baked.predict``
    one image at a time. max_abs_diff: ``detection_diff``, boxes (px) and scores."""
    import onnxruntime as ort

    from metaanchor.deploy.numpy_postprocess import metadata, nms_inputs

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = metadata(session)
    deployed = []
    for im in images:
        boxes, scores, labels = session.run(None, nms_inputs(im.permute(1, 2, 0).cpu().numpy(), meta))
        deployed.append({"boxes": boxes, "scores": scores, "labels": labels})
    reference = baked.predict(images, batch_size=1)
    diffs = [detection_diff(r, d) for r, d in zip(reference, deployed)]
    if half:
        match = same_detections(reference, deployed, score_tol=HALF_SCORE_TOL,
                                floor=baked.score_thresh + HALF_MARGIN, min_iou=HALF_IOU)
    else:
        match = same_detections(reference, deployed)
    return {"max_abs_diff": max(diffs, default=0.0), "match": match,
            "detections": sum(len(d["scores"]) for d in reference), "images": len(images),
            "compared": "detections"}


def detection_diff(a: dict, b: dict) -> float:
    """How far apart two images' detections are: over every detection of either, the distance to the
    nearest detection of the same label in the other, max |difference| of box coordinates (px) and of
    scores; inf when a label has detections on one side only. 0 when both are empty."""
    worst = 0.0
    for x, y in ((a, b), (b, a)):
        boxes_x, boxes_y = (np.asarray(d["boxes"], np.float64).reshape(-1, 4) for d in (x, y))
        scores_x, scores_y = (np.asarray(d["scores"], np.float64) for d in (x, y))
        same = np.asarray(x["labels"])[:, None] == np.asarray(y["labels"])[None]  # [Dx, Dy]
        gap = np.maximum(np.abs(boxes_x[:, None] - boxes_y[None]).max(-1, initial=0),
                         np.abs(scores_x[:, None] - scores_y[None]))
        worst = max(worst, float(np.where(same, gap, np.inf).min(1, initial=np.inf).max(initial=0)))
    return worst


def same_detections(a: list[dict], b: list[dict], box_tol: float = BOX_TOL, score_tol: float = SCORE_TOL,
                    floor: float | None = None, min_iou: float | None = None) -> bool:
    """Per image, the same detections as a set: each detection of ``a`` paired with its own one of ``b``
    and each of ``b`` with its own one of ``a``, with the same label, boxes within ``box_tol`` px (or,
    given ``min_iou``, overlapping by at least that IoU) and scores within ``score_tol`` (torch tensors
    or numpy arrays; no order, so no float tie decides anything). ``floor``: detections scored below it
    need no partner (without it, counts must be equal)."""
    if len(a) != len(b):
        return False
    for da, db in zip(a, b):
        if floor is None and len(da["scores"]) != len(db["scores"]):
            return False
        if not all(_covered(x, y, box_tol, score_tol, floor, min_iou) for x, y in ((da, db), (db, da))):
            return False
    return True


def _covered(da: dict, db: dict, box_tol: float, score_tol: float, floor: float | None,
             min_iou: float | None) -> bool:
    """Every detection of ``da`` (scored at least ``floor``) has its own close detection in ``db``."""
    boxes_a, boxes_b = (np.asarray(d["boxes"], np.float64).reshape(-1, 4) for d in (da, db))  # [Da, 4], [Db, 4]
    scores_a, scores_b = np.asarray(da["scores"], np.float64), np.asarray(db["scores"], np.float64)
    if min_iou is None:
        near = np.abs(boxes_a[:, None] - boxes_b[None]).max(-1, initial=0) <= box_tol  # [Da, Db]
    else:
        near = _iou(boxes_a, boxes_b) >= min_iou
    close = ((np.asarray(da["labels"])[:, None] == np.asarray(db["labels"])[None]) & near
             & (np.abs(scores_a[:, None] - scores_b[None]) <= score_tol))  # [Da, Db]
    used = np.zeros(len(boxes_b), bool)
    for row, score in zip(close, scores_a):
        if floor is not None and score < floor:
            continue
        free = np.flatnonzero(row & ~used)
        if not free.size:
            return False
        used[free[0]] = True
    return True


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Da, 4], [Db, 4] x1y1x2y2 -> [Da, Db] IoU (0 where both boxes are empty)."""
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
