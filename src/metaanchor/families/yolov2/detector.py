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
- training: YOLOv2's assignment and loss (``metaanchor.families.yolov2.loss``).

One standard box, square with side ``anchor_base * 32`` (128 px by default: RetinaNet's
P5 standard box, and about the geometric mean of YOLOv2's VOC anchors at 416 px), so a
level-relative anchor file means the same pixel sizes as at RetinaNet's P5.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from metaanchor.data.box_shapes import box_shapes
from metaanchor.families.base import MAX_CHANNELS, BaseDetector, ModelConfig, to_image_pixels
from metaanchor.families.yolov2.backbone import STRIDE, build_yolo_backbone
from metaanchor.families.yolov2.box_coder import YoloBoxCoder
from metaanchor.families.yolov2.heads import MetaAnchorYoloHead, PredefinedYoloHead, score_logits
from metaanchor.families.yolov2.loss import box_slice, yolo_loss
from metaanchor.geometry.anchors import ANCHOR_BASE, AnchorSet, standard_sizes
from metaanchor.modeling.postprocess import postprocess
from metaanchor.modeling.transform import ImageBatcher
from metaanchor.schema import option

# YOLOv2's k-means anchors for VOC (yolo-voc.cfg, (w, h) in 32 px cells at 416 px), as (h, w) shapes
# relative to the 128 px standard box: the constructor's default. Training should use anchors fitted to
# the data (``fit_yolo_anchors``), as YOLOv2 did.
YOLOV2_VOC_ANCHORS = AnchorSet(
    [(h / 4, w / 4) for w, h in ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892),
                                 (9.47112, 4.84053), (11.2364, 10.0071))], spec="yolov2-voc")


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
