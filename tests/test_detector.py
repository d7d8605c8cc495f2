"""The RetinaNet-family detector (families.retinanet.detector): anchors as an input, losses, detections in image
pixels, save and reload, float64, and detections that do not depend on the rest of the batch."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_detector
from torch import nn

from metaanchor.errors import UserError
from metaanchor.geometry.anchors import AnchorSet
from metaanchor.modeling.backbones import STRIDES

POSITIONS_128 = 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1 * 1  # P3..P7 on a 128 px input


def images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 128, 128, generator=g) for _ in range(n)]


def targets(n=2):
    return [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [70.0, 70.0, 120.0, 126.0]]),
             "labels": torch.tensor([0, 2])} for _ in range(n)]


@pytest.mark.parametrize("spec,k", [("1x1", 1), ("3x3", 9), ("5x5", 25)])
def test_set_anchors_gives_right_output_counts(spec, k):
    det = tiny_detector().eval()
    det.set_anchors(spec)
    with torch.no_grad():
        feats = det.backbone(det.batcher(images())[0])
        cls, reg = det.head(feats)
        grid = det.grid([tuple(f.shape[-2:]) for f in feats], "cpu")
    assert cls.shape == (2, POSITIONS_128 * k, 3)
    assert reg.shape == (2, POSITIONS_128 * k, 4)
    assert grid.shape == (POSITIONS_128 * k, 4)


def test_training_returns_finite_losses_and_they_fall_when_overfitting():
    det = tiny_detector().train()
    opt = torch.optim.SGD(det.parameters(), lr=0.01, momentum=0.9)
    first = None
    for _ in range(25):
        losses = det(images(), targets())
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(losses) == {"cls", "box"} and torch.isfinite(loss)
    assert loss.item() < 0.7 * first


def test_loss_with_image_without_boxes():
    det = tiny_detector().train()
    t = targets(2)
    t[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = det(images(), t)
    assert all(torch.isfinite(v) for v in losses.values())
    empty = det(images(1), t[1:])
    assert empty["box"].item() == 0.0 and empty["cls"].item() > 0


def test_predefined_head_refuses_other_anchor_counts():
    det = tiny_detector(head="predefined")
    det.set_anchors("scales=1,2,3;ratios=0.5,1,2")  # same count is allowed
    with pytest.raises(UserError, match="trained with 9 anchors per position and cannot use 25"):
        det.set_anchors("5x5")


def test_detections_are_in_original_image_pixels():
    det = tiny_detector(min_size=256, max_size=256).eval()
    det.score_thresh = 0.0
    big = [torch.rand(3, 100, 300)]
    out = det(big)[0]
    assert len(out["boxes"]) == 100
    assert out["boxes"][:, 2].max() <= 300 and out["boxes"][:, 3].max() <= 100
    assert out["boxes"][:, 2].max() > 200  # boxes span the whole width, not the resized one


def test_checkpoint_roundtrip_and_unseen_anchor_prediction(tmp_path):
    det = tiny_detector(class_names=["a", "b", "c"]).eval()
    path = tmp_path / "m.pt"
    det.save(path)
    again = type(det).from_checkpoint(path)
    assert again.class_names == ["a", "b", "c"] and again.anchors == AnchorSet.parse("3x3")
    imgs = images(1)
    a, b = det.predict(imgs, score_thresh=0.0)[0], again.predict(imgs, score_thresh=0.0)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    unseen = again.predict(imgs, anchors=AnchorSet.parse("5x5"), score_thresh=0.0)[0]
    assert len(unseen["boxes"]) == 100 and not torch.equal(unseen["scores"], a["scores"])
    assert again.anchors.spec == "3x3"  # predict's anchors are for that call only


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


class _CellBackbone(nn.Module):
    """P3..P7 = 1x1 conv of the image averaged over each stride cell: a feature depends only on its own cell,
    so an image's features are the same whatever padding the batch adds (a real CNN's are not, near the border)."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(3, channels, 1, bias=False) for _ in STRIDES)

    def forward(self, x):
        return [p(F.avg_pool2d(x, s, s)) for p, s in zip(self.proj, STRIDES)]


def _batch_independent_detector():
    det = tiny_detector(head_convs=0, min_size=128, max_size=256).eval()
    torch.manual_seed(1)
    det.backbone = _CellBackbone(16)
    with torch.no_grad():  # spread the scores (no near-ties) and move boxes well away from their anchors
        det.head.cls_generator.weight.normal_(0, 0.15)
        det.head.cls_generator.bias.fill_(-4.0)
        det.head.cls_generator.fc2.weight.normal_(0, 0.03)  # anchors of one position score differently
        det.head.reg_generator.weight.normal_(0, 0.05)
    det.score_thresh = 0.3
    return det


def _assert_no_near_ties(det, image):
    """Candidate scores near or above the threshold are distinct by far more than float noise."""
    with torch.no_grad():
        cls, _ = det.head(det.backbone(det.batcher([image])[0]))
    s = torch.sigmoid(cls.flatten())
    s = s[s > det.score_thresh - 0.05].sort().values
    assert 10 < len(s) and s.diff().min() > 1e-6


def _image(h, w, seed):
    """Random 8x8-pixel blocks, so every P3..P7 cell sees a different colour."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), scale_factor=8.0)[0]


def _assert_same_detections(a, b):
    assert len(a["scores"]) == len(b["scores"]) > 0
    oa, ob = a["scores"].argsort(descending=True), b["scores"].argsort(descending=True)
    torch.testing.assert_close(a["scores"][oa], b["scores"][ob], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["boxes"][oa], b["boxes"][ob], rtol=1e-4, atol=1e-3)
    assert torch.equal(a["labels"][oa], b["labels"][ob])


def test_detections_of_an_image_do_not_depend_on_the_rest_of_the_batch():
    det = _batch_independent_detector()
    small, narrow = _image(128, 128, 0), _image(128, 64, 3)  # narrow: padded to 128 even alone
    wide, tall = _image(128, 256, 1), _image(256, 128, 2)
    for im in (small, narrow, wide, tall):
        _assert_no_near_ties(det, im)  # no float tie decides top-k or NMS
    with torch.no_grad():
        for im in (small, narrow):
            alone = det([im])[0]
            assert (alone["boxes"][:, 2] >= im.shape[-1] - 0.1).any()  # boxes reach the border: clipping matters
            assert len(alone["scores"]) < det.detections_per_img
            for other in (wide, tall):
                batched = det([im, other])
                _assert_same_detections(alone, batched[0])
                _assert_same_detections(det([other])[0], batched[1])


def test_category_ids_must_fit_num_classes():
    from metaanchor.errors import UserError

    with pytest.raises(UserError, match="category ids"):
        tiny_detector(category_ids=[1, 2])
    with pytest.raises(UserError, match="category ids"):
        tiny_detector(category_ids=[1, 1, 2])
