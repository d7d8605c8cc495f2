"""YOLOv2's backbone: a body's C4 and C5, and the passthrough neck that joins them at stride 32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

from metaanchor.errors import UserError
from metaanchor.modeling.backbones import BACKBONES, RESNETS, TinyBackbone, _load_backbone_weights

STRIDE = 32
LEAKY_SLOPE = 0.1  # YOLOv2's leaky ReLU


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
