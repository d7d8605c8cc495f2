"""The anchor function generator: anchor box -> weights of a prediction layer.

    theta_b = theta* + W2 relu(W1 b)                 (data-independent)
    theta_b = theta* + W2 relu(W11 b + W12 r(x))     (data-dependent)

theta is the weight and bias of a k x k conv with ``out_channels`` outputs (one
anchor's slice of the head's last layer). Generating K anchors at once and
stacking them gives exactly one conv with K * out_channels outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class AnchorFunctionGenerator(nn.Module):
    """Generates per-anchor conv weights from anchor codes.

    Args:
        in_channels: input channels of the generated conv.
        out_channels: outputs per anchor (C for classification, 4 for regression).
        kernel_size: spatial size of the generated conv.
        hidden_dim: width of the generator MLP (W1: 2 -> hidden, W2: hidden -> theta).
        bias_init: initial bias of theta* (cls: -log((1 - p) / p) with prior p = 0.01).
        weight_std: std of theta*'s weight init (RetinaNet: 0.01).
        residual_std: std of W2's init; small so theta_b starts near theta*.
        data_dim: size of the image feature r(x) (0: data-independent generator).
        code_dim: size of the anchor code b (2: log h, log w).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, hidden_dim: int = 32,
                 bias_init: float = 0.0, weight_std: float = 0.01, residual_std: float = 1e-4,
                 data_dim: int = 0, code_dim: int = 2):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) * weight_std)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init)))
        self.fc1 = nn.Linear(code_dim, hidden_dim)  # W1 (W11 in the data-dependent form)
        self.fc_data = nn.Linear(data_dim, hidden_dim, bias=False) if data_dim > 0 else None  # W12
        self.fc2 = nn.Linear(hidden_dim, self.weight.numel() + out_channels, bias=False)  # W2
        nn.init.normal_(self.fc2.weight, std=residual_std)

    @property
    def data_dependent(self) -> bool:
        return self.fc_data is not None

    def residual(self, codes: Tensor, data: Tensor | None = None) -> Tensor:
        """W2 relu(W1 b [+ W12 r]): codes [K, 2], data [B, D] -> [K, P] or [B, K, P]."""
        hidden = self.fc1(codes)  # [K, H]
        if self.fc_data is not None:
            if data is None:
                raise ValueError("data-dependent generator needs image features r(x)")
            hidden = hidden[None] + self.fc_data(data)[:, None]  # [B, K, H]
        return self.fc2(torch.relu(hidden))

    def forward(self, codes: Tensor, data: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Stacked conv parameters for K anchors.

        Args:
            codes: [K, 2] anchor codes b.
            data: [B, D] image features r(x) (data-dependent generator only).
        Returns:
            weight [K*out, in, k, k] and bias [K*out]; with ``data``, [B, K*out, in, k, k]
            and [B, K*out]. Channel k*out + c belongs to anchor k, output c.
        """
        res = self.residual(codes, data)
        n_w = self.weight.numel()
        base = torch.cat([self.weight.flatten(), self.bias])
        theta = base + res  # [..., K, P]
        lead = theta.shape[:-2]
        k = codes.shape[0]
        weight = theta[..., :n_w].reshape(*lead, k * self.out_channels, self.in_channels,
                                          self.kernel_size, self.kernel_size)
        bias = theta[..., n_w:].reshape(*lead, k * self.out_channels)
        return weight, bias

    @torch.no_grad()
    def set_hinges(self, intervals: Tensor) -> int:
        """Set W1 so that ``fit_exact`` is well conditioned for groups of nearly equal codes.

        Args:
            intervals: [G, 2, D] per group the lowest and highest code value on each of the D code axes
                (a group: codes that must get the same weights, e.g. one anchor on several levels).
        Returns:
            the number of hidden units used: one ReLU hinge relu(b_a - t) at every distinct interval end t
            of every axis a; the rest of W1 is left as it was. With no hinge inside a group's box, the
            generator can be flat on each box and ramp between them, which a minimum-norm solve finds with
            small weights (random hinges can cut near-equal codes apart and need huge, cancelling weights).
        """
        rows = [(axis, t) for axis in range(intervals.shape[2])
                for t in sorted(set(intervals[:, :, axis].flatten().tolist()))]
        if len(rows) > self.fc1.out_features:
            raise ValueError(f"{len(rows)} hinges need hidden_dim >= {len(rows)}, have {self.fc1.out_features}")
        for i, (axis, t) in enumerate(rows):
            self.fc1.weight[i].zero_()
            self.fc1.weight[i, axis] = 1.0
            self.fc1.bias[i] = -t
        return len(rows)

    @torch.no_grad()
    def fit_exact(self, codes: Tensor, weight: Tensor, bias: Tensor) -> float:
        """Set theta* and W2 so that the generator reproduces given per-anchor parameters; returns the residual.

        Args:
            codes: [N, 2] distinct anchor codes b.
            weight: [N*out, in, k, k] and bias [N*out]: the stacked conv parameters (channel n*out + c
                belongs to code n, output c, as ``forward`` returns them) that ``forward(codes)`` must give.
        Returns:
            max |forward(codes) - target| of the solve in float64 (0 up to rounding when exact).

        W1 stays as it is; with it fixed, theta_b = [relu(W1 b), 1] @ [W2^T; theta*] is linear in the
        unknowns, so they are the minimum-norm solution of that system: the pseudo-inverse of the
        hidden activations augmented with a ones column ([N, hidden + 1]) times the targets ([N, P]).
        It is exact when those activations have rank N (hidden_dim >= N - 1 and W1 separating the codes).
        Data-independent generators only.
        """
        if self.data_dependent:
            raise ValueError("fit_exact needs a data-independent generator")
        n = codes.shape[0]
        target = torch.cat([weight.reshape(n, -1), bias.reshape(n, -1)], 1).double()  # [N, P]
        hidden = torch.relu(self.fc1(codes.to(self.fc1.weight))).double()  # [N, H]
        design = torch.cat([hidden, hidden.new_ones(n, 1)], 1)  # [N, H + 1]
        solution = torch.linalg.pinv(design) @ target  # [H + 1, P], minimum norm
        n_w = self.weight.numel()
        self.fc2.weight.copy_(solution[:-1].T)
        self.weight.copy_(solution[-1, :n_w].view_as(self.weight))
        self.bias.copy_(solution[-1, n_w:])
        return float((design @ solution - target).abs().max())


def prior_bias(prior_prob: float = 0.01) -> float:
    """Classification bias so every anchor starts at foreground probability ``prior_prob``."""
    return -math.log((1 - prior_prob) / prior_prob)
