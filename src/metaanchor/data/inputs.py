"""One image in any form a user holds it -> the [3, H, W] float tensor in [0, 1] that detectors take.

    to_image_tensor("img.png")                 # a file (EXIF orientation applied)
    to_image_tensor(pil_image)                 # any PIL mode
    to_image_tensor(frame, bgr=True)           # an OpenCV frame: [H, W, 3] uint8, BGR
    to_image_tensor(gray)                      # [H, W] uint8 grayscale
    to_image_tensor(tensor)                    # [3, H, W] float in [0, 1] (as is) or uint8
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from metaanchor.data.io import load_image, pil_to_tensor
from metaanchor.errors import UserError

ARRAY_SHAPES = "[H, W, 3] (RGB, or BGR with bgr=True), [H, W, 4] (alpha dropped) or [H, W] (grayscale)"


def describe(image) -> str:
    """A short name for an input in error messages: the path, or the kind and shape."""
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"a numpy array of shape {tuple(image.shape)} and dtype {image.dtype}"
    if isinstance(image, Tensor):
        return f"a tensor of shape {tuple(image.shape)} and dtype {image.dtype}"
    if isinstance(image, Image.Image):
        return f"a {image.width}x{image.height} PIL image"
    return f"a {type(image).__name__}"


def array_image(arr: np.ndarray, bgr: bool = False) -> Tensor:
    """[H, W, 3|4] or [H, W] array, uint8 (0..255) or float (0..1) -> [3, H, W] float32 in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None].repeat(3, axis=2)
    elif arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UserError(f"image {describe(arr)}: expected {ARRAY_SHAPES}")
    arr = arr[:, :, :3]
    if bgr:
        arr = arr[:, :, ::-1]
    if arr.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 1.0
    else:
        raise UserError(f"image {describe(arr)}: expected uint8 (0..255) or float (0..1) pixels")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. np.asarray(pil_image); torch warns on read-only memory
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(scale)


def tensor_image(t: Tensor) -> Tensor:
    """[3, H, W] (or [1, H, W]) float in [0, 1] (returned as is) or uint8 -> [3, H, W] float in [0, 1]."""
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise UserError(f"image {describe(t)}: expected [3, H, W] (or [1, H, W]) with values in [0, 1]")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise UserError(f"image {describe(t)}: expected float (0..1) or uint8 (0..255) pixels")
    return t


def to_image_tensor(image, bgr: bool = False, max_pixels: int | None = None) -> Tensor:
    """A path, PIL image, numpy array or tensor -> [3, H, W] float32 in [0, 1].

    ``bgr`` applies to numpy arrays only (OpenCV's channel order). Files above ``max_pixels`` are
    refused undecoded (``metaanchor.data.io``); anything else is a ``UserError`` naming the input."""
    if isinstance(image, Tensor):
        return tensor_image(image)
    if isinstance(image, np.ndarray):
        return array_image(image, bgr)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, (str, Path)):
        return load_image(image, max_pixels)
    raise UserError(f"image {describe(image)}: expected a path, a PIL image, a numpy array or a tensor")
