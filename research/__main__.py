"""``python -m research NAME|all``: run experiments of the suite and write their reports.

Exit codes as ``metaanchor``'s: 0 success, 2 a user error (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from metaanchor.errors import UserError

# the suite's experiments (research.suite.EXPERIMENTS), named here so `--help` imports no torch
SCALE_NAMES = ("converged", "quick", "full", "bccd")  # research.runner.SCALES
NAMES = ("anchor-configs", "schedule", "cross-eval", "search", "transfer", "data-dependent", "generator", "yolo")
PROG = "python -m research"


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Run an experiment of the suite (or all) and write reports/<name>/README.md, "
                                      "runs.csv and PNG plots. Training runs are cached by config hash, so a "
                                      "second call reuses them and an interrupted 'all' resumes.")
    p.add_argument("name", metavar="NAME[,NAME...]|all",
                   help=f"{', '.join(NAMES)} (several joined by commas), or all")
    p.add_argument("--quick", action="store_true", help="the smoke-test scale (= --scale quick: 400 iterations, "
                                                          "not converged)")
    p.add_argument("--scale", choices=SCALE_NAMES, default="converged",
                   help="converged (default: the committed reports; 12000 iterations, near convergence: "
                        "reports/schedule), quick, full (GPU: ResNet-50, 512 px), "
                        "bccd (the shipped bccd config; needs --data)")
    p.add_argument("--data", help="COCO-layout folder (train/ val/ test/) replacing the default distribution")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument("--jobs", type=int, default=1, help="training runs in parallel (one process each)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", help="report folder (default: reports, or reports/NAME-suite with --data "
                                 ".../NAME, so a real-data run never overwrites the synthetic reports)")
    p.add_argument("--cache", help="run cache folder (default: OUT/.cache, or reports/.cache when --out is "
                                   "left out)")
    p.add_argument("--records", help="folder of the finished runs' records: summary, validation curve and "
                                     "evaluations, committed so the suite can be filled over sittings on fresh "
                                     "machines (default: OUT/records, or reports/records when --out is left out)")
    p.add_argument("--search-budget", type=int, default=12, help="anchor sets tried per search")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads per training run (0: torch's default, or cores / --jobs)")
    p.add_argument("--status", action="store_true",
                   help="train nothing: list the planned runs (trained, running, stopped, not started) and the "
                        "time left, then each experiment's runs trained per seed")
    p.add_argument("--hours", type=float,
                   help="time budget: start only the runs expected to end within this many hours (at the median "
                        "speed of the runs already trained on this device); experiments whose runs are then not "
                        "all trained are evaluated as with --evaluate-trained instead of reported")
    p.add_argument("--evaluate-trained", action="store_true",
                   help="train nothing and write no report: evaluate the trained runs as their reports will (the "
                        "results go to their records), so a later sitting without their checkpoints can write "
                        "the reports")
    return p


def folders(out: str | None, data: str | None) -> tuple[Path, Path]:
    """(report folder, folder of the default cache and records) for ``--out`` and ``--data``. Left out, the
    reports go to ``reports`` (synthetic data) or ``reports/NAME-suite`` (``--data .../NAME``), and the cache and
    records stay in ``reports`` either way: run keys are unique across datasets, so one records folder serves
    both, and a real-data run cannot overwrite the synthetic reports of the same experiment names."""
    if out:
        return Path(out), Path(out)
    return (Path("reports") / f"{Path(data).resolve().name}-suite" if data else Path("reports")), Path("reports")


def cmd_experiment(args) -> int:
    import torch

    from research.runner import SCALES, Runner
    from research.suite import (
        EXPERIMENTS,
        Context,
        experiment_progress,
        planned_runs,
        progress,
        run_experiments,
    )

    names = list(EXPERIMENTS) if args.name == "all" else args.name.split(",")
    for name in names:
        if name not in EXPERIMENTS:
            raise UserError(f"unknown experiment {name!r}; choose all or one of {', '.join(EXPERIMENTS)}")
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    if args.hours is not None and args.hours <= 0:
        raise UserError(f"--hours {args.hours}: must be positive")
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    if args.quick and args.scale not in ("converged", "quick"):
        raise UserError(f"--quick and --scale {args.scale}: choose one scale")
    scale = SCALES["quick" if args.quick else args.scale]
    if scale.name == "bccd" and not args.data:
        raise UserError("--scale bccd: needs --data (e.g. data/bccd with train/ val/ test/, see configs/bccd.yaml)")
    if args.data and not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a dataset folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    out, root = folders(args.out, args.data)
    runner = Runner(args.cache or root / ".cache", scale, device=args.device, data=args.data,
                    records=args.records or root / "records")
    ctx = Context(runner, list(range(args.seeds)), out, search_budget=args.search_budget, jobs=args.jobs,
                  evaluate_only=args.evaluate_trained)
    if args.status:
        print(progress(ctx, planned_runs(names, ctx)))
        print(experiment_progress(names, ctx))
        return 0
    results = run_experiments(names, ctx, threads=args.threads,
                              until=None if args.hours is None else time.time() + 3600 * args.hours)
    if args.evaluate_trained:
        print(f"evaluated the trained runs of {', '.join(names)}; records in {runner.records}/")
        return 0
    print(f"\ntrained {runner.trained} new runs; reports in {out}/")
    for name, res in results.items():
        held = sum(v.held for _, v in res["verdicts"])
        print(f"{name:<16}{held}/{len(res['verdicts'])} claims held {res['wall_s'] / 60:6.1f} min  "
              f"{out / name / 'README.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cmd_experiment(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
