"""torchvision's ``RetinaNet`` and ours side by side: state-dict key names and how to build theirs.

Shared by the export to torchvision (``torchvision_export``) and the import from it (``torchvision_import``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from metaanchor.checkpoint import load_tensor_file
from metaanchor.errors import UserError
from metaanchor.families.retinanet import RetinaNetDetector
from metaanchor.families.retinanet.from_torchvision import (  # noqa: F401 (the import's names, also used here)
    FPN_CHANNELS,
    RESNET_LAYOUTS,
    TORCHVISION_DEFAULTS,
    TOWER_CONVS,
    plain_state_dict,
    torchvision_key,
)
from metaanchor.geometry.anchors import cell_anchors
from metaanchor.modeling.backbones import RESNETS

BUILD_FORMAT = "metaanchor-torchvision-retinanet"


def _check_exportable(model) -> None:
    """A torchvision RetinaNet has a ResNet-FPN backbone (256 channels), 4-conv towers without norm."""
    cfg = getattr(model, "config", {})
    if not isinstance(model, RetinaNetDetector):
        raise UserError(f"torchvision RetinaNet export: needs a model.arch=retinanet model, not {cfg.get('arch')}")
    bad = [f"model.{k}={cfg[k]}" for k, ok in (("backbone", cfg["backbone"] in RESNETS),
                                               ("fpn_channels", cfg["fpn_channels"] == FPN_CHANNELS),
                                               ("head_convs", cfg["head_convs"] == TOWER_CONVS),
                                               ("head_norm", cfg["head_norm"] == "none"),
                                               ("p6_input", cfg.get("p6_input", "p5") == "p5")) if not ok]
    if bad:
        raise UserError(f"torchvision RetinaNet export: {', '.join(bad)} has no torchvision RetinaNet equivalent "
                        f"(needs a ResNet backbone, fpn_channels={FPN_CHANNELS}, head_convs={TOWER_CONVS}, "
                        "head_norm=none, p6_input=p5)")


def torchvision_state_dict(model: RetinaNetDetector) -> dict[str, Tensor]:
    """The state dict of a predefined-anchor RetinaNetDetector under torchvision RetinaNet's keys."""
    _check_exportable(model)
    if model.head_type != "predefined":
        raise UserError("torchvision RetinaNet export: needs a predefined-anchor head; bake the MetaAnchor "
                        "model with an anchor set first (metaanchor export bakes it)")
    return {torchvision_key(k): v.detach().cpu().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- building
def torchvision_build(model: RetinaNetDetector) -> dict:
    """What ``build_torchvision_retinanet`` needs to rebuild ``model`` in torchvision (JSON-able)."""
    _check_exportable(model)
    sizes = model.anchors.sizes(model.standard_sizes)  # per level [K, 2] (h, w)
    batcher = model.batcher
    return {
        "format": BUILD_FORMAT, "backbone": model.config["backbone"], "frozen_bn": bool(model.config["frozen_bn"]),
        "bn_eps": model.config.get("bn_eps", 1e-5),
        "num_classes": model.num_classes, "class_names": model.class_names, "category_ids": model.category_ids,
        # torchvision derives each level's stride as padded size // feature size: our nominal strides need
        # padding to multiples of 128; a model with grid_strides=padded (an import) uses torchvision's own rule
        "min_size": batcher.min_size, "max_size": batcher.max_size, "size_divisible":
            batcher.size_divisible if model.config.get("grid_strides") == "padded" else max(model.strides),
        "image_mean": batcher.mean.flatten().tolist(), "image_std": batcher.std.flatten().tolist(),
        "score_thresh": model.score_thresh, "nms_thresh": model.nms_thresh,
        "detections_per_img": model.detections_per_img, "topk_candidates": model.topk_candidates,
        "anchors": {"spec": model.anchors.spec, "cell_anchors": [cell_anchors(s).tolist() for s in sizes]},
    }


def build_torchvision_retinanet(build: dict) -> RetinaNet:
    """A torchvision RetinaNet (random weights, eval mode) as ``build`` (``torchvision_build``) describes."""
    norm = FrozenBatchNorm2d if build["frozen_bn"] else nn.BatchNorm2d
    backbone = resnet_fpn_backbone(backbone_name=build["backbone"], weights=None, norm_layer=norm, trainable_layers=5,
                                   returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    for m in backbone.modules():  # torchvision sets its COCO v1 model's epsilon the same way (overwrite_eps)
        if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            m.eps = build.get("bn_eps", 1e-5)
    cells = [torch.tensor(a, dtype=torch.float32) for a in build["anchors"]["cell_anchors"]]
    # sizes/ratios only fix the anchor count per level; the exact boxes are the cell anchors
    generator = AnchorGenerator(tuple((1.0,) for _ in cells), tuple((1.0,) * len(c) for c in cells))
    generator.cell_anchors = cells
    net = RetinaNet(backbone, build["num_classes"], min_size=build["min_size"], max_size=build["max_size"],
                    image_mean=build["image_mean"], image_std=build["image_std"], anchor_generator=generator,
                    score_thresh=build["score_thresh"], nms_thresh=build["nms_thresh"],
                    detections_per_img=build["detections_per_img"], topk_candidates=build["topk_candidates"],
                    size_divisible=build["size_divisible"])
    return net.eval()


def torchvision_retinanet_for(model: RetinaNetDetector) -> RetinaNet:
    """A torchvision RetinaNet matching ``model``: backbone, FPN, classes, exact anchors, transform and
    post-processing settings (random weights; load ``torchvision_state_dict(model)`` into it)."""
    return build_torchvision_retinanet(torchvision_build(model))


# ----------------------------------------------------------------------------- reading
def read_state_dict(path: str | Path, option: str) -> dict:
    state = load_tensor_file(path, f"{option} {path}", "not a PyTorch state dict")
    return plain_state_dict(state, f"{option} {path}")
