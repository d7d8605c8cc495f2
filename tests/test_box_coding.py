import math

import torch

from metaanchor.geometry.box_coder import BBOX_XFORM_CLIP, BoxCoder
from metaanchor.geometry.matcher import Matcher


def random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 400
    wh = torch.rand(n, 2, generator=g) * 190 + 10  # size ratios stay below the decode clamp
    return torch.cat([xy, xy + wh], 1)


def test_encode_decode_roundtrip():
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    boxes, anchors = random_boxes(500, 0), random_boxes(500, 1)
    deltas = coder.encode(boxes, anchors)
    assert torch.allclose(coder.decode(deltas, anchors), boxes, atol=1e-3)


def test_roundtrip_with_leading_batch_dims():
    coder = BoxCoder()
    boxes, anchors = random_boxes(60, 2).view(3, 20, 4), random_boxes(60, 3).view(3, 20, 4)
    assert torch.allclose(coder.decode(coder.encode(boxes, anchors), anchors), boxes, atol=1e-3)


def test_decode_clamps_size_change():
    coder = BoxCoder()
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), anchor)
    assert torch.isfinite(box).all()
    w = box[0, 2] - box[0, 0]
    assert math.isclose(float(w), 10 * math.exp(BBOX_XFORM_CLIP), rel_tol=1e-4)


def test_matcher_thresholds_and_low_quality():
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 6], [0, 0, 10, 4.5], [50, 50, 60, 60], [100, 100, 110, 110.]])
    gt = torch.tensor([[[0, 0, 10, 10], [100, 100, 130, 130.], [0, 0, 0, 0]]])  # last row is padding
    valid = torch.tensor([[True, True, False]])
    m = Matcher(0.5, 0.4, allow_low_quality_matches=False)(gt, valid, anchors)
    # IoUs with gt0: 1.0, 0.6, 0.45, 0; anchor 4 has IoU 100/900 with gt1
    assert m.tolist() == [[0, 0, Matcher.BETWEEN_THRESHOLDS, -1, -1]]
    m = Matcher(0.5, 0.4, allow_low_quality_matches=True)(gt, valid, anchors)
    assert m.tolist() == [[0, 0, Matcher.BETWEEN_THRESHOLDS, -1, 1]]  # gt1 claims its best anchor


def test_matcher_empty_ground_truth():
    anchors = torch.tensor([[0, 0, 10, 10.]])
    m = Matcher()(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool), anchors)
    assert m.tolist() == [[-1], [-1]]
