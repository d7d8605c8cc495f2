"""Image reading: any PIL-readable file (grayscale, RGBA, palette, 16-bit) to RGB tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metaanchor.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit images are scaled, not clipped)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((arr / peak * 255).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Open an image file fully as RGB; a missing/corrupt/truncated file is a DataError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"image {path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path}: cannot decode ({str(e).splitlines()[0] if str(e) else 'corrupt'})") from None


def pil_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> [3, H, W] float32 in [0, 1]."""
    arr = np.asarray(to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(image) -> Tensor:
    """A path or PIL image -> [3, H, W] float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return pil_to_tensor(read_image(image))
