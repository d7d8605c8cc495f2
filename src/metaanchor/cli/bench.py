"""``metaanchor bench``: the comparison with torchvision is not part of the installed package; this names its
command."""

from __future__ import annotations

import argparse
import shlex

from metaanchor.errors import UserError


def add(sub):
    # prefix_chars outside any argument: every argument, options included, is taken as given
    p = sub.add_parser("bench", help="moved: run 'python benchmarks/compare_torchvision.py' from a checkout",
                       description="The speed/memory comparison with torchvision's RetinaNet lives outside the "
                                   "installed package: run 'python benchmarks/compare_torchvision.py [--quick]' "
                                   "from a checkout (BENCHMARKS.md).",
                       prefix_chars="\0", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="ignored")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    command = shlex.join(["python", "benchmarks/compare_torchvision.py", *args.args])
    raise UserError(f"the comparison with torchvision lives outside the installed package: run '{command}' from "
                    "a checkout")
