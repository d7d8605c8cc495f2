"""Exported model speed: onnxruntime (CPU) vs our PyTorch path vs torchvision's RetinaNet, end to end.

    .venv/bin/python benchmarks/export_bench.py [--backbone resnet18] [--size 512] [--batch 1] [--repeats 5]

Same model size and anchor set for all: ResNet-FPN P3..P7, 4-conv heads, 3x3 anchors, 80 classes,
random weights, ``min_size = max_size = size``. Timed, interleaved (A B C D A B C D ...) after one
warm-up call each, in one process with the same thread count (``compare_torchvision.interleaved``):

    onnx        numpy pre-processing + onnxruntime (the baked model's ONNX graph) + numpy post-processing
    onnx_graph  onnxruntime on the ready batch only (the exported graph)
    ours        the MetaAnchor Detector after optimize_for_inference() (BN folded, channels_last)
    tv          torchvision's RetinaNet (compare_torchvision.torchvision_retinanet)

Prints images/s per model (median and min..max over rounds) and per-round ratios against torchvision
(median). Absolute numbers drift on shared machines; read the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from compare_torchvision import interleaved, machine_info, torchvision_retinanet

from metaanchor.deploy import numpy_postprocess as npp
from metaanchor.deploy.onnx_export import OPSET, export_onnx, onnx_runner
from metaanchor.families.retinanet import RetinaNetDetector


def build(backbone: str, size: int, num_classes: int, score_thresh: float, folder: Path):
    """{name: zero-argument callable running one batch}, given images later; returns (models dict, meta)."""
    torch.manual_seed(0)
    model = RetinaNetDetector(num_classes, backbone=backbone, fpn_channels=256, head_convs=4, anchors="3x3",
                              min_size=size, max_size=size, score_thresh=score_thresh).eval()
    t0 = time.perf_counter()
    path = export_onnx(model.bake("3x3"), folder / "model.onnx")
    export_s = time.perf_counter() - t0
    run, meta = onnx_runner(path, threads=torch.get_num_threads())
    meta["score_thresh"] = score_thresh
    ours = copy.deepcopy(model).optimize_for_inference()
    tv = torchvision_retinanet(backbone, num_classes, size).eval()
    tv.score_thresh = score_thresh
    return run, meta, ours, tv, export_s


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--score-thresh", type=float, default=0.05)
    args = p.parse_args(argv)
    started = time.perf_counter()
    g = torch.Generator().manual_seed(args.batch)
    images = [torch.rand(3, args.size, args.size, generator=g) for _ in range(args.batch)]
    arrays = [im.permute(1, 2, 0).numpy() for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        run, meta, ours, tv, export_s = build(args.backbone, args.size, args.classes, args.score_thresh, Path(tmp))
        batch = npp.preprocess(arrays, meta)[0]

        def torch_model(m):
            def call():
                with torch.inference_mode():
                    return m(images)
            return call

        fns = {"onnx": lambda: npp.detect(run, arrays, meta), "onnx_graph": lambda: run(batch),
               "ours": torch_model(ours), "tv": torch_model(tv)}
        times = interleaved(fns, args.repeats, "cpu")
    info = machine_info(torch.device("cpu"))
    print(f"{info['cpu']}, {info['threads']} threads, torch {info['torch']}; {args.backbone}-FPN {args.size} px, "
          f"batch {args.batch}, {args.classes} classes, 3x3 anchors, score_thresh {args.score_thresh}, "
          f"{args.repeats} interleaved rounds; ONNX opset {OPSET} export {export_s:.1f} s")
    result = {}
    for name, ts in times.items():
        rates = [args.batch / t for t in ts]
        ratio = statistics.median(t_tv / t for t_tv, t in zip(times["tv"], ts))
        result[name] = {"images_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
                        "speedup_vs_tv": ratio}
        print(f"{name:<11} {statistics.median(rates):7.2f} img/s ({min(rates):.2f}..{max(rates):.2f})   "
              f"tv time / this time: {ratio:.2f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return result


if __name__ == "__main__":
    main()
