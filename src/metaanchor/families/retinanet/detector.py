"""RetinaNet with a MetaAnchor or predefined-anchor head: backbone + FPN (P3..P7), two towers, anchors.

    det = RetinaNetDetector(num_classes=3, backbone="tiny", head="metaanchor", anchors="3x3")
    losses = det(images, targets)           # training mode: {"cls", "box"}
    dets = det(images)                      # eval mode: per image {boxes, scores, labels}
    det.set_anchors("5x5")                  # any time (MetaAnchor heads)

``metaanchor.Detector`` is this class. Inputs and outputs as ``BaseDetector``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metaanchor.errors import ConfigError, UserError
from metaanchor.families.base import GRID_CACHE_SIZE, MAX_CHANNELS, BaseDetector, ModelConfig, to_image_pixels
from metaanchor.families.retinanet.heads import NORMS, MetaAnchorHead, PredefinedAnchorHead
from metaanchor.families.retinanet.loss import REG_LOSSES, detection_loss
from metaanchor.geometry.anchors import ANCHOR_BASE, PYRAMID_STRIDES, AnchorSet, cell_anchors, standard_sizes
from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.geometry.matcher import Matcher
from metaanchor.geometry.resize import PAD_MULTIPLE
from metaanchor.modeling.backbones import BN_EPS, P6_INPUTS, build_backbone
from metaanchor.modeling.postprocess import postprocess_levels
from metaanchor.modeling.transform import TRANSFORMS, ImageBatcher
from metaanchor.schema import option

# Where each level's anchor centres are: ``nominal`` at x * stride (8 .. 128); ``padded`` at x * (padded batch
# side // feature side), torchvision's AnchorGenerator (equal unless the padded side is not a multiple of 128).
GRID_STRIDES = ("nominal", "padded")


@dataclass
class RetinaNetConfig(ModelConfig):
    """``model`` keys of ``model.arch=retinanet`` (the constructor's arguments)."""

    fpn_channels: int = option(64, low=0, low_open=True, high=MAX_CHANNELS)  # channels of P3..P7 and the towers
    head_convs: int = option(4, low=0, high=16)  # 3x3 convs per head tower
    head_norm: str = option("none", choices=NORMS)  # gn: GroupNorm in the towers
    reg_loss: str = option("smooth_l1", choices=REG_LOSSES)  # box loss: on the deltas, or GIoU on decoded boxes
    fg_iou: float = option(0.5, low=0, high=1)  # anchors matched at this IoU or more are foreground
    bg_iou: float = option(0.4, low=0, high=1)  # below it background; in between ignored
    # Settings that reproduce torchvision's RetinaNets exactly (``metaanchor import`` sets them; the defaults
    # are this library's own behaviour):
    p6_input: str = option("p5", choices=P6_INPUTS)  # P6 from P5 (retinanet_resnet50_fpn) or C5 (its v2)
    bn_eps: float = option(BN_EPS, low=0, high=1)  # BatchNorm epsilon (torchvision's v1 COCO weights: 0)
    transform: str = option("metaanchor", choices=TRANSFORMS)  # torchvision: its normalise + resize rule
    grid_strides: str = option("nominal", choices=GRID_STRIDES)  # padded: torchvision's per-batch strides
    skip_padding_anchors: bool = option(True)  # False: anchors centred in the padding detect too (torchvision)

    @classmethod
    def check(cls, section: dict) -> None:
        if section["bg_iou"] > section["fg_iou"]:
            raise ConfigError(f"config keys model.bg_iou={section['bg_iou']} and model.fg_iou={section['fg_iou']}: "
                              "bg_iou must not exceed fg_iou")


class RetinaNetDetector(BaseDetector):
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
        p6_input, bn_eps, transform, grid_strides, skip_padding_anchors: see ``RetinaNetConfig``;
            an imported torchvision RetinaNet sets them to torchvision's behaviour.
    """

    arch = "retinanet"  # registry name (metaanchor.families.ARCHS)
    Config = RetinaNetConfig
    pyramid_strides = PYRAMID_STRIDES  # P3..P7

    def __init__(self, num_classes: int, class_names: list[str] | None = None, backbone: str = "tiny",
                 head: str = "metaanchor", anchors: str | AnchorSet = "3x3", fpn_channels: int = 256,
                 head_convs: int = 4, head_norm: str = "none", hidden_dim: int = 32,
                 min_size: int = 512, max_size: int = 512,
                 anchor_base: float = ANCHOR_BASE, fg_iou: float = 0.5, bg_iou: float = 0.4,
                 reg_loss: str = "smooth_l1", score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 topk_candidates: int = 1000, detections_per_img: int = 100,
                 backbone_weights: str | None = None, frozen_bn: bool = False,
                 category_ids: list[int] | None = None, p6_input: str = "p5", bn_eps: float = BN_EPS,
                 transform: str = "metaanchor", grid_strides: str = "nominal",
                 skip_padding_anchors: bool = True):
        super().__init__()
        if head_norm not in NORMS:
            raise UserError(f"model.head_norm={head_norm!r} is unknown; choose one of {', '.join(NORMS)}")
        if reg_loss not in REG_LOSSES:
            raise UserError(f"model.reg_loss={reg_loss!r} is unknown; choose one of {', '.join(REG_LOSSES)}")
        for key, value, choices in (("transform", transform, TRANSFORMS),
                                    ("grid_strides", grid_strides, GRID_STRIDES)):
            if value not in choices:
                raise UserError(f"model.{key}={value!r} is unknown; choose one of {', '.join(choices)}")
        anchors = AnchorSet.parse(anchors)
        self._init_common(dict(arch=self.arch, backbone=backbone, fpn_channels=fpn_channels,
                               head_convs=head_convs, head_norm=head_norm, hidden_dim=hidden_dim,
                               min_size=min_size, max_size=max_size, anchor_base=anchor_base, fg_iou=fg_iou,
                               bg_iou=bg_iou, reg_loss=reg_loss, score_thresh=score_thresh, nms_thresh=nms_thresh,
                               topk_candidates=topk_candidates, detections_per_img=detections_per_img,
                               backbone_weights=None, frozen_bn=frozen_bn, p6_input=p6_input, bn_eps=bn_eps,
                               transform=transform, grid_strides=grid_strides,
                               skip_padding_anchors=skip_padding_anchors),
                          num_classes, class_names, category_ids, head, anchors)
        self.backbone = build_backbone(backbone, fpn_channels, backbone_weights, frozen_bn, p6_input=p6_input,
                                       bn_eps=bn_eps)
        self.strides = list(self.backbone.strides)
        self.batcher = ImageBatcher(min_size, max_size, size_divisible=PAD_MULTIPLE, transform=transform)
        self.grid_strides, self.skip_padding_anchors = grid_strides, skip_padding_anchors
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
        self.set_anchors(anchors)

    def losses(self, batch: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        """Training losses {"cls", "box"}; targets in the batch's pixels."""
        features = self.backbone(batch)
        cls_logits, box_deltas = self.head(features)  # [B, A, C], [B, A, 4]
        anchors = self.grid([tuple(f.shape[-2:]) for f in features], batch.device)  # [A, 4]
        return detection_loss(cls_logits, box_deltas, anchors, targets, self.matcher, self.box_coder, self.reg_loss)

    def raw_outputs(self, features: list[Tensor], exportable: bool = False) -> tuple[Tensor, Tensor]:
        """Head outputs as post-processing takes them: [B, A, C] class logits, [B, A, 4] box deltas."""
        return self.head(features)

    def shared_features(self, batch: Tensor) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
        """What no anchor set changes: pyramid features and the head's tower outputs, per level."""
        features = self.backbone(batch)
        return features, self.head.towers(features)

    def detect(self, shared, scales: list, sizes: list[tuple[int, int]], images: list[Tensor]) -> list[dict]:
        """Detections with the current anchor set from ``shared_features``, in each image's own pixels."""
        features, towers = shared
        anchors = self.grid([tuple(f.shape[-2:]) for f in features], features[0].device)  # [A, 4]
        levels = self.head.level_outputs(features, towers)  # lazy: one level's [B, A_l, C] logits at a time
        dets = postprocess_levels(levels, anchors, sizes, self.box_coder,  # per-image sizes
                                  self.score_thresh, self.nms_thresh, self.topk_candidates, self.detections_per_img,
                                  skip_padding=self.skip_padding_anchors)
        return to_image_pixels(dets, scales, images)

    def grid(self, feature_shapes: list[tuple[int, int]], device) -> Tensor:
        """[A, 4] anchors for these feature-map sizes (``grid_strides``: nominal or torchvision's padded)."""
        if self.grid_strides == "nominal":
            return super().grid(feature_shapes, device)
        key = ("padded", self.anchors.key(), tuple(feature_shapes), str(device))
        if key not in self._grid_cache:
            self._grid_cache[key] = padded_grid(self.anchors.sizes(self.standard_sizes), feature_shapes,
                                                self.strides[0], device)
            while len(self._grid_cache) > GRID_CACHE_SIZE:
                self._grid_cache.popitem(last=False)
        self._grid_cache.move_to_end(key)
        return self._grid_cache[key]


def padded_grid(sizes: list[Tensor], feature_shapes: list[tuple[int, int]], first_stride: int, device) -> Tensor:
    """Anchors as torchvision's ``AnchorGenerator`` places them: level l's centres at (x * sx_l, y * sy_l)
    with sy_l = Hp // H_l, sx_l = Wp // W_l of the padded batch Hp x Wp (= the first level's size x its
    stride: the batch is padded to a multiple of the deepest body stride, which the first level divides).

    Args: sizes: per-level [K_l, 2] (h, w) pixels; feature_shapes: per-level (H_l, W_l).
    Returns: [sum_l H_l*W_l*K_l, 4] x1y1x2y2, level, position (row-major), anchor.
    """
    hp, wp = (n * first_stride for n in feature_shapes[0])
    out = []
    for s, (fh, fw) in zip(sizes, feature_shapes):
        base = cell_anchors(s.to(device))  # [K, 4]
        ys = torch.arange(fh, device=device, dtype=torch.float32) * (hp // fh)
        xs = torch.arange(fw, device=device, dtype=torch.float32) * (wp // fw)
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # [HW, 1, 4]
        out.append((shifts + base[None]).reshape(-1, 4))
    return torch.cat(out)
