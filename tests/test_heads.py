
import torch
import torch.nn.functional as F

from metaanchor.families.retinanet.heads import MetaAnchorHead, PredefinedAnchorHead
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.modeling.generator import AnchorFunctionGenerator, prior_bias

STANDARD = [32.0, 64.0, 128.0]
C, CH = 5, 16


def features(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, CH, s, s, generator=g) for s in (8, 4, 2)]


def meta_head(**kw):
    torch.manual_seed(0)
    head = MetaAnchorHead(CH, C, num_convs=2, hidden_dim=8, **kw)
    head.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    return head


def test_zero_residual_generator_equals_predefined_head():
    meta = meta_head()
    with torch.no_grad():
        meta.cls_generator.fc2.weight.zero_()
        meta.reg_generator.fc2.weight.zero_()
    base = PredefinedAnchorHead(CH, C, num_anchors=9, num_convs=2)
    base.cls_tower.load_state_dict(meta.cls_tower.state_dict())
    base.reg_tower.load_state_dict(meta.reg_tower.state_dict())
    with torch.no_grad():  # theta* in every anchor slot
        base.cls_logits.weight.copy_(meta.cls_generator.weight.repeat(9, 1, 1, 1))
        base.cls_logits.bias.copy_(meta.cls_generator.bias.repeat(9))
        base.bbox_pred.weight.copy_(meta.reg_generator.weight.repeat(9, 1, 1, 1))
        base.bbox_pred.bias.copy_(meta.reg_generator.bias.repeat(9))
    feats = features()
    cls_m, reg_m = meta(feats)
    cls_b, reg_b = base(feats)
    assert cls_m.shape == cls_b.shape == (2, (64 + 16 + 4) * 9, C)
    assert torch.equal(cls_m, cls_b) and torch.equal(reg_m, reg_b)


def test_stacked_generation_equals_per_anchor_convs():
    gen = AnchorFunctionGenerator(CH, C, hidden_dim=8, residual_std=0.05)
    codes = AnchorSet.parse("2x3").codes(STANDARD)[0]  # [6, 2]
    x = torch.randn(2, CH, 7, 9)
    w, b = gen(codes)
    assert w.shape == (6 * C, CH, 3, 3) and b.shape == (6 * C,)
    stacked = F.conv2d(x, w, b, padding=1)
    for k in range(6):
        wk, bk = gen(codes[k:k + 1])
        single = F.conv2d(x, wk, bk, padding=1)
        torch.testing.assert_close(stacked[:, k * C:(k + 1) * C], single, rtol=1e-5, atol=1e-6)


def test_generator_starts_at_retinanet_init():
    gen = AnchorFunctionGenerator(CH, C, bias_init=prior_bias(0.01))
    w, b = gen(torch.zeros(1, 2))
    assert torch.allclose(torch.sigmoid(b), torch.full((C,), 0.01), atol=1e-3)
    res = gen.residual(torch.randn(9, 2))
    assert res.std() < 0.1 * gen.weight.std()  # residual starts near zero


def test_parameter_count_does_not_depend_on_anchor_count():
    head = meta_head()
    n = sum(p.numel() for p in head.parameters())
    out_counts = []
    for spec in ("1x1", "3x3", "5x5"):
        head.set_anchors(AnchorSet.parse(spec).codes(STANDARD))
        cls, _ = head(features())
        out_counts.append(cls.shape[1])
        assert sum(p.numel() for p in head.parameters()) == n
    assert out_counts == [84 * 1, 84 * 9, 84 * 25]


def test_gradients_reach_generator_parameters():
    head = meta_head()
    cls, reg = head(features())
    (cls.square().mean() + reg.square().mean()).backward()
    for gen in (head.cls_generator, head.reg_generator):
        for name in ("weight", "bias"):  # theta*
            assert getattr(gen, name).grad.abs().sum() > 0
        assert gen.fc1.weight.grad.abs().sum() > 0  # W1
        assert gen.fc2.weight.grad.abs().sum() > 0  # W2


def test_eval_caches_generated_weights_until_parameters_change():
    head = meta_head().eval()
    feats = features()
    with torch.no_grad():
        p1 = head.level_params(feats)
        p2 = head.level_params(feats)
        assert p1[0][0] is p2[0][0]  # cached, and shared by all levels of a relative set
        assert p1[1][0] is p1[0][0]
        head.cls_generator.fc2.weight.add_(0.01)  # like an optimizer step
        p3 = head.level_params(feats)
        assert p3[0][0] is not p1[0][0] and not torch.equal(p3[0][0], p1[0][0])
        head.set_anchors(AnchorSet.parse("1x1").codes(STANDARD))
        assert head.level_params(feats)[0][0].shape[0] == C


def test_data_dependent_generator_differs_per_image_and_reduces_to_independent():
    torch.manual_seed(0)
    dd = MetaAnchorHead(CH, C, num_convs=1, hidden_dim=8, data_dependent=True, residual_std=0.05)
    dd.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    feats = features(b=2)
    w = dd.level_params(feats)[0][0]
    assert w.shape == (2, 9 * C, CH, 3, 3) and not torch.equal(w[0], w[1])
    # per-image grouped conv equals running each image alone
    cls, reg = dd(feats)
    cls0, _ = dd([f[:1] for f in feats])
    torch.testing.assert_close(cls[:1], cls0, rtol=1e-4, atol=1e-5)
    # with W12 = 0 it is the data-independent generator
    di = MetaAnchorHead(CH, C, num_convs=1, hidden_dim=8, residual_std=0.05)
    di.load_state_dict({k: v for k, v in dd.state_dict().items() if "fc_data" not in k})
    di.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    with torch.no_grad():
        dd.cls_generator.fc_data.weight.zero_()
        dd.reg_generator.fc_data.weight.zero_()
    torch.testing.assert_close(dd(feats)[0], di(feats)[0])




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


def test_cached_generated_weights_follow_the_activations_layout():
    """NHWC activations get NHWC generated weights (no reorder in every conv), NCHW ones NCHW; outputs agree."""
    head = meta_head().eval()
    feats = features()
    with torch.no_grad():
        nchw = head(feats)
        assert head.level_params(feats)[0][0].is_contiguous()
        head.to(memory_format=torch.channels_last)
        nhwc_feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
        nhwc = head(nhwc_feats)
        w = head.level_params(nhwc_feats)[0][0]  # [K*C, CH, 3, 3]
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        for a, b in zip(nchw, nhwc, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert head.level_params(feats)[0][0].is_contiguous()  # back to NCHW input: NCHW weights again
