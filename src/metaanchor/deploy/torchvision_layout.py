"""torchvision's ``RetinaNet`` and ours side by side: state-dict key names and how to build theirs.

Shared by the export to torchvision (``torchvision_export``) and the import from it (``torchvision_import``).
"""

from __future__ import annotations

import re
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
from metaanchor.geometry.anchors import cell_anchors
from metaanchor.modeling.backbones import RESNETS

BUILD_FORMAT = "metaanchor-torchvision-retinanet"
TOWER_CONVS = 4  # torchvision's RetinaNetHead has 4 convs per tower
FPN_CHANNELS = 256
# torchvision's retinanet_resnet50_fpn defaults, used for imported models
TORCHVISION_DEFAULTS = dict(min_size=800, max_size=1333, detections_per_img=300, score_thresh=0.05,
                            nms_thresh=0.5, topk_candidates=1000)
# (bottleneck blocks?, blocks in layer3) -> ResNet depth
RESNET_LAYOUTS = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}
# our key prefix -> torchvision's (first match wins; tower conv i is our Sequential index 2i)
_PREFIXES = [("backbone.body.", "backbone."), ("head.cls_logits.", "head.classification_head.cls_logits."),
             ("head.bbox_pred.", "head.regression_head.bbox_reg.")]
_TOWERS = {"cls_tower": "classification_head", "reg_tower": "regression_head"}


# ----------------------------------------------------------------------------- key mapping
def torchvision_key(key: str) -> str:
    """Our RetinaNetDetector state-dict key -> torchvision RetinaNet's (predefined-anchor head)."""
    m = re.fullmatch(r"head\.(cls_tower|reg_tower)\.(\d+)\.(\w+)", key)
    if m:
        return f"head.{_TOWERS[m[1]]}.conv.{int(m[2]) // 2}.0.{m[3]}"
    for ours, theirs in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise ValueError(f"no torchvision RetinaNet key for {key}")


def _check_exportable(model) -> None:
    """A torchvision RetinaNet has a ResNet-FPN backbone (256 channels), 4-conv towers without norm."""
    cfg = getattr(model, "config", {})
    if not isinstance(model, RetinaNetDetector):
        raise UserError(f"torchvision RetinaNet export: needs a model.arch=retinanet model, not {cfg.get('arch')}")
    bad = [f"model.{k}={cfg[k]}" for k, ok in (("backbone", cfg["backbone"] in RESNETS),
                                               ("fpn_channels", cfg["fpn_channels"] == FPN_CHANNELS),
                                               ("head_convs", cfg["head_convs"] == TOWER_CONVS),
                                               ("head_norm", cfg["head_norm"] == "none")) if not ok]
    if bad:
        raise UserError(f"torchvision RetinaNet export: {', '.join(bad)} has no torchvision RetinaNet equivalent "
                        f"(needs a ResNet backbone, fpn_channels={FPN_CHANNELS}, head_convs={TOWER_CONVS}, "
                        "head_norm=none)")


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
        "num_classes": model.num_classes, "class_names": model.class_names, "category_ids": model.category_ids,
        # torchvision derives each level's stride as padded size // feature size: exact only at multiples of 128
        "min_size": batcher.min_size, "max_size": batcher.max_size, "size_divisible": max(model.strides),
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


def plain_state_dict(state, where: str) -> dict[str, Tensor]:
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        state = state.get("model", state.get("state_dict", state))  # a training checkpoint around it
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise UserError(f"{where}: not a state dict (a mapping of parameter names to tensors)")
    return state
