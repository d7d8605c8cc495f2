"""torchvision RetinaNet interop: export a predefined-anchor model, import a torchvision state dict."""

import json

import pytest
import torch
from conftest import cli
from torchvision.models.detection import RetinaNet, retinanet_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from metaanchor.deploy.torchvision_export import export_torchvision, verify_torchvision
from metaanchor.deploy.torchvision_import import import_torchvision_retinanet, torchvision_anchor_set
from metaanchor.deploy.torchvision_layout import torchvision_retinanet_for
from metaanchor.deploy.verify import same_detections
from metaanchor.errors import UserError
from metaanchor.families import RetinaNetDetector, load_detector

SIZE = 128  # inputs resize to 128 x 128: a multiple of 128, so both libraries use strides 8..128


def images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 256, 256, generator=g), torch.rand(3, SIZE, SIZE, generator=g)]


def sharpen(cls_conv, reg_conv):
    """Random last convs large enough to give many detections above the score threshold."""
    with torch.no_grad():
        cls_conv.weight.mul_(30)
        cls_conv.bias.fill_(-1.0)
        reg_conv.weight.mul_(10)


def resnet18_torchvision_retinanet(num_classes=4) -> RetinaNet:
    """torchvision's own RetinaNet on a ResNet-18-FPN (its default anchors), random weights."""
    torch.manual_seed(3)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    net = RetinaNet(backbone, num_classes, min_size=SIZE, max_size=SIZE, detections_per_img=300).eval()
    sharpen(net.head.classification_head.cls_logits, net.head.regression_head.bbox_reg)
    return net


def raw_outputs(model, net, imgs):
    """Both heads on our batch: ([B, A, C], [B, A, 4]) each."""
    with torch.no_grad():
        batch, _, _ = model._batch(imgs)
        ours = model.head(model.backbone(batch))
        out = net.head(list(net.backbone(batch).values()))
    return ours, (out["cls_logits"], out["bbox_regression"])


@pytest.fixture(scope="module")
def predefined_r18():
    torch.manual_seed(0)
    model = RetinaNetDetector(3, backbone="resnet18", head="predefined", fpn_channels=256, anchors="2x3",
                              min_size=SIZE, max_size=SIZE).eval()
    sharpen(model.head.cls_logits, model.head.bbox_pred)
    return model


def test_exported_state_dict_loads_strictly_into_torchvision_and_detects_the_same(predefined_r18, tmp_path):
    out = export_torchvision(predefined_r18, tmp_path / "r18.pth")
    build = json.loads((tmp_path / "r18.json").read_text())
    assert build["num_classes"] == 3 and build["backbone"] == "resnet18"
    assert [len(a) for a in build["anchors"]["cell_anchors"]] == [6] * 5
    net = torchvision_retinanet_for(predefined_r18)
    net.load_state_dict(torch.load(out, weights_only=True), strict=True)
    # torchvision's anchors are exactly ours (feature maps only give their sizes)
    from torchvision.models.detection.image_list import ImageList

    feats = [torch.empty(1, 1, SIZE // s, SIZE // s) for s in predefined_r18.strides]
    theirs = net.anchor_generator(ImageList(torch.empty(1, 3, SIZE, SIZE), [(SIZE, SIZE)]), feats)[0]
    assert torch.equal(theirs, predefined_r18.grid([tuple(f.shape[-2:]) for f in feats], "cpu"))
    report = verify_torchvision(predefined_r18, out, images()[:1])  # raw head outputs and full pipelines
    assert report["max_abs_diff"] < 1e-4 and report["match"] is True and report["detections"] > 10


def test_export_refuses_metaanchor_heads_and_non_resnet_backbones(tmp_path):
    torch.manual_seed(0)
    meta = RetinaNetDetector(3, backbone="resnet18", head="metaanchor", fpn_channels=256)
    with pytest.raises(UserError, match="needs a predefined-anchor head; bake"):
        export_torchvision(meta, tmp_path / "m.pth")
    tiny = RetinaNetDetector(3, backbone="tiny", head="predefined", fpn_channels=16, head_convs=1)
    with pytest.raises(UserError, match=r"model.backbone=tiny, model.fpn_channels=16, model.head_convs=1 has no "
                                        "torchvision RetinaNet equivalent"):
        export_torchvision(tiny, tmp_path / "t.pth")
    assert not list(tmp_path.iterdir())


def test_import_reproduces_torchvision_outputs_and_detections_and_takes_other_anchors():
    net = resnet18_torchvision_retinanet()  # torchvision's FrozenBatchNorm2d default: eps 1e-5, not its COCO 0
    model = import_torchvision_retinanet(net.state_dict(), min_size=SIZE, max_size=SIZE, bn_eps=1e-5)
    assert model.head_type == "metaanchor" and model.config["backbone"] == "resnet18"
    assert model.num_classes == 4 and model.category_ids == [0, 1, 2, 3]
    assert model.anchors == torchvision_anchor_set() and model.import_residual < 1e-8
    imgs = images()[1:]
    (a_cls, a_reg), (b_cls, b_reg) = raw_outputs(model, net, imgs)
    assert (a_cls - b_cls).abs().max() < 1e-4 and (a_reg - b_reg).abs().max() < 1e-4
    with torch.no_grad():
        dets_ours, dets_tv = model(imgs), net(imgs)
    assert all(len(d["scores"]) > 10 for d in dets_tv)
    assert same_detections(dets_ours, dets_tv, score_tol=1e-4)
    # any other anchor set: 25 anchors per position, finite outputs that differ from the 9-anchor ones
    model.set_anchors("5x5")
    with torch.no_grad():
        cls5, reg5 = model.head(model.backbone(model._batch(imgs)[0]))
    assert cls5.shape[1] == a_cls.shape[1] // 9 * 25
    assert torch.isfinite(cls5).all() and torch.isfinite(reg5).all()
    assert (cls5.view(1, -1, 25, 4)[:, :, 12] - a_cls.view(1, -1, 9, 4)[:, :, 4]).abs().max() > 1e-3
    # the generated weights stay the size of the original ones (a well-conditioned fit)
    w5 = model.head.generate(model.head.codes[0])[0]
    assert w5.abs().max() < 3 * net.head.classification_head.cls_logits.weight.abs().max()


def test_an_imported_model_exports_back_to_torchvision_with_the_same_detections(tmp_path):
    net = resnet18_torchvision_retinanet()
    model = import_torchvision_retinanet(net.state_dict(), min_size=SIZE, max_size=SIZE, bn_eps=1e-5,
                                         head="predefined")  # torchvision's per-level anchors cannot be baked
    g = torch.Generator().manual_seed(2)
    imgs = [torch.rand(3, 100, 150, generator=g), torch.rand(3, 90, 70, generator=g)]  # batch 128 x 128 padded
    with torch.no_grad():  # 85 x 128 alone: padded to 96 x 128, torchvision's P6 y-stride is 48
        assert same_detections(model(imgs[:1]), net(imgs[:1]), score_tol=1e-4)
    out = export_torchvision(model, tmp_path / "back.pth")
    assert json.loads((tmp_path / "back.json").read_text())["size_divisible"] == 32  # torchvision's own rule
    for batch in (imgs[:1], imgs):
        report = verify_torchvision(model, out, batch)
        assert report["match"] is True and report["detections"] > 10


def pyramid_features(batch=1):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 256, n, n, generator=g) for n in (16, 8, 4, 2, 1)]


def test_import_of_retinanet_resnet50_fpn_keys_reproduces_its_heads():
    torch.manual_seed(0)
    net = retinanet_resnet50_fpn(weights=None, weights_backbone=None).eval()
    state = net.state_dict()
    model = import_torchvision_retinanet(state)
    assert model.config["backbone"] == "resnet50" and model.num_classes == 91
    assert model.class_names[1] == "person" and model.category_ids[1] == 1  # labels are COCO category ids
    ours = model.state_dict()
    assert all(torch.equal(ours["backbone.body." + k[len("backbone."):]], v) for k, v in state.items()
               if k.startswith("backbone.") and not k.endswith("num_batches_tracked"))
    feats = pyramid_features()
    with torch.no_grad():
        a_cls, a_reg = model.head(feats)
        out = net.head(feats)
    assert (a_cls - out["cls_logits"]).abs().max() < 1e-4 and (a_reg - out["bbox_regression"]).abs().max() < 1e-4


def test_torchvision_anchors_are_per_level_and_rounded():
    anchors = torchvision_anchor_set()
    assert anchors.num_anchors(5) == [9] * 5
    assert anchors.per_level[0][3] == (32.0, 32.0) and anchors.per_level[0][0] == (22.0, 46.0)
    assert anchors.per_level[4][5] == (812.0, 812.0)  # P7: 512 * 2^(2/3) rounded, not 1.5625 * 512


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "retinanet_r18.pth"
    torch.save(resnet18_torchvision_retinanet().state_dict(), path)
    return path


def test_import_cli_writes_a_metaanchor_checkpoint(capsys, tmp_path, tv_weights):
    code, out, err = cli(capsys, "import", "--from", "torchvision-retinanet", "--weights", tv_weights,
                         "--out", tmp_path / "imported.pt")
    assert code == 0, err
    assert "resnet18-FPN RetinaNet (4 classes, 9 anchors per position, anchor set torchvision-3x3)" in out
    model = load_detector(tmp_path / "imported.pt")
    assert model.head_type == "metaanchor" and model.anchors == torchvision_anchor_set()
    state = torch.load(tv_weights, weights_only=True)
    with torch.no_grad():  # the generated last convs are torchvision's, on every level
        for codes in model.head.codes:
            w, b = model.head.generate(codes)[:2]
            assert (w - state["head.classification_head.cls_logits.weight"]).abs().max() < 1e-5
            assert (b - state["head.classification_head.cls_logits.bias"]).abs().max() < 1e-5


def test_import_cli_rejects_bad_files(capsys, tmp_path, tv_weights):
    def run(state_or_bytes, name):
        path = tmp_path / name
        if isinstance(state_or_bytes, bytes):
            path.write_bytes(state_or_bytes)
        else:
            torch.save(state_or_bytes, path)
        return cli(capsys, "import", "--from", "torchvision-retinanet", "--weights", path, "--out", tmp_path / "o.pt")

    state = torch.load(tv_weights, weights_only=True)
    code, _, err = run(b"not a pickle", "junk.pth")
    assert code == 2 and len(err) == 1 and "junk.pth: not a PyTorch state dict" in err[0]
    code, _, err = run([torch.zeros(2)], "list.pth")
    assert code == 2 and err == [f"metaanchor import: error: --weights {tmp_path / 'list.pth'}: not a state dict "
                                 "(a mapping of parameter names to tensors)"]
    import torchvision

    code, _, err = run(torchvision.models.resnet18().state_dict(), "classifier.pth")
    assert code == 2 and len(err) == 1
    assert ("classifier.pth: not a torchvision RetinaNet with a ResNet-18/34/50/101 backbone (missing keys "
            "backbone.body.conv1.weight, backbone.body.layer3.0.conv1.weight)") in err[0]
    broken = dict(state)
    del broken["backbone.fpn.layer_blocks.0.0.weight"]
    broken["head.extra.weight"] = torch.zeros(1)
    broken["head.regression_head.conv.0.0.bias"] = torch.zeros(7)
    code, _, err = run(broken, "broken.pth")
    assert code == 2 and len(err) == 1
    assert ("does not fit a torchvision RetinaNet (resnet18-FPN, 4 classes): missing keys "
            "backbone.fpn.layer_blocks.0.0.weight; unexpected keys head.extra.weight; mismatched shapes "
            "head.regression_head.conv.0.0.bias (7,) (expected (256,))") in err[0]
    code, _, err = cli(capsys, "import", "--from", "torchvision-retinanet", "--weights", tv_weights,
                       "--out", tmp_path / "o.pt", "--hidden-dim", "20")
    assert code == 2 and "--hidden-dim 20: too small for anchor set torchvision-3x3" in err[0]
    assert not (tmp_path / "o.pt").exists()


def test_import_cli_never_overwrites_the_weights(capsys, tv_weights):
    before = tv_weights.read_bytes()
    code, _, err = cli(capsys, "import", "--from", "torchvision-retinanet", "--weights", tv_weights,
                       "--out", tv_weights)
    assert (code, err) == (2, [f"metaanchor import: error: --out {tv_weights}: would overwrite the input "
                               f"--weights ({tv_weights})"])
    assert tv_weights.read_bytes() == before
