"""Image reading, the one place that decodes image files.

Any PIL-readable file becomes 8-bit RGB: grayscale and palette images are
expanded, alpha is dropped, 16-bit and 32-bit integer images are scaled from
0..65535 (float images are clipped to 0..255). A missing, unreadable, corrupt or
truncated file is a ``DataError`` whose message starts with the file's path.

EXIF orientation (phone photos) is applied everywhere: decoded pixels
(``ImageOps.exif_transpose``) and :func:`image_size` (header only) both give the
image as displayed, so annotation sizes, boxes and pixels agree.

Training reads each image straight at the network's input size
(``read_rgb_array(..., size=(w, h))``): JPEGs are decoded at a reduced scale
(PIL ``draft``) and resized as 8-bit, never as a full-resolution float copy.

Decompression bombs: the pixel count is checked from the header, before any
decoding, against ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`, or the
environment variable ``METAANCHOR_MAX_IMAGE_PIXELS``; config key
``data.max_image_pixels`` for training).

Paths from dataset records go through :func:`path_inside`, the one check that a
record's ``file_name`` stays inside its folder (readers and writers alike);
:func:`output_path` derives a writer's label or XML path from it the same way.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from metaanchor.errors import DataError, first_line
from metaanchor.readers import env_int, open_regular

MAX_IMAGE_PIXELS = 50_000_000  # default cap on width * height of any decoded image (50 MP, 150 MB as RGB)
MAX_IMAGE_PIXELS_LIMIT = 1_000_000_000  # the largest cap a user may set
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
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


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` cannot be a relative file path inside a folder (lexically), or None if it can.

    Rejects NUL bytes, absolute paths (``/x``, ``\\x``, ``C:x``), any ``..`` component
    (with ``/`` or ``\\`` separators) and names whose last component is empty or ``.``.
    """
    if "\x00" in name:
        return "contains a NUL character"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "goes up with '..'"
    if parts[-1] in ("", "."):
        return "does not name a file"
    return None


def path_inside(root: str | Path, name: str, what: str) -> Path:
    """``root / name``, checked to stay inside ``root``; else ``DataError`` starting with ``what``.

    The name must pass :func:`unsafe_name_reason` and, with symlinks resolved,
    must still lie inside ``root`` (so neither ``../x``, ``/x`` nor a symlink
    pointing elsewhere can make a reader or writer leave the folder).
    """
    root = Path(root)
    reason = unsafe_name_reason(name)
    if reason is None:
        try:
            real, real_root = (root / name).resolve(), root.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops, too-long names
            reason = f"cannot be resolved ({exc})"
        else:
            if not real.is_relative_to(real_root):
                reason = f"resolves to {real}, outside {root}"
    if reason is not None:
        raise DataError(f"{what}: file_name {name!r} {reason}; file paths must stay inside their folder")
    return root / name


def output_path(root: Path, file_name: str, suffix: str, what: str) -> Path:
    """``root / file_name`` with its suffix replaced by ``suffix`` (a label or XML file for an image record).

    Both the record's name and the derived one must pass :func:`path_inside`.
    """
    path_inside(root, file_name, what)
    return path_inside(root, Path(file_name).with_suffix(suffix).as_posix(), what)


def default_max_pixels() -> int:
    """The pixel cap: ``METAANCHOR_MAX_IMAGE_PIXELS`` if set, else :data:`MAX_IMAGE_PIXELS`."""
    return env_int("METAANCHOR_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_LIMIT)


def _open_header(path) -> Image.Image:
    """``Image.open`` (header only, nothing decoded) without PIL's DecompressionBombWarning:
    our own cap (``_check_pixels``) replaces it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _open_image_file(path):
    """``path`` opened for reading if it is a regular file (a FIFO named ``x.png`` would block PIL
    forever); ``DataError`` for anything else, OSErrors (not found, ...) pass through."""
    return open_regular(path, str(path), DataError, what="an image file")


def _check_pixels(img: Image.Image, path, max_pixels: int | None) -> None:
    cap = default_max_pixels() if max_pixels is None else max_pixels
    w, h = img.size
    if w * h > cap:
        raise DataError(f"{path}: image is {w}x{h} ({w * h / 1e6:.1f} MP), above the {cap / 1e6:.1f} MP limit; "
                        "raise it with data.max_image_pixels=N (train) or the environment variable "
                        "METAANCHOR_MAX_IMAGE_PIXELS=N")


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as displayed, i.e. after its EXIF orientation (header only)."""
    w, h = img.size
    return (h, w) if exif_orientation(img) in _TRANSPOSED else (w, h)


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8; 1 = as stored) of an opened image; 1 if absent or unreadable."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # a PNG's eXIf chunk after the pixels would need decoding them; the header has none
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:  # a broken EXIF block: show the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode(img: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    """Decode an opened image to [H, W, 3] uint8 RGB, EXIF-oriented, resized to ``size`` = (w, h) if given."""
    if size is not None and img.format == "JPEG":
        w, h = size if exif_orientation(img) not in _TRANSPOSED else size[::-1]
        img.draft("RGB", (w, h))  # JPEG DCT scaling: decode at 1/2, 1/4, 1/8 scale, still >= (w, h)
    img.load()
    img = ImageOps.exif_transpose(img)
    if size is None or img.size == tuple(size):
        return to_rgb_array(img)
    return np.array(to_rgb(img).resize(tuple(size), Image.Resampling.BILINEAR, reducing_gap=2.0))


def _decode_error(path, exc: BaseException) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: image file not found")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a folder, not an image file")
    detail = first_line(exc)
    return DataError(f"{path}: cannot read image (corrupt, truncated or not an image): {detail}")


def read_rgb_array(path: str | Path, max_pixels: int | None = None,
                   size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to ``[H, W, 3]`` uint8 RGB as displayed (EXIF orientation applied).

    ``size`` = (width, height) resizes it (bilinear, antialiased, on 8-bit pixels; JPEGs
    are decoded at reduced scale first). Images above ``max_pixels`` (default
    :func:`default_max_pixels`) are refused from their header, before decoding.
    ``DataError`` names a bad file.
    """
    try:
        with _open_image_file(path) as f, _open_header(f) as img:
            _check_pixels(img, path, max_pixels)
            return _decode(img, size)
    except _DECODE_ERRORS as exc:
        raise _decode_error(path, exc) from None


def read_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open an image file fully as an RGB PIL image; ``DataError`` names a bad file."""
    return Image.fromarray(read_rgb_array(path, max_pixels), "RGB")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header only; ``DataError`` names the file."""
    try:
        with _open_image_file(path) as f, _open_header(f) as img:
            return oriented_size(img)
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
    """PIL image (any mode) -> [3, H, W] float32 in [0, 1], EXIF orientation applied."""
    return array_to_tensor(to_rgb_array(ImageOps.exif_transpose(img)))


def load_image(image, max_pixels: int | None = None) -> Tensor:
    """A path or PIL image -> [3, H, W] float32 in [0, 1] (files above ``max_pixels`` refused undecoded)."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    return array_to_tensor(read_rgb_array(image, max_pixels))
