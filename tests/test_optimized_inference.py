"""optimize_for_inference (BN folding, channels_last) and the fast top-k give the plain model's detections.
Nothing here asserts on timing.

Folding and NHWC change float rounding, so the head outputs are compared with a tolerance, and detections only
where no decision (threshold, per-level top-k, NMS order and overlap, detection cap) hinges on a difference of
that size: the test model spreads its class scores, and the score threshold is the lowest at which the plain
model's candidates are far enough apart (``_well_posed_threshold``); the detections are then compared as matched
sets."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torchvision.ops import box_iou, clip_boxes_to_image

from metaanchor.families.retinanet import RetinaNetDetector as Detector
from metaanchor.modeling.postprocess import anchor_topk

IMAGE_SIZES = [(120, 240), (64, 128), (128, 256)]  # all resized to 128 x 256: a batch without padding
LOGIT_TOL = 2e-4  # largest |plain - optimized| allowed on any class logit or box delta
SCORE_MARGIN = LOGIT_TOL  # scores move by <= LOGIT_TOL / 4 (sigmoid' <= 1/4): scores this far apart keep order
IOU_MARGIN = 1e-3  # boxes move by ~1e-4 px: an overlap this far from the NMS threshold stays on its side
CANDIDATES = 15  # per image, about, with a class score above 0.5
SPREAD = 30.0  # factor on the last class layer: logits spread over a few units, high scores far apart


def _images(batch: int) -> list[torch.Tensor]:
    return [torch.rand(3, h, w, generator=torch.Generator().manual_seed(i))
            for i, (h, w) in enumerate(IMAGE_SIZES[:batch])]


def _run(det: Detector, images, anchors=None, score_thresh: float = 1.0):
    """Detections plus the head's input features and raw outputs (cls logits [B, A, C], box deltas [B, A, 4])."""
    seen, level_outputs = {}, det.head.level_outputs

    def spy(features, towers):  # the head's last convs, called once per batch in eval mode
        levels = list(level_outputs(features, towers))
        seen.update(features=features, out=tuple(torch.cat(o, 1) for o in zip(*levels)))
        return iter(levels)

    det.head.level_outputs = spy
    try:
        dets = det.predict(images, anchors=anchors, score_thresh=score_thresh)
    finally:
        del det.head.level_outputs
    return dets, seen["features"], seen["out"]


@functools.cache
def _trained_like_cached(head: str) -> Detector:
    """A tiny detector with non-trivial BN statistics and spread-out class scores, about CANDIDATES per image
    above 0.5."""
    torch.manual_seed(0)
    det = Detector(3, backbone="tiny", head=head, fpn_channels=32, head_convs=2, min_size=128, max_size=256)
    det.train()
    images = [torch.rand(3, h, w) for h, w in IMAGE_SIZES]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}] * 3
    with torch.no_grad():
        for _ in range(3):  # moves BN running statistics away from (0, 1)
            det(images, targets)
        for m in det.backbone.modules():  # and the affine BN parameters away from (1, 0), which folding uses too
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for p in det.head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # spread the logits (std ~1 to 2), so the few high scores are far apart but not saturated near 1
        if head == "predefined":
            det.head.cls_logits.weight.mul_(SPREAD)
            cls_bias = det.head.cls_logits.bias
        else:
            det.head.cls_generator.weight.mul_(SPREAD)
            det.head.cls_generator.fc2.weight.mul_(SPREAD)
            cls_bias = det.head.cls_generator.bias
        det.eval()
        logits = _run(det, _images(3))[2][0]
        cls_bias.sub_(logits.flatten().topk(CANDIDATES * len(IMAGE_SIZES)).values[-1])
    return det


def _trained_like(head: str) -> Detector:
    return copy.deepcopy(_trained_like_cached(head))


def _well_posed_threshold(det: Detector, features, logits, deltas) -> float:
    """The lowest score threshold at which no decision of the post-processing hinges on a difference below the
    tolerances: no score within SCORE_MARGIN of it; 1 to detections_per_img - 1 candidates per image (so neither
    the detection cap nor the per-level top-k cuts); no two same-class candidates overlapping within IOU_MARGIN
    of the NMS threshold, or overlapping more with scores within SCORE_MARGIN (their NMS order would be a coin
    toss). Then the optimized model, whose outputs are within LOGIT_TOL, must give the same detections."""
    n, nms = det.detections_per_img, det.nms_thresh
    assert n <= det.topk_candidates
    shapes = [tuple(f.shape[-2:]) for f in features]
    anchors = det.grid(shapes, logits.device)
    image_hw = (shapes[0][0] * det.strides[0], shapes[0][1] * det.strides[0])
    scores = logits.sigmoid().flatten(1).double()  # [B, A * C]
    top = scores.topk(n, dim=1)  # only these can pass a threshold that leaves fewer than n per image
    images = []
    for values, idx, image_deltas in zip(top.values, top.indices, deltas):
        a, c = idx // logits.shape[2], idx % logits.shape[2]
        iou = box_iou(*[clip_boxes_to_image(det.box_coder.decode(image_deltas[a], anchors[a]), image_hw)] * 2)
        same_class = (c[:, None] == c[None]) & ~torch.eye(n, dtype=torch.bool)
        close = (values[:, None] - values[None]).abs() < SCORE_MARGIN
        images.append((values, same_class & (((iou - nms).abs() < IOU_MARGIN) | ((iou > nms) & close))))
    lo, hi = top.values[:, -1].max(), top.values[:, 0].min()
    s = torch.cat([lo[None], hi[None], scores[(scores > lo) & (scores < hi)]]).sort().values
    wide = (s[1:] - s[:-1]) > 2 * SCORE_MARGIN
    for t in ((s[:-1][wide] + s[1:][wide]) / 2).tolist():
        if not any(bad[values > t][:, values > t].any() for values, bad in images):
            return t
    raise AssertionError("no score threshold gives a well-posed comparison")


def _assert_same_detections(plain: list[dict], fast: list[dict]) -> None:
    """Equal as sets: every plain detection has its own fast one with the same label, box and score (boxes
    matched by their largest coordinate difference, which unlike IoU also works for boxes clipped to a line)."""
    assert len(plain) == len(fast)
    for a, b in zip(plain, fast):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        dist = (a["boxes"][:, None] - b["boxes"][None]).abs().amax(dim=2)
        dist[a["labels"][:, None] != b["labels"][None]] = math.inf
        best, match = dist.min(dim=1)
        assert (best < 1e-2).all() and len(set(match.tolist())) == len(match)
        torch.testing.assert_close(b["scores"][match], a["scores"], atol=1e-4, rtol=0)


def _assert_same(plain: Detector, fast: Detector, images, anchors=None) -> None:
    batch, _, sizes = plain.batcher(images)
    # no padding: every anchor lies in its image and boxes are clipped to it, as _well_posed_threshold assumes
    assert all(size == tuple(batch.shape[-2:]) for size in sizes)
    _, features, (logits, deltas) = _run(plain, images, anchors)
    thresh = _well_posed_threshold(plain, features, logits, deltas)
    plain_dets, _, _ = _run(plain, images, anchors, thresh)
    fast_dets, _, (fast_logits, fast_deltas) = _run(fast, images, anchors, thresh)
    torch.testing.assert_close(fast_logits, logits, atol=LOGIT_TOL, rtol=0)
    torch.testing.assert_close(fast_deltas, deltas, atol=LOGIT_TOL, rtol=0)
    _assert_same_detections(plain_dets, fast_dets)


@pytest.mark.parametrize("head", ["metaanchor", "predefined"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("options", [dict(fuse_bn=True, channels_last=True), dict(fuse_bn=True, channels_last=False),
                                     dict(fuse_bn=False, channels_last=True)])
def test_optimized_inference_gives_the_plain_detections(head, batch, options):
    plain = _trained_like(head)
    fast = copy.deepcopy(plain).optimize_for_inference(**options)
    _assert_same(plain, fast, _images(batch))


def test_folding_removes_every_backbone_batchnorm_and_makes_the_model_eval_only(tmp_path):
    fast = copy.deepcopy(_trained_like("metaanchor")).optimize_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not fast.training
    with pytest.raises(RuntimeError, match="eval-only"):
        fast.train()
    with pytest.raises(RuntimeError, match="cannot save"):
        fast.save(tmp_path / "fused.pt")


def test_optimized_model_still_takes_new_anchor_sets():
    plain = _trained_like("metaanchor")
    fast = copy.deepcopy(plain).optimize_for_inference()
    images = [torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(5))]
    _assert_same(plain, fast, images, anchors="2x3")


@pytest.mark.parametrize("n, c, k", [(5000, 80, 1000), (300, 3, 1000), (50, 7, 20), (2000, 1, 100)])
def test_anchor_topk_returns_the_exact_top_values(n, c, k):
    logits = torch.randn(2, n, c, generator=torch.Generator().manual_seed(n))
    values, idx = anchor_topk(logits, k)
    ref = logits.reshape(2, -1).topk(min(k, n * c), dim=1).values
    torch.testing.assert_close(values.sort(dim=1, descending=True).values, ref)
    torch.testing.assert_close(torch.gather(logits.reshape(2, -1), 1, idx), values)
