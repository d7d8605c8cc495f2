"""CocoDataset: loading, targets, image modes, image file errors and collate."""

import json

import numpy as np
import pytest
import torch
from data_samples import _coco_folder, _rotated_jpeg, dataset_sample, write_dataset
from PIL import Image

from metaanchor.data import CocoDataset, collate
from metaanchor.data.loader import AugmentedDataset, BadItem
from metaanchor.errors import DataError, UserError


@pytest.fixture
def folder(tmp_path):
    return write_dataset(tmp_path / "ds", dataset_sample())


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
    data = dataset_sample()
    data["annotations"][1]["iscrowd"] = 1
    ds = CocoDataset(write_dataset(tmp_path / "ds", data))
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


def test_collate_keeps_variable_sizes_as_lists(folder):
    ds = CocoDataset(folder)
    images, targets = collate([ds[0], ds[1]])
    assert [t["image_id"] for t in targets] == [3, 8] and images[0].shape == (3, 30, 40)


def test_cocodataset_reads_what_fuzzed_validation_accepts(tmp_path):
    # one concrete survivor of the fuzzer: extra garbage fields are kept and ignored
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8, "extra": [None, {"x": 1}]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "segmentation": "?"}],
            "categories": [{"id": 1, "name": "cat"}], "info": {"garbage": float("inf")}}
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    assert CocoDataset(tmp_path)[0][1]["boxes"].tolist() == [[0, 0, 4, 4]]


def test_annotation_with_the_stored_size_of_a_rotated_photo_is_a_clear_error_or_skip(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"r.jpg": (_rotated_jpeg(), (40, 20))}))
    message = (f"{tmp_path / 'images' / 'r.jpg'}: image is 20x40 (as displayed, after EXIF orientation) but "
               "annotations.json (image id 1) says 40x20")
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(e.value) == message
    item = AugmentedDataset(ds, 0, 0.5, 0.0, size=(16, 32))[(0, 0)]  # training: the trainer skips or fails
    assert isinstance(item, BadItem) and item.message == message


def test_image_size_disagreeing_with_annotation_names_both_sizes(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"a.png": (Image.new("RGB", (41, 30)), (40, 30))}))
    with pytest.raises(DataError, match=r"a\.png: image is 41x30 .* \(image id 1\) says 40x30$"):
        ds[0]


def test_zero_by_zero_box_is_an_error_or_a_counted_skip(tmp_path):
    folder = _coco_folder(tmp_path, {"a.png": (Image.new("RGB", (40, 30)), (40, 30))},
                          {"a.png": [[5, 5, 0, 0], [1, 1, 10, 10]]})
    with pytest.raises(DataError, match=r"annotations\.json: annotation id 100 \(image 1\): box has non-positive "
                                        r"width 0\.0"):
        CocoDataset(folder)
    ds = CocoDataset(folder, skip_invalid=True)
    assert ds.skipped == {"non_positive_size": 1}
    _, target = AugmentedDataset(ds, 0, 0.0, 0.0, augment="none", size=(30, 40))[(0, 0)]
    assert target["boxes"].tolist() == [[1.0, 1.0, 11.0, 11.0]]
