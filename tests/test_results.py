"""``Results``: the detections of one image with names, drawing, saving, COCO and JSON output."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_detector
from PIL import Image

from metaanchor.engine.api import Predictor
from metaanchor.engine.evaluate import to_coco_results
from metaanchor.engine.results import Results
from metaanchor.errors import UserError

NAMES = ["circle", "square", "triangle"]
CAT_IDS = [1, 7, 90]
THRESH = 0.6  # the lively model below scores a few dozen boxes above it, well apart


def lively_predictor():
    """An untrained tiny RetinaNet whose head weights are spread out, so its scores are spread out too."""
    model = tiny_detector(class_names=NAMES, category_ids=CAT_IDS)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(std=0.3)
    return Predictor(model)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    arr = (np.random.RandomState(0).rand(90, 120, 3) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def result(image_file):
    return lively_predictor()(image_file, score_thresh=THRESH)[0]


def test_results_hold_boxes_scores_labels_and_class_names(result, image_file):
    n = len(result)
    assert n > 0
    assert result.boxes.shape == (n, 4) and result.scores.shape == (n,) and result.labels.shape == (n,)
    assert result.labels.dtype == torch.int64 and bool((result.scores >= THRESH).all())
    assert result.names == NAMES and result.category_ids == CAT_IDS
    assert result.class_names == [NAMES[k] for k in result.labels.tolist()]
    assert result.image_size == (90, 120) and result.path == image_file
    assert result.image.shape == (3, 90, 120) and result.image.dtype == torch.uint8
    # boxes lie in the original image's pixels
    assert bool((result.boxes[:, 0::2] <= 120).all()) and bool((result.boxes[:, 1::2] <= 90).all())


def test_kept_image_is_the_input_image(result, image_file):
    assert np.array_equal(result.image.permute(1, 2, 0).numpy(), np.asarray(Image.open(image_file)))


def test_plot_has_the_image_size_and_draws_only_where_there_are_detections(result, image_file):
    drawn = result.plot()
    assert drawn.size == (120, 90)
    original = np.asarray(Image.open(image_file))
    assert not np.array_equal(np.asarray(drawn), original)
    assert np.array_equal(np.asarray(result[:0].plot()), original)  # no detections: the image itself


def test_save_writes_a_readable_png(result, tmp_path):
    path = result.save(tmp_path / "sub" / "scene_det.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (120, 90)
        assert np.array_equal(np.asarray(img), np.asarray(result.plot()))
    assert [p.name for p in path.parent.iterdir()] == ["scene_det.png"]  # no temporary file left


def test_save_refuses_to_write_over_its_input_image(result, image_file, tmp_path):
    before = image_file.read_bytes()
    with pytest.raises(UserError, match=f"^{image_file}: is the input image of these detections; save the "
                                        "drawing elsewhere$"):
        result.save(image_file)
    link = tmp_path / "link.png"
    link.symlink_to(image_file)
    with pytest.raises(UserError, match="is the input image of these detections"):
        result.save(link)
    assert image_file.read_bytes() == before


def test_save_refuses_an_unknown_suffix(result, tmp_path):
    with pytest.raises(UserError, match=r"scene.det: unknown image suffix '.det'; use .png or .jpg$"):
        result.save(tmp_path / "scene.det")


def test_to_coco_equals_to_coco_results_with_the_models_category_ids(result):
    assert result.to_coco(image_id=7) == to_coco_results([result.to_dict()], [7], CAT_IDS)
    records = result.to_coco(image_id=3, category_ids=[10, 20, 30])
    assert len(records) == len(result) and {r["image_id"] for r in records} == {3}
    assert [r["category_id"] for r in records] == [[10, 20, 30][k] for k in result.labels.tolist()]
    x1, y1, x2, y2 = result.boxes[0].tolist()
    assert records[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)


def test_to_json_lists_every_detection_with_its_name(result, image_file):
    data = json.loads(result.to_json())
    assert data["path"] == str(image_file) and data["image_size"] == [90, 120]
    assert [d["name"] for d in data["detections"]] == result.class_names
    assert [d["label"] for d in data["detections"]] == result.labels.tolist()
    assert data["detections"][0]["box"] == pytest.approx(result.boxes[0].tolist(), abs=0.005)
    assert data["detections"][0]["score"] == pytest.approx(float(result.scores[0]), abs=1e-5)


def test_indexing_selects_detections(result):
    strong = result[result.scores > 0.7]
    assert len(strong) == int((result.scores > 0.7).sum()) and strong.names == NAMES
    assert torch.equal(result[0].boxes, result.boxes[:1]) and len(result[-1]) == 1
    assert torch.equal(result[-2].boxes, result.boxes[-2:-1])


def test_numpy_and_cpu_views(result):
    arrays = result.numpy()
    assert arrays["boxes"].shape == (len(result), 4) and arrays["labels"].dtype == np.int64
    assert np.array_equal(arrays["scores"], result.scores.numpy())
    assert torch.equal(result.cpu().boxes, result.boxes)


def test_repr_is_one_short_line(result, image_file):
    text = repr(result)
    assert text.startswith(f"Results({image_file}, 120x90, {len(result)} detections: {result.class_names[0]} ")
    assert "\n" not in text and len(text) < 200


def test_results_made_without_the_image_cannot_plot():
    r = Results(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), NAMES, (10, 20))
    assert len(r) == 0 and r.to_coco() == [] and r.category_ids == [1, 2, 3]
    assert repr(r) == "Results(20x10, 0 detections)"
    with pytest.raises(UserError, match="made without keeping the image"):
        r.plot()
