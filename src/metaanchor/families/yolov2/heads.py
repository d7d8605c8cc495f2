"""YOLOv2's last layer, predefined (one 1x1 conv) or generated per anchor by MetaAnchor.

Per anchor 5 + C outputs: ``[objectness, class_0..class_{C-1}, tx, ty, tw, th]`` (``loss.OBJ``,
``loss.class_slice``, ``loss.box_slice``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metaanchor.families.yolov2.loss import OBJ, class_slice
from metaanchor.modeling.generator import AnchorFunctionGenerator, prior_bias
from metaanchor.modeling.head_parts import check_anchor_count, flatten_level


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
