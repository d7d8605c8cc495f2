"""optimize_for_inference (BN folding, channels_last) and the fast top-k give the plain model's detections;
the benchmark produces every documented key. Nothing here asserts on timing."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from metaanchor import bench
from metaanchor.detector import Detector
from metaanchor.postprocess import anchor_topk

IMAGE_SIZES = [(120, 150), (100, 90), (128, 128)]


@functools.cache
def _trained_like_cached(head: str) -> Detector:
    """A tiny detector with non-trivial BN statistics and confident, well-separated scores."""
    torch.manual_seed(0)
    det = Detector(3, backbone="tiny", head=head, fpn_channels=32, head_convs=2, min_size=128, max_size=160)
    det.train()
    images = [torch.rand(3, h, w) for h, w in IMAGE_SIZES]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}] * 3
    with torch.no_grad():
        for _ in range(3):  # moves BN running statistics away from (0, 1)
            det(images, targets)
        for p in det.head.parameters():  # spread the scores so ranks are not decided by float noise
            p.add_(torch.randn_like(p) * 0.05)
        cls_bias = det.head.cls_logits.bias if head == "predefined" else det.head.cls_generator.bias
        cls_bias.add_(4.0)  # prior 0.01 -> ~0.35: many boxes above the threshold
    return det.eval()


def _trained_like(head: str) -> Detector:
    return copy.deepcopy(_trained_like_cached(head))


def _assert_same(plain: list[dict], fast: list[dict]) -> None:
    for a, b in zip(plain, fast):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-2, rtol=1e-4)


@pytest.mark.parametrize("head", ["metaanchor", "predefined"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("options", [dict(fuse_bn=True, channels_last=True), dict(fuse_bn=True, channels_last=False),
                                     dict(fuse_bn=False, channels_last=True)])
def test_optimized_inference_gives_the_plain_detections(head, batch, options):
    plain = _trained_like(head)
    fast = copy.deepcopy(plain).optimize_for_inference(**options)
    images = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(i))
              for i, (h, w) in enumerate(IMAGE_SIZES[:batch])]
    _assert_same(plain.predict(images, score_thresh=0.2), fast.predict(images, score_thresh=0.2))


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
    _assert_same(plain.predict(images, anchors="2x3", score_thresh=0.2),
                 fast.predict(images, anchors="2x3", score_thresh=0.2))


@pytest.mark.parametrize("n, c, k", [(5000, 80, 1000), (300, 3, 1000), (50, 7, 20), (2000, 1, 100)])
def test_anchor_topk_returns_the_exact_top_values(n, c, k):
    logits = torch.randn(2, n, c, generator=torch.Generator().manual_seed(n))
    values, idx = anchor_topk(logits, k)
    ref = logits.reshape(2, -1).topk(min(k, n * c), dim=1).values
    torch.testing.assert_close(values.sort(dim=1, descending=True).values, ref)
    torch.testing.assert_close(torch.gather(logits.reshape(2, -1), 1, idx), values)


def test_bench_tiny_configuration_reports_all_keys():
    report = bench.run_bench(bench.BenchConfig.tiny(), log=lambda *_: None)
    for key in ("inference_speedup_b1", "inference_speedup_b8", "train_step_speedup", "postprocess_share",
                "peak_mem_ratio", "flop_efficiency"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    result = report["backbones"]["tiny"]
    assert set(result["inference"]) == {"default", "many"}
    for rows in result["inference"].values():
        for row in rows.values():
            assert all(math.isfinite(v) for v in row.values())
    costs = result["metaanchor"]
    assert costs["generate_new_anchor_set_first_s"] > 0 and costs["generate_cached_s"] > 0
    assert "ours img/s" in bench.format_table(report)
