"""Folding BatchNorm into the convolution before it, for inference (``Detector.optimize_for_inference``)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d


def fold_batchnorm(module: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d / FrozenBatchNorm2d into the Conv2d registered just before it.

    Relies on registration order following data flow for conv -> BN pairs, as in
    torchvision's ResNets (conv1/bn1, downsample[0]/[1]) and our TinyBackbone.
    The BN is replaced by ``nn.Identity``. Returns the number of BNs folded.
    """
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, (nn.BatchNorm2d, FrozenBatchNorm2d))
                    and conv.out_channels == bn.weight.shape[0]):
                continue
            fused = copy.deepcopy(conv)
            running_mean, running_var = bn.running_mean, bn.running_var
            fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, running_mean, running_var,
                                                            bn.eps, bn.weight, bn.bias)
            parent._modules[conv_name], parent._modules[bn_name] = fused, nn.Identity()
            folded += 1
    return folded


