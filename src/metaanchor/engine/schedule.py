"""The learning-rate schedule: linear warm-up, then cosine or step decay."""

from __future__ import annotations

import math


def lr_factor(it: int, solver: dict) -> float:
    """Linear warm-up, then cosine or step decay; a function of the iteration only."""
    warm = solver["warmup_iters"]
    f = min(1.0, (it + 1) / warm) if warm > 0 else 1.0
    if solver["schedule"] == "cosine":
        return f * 0.5 * (1 + math.cos(math.pi * it / max(1, solver["max_iter"])))
    return f * 0.1 ** sum(it >= s * solver["max_iter"] for s in solver["steps"])
