"""The Python entry points: ``metaanchor.load`` -> ``Predictor`` on every kind of input, one prediction score
threshold everywhere, training targets checked with clear messages, ``metaanchor.train``."""

import inspect

import numpy as np
import pytest
import torch
from conftest import cli, tiny_detector
from PIL import Image

import metaanchor
from metaanchor.defaults import PREDICT_SCORE_THRESH
from metaanchor.engine import api
from metaanchor.engine.predict import image_files, predict_files, predict_images
from metaanchor.engine.results import Results
from metaanchor.errors import UserError
from metaanchor.families import build_detector
from metaanchor.families.targets import TargetError

H, W = 90, 120


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two RGB PNGs (90x120 and 64x80) and a text file in one folder."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    for name, (h, w) in (("a.png", (H, W)), ("b.png", (64, 80))):
        Image.fromarray((rng.rand(h, w, 3) * 255).astype(np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def det(model_ckpt):
    return metaanchor.load(model_ckpt)


def rgb(folder):
    return np.array(Image.open(folder / "a.png"))


def same(a: Results, b: Results) -> bool:
    return (len(a) > 0 and torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
            and torch.equal(a.labels, b.labels))


SOURCES = {
    "path": lambda f: f / "a.png",
    "str": lambda f: str(f / "a.png"),
    "glob": lambda f: str(f / "a.*"),
    "folder": lambda f: f,
    "list": lambda f: [f / "a.png", str(f / "b.png")],
    "pil": lambda f: Image.open(f / "a.png"),
    "pil-gray": lambda f: Image.open(f / "a.png").convert("L"),
    "numpy-rgb": rgb,
    "numpy-gray": lambda f: rgb(f)[:, :, 0],
    "numpy-rgba": lambda f: np.dstack([rgb(f), np.full((H, W), 255, np.uint8)]),
    "numpy-batch": lambda f: np.stack([rgb(f)] * 2),
    "tensor": lambda f: torch.from_numpy(rgb(f)).permute(2, 0, 1).float() / 255,
    "tensor-uint8": lambda f: torch.from_numpy(rgb(f)).permute(2, 0, 1),
    "tensor-batch": lambda f: torch.rand(3, 3, 50, 70),
}
SIZES = {"folder": [(H, W), (64, 80)], "list": [(H, W), (64, 80)], "numpy-batch": [(H, W)] * 2,
         "tensor-batch": [(50, 70)] * 3}
FROM_FILE = {"path", "str", "glob", "folder", "list"}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_input_kind_gives_one_results_per_image_with_its_size(det, folder, kind):
    results = det(SOURCES[kind](folder), score_thresh=0.0)
    assert all(isinstance(r, Results) for r in results)
    assert [r.image_size for r in results] == SIZES.get(kind, [(H, W)])
    assert all(len(r) > 0 and r.names == ["a", "b", "c"] for r in results)
    if kind in FROM_FILE:
        assert results[0].path == folder / "a.png"
    else:
        assert all(r.path is None for r in results)


@pytest.mark.parametrize("kind", ["pil", "numpy-rgb", "numpy-rgba", "tensor", "tensor-uint8", "numpy-batch"])
def test_in_memory_images_give_the_detections_of_the_same_file(det, folder, kind):
    from_file = det(folder / "a.png", score_thresh=0.0)[0]
    assert same(det(SOURCES[kind](folder), score_thresh=0.0, batch_size=1)[0], from_file)


def test_a_bgr_frame_gives_the_detections_of_the_rgb_array(det, folder):
    frame = np.ascontiguousarray(rgb(folder)[:, :, ::-1])  # what cv2.imread returns
    expected = det(rgb(folder), score_thresh=0.0)[0]
    assert same(det(frame, bgr=True, score_thresh=0.0)[0], expected)
    assert not same(det(frame, score_thresh=0.0)[0], expected)  # read as RGB it is another image


def test_results_come_in_input_order_and_stream_lazily(det, folder):
    sources = [folder / "b.png", rgb(folder), folder / "a.png"]
    sizes = [(64, 80), (H, W), (H, W)]
    streamed = det(sources, stream=True, batch_size=2)
    assert not isinstance(streamed, list)
    assert [r.image_size for r in streamed] == sizes
    results = det(sources, score_thresh=0.0, batch_size=1)
    assert [r.image_size for r in results] == sizes
    assert same(results[2], det(folder / "a.png", score_thresh=0.0)[0])


def test_anchors_and_threshold_apply_to_one_call_only(det, folder):
    before = det.anchors
    five = det(folder / "a.png", anchors="5x5", score_thresh=0.0)[0]
    three = det(folder / "a.png", score_thresh=0.0)[0]
    assert det.anchors == before and not same(five, three)
    assert det.model.score_thresh == 0.05  # the model's own (evaluation) threshold is untouched


def test_glob_patterns_expand_sorted_and_a_pattern_without_match_is_an_error(folder):
    assert image_files([str(folder / "*.png")]) == [folder / "a.png", folder / "b.png"]
    assert image_files([str(folder / "[b]*")]) == [folder / "b.png"]
    with pytest.raises(UserError, match=f"^input {folder}/\\*.jpg: no image files match this pattern$"):
        image_files([str(folder / "*.jpg")])
    with pytest.raises(UserError, match=r"^input .*missing.png: no such file or folder$"):
        image_files([str(folder / "missing.png")])


@pytest.mark.parametrize("source, message", [
    (np.zeros((5, 5, 2), np.uint8), "image a numpy array of shape (5, 5, 2) and dtype uint8: expected [H, W, 3] "
                                    "(RGB, or BGR with bgr=True), [H, W, 4] (alpha dropped) or [H, W] (grayscale)"),
    (np.zeros((5, 5, 3), np.int32), "image a numpy array of shape (5, 5, 3) and dtype int32: expected uint8 "
                                    "(0..255) or float (0..1) pixels"),
    (torch.zeros(2, 5, 5), "image a tensor of shape (2, 5, 5) and dtype torch.float32: expected [3, H, W] (or "
                           "[1, H, W]) with values in [0, 1]"),
    (42, "cannot predict on a int: give a path, folder, glob pattern, PIL image, numpy array, tensor or a list of "
         "these"),
    ([], "no images given: the list is empty"),
])
def test_unusable_inputs_are_user_errors_naming_them(det, source, message):
    with pytest.raises(UserError) as e:
        det(source)
    assert str(e.value) == message


def test_model_predict_takes_numpy_arrays_and_keeps_returning_dicts(folder):
    model = tiny_detector(score_thresh=0.0).eval()
    from_array = model.predict(rgb(folder))
    from_file = model.predict([folder / "a.png"])
    assert isinstance(from_array, list) and set(from_array[0]) == {"boxes", "scores", "labels"}
    assert torch.equal(from_array[0]["boxes"], from_file[0]["boxes"])


@pytest.mark.parametrize("kind", ["str", "pil", "numpy-rgb"])
def test_calling_the_model_module_on_a_file_or_array_points_to_predict(folder, kind):
    with pytest.raises(UserError, match=r"^RetinaNetDetector\(images\) takes a list of \[3, H, W\] tensors in "
                                        r"\[0, 1\], not a \w+; for files, PIL images or numpy arrays use "
                                        r"model.predict\(...\) or metaanchor.load\(checkpoint\)\(...\)$"):
        tiny_detector().eval()(SOURCES[kind](folder))


def test_predictor_wraps_any_family(folder):
    yolo = build_detector("yolov2", num_classes=2, class_names=["x", "y"], backbone="tiny", fpn_channels=16,
                          hidden_dim=8, min_size=128, max_size=128, anchors="3x3")
    r = api.Predictor(yolo)(rgb(folder), score_thresh=0.0)[0]
    assert r.names == ["x", "y"] and r.image_size == (H, W) and len(r) > 0
    assert repr(api.Predictor(yolo)) == "Predictor(yolov2, head=metaanchor, 2 classes, anchors=3x3, device=cpu)"


# ----------------------------------------------------------------------------------- one threshold
def test_prediction_threshold_is_one_value_for_the_cli_python_and_export(capsys):
    from metaanchor.cli import build_parser
    from metaanchor.deploy.graph import metadata

    parser = build_parser()
    args = parser.parse_args(["predict", "--checkpoint", "m.pt", "x.png"])
    assert args.score_thresh == PREDICT_SCORE_THRESH == metaanchor.PREDICT_SCORE_THRESH
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--help"])
    assert f"(default {PREDICT_SCORE_THRESH}," in " ".join(capsys.readouterr().out.split())
    for fn in (api.Predictor.predict, predict_images, predict_files):
        assert inspect.signature(fn).parameters["score_thresh"].default == PREDICT_SCORE_THRESH, fn
    baked = tiny_detector().bake("3x3", score_thresh=PREDICT_SCORE_THRESH)
    assert metadata(baked)["score_thresh"] == baked.score_thresh == PREDICT_SCORE_THRESH
    assert baked.config["score_thresh"] == PREDICT_SCORE_THRESH  # kept when the baked model is saved


def test_evaluation_keeps_its_low_threshold():
    from metaanchor.config import load_config, model_kwargs

    cfg = load_config()
    assert cfg["eval"]["score_thresh"] == 0.05 < PREDICT_SCORE_THRESH
    assert model_kwargs(cfg, 3, None)["score_thresh"] == 0.05


# ------------------------------------------------------------------------------------ targets
def _targets(**fields):
    ok = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}
    return [ok, {**ok, **fields}]


@pytest.mark.parametrize("family", ["retinanet", "yolov2"])
@pytest.mark.parametrize("fields, message", [
    ({"labels": torch.tensor([3])},
     "targets[1]['labels'][0]: label 3 is outside 0..2 (labels are 0-based class indices; num_classes=3)"),
    ({"labels": torch.tensor([-1])},
     "targets[1]['labels'][0]: label -1 is outside 0..2 (labels are 0-based class indices; num_classes=3)"),
    ({"boxes": torch.tensor([[10.0, 10.0, float("nan"), 50.0]])},
     "targets[1]['boxes'][0]: box [10, 10, nan, 50] is not finite"),
    ({"boxes": torch.tensor([[10.0, float("inf"), 40.0, 50.0]])},
     "targets[1]['boxes'][0]: box [10, inf, 40, 50] is not finite"),
    ({"boxes": torch.tensor([[30.0, 10.0, 20.0, 15.0]])},
     "targets[1]['boxes'][0]: box [30, 10, 20, 15] has x2 < x1 or y2 < y1 (boxes are x1y1x2y2 pixels, not xywh)"),
    ({"labels": torch.tensor([1.0])},
     "targets[1]['labels']: dtype torch.float32; expected int64 class indices 0..2"),
    ({"boxes": torch.tensor([10.0, 10.0, 40.0, 50.0])},
     "targets[1]: 'boxes' has shape [4] and 'labels' [1]; expected [N, 4] and [N]"),
])
def test_bad_training_targets_are_errors_naming_image_field_and_value(family, fields, message):
    model = (tiny_detector() if family == "retinanet" else
             build_detector("yolov2", num_classes=3, backbone="tiny", fpn_channels=16, hidden_dim=8, min_size=64,
                            max_size=64, anchors="3x3")).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    with pytest.raises(TargetError) as e:
        model(images, _targets(**fields))
    assert str(e.value) == message
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)


def test_good_targets_and_images_without_boxes_pass_the_check():
    model = tiny_detector().train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [_targets()[0], empty])
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(TargetError, match=r"^targets: 1 target dicts for 2 images$"):
        model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [empty])


# ------------------------------------------------------------------------------------ train
def test_train_from_python_runs_and_its_checkpoint_predicts(tmp_path, dataset):
    out = tmp_path / "run"
    summary = metaanchor.train(
        None, out=out, progress=False,
        overrides={"data.train": str(dataset), "model.backbone": "tiny", "model.fpn_channels": 16,
                   "model.head_convs": 1, "model.hidden_dim": 8, "input.size": 64, "solver.batch_size": 2,
                   "solver.warmup_iters": 0, "device": "cpu"},
        solver__max_iter=2, log__period=1)
    assert summary["iterations"] == 2 and (out / "last.pt").is_file() and (out / "config.yaml").is_file()
    det = metaanchor.load(out / "last.pt")
    names = det.names
    results = det(dataset / "images", score_thresh=0.0)
    assert len(results) == len(list((dataset / "images").iterdir())) and results[0].names == names


def test_override_forms_give_the_same_command_line_texts():
    assert api.override_texts({"solver.max_iter": 5, "anchors.train": "5x5"}, {"seed": 3}) == [
        "solver.max_iter=5", 'anchors.train="5x5"', "seed=3"]
    assert api.override_texts(["solver.max_iter=5"], {"model__head": "predefined"}) == [
        "solver.max_iter=5", 'model.head="predefined"']
    with pytest.raises(UserError, match="overrides: expected a dict"):
        api.override_texts(5, {})


def test_lazy_python_entry_points():
    from metaanchor.engine.api import Predictor, load, predict, train

    assert metaanchor.load is load and metaanchor.predict is predict and metaanchor.train is train
    assert metaanchor.Predictor is Predictor and metaanchor.Results is Results


def test_an_exported_file_states_the_prediction_threshold_unless_told_otherwise(capsys, tmp_path, model_ckpt):
    import onnxruntime as ort

    from metaanchor.deploy.numpy_postprocess import metadata

    for extra, expected in (([], PREDICT_SCORE_THRESH), (["--score-thresh", "0.05"], 0.05)):
        out = tmp_path / f"m{len(extra)}.onnx"
        code, _, err = cli(capsys, "export", "--checkpoint", model_ckpt, "--format", "onnx", "--onnx-exporter",
                           "legacy", "--output", out, *extra)
        assert code == 0, err
        assert metadata(ort.InferenceSession(str(out)))["score_thresh"] == expected
