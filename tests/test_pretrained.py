"""model.backbone_weights=imagenet (torchvision's registry and cache, never downloaded here) and model.init_from."""

from urllib.error import URLError

import pytest
import torch
import torchvision
from conftest import TINY, cli, tiny_detector

from metaanchor.errors import UserError
from metaanchor.modeling.backbones import build_backbone


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """torchvision's cache in tmp_path, and a network that is down."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_offline_and_not_cached_is_one_line_naming_file_cache_and_url(empty_cache):
    with pytest.raises(UserError) as e:
        build_backbone("resnet18", weights_path="imagenet")
    assert str(e.value) == (
        f"model.backbone_weights=imagenet: resnet18-f37072fd.pth is not in torchvision's cache {empty_cache} and "
        "cannot be downloaded ([Errno -3] Temporary failure in name resolution); fetch "
        f"https://download.pytorch.org/models/resnet18-f37072fd.pth elsewhere and put it in {empty_cache}")


def test_imagenet_weights_come_from_torchvisions_cache(empty_cache):
    torch.manual_seed(5)
    weights = torchvision.models.resnet18().state_dict()
    empty_cache.mkdir(parents=True)
    torch.save(weights, empty_cache / "resnet18-f37072fd.pth")
    body = build_backbone("resnet18", weights_path="imagenet").body.body
    assert all(torch.equal(v, weights[k]) for k, v in body.state_dict().items())


def test_imagenet_for_the_tiny_backbone_is_a_one_line_error(capsys, tmp_path, synth_dirs, empty_cache):
    train, _ = synth_dirs
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY, f"data.train={train}",
                       "model.backbone_weights=imagenet", "solver.max_iter=1")
    assert code == 2 and err == [
        "metaanchor train: error: model.backbone_weights=imagenet: torchvision has ImageNet weights for resnet18, "
        "resnet34, resnet50, resnet101, not for model.backbone=tiny; use one of those or a local file"]


def test_init_from_starts_training_from_the_checkpoint_weights(tmp_path, synth_dirs):
    from metaanchor.config import load_config
    from metaanchor.engine.train import Trainer

    train, _ = synth_dirs
    ckpt = tmp_path / "start.pt"
    tiny_detector(hidden_dim=8, fpn_channels=16, head_convs=1).save(ckpt)
    start = torch.load(ckpt, weights_only=True)["model"]
    cfg = load_config(None, TINY + [f"data.train={train}", f"model.init_from={ckpt}"])
    model = Trainer(cfg, tmp_path / "run", progress=False).model
    assert all(torch.equal(v.cpu(), start[k]) for k, v in model.state_dict().items())


def test_init_from_a_checkpoint_of_another_shape_names_the_keys(capsys, tmp_path, synth_dirs):
    train, _ = synth_dirs
    ckpt = tmp_path / "wide.pt"
    tiny_detector(hidden_dim=12, fpn_channels=16, head_convs=1).save(ckpt)
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY, f"data.train={train}",
                       f"model.init_from={ckpt}", "solver.max_iter=1")
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"metaanchor train: error: model.init_from={ckpt}: weights do not fit the model: "
                             "mismatched shapes head.cls_generator.fc1.weight (12, 2) (model (8, 2))")
    assert err[0].endswith("; the checkpoint has model.hidden_dim=12")


def test_init_from_another_class_count_keeps_fresh_class_tensors(capsys, tmp_path, synth_dirs):
    from metaanchor.config import load_config
    from metaanchor.engine.train import Trainer

    train, _ = synth_dirs  # 3 classes
    ckpt = tmp_path / "coco_like.pt"
    tiny_detector(num_classes=5, hidden_dim=8, fpn_channels=16, head_convs=1).save(ckpt)
    start = torch.load(ckpt, weights_only=True)["model"]
    cfg = load_config(None, TINY + [f"data.train={train}", f"model.init_from={ckpt}"])
    model = Trainer(cfg, tmp_path / "run", progress=False).model
    own = model.state_dict()
    fresh = [k for k in start if start[k].shape != own[k].shape]
    assert fresh and all(k.startswith("head.cls_generator.") for k in fresh)
    assert all(torch.equal(own[k].cpu(), v) for k, v in start.items() if k not in fresh)  # the rest is copied
    out = capsys.readouterr().out
    assert f"model.init_from: {len(fresh)} tensors that depend on the class count start fresh (head." in out
