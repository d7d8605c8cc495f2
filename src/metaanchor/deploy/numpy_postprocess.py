"""Run an exported metaanchor model with numpy only: pre-processing, decode, per-class NMS, top-k.

A standalone file (numpy only, no torch, no other metaanchor module): copy it next to your
application to run an exported model (``metaanchor export``) without metaanchor or torch.

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    meta = metadata(session)                                  # stored in the file by the exporter
    dets = detect(lambda batch: session.run(None, {"images": batch}), images, meta)

``images`` are [H, W, 3] RGB arrays (uint8 0..255, or float in 0..1), e.g.
``np.asarray(PIL.Image.open(path).convert("RGB"))``. Detections come back per image as
{"boxes": [D, 4] x1y1x2y2 pixels of that image, "scores": [D], "labels": [D] int64 in 0..C-1}
(``meta["class_names"]``, ``meta["category_ids"]`` name the labels), the same as the PyTorch
model's ``predict`` up to float rounding. The graph's inputs and outputs are described in
``metaanchor/deploy/graph.py``; this file mirrors ``ImageBatcher`` (transform.py),
``postprocess`` (postprocess.py) and the box coders.

A file exported with ``--nms`` decodes and runs NMS itself; it needs only the resized image:

    boxes, scores, labels = session.run(None, nms_inputs(image, meta))   # one image, original pixels
"""

from __future__ import annotations

import json
import math

import numpy as np

METADATA_KEY = "metaanchor"


def metadata(session) -> dict:
    """The exporter's metadata of an onnxruntime ``InferenceSession`` (a dict, see ``graph.metadata``)."""
    return json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])


def detect(run, images: list[np.ndarray], meta: dict) -> list[dict[str, np.ndarray]]:
    """``run(batch [B, 3, H, W] float32)`` -> the graph's four outputs; returns per-image detections."""
    batch, scales, sizes = preprocess(images, meta)
    cls_logits, box_deltas, anchors, level_sizes = (np.asarray(o) for o in run(batch))
    return postprocess(cls_logits, box_deltas, anchors, level_sizes, sizes, scales,
                       [im.shape[:2] for im in images], meta)


# ----------------------------------------------------------------------------- pre-processing
def resize_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """[C, H0, W0] -> [C, h, w], bilinear with half-pixel centres (torch ``interpolate(align_corners=False)``)."""
    def taps(n_in: int, n_out: int):  # source rows/columns and weights, in float32 as torch computes them
        src = np.maximum(np.float32(n_in / n_out) * (np.arange(n_out, dtype=np.float32) + np.float32(0.5))
                         - np.float32(0.5), np.float32(0))
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, ly = taps(img.shape[1], h)
    x0, x1, lx = taps(img.shape[2], w)
    rows = img[:, y0] * (1 - ly)[:, None] + img[:, y1] * ly[:, None]  # [C, h, W0]
    return rows[:, :, x0] * (1 - lx) + rows[:, :, x1] * lx


def resize(image: np.ndarray, meta: dict) -> np.ndarray:
    """[H, W, 3] RGB (uint8, or float in 0..1) -> [3, h, w] float32 in 0..1 at the network's input size:
    short side ``min_size``, long side at most ``max_size``, bilinear."""
    im = np.asarray(image)
    x = (im.astype(np.float32) / 255.0 if im.dtype == np.uint8 else im.astype(np.float32)).transpose(2, 0, 1)
    h, w = x.shape[1:]
    s = min(meta["min_size"] / min(h, w), meta["max_size"] / max(h, w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    return resize_bilinear(x, *size) if size != (h, w) else x


def nms_inputs(image: np.ndarray, meta: dict) -> dict[str, np.ndarray]:
    """The inputs of an ONNX file exported with ``--nms`` for one [H, W, 3] RGB image: {"images":
    [1, 3, h, w] float32 in 0..1 (resized), "original_size": [2] int64 (H, W)}."""
    return {"images": resize(image, meta)[None], "original_size": np.asarray(np.shape(image)[:2], np.int64)}


def preprocess(images: list[np.ndarray], meta: dict):
    """Resize (short side ``min_size``, long side at most ``max_size``), normalise, zero-pad to
    ``size_divisible``. Returns batch [B, 3, Hp, Wp] float32, per-image (sx, sy) scales and (h, w) sizes."""
    mean = np.asarray(meta["mean"], np.float32)[:, None, None]
    std = np.asarray(meta["std"], np.float32)[:, None, None]
    resized, scales = [], []
    for im in images:
        x = resize(im, meta)
        h, w = np.shape(im)[:2]
        resized.append((x - mean) / std)
        scales.append((x.shape[2] / w, x.shape[1] / h))
    sizes = [r.shape[1:] for r in resized]
    d = meta["size_divisible"]
    hp, wp = (math.ceil(max(s[i] for s in sizes) / d) * d for i in (0, 1))
    batch = np.zeros((len(resized), 3, hp, wp), np.float32)
    for i, r in enumerate(resized):
        batch[i, :, :r.shape[1], :r.shape[2]] = r
    return batch, scales, sizes


# ---------------------------------------------------------------------------- post-processing
def decode(deltas: np.ndarray, anchors: np.ndarray, coding: dict) -> np.ndarray:
    """[N, 4] box parameters and [N, 4] anchors -> [N, 4] boxes x1y1x2y2 (RetinaNet deltas or YOLOv2 t)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    if coding["name"] == "yolov2":
        offset = coding["stride"] / (1 + np.exp(-deltas[:, :2]))  # sigmoid(tx, ty) * stride
        cx, cy = ax + offset[:, 0], ay + offset[:, 1]
        dw, dh = deltas[:, 2], deltas[:, 3]
    else:
        wx, wy, ww, wh = coding["weights"]
        cx, cy = deltas[:, 0] / wx * aw + ax, deltas[:, 1] / wy * ah + ay
        dw, dh = deltas[:, 2] / ww, deltas[:, 3] / wh
    w = np.exp(np.minimum(dw, coding["clip"])) * aw
    h = np.exp(np.minimum(dh, coding["clip"])) * ah
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy NMS (torchvision ``nms``): indices kept, by decreasing score; IoU > thresh suppresses."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):  # zero-area boxes: IoU nan, never suppressed
        while order.size:
            i, rest = order[0], order[1:]
            keep.append(i)
            iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
            ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
            inter = iw * ih
            order = rest[~(inter / (area[i] + area[rest] - inter) > iou_thresh)]
    return np.asarray(keep, np.int64)


def postprocess(cls_logits: np.ndarray, box_deltas: np.ndarray, anchors: np.ndarray, level_sizes: np.ndarray,
                sizes, scales, image_shapes, meta: dict) -> list[dict[str, np.ndarray]]:
    """The graph's outputs -> per-image detections in each original image's pixels.

    Args:
        cls_logits [B, A, C], box_deltas [B, A, 4], anchors [A, 4], level_sizes [L]: the graph's outputs.
        sizes: per image (h, w) inside the padded batch; scales: per image (sx, sy); image_shapes: per
            image original (H, W) (all three from ``preprocess``).
    Per level, the ``topk_candidates`` best (anchor, class) pairs of anchors centred inside the image;
    scores (sigmoid) above ``score_thresh``; decode; clip to the image; NMS per class; the
    ``detections_per_img`` best.
    """
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2] (x, y)
    bounds = np.cumsum(np.concatenate([[0], np.asarray(level_sizes, np.int64)]))
    num_classes = cls_logits.shape[2]
    out = []
    for logits, deltas, (h, w), (sx, sy), (oh, ow) in zip(cls_logits, box_deltas, sizes, scales, image_shapes):
        inside = (centre[:, 0] < w) & (centre[:, 1] < h)
        picked = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            flat = np.where(inside[start:end, None], logits[start:end], -np.inf).reshape(-1)
            k = min(meta["topk_candidates"], flat.size)
            top = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
            picked.append(top[flat[top] > -np.inf] + start * num_classes)
        idx = np.concatenate(picked)
        scores = 1 / (1 + np.exp(-logits.reshape(-1)[idx].astype(np.float32)))
        keep = scores > meta["score_thresh"]
        idx, scores = idx[keep], scores[keep]
        anchor_idx, labels = idx // num_classes, idx % num_classes
        boxes = decode(deltas[anchor_idx].astype(np.float32), anchors[anchor_idx], meta["box_coding"])
        boxes = np.minimum(np.maximum(boxes, 0), np.asarray([w, h, w, h], np.float32))
        offset = labels[:, None] * (boxes.max(initial=0) + 1)  # one NMS call, classes kept apart
        keep = nms(boxes + offset, scores, meta["nms_thresh"])[:meta["detections_per_img"]]
        boxes = boxes[keep] / np.asarray([sx, sy, sx, sy], np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, ow)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, oh)
        out.append({"boxes": boxes.astype(np.float32), "scores": scores[keep].astype(np.float32),
                    "labels": labels[keep].astype(np.int64)})
    return out
