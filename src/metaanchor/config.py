"""Training configuration: typed sections, YAML files, ``KEY=VALUE`` overrides, validation.

A config is a nested dict of sections (``data``, ``model``, ``anchors``, ``input``, ``solver``,
``eval``, ``log``, ``checkpoint``) plus ``seed`` and ``device``. Each section is declared once as a
dataclass below, every field with its default, type and allowed values
(:func:`metaanchor.schema.option`); the ``model`` section is declared by the detector family that
``model.arch`` names (``RetinaNetDetector.Config``, ``YoloV2Detector.Config``), so a family sees only
its own options. A YAML file and then command-line overrides (``solver.max_iter=500``) replace
defaults; unknown keys and bad values are ``ConfigError``s naming the key and what is allowed.
Modules never read the config: :func:`model_kwargs` maps it onto a family's constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from metaanchor.errors import AnchorSpecError, ConfigError, UserError
from metaanchor.families import ARCHS, DEFAULT_ARCH, detector_class
from metaanchor.geometry.anchors import AnchorSet, kmeans_count
from metaanchor.readers import load_yaml, read_yaml_file
from metaanchor.schema import check, defaults, fields, option

# Upper bounds of sizes and counts: beyond them a run exhausts memory or never ends.
MAX_ITERS = 10**8
MAX_BATCH = 1024
MAX_INPUT_SIZE = 4096  # px, short side (input.max_size: twice that)
MAX_IMAGE_PIXELS_LIMIT = 1_000_000_000  # = metaanchor.data.io.MAX_IMAGE_PIXELS_LIMIT


@dataclass
class RunConfig:
    """The top-level keys."""

    seed: int = option(0, low=0, high=2**32 - 1)  # weights, data order, augmentation and anchor sampling
    device: str = option("auto")  # auto | cpu | cuda | cuda:N (checked when training starts)


@dataclass
class DataConfig:
    # training data, read in place (metaanchor.data.sources): a COCO folder (DIR/annotations.json + DIR/images)
    # or JSON file, a VOC root or an ultralytics data.yaml; data=FILE.yaml sets data.train and data.val to it
    train: str = option(None)
    train_images: str = option(None)  # image folder of a COCO JSON (default: images/ beside it) or a VOC root
    train_split: str = option("train")  # VOC split (ImageSets/Main/NAME.txt) or data.yaml entry of data.train
    val: str = option(None)  # validation data, any form data.train takes
    val_images: str = option(None)  # as data.train_images, for data.val
    val_split: str = option("val")  # VOC split or data.yaml entry of data.val
    skip_invalid: bool = option(False)  # drop (and count) bad annotations instead of failing
    workers: int = option(0, low=0, high=256)  # loader processes that read, resize, augment (0: main process)
    group_aspect: bool = option(True)  # batches never mix portrait (h >= w) and landscape images (less padding)
    # images above width*height are refused from their header (decompression bombs)
    max_image_pixels: int = option(50_000_000, low=0, low_open=True, high=MAX_IMAGE_PIXELS_LIMIT)


@dataclass
class AnchorsConfig:
    train: str = option("3x3")  # a SPEC, or kmeansK: K anchors fitted to data.train's boxes
    sample: bool = option(True)  # draw a jittered anchor set around anchors.train every iteration
    scale_jitter: float = option(0.5, low=0)  # max |log2| change of each scale when sampling
    ratio_jitter: float = option(0.5, low=0)  # max |log2| change of each ratio when sampling
    eval: list = option([], items=str)  # extra anchor sets evaluated at the end of training


@dataclass
class InputConfig:
    size: int = option(512, low=0, low_open=True, high=MAX_INPUT_SIZE)  # short side
    max_size: int = option(0, low=0, high=2 * MAX_INPUT_SIZE)  # long-side cap (0: same as size)
    hflip: float = option(0.5, low=0, high=1)  # probability of a horizontal flip (when input.augment is unset)
    photometric: float = option(0.0, low=0)  # strength of brightness/contrast/saturation jitter
    # a torchvision transforms.v2 preset replacing hflip/photometric (metaanchor.data.augment.PRESETS);
    # unset: those two
    augment: str = option(None, choices=("none", "light", "standard"))


@dataclass
class SolverConfig:
    max_iter: int = option(1000, low=0, low_open=True, high=MAX_ITERS)  # training iterations (batches)
    # passes over data.train instead of max_iter (0: unused); resolved to max_iter when the data is read
    epochs: int = option(0, low=0, high=MAX_ITERS)
    batch_size: int = option(8, low=0, low_open=True, high=MAX_BATCH)  # total over all processes
    lr: float = option(0.01, low=0, low_open=True)  # SGD learning rate after warm-up
    momentum: float = option(0.9, low=0)  # SGD momentum
    weight_decay: float = option(1e-4, low=0)  # L2 penalty on weights (not on biases or norm layers)
    warmup_iters: int = option(100, low=0, high=MAX_ITERS)  # lr rises linearly over the first N iterations
    schedule: str = option("cosine", choices=("cosine", "step"))  # lr decay after warm-up
    steps: list = option([0.67, 0.89], items=float)  # fractions of max_iter where "step" divides lr by 10
    clip_grad: float = option(10.0, low=0)  # max grad norm (0: off)
    amp: bool = option(True)  # mixed precision on CUDA
    cpu_bf16: bool = option(False)  # bfloat16 autocast on a CPU with native bf16 (AVX512-BF16, AMX); else fp32
    channels_last: bool = option(None, kind=bool)  # NHWC convolutions; null: on CUDA only
    nonfinite: str = option("stop", choices=("stop", "skip"))  # what a non-finite loss does
    ema: float = option(0.0, low=0, high=1, high_open=True)  # EMA decay of the weights evaluated and saved (0: off)
    ema_tau: float = option(2000.0, low=0)  # EMA warm-up: decay * (1 - exp(-updates / ema_tau))
    early_stop: int = option(0, low=0, high=MAX_ITERS)  # stop after this many evaluations without a better AP


@dataclass
class EvalConfig:
    period: int = option(0, low=0, high=MAX_ITERS)  # evaluate every N iterations (0: only at the end)
    score_thresh: float = option(0.05, low=0, high=1)  # detections kept for AP (low: AP needs the whole curve)
    batch_size: int = option(8, low=0, low_open=True, high=MAX_BATCH)  # images per forward pass in evaluation


@dataclass
class LogConfig:
    period: int = option(20, low=0, low_open=True, high=MAX_ITERS)  # a log line (and metrics.csv row) every N


@dataclass
class CheckpointConfig:
    period: int = option(200, low=0, low_open=True, high=MAX_ITERS)  # save last.pt every N iterations


SECTIONS: dict[str, type] = {"data": DataConfig, "anchors": AnchorsConfig, "input": InputConfig,
                             "solver": SolverConfig, "eval": EvalConfig, "log": LogConfig,
                             "checkpoint": CheckpointConfig}


def model_section(arch: str) -> type:
    """The dataclass of the ``model`` section for family ``arch``."""
    return detector_class(arch).Config


def default_config(arch: str = DEFAULT_ARCH) -> dict:
    """Every key at its default, with the ``model`` section of family ``arch``."""
    if arch not in ARCHS:
        raise ConfigError(f"config key model.arch: {arch!r} is not one of {', '.join(ARCHS)}")
    cfg = defaults(RunConfig)
    cfg["data"] = defaults(DataConfig)
    cfg["model"] = defaults(model_section(arch)) | {"arch": arch}
    for name, section in SECTIONS.items():
        cfg.setdefault(name, defaults(section))
    return cfg


def validate(cfg: dict) -> dict:
    """Checks that span keys: the family's own (e.g. IoU thresholds), step fractions, early stopping,
    anchor SPECs. Returns ``cfg``."""
    model_section(cfg["model"]["arch"]).check(cfg["model"])
    s = cfg["solver"]
    if s["epochs"] and s["max_iter"] != defaults(SolverConfig)["max_iter"]:
        raise ConfigError(f"config keys solver.epochs={s['epochs']} and solver.max_iter={s['max_iter']}: "
                          "set one of them, not both")
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


def _section_of(cfg: dict, key: str) -> tuple[type, dict]:
    """(dataclass, dict node) holding ``key``; a ConfigError listing the keys nearby when there is none."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in fields(RunConfig):
        return RunConfig, cfg
    if len(parts) == 2 and parts[0] == "model":
        section = model_section(cfg["model"]["arch"])
        if parts[1] in fields(section):
            return section, cfg["model"]
        owners = [a for a in ARCHS if parts[1] in fields(model_section(a))]
        if owners:
            raise ConfigError(f"config key {key}: not an option of model.arch={cfg['model']['arch']} "
                              f"(it is one of {', '.join(owners)}'s)")
    elif len(parts) == 2 and parts[0] in SECTIONS and parts[1] in fields(SECTIONS[parts[0]]):
        return SECTIONS[parts[0]], cfg[parts[0]]
    known = sorted(flatten(cfg))
    near = [k for k in known if k.startswith(parts[0] + ".")] or known
    raise ConfigError(f"unknown config key {key!r}; allowed: {', '.join(near)}")


def set_text(cfg: dict, key: str, text: str) -> None:
    """Set a dotted key from its command-line text: YAML-parsed (``500``, ``true``, ``[1x1, 5x5]``, ``null``),
    except that a text option keeps the text as typed (``anchors.train=0x3`` is the SPEC '0x3', not 3)."""
    value = parse_value(text, f"override {key}")
    if key != "model.arch" and value is not None and not isinstance(value, str):
        section, _ = _section_of(cfg, key)
        if fields(section)[key.rsplit(".", 1)[-1]].metadata["kind"] is str:
            value = text.strip()
    set_key(cfg, key, value)


def set_key(cfg: dict, key: str, value) -> None:
    """Set a dotted key, validating that it exists and the value.

    Setting ``model.arch`` to another family replaces the ``model`` section by that family's,
    keeping the values of the keys both families have."""
    if key == "model.arch":
        if value not in ARCHS:
            raise ConfigError(f"config key model.arch: {value!r} is not one of {', '.join(ARCHS)}")
        if value != cfg["model"]["arch"]:
            shared = {k: v for k, v in cfg["model"].items() if k in fields(model_section(value))}
            cfg["model"] = defaults(model_section(value)) | shared | {"arch": value}
        return
    section, node = _section_of(cfg, key)
    node[key.rsplit(".", 1)[-1]] = check(section, key, value)


def parse_override(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, the value's text)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. solver.max_iter=500")
    return key.strip(), raw


DATA_SHORTHAND = ("data.train", "data.val")  # what ``data=FILE.yaml`` sets: both splits from one data.yaml


def _expand_data(pairs: list[tuple]) -> list[tuple]:
    """``(data, X)`` -> ``(data.train, X), (data.val, X)``; other pairs unchanged."""
    out = []
    for key, value in pairs:
        out += [(k, value) for k in DATA_SHORTHAND] if key == "data" else [(key, value)]
    return out


def parse_value(text: str, where: str = "override"):
    """A command-line value as YAML reads it (None for an empty text; the text itself if it is not YAML).

    A value beyond the reader's limits (an alias bomb, deep nesting, a 5000-digit number) is a
    ``ConfigError`` starting with ``where``."""
    if not text.strip():
        return None
    try:
        return load_yaml(text, where, ConfigError, invalid=_NotYaml)
    except _NotYaml:
        return text


class _NotYaml(UserError):
    """A value that is not YAML, inside :func:`parse_value` (which keeps it as text)."""


def shipped_configs() -> dict[str, Path]:
    """The configs installed with the package, by name: {"demo": .../configs/demo.yaml, ...}
    (``*_anchors.yaml`` beside them are anchor files, not configs)."""
    folder = Path(__file__).parent / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if not p.stem.endswith("_anchors")}


def config_path(path: str | Path) -> Path:
    """A config file: ``path`` itself, or the shipped config of that name (``demo``, ``bccd.yaml``)."""
    p = Path(path)
    if p.exists() and not p.is_dir():  # a FIFO or device is refused when read, with its own message
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


def _read_yaml(p: Path) -> dict:
    data = read_yaml_file(p, f"config file {p}", "MAX_CONFIG_BYTES", ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    return flatten(data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults <- YAML file (a path, or a shipped config's name) <- overrides; returns a validated nested dict.

    The family (``model.arch``: the last override, else the file's, else RetinaNet) is known before any
    ``model`` key is read, so each is checked against that family's options. ``data=FILE.yaml`` (file or
    override) is short for ``data.train=FILE.yaml data.val=FILE.yaml``: the ``train`` and ``val`` entries
    of one ultralytics data.yaml (``data.train_split`` / ``data.val_split`` pick others)."""
    p = config_path(path) if path is not None else None
    from_file = dict(_expand_data(list(_read_yaml(p).items()))) if p is not None else {}
    pairs = _expand_data([parse_override(text) for text in overrides])
    arch = next((parse_value(v, "override model.arch") for k, v in reversed(pairs) if k == "model.arch"),
                from_file.get("model.arch", DEFAULT_ARCH))
    cfg = default_config(DEFAULT_ARCH)
    set_key(cfg, "model.arch", arch)
    if p is not None:
        for key, value in from_file.items():
            if key == "model.arch":  # already applied (an override may have replaced it)
                continue
            try:
                set_key(cfg, key, value)
            except ConfigError as e:
                raise ConfigError(f"config file {p}: {e}") from None
        _anchor_files_beside(cfg, p.parent)
    for key, text in pairs:
        if key != "model.arch":
            set_text(cfg, key, text)
    return validate(cfg)


def model_kwargs(cfg: dict, num_classes: int, class_names: list[str] | None,
                 category_ids: list[int] | None = None) -> dict:
    """A config as the constructor arguments of its family (``model.arch``): every ``model`` key but
    ``arch`` and ``init_from`` (each family's config fields are its constructor's arguments), plus the
    input size, the training anchor set and the evaluation score threshold.

    ``class_names`` and ``category_ids`` come from the training dataset (kept in the checkpoint).
    """
    model = {k: v for k, v in cfg["model"].items() if k not in ("arch", "init_from")}
    inp = cfg["input"]
    return model | dict(num_classes=num_classes, class_names=class_names, category_ids=category_ids,
                        anchors=cfg["anchors"]["train"], min_size=inp["size"], max_size=inp["max_size"] or inp["size"],
                        score_thresh=cfg["eval"]["score_thresh"])


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
