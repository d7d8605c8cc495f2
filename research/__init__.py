"""The paper's claims at our scale: cached runs, experiments and reports, built on the public API of
``metaanchor``.

``python -m research NAME|all [--quick]`` (from the repository root) runs :data:`research.suite.EXPERIMENTS`
and writes ``reports/<name>/`` (README.md, runs.csv, PNG plots) and ``reports/README.md``.
"""

from research.runner import FULL, QUICK, Runner, Scale

__all__ = ["FULL", "QUICK", "Runner", "Scale"]
