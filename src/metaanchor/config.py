"""Training configuration: defaults, YAML files, ``KEY=VALUE`` overrides, validation.

A config is a nested dict. Every key has a default here; a YAML file and then
command-line overrides (``solver.max_iter=500``) replace values. Unknown keys
and values of the wrong type are ``ConfigError``s naming the key and what is
allowed. Modules never read the config: ``model_kwargs`` maps it onto the
``Detector`` arguments in one place.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from metaanchor.errors import ConfigError
from metaanchor.families import ARCHS
from metaanchor.families.base import HEADS
from metaanchor.modeling.backbones import BACKBONES
from metaanchor.modeling.heads import NORMS
from metaanchor.modeling.losses import REG_LOSSES

DEFAULTS: dict = {
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "data": {
        "train": None,  # dataset folder (DIR/annotations.json + DIR/images), or a COCO JSON file
        "train_images": None,  # image folder when data.train is a JSON file
        "val": None,
        "val_images": None,
        "skip_invalid": False,  # drop (and count) bad annotations instead of failing
        "workers": 0,  # data-loader processes that read, resize and augment images (0: in the main process)
        "group_aspect": True,  # batches never mix portrait (h >= w) and landscape images (less padding)
        "max_image_pixels": 50_000_000,  # images above width*height are refused from their header (bombs)
    },
    "model": {
        "arch": "retinanet",  # retinanet | yolov2 (metaanchor.families.ARCHS)
        "backbone": "tiny",
        "backbone_weights": None,
        "init_from": None,  # a checkpoint (e.g. written by metaanchor import) whose weights training starts from
        "frozen_bn": False,
        "head": "metaanchor",  # metaanchor | metaanchor-dd | predefined
        "fpn_channels": 64,
        "head_convs": 4,
        "head_norm": "none",  # none | gn
        "hidden_dim": 32,
        "reg_loss": "smooth_l1",  # smooth_l1 | l1 | giou
        "fg_iou": 0.5,
        "bg_iou": 0.4,
    },
    "anchors": {
        "train": "3x3",  # a SPEC, or kmeansK: K anchors fitted to data.train's boxes (YOLOv2's default)
        "sample": True,  # draw a jittered anchor set around anchors.train every iteration (paper-notes default)
        "scale_jitter": 0.5,  # max |log2| change of each scale when sampling
        "ratio_jitter": 0.5,  # max |log2| change of each ratio when sampling
        "eval": [],  # extra anchor sets evaluated at the end of training
    },
    "input": {
        "size": 512,  # short side
        "max_size": 0,  # long-side cap (0: same as size)
        "hflip": 0.5,
        "photometric": 0.0,  # strength of brightness/contrast/saturation jitter
        # torchvision transforms.v2 preset replacing hflip/photometric (data/augment.py; unset: those two):
        # none | light (flip, colour jitter, multi-scale) | standard (SSD-style zoom-out + IoU crop + photometric,
        # flip, multi-scale 0.75..1.25x); boxes clamped to the image, empty ones dropped
        "augment": None,
    },
    "solver": {
        "max_iter": 1000,
        "batch_size": 8,  # total over all processes
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "warmup_iters": 100,
        "schedule": "cosine",  # cosine | step
        "steps": [0.67, 0.89],  # fractions of max_iter where the step schedule divides lr by 10
        "clip_grad": 10.0,  # max grad norm (0: off)
        "amp": True,  # mixed precision on CUDA
        # NHWC convolutions: true | false | null (auto: on CUDA only; on CPU NCHW measured faster with this torch
        # for tiny and ResNet-18, BENCHMARKS.md "channels_last")
        "channels_last": None,
        "nonfinite": "stop",  # stop | skip: what a non-finite loss does
        "ema": 0.0,  # EMA decay of the weights evaluated and saved (e.g. 0.9998; 0: off), see engine/ema.py
        "ema_tau": 2000.0,  # EMA warm-up: decay * (1 - exp(-updates / ema_tau))
        "early_stop": 0,  # stop after this many evaluations (eval.period) without a better AP (0: off)
    },
    "eval": {
        "period": 0,  # evaluate every N iterations (0: only at the end)
        "score_thresh": 0.05,
        "batch_size": 8,
    },
    "log": {"period": 20},
    "checkpoint": {"period": 200},
}

CHOICES = {
    "device": None,
    "model.arch": tuple(ARCHS),
    "model.head": HEADS,
    "model.backbone": BACKBONES,
    "model.reg_loss": REG_LOSSES,
    "model.head_norm": NORMS,
    "solver.schedule": ("cosine", "step"),
    "solver.nonfinite": ("stop", "skip"),
    "input.augment": ("none", "light", "standard"),  # = metaanchor.data.augment.PRESETS
}


# Numeric ranges: (low, high, low is exclusive). Checked for every source of values.
_POSITIVE, _NON_NEGATIVE, _UNIT = (0, None, True), (0, None, False), (0, 1, False)
# Upper bounds of sizes and counts: beyond them a run exhausts memory or never ends.
MAX_ITERS = 10**8
MAX_BATCH = 1024
MAX_INPUT_SIZE = 4096  # px, short side (input.max_size: twice that)
MAX_CHANNELS = 4096
MAX_IMAGE_PIXELS_LIMIT = 1_000_000_000  # = metaanchor.data.io.MAX_IMAGE_PIXELS_LIMIT
RANGES = {
    **dict.fromkeys(("solver.lr",), _POSITIVE),
    **dict.fromkeys(("solver.max_iter", "log.period", "checkpoint.period"), (0, MAX_ITERS, True)),
    **dict.fromkeys(("solver.batch_size", "eval.batch_size"), (0, MAX_BATCH, True)),
    **dict.fromkeys(("model.fpn_channels", "model.hidden_dim"), (0, MAX_CHANNELS, True)),
    "input.size": (0, MAX_INPUT_SIZE, True),
    "input.max_size": (0, 2 * MAX_INPUT_SIZE, False),
    "data.max_image_pixels": (0, MAX_IMAGE_PIXELS_LIMIT, True),
    "seed": (0, 2**32 - 1, False),
    "data.workers": (0, 256, False),
    "model.head_convs": (0, 16, False),
    **dict.fromkeys(("solver.warmup_iters", "eval.period", "solver.early_stop"), (0, MAX_ITERS, False)),
    "solver.ema": (0, 1, False),
    "solver.ema_tau": _NON_NEGATIVE,
    **dict.fromkeys(("input.photometric", "solver.momentum", "solver.weight_decay", "solver.clip_grad",
                     "anchors.scale_jitter", "anchors.ratio_jitter"), _NON_NEGATIVE),
    **dict.fromkeys(("input.hflip", "model.fg_iou", "model.bg_iou", "eval.score_thresh"), _UNIT),
}
LIST_ITEMS = {"solver.steps": float, "anchors.eval": str}


def _check_range(key: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key}: {value!r} is not a finite number")
    if key not in RANGES or value is None:
        return
    low, high, exclusive = RANGES[key]
    if value < low or (exclusive and value == low) or (high is not None and value > high):
        if exclusive:
            allowed = f"> {low}" if high is None else f"> {low} and <= {high}"
        else:
            allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"config key {key}: {value!r} is out of range; allowed: {allowed}")


def _check_items(key: str, value) -> None:
    kind = LIST_ITEMS.get(key)
    if kind is None or value is None:
        return
    for item in value:
        ok = isinstance(item, str) if kind is str else (
            isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item))
        if not ok:
            raise ConfigError(f"config key {key}: item {item!r} is not a {kind.__name__}")


def validate(cfg: dict) -> dict:
    """Checks that span keys: IoU thresholds, step fractions, anchor SPECs. Returns ``cfg``."""
    from metaanchor.errors import AnchorSpecError
    from metaanchor.geometry.anchors import AnchorSet, kmeans_count

    m = cfg["model"]
    if cfg["solver"]["channels_last"] not in (None, True, False):
        raise ConfigError(f"config key solver.channels_last: expected true, false or null (auto), got "
                          f"{cfg['solver']['channels_last']!r}")
    if m["bg_iou"] > m["fg_iou"]:
        raise ConfigError(f"config keys model.bg_iou={m['bg_iou']} and model.fg_iou={m['fg_iou']}: "
                          "bg_iou must not exceed fg_iou")
    if cfg["solver"]["ema"] >= 1:
        raise ConfigError(f"config key solver.ema: {cfg['solver']['ema']!r} is out of range; allowed: "
                          ">= 0 and < 1 (0: off)")
    if cfg["solver"]["early_stop"] and not (cfg["eval"]["period"] and cfg["data"]["val"]):
        raise ConfigError(f"config key solver.early_stop={cfg['solver']['early_stop']}: needs periodic "
                          "validation; set eval.period > 0 and data.val")
    for f in cfg["solver"]["steps"]:
        if not 0 < f <= 1:
            raise ConfigError(f"config key solver.steps: {f!r} is not a fraction of max_iter in (0, 1]")
    for key, specs in (("anchors.train", [cfg["anchors"]["train"]]), ("anchors.eval", cfg["anchors"]["eval"])):
        for spec in specs:
            try:
                if key != "anchors.train" or kmeans_count(spec) is None:  # kmeansK: fitted when training starts
                    AnchorSet.parse(spec)
            except AnchorSpecError as e:
                raise ConfigError(f"config key {key}: {e}") from None
    return cfg


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config as {"section.key": value} (lists and None are values, not sections)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _check_type(key: str, value, default):
    """Coerce ``value`` to the type of ``default`` or raise naming the key."""
    if default is None:
        return value
    if value is None:
        raise ConfigError(f"config key {key}: expected {type(default).__name__}, got no value")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
        if isinstance(value, (str, int, float)):
            return [value]
    raise ConfigError(f"config key {key}: expected {type(default).__name__}, got {value!r}")


def set_key(cfg: dict, key: str, value) -> None:
    """Set a dotted key, validating that it exists and the value's type."""
    flat_defaults = flatten(DEFAULTS)
    if key not in flat_defaults:
        section = key.split(".")[0]
        near = sorted(k for k in flat_defaults if k.startswith(section + ".")) or sorted(flat_defaults)
        raise ConfigError(f"unknown config key {key!r}; allowed: {', '.join(near)}")
    value = _check_type(key, value, flat_defaults[key])
    _check_range(key, value)
    _check_items(key, value)
    allowed = CHOICES.get(key)
    if allowed and value not in allowed and not (value is None and flat_defaults[key] is None):
        raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(allowed)}")
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. solver.max_iter=500")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and "x" in value and value.replace("x", "").isdigit():
        value = raw  # keep anchor presets like 3x3 as strings
    return key.strip(), value


def shipped_configs() -> dict[str, Path]:
    """The configs installed with the package, by name: {"demo": .../configs/demo.yaml, ...}
    (``*_anchors.yaml`` beside them are anchor files, not configs)."""
    folder = Path(__file__).parent / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if not p.stem.endswith("_anchors")}


def config_path(path: str | Path) -> Path:
    """A config file: ``path`` itself, or the shipped config of that name (``demo``, ``bccd.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    name = p.stem if p.suffix in (".yaml", ".yml") else p.name
    if p.parent == Path(".") and name in shipped:
        return shipped[name]
    raise ConfigError(f"config file {p}: not found (shipped configs: {', '.join(shipped)})")


def _anchor_files_beside(cfg: dict, folder: Path) -> None:
    """Anchor-file SPECs that are not found from the working directory but are beside the config file
    (a shipped config naming its own anchor file) are read from there."""
    def beside(spec):
        if isinstance(spec, str) and spec.endswith((".yaml", ".yml", ".json")) and not Path(spec).exists():
            candidate = folder / Path(spec).name
            return str(candidate) if candidate.is_file() else spec
        return spec

    cfg["anchors"]["train"] = beside(cfg["anchors"]["train"])
    cfg["anchors"]["eval"] = [beside(s) for s in cfg["anchors"]["eval"]]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults <- YAML file (a path, or a shipped config's name) <- overrides; returns a validated nested dict."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        p = config_path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p}: invalid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping at the top level")
        for key, value in flatten(data).items():
            try:
                set_key(cfg, key, value)
            except ConfigError as e:
                raise ConfigError(f"config file {p}: {e}") from None
        _anchor_files_beside(cfg, p.parent)
    for text in overrides:
        set_key(cfg, *parse_override(text))
    return validate(cfg)


def model_kwargs(cfg: dict, num_classes: int, class_names: list[str] | None,
                 category_ids: list[int] | None = None) -> dict:
    """Map a config onto ``Detector`` arguments (the one place that does).

    ``class_names`` and ``category_ids`` come from the training dataset (kept in the checkpoint).
    """
    m, inp = cfg["model"], cfg["input"]
    return dict(num_classes=num_classes, class_names=class_names, backbone=m["backbone"], head=m["head"],
                anchors=cfg["anchors"]["train"], fpn_channels=m["fpn_channels"], head_convs=m["head_convs"],
                head_norm=m["head_norm"], hidden_dim=m["hidden_dim"], min_size=inp["size"],
                max_size=inp["max_size"] or inp["size"],
                fg_iou=m["fg_iou"], bg_iou=m["bg_iou"], reg_loss=m["reg_loss"],
                score_thresh=cfg["eval"]["score_thresh"], backbone_weights=m["backbone_weights"],
                frozen_bn=m["frozen_bn"], category_ids=category_ids)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
