"""Image reading, the one place that decodes image files.

Any PIL-readable file becomes 8-bit RGB: grayscale and palette images are
expanded, alpha is dropped, 16-bit and 32-bit integer images are scaled from
0..65535 (float images are clipped to 0..255). A missing, unreadable, corrupt or
truncated file is a ``DataError`` whose message starts with the file's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from metaanchor.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
# Every way PIL tells us a file is not a (complete) image.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                  Image.DecompressionBombError)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from any PIL mode (16-bit scaled, float clipped, alpha dropped)."""
    if img.mode in _SIXTEEN_BIT or img.mode == "I":
        arr = np.asarray(img).astype(np.float64)
        scale = 255.0 / 65535.0 if img.mode != "I" or arr.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.round(np.nan_to_num(np.asarray(img))), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return np.array(img.convert("RGB"))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB PIL image (see :func:`to_rgb_array`)."""
    if img.mode == "RGB":
        return img
    return Image.fromarray(to_rgb_array(img), "RGB")


def read_rgb_array(path: str | Path) -> np.ndarray:
    """Decode an image file fully to ``[H, W, 3]`` uint8 RGB; ``DataError`` names the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb_array(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except _DECODE_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image (corrupt, truncated or not an image): {detail}") from None


def read_image(path: str | Path) -> Image.Image:
    """Open an image file fully as an RGB PIL image; ``DataError`` names a bad file."""
    return Image.fromarray(read_rgb_array(path), "RGB")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header only; ``DataError`` names the file."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None


def array_to_tensor(arr: np.ndarray) -> Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)


def pil_to_tensor(img: Image.Image) -> Tensor:
    """PIL image (any mode) -> [3, H, W] float32 in [0, 1]."""
    return array_to_tensor(to_rgb_array(img))


def load_image(image) -> Tensor:
    """A path or PIL image -> [3, H, W] float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return array_to_tensor(read_rgb_array(image))
