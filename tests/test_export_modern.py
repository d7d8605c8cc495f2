"""Export for today's runtimes: torch.export (pt2), ONNX through the dynamo exporter, ONNX with decoding and
NMS inside, float16, and TorchScript's deprecation shown as one line of ours."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import cli, tiny_detector
from test_export import BATCHES, DEPLOY_BOX_TOL, RAW_TOL, SCORE_TOL, as_arrays, count, lively, noise_images

from metaanchor.deploy import numpy_postprocess as npp
from metaanchor.deploy import onnx_export, pt2_export
from metaanchor.deploy.export import export
from metaanchor.deploy.graph import ExportGraph
from metaanchor.deploy.onnx_export import ExporterFallback, onnx_bytes, onnx_runner
from metaanchor.deploy.onnx_nms import export_onnx_nms
from metaanchor.deploy.pt2_export import export_program, pt2_bytes, pt2_runner
from metaanchor.deploy.verify import HALF_RAW_TOL, detection_diff, same_detections, verify
from metaanchor.errors import UserError

NPP_FILE = Path(npp.__file__)
NMS_IMAGES = [(100, 120), (90, 250), (128, 100)]
# A subprocess prelude that makes importing these packages fail, so what runs after it needs none of them.
BLOCK = ("import sys\n"
         "class Block:\n"
         "    def find_spec(self, name, path=None, target=None):\n"
         "        if name.split('.')[0] in {blocked!r}:\n"
         "            raise ImportError('blocked: ' + name)\n"
         "sys.meta_path.insert(0, Block())\n")


def raw(baked, batch):
    with torch.no_grad():
        return [t.numpy() for t in ExportGraph(baked)(batch)]


@pytest.fixture(scope="module")
def retinanet():
    return lively("retinanet").bake("5x5")


@pytest.fixture(scope="module")
def exported(retinanet, tmp_path_factory):
    """{"pt2": path, "onnx": path}: one exported program, saved as pt2 and translated by the dynamo exporter."""
    root = tmp_path_factory.mktemp("modern")
    program = export_program(retinanet)
    (root / "m.pt2").write_bytes(pt2_bytes(retinanet, program=program))
    (root / "m.onnx").write_bytes(onnx_bytes(retinanet, "dynamo", program=program))
    return {"pt2": root / "m.pt2", "onnx": root / "m.onnx"}


# ------------------------------------------------------------------------------- pt2 and ONNX (dynamo)
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_exported_program_matches_pytorch_at_every_size(retinanet, exported, fmt, batch):
    run, meta = (pt2_runner if fmt == "pt2" else onnx_runner)(exported[fmt])
    images = noise_images(*BATCHES[batch])
    tensor_batch = retinanet.batcher(images)[0]
    got, expected = run(tensor_batch.numpy()), raw(retinanet, tensor_batch)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=0, atol=RAW_TOL)
    reference = retinanet.predict(images)
    assert count(reference) > 0
    assert same_detections(reference, npp.detect(run, as_arrays(images), meta), DEPLOY_BOX_TOL, SCORE_TOL)
    assert meta["precision"] == "float32" and meta["anchors"] == "5x5"


def test_onnx_default_exporter_is_dynamo_with_symbolic_sizes(exported):
    model = onnx.load(str(exported["onnx"]))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["metaanchor"])
    assert meta["exporter"] == "dynamo"
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [onnx_export.OPSET]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))  # batch, height, width


def test_pt2_loads_without_metaanchor(retinanet, exported, tmp_path):
    batch = retinanet.batcher(noise_images(*BATCHES["b3"]))[0]
    np.save(tmp_path / "batch.npy", batch.numpy())
    code = (BLOCK.format(blocked={"metaanchor"}) +
            "import json, numpy, torch\n"
            "extra = {'metaanchor.json': ''}\n"
            "program = torch.export.load(sys.argv[1], extra_files=extra)\n"
            "with torch.no_grad():\n"
            "    outs = program.module()(torch.from_numpy(numpy.load(sys.argv[2])))\n"
            "assert json.loads(extra['metaanchor.json'])['box_coding']['name'] == 'retinanet'\n"
            "numpy.savez(sys.argv[3], *[o.numpy() for o in outs])\n")
    subprocess.run([sys.executable, "-c", code, str(exported["pt2"]), str(tmp_path / "batch.npy"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path, timeout=300)
    got = np.load(tmp_path / "out.npz")
    for i, e in enumerate(raw(retinanet, batch)):
        np.testing.assert_allclose(got[f"arr_{i}"], e, rtol=0, atol=RAW_TOL)


def test_pt2_program_refuses_a_batch_whose_coarsest_level_is_one_cell(exported):
    run, _ = pt2_runner(exported["pt2"])
    with pytest.raises(UserError, match=r"the exported program refuses a batch of shape \[1, 3, 128, 128\] \(Guard "
                                        r"failed: .*\); its coarsest level must have more than one cell"):
        run(np.zeros((1, 3, 128, 128), np.float32))
    assert run(np.zeros((1, 3, 128, 160), np.float32))[3].tolist() == [320 * 25, 80 * 25, 20 * 25, 6 * 25, 2 * 25]


def test_dynamo_failure_falls_back_to_legacy_with_one_warning(retinanet, monkeypatch, tmp_path):
    def broken(baked, half=False):
        raise RuntimeError("no translation for aten::made_up\nmore detail")

    monkeypatch.setattr(pt2_export, "export_program", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = onnx_bytes(retinanet)
    ours = [w for w in caught if issubclass(w.category, ExporterFallback)]
    assert [str(w.message) for w in ours] == ["ONNX: the dynamo exporter failed (RuntimeError: no translation for "
                                              "aten::made_up); wrote the file with the legacy exporter"]
    (tmp_path / "m.onnx").write_bytes(data)
    run, meta = onnx_runner(tmp_path / "m.onnx")
    assert meta["exporter"] == "legacy"
    batch = retinanet.batcher(noise_images(*BATCHES["b3"]))[0]
    for g, e in zip(run(batch.numpy()), raw(retinanet, batch)):
        np.testing.assert_allclose(g, e, rtol=0, atol=RAW_TOL)


# ---------------------------------------------------------------------------------- ONNX with NMS inside
@pytest.mark.parametrize("family", ["retinanet", "yolov2"])
def test_nms_graph_run_by_onnxruntime_alone_equals_predict(family, tmp_path):
    """The detection graph, run with onnxruntime and numpy_postprocess (loaded from its file) in a process
    where importing torch or metaanchor fails, gives predict's detections image by image."""
    baked = lively(family).bake("5x5")
    path = export_onnx_nms(baked, tmp_path / "m.onnx")
    images = noise_images(*NMS_IMAGES)
    for i, a in enumerate(as_arrays(images)):
        np.save(tmp_path / f"img{i}.npy", a)
    code = (BLOCK.format(blocked={"torch", "torchvision", "metaanchor"}) +
            "import importlib.util, numpy, onnxruntime\n"
            "spec = importlib.util.spec_from_file_location('npp', sys.argv[2])\n"
            "npp = importlib.util.module_from_spec(spec); spec.loader.exec_module(npp)\n"
            "session = onnxruntime.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
            "meta = npp.metadata(session)\n"
            "out = {}\n"
            "for i in range(int(sys.argv[3])):\n"
            "    feed = npp.nms_inputs(numpy.load(f'img{i}.npy'), meta)\n"
            "    for name, value in zip(('boxes', 'scores', 'labels'), session.run(None, feed)):\n"
            "        out[f'{name}{i}'] = value\n"
            "assert not any(m.split('.')[0] in ('torch', 'metaanchor') for m in sys.modules)\n"
            "numpy.savez('dets.npz', **out)\n")
    subprocess.run([sys.executable, "-c", code, str(path), str(NPP_FILE), str(len(images))], check=True,
                   cwd=tmp_path, timeout=300)
    saved = np.load(tmp_path / "dets.npz")
    got = [{k: saved[f"{k}{i}"] for k in ("boxes", "scores", "labels")} for i in range(len(images))]
    reference = baked.predict(images, batch_size=1)  # the graph takes one image: its own padding
    assert [len(r["scores"]) for r in reference] == [len(g["scores"]) for g in got]
    assert count(reference) > 0 and all(g["labels"].dtype == np.int64 for g in got)
    assert same_detections(reference, got, box_tol=1e-3, score_tol=1e-4)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["metaanchor"])
    assert meta["nms"] is True and meta["inputs"] == ["images", "original_size"]


def test_nms_graph_with_nothing_above_the_threshold_returns_empty_outputs(tmp_path):
    import onnxruntime as ort

    baked = lively("retinanet").bake("3x3")
    baked.score_thresh = 0.9999

    session = ort.InferenceSession(str(export_onnx_nms(baked, tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, npp.nms_inputs(as_arrays(noise_images((100, 120)))[0],
                                                             npp.metadata(session)))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


def test_detection_diff_pairs_each_detection_with_its_nearest_of_the_same_label():
    a = {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), "scores": np.array([0.9, 0.8]),
         "labels": np.array([1, 2])}
    b = {"boxes": np.array([[50, 50, 60, 60.5], [0, 0, 10, 10]], np.float32), "scores": np.array([0.8, 0.9]),
         "labels": np.array([2, 1])}  # the same detections in another order, one box 0.5 px taller
    assert detection_diff(a, b) == detection_diff(b, a) == 0.5
    assert detection_diff(a, b | {"labels": np.array([2, 2])}) == np.inf  # label 1 on one side only
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}
    assert detection_diff(empty, empty) == 0


# ----------------------------------------------------------------------------------------------- float16
@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_half_export_is_within_the_stated_tolerance(retinanet, fmt, tmp_path):
    path = tmp_path / f"m.{fmt}"
    if fmt == "pt2":
        path.write_bytes(pt2_bytes(retinanet, half=True))
        run, meta = pt2_runner(path)
    else:
        path.write_bytes(onnx_bytes(retinanet, "legacy", half=True))
        run, meta = onnx_runner(path)
        weights = onnx.load(str(path)).graph.initializer
        assert {w.data_type for w in weights if len(w.dims) == 4} == {onnx.TensorProto.FLOAT16}  # conv weights
    assert (meta["precision"], meta["input_dtype"]) == ("float16", "float32")
    images = noise_images(*BATCHES["b3"])
    batch = retinanet.batcher(images)[0]
    got, expected = run(batch.numpy()), raw(retinanet, batch)
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
    assert 0 < diff <= HALF_RAW_TOL and all(g.dtype == e.dtype for g, e in zip(got, expected))
    result = verify(retinanet, run, images, half=True)
    assert result["match"] and result["max_abs_diff"] == diff and result["detections"] > 0


@pytest.mark.parametrize("fmt, options", [("onnx", {}), ("onnx", {"nms": True}), ("pt2", {}), ("torchscript", {})])
def test_export_refuses_settings_the_exported_pipeline_does_not_reproduce(fmt, options, tmp_path):
    """torchvision's resize rule, per-batch anchor strides and padding anchors (an imported torchvision
    RetinaNet) are not what the graphs and numpy_postprocess compute: refused, not exported wrong."""
    baked = tiny_detector(transform="torchvision", grid_strides="padded", skip_padding_anchors=False).bake("3x3")
    with pytest.raises(UserError, match=r"^model.transform=torchvision, model.grid_strides=padded, "
                                        r"model.skip_padding_anchors=False: the exported graphs and numpy_postprocess "
                                        r"follow this library's .* export it as --format torchvision$"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export(baked, fmt, tmp_path / "m.out", **options)
    assert caught == [] and not (tmp_path / "m.out").exists()  # no exporter fallback, no deprecation line


# -------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def ckpt_and_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("modern_cli")
    lively("retinanet", class_names=["a", "b", "c"]).save(root / "m.pt")
    from PIL import Image

    images = []
    for i, a in enumerate(as_arrays(noise_images(*NMS_IMAGES[:2]))):
        images.append(root / f"img{i}.png")
        Image.fromarray((a * 255).round().astype(np.uint8)).save(images[-1])
    return root / "m.pt", images


@pytest.mark.parametrize("options", [["--format", "pt2"], ["--format", "onnx", "--nms"]])
def test_cli_export_verify_matches(capsys, ckpt_and_images, tmp_path, options):
    ckpt, images = ckpt_and_images
    code, out, err = cli(capsys, "export", "--checkpoint", ckpt, "--anchors", "5x5", *options,
                         "--output", tmp_path / "m.out", "--verify", *images)
    assert (code, err) == (0, [])
    compared = "detections" if "--nms" in options else "raw outputs"
    diff = float(re.search(rf"max \|difference\| of {compared} (\S+);", out).group(1))
    assert diff <= RAW_TOL and int(re.search(r"detections match \((\d+) detections\)", out).group(1)) > 0


def test_torchscript_warns_in_one_line_of_ours_and_none_of_torchs(capsys, ckpt_and_images, tmp_path):
    ckpt, images = ckpt_and_images
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # torch's own deprecation warnings would show if they escaped
        code, out, err = cli(capsys, "export", "--checkpoint", ckpt, "--anchors", "5x5", "--format", "torchscript",
                             "--output", tmp_path / "m.pt", "--verify", *images)
    assert code == 0 and "detections match" in out
    assert err == ["warning: torch deprecates TorchScript (torch.jit); --format pt2 (torch.export) is its "
                   "replacement"]


def test_format_help_lists_every_choice(capsys):
    from metaanchor.cli.export import FORMATS, ONNX_EXPORTERS
    from metaanchor.cli.main import main
    from metaanchor.deploy.export import FORMATS as DEPLOY_FORMATS
    from metaanchor.deploy.export import ONNX_EXPORTERS as DEPLOY_EXPORTERS

    assert (FORMATS, ONNX_EXPORTERS) == (DEPLOY_FORMATS, DEPLOY_EXPORTERS)
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0 and "--format FORMAT onnx | pt2 | torchvision | torchscript." in text
    for name in FORMATS:
        assert f"{name}:" in text
    assert "torch deprecates TorchScript" in text and "--nms" in text and "--half" in text


@pytest.mark.parametrize("options, message", [
    (["--format", "torchvision", "--nms"], "--nms: decoding and NMS go into ONNX graphs only (--format onnx), not "
                                           "--format torchvision"),
    (["--format", "pt2", "--nms"], "--nms: decoding and NMS go into ONNX graphs only (--format onnx), not "
                                   "--format pt2"),
    (["--format", "torchvision", "--half"], "--half: float16 export is for --format onnx or pt2, not --format "
                                            "torchvision"),
    (["--format", "torchscript", "--half"], "--half: float16 export is for --format onnx or pt2, not --format "
                                            "torchscript"),
    (["--format", "pt2", "--onnx-exporter", "legacy"], "--onnx-exporter: only for --format onnx, not --format pt2"),
    (["--format", "onnx", "--nms", "--onnx-exporter", "dynamo"],
     "--onnx-exporter dynamo: --nms graphs are written by the legacy exporter (their data-dependent sizes); leave "
     "--onnx-exporter out"),
])
def test_cli_refuses_a_format_with_an_option_it_does_not_take(capsys, model_ckpt, tmp_path, options, message):
    out = tmp_path / "m.out"
    code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, *options, "--output", out)
    assert (code, err) == (2, [f"metaanchor export: error: {message}"])
    assert not out.exists()
