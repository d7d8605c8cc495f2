"""``metaanchor bench``: speed and memory beside torchvision's RetinaNet."""

from __future__ import annotations

from metaanchor.errors import UserError


def add(sub):
    p = sub.add_parser("bench", help="speed/memory side by side with torchvision's RetinaNet",
                       description="Time our Detector and torchvision's RetinaNet (same ResNet-FPN backbone, "
                                   "512 px, 9 anchors, 80 classes, random weights) interleaved in one process: "
                                   "inference images/s at batch 1 and 8, a training step, peak memory, "
                                   "post-processing share and FLOP efficiency. See BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="ResNet-18 only, fewer repeats (under 3 min on 2 cores)")
    p.add_argument("--json-out", help="write the report as JSON")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--train-data", metavar="DIR",
                   help="instead: training images/s with data loading on a dataset folder (DIR/annotations.json + "
                        "DIR/images), our Trainer vs torchvision's RetinaNet fed by a references-style loader (CPU)")
    p.add_argument("--size", type=int, default=512, help="--train-data: input short side (long side capped too)")
    p.add_argument("--batch", type=int, default=2, help="--train-data: batch size")
    p.add_argument("--rounds", type=int, default=3, help="--train-data: interleaved rounds (median and spread)")
    p.add_argument("--steps", type=int, default=2, help="--train-data: training steps per measurement")
    p.add_argument("--backbone", default="resnet18", help="--train-data: resnet18, resnet50, ...")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    """``metaanchor bench`` entry point."""
    import torch

    from metaanchor.tools.bench import main

    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UserError(f"--device {args.device}: choose auto, cpu or cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    if args.train_data:
        return _train_real(args)
    main(quick=args.quick, json_out=args.json_out, device=args.device)
    return 0


def _train_real(args) -> int:
    """``metaanchor bench --train-data DIR``: real-data training throughput (tools/bench_train.py)."""
    import json
    from pathlib import Path

    from metaanchor.files import write_text
    from metaanchor.tools.bench_train import bench_train_real, format_report

    if not (Path(args.train_data) / "annotations.json").is_file():
        raise UserError(f"--train-data {args.train_data}: not a dataset folder (no annotations.json; convert one "
                        "with metaanchor data convert)")
    for name in ("size", "batch", "rounds", "steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)}: must be at least 1")
    report = bench_train_real(args.train_data, args.size, args.batch, args.backbone, args.rounds, args.steps)
    print(format_report(report))
    if args.json_out:
        write_text(args.json_out, json.dumps(report, indent=2))
    return 0
