"""Report writing: Markdown tables with mean and spread over seeds, CSV of every run, PNG plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The one spread of the reports: every "±", every error bar and every seed noise is ``seed_spread``.
SPREAD = "half-range"
SPREAD_DEF = "half the range over seeds, (max − min) / 2"


def seed_spread(values: list[float]) -> float:
    """The reports' spread of a value over seeds: half the range, (max - min) / 2 (0 for one value, NaN for none;
    None and NaN values are left out). With 3 seeds it is what a reader can check by eye: the seeds lie within
    mean ± spread of the midpoint."""
    v = _defined(values)
    return (max(v) - min(v)) / 2 if v else float("nan")


def _defined(values: list[float]) -> list[float]:
    return [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and ``seed_spread`` over seeds; (NaN, NaN) when no value is defined."""
    v = _defined(values)
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), seed_spread(v)


def fmt(values: list[float], digits: int = 3) -> str:
    """``0.412 ± 0.013`` (mean ± ``seed_spread``) or ``0.412`` for one value; ``n/a`` when none is defined."""
    m, s = mean_spread(values)
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f}" if len(values) < 2 else f"{m:.{digits}f} ± {s:.{digits}f}"


def group(rows: list[dict], keys: tuple[str, ...], metric: str = "AP") -> dict[tuple, list[float]]:
    """Metric values of ``rows`` grouped by the values of ``keys`` (insertion order kept)."""
    out: dict[tuple, list[float]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r[metric])
    return out


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> Path:
    """Every run (one row per seed and evaluation), all columns."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in r.items()})
    return Path(path)


def bar_plot(groups: dict[str, dict[str, list[float]]], path: Path, title: str, ylabel: str = "AP") -> Path:
    """Grouped bars with error bars (``seed_spread``): ``groups[x_label][series] = values over seeds``."""
    xs = list(groups)
    series = []
    for g in groups.values():
        series += [s for s in g if s not in series]
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(xs) * max(1, len(series)) / 2 + 2), 3.8))
    for i, s in enumerate(series):
        stats = [mean_spread(groups[x].get(s, [])) for x in xs]
        pos = np.arange(len(xs)) + (i - (len(series) - 1) / 2) * width
        ax.bar(pos, [m for m, _ in stats], width, yerr=[e for _, e in stats], capsize=3, label=s)
    ax.set_xticks(np.arange(len(xs)))
    ax.set_xticklabels([_short(x) for x in xs], rotation=15 if len(xs) > 4 else 0, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend
    ax.legend(fontsize=8, ncol=min(4, len(series)), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], path: Path, title: str,
            xlabel: str = "evaluated with", ylabel: str = "trained with") -> Path:
    """Annotated heat map of ``matrix`` [len(rows), len(cols)]."""
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.5, 0.7 * len(rows) + 2))
    im = ax.imshow(matrix, cmap="viridis")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not math.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([_short(c) for c in cols], rotation=20, fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_short(r) for r in rows], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def line_plot(curves: dict[str, list[float]], path: Path, title: str, xlabel: str, ylabel: str = "AP") -> Path:
    """One line per curve (e.g. search progress: best score so far vs sets tried)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker=".", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def curves_plot(curves: dict[str, list[list[tuple[int, float]]]], path: Path, title: str,
                tail: float = 0.2) -> Path:
    """Validation AP against iteration, one line per run, one colour per group: ``curves[group] = [curve per
    run]``, each curve (iteration, AP) pairs; the last ``tail`` of the iterations (the plateau rule's
    window) shaded."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    end = 0
    for i, (name, runs) in enumerate(curves.items()):
        for j, c in enumerate(r for r in runs if r):
            ax.plot([x for x, _ in c], [y for _, y in c], color=f"C{i % 10}", alpha=0.75, lw=1.2,
                    label=name if j == 0 else None)
            end = max(end, c[-1][0])
    if end:
        ax.axvspan((1 - tail) * end, end, color="grey", alpha=0.12, label=f"last {tail:.0%}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation AP")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def shift_plot(series: dict[str, list[tuple[float, list[float]]]], path: Path, title: str,
               xlabel: str = "shift (octaves)") -> Path:
    """AP against a shift, one line per series (mean over seeds, error bars ``seed_spread``):
    ``series[name] = [(x, values over seeds)]``. Names "A, B" share A's colour and B's line style."""
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    colours, styles = {}, {}
    for name, pts in series.items():
        a, _, b = name.partition(", ")
        c = colours.setdefault(a, f"C{len(colours) % 10}")
        ls = styles.setdefault(b, ("-", "--", ":", "-.")[len(styles) % 4])
        stats = [mean_spread(v) for _, v in pts]
        ax.errorbar([x for x, _ in pts], [m for m, _ in stats], yerr=[e for _, e in stats], color=c, ls=ls,
                    marker=".", capsize=2, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AP")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _short(label: str, n: int = 26) -> str:
    label = str(label)
    return label if len(label) <= n else label[: n - 1] + "…"


def write_readme(out_dir: Path, title: str, sections: list[str]) -> Path:
    path = Path(out_dir) / "README.md"
    path.write_text(f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n")
    return path
