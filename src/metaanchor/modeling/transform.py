"""Image batching inside the model: resize keeping aspect, normalise, pad to a stride."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageBatcher(nn.Module):
    """Turns a list of images into one normalised, padded batch.

    Images are [3, H, W] float in [0, 1] (or uint8 0..255). Each is resized so its
    short side is ``min_size`` unless the long side would exceed ``max_size``,
    normalised, and zero-padded (bottom/right) to a multiple of ``size_divisible``.
    """

    def __init__(self, min_size: int, max_size: int, size_divisible: int = 128,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.min_size, self.max_size, self.size_divisible = min_size, max_size, size_divisible
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def scale_for(self, h: int, w: int) -> float:
        return min(self.min_size / min(h, w), self.max_size / max(h, w))

    def forward(self, images: list[Tensor]) -> tuple[Tensor, list[float], list[tuple[int, int]]]:
        """Returns batch [B, 3, Hp, Wp], per-image (sx, sy) scale factors, and resized (h, w) sizes."""
        resized, scales = [], []
        for img in images:
            img = img.to(self.mean.device)
            img = img.float() / 255.0 if not img.is_floating_point() else img
            h, w = img.shape[-2:]
            s = self.scale_for(h, w)
            if abs(s - 1.0) > 1e-6:
                size = (max(1, round(h * s)), max(1, round(w * s)))
                img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            resized.append((img - self.mean) / self.std)
            scales.append((img.shape[-1] / w, img.shape[-2] / h))
        sizes = [tuple(r.shape[-2:]) for r in resized]
        d = self.size_divisible
        hp = math.ceil(max(s[0] for s in sizes) / d) * d
        wp = math.ceil(max(s[1] for s in sizes) / d) * d
        batch = resized[0].new_zeros(len(resized), 3, hp, wp)
        for i, r in enumerate(resized):
            batch[i, :, : r.shape[1], : r.shape[2]].copy_(r)
        return batch, scales, sizes
