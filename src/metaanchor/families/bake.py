"""Baking an anchor set: a MetaAnchor detector -> an ordinary predefined-anchor detector.

For a fixed anchor set, the generator's K weight slices stacked are exactly one conv
with K x C (K x 4) outputs (RetinaNet) or K x (5 + C) outputs (YOLOv2). ``bake`` builds
a NEW detector of the same family with ``head="predefined"``, its anchors fixed to that
set and its last convs set to the generated weights; the original is left untouched.

    baked = model.bake("5x5")      # = metaanchor.families.bake.bake(model, "5x5")
    baked.save("baked.pt")         # load_detector() rebuilds it as a predefined model

The baked model gives the same detections as ``model`` with that anchor set (its weights
are the very tensors the generator produces) and has no generator at run time.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from metaanchor.errors import UserError
from metaanchor.geometry.anchors import AnchorSet


def bake(model, anchors: str | AnchorSet):
    """A new predefined-anchor detector equal to ``model`` with ``anchors`` (eval mode, same device).

    ``model`` is a ``BaseDetector`` (RetinaNet or YOLOv2) with a ``metaanchor`` or ``predefined`` head;
    baking a predefined model with anchors of its own count is a copy that uses them.
    Raises ``UserError`` (one line) for a data-dependent generator, an anchor set whose levels
    need different convs, or a predefined model and an anchor set of another count.
    """
    anchors = AnchorSet.parse(anchors)
    if model._bn_folded:
        raise RuntimeError("bake() needs the model before optimize_for_inference(): its BatchNorm is folded")
    if model.head_type == "metaanchor-dd":
        raise UserError("model.head=metaanchor-dd: the data-dependent generator makes the last layer's weights "
                        "from each image, so they cannot be baked into fixed convs; export a model.head="
                        "metaanchor or predefined model")
    codes = anchors.codes(model.standard_sizes)  # per level [K_l, 2]; checks the level count
    if model.head_type == "predefined":
        model.head.set_anchors(codes)  # the anchor-count check only
        baked = copy.deepcopy(model)
        baked.set_anchors(anchors)
    else:
        config = model.config | {"head": "predefined", "anchors": anchors.to_dict(),
                                 "class_names": model.class_names, "category_ids": model.category_ids}
        baked = type(model).from_config(config)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
        with torch.no_grad():
            head = model.head.baked_state(shared_codes(codes, anchors).float())
        baked.load_state_dict(state | {f"head.{k}": v for k, v in head.items()})
    baked.config = baked.config | {"head": "predefined", "anchors": anchors.to_dict()}
    baked.train_anchors = anchors
    baked.score_thresh = model.score_thresh
    return baked.to(next(model.parameters()).device).eval()


def shared_codes(codes: list[Tensor], anchors: AnchorSet) -> Tensor:
    """The one [K, 2] code set all levels share (a predefined head has one last conv for every level).

    Level-relative sets always share it; a per-level set only when each level's pixel sizes are the
    same multiples of that level's standard box."""
    first = codes[0]
    for level, c in enumerate(codes[1:], 1):
        if c.shape != first.shape or not torch.allclose(c, first, rtol=0, atol=1e-6):
            raise UserError(
                f"anchor set {anchors.spec}: level {level} has other anchor shapes (relative to its standard box) "
                "than level 0, but a predefined-anchor head shares one last conv across levels; bake a "
                "level-relative set (a preset, scales=..;ratios=.., or an 'anchors:' file)")
    return first
