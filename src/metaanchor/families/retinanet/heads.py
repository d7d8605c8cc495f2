"""RetinaNet prediction heads: MetaAnchor (generated last layer) and predefined anchors.

Both heads share one interface so the detector does not care which it has:

    head.set_anchors(codes)        # per-level [K_l, 2] anchor codes b
    cls, reg = head(features)      # [B, A, C] logits, [B, A, 4] deltas

where A = sum_l H_l * W_l * K_l, ordered level, position (row-major), anchor.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metaanchor.modeling.generator import AnchorFunctionGenerator, prior_bias
from metaanchor.modeling.head_parts import check_anchor_count, flatten_level

NORMS = ("none", "gn")


class ConvTower(nn.Sequential):
    """``num_convs`` x (3x3 conv [+ GroupNorm] + ReLU), RetinaNet's subnet trunk.

    ``norm="none"`` is the original RetinaNet; ``"gn"`` (32 groups, or fewer for
    narrow heads) is torchvision's RetinaNet v2 and trains faster from scratch.
    """

    def __init__(self, channels: int, num_convs: int, norm: str = "none"):
        layers = []
        for _ in range(num_convs):
            conv = nn.Conv2d(channels, channels, 3, padding=1)
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            if norm == "gn":
                layers.append(nn.GroupNorm(min(32, channels // 4), channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _RetinaHead(nn.Module):
    """Shared towers; subclasses provide the last layer of each branch."""

    def __init__(self, in_channels: int, num_classes: int, num_convs: int = 4, norm: str = "none"):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.cls_tower = ConvTower(in_channels, num_convs, norm)
        self.reg_tower = ConvTower(in_channels, num_convs, norm)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features: per-level [B, in, H_l, W_l] -> ([B, A, C] logits, [B, A, 4] deltas)."""
        return self.outputs(features, self.towers(features))

    def towers(self, features: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """The anchor-independent part: per level (cls tower, reg tower) outputs, each [B, in, H_l, W_l]."""
        return [(self.cls_tower(x), self.reg_tower(x)) for x in features]

    def outputs(self, features: list[Tensor], towers: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """The last convs (for the current anchors) over tower outputs: ([B, A, C] logits, [B, A, 4] deltas).
        ``features`` (the head input) feeds only a data-dependent generator's r(x)."""
        cls_out, reg_out = zip(*self.level_outputs(features, towers))
        return torch.cat(cls_out, 1), torch.cat(reg_out, 1)

    def level_outputs(self, features: list[Tensor],
                      towers: list[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
        """``outputs`` one level at a time, computed as they are taken: ([B, A_l, C] logits, [B, A_l, 4] deltas)
        per level, A_l = H_l * W_l * K_l (post-processing then holds one level's logits, not all)."""
        for (cls_x, reg_x), (cw, cb, rw, rb) in zip(towers, self.level_params(features)):
            yield (flatten_level(self._conv(cls_x, cw, cb), self.num_classes),
                   flatten_level(self._conv(reg_x, rw, rb), 4))

    @staticmethod
    def _conv(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        if weight.dim() == 4:  # one weight for the whole batch
            return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
        b = x.shape[0]  # per-image weights [B, O, I, k, k]: one grouped conv
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.flatten(0, 1), bias.flatten(),
                       padding=weight.shape[-1] // 2, groups=b)
        return out.view(b, -1, *out.shape[2:])

    def level_params(self, features: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        raise NotImplementedError


class PredefinedAnchorHead(_RetinaHead):
    """Classic RetinaNet head: fixed K anchors baked into the last convs (the baseline)."""

    def __init__(self, in_channels: int, num_classes: int, num_anchors: int, num_convs: int = 4,
                 prior_prob: float = 0.01, norm: str = "none"):
        super().__init__(in_channels, num_classes, num_convs, norm)
        self.num_anchors = num_anchors
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        for conv, bias in ((self.cls_logits, prior_bias(prior_prob)), (self.bbox_pred, 0.0)):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, bias)

    def set_anchors(self, codes: list[Tensor]) -> None:
        check_anchor_count(self.num_anchors, codes)

    def level_params(self, features):
        p = (self.cls_logits.weight, self.cls_logits.bias, self.bbox_pred.weight, self.bbox_pred.bias)
        return [p] * len(features)


class MetaAnchorHead(_RetinaHead):
    """RetinaNet head whose last cls/reg convs are generated from the anchor codes.

    One generator per branch, shared by all levels. With ``data_dim > 0`` the
    generators are data-dependent: r(x) is the global average of the pyramid
    features ([B, in]), mapped by W12 inside the generator.
    Generated weights are cached per anchor set when no gradient is recorded
    (data-independent generators only), in the activations' layout (NCHW or NHWC).
    The cache holds a copy of the generator parameters and is used only while they
    are still equal to it (same dtype, device and values), so in-place edits
    (optimizer steps, ``.data``, ``load_state_dict``) and ``.to()``/``.double()``
    can never serve stale weights.
    Comparing costs one extra copy of the generator parameters in memory (25 MB for 80
    classes and 256 channels) and is cheaper than generating again.
    """

    def __init__(self, in_channels: int, num_classes: int, num_convs: int = 4, hidden_dim: int = 32,
                 data_dependent: bool = False, prior_prob: float = 0.01, residual_std: float = 1e-4,
                 norm: str = "none"):
        super().__init__(in_channels, num_classes, num_convs, norm)
        data_dim = in_channels if data_dependent else 0
        self.cls_generator = AnchorFunctionGenerator(in_channels, num_classes, 3, hidden_dim,
                                                     bias_init=prior_bias(prior_prob), data_dim=data_dim,
                                                     residual_std=residual_std)
        self.reg_generator = AnchorFunctionGenerator(in_channels, 4, 3, hidden_dim, data_dim=data_dim,
                                                     residual_std=residual_std)
        self.codes: list[Tensor] = []
        self._cache: dict = {}

    @property
    def data_dependent(self) -> bool:
        return self.cls_generator.data_dependent

    def set_anchors(self, codes: list[Tensor]) -> None:
        self.codes = [c.detach().float() for c in codes]
        self._cache.clear()

    def generate(self, codes: Tensor, data: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """codes [K, 2] (and data [B, in]) -> cls weight/bias and reg weight/bias, stacked over K."""
        return (*self.cls_generator(codes, data), *self.reg_generator(codes, data))

    @torch.no_grad()
    def baked_state(self, codes: Tensor) -> dict[str, Tensor]:
        """State dict of the ``PredefinedAnchorHead`` whose last convs are the weights generated for
        codes [K, 2] (towers copied as they are); data-independent generators only."""
        cw, cb, rw, rb = self.generate(codes.to(self.cls_generator.weight))  # [K*C, in, 3, 3], [K*C], ...
        towers = {k: v for k, v in self.state_dict().items() if k.startswith(("cls_tower.", "reg_tower."))}
        return towers | {"cls_logits.weight": cw, "cls_logits.bias": cb, "bbox_pred.weight": rw, "bbox_pred.bias": rb}

    def _generator_params(self) -> list[Tensor]:
        return [p for g in (self.cls_generator, self.reg_generator) for p in g.parameters()]

    def _cache_hit(self) -> bool:
        snap = self._cache.get("snapshot")
        if snap is None:
            return False
        now = self._generator_params()
        return len(snap) == len(now) and all(
            a.dtype == b.dtype and a.device == b.device and a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(snap, now))

    def level_params(self, features):
        if len(self.codes) != len(features):
            raise RuntimeError(f"MetaAnchorHead has codes for {len(self.codes)} levels, got {len(features)} features")
        device = features[0].device
        data = None
        if self.data_dependent:
            data = torch.stack([f.mean(dim=(2, 3)) for f in features]).mean(0)  # r(x): [B, in]
        cacheable = data is None and not torch.is_grad_enabled()
        layout = memory_format_of(features[0])
        if cacheable and self._cache.get("layout") == layout and self._cache_hit():
            return self._cache["params"]
        self._cache.clear()
        dtype = self.cls_generator.weight.dtype
        params, seen = [], {}
        for c in self.codes:  # levels with identical codes share one generation
            key = tuple(c.flatten().tolist())
            if key not in seen:
                cw, cb, rw, rb = self.generate(c.to(device=device, dtype=dtype), data)
                if data is None:  # one [O, I, k, k] weight: in the activations' layout, so convs need no reorder
                    cw, rw = cw.contiguous(memory_format=layout), rw.contiguous(memory_format=layout)
                seen[key] = (cw, cb, rw, rb)
            params.append(seen[key])
        if cacheable:
            self._cache = {"snapshot": [p.detach().clone() for p in self._generator_params()], "params": params,
                           "layout": layout}
        return params


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``channels_last`` for NHWC activations [B, C, H, W], else ``contiguous_format``."""
    nhwc = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if nhwc else torch.contiguous_format
