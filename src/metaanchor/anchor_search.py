"""Fitting and searching anchor sets for a dataset.

Two tools, as ``metaanchor anchors fit|search``:

- :func:`fit_anchors`: k-means on the box shapes of a dataset with the IoU
  distance ``d = 1 - IoU`` of centred boxes (YOLOv2; ultralytics AutoAnchor).
  Each box is first assigned to the pyramid level whose standard box (4 x
  stride) it overlaps best, as the matcher would favour that level, and
  divided by that level's standard size, so the fitted shapes are
  *level-relative* and form an anchor file ``AnchorSet.parse`` reads.
  :func:`anchor_fit_quality` reports best-possible recall and mean best IoU.
- :func:`search_anchors`: greedy or random search over scales and ratios with
  any scoring function (AP of a trained MetaAnchor model on a validation split;
  no retraining), returning every set tried and the best one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metaanchor.anchors import ANCHOR_BASE, AnchorSet, standard_sizes
from metaanchor.backbones import STRIDES
from metaanchor.errors import UserError

POSITIVE_IOU = 0.5  # a box counts as recallable if some anchor reaches the matcher's fg IoU


def level_sizes(strides=STRIDES, base: float = ANCHOR_BASE) -> np.ndarray:
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


# ------------------------------------------------------------------------ search
def spec_of(scales, ratios) -> str:
    """``scales=..;ratios=..`` SPEC string (4 significant digits)."""
    return "scales=" + ",".join(f"{s:.4g}" for s in scales) + ";ratios=" + ",".join(f"{r:.4g}" for r in ratios)


@dataclass
class SearchResult:
    """Every set tried, in order, as (spec, score); ``best`` is the highest score."""

    tried: list[tuple[str, float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[str, float]:
        return max(self.tried, key=lambda t: t[1])


def _neighbours(scales: tuple, ratios: tuple, step: float) -> list[tuple[tuple, tuple]]:
    """Moves of the greedy search: scale/ratio x 2^(+-step), add or drop one of each."""
    out = []
    for i in range(len(scales)):
        for d in (-step, step):
            out.append((tuple(sorted(scales[:i] + (scales[i] * 2 ** d,) + scales[i + 1:])), ratios))
    for i in range(len(ratios)):
        for d in (-2 * step, 2 * step):
            out.append((scales, tuple(sorted(ratios[:i] + (ratios[i] * 2 ** d,) + ratios[i + 1:]))))
    grow = 2 ** (2 * step)
    out += [(tuple(sorted(scales + (x,))), ratios) for x in (min(scales) / grow, max(scales) * grow)]
    out += [(scales, tuple(sorted(ratios + (x,)))) for x in (min(ratios) / grow ** 2, max(ratios) * grow ** 2)]
    if len(scales) > 1:
        out += [(scales[:i] + scales[i + 1:], ratios) for i in range(len(scales))]
    if len(ratios) > 1:
        out += [(scales, ratios[:i] + ratios[i + 1:]) for i in range(len(ratios))]
    return out


MAX_SEARCH_ANCHORS = 25  # largest set (scales x ratios) the search scores


def search_anchors(score: Callable[[str], float], init_scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
                   init_ratios=(0.5, 1.0, 2.0), method: str = "greedy", budget: int = 20, seed: int = 0,
                   step: float = 0.25, max_anchors: int = MAX_SEARCH_ANCHORS, candidates: list[tuple] = (),
                   log: Callable[[str], None] | None = None) -> SearchResult:
    """Search anchor sets (scales x ratios, level-relative) maximising ``score(spec)``.

    ``greedy``: start from the initial set, try its neighbours (each scale or ratio
    moved by 2^(+-step) in log space, one added or dropped) and move to the best
    improving one, until no move improves or ``budget`` sets were scored.
    ``random``: the initial set plus ``budget - 1`` random sets (1-5 scales in
    [0.35, 4], 1-5 ratios in [1/5, 5], log-uniform). Sets already scored are not
    scored again; sets with more than ``max_anchors`` anchors are skipped. ``candidates``
    ((scales, ratios) pairs, e.g. presets) are scored right after the initial set, and the
    greedy search starts from the best of them all (so a bad initial set does not trap it).
    A score of None (AP undefined: no ground truth) counts as -inf.
    """
    if method not in ("greedy", "random"):
        raise UserError(f"search method {method!r}: choose greedy or random")
    if budget < 1:
        raise UserError(f"search budget {budget}: must be at least 1")
    if len(init_scales) * len(init_ratios) > max_anchors:
        raise UserError(f"initial set: {len(init_scales)} scales x {len(init_ratios)} ratios = "
                        f"{len(init_scales) * len(init_ratios)} anchors, more than the search allows ({max_anchors})")
    result, seen = SearchResult(), {}

    def try_set(scales, ratios) -> float | None:
        spec = spec_of(scales, ratios)
        if spec in seen or len(scales) * len(ratios) > max_anchors or len(result.tried) >= budget:
            return seen.get(spec)
        value = score(spec)
        seen[spec] = float("-inf") if value is None else float(value)
        result.tried.append((spec, seen[spec]))
        if log:
            log(f"[{len(result.tried):>3}/{budget}] {seen[spec]:.4f}  {spec}")
        return seen[spec]

    cur = (tuple(sorted(init_scales)), tuple(sorted(init_ratios)))
    cur_score = try_set(*cur)
    for c in candidates:
        c = (tuple(sorted(c[0])), tuple(sorted(c[1])))
        v = try_set(*c)
        if v is not None and v > cur_score:
            cur, cur_score = c, v
    if method == "random":
        rng = np.random.default_rng(seed)
        while len(result.tried) < budget:
            s = tuple(sorted(np.exp(rng.uniform(math.log(0.35), math.log(4), rng.integers(1, 6)))))
            r = tuple(sorted(np.exp(rng.uniform(math.log(0.2), math.log(5), rng.integers(1, 6)))))
            try_set(s, r)
        return result
    while len(result.tried) < budget:
        scored = [(try_set(*n), n) for n in _neighbours(*cur, step)]
        scored = [(v, n) for v, n in scored if v is not None]
        if not scored or max(scored)[0] <= cur_score:
            break
        cur_score, cur = max(scored)
    return result


def preset_candidates(specs=("1x1", "1x3", "2x3", "3x3")) -> list[tuple[tuple, tuple]]:
    """(scales, ratios) of preset SPECs, as ``candidates`` of :func:`search_anchors`."""
    from metaanchor.anchors import preset_ratios, preset_scales

    out = []
    for spec in specs:
        s, r = (int(x) for x in spec.split("x"))
        out.append((tuple(preset_scales(s)), tuple(preset_ratios(r))))
    return out


def scales_ratios_of(anchors: str | AnchorSet) -> tuple[tuple, tuple]:
    """Best-effort (scales, ratios) of a level-relative set, to start a greedy search from."""
    aset = AnchorSet.parse(anchors)
    shapes = aset.shapes or aset.per_level[0]
    scales = sorted({round(math.sqrt(h * w), 4) for h, w in shapes})
    ratios = sorted({round(h / w, 4) for h, w in shapes})
    return tuple(scales), tuple(ratios)


# ------------------------------------------------------------------- CLI commands
def input_scale(dataset_dir: str | Path, images: str | Path | None, input_size: int) -> float:
    """``input_size`` over the median short side of a dataset's images (how much its boxes are resized)."""
    from metaanchor.data.coco import load_coco_json, resolve_coco_paths

    ann_file, _ = resolve_coco_paths(dataset_dir, images if images is not None else ".")
    sides = [min(im["height"], im["width"]) for im in load_coco_json(ann_file).get("images", [])
             if im.get("height") and im.get("width")]
    return input_size / float(np.median(sides)) if sides else 1.0


def cmd_fit(args) -> int:
    """``metaanchor anchors fit``: k-means fit, quality of the given and fitted sets, anchor file."""
    cfg = None
    if getattr(args, "config", None):
        from metaanchor.config import load_config

        cfg = load_config(args.config, [])
    arch = getattr(args, "arch", None) or (cfg["model"].get("arch", "retinanet") if cfg else "retinanet")
    shapes = box_shapes(args.data, args.images)
    sizes, method = None, f"k-means (1 - IoU), k={args.num}"
    if arch == "yolov2":
        from metaanchor.families.yolov2 import STRIDE, fit_yolo_anchors

        size = getattr(args, "input_size", None) or (cfg["input"]["size"] if cfg else 416)
        base = cfg["model"].get("anchor_base", ANCHOR_BASE) if cfg else ANCHOR_BASE
        scale = input_scale(args.data, args.images, size)
        fitted = fit_yolo_anchors(args.data, k=args.num, images=args.images, seed=args.seed, scale=scale,
                                  anchor_base=base)
        shapes, sizes = shapes * scale, [base * STRIDE]
        method += f", yolov2: one {base * STRIDE:g} px standard box, boxes x{scale:.3g} (input.size {size})"
        print(f"{len(shapes)} boxes from {args.data} resized x{scale:.3g} (input size {size}); fitted {args.num} "
              f"anchors relative to the {base * STRIDE:g} px standard box (h, w): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in fitted.shapes))
    elif arch == "retinanet":
        fitted = fit_anchors(shapes, k=args.num, seed=args.seed)
        print(f"{len(shapes)} boxes from {args.data}; fitted {args.num} level-relative anchors (h, w): "
              + " ".join(f"({h:.3g},{w:.3g})" for h, w in fitted.shapes))
    else:
        raise UserError(f"--arch {arch}: anchors fit knows retinanet and yolov2")
    print(f"{'anchor set':<28}{'anchors':>8}{'BPR@0.5':>9}{'mean IoU':>10}{'per box':>9}")
    for name, aset in [(s, s) for s in args.compare] + [(f"fitted (k={args.num})", fitted)]:
        q = anchor_fit_quality(shapes, aset, sizes)
        print(f"{str(name)[:27]:<28}{len(AnchorSet.parse(aset)):>8}{q['bpr']:>9.3f}{q['mean_iou']:>10.3f}"
              f"{q['anchors_per_box']:>9.2f}")
    out = write_anchor_file(fitted, args.out, source=str(args.data), method=method)
    print(f"wrote {out} (use it as --anchors {out})")
    return 0


def _searchable_start(start: str, what: str) -> None:
    """The search moves in (scales x ratios); refuse a start whose grid exceeds MAX_SEARCH_ANCHORS."""
    scales, ratios = scales_ratios_of(start)
    n = len(scales) * len(ratios)
    if n > MAX_SEARCH_ANCHORS:
        raise UserError(f"{what}: as scales x ratios it is {len(scales)} x {len(ratios)} = {n} anchors, but the "
                        f"search allows at most {MAX_SEARCH_ANCHORS}; start from a smaller set such as 3x3")


def cmd_search(args) -> int:
    """``metaanchor anchors search``: search anchor sets on a validation split with a trained checkpoint."""
    from metaanchor.data.coco import CocoDataset
    from metaanchor.engine.evaluate import evaluate
    from metaanchor.engine.train import resolve_device
    from metaanchor.families import load_detector

    if args.budget < 1:
        raise UserError(f"--budget {args.budget}: must be at least 1")
    if args.start:
        _searchable_start(args.start, f"--start {args.start}")
    dev = resolve_device(args.device)
    model = load_detector(args.checkpoint, map_location=dev).to(dev)
    if not model.takes_any_anchors:
        raise UserError(f"{args.checkpoint}: a predefined-anchor model cannot take other anchor sets; "
                        "anchor search needs a MetaAnchor checkpoint")
    start = args.start or model.train_anchors.spec
    if not args.start:
        _searchable_start(start, f"the checkpoint's training anchors ({start}); pass --start")
    data = CocoDataset(args.data, args.images)

    def score(spec: str) -> float:
        ap = evaluate(model, data, spec, args.batch_size, progress=False)["AP"]
        if ap is None:
            raise UserError(f"{args.data}: no ground-truth boxes, so AP is undefined; anchor search needs a "
                            "validation split with boxes")
        return ap

    res = search_anchors(score, *scales_ratios_of(start), method=args.method, budget=args.budget, seed=args.seed,
                         candidates=preset_candidates(), log=print)
    print(f"\n{'#':>3}  {'AP':>7}  anchor set")
    for i, (spec, ap) in enumerate(sorted(res.tried, key=lambda t: -t[1])):
        print(f"{i + 1:>3}  {ap:>7.4f}  {spec}")
    best, ap = res.best
    out = write_anchor_file(AnchorSet.parse(best), args.out, spec=best, val_ap=round(ap, 5),
                            checkpoint=str(args.checkpoint), method=args.method)
    print(f"best: {best} (AP {ap:.4f}) -> {out}")
    return 0
