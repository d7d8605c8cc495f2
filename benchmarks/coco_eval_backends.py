"""COCO evaluation by faster-coco-eval vs pycocotools: the same numbers? how much faster?

    python benchmarks/coco_eval_backends.py --data ../shared/data/bccd --split test --detections model
    python benchmarks/coco_eval_backends.py --data DIR --detections noisy   # DIR: metaanchor data synth --images 5000

Detections: ``model``: an untrained RetinaNet (configs/bccd.yaml's model, seed 0) with score threshold
``--score-thresh`` (default 0.001, so that there are many); ``noisy``: the ground truth with noise (boxes
jittered by 10 % of their size, 10 % relabelled, 10 % dropped, 3 false positives per image, random scores),
which times COCOeval itself without running a model. Each backend runs ``engine.evaluate.coco_metrics``
``--repeats`` times (median and first call: faster-coco-eval builds its own index of the ground truth once);
then every metric, per-class AP, the precision-recall curves and COCOeval's full precision [T, R, K, A, M] and
recall [T, K, A, M] arrays are compared (max |difference|).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from metaanchor.engine.evaluate import COCOEVAL_BACKENDS, METRIC_KEYS, coco_metrics, run_cocoeval


def noisy_detections(coco_gt, seed: int = 0) -> list[dict]:
    """COCO result records made from the ground truth with noise (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(coco_gt.cats)
    out = []
    for image_id, img in coco_gt.imgs.items():
        for a in coco_gt.imgToAnns.get(image_id, []):
            if rng.random() < 0.1:
                continue
            x, y, w, h = a["bbox"]
            x, y = x + rng.normal(0, 0.1) * w, y + rng.normal(0, 0.1) * h
            w, h = w * np.exp(rng.normal(0, 0.1)), h * np.exp(rng.normal(0, 0.1))
            cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids))
            out.append({"image_id": image_id, "category_id": cat, "score": round(float(rng.random()), 5),
                        "bbox": [round(float(v), 2) for v in (x, y, w, h)]})
        for _ in range(3):
            w, h = rng.uniform(8, img["width"] / 2), rng.uniform(8, img["height"] / 2)
            out.append({"image_id": image_id, "category_id": int(rng.choice(cat_ids)),
                        "score": round(float(rng.random() * 0.5), 5),
                        "bbox": [round(float(v), 2) for v in (rng.uniform(0, img["width"] - w),
                                                              rng.uniform(0, img["height"] - h), w, h)]})
    return out


def model_detections(dataset, score_thresh: float) -> tuple[list[dict], list[int]]:
    """COCO result records of an untrained RetinaNet built as configs/bccd.yaml builds it (seed 0)."""
    import torch

    from metaanchor.engine.evaluate import predict_dataset, to_coco_results
    from metaanchor.families.retinanet import RetinaNetDetector

    torch.manual_seed(0)
    model = RetinaNetDetector(len(dataset.cat_ids), backbone="tiny", fpn_channels=64, head_convs=2, hidden_dim=16,
                              min_size=384, max_size=512, score_thresh=score_thresh).eval()
    dets, ids = predict_dataset(model, dataset, progress=False)
    return to_coco_results(dets, ids, dataset.cat_ids), ids


def _diff(a, b) -> float:
    """Max |a - b| over nested metrics (None only equals None: inf otherwise)."""
    if isinstance(a, dict):
        return max((_diff(a[k], b.get(k)) for k in a), default=0.0) if isinstance(b, dict) and set(a) == set(b) \
            else float("inf")
    if isinstance(a, list):
        return max((_diff(x, y) for x, y in zip(a, b)), default=0.0) if len(a) == len(b) else float("inf")
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    if isinstance(a, str):
        return 0.0 if a == b else float("inf")
    return abs(float(a) - float(b))


def compare(coco_gt, records: list[dict], ids: list[int] | None, repeats: int = 3) -> dict:
    """Times of each backend (median of ``repeats`` and the first call) and max |differences|."""
    out, metrics, arrays = {}, {}, {}
    for backend in COCOEVAL_BACKENDS:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            metrics[backend] = coco_metrics(coco_gt, records, ids, backend=backend)
            times.append(time.perf_counter() - t0)
        ev, _ = run_cocoeval(coco_gt, records, ids, backend)
        arrays[backend] = (np.asarray(ev.eval["precision"]), np.asarray(ev.eval["recall"]))
        out[backend] = {"median_s": statistics.median(times), "first_s": times[0], "all_s": times}
    a, b = (metrics[k] for k in COCOEVAL_BACKENDS)
    pa, pb = arrays["faster-coco-eval"], arrays["pycocotools"]
    out["max_abs_diff"] = {
        "metrics": _diff({k: a[k] for k in METRIC_KEYS}, {k: b[k] for k in METRIC_KEYS}),
        "per_class_table": _diff(a["per_class_table"], b["per_class_table"]),
        "pr50": _diff(a["pr50"], b["pr50"]),
        "precision_array": float(np.abs(pa[0] - pb[0]).max()) if pa[0].shape == pb[0].shape else float("inf"),
        "recall_array": float(np.abs(pa[1] - pb[1]).max()) if pa[1].shape == pb[1].shape else float("inf")}
    out["summary_same"] = a["summary"].splitlines()[-12:] == b["summary"].splitlines()[-12:]
    out["metrics"] = {k: a[k] for k in METRIC_KEYS}
    out["detections"], out["images"] = len(records), len(ids) if ids is not None else len(coco_gt.imgs)
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset (any layout metaanchor eval reads)")
    p.add_argument("--split", help="VOC split or data.yaml entry (default: val)")
    p.add_argument("--detections", choices=("model", "noisy"), default="noisy")
    p.add_argument("--score-thresh", type=float, default=0.001)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json-out")
    args = p.parse_args(argv)
    from metaanchor.data.sources import open_dataset

    dataset = open_dataset(args.data, None, args.split, default_split="val")
    if args.detections == "model":
        records, ids = model_detections(dataset, args.score_thresh)
    else:
        records, ids = noisy_detections(dataset.coco), None
    result = compare(dataset.coco, records, ids, args.repeats) | {"data": args.data, "split": args.split,
                                                                   "kind": args.detections}
    print(json.dumps(result, indent=2))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
