"""``metaanchor experiment``: the experiment suite is not part of the installed package; this names its command."""

from __future__ import annotations

import argparse
import shlex

from metaanchor.errors import UserError


def add(sub):
    # prefix_chars outside any argument: every argument, options included, is taken as given
    p = sub.add_parser("experiment", help="moved: run 'python -m research NAME|all' from a checkout",
                       description="The paper's experiment suite lives outside the installed package: run "
                                   "'python -m research NAME|all [--quick]' from a checkout (research/README.md).",
                       prefix_chars="\0", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="ignored")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args) -> int:
    command = shlex.join(["python", "-m", "research", *args.args]) if args.args else "python -m research NAME|all"
    raise UserError(f"the experiment suite lives outside the installed package: run '{command}' from a checkout")
