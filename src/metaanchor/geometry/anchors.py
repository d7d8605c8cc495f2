"""Anchor sets: parsing, the MetaAnchor box encoding, and grid anchors.

An ``AnchorSet`` is a list of anchor shapes (h, w). Shapes are either
*level-relative* (multiples of each pyramid level's standard box, the same for
every level) or *per-level* (pixel sizes given for each level). Each level's
standard box is square with side ``base * stride`` (RetinaNet: 4 x stride, i.e.
32, 64, 128, 256, 512 pixels for P3..P7).

MetaAnchor encodes an anchor of height ah and width aw at a level whose standard
box is (AH, AW) as ``b = (log(ah / AH), log(aw / AW))`` (``AnchorSet.codes``).

SPEC strings (CLI and API accept the same):
    "3x3"                              preset: 3 scales x 3 ratios
    "scales=1,1.26,1.59;ratios=0.5,1,2"
    "path/to/anchors.yaml" or ".json"   {"anchors": [[h, w], ...]} level-relative, or
                                        {"levels": [[[h, w], ...], ...]} pixels per level
Aspect ratio is h / w (torchvision's convention).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metaanchor.errors import AnchorSpecError
from metaanchor.readers import read_json_file, read_yaml_file

# Each pyramid level's standard box is square with side ANCHOR_BASE * stride (RetinaNet: 32..512 for P3..P7).
PYRAMID_STRIDES = (8, 16, 32, 64, 128)  # P3..P7 of the feature pyramid (RetinaNet)
ANCHOR_BASE = 4.0
# Ratio presets for the common SxR forms; other R use geometric spacing in [0.5, 2].
RATIO_PRESETS = {1: [1.0], 3: [0.5, 1.0, 2.0], 5: [1 / 3, 0.5, 1.0, 2.0, 3.0]}
MAX_PRESET = 16
# Size bounds for every SPEC form (presets, scales/ratios, files, API): anchors per position and levels
# (one head conv has K x C channels), and the size of an anchor file read into memory.
MAX_ANCHORS = 64
MAX_LEVELS = 16
MAX_FILE_BYTES = 1_000_000
# Scales, ratios and shapes outside this range overflow float32 anchor sizes or their log codes.
VALUE_RANGE = (1e-6, 1e6)


def standard_sizes(strides, base: float = ANCHOR_BASE) -> list[float]:
    """Standard box side of each pyramid level, in pixels: ``base * stride``."""
    return [base * s for s in strides]


def preset_scales(num: int) -> list[float]:
    """RetinaNet-style octave scales 2^(i/num), i = 0..num-1."""
    return [2.0 ** (i / num) for i in range(num)]


def preset_ratios(num: int) -> list[float]:
    """Aspect ratios (h/w) for an ``SxR`` preset with R = ``num``."""
    if num in RATIO_PRESETS:
        return list(RATIO_PRESETS[num])
    return [2.0 ** (-1 + 2 * i / (num - 1)) for i in range(num)]


def shapes_from_scales_ratios(scales: list[float], ratios: list[float]) -> list[tuple[float, float]]:
    """(h, w) shapes, ratio-major then scale (torchvision's anchor order)."""
    return [(s * math.sqrt(r), s / math.sqrt(r)) for r in ratios for s in scales]


def _number(text: str, spec: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnchorSpecError(f"anchor SPEC {spec!r}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise AnchorSpecError(f"anchor SPEC {spec!r}: {what} {text.strip()!r} must be a positive finite number")
    if not VALUE_RANGE[0] <= value <= VALUE_RANGE[1]:
        raise AnchorSpecError(f"anchor SPEC {spec!r}: {what} {text.strip()!r} is outside "
                              f"{VALUE_RANGE[0]:g}..{VALUE_RANGE[1]:g}")
    return value


def _number_list(text: str, spec: str, what: str) -> list[float]:
    parts = [p for p in text.split(",")]
    if not text.strip() or any(not p.strip() for p in parts):
        raise AnchorSpecError(f"anchor SPEC {spec!r}: {what} list {text!r} is empty or has an empty item")
    return [_number(p, spec, what[:-1]) for p in parts]


def _check_count(n: int, where: str) -> None:
    if n > MAX_ANCHORS:
        raise AnchorSpecError(f"{where}: {n} anchors per position; at most {MAX_ANCHORS}")


def _check_num_levels(n: int, where: str) -> None:
    if n > MAX_LEVELS:
        raise AnchorSpecError(f"{where}: {n} levels; at most {MAX_LEVELS}")


def _check_product(spec: str, num_scales: int, num_ratios: int) -> None:
    n = num_scales * num_ratios
    if n > MAX_ANCHORS:
        raise AnchorSpecError(f"anchor SPEC {spec!r}: {num_scales} scales x {num_ratios} ratios = {n} anchors "
                              f"per position; at most {MAX_ANCHORS}")


def _check_shapes(shapes, where: str) -> list[tuple[float, float]]:
    if not isinstance(shapes, (list, tuple)) or len(shapes) == 0:
        raise AnchorSpecError(f"{where}: expected a non-empty list of [h, w] pairs, got {shapes!r}")
    _check_count(len(shapes), where)
    out = []
    for i, pair in enumerate(shapes):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise AnchorSpecError(f"{where}: item {i} must be an [h, w] pair, got {pair!r}")
        for name, v in zip(("h", "w"), pair):
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                  and (isinstance(v, int) or math.isfinite(v)))
            if not ok:
                raise AnchorSpecError(f"{where}: item {i} {name}={v!r} must be a positive finite number")
            if not VALUE_RANGE[0] <= v <= VALUE_RANGE[1]:
                raise AnchorSpecError(f"{where}: item {i} {name}={v!r} is outside "
                                      f"{VALUE_RANGE[0]:g}..{VALUE_RANGE[1]:g}")
        out.append((float(pair[0]), float(pair[1])))
    return out


class AnchorSet:
    """A set of anchor shapes, level-relative or per level.

    Args:
        shapes: level-relative (h, w) multiples of the standard box, or None.
        per_level: per-level pixel (h, w) lists, P3 first, or None.
        spec: the string it was parsed from (for display and checkpoints).
    """

    def __init__(self, shapes=None, per_level=None, spec: str | None = None):
        if (shapes is None) == (per_level is None):
            raise AnchorSpecError("AnchorSet needs exactly one of shapes or per_level")
        self.shapes = None if shapes is None else _check_shapes(shapes, "anchor shapes")
        self.per_level = None
        if per_level is not None:
            if not isinstance(per_level, (list, tuple)) or not per_level:
                raise AnchorSpecError(f"anchor levels: expected a non-empty list of levels, got {per_level!r}")
            _check_num_levels(len(per_level), "anchor levels")
            self.per_level = [_check_shapes(s, f"anchor level {i}") for i, s in enumerate(per_level)]
        self.spec = spec or self._default_spec()

    # ----------------------------------------------------------------- parsing
    @classmethod
    def parse(cls, spec: str | AnchorSet) -> AnchorSet:
        """Parse a SPEC string (preset, ``scales=..;ratios=..``, or a file path)."""
        if isinstance(spec, AnchorSet):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise AnchorSpecError(f"anchor SPEC {spec!r}: empty; use e.g. '3x3' or 'scales=1,2;ratios=0.5,1,2'")
        text = spec.strip()
        if text.lower().endswith((".json", ".yaml", ".yml")):
            return cls._from_file(Path(text))
        if "=" in text:
            return cls._from_keyvalues(text)
        return cls._from_preset(text)

    @classmethod
    def _from_preset(cls, spec: str) -> AnchorSet:
        parts = spec.lower().split("x")
        forms = "a preset 'SxR' (e.g. '3x3'), a 'scales=..;ratios=..' string or a .json/.yaml file"
        if len(parts) != 2:
            raise AnchorSpecError(f"anchor SPEC {spec!r}: not {forms}")
        for name, part in zip(("scales", "ratios"), parts):
            if not (part.strip().isascii() and part.strip().isdigit()):
                raise AnchorSpecError(f"anchor SPEC {spec!r}: number of {name} {part.strip()!r} is not a "
                                      f"whole number in 1..{MAX_PRESET}, so not {forms}")
        s, r = int(parts[0]), int(parts[1])
        for name, v in (("scales", s), ("ratios", r)):
            if not 1 <= v <= MAX_PRESET:
                raise AnchorSpecError(f"anchor SPEC {spec!r}: number of {name} {v} must be in 1..{MAX_PRESET}")
        _check_product(spec, s, r)
        return cls(shapes_from_scales_ratios(preset_scales(s), preset_ratios(r)), spec=f"{s}x{r}")

    @classmethod
    def _from_keyvalues(cls, spec: str) -> AnchorSet:
        values = {"scales": [1.0], "ratios": [1.0]}
        seen = set()
        for part in spec.split(";"):
            if not part.strip():
                continue
            key, sep, val = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in values:
                raise AnchorSpecError(
                    f"anchor SPEC {spec!r}: unknown part {part.strip()!r}; allowed keys: scales, ratios")
            if key in seen:
                raise AnchorSpecError(f"anchor SPEC {spec!r}: {key} given twice")
            seen.add(key)
            values[key] = _number_list(val, spec, key)
        _check_product(spec, len(values["scales"]), len(values["ratios"]))
        return cls(shapes_from_scales_ratios(values["scales"], values["ratios"]), spec=spec)

    @classmethod
    def _from_file(cls, path: Path) -> AnchorSet:
        where = f"anchor file {path}"
        if not path.exists():
            raise AnchorSpecError(f"{where}: not found")
        if path.suffix == ".json":
            data = read_json_file(path, where, MAX_FILE_BYTES, AnchorSpecError)
        else:
            data = read_yaml_file(path, where, MAX_FILE_BYTES, AnchorSpecError)
        if not isinstance(data, dict) or len(set(data) & {"anchors", "levels"}) != 1:
            raise AnchorSpecError(f"anchor file {path}: expected a mapping with exactly one of 'anchors' or 'levels'")
        if "anchors" in data:
            shapes = _check_shapes(data["anchors"], f"anchor file {path}: anchors")
            return cls(shapes, spec=str(path))
        levels = data["levels"]
        if not isinstance(levels, list) or not levels:
            raise AnchorSpecError(f"anchor file {path}: 'levels' must be a non-empty list of [h, w] lists")
        _check_num_levels(len(levels), f"anchor file {path}")
        per_level = [_check_shapes(s, f"anchor file {path}: level {i}") for i, s in enumerate(levels)]
        return cls(per_level=per_level, spec=str(path))

    # ------------------------------------------------------------ properties
    def _default_spec(self) -> str:
        if self.shapes is not None:
            return "shapes=" + ";".join(f"{h:.4g},{w:.4g}" for h, w in self.shapes)
        return "per-level(" + ",".join(str(len(s)) for s in self.per_level) + ")"

    def num_anchors(self, num_levels: int) -> list[int]:
        """Anchors per position for each of ``num_levels`` levels."""
        if self.shapes is not None:
            return [len(self.shapes)] * num_levels
        self._check_levels(num_levels)
        return [len(s) for s in self.per_level]

    def _check_levels(self, num_levels: int) -> None:
        if self.per_level is not None and len(self.per_level) != num_levels:
            raise AnchorSpecError(
                f"anchor set {self.spec}: has {len(self.per_level)} levels but the model has {num_levels}"
            )

    def sizes(self, standard_sizes: list[float]) -> list[Tensor]:
        """Per-level anchor sizes: list of [K_l, 2] (h, w) pixels."""
        self._check_levels(len(standard_sizes))
        if self.shapes is not None:
            rel = torch.tensor(self.shapes, dtype=torch.float32)
            return [rel * s for s in standard_sizes]
        return [torch.tensor(s, dtype=torch.float32) for s in self.per_level]

    def codes(self, standard_sizes: list[float]) -> list[Tensor]:
        """MetaAnchor encodings b = (log(h/AH), log(w/AW)): list of [K_l, 2]."""
        return [torch.log(s / a) for s, a in zip(self.sizes(standard_sizes), standard_sizes)]

    def key(self) -> tuple:
        """Hashable identity for caching generated weights and grid anchors."""
        if self.shapes is not None:
            return ("rel", tuple(self.shapes))
        return ("abs", tuple(tuple(s) for s in self.per_level))

    def to_dict(self) -> dict:
        return {"spec": self.spec, "shapes": self.shapes, "per_level": self.per_level}

    @classmethod
    def from_dict(cls, d: dict) -> AnchorSet:
        return cls(shapes=d.get("shapes"), per_level=d.get("per_level"), spec=d.get("spec"))

    def __eq__(self, other) -> bool:
        return isinstance(other, AnchorSet) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __len__(self) -> int:
        return len(self.shapes) if self.shapes is not None else max(len(s) for s in self.per_level)

    def __repr__(self) -> str:
        return f"AnchorSet({self.spec!r})"


def cell_anchors(sizes: Tensor) -> Tensor:
    """Anchors centred at (0, 0): [K, 2] (h, w) -> [K, 4] x1y1x2y2."""
    h, w = sizes.unbind(1)
    return torch.stack([-w / 2, -h / 2, w / 2, h / 2], dim=1)


def grid_anchors(sizes: list[Tensor], feature_shapes: list[tuple[int, int]], strides: list[int],
                 device: torch.device | str = "cpu") -> Tensor:
    """All anchors of an image, level by level, position-major then anchor.

    Args:
        sizes: per-level [K_l, 2] (h, w) pixel sizes.
        feature_shapes: per-level (H_l, W_l).
        strides: per-level stride in pixels.
    Returns:
        [sum_l H_l*W_l*K_l, 4] x1y1x2y2 pixels; anchor centres at (x*stride, y*stride)
        as torchvision's AnchorGenerator places them.
    """
    out = []
    for s, (fh, fw), stride in zip(sizes, feature_shapes, strides):
        base = cell_anchors(s.to(device))  # [K, 4]
        ys = torch.arange(fh, device=device, dtype=torch.float32) * stride
        xs = torch.arange(fw, device=device, dtype=torch.float32) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # [HW, 1, 4]
        out.append((shifts + base[None]).reshape(-1, 4))
    return torch.cat(out)


def kmeans_count(spec) -> int | None:
    """K of a ``kmeansK`` training SPEC (anchors fitted by k-means to the training boxes at the start of
    training, YOLOv2's default), None for any other SPEC; a K outside 1..MAX_ANCHORS is an AnchorSpecError."""
    m = re.fullmatch(r"kmeans(\d+)", spec.strip().lower()) if isinstance(spec, str) else None
    if m is None:
        return None
    k = int(m.group(1))
    if not 1 <= k <= MAX_ANCHORS:
        raise AnchorSpecError(f"anchor SPEC {spec!r}: k-means needs 1..{MAX_ANCHORS} anchors, not {k}")
    return k


def sample_anchor_set(base: AnchorSet, seed: int, iteration: int, scale_jitter: float,
                      ratio_jitter: float) -> AnchorSet:
    """A random anchor set around ``base``: every shape's size and ratio jittered in log2 space."""
    if base.shapes is None:
        return base
    rng = np.random.default_rng([seed, iteration, 7])
    shapes = []
    for h, w in base.shapes:
        ds = 2.0 ** rng.uniform(-scale_jitter, scale_jitter)
        dr = 2.0 ** (rng.uniform(-ratio_jitter, ratio_jitter) / 2)
        shapes.append((h * ds * dr, w * ds / dr))
    return AnchorSet(shapes, spec=f"sampled({base.spec})")


def code_range(anchors: AnchorSet, standard_sizes: list[float], scale_jitter: float = 0.0,
               ratio_jitter: float = 0.0) -> tuple[list[float], list[float]]:
    """The box (lo, hi), each [b_h, b_w], holding every code of ``anchors`` and of every set
    ``sample_anchor_set`` can draw around it with these jitters: (scale_jitter + ratio_jitter / 2) * ln 2
    beyond the set's own codes on each axis (per-level sets are never jittered)."""
    codes = torch.cat(anchors.codes(standard_sizes))  # [sum K_l, 2]
    margin = (scale_jitter + ratio_jitter / 2) * math.log(2) if anchors.shapes is not None else 0.0
    return (codes.min(0).values - margin).tolist(), (codes.max(0).values + margin).tolist()
