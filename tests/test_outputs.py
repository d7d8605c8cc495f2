"""Outputs that must not depend on things they should not: the batch, stale caches, undefined COCO metrics,
and anchor-search inputs the search cannot take (issues 11 and 12)."""

import torch
import torch.nn.functional as F
from conftest import tiny_detector

from metaanchor.anchors import AnchorSet
from metaanchor.heads import MetaAnchorHead

STANDARD = [32.0, 64.0, 128.0]
C, CH = 5, 16


def _features(b=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, CH, s, s, generator=g).to(dtype) for s in (8, 4, 2)]


def _meta_head():
    torch.manual_seed(0)
    head = MetaAnchorHead(CH, C, num_convs=1, hidden_dim=8, residual_std=0.05)
    head.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    return head.eval()


def _reference_cls(head, feats):
    """Class logits with freshly generated weights (no cache), in the features' dtype."""
    codes = head.codes[0].to(feats[0].dtype)
    w, b = head.cls_generator(codes)
    return [F.conv2d(head.cls_tower(x), w, b, padding=1) for x in feats]


# ---------------------------------------------------------------- generated-weight cache (issue 11)
def test_generated_weight_cache_sees_in_place_edits_through_data():
    head, feats = _meta_head(), _features()
    with torch.no_grad():
        before = head(feats)[0]
        head.cls_generator.fc2.weight.data.mul_(3.0)  # .data edits do not bump the parameter's version
        head.cls_generator.bias.data.add_(1.0)
        after = head(feats)[0]
        assert not torch.allclose(before, after)
        want = torch.cat([o.permute(0, 2, 3, 1).reshape(2, -1, C) for o in _reference_cls(head, feats)], 1)
        torch.testing.assert_close(after, want)


def test_generated_weight_cache_follows_dtype_conversion():
    head, feats = _meta_head(), _features()
    with torch.no_grad():
        head(feats)  # fills the cache in float32
        head.double()
        feats64 = [f.double() for f in feats]
        cls, reg = head(feats64)
        assert cls.dtype == reg.dtype == torch.float64
        want = torch.cat([o.permute(0, 2, 3, 1).reshape(2, -1, C) for o in _reference_cls(head, feats64)], 1)
        torch.testing.assert_close(cls, want, rtol=1e-12, atol=1e-12)


def test_detector_runs_in_float64_after_a_float32_forward():
    det = tiny_detector().eval()
    det.score_thresh = 0.0
    img = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d32 = det([img])[0]
        det.double()
        d64 = det([img.double()])[0]
    assert len(d64["scores"]) == len(d32["scores"]) > 0
    torch.testing.assert_close(d64["scores"].float().sort().values, d32["scores"].sort().values, rtol=1e-4,
                               atol=1e-5)
