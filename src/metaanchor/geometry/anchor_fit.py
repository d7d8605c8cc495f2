"""Fitting anchor shapes to a dataset's boxes (``metaanchor anchors fit``).

- :func:`fit_anchors`: k-means on the box shapes of a dataset with the IoU
  distance ``d = 1 - IoU`` of centred boxes (YOLOv2; ultralytics AutoAnchor).
  Each box is first assigned to the pyramid level whose standard box (4 x
  stride) it overlaps best, as the matcher would favour that level, and
  divided by that level's standard size, so the fitted shapes are
  *level-relative* and form an anchor file ``AnchorSet.parse`` reads.
  :func:`anchor_fit_quality` reports best-possible recall and mean best IoU.
- :func:`level_quality`, :func:`bucket_quality` and :func:`unreachable_boxes`
  break the fit down by pyramid level and COCO size. The box shapes come from
  :mod:`metaanchor.data.box_shapes` (a dataset's boxes at input scale).

Why presets differing only in scale (``1x1``, ``3x3``, ``5x5``) show the same
BPR at IoU 0.5: anchor shapes are level-relative and the levels' standard
boxes double in size from level to level; a square box between two of them
(side ``s`` with ``S <= s <= 2S``) overlaps the nearer one with IoU >=
``S^2 / s^2 >= 1/2``. So the pyramid alone recalls every near-square box
between the smallest and the largest level at 0.5, whatever the scales within
a level; they show in the mean best IoU, the BPR at a stricter IoU
(``STRICT_IOU``) and the anchors per box.

Searching with a trained model is :mod:`metaanchor.engine.anchor_search`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metaanchor.errors import UserError
from metaanchor.files import write_text
from metaanchor.geometry.anchors import ANCHOR_BASE, PYRAMID_STRIDES, AnchorSet, standard_sizes
from metaanchor.geometry.iou import shape_iou

POSITIVE_IOU = 0.5  # a box counts as recallable if some anchor reaches the matcher's fg IoU
STRICT_IOU = 0.7  # a stricter threshold that separates sets BPR@0.5 cannot (see the module docstring)
SIZE_BUCKETS = {"small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, float("inf"))}  # COCO


def level_sizes(strides=PYRAMID_STRIDES, base: float = ANCHOR_BASE) -> np.ndarray:
    """Standard box side of each pyramid level (as the Detector uses): [L] pixels."""
    return np.asarray(standard_sizes(strides, base), dtype=np.float64)


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


def level_anchors(anchors: str | AnchorSet, sizes: np.ndarray | None = None) -> list[np.ndarray]:
    """Pixel (h, w) anchor shapes of each level: L arrays [A, 2]."""
    sizes = level_sizes() if sizes is None else np.asarray(sizes, dtype=np.float64)
    return [s.numpy().astype(np.float64) for s in AnchorSet.parse(anchors).sizes([float(v) for v in sizes])]


def _quality(iou: np.ndarray, threshold: float) -> dict:
    """Fit numbers from a box-to-anchor IoU matrix [N, A]."""
    best = iou.max(1) if iou.size else np.zeros(len(iou))
    return {"boxes": len(iou), "bpr": _mean(best >= threshold), "bpr_strict": _mean(best >= STRICT_IOU),
            "mean_iou": _mean(best), "anchors_per_box": _mean((iou >= threshold).sum(1))}


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def anchor_fit_quality(shapes: np.ndarray, anchors: str | AnchorSet, sizes: np.ndarray | None = None,
                       threshold: float = POSITIVE_IOU) -> dict:
    """How well an anchor set covers box shapes [N, 2] (h, w) px, position ignored.

    Returns ``bpr`` (share of boxes whose best anchor, over all levels, reaches
    ``threshold`` IoU), ``bpr_strict`` (the same at ``STRICT_IOU``), ``mean_iou``
    (mean best IoU), ``anchors_per_box`` (mean number of anchors above ``threshold``)
    and ``boxes``.
    """
    pixel = np.concatenate(level_anchors(anchors, sizes))
    return _quality(shape_iou(np.asarray(shapes, dtype=np.float64), pixel), threshold)


def level_quality(shapes: np.ndarray, anchors: str | AnchorSet, sizes: np.ndarray | None = None,
                  threshold: float = POSITIVE_IOU) -> list[dict]:
    """Per pyramid level: the boxes whose best anchor is on that level and how well they are covered.

    Returns L dicts (``anchor_fit_quality``'s keys, over those boxes; None where a level has none)."""
    per_level = level_anchors(anchors, sizes)
    shapes = np.asarray(shapes, dtype=np.float64)
    level_of = np.repeat(np.arange(len(per_level)), [len(a) for a in per_level])  # [A] level of each anchor
    iou = shape_iou(shapes, np.concatenate(per_level))  # [N, A]
    home = level_of[iou.argmax(1)]
    return [_quality(iou[home == lvl], threshold) for lvl in range(len(per_level))]


def bucket_quality(shapes: np.ndarray, anchors: str | AnchorSet, sizes: np.ndarray | None = None,
                   threshold: float = POSITIVE_IOU) -> dict[str, dict]:
    """``anchor_fit_quality`` per COCO size bucket (box area at the scale ``shapes`` are in)."""
    shapes = np.asarray(shapes, dtype=np.float64)
    iou = shape_iou(shapes, np.concatenate(level_anchors(anchors, sizes)))
    area = shapes.prod(1)
    return {name: _quality(iou[(area >= lo) & (area < hi)], threshold) for name, (lo, hi) in SIZE_BUCKETS.items()}


def unreachable_boxes(shapes: np.ndarray, anchors: str | AnchorSet, sizes: np.ndarray | None = None,
                      threshold: float = POSITIVE_IOU) -> dict[str, np.ndarray]:
    """Boxes no anchor reaches at ``threshold`` IoU because of their size: ``too_small`` (area below the
    smallest anchor's) and ``too_large`` (above the largest anchor's), as index arrays into ``shapes``."""
    shapes = np.asarray(shapes, dtype=np.float64)
    pixel = np.concatenate(level_anchors(anchors, sizes))
    missed = shape_iou(shapes, pixel).max(1) < threshold
    area, anchor_area = shapes.prod(1), pixel.prod(1)
    return {"too_small": np.flatnonzero(missed & (area < anchor_area.min())),
            "too_large": np.flatnonzero(missed & (area > anchor_area.max()))}


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
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = "\n".join(f"# {k}: {v}" for k, v in info.items())
        write_text(path, (text + "\n" if text else "") + yaml.safe_dump({"anchors": data["anchors"]},
                                                                      default_flow_style=None))
    else:
        write_text(path, json.dumps(data, indent=1))
    return path
