"""Confusion matrix and precision / recall / F1 at a score threshold: hand-made boxes with known answers, and
`metaanchor eval` printing, drawing and writing them."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, cli

from metaanchor.engine.evaluate import (
    confusion_matrix,
    format_confusion,
    match_detections,
    precision_recall_f1,
    prf_rows,
)


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def _gt(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


A, B, C, NOWHERE = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]


@pytest.fixture
def matches():
    """Two classes. Image 1: boxes A (class 0), B (class 1), C (class 0). Detections: A as class 0 (0.9), a
    duplicate of A (0.8), B as class 0: the wrong class (0.7), a class-1 box on nothing (0.6), C as class 1 at a
    low score (0.2). Image 2: one class-1 box B, found as class 1 (0.95) but shifted to IoU 0.6."""
    image1 = (_det([A, A, B, NOWHERE, C], [0.9, 0.8, 0.7, 0.6, 0.2], [0, 0, 0, 1, 1]), _gt([A, B, C], [0, 1, 0]))
    image2 = (_det([[20, 20, 30, 36.66666]], [0.95], [1]), _gt([[20, 20, 30, 30]], [1]))  # IoU 100 / 166.67
    return match_detections([image1, image2], num_classes=2, iou_thresh=0.5)


def test_confusion_matrix_counts_wrong_class_duplicate_and_missed(matches):
    # rows: ground truth (class 0, class 1, background); columns: predicted (class 0, class 1, background)
    assert confusion_matrix(matches, conf=0.5).tolist() == [
        [1, 0, 1],  # A found; C missed (its only detection scores under 0.5)
        [1, 1, 0],  # B detected as class 0; image 2's box found
        [1, 1, 0],  # the duplicate of A, the class-1 box on nothing
    ]
    assert confusion_matrix(matches, conf=0.1).tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 0]]  # C taken as class 1
    assert confusion_matrix(matches, conf=0.99).tolist() == [[0, 0, 2], [0, 0, 2], [0, 0, 0]]


def test_iou_threshold_decides_a_match():
    det, gt = _det([[20, 20, 30, 36.66666]], [0.95], [1]), _gt([[20, 20, 30, 30]], [1])
    assert confusion_matrix(match_detections([(det, gt)], 2, iou_thresh=0.7), 0.5).tolist() == \
        [[0, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_precision_recall_f1_per_class(matches):
    r = precision_recall_f1(matches, 0.5)
    assert r["tp"].tolist() == [1, 1] and r["dets"].tolist() == [3, 2] and r["gt"].tolist() == [2, 2]
    np.testing.assert_allclose(r["precision"], [1 / 3, 1 / 2])
    np.testing.assert_allclose(r["recall"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(r["f1"], [2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), 1 / 2])
    rows = prf_rows(matches, 0.5, ["cat", "dog"])
    assert [(x["class"], x["gt"], x["dets"], x["tp"], x["fp"], x["fn"]) for x in rows] == [
        ("cat", 2, 3, 1, 2, 1), ("dog", 2, 2, 1, 1, 1), ("all", 4, 5, 2, 3, 2)]
    assert rows[-1]["precision"] == pytest.approx(2 / 5) and rows[-1]["recall"] == pytest.approx(2 / 4)


def test_one_matching_serves_every_threshold(matches):
    thresholds = np.array([0.0, 0.15, 0.5, 0.85, 0.99])
    curves = precision_recall_f1(matches, thresholds)
    for i, t in enumerate(thresholds):
        single = precision_recall_f1(matches, float(t))
        for key in ("tp", "dets", "precision", "recall", "f1"):
            np.testing.assert_allclose(curves[key][i], single[key])
    assert curves["tp"][:, 0].tolist() == [1, 1, 1, 1, 0]


def test_images_without_detections_or_boxes():
    m = match_detections([(_det([], [], []), _gt([A], [0])), (_det([A], [0.5], [1]), _gt([], []))], 2)
    assert confusion_matrix(m, 0.25).tolist() == [[0, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert match_detections([], 2).gt_label.dtype == np.int64


def test_the_printed_table_names_rows_and_columns(matches):
    text = format_confusion(confusion_matrix(matches, 0.5), ["cat", "dog"])
    lines = text.splitlines()
    assert "rows: ground truth, columns: predicted" in lines[0]
    assert lines[1].split()[-3:] == ["cat", "dog", "background"]
    assert lines[2].split() == ["cat", "1", "0", "1"] and lines[4].split() == ["background", "1", "1", "0"]


def test_eval_prints_draws_and_writes_the_counts(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    out = tmp_path / "m.json"
    plot = tmp_path / "plots" / "pr.png"
    code, stdout, err = cli(capsys, "eval", "--checkpoint", odd_ckpt, "--data", odd_ids_dataset, "--device", "cpu",
                            "--conf", 0.1, "--iou", 0.3, "--json-out", out, "--plot", plot)
    assert code == 0, err
    m = json.loads(out.read_text())
    cm = np.array(m["confusion_matrix"]["matrix"])
    names = [c["name"] for c in json.loads((odd_ids_dataset / "annotations.json").read_text())["categories"]]
    assert m["confusion_matrix"]["classes"] == [*names, "background"]
    assert (m["confusion_matrix"]["conf"], m["confusion_matrix"]["iou"]) == (0.1, 0.3)
    anns = json.loads((odd_ids_dataset / "annotations.json").read_text())["annotations"]
    assert cm[:3].sum() == len(anns)  # every ground-truth box once: found as some class, or missed
    rows = {r["class"]: r for r in m["prf"]}
    assert rows["all"]["tp"] == np.trace(cm[:3, :3]) and rows["all"]["dets"] == cm[:, :3].sum()
    assert [rows[c]["gt"] for c in names] == cm[:3].sum(1).tolist()
    assert "precision / recall / F1 at score >= 0.1, IoU >= 0.3" in stdout
    table = stdout[stdout.index("true / predicted"):].splitlines()
    assert table[4].split()[1:] == [str(v) for v in cm[3]]  # the background row as printed
    assert {p.name for p in plot.parent.iterdir()} == {"pr.png", "confusion_matrix.png", "f1_curve.png"}


@pytest.mark.parametrize("extra, fragment", [(["--conf", "1.5"], "--conf 1.5: must be in 0..1"),
                                             (["--iou", "0"], "--iou 0.0: must be in (0, 1]")])
def test_bad_conf_or_iou(capsys, odd_ckpt, odd_ids_dataset, extra, fragment):
    assert_user_error(capsys, ["eval", "--checkpoint", odd_ckpt, "--data", odd_ids_dataset, *extra], fragment)
