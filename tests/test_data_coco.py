"""CocoDataset: loading, image modes, validation messages and skip_invalid accounting."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from metaanchor.data import CocoDataset, collate
from metaanchor.errors import DataError, UserError


def _dataset_dict():
    return {
        "images": [
            {"id": 3, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 8, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 17, "image_id": 3, "category_id": 5, "bbox": [1.0, 2.0, 10.0, 8.0],
             "area": 80.0, "iscrowd": 0},
            {"id": 18, "image_id": 3, "category_id": 9, "bbox": [20, 5, 15, 20]},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
    }


def _write(folder, data, images=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    if images:
        for k, name in enumerate(("a.png", "b.png")):
            Image.new("RGB", (40, 30), (k * 100, 50, 200)).save(folder / "images" / name)
    (folder / "annotations.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def folder(tmp_path):
    return _write(tmp_path / "ds", _dataset_dict())


def test_loads_folder_with_contiguous_labels_and_xyxy_boxes(folder):
    ds = CocoDataset(folder)
    assert ds.class_names == ["cat", "dog"] and ds.cat_ids == [5, 9]
    assert ds.image_ids == [3, 8] and ds.ann_file == folder / "annotations.json"
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert torch.allclose(image[:, 0, 0], torch.tensor([0, 50, 200]) / 255.0)
    assert torch.equal(target["boxes"], torch.tensor([[1, 2, 11, 10], [20, 5, 35, 25]],
                                                     dtype=torch.float32))
    assert torch.equal(target["labels"], torch.tensor([0, 1]))
    assert target["image_id"] == 3
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["boxes"].dtype == torch.float32 and empty["labels"].dtype == torch.int64


def test_pycocotools_object_is_built_from_validated_data(folder, capsys):
    ds = CocoDataset(folder)
    assert capsys.readouterr().out == ""  # pycocotools' prints are suppressed
    assert sorted(ds.coco.getImgIds()) == [3, 8]
    assert ds.coco.loadAnns([18])[0]["area"] == 300  # missing area filled in
    assert ds.coco.loadAnns([18])[0]["iscrowd"] == 0


def test_annotation_file_needs_images_dir(folder):
    with pytest.raises(UserError, match="images"):
        CocoDataset(folder / "annotations.json")
    ds = CocoDataset(folder / "annotations.json", images_dir=folder / "images")
    assert ds[0][0].shape == (3, 30, 40)


def test_crowd_annotations_are_kept_for_eval_but_not_targets(tmp_path):
    data = _dataset_dict()
    data["annotations"][1]["iscrowd"] = 1
    ds = CocoDataset(_write(tmp_path / "ds", data))
    assert ds[0][1]["boxes"].shape == (1, 4)
    assert len(ds.coco.getAnnIds(imgIds=[3])) == 2


@pytest.mark.parametrize("mode, make", [
    ("L", lambda: Image.new("L", (40, 30), 128)),
    ("RGBA", lambda: Image.new("RGBA", (40, 30), (128, 128, 128, 10))),
    ("P", lambda: Image.new("RGB", (40, 30), (128, 128, 128)).convert("P", palette=Image.Palette.ADAPTIVE)),
    ("I;16", lambda: Image.fromarray(np.full((30, 40), 128 * 257, dtype=np.uint16))),
])
def test_any_image_mode_becomes_rgb_8bit(folder, mode, make):
    image = make()
    assert image.mode == mode
    image.save(folder / "images" / "a.png")
    tensor = CocoDataset(folder)[0][0]
    assert tensor.shape == (3, 30, 40)
    assert torch.allclose(tensor, torch.full_like(tensor, 128 / 255), atol=1 / 255)


def test_missing_image_file_is_reported_with_its_path(folder):
    (folder / "images" / "b.png").unlink()
    ds = CocoDataset(folder)
    with pytest.raises(DataError, match=r"b\.png.*not found"):
        ds[1]


def test_truncated_png_is_reported(folder):
    path = folder / "images" / "a.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"a\.png: cannot read image"):
        CocoDataset(folder)[0]


def test_not_an_image_is_reported(folder):
    (folder / "images" / "a.png").write_text("hello")
    with pytest.raises(DataError, match=r"a\.png"):
        CocoDataset(folder)[0]


def test_image_size_disagreeing_with_annotation_is_reported(folder):
    Image.new("RGB", (41, 30)).save(folder / "images" / "a.png")
    with pytest.raises(DataError, match=r"a\.png.*41x30.*image id 3.*40x30"):
        CocoDataset(folder)[0]


def test_malformed_json_names_file_line_and_column(tmp_path):
    folder = tmp_path / "ds"
    _write(folder, {})
    (folder / "annotations.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"annotations\.json: malformed JSON at line 2 column 12"):
        CocoDataset(folder)


def _mutate(fn):
    data = _dataset_dict()
    fn(data)
    return data


def _set(record, **kw):
    record.update(kw)


# (mutation, regex the message must match besides the file name)
FATAL_CASES = {
    "missing_key": (lambda d: d.pop("categories"), r"missing required key 'categories'"),
    "no_images": (lambda d: d.update(images=[]), r"dataset has no images"),
    "duplicate_image": (lambda d: _set(d["images"][1], id=3), r"image id 3: duplicate image id"),
    "bad_image_size": (lambda d: _set(d["images"][1], width=0),
                       r"images\[1\] \(image id 8\): 'width' must be a positive integer"),
    "duplicate_category": (lambda d: _set(d["categories"][1], id=9),
                           r"category id 9: duplicate"),
}

ANNOTATION_CASES = {
    "duplicate_id": (lambda d: _set(d["annotations"][1], id=17),
                     r"annotation id 17 \(image 3\): duplicate annotation id"),
    "unknown_image": (lambda d: _set(d["annotations"][1], image_id=99),
                      r"annotation id 18 \(image 99\): refers to unknown image id 99"),
    "unknown_category": (lambda d: _set(d["annotations"][1], category_id=4),
                         r"annotation id 18 \(image 3\): unknown category id 4"),
    "non_positive_size": (lambda d: _set(d["annotations"][0], bbox=[5, 5, -2.0, 3]),
                          r"annotation id 17 \(image 3\): box has non-positive width -2\.0"),
    "zero_height": (lambda d: _set(d["annotations"][0], bbox=[5, 5, 2, 0]),
                    r"annotation id 17 \(image 3\): box has non-positive height 0"),
    "non_finite_bbox": (lambda d: _set(d["annotations"][1], bbox=[1, math.inf, 2, 2]),
                        r"annotation id 18 \(image 3\): box has a NaN or infinite value"),
    "malformed_bbox": (lambda d: _set(d["annotations"][1], bbox=[1, 2, 3]),
                       r"annotation id 18 \(image 3\): 'bbox' must be a list of 4 numbers"),
    "missing_bbox": (lambda d: d["annotations"][1].pop("bbox"),
                     r"annotation id 18 \(image 3\): missing required key 'bbox'"),
    "outside_image": (lambda d: _set(d["annotations"][1], bbox=[50, 5, 10, 10]),
                      r"annotation id 18 \(image 3\): box .* outside the 40x30 image"),
    "clipped": (lambda d: _set(d["annotations"][1], bbox=[30, 5, 15, 10]),
                r"annotation id 18 \(image 3\): box .* outside the 40x30 image"),
}


@pytest.mark.parametrize("case", sorted(FATAL_CASES) + sorted(ANNOTATION_CASES))
def test_invalid_record_raises_data_error_naming_file_and_record(tmp_path, case):
    mutate, pattern = {**FATAL_CASES, **ANNOTATION_CASES}[case]
    folder = _write(tmp_path / "ds", _mutate(mutate), images=False)
    with pytest.raises(DataError, match=r"annotations\.json: " + pattern):
        CocoDataset(folder)


@pytest.mark.parametrize("case", sorted(FATAL_CASES))
def test_file_level_problems_are_errors_even_with_skip_invalid(tmp_path, case):
    folder = _write(tmp_path / "ds", _mutate(FATAL_CASES[case][0]), images=False)
    with pytest.raises(DataError):
        CocoDataset(folder, skip_invalid=True)


@pytest.mark.parametrize("case", sorted(ANNOTATION_CASES))
def test_skip_invalid_drops_and_counts_the_bad_annotation(tmp_path, case):
    folder = _write(tmp_path / "ds", _mutate(ANNOTATION_CASES[case][0]))
    ds = CocoDataset(folder, skip_invalid=True)
    reason = "non_positive_size" if case == "zero_height" else case
    reason = "missing_key" if case == "missing_bbox" else reason
    assert ds.skipped == {reason: 1}
    assert len(ds.warnings) == 1 and "annotations.json" in ds.warnings[0]
    boxes = ds[0][1]["boxes"]
    if case == "clipped":  # repaired, not dropped
        assert boxes.tolist()[1] == [30, 5, 40, 15]
    else:
        assert len(boxes) == 1 and len(ds.coco.getAnnIds()) == 1


def test_boxes_within_one_pixel_outside_are_clipped_quietly(tmp_path):
    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[-0.5, 5, 40.9, 10]))
    ds = CocoDataset(_write(tmp_path / "ds", data))
    assert not ds.skipped
    assert ds[0][1]["boxes"].tolist()[1] == [0, 5, 40, 15]


def test_skipping_is_logged(tmp_path, caplog):
    data = _mutate(lambda d: _set(d["annotations"][1], category_id=4))
    with caplog.at_level("WARNING"):
        CocoDataset(_write(tmp_path / "ds", data), skip_invalid=True)
    assert "unknown_category" in caplog.text


def test_boxes_under_two_pixels_are_kept_with_one_warning_naming_the_smallest(tmp_path, caplog):
    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 1, 1]))
    with caplog.at_level("WARNING"):
        ds = CocoDataset(_write(tmp_path / "tiny", data))
    assert len(ds.coco.getAnnIds()) == 2 and not ds.skipped
    assert len(caplog.records) == 1
    ann = data["annotations"][1]
    assert (f"1 box(es) under 2 px on a side, most likely annotation errors (kept); the smallest: annotation id "
            f"{ann['id']} (image {ann['image_id']}, ") in caplog.text and caplog.text.rstrip().endswith(") 1x1 px")
    caplog.clear()
    with caplog.at_level("WARNING"):
        CocoDataset(_write(tmp_path / "two", _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 2, 2]))))
    assert not caplog.records


def test_validation_does_not_modify_caller_data():
    from metaanchor.data import validate_coco

    data = _mutate(lambda d: _set(d["annotations"][1], bbox=[30, 5, 15, 10]))
    before = copy.deepcopy(data)
    validate_coco(data, "x.json", skip_invalid=True)
    assert data == before


def test_collate_keeps_variable_sizes_as_lists(folder):
    ds = CocoDataset(folder)
    images, targets = collate([ds[0], ds[1]])
    assert [t["image_id"] for t in targets] == [3, 8] and images[0].shape == (3, 30, 40)
