"""Backbones with a feature pyramid (P3..P7), from torchvision parts.

``build_backbone(name)`` returns a module mapping images [B, 3, H, W] to a list
of five feature maps [B, out_channels, H/s, W/s] for strides 8, 16, 32, 64, 128.
Weights start random unless ``weights_path`` is a local state dict or ``imagenet``
(torchvision's weights, from its cache or downloaded: the only download, and only when asked).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from metaanchor.checkpoint import key_names, load_tensor_file
from metaanchor.errors import UserError
from metaanchor.geometry.anchors import PYRAMID_STRIDES as STRIDES
from metaanchor.modeling.pretrained import fetch_weights, torchvision_weights

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = ("tiny",) + RESNETS
IMAGENET = "imagenet"  # model.backbone_weights value: torchvision's ImageNet weights (downloaded when asked)
# what P6 (and so P7) is computed from: P5 (RetinaNet, torchvision's retinanet_resnet50_fpn) or the body's
# last map C5 (torchvision's retinanet_resnet50_fpn_v2, as in the FCOS/ATSS papers)
P6_INPUTS = ("p5", "c5")
BN_EPS = 1e-5  # BatchNorm's epsilon; torchvision's retinanet_resnet50_fpn COCO weights were trained with 0


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """A small CNN for CPU demos and tests: C3, C4, C5 at strides 8, 16, 32."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128)):
        super().__init__()
        w = widths
        self.stem = nn.Sequential(_conv_bn(3, w[0], 2), _conv_bn(w[0], w[1], 2))  # stride 4
        self.c3 = nn.Sequential(_conv_bn(w[1], w[2], 2), _conv_bn(w[2], w[2], 1))
        self.c4 = nn.Sequential(_conv_bn(w[2], w[3], 2), _conv_bn(w[3], w[3], 1))
        self.c5 = nn.Sequential(_conv_bn(w[3], w[4], 2), _conv_bn(w[4], w[4], 1))
        self.out_channels_list = list(w[2:])

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        return OrderedDict([("0", c3), ("1", c4), ("2", self.c5(c4))])


class TinyFPNBackbone(nn.Module):
    """TinyBackbone + torchvision FPN with P6/P7 from P5."""

    def __init__(self, out_channels: int, p6_input: str = "p5"):
        super().__init__()
        self.body = TinyBackbone()
        self.fpn = FeaturePyramidNetwork(self.body.out_channels_list, out_channels,
                                         extra_blocks=_p6p7(p6_input, self.body.out_channels_list[-1], out_channels))
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


class PyramidBackbone(nn.Module):
    """Wraps a dict-returning FPN backbone so it returns a list P3..P7."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.out_channels = body.out_channels
        self.strides = STRIDES

    def forward(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images).values())


def _p6p7(p6_input: str, c5_channels: int, out_channels: int) -> LastLevelP6P7:
    """torchvision's P6/P7 block from P5 or from C5 (it picks P5 exactly when its two widths are equal)."""
    if p6_input not in P6_INPUTS:
        raise UserError(f"model.p6_input={p6_input!r} is unknown; choose one of {', '.join(P6_INPUTS)}")
    if p6_input == "c5" and c5_channels == out_channels:
        raise UserError(f"model.p6_input=c5: C5 has {c5_channels} channels like the FPN, so torchvision's block "
                        "would read P5; use model.p6_input=p5")
    return LastLevelP6P7(c5_channels if p6_input == "c5" else out_channels, out_channels)


def build_backbone(name: str, out_channels: int = 256, weights_path: str | None = None,
                   frozen_bn: bool = False, trainable_layers: int = 5, p6_input: str = "p5",
                   bn_eps: float = BN_EPS) -> PyramidBackbone:
    """Build a P3..P7 pyramid backbone by name (``tiny``, ``resnet18/34/50/101``).

    ``p6_input``: P6 from ``p5`` or ``c5`` (``P6_INPUTS``); ``bn_eps``: the epsilon of every BatchNorm of
    the body (frozen or not)."""
    if name == "tiny":
        body = TinyFPNBackbone(out_channels, p6_input)
    elif name in RESNETS:
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        c5 = 2048 if name in ("resnet50", "resnet101") else 512
        body = resnet_fpn_backbone(backbone_name=name, weights=None, norm_layer=norm,
                                   trainable_layers=trainable_layers, returned_layers=[2, 3, 4],
                                   extra_blocks=_p6p7(p6_input, c5, out_channels))
        body.out_channels = out_channels
        if out_channels != 256:
            raise UserError(f"model.fpn_channels={out_channels}: ResNet backbones use 256 FPN channels")
    else:
        raise UserError(f"model.backbone={name!r} is unknown; choose one of {', '.join(BACKBONES)}")
    if bn_eps != BN_EPS:
        for m in body.modules():
            if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                m.eps = bn_eps
    if weights_path:
        _load_backbone_weights(body, weights_path, name)
    return PyramidBackbone(body)


def _load_backbone_weights(body: nn.Module, path: str, name: str) -> None:
    """Load a classification state dict into the body: ``imagenet`` (torchvision's weights for ``name``)
    or a local file (e.g. torchvision's resnet50 .pth). Anything but a mapping of names to tensors, or
    tensors whose shapes differ from the backbone's, is a one-line UserError naming the file."""
    if path == IMAGENET:
        state, where = imagenet_state_dict(name)
    else:
        where = f"model.backbone_weights={path}"
        state = load_tensor_file(path, where)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(f"{where}: not a state dict (a mapping of parameter names to tensors), "
                        f"a {type(state).__name__}" + (" of other values" if isinstance(state, dict) and state else ""))
    own = body.body.state_dict()
    if not any(k in own for k in state):
        raise UserError(f"{where}: no tensor matches the {name} backbone")
    shapes = [f"{k} {tuple(v.shape)} (backbone {tuple(own[k].shape)})" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    if shapes:
        raise UserError(f"{where}: the {name} backbone's tensors have other shapes: mismatched shapes "
                        f"{key_names(shapes)}")
    body.body.load_state_dict(state, strict=False)


def imagenet_state_dict(name: str) -> tuple[dict[str, Tensor], str]:
    """torchvision's ImageNet weights for ResNet ``name`` (IMAGENET1K_V1, as its detection models use), from
    its cache ``torch.hub.get_dir()/checkpoints``, downloaded there (with a progress bar) when missing.
    Offline and not cached: a one-line UserError naming the file, the cache folder and the URL
    (``modeling.pretrained.fetch_weights``). Returns the state dict and how error messages name it."""
    if name not in RESNETS:
        raise UserError(f"model.backbone_weights={IMAGENET}: torchvision has ImageNet weights for "
                        f"{', '.join(RESNETS)}, not for model.backbone={name}; use one of those or a local file")
    weights = torchvision_weights(f"{name.replace('resnet', 'ResNet')}_Weights.IMAGENET1K_V1")
    return fetch_weights(weights, f"model.backbone_weights={IMAGENET}")
