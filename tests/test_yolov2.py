"""The YOLOv2 family: heads, box coding, assignment, loss, detector, registry and CLI."""

import json
import math

import pytest
import torch
import yaml

from metaanchor.cli import main
from metaanchor.config import load_config, model_kwargs
from metaanchor.errors import CheckpointError, ConfigError, UserError
from metaanchor.families import ARCHS, build_detector, detector_from_config, load_detector
from metaanchor.families.retinanet import RetinaNetDetector as Detector
from metaanchor.families.yolov2 import YoloV2Detector, fit_yolo_anchors
from metaanchor.families.yolov2.box_coder import YoloBoxCoder
from metaanchor.families.yolov2.heads import MetaAnchorYoloHead, PredefinedYoloHead
from metaanchor.families.yolov2.loss import assign_targets, ignored_predictions, yolo_loss
from metaanchor.geometry.anchors import AnchorSet, grid_anchors

C, CH = 3, 16
STANDARD = [128.0]


def tiny_yolo(head="metaanchor", anchors="scales=0.25,0.5;ratios=0.5,1,2", **kw):
    torch.manual_seed(0)
    args = dict(num_classes=C, backbone="tiny", head=head, anchors=anchors, fpn_channels=CH, head_convs=1,
                hidden_dim=8, min_size=128, max_size=128)
    return YoloV2Detector(**(args | kw))


def images(n=2, seed=0, size=128):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=g) for _ in range(n)]


def targets(n=2):
    return [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [70.0, 70.0, 120.0, 126.0]]),
             "labels": torch.tensor([0, 2])} for _ in range(n)]


# ----------------------------------------------------------------------------- heads
@pytest.mark.parametrize("data_dependent", [False, True])
def test_zero_residual_generated_head_equals_predefined_yolo_head(data_dependent):
    torch.manual_seed(0)
    meta = MetaAnchorYoloHead(CH, C, hidden_dim=8, data_dependent=data_dependent)
    meta.set_anchors(AnchorSet.parse("5x5").codes(STANDARD))
    with torch.no_grad():
        meta.generator.fc2.weight.zero_()
    base = PredefinedYoloHead(CH, C, num_anchors=25)
    with torch.no_grad():  # theta* in every anchor slot
        base.conv.weight.copy_(meta.generator.weight.repeat(25, 1, 1, 1))
        base.conv.bias.copy_(meta.generator.bias.repeat(25))
    x = [torch.randn(2, CH, 3, 5)]
    out_m, out_b = meta(x), base(x)
    assert out_m.shape == out_b.shape == (2, 3 * 5 * 25, 5 + C)
    if data_dependent:  # per-image weights run as an einsum, not a conv: equal up to rounding
        torch.testing.assert_close(out_m, out_b, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(out_m, out_b)


def test_theta_star_starts_at_objectness_prior():
    head = MetaAnchorYoloHead(CH, C, hidden_dim=8)
    head.set_anchors(AnchorSet.parse("3x3").codes(STANDARD))
    out = head([torch.zeros(1, CH, 2, 2)])
    torch.testing.assert_close(torch.sigmoid(out[..., 0]), torch.full((1, 36), 0.01), atol=1e-3, rtol=0)
    assert out[..., 1:].abs().max() < 1e-3  # classes and box start at 0


@pytest.mark.parametrize("spec,k", [("1x1", 1), ("scales=0.25,0.5,1,1.5,2", 5), ("3x3", 9), ("5x5", 25)])
def test_any_anchor_count_gives_right_output_count(spec, k):
    det = tiny_yolo().eval()
    det.set_anchors(spec)
    with torch.no_grad():
        feats = det.backbone(det.batcher(images())[0])
        out = det.head(feats)
        grid = det.grid([tuple(feats[0].shape[-2:])], "cpu")
        dets = det(images())
    assert feats[0].shape == (2, CH, 4, 4)  # one stride-32 map on a 128 px input
    assert out.shape == (2, 16 * k, 5 + C) and grid.shape == (16 * k, 4)
    assert len(dets) == 2


def test_predefined_yolo_head_refuses_other_anchor_counts():
    det = tiny_yolo(head="predefined")
    det.set_anchors("scales=1,2;ratios=0.5,1,2")  # same count is allowed
    with pytest.raises(UserError, match="trained with 6 anchors per position and cannot use 25"):
        det.set_anchors("5x5")


# ----------------------------------------------------------------------- box coding
def test_decoded_box_of_a_known_prediction():
    coder = YoloBoxCoder(32)
    anchors = grid_anchors([torch.tensor([[64.0, 32.0]])], [(4, 4)], [32])  # one anchor, h=64, w=32
    cell = anchors[1 * 4 + 2]  # row 1, column 2: corner (64, 32)
    assert cell.tolist() == [48.0, 0.0, 80.0, 64.0]
    box = coder.decode(torch.tensor([0.0, 0.0, math.log(2.0), 0.0]), cell)
    torch.testing.assert_close(box, torch.tensor([48.0, 16.0, 112.0, 80.0]))  # centre (80, 48), 64 x 64
    corner = coder.decode(torch.tensor([-30.0, 30.0, 0.0, math.log(0.5)]), cell)
    torch.testing.assert_close(corner, torch.tensor([48.0, 48.0, 80.0, 80.0]))  # centre (64, 64), 32 x 32
    huge = coder.decode(torch.tensor([0.0, 0.0, 100.0, 100.0]), cell)  # clamped like bbox_xform_clip
    assert torch.isfinite(huge).all() and (huge[2] - huge[0]).item() == pytest.approx(32 * 1000 / 16)


def test_encode_inverts_decode():
    coder = YoloBoxCoder(32)
    anchors = grid_anchors([torch.tensor([[40.0, 24.0], [90.0, 130.0]])], [(3, 5)], [32])
    t = torch.randn(len(anchors), 4)
    target = coder.encode(coder.decode(t, anchors), anchors)
    torch.testing.assert_close(target[:, :2], torch.sigmoid(t[:, :2]))
    torch.testing.assert_close(target[:, 2:], t[:, 2:], rtol=1e-4, atol=1e-5)


def test_detector_decodes_a_constant_prediction_in_image_pixels():
    det = tiny_yolo(head="predefined", anchors="scales=0.25").eval()  # one 32 x 32 anchor
    with torch.no_grad():
        det.head.conv.weight.zero_()
        det.head.conv.bias.copy_(torch.tensor([4.0, 3.0, -5.0, -5.0, 0.0, 0.0, 0.0, 0.0]))
    out = det([torch.rand(3, 256, 256)])[0]  # resized to 128: boxes come back x2
    assert len(out["boxes"]) == 16 and (out["labels"] == 0).all()
    torch.testing.assert_close(out["scores"], torch.full((16,), torch.sigmoid(torch.tensor(4.0)).item()
                                                        * torch.sigmoid(torch.tensor(3.0)).item()))
    want = torch.tensor([[64.0 * c, 64.0 * r, 64.0 * c + 64, 64.0 * r + 64] for r in range(4) for c in range(4)])
    got = out["boxes"][torch.argsort(out["boxes"][:, 1] * 1000 + out["boxes"][:, 0])]
    torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------- assignment
ANCHOR_SIZES = torch.tensor([[32.0, 32.0], [64.0, 32.0], [32.0, 64.0]])  # (h, w)


def assign(boxes_per_image, sizes=ANCHOR_SIZES, grid=(4, 4)):
    m = max(len(b) for b in boxes_per_image)
    gt = torch.zeros(len(boxes_per_image), m, 4)
    valid = torch.zeros(len(boxes_per_image), m, dtype=torch.bool)
    for i, b in enumerate(boxes_per_image):
        gt[i, :len(b)] = torch.tensor(b, dtype=torch.float32).reshape(-1, 4)
        valid[i, :len(b)] = True
    img, pred, g = assign_targets(gt, valid, sizes, grid, 32)
    return sorted(zip(img.tolist(), pred.tolist(), g.tolist()))


def test_ground_truth_goes_to_its_centre_cell_and_best_shape_anchor():
    tall = [33.0, 50.0, 63.0, 110.0]  # centre (48, 80): column 1, row 2; 60 high x 30 wide -> anchor 1 (64 x 32)
    wide = [32.0, 48.0, 96.0, 80.0]  # centre (64, 64) on a cell corner: column 2, row 2 (floor); 32 x 64 -> anchor 2
    assert assign([[tall], [wide]]) == [(0, (2 * 4 + 1) * 3 + 1, 0), (1, (2 * 4 + 2) * 3 + 2, 0)]


def test_two_claims_on_one_anchor_the_larger_box_wins():
    large = [0.0, 0.0, 40.0, 40.0]  # centre (20, 20): cell (0, 0), anchor 0
    small = [6.0, 6.0, 26.0, 26.0]  # centre (16, 16): cell (0, 0), anchor 0
    assert assign([[large, small]]) == [(0, 0, 0)]  # the larger, although listed first
    assert assign([[small, large]]) == [(0, 0, 1)]
    same = [4.0, 4.0, 44.0, 44.0]  # as large as ``large``: the later one wins
    assert assign([[large, same]]) == [(0, 0, 1)]
    other_image = assign([[large], [small]])  # no conflict across images
    assert other_image == [(0, 0, 0), (1, 0, 0)]


def test_padding_boxes_are_not_assigned():
    assert assign([[[0.0, 0.0, 40.0, 40.0]], []]) == [(0, 0, 0)]
    assert assign([[], []]) == []


def test_predictions_overlapping_a_ground_truth_above_0_6_are_ignored():
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
    valid = torch.tensor([[True, False]])  # the second is padding
    preds = torch.tensor([[[0.0, 0.0, 10.0, 8.0],  # IoU 0.8
                           [0.0, 0.0, 10.0, 6.0],  # IoU 0.6: not above
                           [50.0, 50.0, 60.0, 60.0]]])  # matches only the padding box
    assert ignored_predictions(preds, gt, valid, 0.6).tolist() == [[True, False, False]]


def test_objectness_loss_ignores_overlapping_predictions_and_punishes_the_rest():
    # 2 x 2 grid, anchors 32, 28 and 20 px square; with t = 0 every prediction is its anchor on the cell centre
    anchors = grid_anchors([torch.tensor([[32.0, 32.0], [28.0, 28.0], [20.0, 20.0]])], [(2, 2)], [32])
    out = torch.zeros(1, 12, 5 + C, requires_grad=True)
    tgt = [{"boxes": torch.tensor([[1.0, 1.0, 33.0, 33.0]]), "labels": torch.tensor([1])}]
    losses = yolo_loss(out, anchors, (2, 2), tgt, YoloBoxCoder(32), ignore_iou=0.6)
    losses["obj"].backward()
    g = out.grad[0, :, 0]
    assert g[0] == pytest.approx(-0.5)  # cell 0, anchor 0 (IoU 1 in shape): the positive, pulled up
    assert g[1] == 0.0  # cell 0, anchor 1: box (2, 2, 30, 30), IoU 0.77 with the ground truth: ignored
    assert torch.allclose(g[2:], torch.full((10,), 0.5))  # all others: background, pushed down
    assert set(losses) == {"obj", "cls", "box"} and all(torch.isfinite(v) for v in losses.values())


# --------------------------------------------------------------------------- detector
@pytest.mark.parametrize("head", ["metaanchor", "metaanchor-dd", "predefined"])
def test_training_gives_finite_losses_and_gradients_reach_the_generator(head):
    det = tiny_yolo(head=head).train()
    t = targets(2)
    t[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # an image without boxes
    losses = det(images(), t)
    assert set(losses) == {"obj", "cls", "box"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    if head == "predefined":
        assert det.head.conv.weight.grad.abs().sum() > 0
        return
    gen = det.head.generator
    params = {"theta* weight": gen.weight, "theta* bias": gen.bias, "W1": gen.fc1.weight, "W2": gen.fc2.weight}
    if head == "metaanchor-dd":
        params["W12"] = gen.fc_data.weight
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_losses_fall_when_overfitting():
    det = tiny_yolo().train()
    opt = torch.optim.SGD(det.parameters(), lr=0.01, momentum=0.9)
    first = None
    for _ in range(12):
        loss = sum(det(images(), targets()).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_eval_detections_are_in_original_image_pixels():
    det = tiny_yolo(min_size=256, max_size=256).eval()
    det.score_thresh = 0.0
    out = det([torch.rand(3, 100, 300)])[0]
    assert len(out["boxes"]) == 100
    assert out["boxes"][:, 2].max() <= 300 and out["boxes"][:, 3].max() <= 100
    assert out["boxes"][:, 2].max() > 200  # boxes span the whole width, not the resized one


def test_optimize_for_inference_keeps_detections():
    det = tiny_yolo().eval()
    imgs = images(1)
    plain = det.predict(imgs, score_thresh=0.0)[0]
    fast = tiny_yolo().optimize_for_inference().predict(imgs, score_thresh=0.0)[0]
    torch.testing.assert_close(fast["scores"], plain["scores"], rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="eval-only"):
        tiny_yolo().optimize_for_inference().train()


def test_resnet_backbone_gives_one_stride_32_map():
    torch.manual_seed(0)
    det = YoloV2Detector(num_classes=2, backbone="resnet18", anchors="1x3", fpn_channels=32, min_size=64,
                         max_size=64)
    feats = det.backbone(torch.rand(1, 3, 64, 96))
    assert len(feats) == 1 and feats[0].shape == (1, 32, 2, 3)


def test_retinanet_only_options_are_not_yolo_options():
    with pytest.raises(TypeError, match="unexpected keyword argument 'reg_loss'"):
        tiny_yolo(reg_loss="smooth_l1")
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.arch=yolov2", "model.reg_loss=giou"])
    assert str(e.value) == "config key model.reg_loss: not an option of model.arch=yolov2 (it is one of retinanet's)"


def test_every_yolo_constructor_knob_is_a_config_key():
    cfg = load_config(overrides=["model.arch=yolov2", "model.ignore_iou=0.3", "model.nms_thresh=0.4",
                                 "model.topk_candidates=50", "model.detections_per_img=7", "model.anchor_base=2"])
    det = build_detector("yolov2", **model_kwargs(cfg, 2, ["a", "b"]))
    assert (det.ignore_iou, det.nms_thresh, det.topk_candidates, det.detections_per_img) == (0.3, 0.4, 50, 7)
    assert det.standard_sizes == [64.0]


# --------------------------------------------------------------------- registry, checkpoints
def test_config_arch_choices_are_the_registry():
    assert set(ARCHS) == {"retinanet", "yolov2"}
    assert load_config(overrides=["model.arch=yolov2"])["model"]["arch"] == "yolov2"
    assert load_config()["model"]["arch"] == "retinanet"
    with pytest.raises(ConfigError, match="model.arch: 'ssd' is not one of retinanet, yolov2"):
        load_config(overrides=["model.arch=ssd"])
    with pytest.raises(UserError, match="model.arch='ssd' is unknown"):
        build_detector("ssd", num_classes=1)


def test_checkpoint_round_trip_through_the_registry(tmp_path):
    det = tiny_yolo(class_names=["a", "b", "c"]).eval()
    assert det.config["arch"] == "yolov2"
    path = tmp_path / "yolo.pt"
    det.save(path)
    again = load_detector(path)
    assert type(again) is YoloV2Detector and again.class_names == ["a", "b", "c"]
    assert again.anchors == det.anchors and not again.training
    imgs = images(1)
    a, b = det.predict(imgs, score_thresh=0.0)[0], again.predict(imgs, score_thresh=0.0)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    unseen = again.predict(imgs, anchors="scales=0.2,0.4;ratios=0.5,1,2", score_thresh=0.0)[0]
    assert len(unseen["boxes"]) > 0 and not torch.equal(unseen["boxes"], b["boxes"])
    assert again.anchors == det.anchors  # predict's anchors are for that call only
    assert type(detector_from_config(det.config)) is YoloV2Detector
    assert type(YoloV2Detector.from_checkpoint(path)) is YoloV2Detector


def test_each_family_refuses_the_others_checkpoints(tmp_path):
    yolo, retina = tmp_path / "yolo.pt", tmp_path / "retina.pt"
    tiny_yolo().save(yolo)
    torch.manual_seed(0)
    Detector(num_classes=C, fpn_channels=16, head_convs=1, hidden_dim=8, min_size=128, max_size=128).save(retina)
    assert type(load_detector(retina)) is Detector  # no arch in RetinaNet checkpoints: the default
    with pytest.raises(CheckpointError, match="yolo.pt: holds a model.arch=yolov2 model, not retinanet"):
        Detector.from_checkpoint(yolo)
    with pytest.raises(CheckpointError, match="retina.pt: holds a model.arch=retinanet model, not yolov2"):
        YoloV2Detector.from_checkpoint(retina)
    payload = torch.load(yolo, weights_only=True)
    payload["model_config"]["arch"] = "ssd"
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(CheckpointError, match="future.pt: model.arch='ssd' is unknown"):
        load_detector(future)


def test_fit_yolo_anchors_are_relative_to_the_standard_box(synth_dirs):
    train, _ = synth_dirs
    fitted = fit_yolo_anchors(train, k=3)
    assert len(fitted) == 3
    # synthetic boxes are 16..64 px: relative to the 128 px standard box they lie in 1/8..1/2 (rounding aside)
    assert all(0.09 < h < 0.6 and 0.09 < w < 0.6 for h, w in fitted.shapes)


# ------------------------------------------------------------------------------ CLI
TINY = ["model.arch=yolov2", "model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1",
        "model.hidden_dim=8", "input.size=128", "solver.batch_size=4", "solver.warmup_iters=1", "eval.batch_size=8",
        "log.period=1", "device=cpu"]


def test_train_eval_predict_search_with_yolov2_on_the_command_line(synth_dirs, tmp_path, capsys):
    train, val = synth_dirs
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", f"data.train={train}", f"data.val={val}",
                 "solver.max_iter=3", "anchors.train=scales=0.25,0.5;ratios=0.5,1,2", "anchors.eval=[5x5]",
                 "eval.score_thresh=0.001", *TINY]) == 0
    assert (out / "last.pt").is_file() and yaml.safe_load((out / "config.yaml").read_text())["model"]["arch"] \
        == "yolov2"
    assert "obj" in (out / "metrics.csv").read_text().splitlines()[0]
    assert type(load_detector(out / "last.pt")) is YoloV2Detector

    metrics = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--data", str(val), "--anchors", "5x5",
                 "--json-out", str(metrics), "--device", "cpu"]) == 0
    m = json.loads(metrics.read_text())
    assert all(0.0 <= m[k] <= 1.0 for k in ("AP", "AP50", "AP75")) and m["anchors"] == "5x5"

    pred = tmp_path / "pred"
    first = sorted((val / "images").iterdir())[0]
    assert main(["predict", "--checkpoint", str(out / "last.pt"), "--anchors", "5x5", "--out", str(pred),
                 "--score-thresh", "0.001", "--device", "cpu", str(first)]) == 0
    assert (pred / "detections.json").is_file()

    assert main(["anchors", "search", "--checkpoint", str(out / "last.pt"), "--data", str(val), "--budget", "2",
                 "--device", "cpu", "--out", str(tmp_path / "best.yaml")]) == 0
    assert AnchorSet.parse(str(tmp_path / "best.yaml"))
    capsys.readouterr()


@pytest.mark.parametrize("arch, levels", [("yolov2", 1), ("retinanet", 5)])
def test_fit_anchors_uses_the_family_levels(arch, levels):
    """Planted shapes come back relative to the standard box of the level they fit best."""
    from metaanchor.families import detector_class

    cls = detector_class(arch)
    assert len(cls.pyramid_strides) == levels
    # two planted pixel shapes (h, w) at the network's input scale, 50 boxes each, +-2 % noise
    g = torch.Generator().manual_seed(0)
    planted = torch.tensor([[64.0, 32.0], [40.0, 160.0]])
    shapes = (planted.repeat_interleave(50, 0) * (1 + 0.02 * (2 * torch.rand(100, 2, generator=g) - 1))).numpy()
    fitted = cls.fit_anchors(shapes, k=2)
    sizes = [4.0 * s for s in cls.pyramid_strides]  # standard box side per level (anchor_base 4)
    got = sorted(fitted.shapes)
    want = []
    for h, w in planted.tolist():  # the level whose square standard box overlaps the shape best
        iou = [min(h, s) * min(w, s) / (h * w + s * s - min(h, s) * min(w, s)) for s in sizes]
        s = sizes[max(range(len(sizes)), key=iou.__getitem__)]
        want.append((h / s, w / s))
    for (gh, gw), (wh, ww) in zip(got, sorted(want)):
        assert gh == pytest.approx(wh, rel=0.03) and gw == pytest.approx(ww, rel=0.03)


def test_kmeans_training_anchors_are_fitted_written_and_used(synth_dirs, tmp_path, capsys):
    train, _ = synth_dirs
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", f"data.train={train}", "solver.max_iter=1",
                 "anchors.train=kmeans4", *TINY]) == 0
    written = AnchorSet.parse(str(out / "anchors_kmeans.yaml"))
    # the same fit as `anchors fit --arch yolov2` would make: synth images are 128 px, input.size=128 -> scale 1
    assert written == fit_yolo_anchors(train, k=4)
    assert load_detector(out / "last.pt").train_anchors == written
    assert yaml.safe_load((out / "config.yaml").read_text())["anchors"]["train"] == str(out / "anchors_kmeans.yaml")
    capsys.readouterr()


@pytest.mark.parametrize("spec, message", [
    ("kmeans0", "config key anchors.train: anchor SPEC 'kmeans0': k-means needs 1..64 anchors, not 0"),
    ("kmeans99", "config key anchors.train: anchor SPEC 'kmeans99': k-means needs 1..64 anchors, not 99"),
])
def test_kmeans_anchor_count_is_checked_with_the_config(spec, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"anchors.train={spec}"])
    assert str(e.value) == message


def test_kmeans_is_a_training_spec_only():
    with pytest.raises(ConfigError, match="config key anchors.eval: anchor SPEC 'kmeans5'"):
        load_config(None, ["anchors.eval=[kmeans5]"])
