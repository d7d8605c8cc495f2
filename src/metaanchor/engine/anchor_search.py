"""Searching anchor sets with a trained MetaAnchor model (``metaanchor anchors search``).

:func:`search_anchors`: greedy or random search over scales and ratios with
any scoring function (AP of a trained MetaAnchor model on a validation split;
no retraining), returning every set tried and the best one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metaanchor.errors import UserError
from metaanchor.geometry.anchors import AnchorSet, preset_ratios, preset_scales


def spec_of(scales, ratios) -> str:
    """``scales=..;ratios=..`` SPEC string (4 significant digits)."""
    return "scales=" + ",".join(f"{s:.4g}" for s in scales) + ";ratios=" + ",".join(f"{r:.4g}" for r in ratios)


@dataclass
class SearchResult:
    """Every set tried, in order, as (spec, score); ``best`` is the highest score."""

    tried: list[tuple[str, float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[str, float]:
        return max(self.tried, key=lambda t: t[1])


def _neighbours(scales: tuple, ratios: tuple, step: float) -> list[tuple[tuple, tuple]]:
    """Moves of the greedy search: scale/ratio x 2^(+-step), add or drop one of each."""
    out = []
    for i in range(len(scales)):
        for d in (-step, step):
            out.append((tuple(sorted(scales[:i] + (scales[i] * 2 ** d,) + scales[i + 1:])), ratios))
    for i in range(len(ratios)):
        for d in (-2 * step, 2 * step):
            out.append((scales, tuple(sorted(ratios[:i] + (ratios[i] * 2 ** d,) + ratios[i + 1:]))))
    grow = 2 ** (2 * step)
    out += [(tuple(sorted(scales + (x,))), ratios) for x in (min(scales) / grow, max(scales) * grow)]
    out += [(scales, tuple(sorted(ratios + (x,)))) for x in (min(ratios) / grow ** 2, max(ratios) * grow ** 2)]
    if len(scales) > 1:
        out += [(scales[:i] + scales[i + 1:], ratios) for i in range(len(scales))]
    if len(ratios) > 1:
        out += [(scales, ratios[:i] + ratios[i + 1:]) for i in range(len(ratios))]
    return out


def check_classes(model, data, checkpoint) -> None:
    """The validation split (a ``CocoDataset``) must have the checkpoint's class count: AP matches classes
    by position, as ``metaanchor eval`` does; a ``UserError`` naming both otherwise."""
    if len(data.cat_ids) != model.num_classes:
        raise UserError(f"{data.ann_file}: has {len(data.cat_ids)} categories but checkpoint {checkpoint} "
                        f"was trained for {model.num_classes} ({', '.join(model.class_names)})")


MAX_SEARCH_ANCHORS = 25  # largest set (scales x ratios) the search scores


def search_anchors(score: Callable[[str], float], init_scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
                   init_ratios=(0.5, 1.0, 2.0), method: str = "greedy", budget: int = 20, seed: int = 0,
                   step: float = 0.25, max_anchors: int = MAX_SEARCH_ANCHORS, candidates: list[tuple] = (),
                   log: Callable[[str], None] | None = None) -> SearchResult:
    """Search anchor sets (scales x ratios, level-relative) maximising ``score(spec)``.

    ``greedy``: start from the initial set, try its neighbours (each scale or ratio
    moved by 2^(+-step) in log space, one added or dropped) and move to the best
    improving one, until no move improves or ``budget`` sets were scored.
    ``random``: the initial set plus ``budget - 1`` random sets (1-5 scales in
    [0.35, 4], 1-5 ratios in [1/5, 5], log-uniform). Sets already scored are not
    scored again; sets with more than ``max_anchors`` anchors are skipped. ``candidates``
    ((scales, ratios) pairs, e.g. presets) are scored right after the initial set, and the
    greedy search starts from the best of them all (so a bad initial set does not trap it).
    A score of None (AP undefined: no ground truth) counts as -inf.
    """
    if method not in ("greedy", "random"):
        raise UserError(f"search method {method!r}: choose greedy or random")
    if budget < 1:
        raise UserError(f"search budget {budget}: must be at least 1")
    if len(init_scales) * len(init_ratios) > max_anchors:
        raise UserError(f"initial set: {len(init_scales)} scales x {len(init_ratios)} ratios = "
                        f"{len(init_scales) * len(init_ratios)} anchors, more than the search allows ({max_anchors})")
    result, seen = SearchResult(), {}

    def try_set(scales, ratios) -> float | None:
        spec = spec_of(scales, ratios)
        if spec in seen or len(scales) * len(ratios) > max_anchors or len(result.tried) >= budget:
            return seen.get(spec)
        value = score(spec)
        seen[spec] = float("-inf") if value is None else float(value)
        result.tried.append((spec, seen[spec]))
        if log:
            log(f"[{len(result.tried):>3}/{budget}] {seen[spec]:.4f}  {spec}")
        return seen[spec]

    cur = (tuple(sorted(init_scales)), tuple(sorted(init_ratios)))
    cur_score = try_set(*cur)
    for c in candidates:
        c = (tuple(sorted(c[0])), tuple(sorted(c[1])))
        v = try_set(*c)
        if v is not None and v > cur_score:
            cur, cur_score = c, v
    if method == "random":
        rng = np.random.default_rng(seed)
        while len(result.tried) < budget:
            s = tuple(sorted(np.exp(rng.uniform(math.log(0.35), math.log(4), rng.integers(1, 6)))))
            r = tuple(sorted(np.exp(rng.uniform(math.log(0.2), math.log(5), rng.integers(1, 6)))))
            try_set(s, r)
        return result
    while len(result.tried) < budget:
        scored = [(try_set(*n), n) for n in _neighbours(*cur, step)]
        scored = [(v, n) for v, n in scored if v is not None]
        if not scored or max(scored)[0] <= cur_score:
            break
        cur_score, cur = max(scored)
    return result


def preset_candidates(specs=("1x1", "1x3", "2x3", "3x3")) -> list[tuple[tuple, tuple]]:
    """(scales, ratios) of preset SPECs, as ``candidates`` of :func:`search_anchors`."""
    out = []
    for spec in specs:
        s, r = (int(x) for x in spec.split("x"))
        out.append((tuple(preset_scales(s)), tuple(preset_ratios(r))))
    return out


def scales_ratios_of(anchors: str | AnchorSet) -> tuple[tuple, tuple]:
    """Best-effort (scales, ratios) of a level-relative set, to start a greedy search from."""
    aset = AnchorSet.parse(anchors)
    shapes = aset.shapes or aset.per_level[0]
    scales = sorted({round(math.sqrt(h * w), 4) for h, w in shapes})
    ratios = sorted({round(h / w, 4) for h, w in shapes})
    return tuple(scales), tuple(ratios)
