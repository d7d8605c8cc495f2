"""``metaanchor demo`` (what ``make demo`` runs)."""

from __future__ import annotations


def add(sub):
    p = sub.add_parser("demo", help="synthesise data, train, evaluate and draw (what `make demo` runs)")
    p.add_argument("--config", default="demo", help="config file, or a shipped config's name (default: demo)")
    p.add_argument("--out", default="runs/demo", help="run folder: data/, the checkpoints, pictures")
    p.add_argument("--unseen", default="5x5", help="anchor set never used in training, to evaluate and draw")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as for train")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from metaanchor.cli.common import run_inputs
    from metaanchor.config import load_config
    from metaanchor.engine.demo import run_demo
    from metaanchor.files import check_outputs

    inputs = {k: v for k, v in run_inputs(args.config, load_config(args.config, args.overrides)).items()
              if not k.startswith("data.")}  # the demo trains on data it writes into OUT/data
    check_outputs({"--out": args.out}, inputs, folders=["--out"])
    run_demo(args.config, args.out, args.unseen, args.overrides)
    return 0
