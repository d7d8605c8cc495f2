"""modeling.backbones (and the YOLOv2 backbone): feature levels of ceil(size / stride) cells, each centred
on its anchors, for odd input sizes too."""

import math

import pytest
import torch

from metaanchor.geometry.resize import PAD_MULTIPLE


def _positive_weights(module):
    """All-positive conv weights, BN as identity: every path carries gradient, so the gradient support of a
    cell is its full receptive field."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return module.eval()


def _check_cell_centres(levels, strides, hw):
    """For every level: ceil(H/s) x ceil(W/s) cells, and the cell (i, j) = (H // 2s, W // 2s + 1) (one index odd,
    one even) is centred (its receptive field's midpoint) on image pixel (s*i, s*j), where ``grid_anchors`` puts
    its anchors. One backward pass: each level's cell gets its own copy of the image in the batch."""
    h, w = hw
    cells = [(level, h // (2 * s), w // (2 * s) + 1) for level, s in enumerate(strides)]
    x = torch.ones(len(cells), 3, h, w, requires_grad=True)
    feats = levels(x)
    for f, s in zip(feats, strides):
        assert tuple(f.shape[-2:]) == (math.ceil(h / s), math.ceil(w / s))
    sum(feats[level][k, :, i, j].sum() for k, (level, i, j) in enumerate(cells)).backward()
    for k, (level, i, j) in enumerate(cells):
        ys, xs = x.grad[k].abs().sum(0).nonzero().unbind(1)
        assert ys.min() > 0 and xs.min() > 0 and ys.max() < h - 1 and xs.max() < w - 1  # not clipped
        s = strides[level]
        assert ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2) == (s * i, s * j)


def test_retinanet_tiny_levels_centred_on_their_anchors_for_odd_sizes():
    from metaanchor.geometry.anchors import grid_anchors
    from metaanchor.modeling.backbones import build_backbone

    fpn = _positive_weights(build_backbone("tiny", 16).body)

    def levels(x):  # bottom-up C3-C5, then P5 (lateral 1x1 + 3x3) and LastLevelP6P7 on it
        c = list(fpn.body(x).values())
        p5 = fpn.fpn.layer_blocks[-1](fpn.fpn.inner_blocks[-1](c[-1]))
        p6 = fpn.fpn.extra_blocks.p6(p5)
        return c + [p6, fpn.fpn.extra_blocks.p7(torch.relu(p6))]

    _check_cell_centres(levels, [8, 16, 32, 64, 128], (601, 633))
    anchors = grid_anchors([torch.tensor([[8.0, 8.0]])], [(2, 3)], [64])
    assert anchors.view(2, 3, 4)[1, 2].tolist() == [124.0, 60.0, 132.0, 68.0]  # centre (x, y) = (2*64, 1*64)


def test_fpn_nearest_upsampling_maps_cells_to_their_parent_for_odd_sizes():
    for fine in range(2, 40):
        coarse = math.ceil(fine / 2)
        idx = torch.arange(coarse, dtype=torch.float32).view(1, 1, coarse, 1)
        up = torch.nn.functional.interpolate(idx, size=(fine, 1), mode="nearest").flatten()
        assert up.tolist() == [float(i // 2) for i in range(fine)]


def test_yolov2_tiny_grid_centred_on_its_anchors_for_odd_sizes():
    from metaanchor.families.yolov2.backbone import STRIDE, build_yolo_backbone

    backbone = _positive_weights(build_yolo_backbone("tiny", 16))
    _check_cell_centres(lambda x: [backbone.c5_conv(list(backbone.body(x).values())[-1])], [STRIDE], (289, 353))
    assert backbone(torch.zeros(1, 3, 224, 288))[0].shape[-2:] == (7, 9)
    with pytest.raises(RuntimeError, match="pixel_unshuffle"):  # the passthrough needs H, W multiples of 32
        backbone(torch.zeros(1, 3, 225, 289))


def test_resnet_levels_are_ceil_of_image_over_stride():
    from metaanchor.modeling.backbones import build_backbone

    net = build_backbone("resnet18").eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 97, 131))
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(97 / s), math.ceil(131 / s))
                                                   for s in (8, 16, 32, 64, 128)]
    assert PAD_MULTIPLE == 32
