"""The ``metaanchor`` command line: argument parsing and printing; the work is in the library.

Exit codes: 0 success, 2 user error (one line on stderr, no traceback), 1 internal error.
Each command is one module of this package with ``add(subparsers)`` and its ``cmd_*`` functions.
"""

from __future__ import annotations

import sys
import warnings

from metaanchor.cli import anchors, bench, data, demo, evaluate, experiment, export, importer, predict, train
from metaanchor.cli.common import Parser
from metaanchor.errors import UserError

COMMANDS = (train, evaluate, predict, data, anchors, demo, experiment, bench, export, importer)


def build_parser() -> Parser:
    parser = Parser(prog="metaanchor", description="MetaAnchor detectors: anchors are an input, not an architecture.")
    from metaanchor.version import __version__

    parser.add_argument("--version", action="version", version=f"metaanchor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides += extra  # KEY=VALUE overrides on both sides of an option, e.g. a=1 --out x b=2
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning  # one line on stderr; restored on exit
            return args.func(args)
    except UserError as e:
        print(f"metaanchor {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metaanchor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
