"""The top operators of one training step, ours and torchvision's RetinaNet (torch.profiler).

    python benchmarks/profile_train_step.py --device cuda --backbone resnet50 --size 800 --batch 8 --out DIR

Both models as ``metaanchor bench`` builds them (same backbone, input size, anchors, classes, random
weights; float16 autocast on CUDA), each after ``--warmup`` untimed steps; ``--steps`` steps are
profiled. Writes ``DIR/profile_{ours,tv}.txt`` (``key_averages`` sorted by self CUDA time on CUDA,
self CPU time on the CPU, top ``--top`` rows) and prints them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from metaanchor.engine.bench.compare import random_images, random_targets, train_step
from metaanchor.engine.bench.models import build_training_models


def profile_steps(step, device: torch.device, steps: int, warmup: int, top: int) -> str:
    """``step()`` ``warmup`` times, then ``steps`` times under the profiler; its top ``top`` operators."""
    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--steps", type=int, default=2, help="profiled steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", default=".", help="folder for profile_ours.txt and profile_tv.txt")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    models = build_training_models(args.backbone, args.classes, args.size, 256, device)
    images = random_images(args.size, args.batch, device)
    targets = random_targets(args.size, args.classes, args.batch, device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        table = profile_steps(train_step(model, images, targets, amp), device, args.steps, args.warmup, args.top)
        head = (f"{name}: {args.backbone}-FPN, {args.size} px, batch {args.batch}, {args.steps} training steps, "
                f"{'float16 autocast' if amp else 'float32'}, device {device}")
        (Path(args.out) / f"profile_{name}.txt").write_text(f"{head}\n{table}\n")
        print(f"{head}\n{table}")


if __name__ == "__main__":
    main()
