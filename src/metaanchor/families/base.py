"""What every detector family shares: anchor sets, grid anchors, predict, checkpoints, inference speed-ups.

A family (``metaanchor.families.retinanet``, ``.yolov2``) subclasses ``BaseDetector``,
builds its backbone, head and losses in ``__init__`` (after ``_init_common``); ``forward``
(here) batches the images and calls the family's ``losses`` or ``detect``:

    losses = det(images, targets)   # training mode: {"cls", "box", ...}
    dets = det(images)              # eval mode: per image {"boxes": [D, 4], "scores": [D], "labels": [D]}

Images are a list of [3, H, W] float tensors in [0, 1]; targets are per image
{"boxes": [N, 4] x1y1x2y2 pixels of that image, finite, x2 >= x1, y2 >= y1, "labels": [N] int64 in
0..C-1}, checked once per batch (``check_targets``: a ``TargetError`` naming the image, field and value).
Detections come back in the same pixel coordinates.

A family also sets the class attributes ``arch`` (its registry name), ``pyramid_strides``
and ``default_input_size``, and implements

    shared_features(batch)                    # what no anchor set changes (backbone, towers)
    detect(shared, scales, sizes, images)     # the current anchor set's outputs + post-processing
    raw_outputs(features, exportable=False)   # [B, A, C] class logits, [B, A, 4] box parameters
    losses(batch, targets)                    # training losses, targets in the batch's pixels

(eval-mode ``forward`` is ``detect(shared_features(batch), ...)``; ``detect_many`` reuses one
``shared_features`` for several anchor sets; ``raw_outputs`` is what exported graphs hold).
The head must offer ``set_anchors(codes)`` (per-level [K_l, 2] codes b) and, for MetaAnchor
heads, ``baked_state(codes)``; the model must set ``backbone``, ``head``, ``strides``,
``standard_sizes``, ``box_coder`` and ``score_thresh``. Everything else here reads only those.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from metaanchor import checkpoint as ckpt
from metaanchor.errors import CheckpointError, ConfigError, UserError, first_line
from metaanchor.families.targets import check_targets
from metaanchor.geometry.anchor_fit import fit_anchors
from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet, grid_anchors, standard_sizes
from metaanchor.modeling.backbones import BACKBONES
from metaanchor.modeling.folding import fold_batchnorm
from metaanchor.schema import check, defaults, fields, option

DEFAULT_ARCH = "retinanet"
HEADS = ("metaanchor", "metaanchor-dd", "predefined")
MAX_CHANNELS = 4096
MAX_CLASSES = 100_000  # the classification conv has K x C output channels
MAX_INPUT_SIZE = 4096  # px, short side: the range of a config's input.size (input.max_size: twice that)
CODE_TOL = 1e-4  # codes this far outside the training range still count as inside (float rounding)


class AnchorRangeWarning(UserWarning):
    """A MetaAnchor model was asked for anchor codes outside the range it saw in training."""
GRID_CACHE_SIZE = 8


@dataclass
class ModelConfig:
    """The ``model`` config keys every family has; a family's ``Config`` subclasses it with its own.

    Apart from ``arch`` (the family's registry name) and ``init_from`` (weights training starts from),
    each field is an argument of the family's constructor, under the same name."""

    arch: str = option(DEFAULT_ARCH)  # checked against the registry by metaanchor.config
    backbone: str = option("tiny", choices=BACKBONES)  # tiny: a small CNN for CPU experiments; ResNets + FPN
    backbone_weights: str = option(None)  # "imagenet" (torchvision's registry and cache) or a local file
    init_from: str = option(None)  # a checkpoint (e.g. written by metaanchor import) to start training from
    frozen_bn: bool = option(False)  # BatchNorm statistics and affine fixed (fine-tuning from pretrained weights)
    head: str = option("metaanchor", choices=HEADS)  # predefined: the classic baseline
    hidden_dim: int = option(32, low=0, low_open=True, high=MAX_CHANNELS)  # generator MLP width
    anchor_base: float = option(ANCHOR_BASE, low=0, low_open=True)  # standard box side = anchor_base * stride
    nms_thresh: float = option(0.5, low=0, high=1)  # IoU above which NMS drops the lower-scored box (per class)
    topk_candidates: int = option(1000, low=0, low_open=True, high=10**6)  # per level, before NMS
    detections_per_img: int = option(100, low=0, low_open=True, high=10**5)  # most detections kept per image

    @classmethod
    def check(cls, section: dict) -> None:
        """Checks that span keys of the section (raise ``ConfigError``); none here."""


@dataclass
class BuildArgs:
    """The constructor arguments of every family that are not ``model`` config keys, with a config's ranges:
    the class count and names (from the dataset), the input size (``input.size``, ``input.max_size``) and
    the score threshold (``eval.score_thresh``). A checkpoint's ``model_config`` holds them beside the
    family's ``Config`` fields, ``anchors`` and ``code_range``."""

    num_classes: int = option(1, low=1, high=MAX_CLASSES)
    class_names: list = option(None, kind=list, items=str)
    category_ids: list = option(None, kind=list, items=int)
    min_size: int = option(512, low=0, low_open=True, high=MAX_INPUT_SIZE)
    max_size: int = option(512, low=0, low_open=True, high=2 * MAX_INPUT_SIZE)
    score_thresh: float = option(0.05, low=0, high=1)


class BaseDetector(nn.Module):
    """Family-agnostic detector behaviour; subclasses set ``arch`` (their registry name) and ``forward``."""

    arch = "?"
    Config: type[ModelConfig] = ModelConfig  # the family's ``model`` config section
    default_input_size = 512  # input.size assumed by tools that need one without a config (anchors fit)
    pyramid_strides: tuple[int, ...] = ()  # strides of the levels anchors sit on (fits anchors before building)

    @classmethod
    def fit_anchors(cls, box_shapes, k: int, anchor_base: float = ANCHOR_BASE, seed: int = 0) -> AnchorSet:
        """k anchors fitted by k-means (1 - IoU) to box shapes [N, 2] (h, w, pixels at the network's input
        scale), relative to the standard box of the level each box fits best (one level: YOLOv2)."""
        return fit_anchors(box_shapes, k=k, seed=seed, sizes=standard_sizes(cls.pyramid_strides, anchor_base))

    def _init_common(self, config: dict, num_classes: int, class_names: list[str] | None,
                     category_ids: list[int] | None, head: str, anchors: AnchorSet) -> list[int] | None:
        """Validate and store what every family has; ``config`` is what ``from_config`` rebuilds from.

        Returns the checked category ids (None: 1..C)."""
        if head not in HEADS:
            raise UserError(f"model.head={head!r} is unknown; choose one of {', '.join(HEADS)}")
        category_ids = check_class_args(num_classes, class_names, category_ids)
        self.config = config | dict(num_classes=num_classes, class_names=list(class_names or []) or None,
                                    head=head, anchors=anchors.to_dict(), category_ids=category_ids)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class{i}" for i in range(num_classes)]
        self.category_ids = category_ids or list(range(1, num_classes + 1))
        self.head_type = head
        self.train_anchors = anchors
        self._grid_cache: OrderedDict = OrderedDict()
        self._channels_last, self._bn_folded = False, False
        self._range_warned: set = set()  # anchor sets already warned about (code_range)
        return category_ids

    @property
    def takes_any_anchors(self) -> bool:
        """True for MetaAnchor heads (any anchor set at any time); False for the predefined baseline."""
        return self.head_type != "predefined"

    def _batch(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[float, float]], list[tuple[int, int]]]:
        """Resized, normalised, padded batch [B, 3, Hp, Wp] (NHWC when enabled), per-image scales and sizes."""
        batch, scales, sizes = self.batcher(images)
        if self._channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch, scales, sizes

    # ------------------------------------------------------------------ anchors
    def set_anchors(self, anchors: str | AnchorSet) -> AnchorSet:
        """Use a new anchor set from now on (any set for MetaAnchor heads); returns it."""
        anchors = AnchorSet.parse(anchors)
        codes = anchors.codes(self.standard_sizes)
        self.head.set_anchors(codes)
        self.anchors = anchors
        self._check_code_range(anchors, codes)
        return anchors

    def set_code_range(self, lo: list[float], hi: list[float]) -> None:
        """Record the codes b = (b_h, b_w) seen in training, lo <= b <= hi (stored in checkpoints); a
        MetaAnchor model then warns once per anchor set asked for codes outside it."""
        self.config["code_range"] = [[float(v) for v in lo], [float(v) for v in hi]]

    def _check_code_range(self, anchors: AnchorSet, codes: list[Tensor]) -> None:
        seen = self.config.get("code_range")
        if seen is None or not self.takes_any_anchors or anchors.key() in self._range_warned:
            return
        c = torch.cat(codes)  # [K, 2]
        lo, hi = c.min(0).values.tolist(), c.max(0).values.tolist()
        if all(seen[0][i] - CODE_TOL <= lo[i] and hi[i] <= seen[1][i] + CODE_TOL for i in range(2)):
            return
        self._range_warned.add(anchors.key())
        warnings.warn(AnchorRangeWarning(
            f"anchor set {anchors.spec}: codes b_h {lo[0]:.2f}..{hi[0]:.2f}, b_w {lo[1]:.2f}..{hi[1]:.2f} leave "
            f"the range seen in training (b_h {seen[0][0]:.2f}..{seen[1][0]:.2f}, b_w {seen[0][1]:.2f}.."
            f"{seen[1][1]:.2f}); the generated weights there are extrapolated"), stacklevel=3)

    def bake(self, anchors: str | AnchorSet, score_thresh: float | None = None) -> BaseDetector:
        """A NEW predefined-anchor detector of this family with ``anchors`` fixed and the generated
        last convs as its weights: same detections, no generator at run time (``deploy.bake``).

        ``score_thresh``: the baked model's threshold (what an export's metadata states), default this
        model's; exports for prediction use ``metaanchor.defaults.PREDICT_SCORE_THRESH``."""
        from metaanchor.families.bake import bake

        baked = bake(self, anchors)
        if score_thresh is not None:
            if not 0.0 <= score_thresh <= 1.0:
                raise UserError(f"score_thresh={score_thresh}: must be in 0..1")
            baked.score_thresh = float(score_thresh)
            baked.config["score_thresh"] = float(score_thresh)
        return baked

    def grid(self, feature_shapes: list[tuple[int, int]], device) -> Tensor:
        """[A, 4] anchors for these feature-map sizes, cached per (anchor set, sizes, device)."""
        key = (self.anchors.key(), tuple(feature_shapes), str(device))
        if key not in self._grid_cache:
            sizes = self.anchors.sizes(self.standard_sizes)
            self._grid_cache[key] = grid_anchors(sizes, feature_shapes, self.strides, device)
            while len(self._grid_cache) > GRID_CACHE_SIZE:
                self._grid_cache.popitem(last=False)
        self._grid_cache.move_to_end(key)
        return self._grid_cache[key]

    # -------------------------------------------------------------- inference speed
    def optimize_for_inference(self, fuse_bn: bool = True, channels_last: bool = True) -> BaseDetector:
        """Convert this model in place for faster inference and return it (eval mode).

        ``fuse_bn`` folds every BatchNorm of the backbone into the conv before it
        (exact in eval mode; the model can no longer be trained or saved).
        ``channels_last`` stores conv weights and activations NHWC, which oneDNN
        runs without layout reorders on CPU and which makes the head's flatten a view.
        Detections equal the plain model's up to float rounding.
        """
        self.eval()
        if fuse_bn and not self._bn_folded:
            self._bn_folded = fold_batchnorm(self.backbone) > 0
        return self.set_channels_last(channels_last)

    def set_channels_last(self, enabled: bool = True) -> BaseDetector:
        """Run convolutions NHWC (``channels_last``), for training or inference; returns self.

        oneDNN (CPU) and cuDNN with AMP run NHWC convs without layout reorders
        (``solver.channels_last`` picks it for training; BENCHMARKS.md has the timings).
        Numerics differ from NCHW only by float rounding.
        """
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self._channels_last = enabled
        return self

    def train(self, mode: bool = True) -> BaseDetector:
        if mode and self._bn_folded:
            raise RuntimeError(f"this {type(self).__name__} had its BatchNorm folded by optimize_for_inference() and "
                               "is eval-only; train a model built from the checkpoint instead")
        return super().train(mode)

    @torch.inference_mode()
    def predict(self, images, anchors: str | AnchorSet | None = None, score_thresh: float | None = None,
                batch_size: int = 8) -> list[dict[str, Tensor]]:
        """Detect objects in images: paths, PIL images, [3, H, W] tensors in [0, 1] or [H, W, 3] RGB numpy
        arrays (``metaanchor.data.inputs``), one or a list (a [B, 3, H, W] tensor is B images).

        ``anchors`` and ``score_thresh`` override the model's for this call only (the model's own
        ``score_thresh`` is the evaluation threshold; ``metaanchor.load(...)(images)`` predicts with
        ``metaanchor.defaults.PREDICT_SCORE_THRESH`` and returns ``Results``).
        Returns per image {"boxes": [D, 4] x1y1x2y2 pixels, "scores": [D], "labels": [D]}.
        """
        import numpy as np
        from PIL import Image

        from metaanchor.data.inputs import to_image_tensor

        single = (isinstance(images, (str, Path, Image.Image)) or (isinstance(images, Tensor) and images.dim() == 3)
                  or (isinstance(images, np.ndarray) and images.ndim in (2, 3)))
        if single:
            images = [images]
        device = next(self.parameters()).device
        tensors = [to_image_tensor(im) for im in images]
        with self.evaluating(anchors, score_thresh):
            out = []
            for i in range(0, len(tensors), batch_size):
                out += self([t.to(device) for t in tensors[i:i + batch_size]])
        return [{k: v.cpu() for k, v in d.items()} for d in out]

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Training: the family's losses ({"cls", "box", ...}). Eval: per image {"boxes", "scores", "labels"}.

        images: list of [3, H, W] in [0, 1]; targets: per image {"boxes": [N, 4] x1y1x2y2 pixels,
        "labels": [N] int64}. Detections are in each image's own pixels. Paths, PIL images and numpy
        arrays go to ``predict`` (dicts) or ``metaanchor.engine.api.Predictor`` (``Results``).
        """
        if isinstance(images, (str, Path, np.ndarray)) or type(images).__module__.startswith("PIL."):
            raise UserError(f"{type(self).__name__}(images) takes a list of [3, H, W] tensors in [0, 1], not a "
                            f"{type(images).__name__}; for files, PIL images or numpy arrays use model.predict(...) "
                            "or metaanchor.load(checkpoint)(...)")
        if self.training and targets is None:
            raise ValueError(f"{type(self).__name__} in training mode needs targets")
        if self.training:
            check_targets(targets, self.num_classes, len(images))
        batch, scales, sizes = self._batch(images)
        if not self.training:
            return self.detect(self.shared_features(batch), scales, sizes, images)
        return self.losses(batch, scale_targets(targets, scales, batch.device))

    def losses(self, batch: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        """The family's training losses for a batch [B, 3, H, W] and targets in its pixels."""
        raise NotImplementedError

    def raw_outputs(self, features: list[Tensor], exportable: bool = False) -> tuple[Tensor, Tensor]:
        """The family's head on pyramid features -> ([B, A, C] class logits, [B, A, 4] box parameters for
        ``self.box_coder``), what ``postprocess`` and exported graphs take. ``exportable``: ONNX-friendly ops."""
        raise NotImplementedError

    @torch.no_grad()
    def detect_many(self, images: list[Tensor], anchor_sets: list[str | AnchorSet]) -> list[list[dict]]:
        """Detections of the same images with several anchor sets at the cost of about one forward pass.

        The backbone and head towers (``shared_features``) run once per batch; only each set's
        generated last convs and the post-processing run per set. images: [3, H, W] tensors in [0, 1].
        Returns, per anchor set (in order), the per-image dicts ``forward`` returns in eval mode.
        The model's own anchor set and mode are restored.
        """
        sets = [AnchorSet.parse(a) for a in anchor_sets]
        old = self.anchors
        with self.evaluating():
            batch, scales, sizes = self._batch(images)
            shared = self.shared_features(batch)
            try:
                out = []
                for a in sets:
                    self.set_anchors(a)
                    out.append(self.detect(shared, scales, sizes, images))
            finally:
                self.set_anchors(old)
        return out

    @contextmanager
    def evaluating(self, anchors: str | AnchorSet | None = None, score_thresh: float | None = None):
        """Eval mode, optionally with another anchor set and score threshold; all restored on exit."""
        was_training, old_anchors, old_thresh = self.training, self.anchors, self.score_thresh
        self.eval()
        try:
            if anchors is not None:
                self.set_anchors(anchors)
            if score_thresh is not None:
                self.score_thresh = score_thresh
            yield self
        finally:
            self.score_thresh = old_thresh
            if anchors is not None:
                self.set_anchors(old_anchors)
            self.train(was_training)

    # --------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict:
        """Everything ``from_checkpoint`` needs: config, class names, anchors, weights."""
        return ckpt.model_payload(self.config | {"class_names": self.class_names, "category_ids": self.category_ids,
                                                 "anchors": self.train_anchors.to_dict()},
                                  self.state_dict())

    @classmethod
    def from_config(cls, config: dict) -> BaseDetector:
        """A new detector from its ``config`` (what ``self.config`` holds); every value is checked first
        (``check_args``: a ``ConfigError`` naming the key)."""
        return cls._build(cls.check_args(config))

    @classmethod
    def _build(cls, args: dict) -> BaseDetector:
        args = dict(args)
        seen = args.pop("code_range", None)  # set after training (set_code_range), not an argument
        model = cls(**args)
        if seen is not None:
            model.set_code_range(*seen)
        return model

    @classmethod
    def check_args(cls, config: dict, where: str = "model") -> dict:
        """``config`` (a ``self.config``, e.g. a checkpoint's ``model_config``) as constructor arguments, each
        value checked against the range its config key has (``Config``, ``BuildArgs``); ``code_range`` is kept.
        Unknown keys, a missing ``num_classes``, an anchor file or a malformed value raise a ``ConfigError``
        naming ``{where}.KEY``. Checked before anything is built: a hostile config cannot allocate or read."""
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: expected a dict, got a {type(config).__name__}")
        own = {n: cls.Config for n in fields(cls.Config) if n not in ("arch", "init_from")}
        sections = own | {n: BuildArgs for n in fields(BuildArgs)}
        unknown = [str(k) for k in config if k not in sections and k not in ("arch", "anchors", "code_range")]
        if unknown:
            raise ConfigError(f"{where}: unknown keys {ckpt.key_names(unknown)} (model.arch={cls.arch} takes "
                              f"{', '.join(sections)}, anchors, code_range)")
        if "num_classes" not in config:
            raise ConfigError(f"{where}: no num_classes")
        args = {k: check(sections[k], f"{where}.{k}", v) for k, v in config.items() if k in sections}
        cls.Config.check(defaults(cls.Config) | {k: v for k, v in args.items() if k in own})
        if "anchors" in config:
            args["anchors"] = _anchors_arg(config["anchors"], f"{where}.anchors")
        if config.get("code_range") is not None:
            args["code_range"] = _code_range_arg(config["code_range"], f"{where}.code_range")
        return args

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> BaseDetector:
        """Rebuild a detector from a checkpoint file written by training or ``save``.

        Only checkpoints of this family (``arch``); ``metaanchor.families.load_detector`` loads any."""
        return cls.from_payload(ckpt.load(path, map_location), path)

    @classmethod
    def from_payload(cls, payload: dict, path: str | Path = "(in memory)") -> BaseDetector:
        """Rebuild a detector from a checkpoint dict read by ``checkpoint.load`` (``path`` names it in errors).

        Nothing but the payload is read: the backbone's weights come from the checkpoint, never from
        ``backbone_weights`` (a download or another file), and the model is first built without memory
        (meta tensors) so that a config whose tensors the checkpoint does not hold is refused unallocated."""
        arch = payload["model_config"].get("arch", "retinanet")
        if arch != cls.arch:
            raise CheckpointError(f"checkpoint {path}: holds a model.arch={arch} model, not {cls.arch}; "
                                  "load it with metaanchor.families.load_detector")
        state = payload["model"]
        bad = next((k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)), None)
        if bad is not None:
            raise CheckpointError(f"checkpoint {path}: entry 'model' holds {bad!r}: "
                                  f"a {type(state[bad]).__name__}, not a tensor")
        try:
            args = cls.check_args(payload["model_config"], "model_config") | {"backbone_weights": None}
            with torch.device("meta"):
                shapes = cls._build(args).state_dict()
        except UserError as e:
            raise CheckpointError(f"checkpoint {path}: its model config is not usable here: {e}") from None
        except (TypeError, ValueError, KeyError, RuntimeError) as e:  # values in range that do not go together
            raise CheckpointError(f"checkpoint {path}: its model config does not fit this metaanchor "
                                  f"version ({first_line(e)})") from None
        problems = ckpt.state_dict_problems(shapes, state)
        if problems:
            raise CheckpointError(f"checkpoint {path}: weights do not fit the model: {'; '.join(problems)}")
        model = cls._build(args)
        ckpt.load_state(model, state, path)
        return model.eval()

    def save(self, path: str | Path) -> None:
        """Write a self-describing checkpoint (atomically)."""
        if self._bn_folded:
            raise RuntimeError("cannot save a detector whose BatchNorm was folded by optimize_for_inference()")
        ckpt.save(self.checkpoint_payload(), path)



def _anchors_arg(anchors, key: str) -> AnchorSet:
    """A config's anchor set: a SPEC string (not a file: a config read from a checkpoint reads no other
    file) or an ``AnchorSet.to_dict()`` dict."""
    try:
        if isinstance(anchors, dict):
            if not isinstance(anchors.get("spec"), (str, type(None))) or set(anchors) - {"spec", "shapes", "per_level"}:
                raise ConfigError(f"config key {key}: expected the keys spec, shapes, per_level, got {anchors!r:.200}")
            return AnchorSet.from_dict(anchors)
        if isinstance(anchors, str) and not anchors.strip().lower().endswith((".json", ".yaml", ".yml")):
            return AnchorSet.parse(anchors)
    except UserError as e:
        raise ConfigError(f"config key {key}: {e}") from None
    raise ConfigError(f"config key {key}: expected an anchor set (a dict or a SPEC string), got {anchors!r:.200}")


def _code_range_arg(code_range, key: str) -> list[list[float]]:
    """``set_code_range``'s [[lo_h, lo_w], [hi_h, hi_w]], finite numbers."""
    ok = (isinstance(code_range, (list, tuple)) and len(code_range) == 2
          and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in code_range)
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for p in code_range for v in p))
    if not ok:
        raise ConfigError(f"config key {key}: expected [[lo_h, lo_w], [hi_h, hi_w]] finite numbers, "
                          f"got {code_range!r:.200}")
    return [[float(v) for v in p] for p in code_range]


def check_class_args(num_classes: int, class_names: list[str] | None,
                     category_ids: list[int] | None) -> list[int] | None:
    """Validate class names and dataset category ids against ``num_classes``; returns the ids as a list."""
    if class_names is not None and len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names given for num_classes={num_classes}")
    if category_ids is None:
        return None
    category_ids = list(category_ids)
    if (len(category_ids) != num_classes or len(set(category_ids)) != num_classes
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in category_ids)):
        raise UserError(f"category ids {category_ids}: need {num_classes} distinct integers (one per class)")
    return category_ids


def scale_targets(targets: list[dict], scales: list[tuple[float, float]], device) -> list[dict]:
    """Ground-truth boxes from image pixels to batch pixels (the batcher's per-image (sx, sy))."""
    return [{"boxes": t["boxes"].to(device) * xyxy_scale(s, device), "labels": t["labels"]}
            for t, s in zip(targets, scales)]


def to_image_pixels(dets: list[dict[str, Tensor]], scales: list[tuple[float, float]],
                    images: list[Tensor]) -> list[dict[str, Tensor]]:
    """Map per-image detections from batch pixels back to each original image, clipped to it (in place)."""
    for d, s, img in zip(dets, scales, images):
        d["boxes"] = d["boxes"] / xyxy_scale(s, d["boxes"].device)
        d["boxes"][:, 0::2].clamp_(0, img.shape[-1])
        d["boxes"][:, 1::2].clamp_(0, img.shape[-2])
    return dets


def xyxy_scale(scale: tuple[float, float], device) -> Tensor:
    """(sx, sy) -> [4] multiplier for x1y1x2y2 boxes."""
    sx, sy = scale
    return torch.tensor([sx, sy, sx, sy], device=device)
