"""`metaanchor eval` end to end (in-process): arguments, dataset problems, bad images, metrics output."""

import json
from pathlib import Path

import pytest
from conftest import CAT_IDS, ann, assert_user_error, cli, eval_args, tiny_detector, write_ann
from PIL import Image
from pycocotools.coco import COCO

from metaanchor.cli import main
from metaanchor.data.synth import synth_config, write_synth_dataset


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("score_thresh", [0.0, 0.999], ids=["detections", "no-detections"])
def test_undefined_metrics_are_null_in_json_and_na_in_printed_output(tmp_path, capsys, small_objects, score_thresh):
    ckpt = tmp_path / "m.pt"
    tiny_detector(class_names=["a", "b", "c"], score_thresh=score_thresh).save(ckpt)
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(small_objects), "--device", "cpu",
                 "--json-out", str(out)]) == 0
    m = _strict_json(out.read_text())
    assert m["APl"] is None and m["ARl"] is None
    for k in ("AP", "AP50", "APs", "AR100"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0
    printed = capsys.readouterr().out
    assert "-1.000" not in printed
    if score_thresh == 0.0:  # pycocotools' summary is printed
        assert [ln.split("=")[-1].strip() for ln in printed.splitlines() if "area= large" in ln] == ["n/a"] * 2


def test_eval_save_json_uses_the_datasets_ids(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    saved = tmp_path / "out" / "dets.json"
    code, _, err = cli(capsys, "eval", "--checkpoint", odd_ckpt, "--data", odd_ids_dataset, "--device", "cpu",
                       "--save-json", saved)
    assert code == 0, err
    dets = json.loads(saved.read_text())
    assert dets and {d["category_id"] for d in dets} <= set(CAT_IDS)
    assert {d["image_id"] for d in dets} == {13, 23, 33, 43}
    gt = COCO(str(odd_ids_dataset / "annotations.json"))
    res = gt.loadRes(str(saved))  # pycocotools accepts it against the dataset
    assert set(res.getImgIds()) <= set(gt.getImgIds()) and len(res.getAnnIds()) == len(dets)
    assert [p.name for p in saved.parent.iterdir()] == ["dets.json"]  # no temp file left


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
