"""A YOLOv2-style detector (single stride-32 grid) with a MetaAnchor or predefined-anchor head.

    det = YoloV2Detector(num_classes=3, backbone="tiny", head="metaanchor", anchors="kmeans5.yaml")
    losses = det(images, targets)           # training mode: {"obj", "cls", "box"}
    dets = det(images)                      # eval mode: per image {boxes, scores, labels}
    det.set_anchors("5x5")                  # any time (MetaAnchor heads)

Same interface and inputs as every family (``metaanchor.families.base.BaseDetector``). What differs
from RetinaNet (``metaanchor.families.retinanet``):

- backbone: C5 (3x3 conv) concatenated with YOLOv2's passthrough of C4 (1x1 conv,
  then space-to-depth ``pixel_unshuffle(2)``), then ``head_convs`` 3x3 convs: one
  [B, fpn_channels, H/32, W/32] map (``PassthroughBackbone``);
- head: one 1x1 conv, per anchor 5 + C outputs (objectness, C classes, tx, ty, tw, th).
  The MetaAnchor head generates each anchor's slice from its code b with the same
  ``AnchorFunctionGenerator`` as RetinaNet (one generator for the whole slice);
- boxes: centre = (cell + sigmoid(tx, ty)) * stride, size = anchor size * exp(tw, th)
  (``YoloBoxCoder``); score = sigmoid(objectness) * sigmoid(class);
- training: YOLOv2's assignment and loss (``metaanchor.families.yolov2_loss``).

One standard box, square with side ``anchor_base * 32`` (128 px by default: RetinaNet's
P5 standard box, and about the geometric mean of YOLOv2's VOC anchors at 416 px), so a
level-relative anchor file means the same pixel sizes as at RetinaNet's P5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

from metaanchor.data.box_shapes import box_shapes
from metaanchor.errors import UserError
from metaanchor.families.base import MAX_CHANNELS, BaseDetector, ModelConfig, to_image_pixels
from metaanchor.families.yolov2_loss import OBJ, box_slice, class_slice, yolo_loss
from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet, standard_sizes
from metaanchor.geometry.box_coder import BBOX_XFORM_CLIP
from metaanchor.modeling.backbones import BACKBONES, RESNETS, TinyBackbone, _load_backbone_weights
from metaanchor.modeling.generator import AnchorFunctionGenerator, prior_bias
from metaanchor.modeling.heads import check_anchor_count, flatten_level
from metaanchor.modeling.postprocess import postprocess
from metaanchor.modeling.transform import ImageBatcher
from metaanchor.schema import option

STRIDE = 32
LEAKY_SLOPE = 0.1  # YOLOv2's leaky ReLU
# YOLOv2's k-means anchors for VOC (yolo-voc.cfg, (w, h) in 32 px cells at 416 px), as (h, w) shapes
# relative to the 128 px standard box: the constructor's default. Training should use anchors fitted to
# the data (``fit_yolo_anchors``), as YOLOv2 did.
YOLOV2_VOC_ANCHORS = AnchorSet(
    [(h / 4, w / 4) for w, h in ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892),
                                 (9.47112, 4.84053), (11.2364, 10.0071))], spec="yolov2-voc")


# ----------------------------------------------------------------------------- backbone
def _conv_bn_leaky(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


class PassthroughBackbone(nn.Module):
    """A body giving C4 (stride 16) and C5 (stride 32), plus YOLOv2's passthrough neck.

    ``body(images)`` returns a dict whose last two values are C4 and C5. Output: a one-item
    list [B, channels, H/32, W/32] (H, W multiples of 32).

    Args:
        c4_channels, c5_channels: channels of the body's C4 and C5.
        channels: width of the neck and of the head input.
        num_convs: 3x3 convs after the concatenation (YOLOv2: 1).
        passthrough: channels of the 1x1 conv on C4 before space-to-depth (x4 after it);
            default ``max(8, channels // 8)`` (YOLOv2: 64 for a 1024-wide neck, i.e. 1/16).
    """

    def __init__(self, body: nn.Module, c4_channels: int, c5_channels: int, channels: int, num_convs: int = 1,
                 passthrough: int | None = None):
        super().__init__()
        if num_convs < 1:
            raise UserError(f"model.head_convs={num_convs}: the YOLOv2 neck needs at least one 3x3 conv")
        passthrough = passthrough or max(8, channels // 8)
        self.body = body
        self.c5_conv = _conv_bn_leaky(c5_channels, channels, 3)
        self.passthrough = _conv_bn_leaky(c4_channels, passthrough, 1)
        self.fuse = nn.Sequential(*[_conv_bn_leaky(channels + 4 * passthrough if i == 0 else channels, channels, 3)
                                    for i in range(num_convs)])
        self.out_channels = channels
        self.strides = (STRIDE,)

    def forward(self, images: Tensor) -> list[Tensor]:
        *_, c4, c5 = self.body(images).values()
        reorg = F.pixel_unshuffle(self.passthrough(c4), 2)  # [B, 4p, H/32, W/32]
        return [self.fuse(torch.cat([reorg, self.c5_conv(c5)], 1))]


def build_yolo_backbone(name: str, channels: int, num_convs: int = 1, weights_path: str | None = None,
                        frozen_bn: bool = False) -> PassthroughBackbone:
    """``tiny`` (C4, C5 of TinyBackbone) or a torchvision ResNet (layer3, layer4), random weights
    unless ``weights_path`` is a local classification state dict."""
    if name == "tiny":
        body = TinyBackbone()
        c4, c5 = body.out_channels_list[-2:]
    elif name in RESNETS:
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        net = getattr(torchvision.models, name)(weights=None, norm_layer=norm)
        c5 = net.inplanes  # 512 * block expansion
        c4 = c5 // 2
        body = IntermediateLayerGetter(net, {"layer3": "c4", "layer4": "c5"})
    else:
        raise UserError(f"model.backbone={name!r} is unknown; choose one of {', '.join(BACKBONES)}")
    backbone = PassthroughBackbone(body, c4, c5, channels, num_convs)
    if weights_path:
        _load_backbone_weights(backbone, weights_path, name)
    return backbone


# --------------------------------------------------------------------------- box coding
class YoloBoxCoder:
    """YOLOv2's box parameterisation for grid anchors of one stride.

    An anchor is given as x1y1x2y2 centred on the top-left corner of its cell
    (``grid_anchors``' convention: centre (x * stride, y * stride)). For t = (tx, ty, tw, th):
    centre = corner + sigmoid(tx, ty) * stride, (w, h) = anchor (w, h) * exp(tw, th),
    with tw, th clamped at ``clip`` (torchvision's ``bbox_xform_clip``).
    Any leading shape: ``[..., 4]`` t with ``[..., 4]`` anchors (broadcast).
    """

    def __init__(self, stride: int = STRIDE, clip: float = BBOX_XFORM_CLIP):
        self.stride, self.clip = stride, clip

    def to_dict(self) -> dict:
        """How t decodes, for deployment (``deploy.numpy_postprocess.decode``)."""
        return {"name": "yolov2", "stride": self.stride, "clip": self.clip}

    def decode(self, t: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] (tx, ty, tw, th), [..., 4] anchors -> [..., 4] boxes x1y1x2y2 pixels."""
        ax, ay = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        cx = ax + torch.sigmoid(t[..., 0]) * self.stride
        cy = ay + torch.sigmoid(t[..., 1]) * self.stride
        w = aw * torch.exp(t[..., 2].clamp(max=self.clip))
        h = ah * torch.exp(t[..., 3].clamp(max=self.clip))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """[..., 4] boxes and the anchors they are assigned to -> [..., 4] targets
        (ox, oy, log(w / aw), log(h / ah)), ox, oy the centre's offset in the cell in [0, 1]."""
        ax, ay = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        ox = ((boxes[..., 0] + boxes[..., 2]) / 2 - ax) / self.stride
        oy = ((boxes[..., 1] + boxes[..., 3]) / 2 - ay) / self.stride
        return torch.stack([ox.clamp(0, 1), oy.clamp(0, 1), torch.log(w / aw), torch.log(h / ah)], dim=-1)


# --------------------------------------------------------------------------------- heads
def slot_bias(num_classes: int, prior_prob: float = 0.01) -> Tensor:
    """Initial bias of one anchor's slice [5 + C]: objectness at ``prior_prob``, classes and box 0."""
    bias = torch.zeros(5 + num_classes)
    bias[OBJ] = prior_bias(prior_prob)
    return bias


class PredefinedYoloHead(nn.Module):
    """YOLOv2's last layer: a 1x1 conv with K * (5 + C) outputs for K fixed anchors (the baseline).

    ``head([x])`` with x [B, in, H, W] -> [B, H*W*K, 5 + C], position (row-major) then anchor.
    """

    def __init__(self, in_channels: int, num_classes: int, num_anchors: int, prior_prob: float = 0.01):
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.conv = nn.Conv2d(in_channels, num_anchors * (5 + num_classes), 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        with torch.no_grad():
            self.conv.bias.copy_(slot_bias(num_classes, prior_prob).repeat(num_anchors))

    def set_anchors(self, codes: list[Tensor]) -> None:
        check_anchor_count(self.num_anchors, codes)

    def forward(self, features: list[Tensor]) -> Tensor:
        (x,) = features
        return flatten_level(self.conv(x), 5 + self.num_classes)


class MetaAnchorYoloHead(nn.Module):
    """YOLOv2's last 1x1 conv, each anchor's slice (5 + C outputs) generated from its code b.

    theta_b = theta* + W2 relu(W1 b [+ W12 r(x)]), one ``AnchorFunctionGenerator`` for the
    whole slice; r(x) is the global average of the head input ([B, in]) when
    ``data_dependent``. theta* starts as the predefined head's slice (objectness prior 0.01).
    Not cached: a 1x1 generation costs hidden_dim * in * (5 + C) multiply-adds per anchor.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_dim: int = 32, data_dependent: bool = False,
                 prior_prob: float = 0.01, residual_std: float = 1e-4):
        super().__init__()
        self.num_classes = num_classes
        self.generator = AnchorFunctionGenerator(in_channels, 5 + num_classes, 1, hidden_dim,
                                                 data_dim=in_channels if data_dependent else 0,
                                                 residual_std=residual_std)
        with torch.no_grad():
            self.generator.bias.copy_(slot_bias(num_classes, prior_prob))
        self.codes: list[Tensor] = []

    @property
    def data_dependent(self) -> bool:
        return self.generator.data_dependent

    def set_anchors(self, codes: list[Tensor]) -> None:
        self.codes = [c.detach().float() for c in codes]

    @torch.no_grad()
    def baked_state(self, codes: Tensor) -> dict[str, Tensor]:
        """State dict of the ``PredefinedYoloHead`` whose 1x1 conv is the weights generated for codes [K, 2]."""
        weight, bias = self.generator(codes.to(self.generator.weight))  # [K*(5+C), in, 1, 1], [K*(5+C)]
        return {"conv.weight": weight, "conv.bias": bias}

    def forward(self, features: list[Tensor]) -> Tensor:
        (x,) = features
        if len(self.codes) != 1:
            raise RuntimeError(f"MetaAnchorYoloHead needs codes for 1 level, has {len(self.codes)}")
        data = x.mean(dim=(2, 3)) if self.data_dependent else None  # r(x): [B, in]
        weight, bias = self.generator(self.codes[0].to(x.device), data)
        if weight.dim() == 4:  # [K*P, in, 1, 1]: one conv for the batch
            out = F.conv2d(x, weight, bias)
        else:  # per-image weights [B, K*P, in, 1, 1]
            out = torch.einsum("bchw,boc->bohw", x, weight[..., 0, 0]) + bias[:, :, None, None]
        return flatten_level(out, 5 + self.num_classes)


def score_logits(out: Tensor, num_classes: int, exportable: bool = False) -> Tensor:
    """[B, A, 5 + C] head output -> [B, A, C] logit(sigmoid(objectness) * sigmoid(class)), float32.

    ``exportable``: log1p(-exp) instead of log(-expm1), which ONNX lacks (equal up to float rounding;
    less accurate for scores within ~1e-7 of 1)."""
    log_s = F.logsigmoid(out[..., OBJ:OBJ + 1].float()) + F.logsigmoid(out[..., class_slice(num_classes)].float())
    return log_s - (torch.log1p(-torch.exp(log_s)) if exportable else torch.log(-torch.expm1(log_s)))


# ------------------------------------------------------------------------------ detector
@dataclass
class YoloV2Config(ModelConfig):
    """``model`` keys of ``model.arch=yolov2`` (the constructor's arguments)."""

    fpn_channels: int = option(64, low=0, low_open=True, high=MAX_CHANNELS)  # width of the neck and head input
    head_convs: int = option(4, low=1, high=16)  # 3x3 convs after the passthrough concatenation (YOLOv2: 1)
    ignore_iou: float = option(0.6, low=0, high=1)  # predictions overlapping a ground truth more: not background


class YoloV2Detector(BaseDetector):
    """A YOLOv2-style detector with a MetaAnchor or predefined-anchor head.

    Args (as ``Detector`` where the names match):
        num_classes, class_names, category_ids: classes and their dataset ids.
        backbone: ``tiny`` or ``resnet18/34/50/101`` (C4 and C5); ``backbone_weights`` a local file.
        head: ``metaanchor``, ``metaanchor-dd`` (data-dependent) or ``predefined``.
        anchors: the anchor set (default YOLOv2's VOC k-means set); any set later with ``set_anchors``
            (MetaAnchor heads).
        fpn_channels: width of the neck and head input (named as RetinaNet's FPN width).
        head_convs: 3x3 convs after the passthrough concatenation (YOLOv2: 1).
        anchor_base: standard box side = anchor_base * 32.
        ignore_iou: predictions whose box overlaps a ground truth by more are not background.
    """

    arch = "yolov2"
    Config = YoloV2Config
    default_input_size = 416  # YOLOv2's 13 x 13 grid
    pyramid_strides = (STRIDE,)

    def __init__(self, num_classes: int, class_names: list[str] | None = None, backbone: str = "tiny",
                 head: str = "metaanchor", anchors: str | AnchorSet = YOLOV2_VOC_ANCHORS, fpn_channels: int = 256,
                 head_convs: int = 1, hidden_dim: int = 32, min_size: int = 416, max_size: int = 416,
                 anchor_base: float = ANCHOR_BASE, ignore_iou: float = 0.6, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, topk_candidates: int = 1000, detections_per_img: int = 100,
                 backbone_weights: str | None = None, frozen_bn: bool = False,
                 category_ids: list[int] | None = None):
        super().__init__()
        anchors = AnchorSet.parse(anchors)
        self._init_common(dict(arch=self.arch, backbone=backbone, fpn_channels=fpn_channels, head_convs=head_convs,
                               hidden_dim=hidden_dim, min_size=min_size, max_size=max_size, anchor_base=anchor_base,
                               ignore_iou=ignore_iou, score_thresh=score_thresh, nms_thresh=nms_thresh,
                               topk_candidates=topk_candidates, detections_per_img=detections_per_img,
                               backbone_weights=None, frozen_bn=frozen_bn),
                          num_classes, class_names, category_ids, head, anchors)
        self.batcher = ImageBatcher(min_size, max_size, size_divisible=STRIDE)
        self.backbone = build_yolo_backbone(backbone, fpn_channels, head_convs, backbone_weights, frozen_bn)
        self.strides = [STRIDE]
        self.standard_sizes = standard_sizes(self.strides, anchor_base)
        if head == "predefined":
            self.head = PredefinedYoloHead(fpn_channels, num_classes, anchors.num_anchors(1)[0])
        else:
            self.head = MetaAnchorYoloHead(fpn_channels, num_classes, hidden_dim,
                                           data_dependent=head == "metaanchor-dd")
        self.box_coder = YoloBoxCoder(STRIDE)
        self.ignore_iou = ignore_iou
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img
        self.set_anchors(anchors)

    def losses(self, batch: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        """Training losses {"obj", "cls", "box"}; targets in the batch's pixels."""
        features = self.backbone(batch)
        out = self.head(features)  # [B, H*W*K, 5 + C]
        grid_hw = tuple(features[0].shape[-2:])
        anchors = self.grid([grid_hw], batch.device)  # [H*W*K, 4]
        return yolo_loss(out, anchors, grid_hw, targets, self.box_coder, self.ignore_iou)

    def raw_outputs(self, features: list[Tensor], exportable: bool = False) -> tuple[Tensor, Tensor]:
        """Head outputs as post-processing takes them: [B, A, C] class logits (objectness folded in),
        [B, A, 4] box parameters t, float32. ``exportable``: ONNX-friendly ops (``score_logits``)."""
        out = self.head(features).float()  # [B, H*W*K, 5 + C]
        return score_logits(out, self.num_classes, exportable), out[..., box_slice(self.num_classes)]

    def shared_features(self, batch: Tensor) -> list[Tensor]:
        """What no anchor set changes: the head input, [[B, C_neck, H/32, W/32]]."""
        return self.backbone(batch)

    def detect(self, features: list[Tensor], scales: list, sizes: list[tuple[int, int]],
               images: list[Tensor]) -> list[dict]:
        """Detections with the current anchor set from ``shared_features``, in each image's own pixels."""
        cls_logits, box_params = self.raw_outputs(features)  # [B, H*W*K, C], [B, H*W*K, 4]
        anchors = self.grid([tuple(features[0].shape[-2:])], features[0].device)  # [H*W*K, 4]
        dets = postprocess(cls_logits, box_params, anchors, [cls_logits.shape[1]], sizes, self.box_coder,
                           self.score_thresh, self.nms_thresh, self.topk_candidates, self.detections_per_img)
        return to_image_pixels(dets, scales, images)


def fit_yolo_anchors(dataset_dir, k: int = 5, images=None, seed: int = 0, scale: float = 1.0,
                     anchor_base: float = ANCHOR_BASE) -> AnchorSet:
    """YOLOv2's default anchors: k-means (distance 1 - IoU) on a dataset's box shapes.

    ``scale`` multiplies the boxes' pixel sizes first (input.size / image side when the network
    resizes the images). The shapes are relative to the standard box (``anchor_base * 32``):
    an anchor set for ``YoloV2Detector(anchors=...)`` or an anchor file (``write_anchor_file``).
    """
    return YoloV2Detector.fit_anchors(box_shapes(dataset_dir, images) * scale, k, anchor_base, seed)
