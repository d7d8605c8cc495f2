"""The detector: backbone + FPN (P3..P7) + head + anchors, RetinaNet style.

    det = Detector(num_classes=3, backbone="tiny", head="metaanchor", anchors="3x3")
    losses = det(images, targets)           # training mode: {"cls", "box"}
    dets = det(images)                      # eval mode: per image {boxes, scores, labels}
    det.set_anchors("5x5")                  # any time (MetaAnchor heads)

Images are a list of [3, H, W] float tensors in [0, 1]; targets are per image
{"boxes": [N, 4] x1y1x2y2 pixels of that image, "labels": [N] int64 in 0..C-1}.
Detections come back in the same pixel coordinates.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from metaanchor import checkpoint as ckpt
from metaanchor.anchors import ANCHOR_BASE, AnchorSet, grid_anchors, standard_sizes
from metaanchor.backbones import STRIDES, build_backbone
from metaanchor.box_coder import BoxCoder
from metaanchor.errors import CheckpointError, UserError
from metaanchor.heads import NORMS, MetaAnchorHead, PredefinedAnchorHead
from metaanchor.losses import REG_LOSSES, detection_loss
from metaanchor.matcher import Matcher
from metaanchor.postprocess import postprocess
from metaanchor.transform import ImageBatcher

HEADS = ("metaanchor", "metaanchor-dd", "predefined")
GRID_CACHE_SIZE = 8


class Detector(nn.Module):
    """A RetinaNet-style detector with a MetaAnchor or predefined-anchor head.

    Args:
        num_classes: number of object classes C.
        class_names: C names (default "class0".. ).
        category_ids: the C dataset category ids that labels 0..C-1 stand for (COCO ``category_id``
            in written results; default 1..C, also for checkpoints that predate this field).
        backbone: ``tiny`` or ``resnet18/34/50/101``; ``backbone_weights`` a local file.
        head: ``metaanchor`` (data-independent generator), ``metaanchor-dd``
            (data-dependent) or ``predefined`` (classic RetinaNet baseline).
        anchors: the anchor set (SPEC string or AnchorSet) used now; a MetaAnchor
            head can change it with ``set_anchors``.
        min_size, max_size: input resize (short side, long-side cap).
        anchor_base: standard box side = anchor_base * stride.
        hidden_dim: generator MLP width. head_convs: convs per head tower;
            head_norm: ``none`` (RetinaNet) or ``gn`` (GroupNorm in the towers).
    """

    arch = "retinanet"  # registry name (metaanchor.families.ARCHS)

    def __init__(self, num_classes: int, class_names: list[str] | None = None, backbone: str = "tiny",
                 head: str = "metaanchor", anchors: str | AnchorSet = "3x3", fpn_channels: int = 256,
                 head_convs: int = 4, head_norm: str = "none", hidden_dim: int = 32,
                 min_size: int = 512, max_size: int = 512,
                 anchor_base: float = ANCHOR_BASE, fg_iou: float = 0.5, bg_iou: float = 0.4,
                 reg_loss: str = "smooth_l1", score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 topk_candidates: int = 1000, detections_per_img: int = 100,
                 backbone_weights: str | None = None, frozen_bn: bool = False,
                 category_ids: list[int] | None = None):
        super().__init__()
        if head not in HEADS:
            raise UserError(f"model.head={head!r} is unknown; choose one of {', '.join(HEADS)}")
        if head_norm not in NORMS:
            raise UserError(f"model.head_norm={head_norm!r} is unknown; choose one of {', '.join(NORMS)}")
        if reg_loss not in REG_LOSSES:
            raise UserError(f"model.reg_loss={reg_loss!r} is unknown; choose one of {', '.join(REG_LOSSES)}")
        if class_names is not None and len(class_names) != num_classes:
            raise UserError(f"{len(class_names)} class names given for num_classes={num_classes}")
        if category_ids is not None:
            category_ids = list(category_ids)
            if (len(category_ids) != num_classes or len(set(category_ids)) != num_classes
                    or not all(isinstance(c, int) and not isinstance(c, bool) for c in category_ids)):
                raise UserError(f"category ids {category_ids}: need {num_classes} distinct integers "
                                f"(one per class)")
        anchors = AnchorSet.parse(anchors)
        self.config = dict(num_classes=num_classes, class_names=list(class_names or []) or None, backbone=backbone,
                           head=head, anchors=anchors.to_dict(), fpn_channels=fpn_channels,
                           head_convs=head_convs, head_norm=head_norm, hidden_dim=hidden_dim,
                           min_size=min_size, max_size=max_size,
                           anchor_base=anchor_base, fg_iou=fg_iou, bg_iou=bg_iou, reg_loss=reg_loss,
                           score_thresh=score_thresh, nms_thresh=nms_thresh, topk_candidates=topk_candidates,
                           detections_per_img=detections_per_img, backbone_weights=None, frozen_bn=frozen_bn,
                           category_ids=category_ids)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class{i}" for i in range(num_classes)]
        self.category_ids = category_ids or list(range(1, num_classes + 1))
        self.head_type = head
        self.batcher = ImageBatcher(min_size, max_size, size_divisible=STRIDES[-1])
        self.backbone = build_backbone(backbone, fpn_channels, backbone_weights, frozen_bn)
        self.strides = list(STRIDES)
        self.standard_sizes = standard_sizes(self.strides, anchor_base)
        if head == "predefined":
            k = anchors.num_anchors(len(self.strides))[0]
            self.head = PredefinedAnchorHead(fpn_channels, num_classes, k, head_convs, norm=head_norm)
        else:
            self.head = MetaAnchorHead(fpn_channels, num_classes, head_convs, hidden_dim,
                                       data_dependent=head == "metaanchor-dd", norm=head_norm)
        self.box_coder = BoxCoder()
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)
        self.reg_loss = reg_loss
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img
        self._grid_cache: OrderedDict = OrderedDict()
        self._channels_last, self._bn_folded = False, False
        self.train_anchors = anchors
        self.set_anchors(anchors)

    # ------------------------------------------------------------------ anchors
    def set_anchors(self, anchors: str | AnchorSet) -> AnchorSet:
        """Use a new anchor set from now on (any set for MetaAnchor heads); returns it."""
        anchors = AnchorSet.parse(anchors)
        self.head.set_anchors(anchors.codes(self.standard_sizes))
        self.anchors = anchors
        return anchors

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

    # ------------------------------------------------------------------ forward
    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Training: losses {"cls", "box"}. Eval: per image {"boxes", "scores", "labels"}."""
        if self.training and targets is None:
            raise ValueError("Detector in training mode needs targets")
        batch, scales, sizes = self.batcher(images)
        if self._channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        features = self.backbone(batch)
        cls_logits, box_deltas = self.head(features)
        shapes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.grid(shapes, batch.device)
        if self.training:
            scaled = [{"boxes": t["boxes"].to(batch.device) * _xyxy_scale(s, batch.device),
                       "labels": t["labels"]} for t, s in zip(targets, scales)]
            return detection_loss(cls_logits, box_deltas, anchors, scaled, self.matcher, self.box_coder,
                                  self.reg_loss)
        level_sizes = [h * w * k for (h, w), k in zip(shapes, self.anchors.num_anchors(len(shapes)))]
        dets = postprocess(cls_logits, box_deltas, anchors, level_sizes, sizes, self.box_coder,  # per-image sizes
                           self.score_thresh, self.nms_thresh, self.topk_candidates, self.detections_per_img)
        for d, s, img in zip(dets, scales, images):
            d["boxes"] = d["boxes"] / _xyxy_scale(s, batch.device)
            d["boxes"][:, 0::2].clamp_(0, img.shape[-1])
            d["boxes"][:, 1::2].clamp_(0, img.shape[-2])
        return dets

    # -------------------------------------------------------------- inference speed
    def optimize_for_inference(self, fuse_bn: bool = True, channels_last: bool = True) -> Detector:
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

    def set_channels_last(self, enabled: bool = True) -> Detector:
        """Run convolutions NHWC (``channels_last``), for training or inference; returns self.

        oneDNN (CPU) and cuDNN with AMP run NHWC convs without layout reorders:
        on 2 CPU cores a ResNet-18-FPN training step at 512 px took ~4.6 s instead
        of ~5.4 s. Numerics differ from NCHW only by float rounding.
        """
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self._channels_last = enabled
        return self

    def train(self, mode: bool = True) -> Detector:
        if mode and self._bn_folded:
            raise RuntimeError("this Detector had its BatchNorm folded by optimize_for_inference() and is eval-only; "
                               "train a model built from the checkpoint instead")
        return super().train(mode)

    @torch.inference_mode()
    def predict(self, images, anchors: str | AnchorSet | None = None, score_thresh: float | None = None,
                batch_size: int = 8) -> list[dict[str, Tensor]]:
        """Detect objects in images (paths, PIL images or [3, H, W] tensors in [0, 1]).

        ``anchors`` overrides the current anchor set for this call only.
        Returns per image {"boxes": [D, 4] x1y1x2y2 pixels, "scores": [D], "labels": [D]}.
        """
        from PIL import Image

        from metaanchor.io import load_image

        single = isinstance(images, (str, Path, Image.Image)) or (isinstance(images, Tensor) and images.dim() == 3)
        if single:
            images = [images]
        device = next(self.parameters()).device
        tensors = [load_image(im) if not isinstance(im, Tensor) else im for im in images]
        with self.evaluating(anchors, score_thresh):
            out = []
            for i in range(0, len(tensors), batch_size):
                out += self([t.to(device) for t in tensors[i:i + batch_size]])
        return [{k: v.cpu() for k, v in d.items()} for d in out]

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
    def from_config(cls, config: dict) -> Detector:
        cfg = dict(config)
        cfg.pop("arch", None)  # the family's registry name (metaanchor.families), not an argument
        cfg["anchors"] = AnchorSet.from_dict(cfg["anchors"]) if isinstance(cfg.get("anchors"), dict) \
            else cfg.get("anchors", "3x3")
        return cls(**cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Detector:
        """Rebuild a detector from a checkpoint file written by training or ``save``.

        Only checkpoints of this family (``arch``); ``metaanchor.families.load_detector`` loads any."""
        return cls.from_payload(ckpt.load(path, map_location), path)

    @classmethod
    def from_payload(cls, payload: dict, path: str | Path = "(in memory)") -> Detector:
        """Rebuild a detector from a checkpoint dict read by ``checkpoint.load`` (``path`` names it in errors)."""
        arch = payload["model_config"].get("arch", "retinanet")
        if arch != cls.arch:
            raise CheckpointError(f"checkpoint {path}: holds a model.arch={arch} model, not {cls.arch}; "
                                  "load it with metaanchor.families.load_detector")
        try:
            model = cls.from_config(payload["model_config"])
        except UserError as e:
            raise CheckpointError(f"checkpoint {path}: its model config is not usable here: {e}") from None
        except (TypeError, ValueError, KeyError) as e:  # keys or values this version does not know
            raise CheckpointError(f"checkpoint {path}: its model config does not fit this metaanchor "
                                       f"version ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                                       ) from None
        ckpt.load_state(model, payload["model"], path)
        return model.eval()

    def save(self, path: str | Path) -> None:
        """Write a self-describing checkpoint (atomically)."""
        if self._bn_folded:
            raise RuntimeError("cannot save a Detector whose BatchNorm was folded by optimize_for_inference()")
        ckpt.save(self.checkpoint_payload(), path)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d / FrozenBatchNorm2d into the Conv2d registered just before it.

    Relies on registration order following data flow for conv -> BN pairs, as in
    torchvision's ResNets (conv1/bn1, downsample[0]/[1]) and our TinyBackbone.
    The BN is replaced by ``nn.Identity``. Returns the number of BNs folded.
    """
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, (nn.BatchNorm2d, FrozenBatchNorm2d))
                    and conv.out_channels == bn.weight.shape[0]):
                continue
            fused = copy.deepcopy(conv)
            running_mean, running_var = bn.running_mean, bn.running_var
            fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, running_mean, running_var,
                                                            bn.eps, bn.weight, bn.bias)
            parent._modules[conv_name], parent._modules[bn_name] = fused, nn.Identity()
            folded += 1
    return folded


def _xyxy_scale(scale: tuple[float, float], device) -> Tensor:
    sx, sy = scale
    return torch.tensor([sx, sy, sx, sy], device=device)
