"""`metaanchor eval` end to end (in-process): arguments, dataset problems, bad images, metrics output."""

import json

import pytest
from conftest import CAT_IDS, cli, tiny_detector
from pycocotools.coco import COCO

from metaanchor.cli import main


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
