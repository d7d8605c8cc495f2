"""``metaanchor experiment NAME|all``: run experiments of the suite and write their reports."""

from __future__ import annotations

from pathlib import Path

from metaanchor.errors import UserError

NAMES = ("anchor-configs", "cross-eval", "search", "transfer", "data-dependent", "yolo")


def cmd_experiment(args) -> int:
    import torch

    from metaanchor.experiments.runner import FULL, QUICK, Runner
    from metaanchor.experiments.suite import EXPERIMENTS, Context, run_experiments

    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if args.name != "all" and args.name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.name!r}; choose all or one of {', '.join(EXPERIMENTS)}")
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be at least 1")
    if args.data and not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a dataset folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    runner = Runner(args.cache or out / ".cache", QUICK if args.quick else FULL, device=args.device,
                    data=args.data)
    ctx = Context(runner, list(range(args.seeds)), out, search_budget=args.search_budget)
    results = run_experiments(names, ctx)
    print(f"\ntrained {runner.trained} new runs; reports in {out}/")
    for name, res in results.items():
        print(f"{name:<16}{'held' if res['held'] else 'not clearly':<13}{res['wall_s'] / 60:6.1f} min  "
              f"{out / name / 'README.md'}")
    return 0
