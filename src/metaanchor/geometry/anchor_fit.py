"""Fitting anchor shapes to a dataset's boxes (``metaanchor anchors fit``).

- :func:`fit_anchors`: k-means on the box shapes of a dataset with the IoU
  distance ``d = 1 - IoU`` of centred boxes (YOLOv2; ultralytics AutoAnchor).
  Each box is first assigned to the pyramid level whose standard box (4 x
  stride) it overlaps best, as the matcher would favour that level, and
  divided by that level's standard size, so the fitted shapes are
  *level-relative* and form an anchor file ``AnchorSet.parse`` reads.
  :func:`anchor_fit_quality` reports best-possible recall and mean best IoU.

Searching with a trained model is :mod:`metaanchor.engine.anchor_search`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metaanchor.errors import UserError
from metaanchor.geometry.anchors import ANCHOR_BASE, PYRAMID_STRIDES, AnchorSet, standard_sizes

POSITIVE_IOU = 0.5  # a box counts as recallable if some anchor reaches the matcher's fg IoU


def level_sizes(strides=PYRAMID_STRIDES, base: float = ANCHOR_BASE) -> np.ndarray:
    """Standard box side of each pyramid level (as the Detector uses): [L] pixels."""
    return np.asarray(standard_sizes(strides, base), dtype=np.float64)


def shape_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of centred boxes: a [N, 2], b [K, 2] (h, w) -> [N, K]."""
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    return inter / union


def box_shapes(dataset_dir: str | Path, images: str | Path | None = None) -> np.ndarray:
    """(h, w) of every non-crowd box of a COCO dataset (folder or JSON + images): [N, 2] pixels."""
    from metaanchor.data.coco import load_coco_json, resolve_coco_paths, validate_coco

    ann_file, _ = resolve_coco_paths(dataset_dir, images if images is not None else ".")
    data, _, _ = validate_coco(load_coco_json(ann_file), ann_file, skip_invalid=True)
    shapes = [(a["bbox"][3], a["bbox"][2]) for a in data["annotations"] if not a.get("iscrowd")]
    if not shapes:
        raise UserError(f"{ann_file}: no boxes to fit anchors to")
    return np.asarray(shapes, dtype=np.float64)


def level_relative(shapes: np.ndarray, sizes: np.ndarray | None = None) -> np.ndarray:
    """Divide each (h, w) box by the standard size of the level it overlaps best: [N, 2]."""
    sizes = level_sizes() if sizes is None else np.asarray(sizes, dtype=np.float64)
    iou = shape_iou(shapes, np.stack([sizes, sizes], 1))  # [N, L]
    return shapes / sizes[iou.argmax(1)][:, None]


def kmeans_shapes(shapes: np.ndarray, k: int, seed: int = 0, iters: int = 100, restarts: int = 5) -> np.ndarray:
    """k-means with distance 1 - IoU on (h, w) shapes [N, 2]; returns [k, 2] centres sorted by area.

    k-means++ seeding, median update (robust to outliers), best of ``restarts`` by mean IoU.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    if k < 1 or k > len(shapes):
        raise UserError(f"cannot fit {k} anchors to {len(shapes)} boxes: need 1 <= k <= number of boxes")
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        centres = shapes[[rng.integers(len(shapes))]]
        while len(centres) < k:  # k-means++: next centre far (in 1 - IoU) from the chosen ones
            d = 1 - shape_iou(shapes, centres).max(1)
            p = d ** 2 / (d ** 2).sum() if d.sum() > 0 else None
            centres = np.vstack([centres, shapes[rng.choice(len(shapes), p=p)]])
        for _ in range(iters):
            assign = shape_iou(shapes, centres).argmax(1)
            new = np.array([np.median(shapes[assign == j], 0) if (assign == j).any() else centres[j]
                            for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        fit = shape_iou(shapes, centres).max(1).mean()
        if fit > best_fit:
            best, best_fit = centres, fit
    return best[np.argsort(best[:, 0] * best[:, 1])]


def anchor_fit_quality(shapes: np.ndarray, anchors: str | AnchorSet, sizes: np.ndarray | None = None,
                       threshold: float = POSITIVE_IOU) -> dict:
    """How well an anchor set covers box shapes [N, 2] (h, w) px, position ignored.

    Returns ``bpr`` (share of boxes whose best anchor, over all levels, reaches
    ``threshold`` IoU), ``mean_iou`` (mean best IoU) and ``anchors_per_box``
    (mean number of anchors above ``threshold``).
    """
    sizes = level_sizes() if sizes is None else np.asarray(sizes, dtype=np.float64)
    aset = AnchorSet.parse(anchors)
    pixel = np.concatenate([s.numpy() for s in aset.sizes([float(v) for v in sizes])]).astype(np.float64)
    iou = shape_iou(np.asarray(shapes, dtype=np.float64), pixel)
    best = iou.max(1)
    return {"bpr": float((best >= threshold).mean()), "mean_iou": float(best.mean()),
            "anchors_per_box": float((iou >= threshold).sum(1).mean())}


def fit_anchors(shapes: np.ndarray, k: int = 9, seed: int = 0, sizes: np.ndarray | None = None) -> AnchorSet:
    """Level-relative anchor set of ``k`` shapes fitted to pixel box shapes [N, 2] (h, w)."""
    rel = level_relative(np.asarray(shapes, dtype=np.float64), sizes)
    centres = kmeans_shapes(rel, k, seed)
    return AnchorSet([(round(float(h), 4), round(float(w), 4)) for h, w in centres], spec=f"kmeans{k}")


def write_anchor_file(anchors: AnchorSet, path: str | Path, **info) -> Path:
    """Write a level-relative set as ``{"anchors": [[h, w], ...]}`` (JSON or YAML by suffix)."""
    if anchors.shapes is None:
        raise UserError(f"anchor set {anchors.spec}: only level-relative sets can be written as 'anchors'")
    path = Path(path)
    data = {"anchors": [[float(h), float(w)] for h, w in anchors.shapes]}
    if info:
        data["info"] = info
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = "\n".join(f"# {k}: {v}" for k, v in info.items())
        path.write_text((text + "\n" if text else "") + yaml.safe_dump({"anchors": data["anchors"]},
                                                                      default_flow_style=None))
    else:
        path.write_text(json.dumps(data, indent=1))
    return path



def input_scale(dataset_dir: str | Path, images: str | Path | None, input_size: int) -> float:
    """``input_size`` over the median short side of a dataset's images (how much its boxes are resized)."""
    from metaanchor.data.coco import load_coco_json, resolve_coco_paths

    ann_file, _ = resolve_coco_paths(dataset_dir, images if images is not None else ".")
    sides = [min(im["height"], im["width"]) for im in load_coco_json(ann_file).get("images", [])
             if im.get("height") and im.get("width")]
    return input_size / float(np.median(sides)) if sides else 1.0
