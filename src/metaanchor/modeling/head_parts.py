"""Pieces every dense head and its loss use, whichever family: flattening a level's output to
per-anchor rows, checking an anchor set's count against a predefined head, padding targets."""

from __future__ import annotations

import torch
from torch import Tensor

from metaanchor.errors import UserError


def flatten_level(out: Tensor, per_anchor: int) -> Tensor:
    """[B, K*P, H, W] -> [B, H*W*K, P]."""
    return out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, per_anchor)


def check_anchor_count(num_anchors: int, codes: list[Tensor]) -> None:
    """A predefined-anchor head takes only its trained anchor count: per-level codes [K_l, 2] with K_l = K."""
    bad = [len(c) for c in codes if len(c) != num_anchors]
    if bad:
        raise UserError(
            f"the predefined-anchor head was trained with {num_anchors} anchors per position and cannot "
            f"use {bad[0]}; only a MetaAnchor head (model.head=metaanchor) takes new anchor sets"
        )


def pad_targets(targets: list[dict], device) -> tuple[Tensor, Tensor, Tensor]:
    """Pad per-image targets to one batch.

    Returns boxes [B, M, 4], labels [B, M] int64, valid [B, M] bool (M = max boxes).
    """
    m = max([len(t["boxes"]) for t in targets] + [0])
    b = len(targets)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.zeros(b, m, dtype=torch.int64, device=device)
    valid = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = len(t["boxes"])
        boxes[i, :n] = t["boxes"].to(device)
        labels[i, :n] = t["labels"].to(device)
        valid[i, :n] = True
    return boxes, labels, valid
