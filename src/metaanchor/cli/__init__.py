"""The ``metaanchor`` command line (``metaanchor.cli.main``); one module per command."""

from metaanchor.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
