"""modeling.postprocess: decoding, per-image clipping, score threshold and (grouped) NMS of a batch."""

import weakref

import pytest
import torch
from torchvision.ops import batched_nms

from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.modeling.postprocess import postprocess, postprocess_levels, top_nms


def test_postprocess_clips_each_image_before_nms_and_ignores_its_padding():
    """Image 0 is 100 px wide, image 1 fills the 256 px canvas. Two boxes of image 0 overlap (IoU 0.68) only
    because they run past its right edge: clipped to the image (IoU 0.25) both must survive. An anchor centred
    at x=160 lies in image 0's padding: its (best) score must not give image 0 a detection."""
    coder = BoxCoder()
    anchors = torch.tensor([[40.0, 0, 80, 40], [40, 0, 80, 40], [140, 0, 180, 40]])
    boxes = torch.tensor([[60.0, 0, 220, 40], [90, 0, 250, 40], [140, 0, 180, 40]])
    deltas = coder.encode(boxes, anchors)[None].repeat(2, 1, 1)
    logits = torch.tensor([[2.0], [1.0], [3.0]])[None].repeat(2, 1, 1)
    sizes = torch.tensor([[40, 100], [40, 256]])
    out = postprocess(logits, deltas, anchors, [3], sizes, coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[60.0, 0, 100, 40], [90, 0, 100, 40]]))
    torch.testing.assert_close(out[1]["boxes"], boxes[[2, 0]])
    # one (H, W) for the whole batch still works (every image fills the canvas)
    whole = postprocess(logits, deltas, anchors, [3], (40, 256), coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(whole[0]["boxes"], out[1]["boxes"])


def reference_postprocess(cls, reg, anchors, level_sizes, size, coder, thresh, nms, topk, dets):
    """torchvision RetinaNet's per-image, per-level loop, as the oracle."""
    out = []
    c = cls.shape[-1]
    for i in range(cls.shape[0]):
        boxes_all, scores_all, labels_all = [], [], []
        start = 0
        for n in level_sizes:
            s = torch.sigmoid(cls[i, start:start + n]).flatten()
            keep = s > thresh
            idx = torch.nonzero(keep).squeeze(1)
            s = s[keep]
            k = min(topk, idx.numel())
            s, order = s.topk(k)
            idx = idx[order]
            a = idx // c + start
            b = coder.decode(reg[i, a], anchors[a])
            b[:, 0::2] = b[:, 0::2].clamp(0, size[1])
            b[:, 1::2] = b[:, 1::2].clamp(0, size[0])
            boxes_all.append(b)
            scores_all.append(s)
            labels_all.append(idx % c)
            start += n
        b, s, lab = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
        keep = batched_nms(b, s, lab, nms)[:dets]
        out.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
    return out


def random_head_outputs(batch: int, seed: int, level_sizes=(300, 120, 30)):
    """Seeded class logits [B, A, 4 classes], box deltas [B, A, 4] and anchors [A, 4] of three levels."""
    g = torch.Generator().manual_seed(seed)
    a = sum(level_sizes)
    cls = torch.randn(batch, a, 4, generator=g) * 2
    reg = torch.randn(batch, a, 4, generator=g) * 0.2
    xy = torch.rand(a, 2, generator=g) * 100
    anchors = torch.cat([xy, xy + 10 + torch.rand(a, 2, generator=g) * 30], 1)
    return cls, reg, anchors, list(level_sizes)


@pytest.mark.parametrize("thresh", [0.05, 0.5])
def test_batched_postprocess_equals_per_image_loop(thresh):
    cls, reg, anchors, level_sizes = random_head_outputs(3, seed=0)
    args = (anchors, level_sizes, (128, 128), BoxCoder(), thresh, 0.5, 200, 50)
    got = postprocess(cls, reg, *args)
    want = reference_postprocess(cls, reg, *args)
    for gd, wd in zip(got, want):
        assert len(gd["scores"]) == len(wd["scores"]) > 0
        torch.testing.assert_close(gd["scores"], wd["scores"])
        torch.testing.assert_close(gd["boxes"], wd["boxes"])
        assert torch.equal(gd["labels"], wd["labels"])


def test_grouped_nms_keeps_what_batched_nms_keeps():
    from metaanchor.modeling.postprocess import grouped_nms

    g = torch.Generator().manual_seed(1)
    n = 5000
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], 1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 640, (n,), generator=g)
    got = grouped_nms(boxes, scores, groups, 0.5)
    want = batched_nms(boxes, scores, groups, 0.5)
    assert len(got) > 1000  # above the single-call size, so the per-group path ran
    assert torch.equal(got, want)  # same boxes, same (score) order; scores are distinct


def test_grouped_nms_with_few_large_groups_matches_batched_nms():
    from metaanchor.modeling.postprocess import grouped_nms

    g = torch.Generator().manual_seed(2)
    n = 6000  # 3 groups of ~2000: the padded [G, M, M] tensor would be too big, so slices are used
    xy = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], 1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 3, (n,), generator=g)
    got = grouped_nms(boxes, scores, groups, 0.5, max_padded=2 ** 20)
    assert torch.equal(got, batched_nms(boxes, scores, groups, 0.5))


def test_levels_given_one_at_a_time_give_the_same_detections_and_are_released_in_turn():
    """postprocess_levels on a lazy per-level iterable equals postprocess on the whole [B, A, C] tensor, and
    a level's logits are no longer referenced when the next level is asked for (one level in memory)."""
    cls, reg, anchors, level_sizes = random_head_outputs(2, seed=1)
    sizes = torch.tensor([[128, 128], [100, 90]])
    released_before_next = []

    def levels():
        previous = None
        for logits, deltas in zip(cls.split(level_sizes, 1), reg.split(level_sizes, 1)):
            if previous is not None:
                released_before_next.append(previous() is None)
            logits = logits.clone()  # a fresh tensor per level, as a head's conv output
            previous = weakref.ref(logits)
            yield logits, deltas
            del logits

    want = postprocess(cls, reg, anchors, level_sizes, sizes, BoxCoder(), 0.05, 0.5, 200, 50)
    got = postprocess_levels(levels(), anchors, sizes, BoxCoder(), 0.05, 0.5, 200, 50)
    assert released_before_next == [True, True]
    for gd, wd in zip(got, want, strict=True):
        assert len(gd["scores"]) > 0
        assert torch.equal(gd["scores"], wd["scores"]) and torch.equal(gd["boxes"], wd["boxes"])
        assert torch.equal(gd["labels"], wd["labels"])


@pytest.mark.parametrize("per_image", [5, 20, 60])
def test_nms_on_each_images_best_candidates_keeps_what_nms_on_all_keeps(per_image, monkeypatch):
    """top_nms runs NMS on each image's best-scored candidates first; its top `per_image` boxes per image equal
    those of grouped_nms on all candidates. Clusters of 25 near-duplicate boxes hold consecutive scores, so the
    first 4 x per_image candidates keep too few boxes and it must take more (at most 3 kept per cluster)."""
    import metaanchor.modeling.postprocess as pp

    g = torch.Generator().manual_seed(per_image)
    clusters = torch.rand(2, 40, 2, generator=g) * 400  # per image 40 cluster centres
    centres = clusters.repeat_interleave(25, dim=1) + torch.rand(2, 1000, 2, generator=g)  # [2, 1000, 2]
    boxes = torch.cat([centres, centres + 30], 2).reshape(-1, 4)
    scores = 1 - torch.arange(2000.0) / 2000  # distinct, decreasing cluster by cluster: no ties decide an order
    images = torch.arange(2).repeat_interleave(1000)
    groups = images * 3 + torch.randint(0, 3, (2000,), generator=g)
    sizes, real = [], pp.grouped_nms
    monkeypatch.setattr(pp, "grouped_nms", lambda b, *a: sizes.append(len(b)) or real(b, *a))
    some = top_nms(boxes, scores, images, groups, 0.5, per_image, 2)
    every = real(boxes, scores, groups, 0.5)
    for i in range(2):
        assert torch.equal(some[images[some] == i][:per_image], every[images[every] == i][:per_image])
    assert len(sizes) >= 2 and sizes[0] == 2 * 4 * per_image and sizes[-1] < 2000, sizes
