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
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    """``metaanchor bench`` entry point."""
    import torch

    from metaanchor.tools.bench import main

    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UserError(f"--device {args.device}: choose auto, cpu or cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    main(quick=args.quick, json_out=args.json_out, device=args.device)
    return 0
