"""Baking an anchor set, ONNX and TorchScript export, the numpy post-processor, `metaanchor export`."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli, tiny_detector
from PIL import Image

from metaanchor import AnchorSet, load_detector
from metaanchor.deploy import numpy_postprocess as npp
from metaanchor.deploy.graph import ExportGraph, metadata
from metaanchor.deploy.onnx_export import OPSET, export_onnx, onnx_runner
from metaanchor.deploy.torchscript_export import export_torchscript, torchscript_runner
from metaanchor.deploy.verify import same_detections
from metaanchor.errors import UserError
from metaanchor.families import build_detector

BOX_TOL, SCORE_TOL, RAW_TOL = 1e-4, 1e-5, 1e-4
DEPLOY_BOX_TOL = 1e-3  # px; exported graph + numpy pre/post-processing (other float32 kernels and resize)
DEPLOY_DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def yolo_detector(**kw):
    torch.manual_seed(0)
    args = dict(num_classes=3, backbone="tiny", fpn_channels=16, hidden_dim=8, min_size=128, max_size=128,
                anchors="3x3")
    return build_detector("yolov2", **(args | kw))


FAMILIES = {"retinanet": tiny_detector, "yolov2": yolo_detector}
# Head weights std and score threshold giving a few to a few dozen detections per image with spread scores.
LIVELY = {"retinanet": (0.3, 0.75), "yolov2": (0.6, 0.5)}


def lively(family: str, **kw):
    """An untrained detector whose head weights are spread out. An untrained head scores ~0.01 everywhere,
    so near-equal scores would make top-k and NMS depend on float rounding; here they are well apart."""
    std, thresh = LIVELY[family]
    model = FAMILIES[family](score_thresh=thresh, max_size=256, **kw)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(std=std)
    return model.eval()


def noise_images(*shapes):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=g) for h, w in shapes]


def as_arrays(images):
    """[3, H, W] tensors in [0, 1] -> [H, W, 3] float arrays (what a deployment reads)."""
    return [im.permute(1, 2, 0).numpy() for im in images]


def count(dets) -> int:
    return sum(len(d["scores"]) for d in dets)


# --------------------------------------------------------------------------------------------- baking
@pytest.mark.parametrize("spec", ["1x1", "3x3", "5x5"])
@pytest.mark.parametrize("family", ["retinanet", "yolov2"])
def test_baked_model_equals_metaanchor_model_with_that_anchor_set(family, spec):
    model = FAMILIES[family](score_thresh=0.0).eval()
    baked = model.bake(spec)
    assert baked.head_type == "predefined" and baked.anchors == AnchorSet.parse(spec)
    assert not any("generator" in k for k in baked.state_dict())
    images = noise_images((100, 120), (128, 90))
    expected = model.predict(images, anchors=spec)
    got = baked.predict(images)
    assert count(expected) > 0
    assert same_detections(expected, got, BOX_TOL, SCORE_TOL)


def test_bake_leaves_the_original_untouched():
    model = tiny_detector().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    baked = model.bake("5x5")
    assert baked is not model and model.head_type == "metaanchor" and model.anchors == AnchorSet.parse("3x3")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", ["retinanet", "yolov2"])
def test_baked_checkpoint_reloads_as_predefined_model_with_same_detections(family, tmp_path):
    baked = FAMILIES[family](score_thresh=0.0, class_names=["a", "b", "c"]).eval().bake("2x3")
    baked.save(tmp_path / "baked.pt")
    loaded = load_detector(tmp_path / "baked.pt")
    assert type(loaded) is type(baked) and loaded.head_type == "predefined"
    assert loaded.anchors == AnchorSet.parse("2x3") and loaded.class_names == ["a", "b", "c"]
    images = noise_images((100, 120))
    expected, got = baked.predict(images), loaded.predict(images)
    assert count(expected) > 0 and same_detections(expected, got, BOX_TOL, SCORE_TOL)


def test_baking_a_predefined_model_with_its_own_anchors_is_a_copy():
    model = tiny_detector(head="predefined", score_thresh=0.0).eval()
    baked = model.bake("3x3")
    assert baked is not model and baked.head is not model.head
    assert all(torch.equal(v, baked.state_dict()[k]) for k, v in model.state_dict().items())
    images = noise_images((100, 120))
    assert same_detections(model.predict(images), baked.predict(images), 0, 0)


def test_bake_refuses_a_data_dependent_generator():
    with pytest.raises(UserError, match=r"^model.head=metaanchor-dd: the data-dependent generator makes the last "
                                        r"layer's weights from each image, so they cannot be baked"):
        tiny_detector(head="metaanchor-dd").bake("3x3")


def test_bake_refuses_another_anchor_count_for_a_predefined_model():
    with pytest.raises(UserError, match="^the predefined-anchor head was trained with 9 anchors per position and "
                                        "cannot use 25;"):
        tiny_detector(head="predefined").bake("5x5")


def test_bake_per_level_anchor_sets(tmp_path):
    """A predefined RetinaNet head has one last conv for all levels: a per-level set bakes only when every
    level has the same shapes relative to its standard box (32, 64, ... px); one-level YOLOv2 takes any."""
    differing = tmp_path / "differing.yaml"
    differing.write_text("levels: " + json.dumps([[[32, 32], [40, 20]]] * 5))
    with pytest.raises(UserError, match=f"^anchor set {re.escape(str(differing))}: level 1 has other anchor shapes "
                                        ".relative to its standard box. than level 0, but a predefined-anchor head "
                                        "shares one last conv across levels"):
        tiny_detector().bake(str(differing))
    proportional = tmp_path / "proportional.yaml"
    proportional.write_text("levels: " + json.dumps([[[32 * 2 ** i, 32 * 2 ** i]] for i in range(5)]))
    model = tiny_detector(score_thresh=0.0).eval()
    images = noise_images((100, 120))
    assert same_detections(model.predict(images, anchors=str(proportional)),
                           model.bake(str(proportional)).predict(images), BOX_TOL, SCORE_TOL)
    one_level = tmp_path / "one_level.yaml"
    one_level.write_text("levels: [[[100, 50], [60, 120]]]")
    yolo = yolo_detector(score_thresh=0.0).eval()
    expected = yolo.predict(images, anchors=str(one_level))
    assert count(expected) > 0 and same_detections(expected, yolo.bake(str(one_level)).predict(images),
                                                   BOX_TOL, SCORE_TOL)


# ---------------------------------------------------------------------------- ONNX and TorchScript
EXPORTERS = {"onnx": (export_onnx, onnx_runner), "torchscript": (export_torchscript, torchscript_runner)}
BATCHES = {"b1": [(100, 120)], "b3": [(90, 250), (128, 100), (64, 200)]}  # two padded batch sizes


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(format, family): (baked model, path)}: lively tiny models baked with 5x5, exported."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for family in FAMILIES:
        baked = lively(family).bake("5x5")
        for fmt, (export, _) in EXPORTERS.items():
            out[fmt, family] = baked, export(baked, root / f"{family}.{fmt}")
    return out


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("family", ["retinanet", "yolov2"])
@pytest.mark.parametrize("fmt", list(EXPORTERS))
def test_exported_model_matches_pytorch(exported, fmt, family, batch):
    baked, path = exported[fmt, family]
    run, meta = EXPORTERS[fmt][1](path)
    images = noise_images(*BATCHES[batch])
    with torch.no_grad():
        tensor_batch = baked.batcher(images)[0]
        expected = [t.numpy() for t in ExportGraph(baked)(tensor_batch)]
    got = run(tensor_batch.numpy())
    assert tensor_batch.shape[0] == len(images)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=0, atol=RAW_TOL)
    assert got[3].sum() == got[2].shape[0] == got[0].shape[1]  # level sizes add up to the anchors
    reference = baked.predict(images)
    assert count(reference) > 0
    assert same_detections(reference, npp.detect(run, as_arrays(images), meta), DEPLOY_BOX_TOL, SCORE_TOL)


def test_onnx_file_states_opset_and_dynamic_axes(exported):
    import onnx

    model = onnx.load(str(exported["onnx", "retinanet"][1]))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    d = exported["onnx", "retinanet"][0].batcher.size_divisible
    assert dims == ["batch", 3, f"{d}*rows", f"{d}*cols"]  # the dynamo exporter: sides are multiples of d
    meta = json.loads({p.key: p.value for p in model.metadata_props}["metaanchor"])
    assert meta["box_coding"]["name"] == "retinanet" and meta["anchors"] == "5x5"
    assert meta["size_divisible"] == exported["onnx", "retinanet"][0].batcher.size_divisible


def test_torchscript_loads_without_metaanchor(exported, tmp_path):
    baked, path = exported["torchscript", "yolov2"]
    images = noise_images(*BATCHES["b3"])
    batch = baked.batcher(images)[0]
    np.save(tmp_path / "batch.npy", batch.numpy())
    code = ("import sys, numpy, torch, torchvision\n"
            "m = torch.jit.load(sys.argv[1])\n"
            "with torch.no_grad():\n"
            "    outs = m(torch.from_numpy(numpy.load(sys.argv[2])))\n"
            "assert not any(name.startswith('metaanchor') for name in sys.modules)\n"
            "numpy.savez(sys.argv[3], *[o.numpy() for o in outs])\n")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "batch.npy"), str(tmp_path / "out.npz")],
                   check=True, cwd=tmp_path, timeout=120)
    got = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        expected = ExportGraph(baked)(batch)
    for i, e in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], e.numpy(), rtol=0, atol=RAW_TOL)


def test_numpy_preprocess_equals_the_model_batcher():
    model = tiny_detector(max_size=256)
    images = noise_images(*BATCHES["b3"])
    batch, scales, sizes = model.batcher(images)
    meta = metadata(model)
    got, got_scales, got_sizes = npp.preprocess(as_arrays(images), meta)
    np.testing.assert_allclose(got, batch.numpy(), rtol=0, atol=1e-4)  # interpolation weights round differently
    assert [tuple(s) for s in got_sizes] == [tuple(s) for s in sizes] and np.allclose(got_scales, scales)
    uint8 = [(a * 255).round().astype(np.uint8) for a in as_arrays(images)]
    expected = model.batcher([torch.from_numpy(a).permute(2, 0, 1) for a in uint8])[0]
    np.testing.assert_allclose(npp.preprocess(uint8, meta)[0], expected.numpy(), rtol=0, atol=1e-4)


def test_deployment_snippet_gives_the_models_detections(exported, tmp_path, monkeypatch):
    """docs/deploy.md's onnxruntime snippet, run as written on a model with detections and two images."""
    from metaanchor.deploy.onnx_nms import export_onnx_nms

    text = DEPLOY_DOC.read_text()
    section = text[text.index("## Without torch"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    baked, path = exported["onnx", "retinanet"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "model.onnx").write_bytes(Path(path).read_bytes())
    export_onnx_nms(baked, tmp_path / "runs" / "model_nms.onnx")
    arrays = [(a * 255).round().astype(np.uint8) for a in as_arrays(noise_images((100, 120), (90, 250)))]
    for name, a in zip(("a.png", "b.png"), arrays):
        Image.fromarray(a).save(tmp_path / name)
    scope = {}
    exec(compile(snippet, "docs/deploy.md snippet", "exec"), scope)
    expected = baked.predict([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in arrays])
    assert count(expected) > 0 and same_detections(expected, scope["dets"], DEPLOY_BOX_TOL, SCORE_TOL)


# ----------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def lively_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("lively")
    lively("retinanet", class_names=["a", "b", "c"]).save(root / "m.pt")
    images = []
    for i, a in enumerate(as_arrays(noise_images((100, 120), (90, 250)))):
        images.append(root / f"img{i}.png")
        Image.fromarray((a * 255).round().astype(np.uint8)).save(images[-1])
    return root / "m.pt", images


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cli_export_verify_matches(capsys, lively_ckpt, tmp_path, fmt):
    ckpt, images = lively_ckpt
    code, out, err = cli(capsys, "export", "--checkpoint", ckpt, "--anchors", "5x5", "--format", fmt,
                         "--output", tmp_path / "m.out", "--verify", *images)
    assert code == 0, err
    assert f"{fmt}: retinanet with anchors 5x5 (25 per position) -> {tmp_path / 'm.out'}" in out
    diff = float(re.search(r"max \|difference\| of raw outputs (\S+);", out).group(1))
    assert diff <= RAW_TOL and "detections match (" in out
    assert int(re.search(r"\((\d+) detections\)", out).group(1)) > 0


def test_cli_export_verify_exits_1_when_the_exported_weights_differ(capsys, lively_ckpt, tmp_path, monkeypatch):
    from metaanchor.deploy import onnx_export

    real = onnx_export.export_onnx

    def corrupted(baked, path, **options):
        bad = copy.deepcopy(baked)
        with torch.no_grad():
            bad.head.cls_logits.bias += 0.5
        return real(bad, path, **options)

    monkeypatch.setattr(onnx_export, "export_onnx", corrupted)
    ckpt, images = lively_ckpt
    code, out, err = cli(capsys, "export", "--checkpoint", ckpt, "--anchors", "5x5", "--format", "onnx",
                         "--output", tmp_path / "m.onnx", "--verify", *images)
    assert code == 1 and "detections MISMATCH" in out
    assert float(re.search(r"max \|difference\| of raw outputs (\S+);", out).group(1)) == pytest.approx(0.5, abs=1e-3)


def test_cli_export_bad_inputs(capsys, tmp_path, model_ckpt):
    out = tmp_path / "m.onnx"
    code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, "--format", "tflite", "--output", out)
    assert (code, err) == (2, ["metaanchor export: error: --format tflite: unknown; choose one of onnx, pt2, "
                               "torchvision, torchscript"])
    predefined = tmp_path / "predefined.pt"
    tiny_detector(head="predefined").save(predefined)
    code, _, err = cli(capsys, "export", "--checkpoint", predefined, "--anchors", "5x5", "--format", "onnx",
                       "--output", out)
    assert (code, err) == (2, ["metaanchor export: error: the predefined-anchor head was trained with 9 anchors per "
                               "position and cannot use 25; only a MetaAnchor head (model.head=metaanchor) takes new "
                               "anchor sets"])
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, foreign)
    code, _, err = cli(capsys, "export", "--checkpoint", foreign, "--format", "onnx", "--output", out)
    assert (code, err) == (2, [f"metaanchor export: error: checkpoint {foreign}: not a metaanchor checkpoint (a bare "
                               "state dict of 1 tensors, e.g. from torchvision; no 'format: metaanchor' entry)"])
    dd = tmp_path / "dd.pt"
    tiny_detector(head="metaanchor-dd").save(dd)
    code, _, err = cli(capsys, "export", "--checkpoint", dd, "--anchors", "3x3", "--format", "torchscript",
                       "--output", out)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("metaanchor export: error: model.head=metaanchor-dd: the data-dependent generator")
    code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, "--anchors", "0x3", "--format", "onnx",
                       "--output", out)
    assert (code, err) == (2, ["metaanchor export: error: anchor SPEC '0x3': number of scales 0 must be in 1..16"])
    assert not out.exists()


def test_cli_names_the_formats_deploy_writes():
    from metaanchor.cli.export import FORMATS as CLI_FORMATS
    from metaanchor.deploy.export import FORMATS

    assert CLI_FORMATS == FORMATS


def test_cli_export_never_overwrites_its_inputs(capsys, tmp_path, model_ckpt):
    before = model_ckpt.read_bytes()
    code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, "--format", "onnx", "--output", model_ckpt)
    assert (code, err) == (2, [f"metaanchor export: error: --output {model_ckpt}: would overwrite the input "
                               f"--checkpoint ({model_ckpt})"])
    image = tmp_path / "img.json"  # torchvision's sidecar OUT.json would land on this --verify input
    image.write_text("{}")
    code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, "--format", "torchvision", "--output",
                       tmp_path / "img.pth", "--verify", image)
    assert (code, err) == (2, [f"metaanchor export: error: --output {tmp_path / 'img.json'}: would overwrite the "
                               f"input --verify ({image})"])
    assert model_ckpt.read_bytes() == before and image.read_text() == "{}"
