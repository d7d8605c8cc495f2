"""`metaanchor data show` and engine.anchor_view: which anchor each ground-truth box is matched to, at the
network's input scale, and which boxes no anchor reaches."""

import json

import pytest
import torch
from conftest import assert_user_error, cli
from PIL import Image

from metaanchor.config import default_config, model_kwargs
from metaanchor.engine.anchor_view import anchor_matches, summary
from metaanchor.families import detector_class

NORMAL = [112, 112, 32, 32]  # x, y, w, h in a 256 x 256 image: 64 x 64 at input size 512, centred on a P4 anchor
THIN = [10, 20, 4, 64]  # 1:16, at input scale 8 x 128: no square anchor overlaps it by IoU 0.5


def _dataset(root, boxes=(NORMAL, THIN)):
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (256, 256), (120, 120, 120)).save(root / "images" / "a.png")
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, b in enumerate(boxes)]
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 256, "height": 256}],
        "categories": [{"id": 1, "name": "thing"}], "annotations": anns}))
    return root


def _model(arch="retinanet", anchors="1x1"):
    cfg = default_config(arch)
    cfg["input"]["size"], cfg["anchors"]["train"] = 512, anchors
    return detector_class(arch)(**model_kwargs(cfg, 1, ["thing"])).eval()


def _xyxy(b):
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def test_a_thin_box_is_unreached_and_a_normal_box_matches_its_level():
    view = anchor_matches(_model(), torch.zeros(3, 256, 256), torch.tensor([_xyxy(NORMAL), _xyxy(THIN)]))
    assert view["input_size"] == (512, 512)
    assert view["reached"].tolist() == [True, False]
    assert view["iou"][0].item() == pytest.approx(1.0)
    assert view["level"][0].item() == 1 and view["stride"][0].item() == 16  # P4: standard box 64 px
    assert view["anchor"][0].tolist() == pytest.approx(_xyxy(NORMAL))  # back in image pixels
    # foreground anchors: the P4 anchor on the box and its 4 neighbours (shifted 16 px: IoU 48 * 64 / 5120 = 0.6)
    assert view["positives"][0].item() == 5
    assert view["iou"][1].item() < 0.5 <= view["positive_iou"]
    assert view["positives"][1].item() >= 1  # the matcher still gives it its best anchors (low-quality match)
    s = summary([view])
    assert (s["boxes"], s["reached"], s["unreached"], s["unreached_pct"]) == (2, 1, 1, 50.0)


def test_yolov2_gives_each_box_the_anchor_of_best_shape_in_its_cell():
    view = anchor_matches(_model("yolov2"), torch.zeros(3, 256, 256), torch.tensor([_xyxy(NORMAL), _xyxy(THIN)]))
    assert view["stride"].tolist() == [32, 32] and view["positives"].tolist() == [1, 1]
    # 1x1 at stride 32 with anchor_base 4: a 128 px square; shape IoU with 64 x 64 is 0.25, with 8 x 128 1/16
    assert view["iou"].tolist() == pytest.approx([0.25, 1 / 16])
    assert view["reached"].tolist() == [False, False]


def test_data_show_prints_exact_counts_and_draws(capsys, tmp_path):
    root = _dataset(tmp_path / "ds")
    out = tmp_path / "show"
    code, stdout, err = cli(capsys, "data", "show", "--data", root, "--anchors", "1x1", "--input-size", 512,
                            "--out", out, "--all")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("anchors 1x1 on P3 (stride 8), P4 (stride 16)")
    assert lines[1].startswith("a.png: 2 boxes, 1 matched, 1 unreached (50.0%), mean best IoU ")
    assert "unreached (h x w image px, worst first): 64x4 (IoU " in lines[1]
    assert lines[2].startswith("all 1 images: 2 boxes, 1 matched, 1 unreached (50.0%), mean best IoU ")
    assert lines[2].endswith("(positive IoU 0.5)")
    assert lines[3] == "whole split (1 images)" + lines[2][len("all 1 images"):-len(" (positive IoU 0.5)")]
    assert [p.name for p in out.iterdir()] == ["a_anchors.png"]
    assert Image.open(out / "a_anchors.png").size == (512, 512)  # drawn at the network's input size


def test_data_show_with_a_checkpoint_uses_its_anchors(capsys, tmp_path, model_ckpt):
    root = _dataset(tmp_path / "ds", boxes=(NORMAL,))
    code, stdout, err = cli(capsys, "data", "show", "--data", root, "--checkpoint", model_ckpt, "--out",
                            tmp_path / "show")
    assert code == 0, err
    assert stdout.startswith("anchors 3x3 on P3") and "input short side 128" in stdout
    assert "all 1 images: 1 boxes, " in stdout


@pytest.mark.parametrize("extra, fragment", [(["--num-images", "0"], "--num-images 0: must be at least 1"),
                                             (["--anchors", "0x1"], "anchor SPEC '0x1'"),
                                             (["--arch", "ssd"], "--arch ssd: unknown")])
def test_bad_data_show_arguments(capsys, tmp_path, extra, fragment):
    root = _dataset(tmp_path / "ds")
    assert_user_error(capsys, ["data", "show", "--data", root, "--out", tmp_path / "o", *extra], fragment)
