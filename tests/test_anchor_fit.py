"""``anchors fit`` at the network's input scale: planted shapes, per-level BPR, unreachable boxes, the picture."""

import json

import numpy as np
import pytest
import yaml
from conftest import cli
from PIL import Image

from metaanchor.data.box_shapes import input_shapes
from metaanchor.geometry.anchor_fit import (
    anchor_fit_quality,
    bucket_quality,
    level_quality,
    unreachable_boxes,
)


def write_dataset(folder, boxes_at_input):
    """A COCO folder (no image files needed) of 640x480 and 320x240 images; ``boxes_at_input`` are (h, w) as the
    network sees them at input.size 512 (long side capped at 512: x0.8 and x1.6), stored in original pixels."""
    images, anns = [], []
    for i, (h, w) in enumerate(boxes_at_input):
        big = i % 2 == 0
        width, height, factor = (640, 480, 0.8) if big else (320, 240, 1.6)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": width, "height": height})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [5, 5, w / factor, h / factor],
                     "area": w * h / factor ** 2, "iscrowd": 0})
    folder.mkdir(parents=True)
    (folder / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                         "categories": [{"id": 1, "name": "cell"}]}))
    return folder


def test_input_shapes_resize_each_image_as_the_model_does(tmp_path):
    data = write_dataset(tmp_path / "d", [(40, 40), (100, 50)])
    np.testing.assert_allclose(input_shapes(data, None, 512, 512), [[40, 40], [100, 50]])
    # short side 480: 640x480 x1 (box 50x50 stored), 320x240 x2 (box 62.5x31.25 stored)
    np.testing.assert_allclose(input_shapes(data, None, 480, 1000), [[50, 50], [125, 62.5]])


def test_anchors_fit_recovers_planted_clusters_at_input_scale(capsys, tmp_path):
    # two shapes at input scale, each seen in both image sizes: P3 (32 px) boxes 40x40, P4 (64 px) boxes 100x50
    data = write_dataset(tmp_path / "d", [(40, 40), (40, 40), (40, 40), (40, 40), (100, 50), (100, 50), (100, 50),
                                          (100, 50)])
    code, out, err = cli(capsys, "anchors", "fit", "--data", data, "-k", "2", "--input-size", "512", "--compare",
                         "1x1", "3x3", "--out", tmp_path / "a.yaml")
    assert code == 0, err
    fitted = yaml.safe_load((tmp_path / "a.yaml").read_text())["anchors"]
    np.testing.assert_allclose(fitted, [[100 / 64, 50 / 64], [40 / 32, 40 / 32]], atol=1e-3)  # level-relative, by area
    assert "note: BPR@0.5 is the same for every set" in out  # 1x1 and 3x3 both reach every box at 0.5
    assert Image.open(tmp_path / "a.png").size == (600, 550)
    code, out, err = cli(capsys, "anchors", "fit", "--data", data, "-k", "2", "--arch", "yolov2", "--input-size",
                         "512", "--compare", "1x1", "--out", tmp_path / "y.yaml", "--plot", tmp_path / "y.png")
    assert code == 0, err
    fitted = yaml.safe_load((tmp_path / "y.yaml").read_text())["anchors"]
    np.testing.assert_allclose(fitted, [[40 / 128, 40 / 128], [100 / 128, 50 / 128]], atol=1e-3)  # one 128 px box
    assert (tmp_path / "y.png").is_file()


def test_anchors_fit_compare_prints_long_set_names_in_full(capsys, tmp_path):
    # two sets whose SPEC strings agree in their first 27 characters: each row must name its own set
    data = write_dataset(tmp_path / "d", [(40, 40), (100, 50)])
    long_a, long_b = "scales=1,1.26,1.59;ratios=0.33,3", "scales=1,1.26,1.59;ratios=0.25,4"
    code, out, err = cli(capsys, "anchors", "fit", "--data", data, "-k", "1", "--input-size", "512", "--compare",
                         long_a, long_b, "--out", tmp_path / "a.yaml")
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("scales=") and "BPR" not in line]
    assert rows == [long_a, long_b]
    assert sum(line.startswith(f"  {long_b}: BPR@0.5 (boxes) by") for line in out.splitlines()) == 2  # level, size


def test_per_level_and_per_size_bpr_on_a_hand_made_case():
    # levels of 32 and 64 px, one square anchor each (1x1); IoUs of centred boxes:
    # 32x32 -> P3 1.0; 45x45 -> P3 1024/2025; 64x16 -> P3 512/1536 (P4 only 0.25); 64x64 -> P4 1.0
    shapes = np.array([[32, 32], [45, 45], [64, 16], [64, 64]], dtype=float)
    p3, p4 = level_quality(shapes, "1x1", [32, 64])
    assert (p3["boxes"], p4["boxes"]) == (3, 1)
    assert p3["bpr"] == pytest.approx(2 / 3) and p4["bpr"] == 1.0
    assert p3["mean_iou"] == pytest.approx((1 + 1024 / 2025 + 1 / 3) / 3)
    assert p3["bpr_strict"] == pytest.approx(1 / 3)  # only the exact 32x32 box reaches 0.7
    q = anchor_fit_quality(shapes, "1x1", [32, 64])
    assert q["bpr"] == pytest.approx(3 / 4) and q["anchors_per_box"] == pytest.approx(3 / 4)
    buckets = bucket_quality(shapes, "1x1", [32, 64])  # areas 1024, 2025, 1024, 4096: all medium (>= 32^2)
    assert {k: v["boxes"] for k, v in buckets.items()} == {"small": 0, "medium": 4, "large": 0}


def test_boxes_beyond_the_smallest_and_largest_anchor_are_warned_about(capsys, tmp_path):
    tiny, huge = np.array([[4, 4]]), np.array([[500, 500]])
    bad = unreachable_boxes(np.vstack([tiny, [[32, 32]], huge]), "1x1", [32, 64])
    assert bad["too_small"].tolist() == [0] and bad["too_large"].tolist() == [2]
    data = write_dataset(tmp_path / "d", [(40, 40), (8, 6), (100, 50), (40, 40)])
    code, out, err = cli(capsys, "anchors", "fit", "--data", data, "-k", "2", "--input-size", "512", "--compare",
                         "3x3", "--out", tmp_path / "a.yaml")
    assert code == 0
    assert ("warning: anchors 3x3: 1 boxes (25.0%) are smaller than the smallest anchor at P3 by more than IoU 0.5 "
            "allows, so no anchor can match them (extreme: 8x6 px)") in err
