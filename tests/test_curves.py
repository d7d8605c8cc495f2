"""Per-class AP table (AP, AP50, ground-truth boxes) and the precision-recall / validation curves."""

import json

import pytest
from conftest import cli, tiny_detector
from PIL import Image
from pycocotools.coco import COCO

from metaanchor.engine.evaluate import coco_metrics, format_per_class
from metaanchor.visualize import plot_pr_curves, plot_val_curve


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


@pytest.fixture
def gt():
    """Two images, class a: 2 boxes, class b: 1 box, class c: none."""
    return _coco({"images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
                  "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 7, "name": "c"}],
                  "annotations": [
                      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0},
                      {"id": 2, "image_id": 2, "category_id": 1, "bbox": [100, 100, 40, 60], "area": 2400,
                       "iscrowd": 0},
                      {"id": 3, "image_id": 2, "category_id": 2, "bbox": [20, 30, 60, 40], "area": 2400,
                       "iscrowd": 0}]})


def test_per_class_table_has_ap_ap50_and_ground_truth_counts(gt):
    # class a: one of its two boxes found (recall 0.5 at precision 1); class b: found exactly
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},
               {"image_id": 2, "category_id": 2, "bbox": [20, 30, 60, 40], "score": 0.8}]
    m = coco_metrics(gt, results, [1, 2])
    a, b, c = m["per_class_table"]
    assert (a["class"], a["gt"], b["class"], b["gt"], c["class"], c["gt"]) == ("a", 2, "b", 1, "c", 0)
    assert a["AP50"] == pytest.approx(51 / 101) and a["AP"] == pytest.approx(51 / 101)  # 51 of 101 recall points
    assert b["AP50"] == pytest.approx(1.0) and b["AP"] == pytest.approx(1.0)
    assert c["AP"] is None and c["AP50"] is None  # no ground truth: undefined
    assert m["per_class"] == {"a": a["AP"], "b": b["AP"], "c": None}  # the existing key is kept
    pr = m["pr50"]
    assert len(pr["recall"]) == 101 and set(pr["precision"]) == {"a", "b", "all"}
    assert pr["precision"]["a"] == pytest.approx([1.0] * 51 + [0.0] * 50)
    assert pr["precision"]["all"] == pytest.approx([(x + y) / 2 for x, y in zip(pr["precision"]["a"],
                                                                                 pr["precision"]["b"])])
    assert format_per_class(m).splitlines() == ["class        AP    AP50  GT boxes",
                                                "a         0.505   0.505         2",
                                                "b         1.000   1.000         1",
                                                "c           n/a     n/a         0"]


def test_no_detections_still_gives_the_table_with_counts(gt):
    m = coco_metrics(gt, [], [1, 2])
    assert [(r["class"], r["AP"], r["gt"]) for r in m["per_class_table"]] == [("a", 0.0, 2), ("b", 0.0, 1),
                                                                             ("c", None, 0)]
    assert m["pr50"] is None


def test_pr_curve_and_val_curve_pictures(gt, tmp_path):
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}]
    path = plot_pr_curves(coco_metrics(gt, results, [1, 2])["pr50"], tmp_path / "pr.png")
    assert Image.open(path).size == (550, 450)
    csv = tmp_path / "metrics.csv"
    csv.write_text("iter,lr,loss,AP,AP50\n1,0.1,2.0,,\n5,0.1,,0.1,0.3\n10,0.1,,0.2,0.4\n")
    assert Image.open(plot_val_curve(csv, tmp_path / "val.png")).size == (550, 400)
    csv.write_text("iter,lr,loss,AP,AP50\n1,0.1,2.0,,\n")
    assert plot_val_curve(csv, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_eval_prints_the_per_class_table_and_writes_it_as_json(capsys, synth_dirs, tmp_path):
    _, val = synth_dirs
    ckpt = tmp_path / "m.pt"
    tiny_detector(class_names=["a", "b", "c"], score_thresh=0.0).save(ckpt)  # keeps every candidate
    counts = {}
    ann = json.loads((val / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    for a in ann["annotations"]:
        counts[names[a["category_id"]]] = counts.get(names[a["category_id"]], 0) + 1
    code, out, err = cli(capsys, "eval", "--checkpoint", ckpt, "--data", val, "--device", "cpu",
                         "--json-out", tmp_path / "m.json", "--plot", tmp_path / "pr.png")
    assert code == 0
    table = out[out.index("class "):].splitlines()[1:4]
    assert {line.split()[0]: int(line.split()[-1]) for line in table} == counts
    saved = json.loads((tmp_path / "m.json").read_text())
    assert {r["class"]: r["gt"] for r in saved["per_class_table"]} == counts
    assert f"drew {tmp_path / 'pr.png'}" in out and Image.open(tmp_path / "pr.png").size == (550, 450)
