"""Evaluating N anchor sets: one pass with evaluate_many vs N separate evaluations (CPU, one run).

    python benchmarks/multiset_bench.py [--images 150] [--sets 10]

A demo-sized MetaAnchor RetinaNet (tiny backbone, random weights; speed does not depend on training) on
synthetic 128 px images; both paths compute the same COCO metrics (checked here too).
"""

import argparse
import tempfile
import time

import torch

from metaanchor.data.coco import CocoDataset
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.engine.evaluate import METRIC_KEYS, evaluate, evaluate_many
from metaanchor.families import build_detector

SETS = ["1x1", "1x3", "2x3", "3x3", "3x5", "5x5", "scales=0.5,1;ratios=0.5,1,2", "scales=1,2;ratios=1",
        "scales=0.7;ratios=0.33,1,3", "scales=0.5,0.7,1,1.4,2;ratios=1"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=150)
    p.add_argument("--sets", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sets = SETS[:a.sets]
    with tempfile.TemporaryDirectory() as d:
        data = CocoDataset(write_synth_dataset(d, a.images, synth_config("default", seed=1), progress=False))
        torch.manual_seed(0)
        model = build_detector("retinanet", num_classes=3, backbone="tiny", head="metaanchor", anchors="3x3",
                               fpn_channels=64, head_convs=2, hidden_dim=16, min_size=128, max_size=128).eval()
        evaluate(model, data, "3x3", 32, progress=False)  # warm-up
        t0 = time.perf_counter()
        many = evaluate_many(model, data, sets, 32, progress=False)
        t_many = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = [evaluate(model, data, s, 32, progress=False) for s in sets]
        t_alone = time.perf_counter() - t0
    same = all({k: m[k] for k in METRIC_KEYS} == {k: s[k] for k in METRIC_KEYS} for m, s in zip(many, alone))
    print(f"{len(sets)} anchor sets, {a.images} images, {a.threads} threads: evaluate_many {t_many:.1f} s, "
          f"{len(sets)} x evaluate {t_alone:.1f} s: {t_alone / t_many:.2f}x; metrics equal: {same}")


if __name__ == "__main__":
    main()
