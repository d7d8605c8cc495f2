"""The input rule every part shares: resize keeping aspect, pad to a multiple, normalise.

The model's batcher (``modeling.transform``), the data loader (``data.loader``), the
augmentations (``data.augment``) and anchor fitting (``data.box_shapes``) all follow it.
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD_MULTIPLE = 32  # the deepest stride of the backbone body (C5); why it suffices: modeling.transform


def resized_size(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h', w') of an ``h x w`` image resized keeping aspect: short side ``min_size`` unless the long
    side would exceed ``max_size`` (then long side ``max_size``). The one resize rule (batcher and loader)."""
    s = min(min_size / min(h, w), max_size / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))
