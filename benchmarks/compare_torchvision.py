"""``python benchmarks/compare_torchvision.py``: the comparison with torchvision's RetinaNet, from a checkout.

The comparison itself is ``metaanchor bench`` (``metaanchor.engine.bench``); this script runs it with
the same options, and keeps the real-data training comparison (``--train-data DIR``,
``compare_torchvision_train``), which drives our full training loop from outside the package.

    python benchmarks/compare_torchvision.py --quick --json-out bench.json     # = metaanchor bench --quick ...
    python benchmarks/compare_torchvision.py --train-data DIR                  # real-data training images/s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaanchor.engine.bench.compare import machine_info  # noqa: F401  (the other scripts import them from here)
from metaanchor.engine.bench.models import torchvision_retinanet  # noqa: F401
from metaanchor.engine.bench.report import write_json
from metaanchor.engine.bench.timing import interleaved  # noqa: F401
from metaanchor.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    p = Parser(prog="python benchmarks/compare_torchvision.py",
               description="Without --train-data: 'metaanchor bench' with the same options (its --help lists them). "
                           "With --train-data: our training loop vs torchvision's RetinaNet on a dataset folder. "
                           "See BENCHMARKS.md.")
    p.add_argument("--json-out", help="write the report as JSON")
    p.add_argument("--train-data", metavar="DIR", required=True,
                   help="training images/s with data loading on a dataset folder (DIR/annotations.json + "
                        "DIR/images), our Trainer vs torchvision's RetinaNet fed by a references-style loader (CPU)")
    p.add_argument("--size", type=int, default=512, help="--train-data: input short side (long side capped too)")
    p.add_argument("--batch", type=int, default=2, help="--train-data: batch size")
    p.add_argument("--rounds", type=int, default=3, help="--train-data: interleaved rounds (median and spread)")
    p.add_argument("--steps", type=int, default=2, help="--train-data: training steps per measurement")
    p.add_argument("--backbone", default="resnet18", help="--train-data: resnet18, resnet50, ...")
    return p


def run(args) -> int:
    """The real-data comparison: checks its arguments (``UserError``), runs it, prints and writes its report."""
    from compare_torchvision_train import bench_train_real, format_report

    if not (Path(args.train_data) / "annotations.json").is_file():
        raise UserError(f"--train-data {args.train_data}: not a dataset folder (no annotations.json; convert one "
                        "with metaanchor data convert)")
    for name in ("size", "batch", "rounds", "steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)}: must be at least 1")
    report = bench_train_real(args.train_data, args.size, args.batch, args.backbone, args.rounds, args.steps)
    print(format_report(report))
    if args.json_out:
        write_json(args.json_out, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not any(a == "--train-data" or a.startswith("--train-data=") for a in argv):
        from metaanchor.cli import main as metaanchor

        return metaanchor(["bench", *argv])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
