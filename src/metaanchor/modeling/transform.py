"""Image batching inside the model: resize keeping aspect, normalise, pad.

Padding rule: each batch is zero-padded (bottom/right) only to its largest height and
largest width, each rounded up to ``size_divisible`` (:data:`PAD_MULTIPLE` = 32 for both
families). Why 32 is enough for P3-P7: every downsampling layer of our backbones
(3x3 stride-2 convs with padding 1, ResNet's 7x7/pad-3 stem, 3x3/pad-1 max-pool and 1x1
stride-2 shortcuts, LastLevelP6P7's 3x3 stride-2 convs) maps ``n`` pixels to ``ceil(n / 2)``
cells, with cell ``i`` centred on input pixel ``2 i``; chained, the cell ``(i, j)`` of a
stride-``s`` map is centred on pixel ``(s i, s j)``, exactly where ``grid_anchors`` puts its
anchors, for any image size (the FPN's nearest upsampling to the finer map's size maps cell
``i`` to its parent ``i // 2`` for odd sizes too). Padding to 32 (as torchvision does for
RetinaNet) makes C3-C5 tile the batch exactly; P6 and P7 are ``ceil(H / 64)``, ``ceil(H / 128)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metaanchor.geometry.resize import IMAGENET_MEAN, IMAGENET_STD, PAD_MULTIPLE, resized_size

# ``metaanchor``: resize (sides rounded to nearest), then normalise; ``torchvision``: normalise, then resize
# with sides rounded down, as torchvision's GeneralizedRCNNTransform (the same up to float rounding and a pixel)
TRANSFORMS = ("metaanchor", "torchvision")


def floor_resized_size(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h', w') as torchvision's ``GeneralizedRCNNTransform`` resizes: the same scale as
    :func:`resized_size`, each side rounded down (``interpolate(scale_factor=s, recompute_scale_factor=True)``
    floors ``side * s`` in double precision, so 480 x 640 at 800 gives 799 x 1066)."""
    s = min(min_size / min(h, w), max_size / max(h, w))
    return max(1, math.floor(h * s)), max(1, math.floor(w * s))


class ImageBatcher(nn.Module):
    """Turns a list of images into one normalised, padded batch.

    Images are [3, H, W] float in [0, 1] (or uint8 0..255). Each is resized by
    :func:`resized_size` (skipped in training mode when ``resize_in_training`` is False: the data loader
    already did it, possibly at a jittered scale), normalised, and zero-padded to the batch's max height
    and max width rounded up to ``size_divisible``. ``transform="torchvision"`` normalises first and
    resizes by :func:`floor_resized_size`, torchvision's order and rule, to reproduce its inputs exactly.
    """

    def __init__(self, min_size: int, max_size: int, size_divisible: int = PAD_MULTIPLE,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, transform: str = "metaanchor"):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform={transform!r}: choose one of {', '.join(TRANSFORMS)}")
        self.min_size, self.max_size, self.size_divisible = min_size, max_size, size_divisible
        self.normalize_first = transform == "torchvision"
        self.resized_size = floor_resized_size if self.normalize_first else resized_size
        self.resize_in_training = True
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def forward(self, images: list[Tensor]) -> tuple[Tensor, list[float], list[tuple[int, int]]]:
        """Returns batch [B, 3, Hp, Wp], per-image (sx, sy) scale factors, and resized (h, w) sizes."""
        resize = not self.training or self.resize_in_training
        resized, scales = [], []
        for img in images:
            img = img.to(self.mean.device)
            img = img.float() / 255.0 if not img.is_floating_point() else img
            h, w = img.shape[-2:]
            size = self.resized_size(h, w, self.min_size, self.max_size) if resize else (h, w)
            if self.normalize_first:
                img = (img - self.mean) / self.std
            if size != (h, w):
                img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            resized.append(img if self.normalize_first else (img - self.mean) / self.std)
            scales.append((img.shape[-1] / w, img.shape[-2] / h))
        sizes = [tuple(r.shape[-2:]) for r in resized]
        d = self.size_divisible
        hp = math.ceil(max(s[0] for s in sizes) / d) * d
        wp = math.ceil(max(s[1] for s in sizes) / d) * d
        batch = resized[0].new_zeros(len(resized), 3, hp, wp)
        for i, r in enumerate(resized):
            batch[i, :, : r.shape[1], : r.shape[2]].copy_(r)
        return batch, scales, sizes
