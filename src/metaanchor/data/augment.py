"""Training augmentations on ``(image, target)`` pairs.

``image`` is a float32 ``[3, H, W]`` tensor in [0, 1]; ``target`` a dict with
``"boxes"`` (``[N, 4]`` float32 x1y1x2y2 pixels) and ``"labels"``. Each
transform returns a new ``(image, target)``; the input target is not modified.
Resizing, normalisation and batching happen inside the model, not here.
Randomness comes from ``torch``'s global generator unless one is passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

Target = dict
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=generator))


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``; boxes move with it."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target["boxes"]
        flipped = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                              dim=1)
        return F.horizontal_flip(image), {**target, "boxes": flipped}

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PhotometricJitter:
    """Random brightness, contrast and saturation factors in ``[1 - a, 1 + a]``.

    Applied in random order; boxes are unchanged; output is clamped to [0, 1].
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 generator: torch.Generator | None = None):
        for name, amount in (("brightness", brightness), ("contrast", contrast),
                             ("saturation", saturation)):
            if not 0.0 <= amount < 1.0:
                raise ValueError(f"{name} jitter must be in [0, 1), got {amount}")
        self.ops = [(F.adjust_brightness, brightness), (F.adjust_contrast, contrast),
                    (F.adjust_saturation, saturation)]
        self.generator = generator

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for k in torch.randperm(len(self.ops), generator=self.generator).tolist():
            op, amount = self.ops[k]
            if amount > 0:
                image = op(image, _uniform(1 - amount, 1 + amount, self.generator))
        return image.clamp(0.0, 1.0), target

    def __repr__(self) -> str:
        amounts = ", ".join(f"{op.__name__.removeprefix('adjust_')}={a}" for op, a in self.ops)
        return f"PhotometricJitter({amounts})"
