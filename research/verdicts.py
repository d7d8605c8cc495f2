"""The rules that turn per-seed AP values into the reports' verdicts (pure functions, tested both ways).

Values are lists over seeds. The noise of a comparison is the sum of the two seed spreads (``report.seed_spread``,
the reports' one spread: half the range over seeds), at least ``TIE``: a difference within it is a tie. A paired
comparison (``paired=True``: ``a[i]`` and ``b[i]`` measure the same trained model of seed i two ways, e.g. with
two anchor sets) takes the seed spread of the differences ``a[i] - b[i]`` instead: the models' own
seed-to-seed variation cancels in each difference.

Two *different* models trained with the same seed share their data order, augmentation and sampled anchors, so
their per-seed differences are often steadier than either model. The suite still compares them unpaired (the
targets are "by more than the seed spread"), decided once for every report rather than per result; the
verdict text then lists the per-seed differences, so a reader sees when a gain within the noise is on every seed.

    compare([0.41, 0.43], [0.35, 0.36])              # 'higher'
    robustness({"1x1": [..], ...}, {"1x1": [..], ...})   # Verdict: is MetaAnchor's spread over sets smaller?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.report import mean_spread

TIE = 0.005  # AP differences below this (or within the seeds' spreads) are called ties
MIN_SEEDS = 3  # a verdict backed by fewer seeds is reported as preliminary
FLOOR = 0.05  # when both sides of a comparison score below this AP, it tests nothing (both models fail)


def held_cell(held: bool, seeds: int, tested: bool = True) -> str:
    """The index's verdict cell: held / not held (or 'untested' for a comparison below the ``FLOOR``), marked
    preliminary below ``MIN_SEEDS`` seeds."""
    word = "held" if held else "not held" if tested else f"untested (both below {FLOOR} AP)"
    return word if seeds >= MIN_SEEDS else f"{word} (preliminary: {seeds} seed{'s' * (seeds != 1)})"


@dataclass(frozen=True)
class Verdict:
    """One claim's outcome: ``held`` (True: target met by more than the noise), the margin (positive: in the
    claim's favour), the noise it was compared with, and one line saying so."""

    held: bool
    margin: float
    noise: float
    text: str
    tested: bool = True  # False: both sides scored below the floor, so the comparison says nothing
    paired: bool = False  # True: the noise is the spread of per-seed differences of the same models
    per_seed: tuple[float, ...] = ()  # unpaired, one value per seed on both sides: a[i] - b[i] (schedule: the gains)


def noise(a: list[float], b: list[float], paired: bool = False) -> float:
    """Sum of the two seed spreads, at least ``TIE``; ``paired``: the seed spread of ``a[i] - b[i]``, at least
    ``TIE``."""
    if not paired:
        return max(TIE, mean_spread(a)[1] + mean_spread(b)[1])
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs one value per seed on both sides, got {len(a)} and {len(b)}")
    return max(TIE, mean_spread([x - y for x, y in zip(a, b)])[1])


def compare(a: list[float], b: list[float], paired: bool = False) -> str:
    """'higher' / 'lower' / 'tied' for the mean of ``a`` against ``b`` (tied: within ``noise``)."""
    d = mean_spread(a)[0] - mean_spread(b)[0]
    if abs(d) <= noise(a, b, paired):
        return "tied"
    return "higher" if d > 0 else "lower"


def _difference(a: list[float], b: list[float], what: str, held: set[str], floor: float = 0.0,
                paired: bool = False) -> Verdict:
    """The mean of ``a`` against ``b``; held when ``compare`` gives one of ``held``. When both means are below
    ``floor`` the comparison tests nothing: not held, and the text says so. Unpaired values of equal length are
    taken as one per seed in the same seed order (every caller's lists are), and their differences are listed."""
    (ma, _), (mb, _) = mean_spread(a), mean_spread(b)
    v, n = compare(a, b, paired), noise(a, b, paired)
    if max(ma, mb) < floor:
        return Verdict(False, ma - mb, n, f"{what}: {ma:.3f} vs {mb:.3f}, Δ {ma - mb:+.3f}; both below {floor} AP, "
                                          f"so this comparison tests nothing (no verdict)", False, paired)
    kind = "the paired noise (spread of the per-seed differences)" if paired else "the noise"
    per_seed = tuple(x - y for x, y in zip(a, b)) if not paired and len(a) == len(b) > 1 else ()
    listed = "; per seed Δ " + ", ".join(f"{x:+.3f}" for x in per_seed) if per_seed else ""
    where = "within" if v == "tied" else "beyond"
    return Verdict(v in held, ma - mb, n, f"{what}: {ma:.3f} vs {mb:.3f}, Δ {ma - mb:+.3f} ({where} {kind} {n:.3f}"
                                          f"{listed})", paired=paired, per_seed=per_seed)


def at_least(a: list[float], b: list[float], what: str, paired: bool = False) -> Verdict:
    """Claim ``a >= b``: held unless ``a`` is lower by more than the noise (e.g. searched vs training set)."""
    return _difference(a, b, what, {"higher", "tied"}, paired=paired)


def better(a: list[float], b: list[float], what: str, floor: float = 0.0, paired: bool = False) -> Verdict:
    """Claim ``a > b`` by more than the noise (e.g. MetaAnchor vs baseline on a poor anchor set); with
    ``floor`` (e.g. ``FLOOR``), a comparison where both score below it is not held and says it tests nothing."""
    return _difference(a, b, what, {"higher"}, floor, paired)


def set_range(per_set: dict[str, list[float]]) -> tuple[float, float]:
    """(max - min over anchor sets of the mean AP, largest seed spread of one set)."""
    means = [mean_spread(v)[0] for v in per_set.values()]
    return float(np.ptp(means)), max(mean_spread(v)[1] for v in per_set.values())


def robustness(meta: dict[str, list[float]], base: dict[str, list[float]]) -> Verdict:
    """Claim: MetaAnchor's AP varies less across anchor sets than the baseline's.

    Held when the baseline's range of mean AP over the sets exceeds MetaAnchor's by more than the noise
    (the two largest per-set seed spreads added, at least ``TIE``): a range is a difference of two means,
    so its noise is of the order of the seed spreads.
    """
    (rm, sm), (rb, sb) = set_range(meta), set_range(base)
    n = max(TIE, sm + sb)
    held = rb - rm > n
    counts = {len(v) for v in (*meta.values(), *base.values())}
    per_seed = ""
    if len(counts) == 1 and counts.pop() > 1:  # one value per seed everywhere: each seed's own range over the sets
        def ranges(per_set):
            return ", ".join(f"{float(np.ptp(x)):.3f}" for x in zip(*per_set.values()))
        per_seed = f"; range per seed: MetaAnchor {ranges(meta)}, baseline {ranges(base)}"
    return Verdict(held, rb - rm, n, f"range of mean AP over {len(meta)} anchor sets: MetaAnchor {rm:.3f}, "
                                     f"baseline {rb:.3f}, Δ {rb - rm:+.3f} (the baseline's minus MetaAnchor's: "
                                     f"MetaAnchor varies {'less' if rb > rm else 'more' if rm > rb else 'as much'}; "
                                     f"{'beyond' if abs(rb - rm) > n else 'within'} the noise {n:.3f}{per_seed})")
