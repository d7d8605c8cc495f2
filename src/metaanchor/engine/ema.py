"""Exponential moving average (EMA) of a model's weights, as timm's ``ModelEmaV2`` / ultralytics' ``ModelEMA``.

After every optimiser step, every floating-point parameter and buffer (BatchNorm running
statistics included) of the copy moves towards the trained model's::

    ema = d * ema + (1 - d) * weights,    d = decay * (1 - exp(-updates / tau))

The warm-up factor (ultralytics' ``tau``) keeps ``d`` small early on, so the average does not
remember the random initialisation; after a few ``tau`` updates ``d`` is ``decay``. Integer
buffers (BatchNorm's ``num_batches_tracked``) are copied. Config: ``solver.ema`` (decay, 0 = off)
and ``solver.ema_tau``.

Checkpoints of an EMA run (``engine.train``) hold the EMA weights under ``model`` (what
``load_detector``, ``eval``, ``predict`` and ``export`` use), the trained weights under
``train_model`` and the update count under ``ema_updates`` (what ``--resume`` needs to continue
exactly), and ``weights: "ema"``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """An EMA copy ``module`` (eval mode, no gradients) of ``model``; call ``update(model)`` after each step."""

    def __init__(self, model: nn.Module, decay: float, tau: float = 2000.0, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay!r} must be in (0, 1)")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def decay_at(self, updates: int) -> float:
        """The decay used by update number ``updates`` (1-based): ``decay * (1 - exp(-updates / tau))``."""
        return self.decay * (1.0 - math.exp(-updates / self.tau)) if self.tau > 0 else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current parameters and buffers."""
        self.updates += 1
        d = self.decay_at(self.updates)
        ema, current = self.module.state_dict(), model.state_dict()
        for name, e in ema.items():
            m = current[name].detach()
            if e.is_floating_point():
                e.lerp_(m.to(e.dtype), 1.0 - d)
            else:
                e.copy_(m)

    def state_dict(self) -> dict:
        return self.module.state_dict()
