"""Training augmentations on ``(image, target)`` pairs.

``image`` is a float32 ``[3, H, W]`` tensor in [0, 1]; ``target`` a dict with
``"boxes"`` (``[N, 4]`` float32 x1y1x2y2 pixels) and ``"labels"``. Each
transform returns a new ``(image, target)``; the input target is not modified.
Images arrive already resized to the network's input size (short side
``input.size``); normalisation and padding happen inside the model.

Two kinds:

- ``RandomHorizontalFlip`` / ``PhotometricJitter``: the original hand-written pair
  (``input.hflip``, ``input.photometric``), seeded by an explicit generator; used
  when ``input.augment`` is unset (the synthetic demo).
- :data:`PRESETS` (``input.augment``): torchvision ``transforms.v2`` pipelines on
  ``tv_tensors.BoundingBoxes`` (box-aware), built by :func:`build_preset`; they draw
  from torch's global RNG, so :func:`apply_seeded` forks and seeds it per item.
  Every preset ends with ``ClampBoundingBoxes`` + ``SanitizeBoundingBoxes``: boxes
  stay inside the image and boxes under 1 px (or with no area left) are dropped with
  their labels.

  ``none``: only the clamp and sanitize. ``light``: horizontal flip, colour jitter (brightness,
  contrast, saturation 0.2) and multi-scale training (short side drawn from
  0.8..1.2 x ``input.size`` in steps of 32). ``standard``: torchvision's SSD
  reference recipe (``RandomPhotometricDistort``, ``RandomZoomOut`` up to 2x filled
  with the ImageNet mean, ``RandomIoUCrop``, flip) followed by the RetinaNet
  reference's multi-scale resize (short side 0.75..1.25 x ``input.size``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from metaanchor.errors import ConfigError
from metaanchor.geometry.resize import IMAGENET_MEAN

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


PRESETS = ("none", "light", "standard")
SCALE_STEP = 32  # multi-scale short sides are multiples of this (the padding multiple)


def _short_sides(size: int, lo: float, hi: float) -> list[int]:
    """Short sides for multi-scale training: multiples of SCALE_STEP in [lo * size, hi * size], and ``size``."""
    steps = range(math.ceil(lo * size / SCALE_STEP), math.floor(hi * size / SCALE_STEP) + 1)
    return sorted({size, *(k * SCALE_STEP for k in steps if k > 0)})


def build_preset(name: str, size: int, max_size: int) -> v2.Compose:
    """The ``input.augment`` preset ``name`` for a network input of short side ``size``, long side cap
    ``max_size``; unknown names are a ``ConfigError``. See the module docstring."""
    if name not in PRESETS:
        raise ConfigError(f"config key input.augment: {name!r} is not one of {', '.join(PRESETS)}")
    if name == "none":
        ops = []
    elif name == "light":
        ops = [v2.RandomHorizontalFlip(0.5), v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
               v2.RandomShortestSize(_short_sides(size, 0.8, 1.2), max_size=round(1.2 * max_size))]
    else:
        fill = {tv_tensors.Image: list(IMAGENET_MEAN), "others": 0}
        ops = [v2.RandomPhotometricDistort(p=0.5), v2.RandomZoomOut(fill=fill, side_range=(1.0, 2.0), p=0.5),
               v2.RandomIoUCrop(), v2.RandomHorizontalFlip(0.5),
               v2.RandomShortestSize(_short_sides(size, 0.75, 1.25), max_size=round(1.25 * max_size))]
    return v2.Compose([*ops, v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes()])


def apply_seeded(transform: Callable, seed: int, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """Run a v2 ``transform`` on ``(image [3, H, W] float, target)`` with torch's global RNG seeded by ``seed``
    (forked: the caller's RNG state is untouched). Boxes come back as a plain ``[N, 4]`` float32 tensor."""
    h, w = image.shape[-2:]
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image, out = transform(tv_tensors.Image(image), {**target, "boxes": boxes})
    return image.as_subclass(torch.Tensor), {**out, "boxes": out["boxes"].as_subclass(torch.Tensor)}
