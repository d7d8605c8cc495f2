"""Deterministic synthetic "shapes" dataset with a controllable box distribution.

Each image is a textured background with 1..N filled shapes (rectangles,
ellipses, triangles, crosses, ...) in saturated colours. The box distribution is
set by :class:`SynthConfig`:

- object size ``s = sqrt(w * h)`` is log-uniform in ``[min_size, max_size]``;
- aspect ratio ``r = h / w`` is log-uniform in ``[min_ratio, max_ratio]``,
  restricted to the ratios at which a box of size ``s`` fits in the image
  (so ``w = s / sqrt(r) <= image_size`` and ``h = s * sqrt(r) <= image_size``);
- the pixel size is then rounded to whole pixels, so measured sizes and ratios
  can differ from the sampled ones by rasterisation (about one pixel per side);
- ``ratio_mode="image"`` makes the ratio range a property of the image: each
  image draws one half of ``[min_ratio, max_ratio]`` (split at the geometric
  mean, e.g. wide 1/4..1 or tall 1..4) for all its objects, so the image tells
  which box shapes it holds (``"object"``, the default: every object draws from
  the whole range).

Occlusion: shapes are drawn in order, later on top. A placement is rejected
(and re-sampled, up to ``_PLACEMENT_TRIES`` times) if it would cover more than
``MAX_OCCLUDED`` of any earlier box's area (summed over all later boxes), so
every object stays at least half visible. When no placement is found the object
is left out, so crowded configs (many large objects) can yield fewer than
``min_objects`` objects; every image has at least one.

Boxes are the amodal tight box of the drawn shape, in x1y1x2y2 pixel
coordinates where pixel ``i`` covers ``[i, i + 1)``; they always lie inside the
image. Everything is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from metaanchor.data.coco_json import write_coco
from metaanchor.errors import UserError
from metaanchor.files import make_folder, write_atomic

SHAPES: tuple[str, ...] = (
    "rectangle", "ellipse", "triangle", "cross", "diamond", "hexagon", "star", "trapezoid",
)
BACKGROUNDS: tuple[str, ...] = ("texture", "plain")
RATIO_MODES: tuple[str, ...] = ("object", "image")
MAX_OCCLUDED = 0.5  # largest fraction of an object's box area that later boxes may cover
_PLACEMENT_TRIES = 30
_MIN_SIDE = 2  # pixels; smallest box side ever drawn
# Upper bounds: an unbounded size would exhaust memory or run (practically) forever.
MAX_IMAGE_SIZE = 4096  # px per side
MAX_OBJECTS = 100  # per image
MAX_SEED = 2**32 - 1
MAX_IMAGES = 1_000_000  # per written dataset


def check_num_images(num_images: int, name: str = "num_images") -> None:
    """``UserError`` unless ``1 <= num_images <= MAX_IMAGES``."""
    if not 1 <= num_images <= MAX_IMAGES:
        raise UserError(f"{name} {num_images}: must be in 1..{MAX_IMAGES}")


@dataclass
class SynthConfig:
    """Parameters of the synthetic shapes dataset (see module docstring)."""

    image_size: int = 128
    num_classes: int = 3
    min_size: float = 16.0
    max_size: float = 64.0
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    min_objects: int = 1
    max_objects: int = 4
    seed: int = 0
    background: str = "texture"
    ratio_mode: str = "object"  # "image": each image's objects share one half of the ratio range

    def __post_init__(self) -> None:
        self.validate()

    @property
    def class_names(self) -> list[str]:
        return list(SHAPES[: self.num_classes])

    def max_feasible_size(self) -> float:
        """Largest object size whose box fits the image at some allowed ratio."""
        s = float(self.image_size)
        return min(self.max_size, s, s / math.sqrt(self.min_ratio), s * math.sqrt(self.max_ratio))

    def validate(self) -> None:
        """Raise ``UserError`` naming the first inconsistent field."""
        checks = [
            (16 <= self.image_size <= MAX_IMAGE_SIZE,
             f"image_size must be in 16..{MAX_IMAGE_SIZE}, got {self.image_size}"),
            (1 <= self.num_classes <= len(SHAPES),
             f"num_classes must be in 1..{len(SHAPES)}, got {self.num_classes}"),
            (0 < self.min_size <= self.max_size,
             f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}"),
            (0 < self.min_ratio <= self.max_ratio,
             f"need 0 < min_ratio <= max_ratio, got {self.min_ratio}, {self.max_ratio}"),
            (1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS,
             f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {self.min_objects}, {self.max_objects}"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}"),
            (self.background in BACKGROUNDS,
             f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}"),
            (self.ratio_mode in RATIO_MODES,
             f"ratio_mode must be one of {', '.join(RATIO_MODES)}, got {self.ratio_mode!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"synthetic dataset config: {message}")
        if self.min_size > self.max_feasible_size():
            raise UserError(
                f"synthetic dataset config: min_size {self.min_size} does not fit a "
                f"{self.image_size} px image at ratios {self.min_ratio}..{self.max_ratio}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"min_size": 12.0, "max_size": 32.0},
    "large": {"min_size": 40.0, "max_size": 110.0},
    "tall": {"min_ratio": 1.5, "max_ratio": 4.0},
    "wide": {"min_ratio": 0.25, "max_ratio": 0.67},
    "mixed": {"min_size": 12.0, "max_size": 110.0, "min_ratio": 0.33, "max_ratio": 3.0},
    "elongated": {"min_ratio": 0.25, "max_ratio": 4.0},  # tall and wide: where the anchor ratios matter
    # box sizes and ratios of the BCCD dataset's training split seen at 128 px (2nd-98th percentile of
    # sqrt(wh) relative to the short side, h/w), several objects per image
    "bccd-like": {"min_size": 10.0, "max_size": 57.0, "min_ratio": 0.6, "max_ratio": 1.5, "min_objects": 3,
                  "max_objects": 8},
    # elongated's ratios, but each image holds only wide (1/4..1) or only tall (1..4) boxes: the image tells
    # the box shapes (data-dependent generator)
    "wide-or-tall": {"min_ratio": 0.25, "max_ratio": 4.0, "ratio_mode": "image"},
}


def _parse_field(key: str, text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(SynthConfig)}
    if key not in fields:
        raise UserError(
            f"synthetic dataset config: unknown key {key!r}; allowed keys: {', '.join(fields)}"
        )
    kind = type(getattr(SynthConfig(), key))
    try:
        value = kind(text)
    except ValueError:
        raise UserError(
            f"synthetic dataset config: bad value {text!r} for {key} (expected {kind.__name__})"
        ) from None
    if kind is float and not math.isfinite(value):
        raise UserError(f"synthetic dataset config: {key}={text} is not a finite number")
    return value


def synth_config(name_or_overrides: str | list[str] | None = None, **kw: Any) -> SynthConfig:
    """Build a :class:`SynthConfig` from preset names and ``KEY=VALUE`` strings.

    ``name_or_overrides`` is a preset name from :data:`DISTRIBUTIONS`, a single
    ``KEY=VALUE`` string, or a list mixing both (applied left to right, so
    ``["small", "max_objects=8"]`` works). Keyword arguments are applied last.
    Raises ``UserError`` naming an unknown preset, key or bad value.
    """
    items = [name_or_overrides] if isinstance(name_or_overrides, str) else list(name_or_overrides or [])
    values: dict[str, Any] = {}
    for item in items:
        if "=" in item:
            key, _, text = item.partition("=")
            values[key.strip()] = _parse_field(key.strip(), text.strip())
        elif item in DISTRIBUTIONS:
            values.update(DISTRIBUTIONS[item])
        else:
            raise UserError(
                f"unknown synthetic distribution {item!r}; allowed: {', '.join(DISTRIBUTIONS)}"
                f" or KEY=VALUE with keys {', '.join(f.name for f in dataclasses.fields(SynthConfig))}"
            )
    for key, value in kw.items():
        values[key] = _parse_field(key, str(value))
    return SynthConfig(**values)


# --------------------------------------------------------------------------- rendering


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _sample_box_size(cfg: SynthConfig, rng: np.random.Generator) -> tuple[int, int]:
    """Sample (w, h) in whole pixels from the configured size/ratio distribution."""
    side = float(cfg.image_size)
    size = _log_uniform(rng, cfg.min_size, cfg.max_feasible_size())
    r_lo = max(cfg.min_ratio, (size / side) ** 2)
    r_hi = min(cfg.max_ratio, (side / size) ** 2)
    ratio = _log_uniform(rng, r_lo, max(r_lo, r_hi))
    w = round(size / math.sqrt(ratio))
    h = round(size * math.sqrt(ratio))
    return min(max(w, _MIN_SIDE), cfg.image_size), min(max(h, _MIN_SIDE), cfg.image_size)


def _background(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """[S, S, 3] uint8: smooth colour noise blended with stripes, or a plain colour."""
    s = cfg.image_size
    base = rng.uniform(40, 215, size=3)
    if cfg.background == "plain":
        return np.broadcast_to(base.astype(np.uint8), (s, s, 3)).copy()
    cells = int(rng.integers(3, 9))
    coarse = (base + rng.normal(0, 35, size=(cells, cells, 3))).clip(0, 255).astype(np.uint8)
    noise = np.asarray(Image.fromarray(coarse).resize((s, s), Image.BILINEAR), dtype=np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 24)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period))
    stripes = wave[..., None] * rng.uniform(5, 30) * rng.choice([-1.0, 1.0], size=3)
    return (noise + stripes).clip(0, 255).astype(np.uint8)


def _shape_points(kind: str, x0: int, y0: int, w: int, h: int) -> list[tuple[float, float]] | None:
    """Polygon vertices filling the box [x0, x0+w) x [y0, y0+h) tightly; None = not a polygon."""
    unit = {
        "triangle": [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)],
        "diamond": [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)],
        "hexagon": [(0.25, 0.0), (0.75, 0.0), (1.0, 0.5), (0.75, 1.0), (0.25, 1.0), (0.0, 0.5)],
        "trapezoid": [(0.25, 0.0), (0.75, 0.0), (1.0, 1.0), (0.0, 1.0)],
        "cross": [(1 / 3, 0), (2 / 3, 0), (2 / 3, 1 / 3), (1, 1 / 3), (1, 2 / 3), (2 / 3, 2 / 3),
                  (2 / 3, 1), (1 / 3, 1), (1 / 3, 2 / 3), (0, 2 / 3), (0, 1 / 3), (1 / 3, 1 / 3)],
    }
    if kind == "star":
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [1.0 if k % 2 == 0 else 0.45 for k in range(10)]
        pts = np.array([(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles)])
        pts = (pts - pts.min(0)) / (pts.max(0) - pts.min(0))
        unit["star"] = [tuple(p) for p in pts]
    if kind not in unit:
        return None
    # Vertices at pixel centres of the extreme pixels: x in [x0, x0 + w - 1].
    return [(x0 + u * (w - 1), y0 + v * (h - 1)) for u, v in unit[kind]]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int],
                colour: tuple[int, int, int]) -> None:
    x0, y0, w, h = box
    inclusive = (x0, y0, x0 + w - 1, y0 + h - 1)  # PIL fills these pixels inclusively
    if kind == "rectangle":
        draw.rectangle(inclusive, fill=colour)
    elif kind == "ellipse":
        draw.ellipse(inclusive, fill=colour)
    else:
        draw.polygon(_shape_points(kind, x0, y0, w, h), fill=colour)


def _place_objects(cfg: SynthConfig, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, w, h) respecting the occlusion rule, in drawing order."""
    if cfg.ratio_mode == "image":  # one half of the log-ratio range for the whole image
        mid = math.sqrt(cfg.min_ratio * cfg.max_ratio)
        lo, hi = ((cfg.min_ratio, mid), (mid, cfg.max_ratio))[int(rng.integers(2))]
        cfg = dataclasses.replace(cfg, min_ratio=lo, max_ratio=hi)
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    boxes: list[tuple[int, int, int, int]] = []
    covered: list[float] = []  # area of each box covered by later boxes
    for _ in range(count):
        for _try in range(_PLACEMENT_TRIES):
            w, h = _sample_box_size(cfg, rng)
            x0 = int(rng.integers(0, cfg.image_size - w + 1))
            y0 = int(rng.integers(0, cfg.image_size - h + 1))
            inter = [_overlap((x0, y0, w, h), b) for b in boxes]
            if all(c + i <= MAX_OCCLUDED * b[2] * b[3] for c, i, b in zip(covered, inter, boxes)):
                covered = [c + i for c, i in zip(covered, inter)] + [0.0]
                boxes.append((x0, y0, w, h))
                break
    return boxes


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(iw, 0) * max(ih, 0))


def _colour(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.65, 1.0), rng.uniform(0.55, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def render_sample(cfg: SynthConfig, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Render image ``index`` of the dataset defined by ``cfg``.

    Returns ``(image, boxes, labels)``: an RGB PIL image of ``image_size`` px,
    ``[N, 4]`` float32 boxes in x1y1x2y2 pixels and ``[N]`` int64 labels in
    ``0..num_classes-1``. Depends only on ``(cfg, index)``.
    """
    rng = np.random.default_rng([cfg.seed, index])
    image = Image.fromarray(_background(cfg, rng), "RGB")
    draw = ImageDraw.Draw(image)
    placed = _place_objects(cfg, rng)
    labels = rng.integers(0, cfg.num_classes, size=len(placed)).astype(np.int64)
    hue0 = rng.uniform()
    for k, (box, label) in enumerate(zip(placed, labels)):
        _draw_shape(draw, SHAPES[label], box, _colour(rng, hue0 + k * 0.618034))
    boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in placed], dtype=np.float32)
    return image, boxes.reshape(-1, 4), labels


# --------------------------------------------------------------------------- dataset / writer


class SynthDataset(torch.utils.data.Dataset):
    """On-the-fly synthetic dataset with the same item contract as ``CocoDataset``.

    Item ``i`` is ``(image, target)``: image float32 ``[3, S, S]`` in [0, 1];
    target ``{"boxes": [N, 4] float32 xyxy px, "labels": [N] int64,
    "image_id": i + 1}`` (image ids match :func:`write_synth_dataset`).
    """

    def __init__(self, num_images: int, cfg: SynthConfig | None = None, transforms=None):
        if num_images < 1:
            raise UserError(f"synthetic dataset needs at least 1 image, got {num_images}")
        self.num_images = int(num_images)
        self.cfg = cfg if cfg is not None else SynthConfig()
        self.class_names = self.cfg.class_names
        self.transforms = transforms

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        image, boxes, labels = render_sample(self.cfg, index)
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                  "image_id": index + 1}
        if self.transforms is not None:
            tensor, target = self.transforms(tensor, target)
        return tensor, target


def synth_coco_dict(num_images: int, cfg: SynthConfig, progress: bool = False,
                    image_dir: Path | None = None) -> dict[str, Any]:
    """COCO dict for images ``0..num_images-1``; writes PNGs into ``image_dir`` (atomically) if given."""
    from tqdm import tqdm

    images, annotations = [], []
    # disable=None: no bar when stderr is not a terminal (a log file gets no redraws)
    for index in tqdm(range(num_images), desc="synth", disable=None if progress else True, unit="img"):
        image, boxes, labels = render_sample(cfg, index)
        name = f"{index:06d}.png"
        if image_dir is not None:
            write_atomic(image_dir / name, lambda f, image=image: image.save(f, format="PNG", compress_level=1))
        images.append({"id": index + 1, "file_name": name,
                       "width": cfg.image_size, "height": cfg.image_size})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"}
                  for k, n in enumerate(cfg.class_names)]
    return {"info": {"description": "metaanchor synthetic shapes", "synth_config": cfg.to_dict()},
            "images": images, "annotations": annotations, "categories": categories}


def write_synth_dataset(out_dir: str | os.PathLike, num_images: int, cfg: SynthConfig | None = None,
                        progress: bool = True) -> Path:
    """Write ``out_dir/images/000000.png ...`` and ``out_dir/annotations.json``.

    Image ``k`` has COCO id ``k + 1``; category ids are ``1..num_classes``; the
    config is stored under ``info.synth_config``. Returns ``out_dir``.
    """
    if num_images < 1:
        raise UserError(f"synthetic dataset needs at least 1 image, got {num_images}")
    check_num_images(num_images)
    cfg = cfg if cfg is not None else SynthConfig()
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise UserError(f"{out}: cannot create dataset folder: exists and is not a folder")
    created = not os.path.lexists(out)
    fresh = []  # the images this call adds, removed again when a write fails
    try:
        make_folder(out / "images", out)  # never through a symlink to elsewhere
        names = [out / "images" / f"{index:06d}.png" for index in range(num_images)]
        fresh = [p for p in names if not os.path.lexists(p)]
        coco = synth_coco_dict(num_images, cfg, progress=progress, image_dir=out / "images")
        write_coco(coco, out / "annotations.json")
    except BaseException:  # a failed write leaves no part of a dataset behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        for p in fresh:
            p.unlink(missing_ok=True)
        raise
    return out
