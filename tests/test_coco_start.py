"""Starting from torchvision's COCO RetinaNets (v1 and v2) by weight name: imported models detect exactly
like torchvision's own ``model(images)``, the names work in configs, and offline is a one-line error.

No network: torchvision's download (``torch.hub.download_url_to_file``) is replaced by one that writes a
locally built state dict (random weights, the real architecture) into torchvision's cache, so torchvision's
model builder and our import read the same file through the same registry code as a real download.
"""

import json
from urllib.error import URLError

import pytest
import torch
from conftest import TINY, cli
from torchvision.models.detection import (
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)

from metaanchor.deploy.torchvision_import import import_torchvision_weights
from metaanchor.deploy.verify import same_detections
from metaanchor.errors import UserError
from metaanchor.families import load_detector
from metaanchor.modeling.pretrained import detector_weights_name

V1, V2 = RetinaNet_ResNet50_FPN_Weights.COCO_V1, RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1
BUILDERS = {"v1": (retinanet_resnet50_fpn, V1), "v2": (retinanet_resnet50_fpn_v2, V2)}
BOX_TOL, SCORE_TOL = 1e-3, 1e-5  # px, score


def coco_like_state(layout: str) -> dict:
    """A state dict of torchvision's model ``layout`` with random weights that give detections: BatchNorm
    statistics with small variances (so its epsilon matters), a class bias that lets scores pass 0.05."""
    builder, _ = BUILDERS[layout]
    torch.manual_seed(7 if layout == "v1" else 8)
    state = builder(weights=None, weights_backbone=None).state_dict()
    g = torch.Generator().manual_seed(1)
    for k in [k for k in state if k.endswith("running_var")]:
        n = len(state[k])
        var = 10 ** (torch.rand(n, generator=g) * 4 - 5)  # 1e-5 .. 1e-1: eps 0 vs 1e-5 differs by up to 30 %
        state[k] = var
        state[k.replace("running_var", "running_mean")] = torch.randn(n, generator=g) * 0.1
        state[k.replace("running_var", "weight")] = var.sqrt() * (0.8 + 0.4 * torch.rand(n, generator=g))
    cls = "head.classification_head.cls_logits."
    state[cls + "weight"] = state[cls + "weight"] * (8 if layout == "v1" else 2)  # v2's GroupNorm: larger inputs
    state[cls + "bias"] = torch.full_like(state[cls + "bias"], -4.0)
    return state


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """torchvision's cache in tmp_path; its "download" writes the local state dict of the URL's model."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    states = {V1.url: "v1", V2.url: "v2"}
    downloads = []

    def download(url, dst, hash_prefix=None, progress=True):
        if url not in states:
            raise URLError("no network in tests")
        downloads.append(url)
        torch.save(coco_like_state(states[url]), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return downloads


def batches():
    """Random images at two sizes: one alone, then both in one batch (the smaller one padded). At input size
    128 / 213 they resize to 128 x 170 (floor; rounding would give 171) and 153 x 128, and the padded batches
    (128 x 192, 160 x 192) are not multiples of 128: torchvision's P7 x-stride is 96 and its P6 y-stride 53."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 480, 640, generator=g), torch.rand(3, 600, 500, generator=g)
    return [[a], [b, a]]


def assert_detects_like_torchvision(layout: str, downloads: list, **size):
    builder, weights = BUILDERS[layout]
    net = builder(weights=weights, **size).eval()  # torchvision's own path for its COCO weights
    model = import_torchvision_weights(f"retinanet_{layout}", **size)
    assert downloads == [weights.url]  # one "download"; the import read torchvision's cached file
    assert model.head_type == "metaanchor" and model.import_residual < 1e-6
    for batch in batches():
        with torch.no_grad():
            theirs, ours = net(batch), model(batch)
        assert all(len(d["scores"]) > 20 for d in theirs)
        assert same_detections(ours, theirs, box_tol=BOX_TOL, score_tol=SCORE_TOL)


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_imported_coco_model_detects_exactly_like_torchvision(cache, layout):
    assert_detects_like_torchvision(layout, cache, min_size=128, max_size=213)


@pytest.mark.slow
def test_imported_coco_model_detects_like_torchvision_at_its_input_size(cache):
    assert_detects_like_torchvision("v2", cache)  # 800 / 1333: 800 x 1066 and 960 x 800


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_imported_settings_are_torchvisions(cache, layout):
    model = import_torchvision_weights(f"retinanet_resnet50_fpn{'_v2' if layout == 'v2' else ''}")
    c = model.config
    assert (c["min_size"], c["max_size"], c["score_thresh"], c["nms_thresh"], c["topk_candidates"],
            c["detections_per_img"]) == (800, 1333, 0.05, 0.5, 1000, 300)
    assert (c["transform"], c["grid_strides"], c["skip_padding_anchors"]) == ("torchvision", "padded", False)
    assert (c["bn_eps"], c["frozen_bn"], c["head_norm"], c["p6_input"], c["reg_loss"]) == (
        (0.0, True, "none", "p5", "l1") if layout == "v1" else (1e-5, False, "gn", "c5", "giou"))
    assert model.box_coder.weights == (1.0, 1.0, 1.0, 1.0)


def test_coco_names_and_category_ids_come_along(cache, tmp_path):
    model = import_torchvision_weights("RetinaNet_ResNet50_FPN_Weights.COCO_V1")
    assert model.num_classes == 91 and model.class_names[1] == "person" and model.class_names[3] == "car"
    assert model.category_ids[:4] == [0, 1, 2, 3] and model.category_ids[90] == 90  # labels are COCO ids
    model.save(tmp_path / "coco.pt")
    again = load_detector(tmp_path / "coco.pt")
    assert again.class_names == model.class_names and again.config["grid_strides"] == "padded"


def test_weight_names_and_aliases():
    for name in ("retinanet_resnet50_fpn_v2", "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1", "retinanet_v2",
                 "torchvision:retinanet_resnet50_fpn_v2", "RetinaNet_ResNet50_FPN_V2_Weights.DEFAULT"):
        assert detector_weights_name(name) == "retinanet_resnet50_fpn_v2", name
    assert detector_weights_name("RetinaNet_ResNet50_FPN_Weights.COCO_V1") == "retinanet_resnet50_fpn"
    assert detector_weights_name("fasterrcnn_resnet50_fpn") is None


def test_offline_and_not_cached_is_one_line_naming_file_cache_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(UserError) as e:
        import_torchvision_weights("retinanet_resnet50_fpn_v2")
    assert str(e.value) == (
        f"--weights retinanet_resnet50_fpn_v2: retinanet_resnet50_fpn_v2_coco-5905b1c5.pth is not in "
        f"torchvision's cache {folder} and cannot be downloaded ([Errno -3] Temporary failure in name "
        f"resolution); fetch {V2.url} elsewhere and put it in {folder}")



V2_MODEL = ["model.backbone=resnet50", "model.fpn_channels=256", "model.head_convs=4", "model.head_norm=gn",
            "model.p6_input=c5", "model.hidden_dim=64", "model.frozen_bn=true",
            "input.size=64", "solver.batch_size=2", "device=cpu"]


def test_init_from_torchvision_v2_fine_tunes_with_fresh_class_tensors(cache, capsys, tmp_path, synth_dirs):
    from metaanchor.config import load_config
    from metaanchor.engine.train import Trainer

    train, _ = synth_dirs  # 3 classes
    cfg = load_config(None, V2_MODEL + [f"data.train={train}", "model.init_from=torchvision:retinanet_resnet50_fpn_v2"])
    model = Trainer(cfg, tmp_path / "run", progress=False).model
    coco = {k: v for k, v in import_torchvision_weights("retinanet_v2").state_dict().items()
            if not k.endswith("num_batches_tracked")}  # plain BatchNorm in torchvision's v2, frozen here
    own = model.state_dict()
    fresh = [k for k in coco if coco[k].shape != own[k].shape]
    assert fresh and all(k.startswith("head.cls_generator.") for k in fresh)
    assert all(torch.equal(own[k], v) for k, v in coco.items() if k not in fresh)
    out = capsys.readouterr().out
    assert f"model.init_from: {len(fresh)} tensors that depend on the class count start fresh (head." in out


def test_init_from_torchvision_with_another_architecture_is_one_line_before_any_download(cache, capsys, tmp_path,
                                                                                       synth_dirs):
    train, _ = synth_dirs
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", *TINY, f"data.train={train}",
                       "model.init_from=torchvision:retinanet_resnet50_fpn", "solver.max_iter=1")
    assert code == 2 and err == [
        "metaanchor train: error: model.init_from=torchvision:retinanet_resnet50_fpn: these weights need "
        "model.backbone=resnet50, model.fpn_channels=256, model.head_convs=4, model.bn_eps=0.0 (the config has "
        "model.backbone=tiny, model.fpn_channels=16, model.head_convs=1, model.bn_eps=1e-05)"]
    assert cache == []


@pytest.mark.slow
def test_import_cli_by_name_and_predict_prints_coco_names(cache, capsys, tmp_path):
    code, out, err = cli(capsys, "import", "--from", "torchvision-retinanet", "--weights",
                         "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1", "--out", tmp_path / "coco_v2.pt")
    assert code == 0, err
    assert "resnet50-FPN RetinaNet (91 classes, 9 anchors per position, anchor set torchvision-3x3)" in out
    assert "torchvision layout v2 (GroupNorm heads, P6 from C5), BatchNorm eps 1e-05" in out
    image = tmp_path / "img.png"
    from PIL import Image

    pixels = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(0)) * 255
    Image.fromarray(pixels.byte().numpy()).save(image)
    code, _, err = cli(capsys, "predict", "--checkpoint", tmp_path / "coco_v2.pt", "--out", tmp_path / "pred",
                       "--no-draw", image)
    assert code == 0, err
    results = json.loads((tmp_path / "pred" / "detections.json").read_text())
    names = V2.meta["categories"]
    assert results and all(r["category"] == names[r["category_id"]] for r in results)  # COCO ids and names
    assert {"person", "car", "dog"} <= set(names) and any(r["category"] != "N/A" for r in results)


def test_import_cli_offline_is_one_line_with_exit_code_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    code, _, err = cli(capsys, "import", "--from", "torchvision-retinanet", "--weights", "retinanet_v1",
                       "--out", tmp_path / "coco.pt")
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert code == 2 and err == [
        f"metaanchor import: error: --weights retinanet_v1: retinanet_resnet50_fpn_coco-eeacb38b.pth is not in "
        f"torchvision's cache {folder} and cannot be downloaded ([Errno -3] Temporary failure in name "
        f"resolution); fetch {V1.url} elsewhere and put it in {folder}"]
    assert not (tmp_path / "coco.pt").exists()


def test_the_bccd_coco_recipe_has_the_architecture_of_torchvisions_v2_weights():
    from metaanchor.config import load_config
    from metaanchor.families.retinanet.from_torchvision import required_settings

    model = load_config("bccd_coco", [])["model"]
    assert model["init_from"] == "torchvision:retinanet_resnet50_fpn_v2" and model["head"] == "metaanchor"
    assert {k: model[k] for k in required_settings("retinanet_resnet50_fpn_v2")} == required_settings(
        "retinanet_resnet50_fpn_v2")
