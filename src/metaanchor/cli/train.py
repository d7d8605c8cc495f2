"""``metaanchor train``."""

from __future__ import annotations

from pathlib import Path


def add(sub):
    p = sub.add_parser("train", help="train a detector from a YAML config",
                       description="Train a detector. Every config key can be overridden as KEY=VALUE "
                                   "(e.g. solver.max_iter=500 model.head=predefined anchors.train=2x3).",
                       epilog="Config keys: --show-config prints every key with the value this run would use "
                              "(sections run, data, anchors, input, solver, eval, log, checkpoint, model).")
    p.add_argument("--config", help="YAML config file, or a shipped config's name (demo, bccd, synth_r18, yolo_demo); "
                        "defaults apply to missing keys")
    p.add_argument("--out", default="runs/train",
                   help="run folder (last.pt, best.pt, config.yaml, metrics.csv, pictures); when it already holds "
                        "files, the run goes to OUT2, OUT3, ... instead (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt exactly where it stopped (from scratch if there is none yet)")
    p.add_argument("--exist-ok", action="store_true",
                   help="write into OUT even when it holds another run's files (they are replaced or mixed)")
    p.add_argument("--fail-fast", action="store_true",
                   help="make every skipped or repaired record (bad annotation, unreadable image) an error")
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (they are drawn only when stderr is a terminal)")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved config (--config, then the KEY=VALUE overrides) as YAML and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from metaanchor.cli.common import DATA_KEYS, run_inputs
    from metaanchor.config import load_config
    from metaanchor.engine.train import train
    from metaanchor.files import check_outputs, fresh_folder

    cfg = load_config(args.config, args.overrides)
    if args.show_config:
        from metaanchor.config import dump

        print(dump(cfg), end="")
        return 0
    out = fresh_folder(args.out, exist_ok=args.resume or args.exist_ok)
    if out != Path(args.out):
        print(f"{args.out} holds another run's files: this run goes to {out} (--resume continues that run, "
              "--exist-ok writes into it)")
    check_outputs({"--out": out}, run_inputs(args.config, cfg), folders=["--out"], may_contain=DATA_KEYS)
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress, fail_fast=args.fail_fast)
    print_summary(summary, out)
    return 0


def print_summary(summary: dict, out) -> None:
    import os

    from metaanchor.engine.evaluate import fmt_metric

    rows = summary.get("metrics", {})
    print(f"\ntrained {summary['iterations']} iterations in {summary['wall_time_s']:.0f} s -> {out}")
    if rows:
        print(f"{'anchors':<14}{'AP':>8}{'AP50':>8}{'AP75':>8}{'APs':>8}{'APm':>8}{'APl':>8}")
        for spec, m in rows.items():
            print(f"{spec:<14}" + "".join(f"{fmt_metric(m[k]):>8}" for k in ("AP", "AP50", "AP75", "APs", "APm",
                                                                              "APl")))
    if summary.get("best_iteration"):
        stopped = "early-stopped; " if summary.get("early_stopped") else ""
        print(f"{stopped}best validation AP {summary['best_ap']:.4f} at iteration {summary['best_iteration']} "
              f"({summary.get('weights', 'trained')} weights in best.pt and last.pt); "
              + ", ".join(["per-class table"] + [f for f in ("pr_curve.png", "val_curve.png", "results.png",
                                                            "summary.json") if os.path.isfile(os.path.join(out, f))])
              + " in the run folder")
