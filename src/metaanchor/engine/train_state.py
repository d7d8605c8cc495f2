"""The counters a training run carries across ``--resume``, checked when read back from a checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metaanchor.errors import CheckpointError


@dataclass
class TrainState:
    """Where a run stands; saved in every training checkpoint beside the weights and the optimizer.

    iteration: iterations done. best_ap / best_iter: the best validation AP so far and its iteration (-1: none
    yet); evals_since_best: evaluations since then (solver.early_stop). skipped: steps skipped as non-finite.
    bad_images: unreadable training images skipped (data.skip_invalid). seconds and devices: training time and
    devices of the earlier parts of a resumed run, so its summary counts them all.
    """

    iteration: int = 0
    best_ap: float = -1.0
    best_iter: int = 0
    evals_since_best: int = 0
    skipped: int = 0
    bad_images: set[str] = field(default_factory=set)
    seconds: float = 0.0
    devices: list[str] = field(default_factory=list)

    def payload(self, seconds: float) -> dict:
        """The checkpoint entries, with ``seconds`` the run's training time so far."""
        return dict(iteration=self.iteration, best_ap=self.best_ap, best_iter=self.best_iter,
                    evals_since_best=self.evals_since_best, skipped=self.skipped,
                    bad_images=sorted(self.bad_images), train_seconds=seconds, devices=self.devices)

    @classmethod
    def from_payload(cls, payload: dict, path: str | Path, max_iter: int) -> TrainState:
        """The state a checkpoint holds; a missing entry or a value of the wrong type or range (e.g. a negative
        or infinite iteration, one past ``max_iter``) is a ``CheckpointError`` naming it."""
        def number(key, kind, low, high=math.inf, default=None):
            value = payload.get(key, default)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and (kind is float or float(value).is_integer()) and low <= value <= high)
            if not ok:
                allowed = f">= {low}" if high == math.inf else f"in {low}..{high}"
                raise CheckpointError(f"checkpoint {path}: training state {key}={value!r} is not "
                                      f"{'an integer' if kind is int else 'a number'} {allowed}")
            return kind(value)

        names, devices = payload.get("bad_images", []), payload.get("devices", [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise CheckpointError(f"checkpoint {path}: training state bad_images is not a list of file names")
        if not (isinstance(devices, list) and all(isinstance(d, str) for d in devices)):
            raise CheckpointError(f"checkpoint {path}: training state devices is not a list of device names")
        iteration = number("iteration", int, 0)
        if iteration > max_iter:
            raise CheckpointError(f"checkpoint {path}: the run is at iteration {iteration}, past solver.max_iter="
                                  f"{max_iter}; resume with solver.max_iter={iteration} or more")
        return cls(iteration=iteration, best_ap=number("best_ap", float, -1.0, 1.0),
                   best_iter=number("best_iter", int, 0, iteration, 0),
                   evals_since_best=number("evals_since_best", int, 0, default=0),
                   skipped=number("skipped", int, 0, iteration, 0), bad_images=set(names),
                   seconds=number("train_seconds", float, 0.0, default=0.0), devices=list(devices))


def optimizer_state_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """What makes a loaded optimizer state unusable (torch checks it only at the next step), or None:
    per-parameter buffers of another shape, hyperparameters that are not finite numbers."""
    for group in optimizer.param_groups:
        for key in ("lr", "momentum", "weight_decay"):
            v = group.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"optimizer param group {key}={v!r:.60} is not a finite number"
        for p in group["params"]:
            for name, v in optimizer.state.get(p, {}).items():
                if not torch.is_tensor(v) and not isinstance(v, (int, float)):
                    return f"optimizer state {name} is a {type(v).__name__}, not a tensor"
                if torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape:
                    return f"optimizer state {name} has shape {tuple(v.shape)}, its parameter {tuple(p.shape)}"
    return None
