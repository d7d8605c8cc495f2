"""The paper's claims at our scale: cached runs, experiments and reports.

``metaanchor experiment NAME|all [--quick]`` runs :data:`metaanchor.tools.experiments.suite.EXPERIMENTS`
and writes ``reports/<name>/`` (README.md, runs.csv, PNG plots) and ``reports/README.md``.
"""

from metaanchor.tools.experiments.runner import FULL, QUICK, Runner, Scale

__all__ = ["FULL", "QUICK", "Runner", "Scale"]
