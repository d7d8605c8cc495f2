"""Bad input end to end: every user mistake is one line on stderr + exit 2 naming the culprit, bad images in a
folder are reported and skipped (or fatal with --fail-fast), and the parsers never raise anything but UserError.

Complements test_data_coco / test_data_formats / test_anchors / test_config (which test the parsers directly):
here the same mistakes go through the CLI, plus images, checkpoints, fail-fast, skip counts and fuzzing.
`cli.main` runs in-process (the subprocess path is covered by test_cli) to keep this fast.
"""

import csv
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metaanchor import checkpoint as ckpt
from metaanchor.data import CocoDataset, read_voc, read_yolo, validate_coco
from metaanchor.data.coco_json import load_coco_json
from metaanchor.data.io import load_image, read_image
from metaanchor.data.synth import synth_config, write_synth_dataset
from metaanchor.errors import DataError, UserError, out_of_memory_message
from metaanchor.geometry.anchors import AnchorSet


def assert_user_error(capsys, args, *fragments):
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith(f"metaanchor {args[0]}: error: ")
    for f in fragments:
        assert str(f) in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synth_dataset(tmp_path_factory.mktemp("bad") / "ds", 4, synth_config("default", seed=2),
                               progress=False)


@pytest.fixture
def copy_of(dataset, tmp_path):
    """A fresh writable copy of the small dataset."""
    import shutil

    dst = tmp_path / "ds"
    shutil.copytree(dataset, dst)
    return dst


def ann(folder):
    return json.loads((folder / "annotations.json").read_text())


def write_ann(folder, data):
    (folder / "annotations.json").write_text(json.dumps(data))


def eval_args(ckpt_path, data, *extra):
    return ["eval", "--checkpoint", ckpt_path, "--data", data, "--device", "cpu", *extra]


# ------------------------------------------------------------------------------------------------ checkpoints
def _payload(model_ckpt):
    return torch.load(model_ckpt, weights_only=False)


@pytest.mark.parametrize("case", ["truncated", "empty", "text", "torchvision_state_dict",
                                  "torchvision_reference_ckpt", "weights_do_not_fit", "future_version",
                                  "unknown_config_key", "bad_config_value"])
def test_bad_checkpoint_is_one_line_naming_the_file(capsys, tmp_path, dataset, model_ckpt, case):
    bad = tmp_path / f"{case}.pt"
    payload = _payload(model_ckpt)
    fragment = {
        "truncated": "unreadable (truncated or not a checkpoint)", "empty": "unreadable",
        "text": "unreadable", "torchvision_state_dict": "bare state dict",
        "torchvision_reference_ckpt": "not a metaanchor checkpoint (a dict with keys 'model', 'optimizer'",
        "weights_do_not_fit": "weights do not fit the model: size mismatch for",
        "future_version": "written by metaanchor 7.0.0", "unknown_config_key": "unexpected keyword argument 'zoom'",
        "bad_config_value": "model.head='yolo' is unknown"}[case]
    if case == "truncated":
        bad.write_bytes(model_ckpt.read_bytes()[:5000])
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "text":
        bad.write_text("not a checkpoint\n")
    elif case == "torchvision_state_dict":
        import torchvision

        torch.save(torchvision.ops.FeaturePyramidNetwork([8, 16], 8).state_dict(), bad)
    elif case == "torchvision_reference_ckpt":  # what torchvision's references/detection/train.py writes
        torch.save({"model": payload["model"], "optimizer": {}, "lr_scheduler": {}, "epoch": 3, "args": None}, bad)
    else:
        if case == "weights_do_not_fit":
            payload["model_config"]["fpn_channels"] = 32
        elif case == "future_version":
            payload["version"] = "7.0.0"
        elif case == "unknown_config_key":
            payload["model_config"]["zoom"] = 2
        else:
            payload["model_config"]["head"] = "yolo"
        torch.save(payload, bad)
    assert_user_error(capsys, eval_args(bad, dataset), f"checkpoint {bad}", fragment)


def test_resume_with_weights_of_another_model_names_the_tensor(capsys, tmp_path, dataset):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--no-progress", "--out", run, f"data.train={dataset}", *TINY,
               "solver.max_iter=1")[0] == 0
    assert_user_error(capsys, ["train", "--no-progress", "--resume", "--out", run, f"data.train={dataset}", *TINY,
                               "solver.max_iter=2", "model.fpn_channels=24"],
                      f"checkpoint {run / 'last.pt'}: weights do not fit the model", "size mismatch")


# --------------------------------------------------------------------------------------------- configs, args
@pytest.mark.parametrize("yaml_text, fragments", [
    ("model:\n  hed: metaanchor\n", ["unknown config key 'model.hed'; allowed: model.anchor_base, model.arch, "
                                     "model.backbone"]),
    ("solver:\n  max_iter: ten\n", ["config key solver.max_iter: expected int, got 'ten'"]),
    ("solver: [1, 2]\n", ["unknown config key 'solver'"]),
    ("checkpoint:\n  period: 0\n", ["config key checkpoint.period: 0 is out of range; allowed: > 0"]),
    ("solver:\n  steps: [0.5, x]\n", ["config key solver.steps: item 'x' is not a float"]),
    ("anchors:\n  train: scales=1,-2\n", ["config key anchors.train: anchor SPEC 'scales=1,-2': scale '-2'"]),
    ("model:\n  bg_iou: 0.7\n", ["model.bg_iou=0.7 and model.fg_iou=0.5"]),
    ("model: {head: yolo}\n", ["model.head: 'yolo' is not one of metaanchor, metaanchor-dd, predefined"]),
])
def test_bad_config_file_is_one_line_naming_file_and_key(capsys, tmp_path, yaml_text, fragments):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    assert_user_error(capsys, ["train", "--config", f, "--out", tmp_path / "run"], *fragments)


@pytest.mark.parametrize("args, fragment", [
    (["solver.max_iter="], "config key solver.max_iter: expected int, got no value"),
    (["log.period=0"], "config key log.period: 0 is out of range"),
    (["input.hflip=1.5"], "config key input.hflip: 1.5 is out of range; allowed: in 0..1"),
    (["solver.lr=.nan"], "config key solver.lr: nan is not a finite number"),
    (["anchors.eval=[3x3, 2y2]"], "config key anchors.eval: anchor SPEC '2y2'"),
    (["device=tpu", "data.train=DATA"], "device='tpu': expected auto, cpu, cuda or cuda:N"),
    (["data.train=/nonexistent/ds"], "/nonexistent/ds: no such dataset folder"),
])
def test_bad_train_override_is_one_line(capsys, tmp_path, dataset, args, fragment):
    args = [a.replace("DATA", str(dataset)) for a in args]
    assert_user_error(capsys, ["train", "--no-progress", "--out", tmp_path / "run", *args], fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--anchors", "3x0"], "anchor SPEC '3x0': number of ratios 0"),
    (["--anchors", "scales=1;ratios=nan"], "ratio 'nan' must be a positive finite number"),
    (["--anchors", "missing.yaml"], "anchor file missing.yaml: not found"),
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
])
def test_bad_eval_arguments(capsys, dataset, model_ckpt, extra, fragment):
    assert_user_error(capsys, eval_args(model_ckpt, dataset, *extra), fragment)


def test_eval_on_a_dataset_with_other_classes(capsys, tmp_path, model_ckpt):
    data = write_synth_dataset(tmp_path / "two", 2, synth_config("default", num_classes=2), progress=False)
    assert_user_error(capsys, eval_args(model_ckpt, data), "has 2 categories", "trained for 3 (a, b, c)")


# ------------------------------------------------------------------------------------------- dataset records
@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id"),
    (lambda d: d.update(images=[]), "dataset has no images"),
    (lambda d: d["annotations"][0].update(category_id=77), "unknown category id 77"),
    (lambda d: d["annotations"][0].update(bbox=[10, 10, 0, 5]), "box has non-positive width 0"),
    (lambda d: d["annotations"][0].update(bbox=[10, 10, float("nan"), 5]), "box has a NaN or infinite value"),
    (lambda d: d["annotations"][0].update(bbox=[100, 100, 100, 100]), "outside the 128x128 image"),
    (lambda d: d["annotations"][0].update(iscrowd="yes"), "'iscrowd' must be 0 or 1, got 'yes'"),
    (lambda d: d["annotations"][0].update(image_id=[1]), "refers to unknown image id [1]"),
])
def test_bad_record_through_eval_names_file_and_record(capsys, copy_of, model_ckpt, mutate, fragment):
    data = ann(copy_of)
    mutate(data)
    write_ann(copy_of, data)
    line = assert_user_error(capsys, eval_args(model_ckpt, copy_of), "annotations.json", fragment)
    if "annotations" in data and data["annotations"] and "image" not in fragment:
        assert f"annotation id {data['annotations'][0]['id']}" in line


def test_malformed_json_through_eval(capsys, copy_of, model_ckpt):
    (copy_of / "annotations.json").write_text('{"images": [\n  {"id": 1,,}]}')
    assert_user_error(capsys, eval_args(model_ckpt, copy_of), "annotations.json: malformed JSON at line 2 column 12")


def test_skip_invalid_counts_repairs_and_fail_fast_makes_them_errors(capsys, copy_of, model_ckpt, caplog):
    data = ann(copy_of)
    data["annotations"][0]["bbox"] = [120.0, 10.0, 20.0, 5.0]  # 12 px outside: clipped
    data["annotations"][1]["category_id"] = 99  # dropped
    write_ann(copy_of, data)
    code, out, _ = cli(capsys, *eval_args(model_ckpt, copy_of, "--skip-invalid"))
    assert code == 0 and ("Average Precision" in out or "no detections" in out)
    assert "skipped or repaired 2 annotation(s)" in caplog.text
    assert "'clipped': 1" in caplog.text and "'unknown_category': 1" in caplog.text
    assert_user_error(capsys, eval_args(model_ckpt, copy_of, "--skip-invalid", "--fail-fast"),
                      f"annotation id {data['annotations'][0]['id']}", "outside the 128x128 image")


# ---------------------------------------------------------------------------------------------------- images
def _break(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "not_an_image":
        path.write_text("hello")
    elif how == "wrong_size":
        Image.new("RGB", (50, 40)).save(path)


@pytest.mark.parametrize("how, fragment", [("missing", "image file not found"),
                                           ("truncated", "cannot read image"),
                                           ("not_an_image", "cannot read image"),
                                           ("wrong_size",
                                            "is 50x40 (as displayed, after EXIF orientation) but annotations.json")])
def test_eval_skips_a_bad_image_and_says_so_or_fails_fast(capsys, copy_of, model_ckpt, how, fragment, tmp_path):
    bad = copy_of / "images" / ann(copy_of)["images"][1]["file_name"]
    _break(bad, how)
    out_json = tmp_path / "m.json"
    code, _, err = cli(capsys, *eval_args(model_ckpt, copy_of, "--json-out", out_json))
    assert code == 0
    assert err[0] == f"skipped: {bad}: " + err[0].split(f"{bad}: ", 1)[1] and fragment in err[0]
    assert "evaluated 3 of 4 images; 1 unreadable images left out" in err[1]
    assert set(json.loads(out_json.read_text())) >= {"AP", "AP50"}
    assert_user_error(capsys, eval_args(model_ckpt, copy_of, "--fail-fast"), str(bad), fragment)


def test_eval_with_no_readable_image_is_an_error(capsys, copy_of, model_ckpt):
    for f in (copy_of / "images").iterdir():
        f.write_text("x")
    assert_user_error(capsys, eval_args(model_ckpt, copy_of), "none of the 4 images could be read", "cannot read")


def _odd_images(folder: Path) -> dict[str, Image.Image]:
    gray16 = Image.fromarray(np.full((40, 48), 1000, dtype=np.uint16))
    imgs = {"gray.png": Image.new("L", (48, 40), 90), "rgba.png": Image.new("RGBA", (48, 40), (9, 99, 199, 0)),
            "gray16.png": gray16, "palette.gif": Image.new("RGB", (48, 40), (204, 0, 0)).convert("P"),
            "la.png": Image.new("LA", (48, 40), (70, 128)), "bw.bmp": Image.new("1", (48, 40), 1),
            "cmyk.jpg": Image.new("CMYK", (48, 40), (0, 0, 0, 0)), "float.tif": Image.new("F", (48, 40), 300.0)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in imgs.items():
        im.save(folder / name)
    return imgs


def test_non_rgb_images_are_converted_not_rejected(tmp_path):
    _odd_images(tmp_path)
    expect = {"gray.png": 90, "gray16.png": round(1000 * 255 / 65535), "la.png": 70, "bw.bmp": 255,
              "cmyk.jpg": 255, "float.tif": 255}
    for name, value in expect.items():
        t = load_image(tmp_path / name)
        assert t.shape == (3, 40, 48) and t.dtype == torch.float32, name
        assert torch.allclose(t * 255, torch.full_like(t, value), atol=1), name
    assert load_image(tmp_path / "rgba.png")[:, 0, 0].mul(255).round().tolist() == [9, 99, 199]  # alpha dropped
    assert load_image(tmp_path / "palette.gif")[:, 0, 0].mul(255).round().tolist() == [204, 0, 0]
    assert read_image(tmp_path / "gray16.png").mode == "RGB"


def test_image_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: is a folder, not an image file"):
        read_image(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    with pytest.raises(DataError, match=r"x\.jpg: cannot read image"):
        load_image(tmp_path / "x.jpg")


def test_predict_folder_reports_bad_images_and_goes_on(capsys, tmp_path, model_ckpt):
    folder = tmp_path / "imgs"
    _odd_images(folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    jpg = folder / "cut.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:200])
    out = tmp_path / "pred"
    code, stdout, err = cli(capsys, "predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", out, folder)
    assert code == 0
    assert sorted(err) == [f"skipped: {folder / 'broken.png'}: " + e.split("broken.png: ", 1)[1] if "broken" in e
                           else f"skipped: {jpg}: " + e.split("cut.jpg: ", 1)[1] for e in sorted(err)]
    assert len(err) == 2 and "2 unreadable images skipped" in stdout
    assert len(list(out.glob("*.png"))) == 8  # every odd-mode image was converted and drawn
    assert_user_error(capsys, ["predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", out,
                               "--fail-fast", folder], "cannot read image")


@pytest.mark.parametrize("extra, fragment", [
    (["nope.png"], "input nope.png: no such file or folder"),
    (["--score-thresh", "2", "IMG"], "--score-thresh 2.0: must be in 0..1"),
    (["--anchors", "scales=1e9", "IMG"], "scale '1e9' is outside 1e-06..1e+06"),
])
def test_bad_predict_arguments(capsys, tmp_path, model_ckpt, dataset, extra, fragment):
    img = next((dataset / "images").iterdir())
    extra = [str(img) if a == "IMG" else a for a in extra]
    assert_user_error(capsys, ["predict", "--checkpoint", model_ckpt, "--device", "cpu", "--out", tmp_path, *extra],
                      fragment)


# ---------------------------------------------------------------------------------------------------- training
def test_unreadable_training_image_is_an_error_or_a_counted_skip(capsys, copy_of, tmp_path):
    bad = copy_of / "images" / ann(copy_of)["images"][2]["file_name"]
    bad.write_bytes(bad.read_bytes()[:80])
    args = [f"data.train={copy_of}", *TINY, "solver.max_iter=2"]
    assert_user_error(capsys, ["train", "--no-progress", "--out", tmp_path / "a", *args], str(bad),
                      "cannot read image", "data.skip_invalid=true")
    code, out, err = cli(capsys, "train", "--no-progress", "--out", tmp_path / "b", *args, "data.skip_invalid=true")
    assert code == 0 and err == [f"skipped training image: {bad}: " + err[0].split(f"{bad}: ", 1)[1]]
    assert_user_error(capsys, ["train", "--no-progress", "--fail-fast", "--out", tmp_path / "c", *args,
                               "data.skip_invalid=true"], str(bad))


def test_train_fail_fast_turns_a_repaired_annotation_into_an_error(capsys, copy_of, tmp_path):
    data = ann(copy_of)
    data["annotations"][0]["bbox"] = [-20.0, 10.0, 40.0, 5.0]
    write_ann(copy_of, data)
    args = ["--out", tmp_path / "r", f"data.train={copy_of}", *TINY, "solver.max_iter=1", "data.skip_invalid=true"]
    assert cli(capsys, "train", "--no-progress", *args)[0] == 0
    assert_user_error(capsys, ["train", "--no-progress", "--fail-fast", *args], "annotations.json",
                      f"annotation id {data['annotations'][0]['id']}", "outside the 128x128 image")


def _nan_loss_at(monkeypatch, iterations):
    """Make the detection loss NaN at the given (0-based) training calls."""
    import metaanchor.families.retinanet.detector as det_mod

    real, calls = det_mod.detection_loss, {"n": 0}

    def loss(*a, **k):
        out = real(*a, **k)
        if calls["n"] in iterations:
            out = {name: v * float("nan") for name, v in out.items()}
        calls["n"] += 1
        return out

    monkeypatch.setattr(det_mod, "detection_loss", loss)


def test_non_finite_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(capsys, monkeypatch, dataset, tmp_path):
    _nan_loss_at(monkeypatch, {3})
    run = tmp_path / "run"
    line = assert_user_error(capsys, ["train", "--no-progress", "--out", run, f"data.train={dataset}", *TINY,
                                      "solver.max_iter=5", "checkpoint.period=2"],
                             "non-finite loss or gradient at iteration 3", f"last good checkpoint: {run / 'last.pt'}")
    assert "solver.nonfinite=skip" in line
    good = torch.load(run / "last.pt", weights_only=False)
    assert good["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_non_finite_loss_skip_mode_counts_skipped_steps(monkeypatch, dataset, tmp_path):
    from metaanchor.config import load_config
    from metaanchor.engine.train import train

    _nan_loss_at(monkeypatch, {1, 2})
    cfg = load_config(None, [f"data.train={dataset}", *TINY, "solver.max_iter=4", "solver.nonfinite=skip"])
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["skipped_steps"] == 2 and summary["iterations"] == 4
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["skipped"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["skipped"] == "2"


def test_resume_without_a_checkpoint_starts_fresh_and_cleans_stale_temp_files(capsys, dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    code, out, _ = cli(capsys, "train", "--no-progress", "--resume", "--out", run, f"data.train={dataset}", *TINY,
                       "solver.max_iter=1")
    assert code == 0 and f"no checkpoint {run / 'last.pt'} yet; starting from iteration 0" in out
    assert not list(run.glob("*.tmp")) and ckpt.load(run / "last.pt")["iteration"] == 1


@pytest.mark.parametrize("batch, option, expected", [
    (8, "solver.batch_size=", "CUDA out of memory at iteration 3 with batch size 8; try solver.batch_size=4"),
    (5, "--batch-size", "CUDA out of memory at iteration 3 with batch size 5; try --batch-size 2"),
    (1, "--batch-size", "batch size is already 1: use a smaller input size"),
])
def test_out_of_memory_message_names_the_batch_size_to_try(batch, option, expected):
    assert expected in out_of_memory_message("at iteration 3", batch, option)


def test_out_of_memory_in_a_training_step_becomes_advice(monkeypatch, dataset, tmp_path):
    from metaanchor.config import load_config
    from metaanchor.engine import train as train_mod
    from metaanchor.errors import OutOfMemory

    def oom(self, it, images, targets):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_mod.Trainer, "_step", oom)
    cfg = load_config(None, [f"data.train={dataset}", *TINY, "solver.max_iter=2"])
    with pytest.raises(OutOfMemory, match="at training iteration 0 with batch size 2; try solver.batch_size=1"):
        train_mod.train(cfg, tmp_path / "run", progress=False)


# --------------------------------------------------------------------------------- formats through the CLI
def test_convert_malformed_voc_xml_and_yolo_line(capsys, tmp_path, dataset):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "x.xml").write_text("<annotation><filename>a.png</filename>")
    assert_user_error(capsys, ["data", "convert", "--src", voc, "--src-format", "voc", "--dst", tmp_path / "o",
                               "--dst-format", "coco", "--images", dataset / "images"],
                      f"{voc / 'Annotations' / 'x.xml'}: malformed XML at line 1")
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "classes.txt").write_text("a\nb\nc\n")
    first = sorted((dataset / "images").iterdir())[0]
    (yolo / "labels" / f"{first.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 nan 0.2 0.2\n")
    assert_user_error(capsys, ["data", "convert", "--src", yolo, "--src-format", "yolo", "--dst", tmp_path / "o2",
                               "--dst-format", "coco", "--images", dataset / "images"],
                      f"{first.stem}.txt: line 2: values must be normalised")


# ------------------------------------------------------------------------------------------------- fuzzing
GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
SMALL_INT = st.integers(-2, 4)
MAYBE = lambda good: good | GARBAGE  # noqa: E731 - mostly plausible values, sometimes garbage
IMAGE = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "file_name": MAYBE(st.just("a.png")),
                               "width": MAYBE(st.integers(0, 64)), "height": MAYBE(st.integers(0, 64))},
                              optional={"extra": GARBAGE})
BOX = st.lists(st.floats(-10, 80) | st.integers(-10, 80), min_size=4, max_size=4)
ANNOTATION = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "image_id": MAYBE(SMALL_INT),
                                    "category_id": MAYBE(SMALL_INT), "bbox": MAYBE(BOX)},
                                   optional={"iscrowd": MAYBE(st.sampled_from([0, 1])),
                                             "area": GARBAGE, "segmentation": GARBAGE})
CATEGORY = st.fixed_dictionaries({"id": MAYBE(SMALL_INT), "name": MAYBE(st.sampled_from(["cat", "dog"]))})
COCO = st.fixed_dictionaries({"images": MAYBE(st.lists(MAYBE(IMAGE), max_size=3)),
                              "annotations": MAYBE(st.lists(MAYBE(ANNOTATION), max_size=5)),
                              "categories": MAYBE(st.lists(MAYBE(CATEGORY), max_size=3))},
                             optional={"info": GARBAGE}) | GARBAGE


@settings(max_examples=300, deadline=None)
@given(COCO, st.booleans())
def test_fuzzed_coco_dicts_validate_or_raise_data_error(data, skip):
    try:
        clean, skipped, _ = validate_coco(data, "fuzz.json", skip_invalid=skip)
    except DataError as e:
        assert str(e).startswith("fuzz.json: ")
        return
    from metaanchor.data.coco import coco_from_dict

    coco_from_dict(clean)  # pycocotools accepts whatever validation let through
    for a in clean["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and math.isfinite(x + y + w + h) and a["iscrowd"] in (0, 1)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_fuzzed_annotation_file_bytes_raise_only_data_error(raw):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "annotations.json"
        f.write_bytes(raw)
        try:
            validate_coco(load_coco_json(f), f)
        except DataError as e:
            assert str(f) in str(e)


TAGS = st.sampled_from(["annotation", "filename", "size", "width", "height", "object", "name", "bndbox", "xmin",
                        "ymin", "xmax", "ymax", "difficult"])
XML_TEXT = st.sampled_from(["", "a.png", "cat", "0", "1", "5", "40", "-3", "nan", "1e999", "x", "2.5"])
XML_NODE = st.recursive(st.tuples(TAGS, XML_TEXT, st.just([])),
                        lambda kids: st.tuples(TAGS, XML_TEXT, st.lists(kids, max_size=4)), max_leaves=12)


def _xml(node) -> str:
    tag, text, kids = node
    return f"<{tag}>{text}{''.join(_xml(k) for k in kids)}</{tag}>"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(XML_NODE, st.booleans())
def test_fuzzed_voc_xml_parses_or_raises_data_error(node, truncate):
    text = _xml(("annotation", "", [node]))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "x.xml").write_text(text[: len(text) // 2] if truncate else text)
        try:
            data = read_voc(d)
        except UserError as e:
            assert "x.xml" in str(e) or d in str(e)
        else:
            assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in data["annotations"])


YOLO_TOKEN = st.sampled_from(["0", "1", "2", "-1", "0.5", "0.2", "1.0", "0", "nan", "inf", "1e-9", "x", "", "0.99"])
YOLO_LINE = st.lists(YOLO_TOKEN, max_size=6).map(" ".join) | st.text(max_size=15)


@settings(max_examples=150, deadline=None)
@given(st.lists(YOLO_LINE, max_size=4))
def test_fuzzed_yolo_lines_parse_or_raise_data_error(lines):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "images").mkdir()
        (d / "labels").mkdir()
        Image.new("RGB", (40, 30)).save(d / "images" / "a.png")
        (d / "labels" / "a.txt").write_bytes("\n".join(lines).encode("utf-8", "replace"))
        try:
            data = read_yolo(d / "labels", d / "images", ["a", "b"])
        except UserError as e:
            assert "a.txt" in str(e)
        else:
            assert all(0 <= a["category_id"] - 1 < 2 for a in data["annotations"])


SPEC_PART = st.sampled_from(["scales", "ratios", "sizes", "=", ";", ",", "x", "3", "0", "1", "-1", "2.5", "nan",
                             "inf", "1e9", "1e-9", " ", "²", "٣", "16", "17", ".json", ".yaml"])


@settings(max_examples=300, deadline=None)
@given(st.lists(SPEC_PART, max_size=8).map("".join))
def test_fuzzed_anchor_specs_parse_to_usable_sets_or_raise_spec_error(spec):
    try:
        a = AnchorSet.parse(spec)
    except UserError as e:
        assert str(e)
        return
    codes = torch.cat(a.codes([32.0, 64.0, 128.0, 256.0, 512.0]))
    assert torch.isfinite(codes).all()


@settings(max_examples=150, deadline=None)
@given(GARBAGE | st.fixed_dictionaries({"anchors": GARBAGE}) | st.fixed_dictionaries({"levels": GARBAGE}),
       st.sampled_from([".json", ".yaml"]))
def test_fuzzed_anchor_files_parse_or_raise_spec_error(content, suffix):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"a{suffix}"
        try:
            f.write_text(json.dumps(content, allow_nan=True))
        except (ValueError, TypeError):
            return
        try:
            a = AnchorSet.parse(str(f))
        except UserError as e:
            assert str(f) in str(e)
            return
        levels = a.per_level or [a.shapes]
        assert all(h > 0 and w > 0 for lvl in levels for h, w in lvl)


def test_cocodataset_reads_what_fuzzed_validation_accepts(tmp_path):
    # one concrete survivor of the fuzzer: extra garbage fields are kept and ignored
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8, "extra": [None, {"x": 1}]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "segmentation": "?"}],
            "categories": [{"id": 1, "name": "cat"}], "info": {"garbage": float("inf")}}
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    assert CocoDataset(tmp_path)[0][1]["boxes"].tolist() == [[0, 0, 4, 4]]
