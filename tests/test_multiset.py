"""Several anchor sets evaluated from one backbone pass equal each set evaluated alone."""

import pytest
import torch
from conftest import tiny_detector

from metaanchor.families import build_detector

SETS = ["3x3", "1x1", "5x5", "scales=0.5,1;ratios=0.4,2.5"]


def _images():
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 70, 90, generator=g), torch.rand(3, 64, 64, generator=g)]


def _yolo(head):
    torch.manual_seed(0)
    return build_detector("yolov2", num_classes=3, backbone="tiny", head=head, anchors="3x3", fpn_channels=16,
                          head_convs=1, hidden_dim=8, min_size=96, max_size=128, score_thresh=0.0)


def _retina(head):
    torch.manual_seed(0)
    return tiny_detector(head=head, score_thresh=0.0)


def _assert_same(a: dict, b: dict):
    assert len(a["boxes"]) > 0  # the comparison is not vacuous
    assert torch.equal(a["labels"], b["labels"])
    torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=1e-4)
    torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("build", [_retina, _yolo], ids=["retinanet", "yolov2"])
@pytest.mark.parametrize("head", ["metaanchor", "metaanchor-dd"])
def test_detect_many_equals_each_set_alone(build, head):
    model = build(head)
    images = _images()
    many = model.detect_many(images, SETS)
    assert len(many) == len(SETS)
    for spec, dets in zip(SETS, many):
        with torch.no_grad(), model.evaluating(spec):
            alone = model(images)
        for d_many, d_alone in zip(dets, alone):
            _assert_same(d_many, d_alone)
    assert model.anchors.spec == "3x3" and model.training  # restored


def test_detect_many_on_a_predefined_model_takes_only_its_own_count():
    model = _retina("predefined")
    (dets,) = model.detect_many(_images(), ["scales=1,1.3,1.6;ratios=0.5,1,2"])
    assert len(dets) == 2
    with pytest.raises(Exception, match="trained with 9 anchors per position and cannot use 1"):
        model.detect_many(_images(), ["1x1"])
    assert model.anchors.spec == "3x3"


@pytest.mark.slow
def test_evaluate_many_equals_evaluate_per_set(synth_dirs):
    from metaanchor.data.coco import CocoDataset
    from metaanchor.engine.evaluate import METRIC_KEYS, evaluate, evaluate_many

    _, val = synth_dirs
    data = CocoDataset(val)
    model = _retina("metaanchor")
    many = evaluate_many(model, data, SETS, batch_size=5, progress=False)
    assert len({m["AR100"] for m in many}) == len(SETS) and min(m["AR100"] for m in many) > 0  # sets differ
    for spec, m in zip(SETS, many):
        alone = evaluate(model, data, spec, batch_size=5, progress=False)
        assert {k: m[k] for k in METRIC_KEYS} == {k: alone[k] for k in METRIC_KEYS}
        assert m["per_class"] == alone["per_class"]
