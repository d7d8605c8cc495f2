"""The two models of the comparison: our RetinaNet detector and torchvision's ``RetinaNet``, built alike."""

from __future__ import annotations

import copy

import torch
from torch import nn

from metaanchor.engine.device import trains_channels_last
from metaanchor.families.retinanet import RetinaNetDetector

ANCHOR_BASES = (32, 64, 128, 256, 512)  # px, RetinaNet's anchor size of P3..P7


def torchvision_retinanet(backbone: str, num_classes: int, size: int, fpn_channels: int = 256) -> nn.Module:
    """torchvision's RetinaNet with our backbone settings: ResNet-FPN P3..P7 (``resnet_fpn_backbone``,
    no weights, plain BatchNorm2d, all layers trainable), 3x3 anchors, ``min_size = max_size = size``.
    ``backbone="tiny"``: our tiny pyramid as its body (seconds-long runs)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    if backbone == "tiny":
        from metaanchor.modeling.backbones import TinyFPNBackbone
        body = TinyFPNBackbone(fpn_channels)
    else:
        body = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in ANCHOR_BASES)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return RetinaNet(body, num_classes, min_size=size, max_size=size, anchor_generator=anchors)


def ours(backbone: str, num_classes: int, size: int, fpn_channels: int = 256) -> RetinaNetDetector:
    """Our detector of the same size: MetaAnchor head, 3x3 anchors, 4-conv towers."""
    return RetinaNetDetector(num_classes, backbone=backbone, fpn_channels=fpn_channels, head_convs=4,
                             min_size=size, max_size=size)


def ours_channels_last(device) -> bool:
    """Whether our optimised inference model runs NHWC: on the CPU, where oneDNN runs it without reorders."""
    return torch.device(device).type == "cpu"


def build_inference_models(backbone: str, num_classes: int, size: int, fpn_channels: int,
                           device) -> dict[str, nn.Module]:
    """{"tv": torchvision, "plain": our detector, "ours": our detector after ``optimize_for_inference()``},
    all in eval mode on ``device``, random weights (seed 0)."""
    torch.manual_seed(0)
    plain = ours(backbone, num_classes, size, fpn_channels).to(device)
    tv = torchvision_retinanet(backbone, num_classes, size, fpn_channels).to(device)
    optimised = copy.deepcopy(plain).optimize_for_inference(channels_last=ours_channels_last(device))
    return {"tv": tv.eval(), "plain": plain.eval(), "ours": optimised}


def build_training_models(backbone: str, num_classes: int, size: int, fpn_channels: int,
                          device) -> dict[str, nn.Module]:
    """{"ours": our detector (NHWC where the default ``solver.channels_last`` trains NHWC: CUDA), "tv": torchvision},
    train mode."""
    torch.manual_seed(1)
    nhwc = trains_channels_last(device)
    return {"ours": ours(backbone, num_classes, size, fpn_channels).to(device).set_channels_last(nhwc).train(),
            "tv": torchvision_retinanet(backbone, num_classes, size, fpn_channels).to(device).train()}


def set_score_thresh(models: dict[str, nn.Module], thresh: float) -> None:
    """Set the score threshold of every model (both families read ``.score_thresh`` at inference)."""
    for m in models.values():
        m.score_thresh = thresh
